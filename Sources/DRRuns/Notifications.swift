import CEL
import DRInventory
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Sends a job's notifications (`monitoring.notify`, docs/monitoring.md), each in its
/// service's own format. A notification that fails is logged and audited by the caller and
/// never changes the run's status; no secret is put in a payload (errors are redacted, and
/// URLs, which may hold webhook tokens, are never echoed into one).
public enum Notifications {
    /// What one notification says.
    public struct Message: Sendable {
        public var event: Notify.Event
        public var run: RunRecord
        /// For `missed`: how many scheduled runs passed since the last success.
        public var missedRuns: Int?
        public var lastSuccess: Date?

        public init(event: Notify.Event, run: RunRecord, missedRuns: Int? = nil, lastSuccess: Date? = nil) {
            self.event = event; self.run = run; self.missedRuns = missedRuns; self.lastSuccess = lastSuccess
        }

        var what: String {
            let r = run
            if let t = r.restoreTest { return "restore test \(t)" + (r.storage.map { " from \($0)" } ?? "") }
            return "backup \(r.job ?? "?")" + (r.asset.map { "/\($0)" } ?? "") + (r.storage.map { " to \($0)" } ?? "")
        }

        var status: String {
            switch event {
            case .start: return "started"
            case .success: return "succeeded"
            case .failure: return run.status == .interrupted ? "was interrupted" : "FAILED"
            case .missed: return "MISSED \(missedRuns ?? 0) scheduled run\(missedRuns == 1 ? "" : "s")"
            }
        }

        public var title: String { "drplan: \(what) \(status) on \(run.host)" }

        /// Field name and value pairs, the same in every format.
        public var fields: [(String, String)] {
            var f: [(String, String)] = [("job", run.job ?? ""), ("target", run.storage ?? ""), ("status", event == .start ? "running" : run.status.rawValue), ("host", run.host)]
            if let a = run.asset { f.append(("asset", a)) }
            if let t = run.restoreTest { f.append(("restore test", t)) }
            if let end = run.finishedAt { f.append(("duration", String(format: "%.1fs", end.timeIntervalSince(run.startedAt)))) }
            if event != .start { f.append(("bytes", String(run.bytesRead))) }
            if let e = run.error { f.append(("error", Redaction.text(e))) }
            if let n = missedRuns { f.append(("missed runs", String(n))) }
            if event == .missed { f.append(("last success", lastSuccess.map(EvidenceStore.iso) ?? "never")) }
            f.append(("run", run.id))
            return f
        }

        /// The plain-text summary (mail, health-check ping bodies, chat text).
        public var text: String { title + "\n" + fields.map { "\($0.0): \($0.1)" }.joined(separator: "\n") + "\n" }

        var failed: Bool { event == .failure || event == .missed }
    }

    /// A request to send: where, how, what.
    struct Request {
        var url: URL
        var contentType: String
        var body: Data
        var headers: [String: String] = [:]
    }

    static func json(_ v: Value) -> Data { Data(JSONWriter(pretty: false).string(v).utf8) }

    /// The HTTP request a URL gets for a message, or nil for the non-HTTP schemes.
    static func request(_ m: Message, to uri: String) -> Result<Request, NotifyProblem>? {
        func make(_ s: String, _ type: String, _ body: Data, _ headers: [String: String] = [:]) -> Result<Request, NotifyProblem> {
            guard let u = URL(string: s) else { return .failure(NotifyProblem("not a valid URL")) }
            return .success(Request(url: u, contentType: type, body: body, headers: headers))
        }
        let fields = m.fields.map { Value.object([("name", .string($0.0)), ("value", .string($0.1))]) }
        if uri.hasPrefix("hc+") {
            // Healthchecks.io, Uptime Kuma push and Cronitor: /start, the URL itself, /fail.
            let base = String(uri.dropFirst(3)).trimmingSuffix("/")
            let suffix = m.event == .start ? "/start" : (m.failed ? "/fail" : "")
            return make(base + suffix, "text/plain; charset=utf-8", Data(m.text.utf8))
        }
        if uri.hasPrefix("ntfy://") || uri.hasPrefix("ntfy+http://") {
            // ntfy's JSON publishing: POST to the server's root with the topic in the body.
            let rest = uri.hasPrefix("ntfy://") ? String(uri.dropFirst(7)) : String(uri.dropFirst(12))
            let scheme = uri.hasPrefix("ntfy://") ? "https://" : "http://"
            guard let slash = rest.firstIndex(of: "/"), rest.index(after: slash) < rest.endIndex else {
                return .failure(NotifyProblem("an ntfy URL is ntfy://HOST/TOPIC"))
            }
            let host = String(rest[..<slash]), topic = String(rest[rest.index(after: slash)...])
            let body = json(.object([
                ("topic", .string(topic)), ("title", .string(m.title)), ("message", .string(m.fields.map { "\($0.0): \($0.1)" }.joined(separator: "\n"))),
                ("priority", .int(m.failed ? 4 : 3)), ("tags", .list([.string(m.failed ? "warning" : "white_check_mark")])),
            ]))
            return make(scheme + host + "/", "application/json", body)
        }
        if uri.hasPrefix("slack+") {
            let body = json(.object([("text", .string(m.title)), ("blocks", .list([
                .object([("type", .string("section")), ("text", .object([("type", .string("mrkdwn")), ("text", .string("*\(m.title)*\n" + m.fields.map { "*\($0.0)*: \($0.1)" }.joined(separator: "\n")))]))]),
            ]))]))
            return make(String(uri.dropFirst(6)), "application/json", body)
        }
        if uri.hasPrefix("teams+") {
            let body = json(.object([
                ("@type", .string("MessageCard")), ("@context", .string("https://schema.org/extensions")), ("summary", .string(m.title)),
                ("themeColor", .string(m.failed ? "C0392B" : "2E7D32")), ("title", .string(m.title)),
                ("sections", .list([.object([("facts", .list(fields))])])),
            ]))
            return make(String(uri.dropFirst(6)), "application/json", body)
        }
        if uri.hasPrefix("discord+") {
            let body = json(.object([
                ("content", .string(m.title)),
                ("embeds", .list([.object([
                    ("title", .string(m.title)), ("color", .int(m.failed ? 0xC0392B : 0x2E7D32)),
                    ("fields", .list(m.fields.map { .object([("name", .string($0.0)), ("value", .string($0.1.isEmpty ? "-" : $0.1)), ("inline", .bool($0.0 != "error"))]) })),
                ])])),
            ]))
            return make(String(uri.dropFirst(8)), "application/json", body)
        }
        if uri.hasPrefix("https://") || uri.hasPrefix("http://") {
            return make(uri, "application/json", Alerts.payload(m.run))
        }
        return nil
    }

    public struct NotifyProblem: Error, Sendable {
        public var message: String
        init(_ m: String) { message = m }
    }

    /// Sends `message` to every notify entry of `job` that asked for its event; returns a
    /// problem sentence for each that failed (the URL redacted).
    ///
    /// `pings`: health-check pings (`hc+`) are sent once per job and invocation, not per run
    /// (a later target's success must not turn a check green after an earlier one failed),
    /// so they go out only when this is true, and the others only when it is false.
    public static func send(_ message: Message, job: Job, baseDirectory: String, pings: Bool = false, timeout: TimeInterval = 10) -> [String] {
        var problems: [String] = []
        for n in job.monitoring.notify where n.on.contains(message.event) && n.url.hasPrefix("hc+") == pings {
            if let p = deliver(message, to: n.url, baseDirectory: baseDirectory, timeout: timeout) {
                problems.append(Redaction.text("\(message.event.rawValue) notification to \(display(n.url)) failed: \(p)"))
            }
        }
        return problems
    }

    /// A URL as logs and the audit log show it: scheme and host only, because webhook and
    /// ping URLs carry their secret token in the path.
    public static func display(_ uri: String) -> String {
        if uri.hasPrefix("mailto:") || uri.hasPrefix("file:") || uri.hasPrefix("exec:") { return uri }
        guard let r = uri.range(of: "://") else { return "a notify URL" }
        let host = uri[r.upperBound...].split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        let bare = host.split(separator: "@").last.map(String.init) ?? host  // no user:password@
        return String(uri[..<r.upperBound]) + bare + "/…"
    }

    static func deliver(_ m: Message, to uri: String, baseDirectory: String, timeout: TimeInterval) -> String? {
        if uri.hasPrefix("mailto:") { return mail(m, to: String(uri.dropFirst(7)), timeout: timeout) }
        if uri.hasPrefix("file:") || uri.hasPrefix("exec:") {
            return Alerts.deliver(Alerts.payload(m.run), to: uri, baseDirectory: baseDirectory, timeout: timeout)
        }
        switch request(m, to: uri) {
        case .success(let r)?: return post(r, timeout: timeout)
        case .failure(let p)?: return p.message
        case nil: return "drplan cannot send to this URL; use one of \(Notify.schemes.joined(separator: ", "))"
        }
    }

    static func post(_ r: Request, timeout: TimeInterval) -> String? {
        var request = URLRequest(url: r.url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.setValue(r.contentType, forHTTPHeaderField: "Content-Type")
        for (k, v) in r.headers { request.setValue(v, forHTTPHeaderField: k) }
        request.httpBody = r.body
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { _, response, error in
            if let error { box.problem = error.localizedDescription }
            else if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) { box.problem = "HTTP status \(http.statusCode)" }
            done.signal()
        }.resume()
        if done.wait(timeout: .now() + timeout + 1) == .timedOut { return "no answer within \(Int(timeout))s" }
        return box.problem
    }

    /// Mail through the system's `sendmail -t` (msmtp-mta, exim or postfix), plain text.
    static func mail(_ m: Message, to address: String, timeout: TimeInterval) -> String? {
        let to = address.split(separator: "?").first.map(String.init) ?? address
        guard !to.isEmpty, !to.contains("\n"), !to.contains("\r") else { return "not a mail address" }
        let sendmail = ["/usr/sbin/sendmail", "/usr/lib/sendmail"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let sendmail else { return "no sendmail on this machine (install msmtp-mta, exim4 or postfix, or use another notify URL)" }
        let subject = m.title.replacingOccurrences(of: "\n", with: " ")
        let text = "To: \(to)\nSubject: \(subject)\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\n\n" + m.text
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sendmail)
        p.arguments = ["-t"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        do { try p.run() } catch { return "cannot run \(sendmail): \(error.localizedDescription)" }
        let previous = signal(SIGPIPE, SIG_IGN)
        var writeProblem: String?
        do {
            try input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
            try input.fileHandleForWriting.close()
        } catch {
            // Half a message must not go out as a whole one.
            writeProblem = error.localizedDescription
            p.terminate()
        }
        signal(SIGPIPE, previous)
        let said = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if let writeProblem { return "the message could not be handed to \(sendmail): \(writeProblem)" }
        if p.terminationStatus != 0 {
            return "\(sendmail) -t exited with status \(p.terminationStatus): " + Redaction.text(String(decoding: said, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return nil
    }
}

final class ResultBox: @unchecked Sendable { var problem: String? }

extension String {
    func trimmingSuffix(_ s: String) -> String { hasSuffix(s) ? String(dropLast(s.count)) : self }
}
