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
        func send(_ r: RunRecord, _ uris: [String], timeout: TimeInterval = 10) -> [String] {
            uris.compactMap { Notifications.deliver(Notifications.Message(event: .failure, run: r), to: $0, baseDirectory: dir.path, timeout: timeout) }
        }
        #expect(send(run, ["file:alerts.log", "file:alerts.log"]).isEmpty)
        let lines = try String(contentsOfFile: dir.path + "/alerts.log", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(body["event"] as? String == "drplan.run.failed" && body["error"] as? String == "disk full" && body["job"] as? String == "nightly")
        #expect(send(run, ["exec:cat > hook.json"]).isEmpty)
        #expect(try String(contentsOfFile: dir.path + "/hook.json", encoding: .utf8).contains("\"run\":\"\(run.id)\""))
        let problems = send(run, ["exec:exit 3", "http://127.0.0.1:9/unreachable", "hc+http://127.0.0.1:9/ping/abc"], timeout: 2)
        #expect(problems.count == 3)
        #expect(problems[0].contains("status 3"))
        // A hook that closes its input unread, with a payload larger than a pipe's buffer: the
        // write must hit the closed pipe, and drplan must survive it (no SIGPIPE).
        var big = run
        big.error = String(repeating: "x", count: 200_000)
        #expect(send(big, ["exec:exec 0<&-; sleep 0.2"]).isEmpty)
    }

    @Test("each service gets its own format: health-check paths, ntfy, Slack, Teams and Discord JSON, with no secret and no URL token")
    func formats() throws {
        var run = failedRun()
        run.error = "upload failed: --password hunter2"
        run.finishedAt = run.startedAt.addingTimeInterval(12.5)
        let m = Notifications.Message(event: .failure, run: run)
        func req(_ uri: String, _ msg: Notifications.Message? = nil) throws -> Notifications.Request {
            guard case .success(let r)? = Notifications.request(msg ?? m, to: uri) else { throw NotifyFormatError() }
            return r
        }
        func json(_ r: Notifications.Request) throws -> [String: Any] { try #require(try JSONSerialization.jsonObject(with: r.body) as? [String: Any]) }
        #expect(try req("hc+https://hc-ping.com/uuid-1").url.absoluteString == "https://hc-ping.com/uuid-1/fail")
        #expect(try req("hc+https://hc-ping.com/uuid-1", Notifications.Message(event: .start, run: run)).url.absoluteString == "https://hc-ping.com/uuid-1/start")
        var ok = run; ok.status = .success; ok.error = nil
        #expect(try req("hc+https://hc-ping.com/uuid-1", Notifications.Message(event: .success, run: ok)).url.absoluteString == "https://hc-ping.com/uuid-1")
        let ntfy = try req("ntfy://ntfy.sh/backups")
        #expect(ntfy.url.absoluteString == "https://ntfy.sh/")
        #expect(try json(ntfy)["topic"] as? String == "backups")
        #expect((try json(req("slack+https://hooks.slack.com/services/T/B/SECRETTOKEN"))["text"] as? String)?.contains("FAILED") == true)
        #expect(try json(req("teams+https://example.webhook.office.com/x"))["@type"] as? String == "MessageCard")
        #expect((try json(req("discord+https://discord.com/api/webhooks/1/tok"))["embeds"] as? [Any])?.count == 1)
        for uri in ["slack+https://hooks.slack.com/services/T/B/SECRETTOKEN", "teams+https://e.office.com/x", "discord+https://d.com/w/1/tok", "ntfy://n.sh/t", "hc+https://h.com/u"] {
            let body = String(decoding: try req(uri).body, as: UTF8.self)
            #expect(!body.contains("hunter2") && !body.contains("SECRETTOKEN"), "\(uri): \(body)")
            #expect(body.contains("nightly") && body.contains("nas") && body.contains("12.5s"), "\(uri)")
        }
        #expect(Notifications.display("slack+https://hooks.slack.com/services/T/B/SECRETTOKEN") == "slack+https://hooks.slack.com/…")
    }
}

struct NotifyFormatError: Error {}
