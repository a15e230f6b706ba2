import Foundation
import Testing
import TestSupport

/// The tampering a compliance reviewer tried on the runs table (docs/evidence.md): each is
/// found by `evidence verify`, and `check` refuses to judge from it (exit 3) unless told to,
/// in which case every report says so.
@Suite("Command line: edited evidence is caught")
struct EvidenceTamperCLITests {
    static let tampers: [(String, String, String)] = [
        ("a failed run turned into a success", "UPDATE runs SET status = 'success', error = NULL WHERE id = (SELECT id FROM runs WHERE status = 'failed' LIMIT 1)", "differs from what drplan recorded"),
        ("a run backdated", "UPDATE runs SET started_at = '2026-01-01T00:00:00.000Z' WHERE id = (SELECT id FROM runs ORDER BY started_at LIMIT 1)", "differs from what drplan recorded"),
        ("a run deleted", "DELETE FROM runs WHERE id = (SELECT id FROM runs ORDER BY started_at LIMIT 1)", "in the audit log but not among the runs"),
        ("a fake run inserted", "INSERT INTO runs (id, kind, job, engine, host, pid, started_at, finished_at, status) VALUES ('fake', 'backup', 'documents-nightly', 'builtin', 'h', 1, '2026-11-30T10:00:00.000Z', '2026-11-30T10:01:00.000Z', 'success')", "run fake has no entry in the audit log"),
    ]

    @Test("each tamper of the runs table is named by verify, and check refuses it", arguments: 0..<4)
    func tamper(index: Int) throws {
        let (what, sql, expected) = Self.tampers[index]
        guard Tools.hasPython(module: "sqlite3") else {
            _ = Tools.skip("the tamper test", because: "python3's sqlite3 module is missing") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        // One failing run (its target folder is gone), then a good one.
        try FileManager.default.removeItem(atPath: dir.path + "/demo/backup-target/usb-at-home")
        _ = try CLITests.run(["backup", "-i", inv], cwd: dir.path)
        try FileManager.default.createDirectory(atPath: dir.path + "/demo/backup-target/usb-at-home", withIntermediateDirectories: true)
        _ = try CLITests.run(["backup", "-i", inv], cwd: dir.path)
        #expect(try CLITests.run(["evidence", "verify", "-i", inv], cwd: dir.path).status == 0)
        #expect(try CLITests.run(["history", "-i", inv], cwd: dir.path).stdout.contains("failed"), "the first backup was meant to fail")
        let store = dir.path + "/demo/.drplan/evidence.sqlite"
        // Ended runs are final in the store itself: the edit is refused, until its triggers are dropped.
        let refused = try Tools.run("python3", ["-c", "import sqlite3; db = sqlite3.connect('\(store)'); db.execute(\"\(sql)\"); db.commit()"])
        #expect(index == 3 || (refused.status != 0 && (refused.stderr.contains("is final") || refused.stderr.contains("never deleted"))), "\(what): \(refused.stderr)")
        // (An insert is allowed by the triggers: the first attempt made it.)
        let edit = index == 3 ? refused : try Tools.run("python3", ["-c", "import sqlite3; db = sqlite3.connect('\(store)'); db.execute('DROP TRIGGER runs_final'); db.execute('DROP TRIGGER runs_no_delete'); db.execute(\"\(sql)\"); db.commit()"])
        #expect(edit.status == 0, "\(edit.stderr)")

        let verify = try CLITests.run(["evidence", "verify", "-i", inv], cwd: dir.path)
        #expect(verify.status == 1 && verify.stderr.contains(expected), "\(what): \(verify.stdout)\(verify.stderr)")
        let check = try CLITests.run(["check", "-i", inv], cwd: dir.path)
        #expect(check.status == 3 && check.stderr.contains("fails verification") && check.stdout.isEmpty, "\(what): \(check.status) \(check.stderr)")
        let allowed = try CLITests.run(["check", "-i", inv, "--allow-unverified-evidence", "--format", "json"], cwd: dir.path)
        let json = try JSONSerialization.jsonObject(with: Data(allowed.stdout.utf8)) as? [String: Any]
        let evidence = json?["evidence"] as? [String: Any]
        #expect(evidence?["verified"] as? Bool == false && (evidence?["problems"] as? [String])?.first?.contains(expected) == true, "\(what): \(allowed.stdout.prefix(300))")
        #expect(try CLITests.run(["check", "-i", inv, "--allow-unverified-evidence"], cwd: dir.path).stdout.hasPrefix("WARNING: judged from evidence that fails verification"))
        let report = try CLITests.run(["report", "-i", inv, "--allow-unverified-evidence", "-o", dir.path + "/reports"], cwd: dir.path)
        #expect(report.status == 0, "\(report.stderr)")
        let html = try String(contentsOfFile: dir.path + "/reports/report.html", encoding: .utf8)
        #expect(html.contains("id=\"unverified\"") && html.contains("fails verification"))
        #expect(try CLITests.run(["report", "-i", inv, "-o", dir.path + "/refused"], cwd: dir.path).status == 3)
    }
}
