import Foundation
import Testing
import TestSupport

/// The runbook is for an incident: every command it prints must work, from the copy that survives.
@Suite("Command line: runbook commands work in the incident")
struct RunbookCLITests {
    /// The shell commands of a markdown runbook: the lines of its ```sh blocks and its Verify lines.
    static func commands(_ runbook: String) -> [String] {
        var out: [String] = []
        var inBlock = false
        for line in runbook.split(separator: "\n", omittingEmptySubsequences: false) {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("```") { inBlock = t == "```sh"; continue }
            if inBlock, !t.isEmpty { out.append(t) }
            if t.hasPrefix("- Verify: `"), t.hasSuffix("`") { out.append(String(t.dropFirst("- Verify: `".count).dropLast())) }
        }
        return out
    }

    @Test("every command of the demo's site-loss runbook succeeds, with the lost site's copy gone", arguments: ["builtin", "restic"])
    func siteLoss(engine: String) throws {
        if engine == "restic", (try? Tools.run("which", ["restic"]).status) != 0 {
            _ = Tools.skip("the restic runbook test", because: "restic is not installed (apt-get install restic)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        if engine == "restic" {
            let yaml = try String(contentsOfFile: inv, encoding: .utf8)
            try yaml.replacingOccurrences(of: "    type: incremental\n", with: "    type: incremental\n    engine: restic\n").write(toFile: inv, atomically: true, encoding: .utf8)
        }
        let b = try CLITests.run(["backup", "-i", "demo/drplan.yaml"], cwd: dir.path)
        #expect(b.status == 0, "\(b.stderr)")
        let plan = try CLITests.run(["plan", "-i", "demo/drplan.yaml", "--scenario", "site:office", "--format", "markdown", "--restore-root", dir.path + "/restored"], cwd: dir.path)
        #expect(plan.status == 0, "\(plan.stderr)")
        let commands = Self.commands(plan.stdout)
        #expect(commands.count == 2, "\(plan.stdout)")
        #expect(commands.allSatisfy { $0.contains("usb-at-home") }, "\(commands)")
        #expect(plan.stdout.contains("- Keys: the passphrase is read from the file passphrase.txt"))
        // The office burns down: its disk is gone.
        try FileManager.default.removeItem(atPath: dir.path + "/demo/backup-target/office-disk")
        for c in commands {
            let line = c.hasPrefix("drplan ") ? "'\(CLITests.binary)' " + c.dropFirst("drplan ".count) : c
            let r = try Tools.run("sh", ["-c", line], cwd: dir.path)
            #expect(r.status == 0, "\(c)\n\(r.stdout)\n\(r.stderr)")
        }
        #expect(try String(contentsOfFile: dir.path + "/restored/documents/notes.md", encoding: .utf8) == String(contentsOfFile: dir.path + "/demo/data/notes.md", encoding: .utf8))
    }

    @Test("a key kept only on the site being lost is called out")
    func keyOnLostSite() throws {
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        let yaml = try String(contentsOfFile: inv, encoding: .utf8)
        try yaml.replacingOccurrences(of: "passphrase: \"file:passphrase.txt\", key_escrow: home }", with: "passphrase: \"file:passphrase.txt\", key_storage: office-disk }")
            .write(toFile: inv, atomically: true, encoding: .utf8)
        let plan = try CLITests.run(["plan", "-i", inv, "--scenario", "site:office", "--format", "markdown"])
        #expect(plan.stdout.contains("**⚠ ") && plan.stdout.contains("THE ONLY DECLARED COPY OF THE KEY IS LOST IN THIS SCENARIO"), "\(plan.stdout)")
        let html = try CLITests.run(["plan", "-i", inv, "--scenario", "site:office", "--format", "html"])
        #expect(html.stdout.contains("color:#b71c1c\">⚠ Keys:"))
    }
}
