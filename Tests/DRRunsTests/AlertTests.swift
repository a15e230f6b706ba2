import Foundation
import Testing
import TestSupport
@testable import DRRuns

@Suite("Alerts")
struct AlertTests {
    func failedRun() -> RunRecord {
        var r = RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas")
        r.status = .failed
        r.error = "disk full"
        return r
    }

    @Test("file: appends a JSON line; exec: gets the JSON on stdin; a failing alert is reported, not thrown")
    func delivery() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let run = failedRun()
        #expect(Alerts.send(run, to: ["file:alerts.log", "file:alerts.log"], baseDirectory: dir.path).isEmpty)
        let lines = try String(contentsOfFile: dir.path + "/alerts.log", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(body["event"] as? String == "drplan.run.failed" && body["error"] as? String == "disk full" && body["job"] as? String == "nightly")
        #expect(Alerts.send(run, to: ["exec:cat > hook.json"], baseDirectory: dir.path).isEmpty)
        #expect(try String(contentsOfFile: dir.path + "/hook.json", encoding: .utf8).contains("\"run\":\"\(run.id)\""))
        let problems = Alerts.send(run, to: ["exec:exit 3", "mailto:ops@example.com", "http://127.0.0.1:9/unreachable"], baseDirectory: dir.path, timeout: 2)
        #expect(problems.count == 3)
        #expect(problems[0].contains("status 3") && problems[1].contains("exec: hook"))
        // A hook that closes its input unread, with a payload larger than a pipe's buffer: the
        // write must hit the closed pipe, and drplan must survive it (no SIGPIPE).
        var big = run
        big.error = String(repeating: "x", count: 200_000)
        #expect(Alerts.send(big, to: ["exec:exec 0<&-; sleep 0.2"], baseDirectory: dir.path).isEmpty)
    }
}
