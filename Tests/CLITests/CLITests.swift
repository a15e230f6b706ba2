import Foundation
import Testing
import TestSupport

/// Runs the built `drplan` binary as a user would and checks output and exit status.
@Suite("Command line")
struct CLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The `drplan` executable beside this test bundle (SwiftPM builds it as a dependency).
    static let binary: String = {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("drplan").path
        if FileManager.default.isExecutableFile(atPath: besideTests) { return besideTests }
        return root + "/.build/debug/drplan"
    }()

    typealias Result = Tools.Output

    /// This instant, as `--to` of an evidence export takes it (a period must have ended).
    static func nowStamp() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date())
    }

    static func run(_ args: [String], cwd: String = root, env: [String: String] = [:]) throws -> Result {
        try Tools.run(executable: binary, args, cwd: cwd, env: env)
    }

    @Test("init --recipe small-office writes an inventory that validates; an unknown recipe is exit 2")
    func recipe() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let r = try Self.run(["init", "--recipe", "small-office", dir.path + "/office"])
        #expect(r.status == 0, "\(r.stderr)")
        let v = try Self.run(["validate", "-i", dir.path + "/office/drplan.yaml"])
        #expect(v.status == 0 && v.stdout.contains("ok: 3 sites, 2 storage, 1 assets, 1 jobs, 1 restore tests"), "\(v.stdout)\(v.stderr)")
        let text = try String(contentsOfFile: dir.path + "/office/drplan.yaml", encoding: .utf8)
        #expect(text.contains("url: s3://") && text.contains("targets: [external-drive, s3-bucket]") && text.contains("targets: all"))
        #expect(try Self.run(["init", "--recipe", "nope", dir.path + "/x"]).status == 2)
    }

    @Test("--version and --help")
    func versionAndHelp() throws {
        let v = try Self.run(["--version"])
        #expect(v.status == 0 && v.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        for cmd in ["init", "validate", "facts"] {
            let h = try Self.run([cmd, "--help"])
            #expect(h.status == 0)
            #expect(h.stdout.contains("Example:\n  drplan \(cmd)"), "\(cmd) --help has no runnable example")
        }
    }

    @Test("validate prints the counts and exits 0 on each sample", arguments: ["small-office", "betpro", "clinic", "clean"])
    func validateSamples(sample: String) throws {
        let r = try Self.run(["validate", "-i", "samples/\(sample).yaml"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("ok: ") && r.stdout.contains(" restore tests"))
        #expect(r.stderr.isEmpty)
    }

    @Test("a bad inventory exits 2 with every problem located, sorted, on stderr")
    func validateBad() throws {
        let r = try Self.run(["validate", "-i", "Tests/DRInventoryTests/Fixtures/invalid/references.yaml"], env: ["NO_COLOR": "1"])
        #expect(r.status == 2)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        let diagnostics = lines.filter { $0.contains(": error: ") }
        #expect(diagnostics.count == 14)
        #expect(diagnostics.first == "Tests/DRInventoryTests/Fixtures/invalid/references.yaml:5:37: error: storage 'nas-fra' refers in 'site' to site 'fra-dc2', which does not exist (did you mean 'fra-dc1'?)")
        #expect(lines.last == "drplan: 14 problems found; nothing was evaluated")
        #expect(!r.stderr.contains("\u{1B}["))
    }

    @Test("without -i, ./drplan.yaml is read; its absence is exit 2 with advice")
    func defaultInventory() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let r = try Self.run(["validate"], cwd: dir.path)
        #expect(r.status == 2)
        #expect(r.stderr.contains("inventory file 'drplan.yaml' does not exist") && r.stderr.contains("drplan init"))
    }

    @Test("bad flags and a bad --now exit 2")
    func badFlags() throws {
        #expect(try Self.run(["validate", "--frobnicate"]).status == 2)
        #expect(try Self.run(["nonsense"]).status == 2)
        let r = try Self.run(["facts", "-i", "samples/clean.yaml", "--now", "next tuesday"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("invalid --now 'next tuesday'"))
    }

    @Test("init writes a starter that validates, and never overwrites")
    func initCommand() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let first = try Self.run(["init", "site"], cwd: dir.path)
        #expect(first.status == 0)
        let path = dir.path + "/site/drplan.yaml"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        #expect(try Self.run(["validate"], cwd: dir.path + "/site").status == 0)
        try "drplan: 1\n# edited by hand\n".write(toFile: path, atomically: true, encoding: .utf8)
        let second = try Self.run(["init", "site"], cwd: dir.path)
        #expect(second.status == 2)
        #expect(second.stderr.contains("already exists"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "drplan: 1\n# edited by hand\n")
        #expect(original.contains("drplan: 1"))
    }

    @Test("facts prints JSON with durations in seconds, to stdout or -o")
    func facts() throws {
        let r = try Self.run(["facts", "-i", "samples/betpro.yaml", "--now", "2026-11-22T00:00:00Z"])
        #expect(r.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["as_of"] as? String == "2026-11-22T00:00:00Z")
        for key in ["sites", "storage", "assets", "jobs", "restore_tests"] { #expect(json[key] is [Any], "\(key)") }
        let assets = try #require(json["assets"] as? [[String: Any]])
        let trades = try #require(assets.first { $0["id"] as? String == "trades-db" })
        #expect(trades["rpo"] as? Int == 900)
        #expect(trades["rpo_achievable"] as? Int == 900)
        #expect(!r.stdout.contains("Summer2019!"))

        let dir = try TempDir(); defer { dir.cleanup() }
        let o = try Self.run(["facts", "-i", "samples/betpro.yaml", "--now", "2026-11-22T00:00:00Z", "-o", dir.path + "/facts.json"])
        #expect(o.status == 0 && o.stdout.isEmpty)
        #expect(try String(contentsOfFile: dir.path + "/facts.json", encoding: .utf8) == r.stdout)
        #expect(try Self.run(["facts", "-i", "samples/clean.yaml", "-o", "/dev/null"]).status == 0)
        let unwritable = try Self.run(["facts", "-i", "samples/clean.yaml", "-o", dir.path + "/missing/dir/facts.json"])
        #expect(unwritable.status == 2 && unwritable.stderr.contains("cannot write"))
        // Written beside its name and renamed when complete: no temporary file stays behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["facts.json"])
    }

    @Test("several -i files and a directory merge into one inventory")
    func multipleInputs() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("inv/sites.yaml", "drplan: 1\nsites: [{ id: s, kind: office }]\n")
        try dir.write("inv/assets.yaml", "drplan: 1\nassets: [{ id: a, kind: server, site: s }]\n")
        let extra = try dir.write("extra.yaml", "drplan: 1\nstorage: [{ id: n, kind: nas, site: s }]\n")
        let r = try Self.run(["validate", "-i", dir.path + "/inv", "-i", extra])
        #expect(r.status == 0)
        #expect(r.stdout == "ok: 1 sites, 1 storage, 1 assets, 0 jobs, 0 restore tests\n")
        #expect(try Self.run(["validate", "-q", "-i", dir.path + "/inv", "-i", extra]).stdout.isEmpty)
    }
}
