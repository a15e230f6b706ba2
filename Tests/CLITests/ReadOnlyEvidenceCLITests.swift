import Foundation
import Testing
import TestSupport

/// Commands that only read open the evidence store read-only (docs/evidence.md): the store's
/// bytes, and what else is in its folder, are the same after them.
@Suite("Command line: reading evidence never changes it")
struct ReadOnlyEvidenceCLITests {
    /// Every file of a folder, by name, with its bytes. SQLite's shared-memory index (`-shm`)
    /// and an empty `-wal`, which a read-only connection to a WAL database may create and
    /// which hold no evidence, are left out.
    func snapshot(_ dir: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            if name.hasSuffix("-shm") { continue }
            if name.hasSuffix("-wal"), (try FileManager.default.attributesOfItem(atPath: dir + "/" + name)[.size] as? Int) == 0 { continue }
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
            out[name] = data.base64EncodedString()
        }
        return out
    }

    @Test("check, facts, plan, report, history, eval and evidence verify leave the store and its checkpoints byte-identical, and show a dead run as interrupted without marking it")
    func byteIdentical() throws {
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        // Signed, so that the checkpoint file beside the store is compared too.
        let pub = try EvidenceAnchorCLITests.sign(dir)
        #expect(try CLITests.run(["backup", "-i", inv], cwd: dir.path).status == 0)
        // A run left `running` by a process that is gone.
        try RunsCLITests.killBackupMidRun(dir)
        let before = try snapshot(dir.path + "/demo/.drplan")
        for args in [["check"], ["facts"], ["plan"], ["report", "-o", dir.path + "/reports"], ["history"], ["history", "--format", "json"],
                     ["eval", "--", "inventory.jobs.size()"], ["evidence", "verify", "--key", pub]] {
            let words = args[0] == "evidence" ? 2 : 1
            let r = try CLITests.run(Array(args.prefix(words)) + ["-i", inv] + args.dropFirst(words), cwd: dir.path)
            #expect(r.status == 0 || (args[0] == "check" && r.status == 1), "drplan \(args.joined(separator: " ")): \(r.stderr.prefix(300))")
            if args == ["history"] { #expect(r.stdout.contains("interrupted"), "\(r.stdout)") }
            let after = try snapshot(dir.path + "/demo/.drplan")
            #expect(after == before, "drplan \(args[0]) changed the evidence folder: \(Set(after.keys).symmetricDifference(before.keys).sorted()) appeared or went, \(after.keys.filter { before[$0] != nil && before[$0] != after[$0] }.sorted()) changed")
        }
        let verify = try CLITests.run(["evidence", "verify", "-i", inv], cwd: dir.path)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        // verify prints the head, to be written down: a log cut short later ends elsewhere.
        #expect(verify.stdout.contains(/intact and every run matches it; head: entry [1-9][0-9]*, sha256 [0-9a-f]{64}/), "\(verify.stdout)")
        #expect(try snapshot(dir.path + "/demo/.drplan") == before, "evidence verify changed the evidence folder")
        // The next command that records marks the run, as before.
        _ = try CLITests.run(["restore-test", "-i", inv], cwd: dir.path)
        #expect(try snapshot(dir.path + "/demo/.drplan") != before)
        #expect(try CLITests.run(["evidence", "verify", "-i", inv], cwd: dir.path).status == 0)
    }
}
