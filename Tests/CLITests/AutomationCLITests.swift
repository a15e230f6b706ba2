import Foundation
import Testing
import TestSupport

/// Automation as a user meets it: timers installed and checked by systemd-analyze, due and
/// missed runs, a mail delivered through a real MTA, and metrics promtool accepts.
@Suite("Command line: schedule, due runs, notifications, metrics")
struct AutomationCLITests {
    static func run(_ args: [String], cwd: String = CLITests.root, env: [String: String] = [:]) throws -> Tools.Output {
        try CLITests.run(args, cwd: cwd, env: env)
    }

    static func have(_ tool: String) -> Bool { (try? Tools.run("which", [tool]).status) == 0 }

    @Test("the small-office recipe installs its timers; systemd-analyze verifies them and agrees with schedule --list")
    func recipeTimers() throws {
        guard Self.have("systemd-analyze") else {
            _ = Tools.skip("timer installation", because: "no systemd-analyze (apt-get install systemd)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        #expect(try Self.run(["init", "--recipe", "small-office", dir.path + "/office"]).status == 0)
        let inv = dir.path + "/office/drplan.yaml"
        let units = dir.path + "/units"
        let r = try Self.run(["schedule", "-i", inv, "--install", "--directory", units])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("systemctl enable --now drplan-documents-nightly.timer"), "\(r.stdout)")
        #expect(!r.stderr.contains("warning"), "the recipe's 21:00 exists every day: \(r.stderr)")
        let timer = try String(contentsOfFile: units + "/drplan-documents-nightly.timer", encoding: .utf8)
        let service = try String(contentsOfFile: units + "/drplan-documents-nightly.service", encoding: .utf8)
        #expect(timer.contains("OnCalendar=*-*-* 21:00:00 Europe/London") && timer.contains("Persistent=true"))
        #expect(service.contains("ExecStart=\(CLITests.binary) backup documents-nightly -i \(inv)") || service.contains("backup documents-nightly -i \(inv)"))
        let verify = try Tools.run("systemd-analyze", ["verify", "--man=no", units + "/drplan-documents-nightly.timer", units + "/drplan-documents-nightly.service"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        // --list's next three runs are systemd's next three elapses of the timer.
        let list = try Self.run(["schedule", "-i", inv, "--list"])
        #expect(list.status == 0 && list.stdout.contains("documents-nightly  0 21 * * *  Europe/London  next: "), "\(list.stdout)")
        let cal = try Tools.run(executable: "/usr/bin/env", ["systemd-analyze", "calendar", "--iterations=3", "*-*-* 21:00:00 Europe/London"], env: ["TZ": "Europe/London"])
        // Each elapse is printed in the local zone and again "(in UTC)"; the local lines.
        let theirs = cal.stdout.split(separator: "\n").filter { !$0.contains("(in UTC)") }.compactMap { line -> String? in
            guard let r = line.range(of: #"\d{4}-\d\d-\d\d 21:00"#, options: .regularExpression) else { return nil }
            return String(line[r])
        }
        #expect(theirs.count == 3)
        for t in theirs { #expect(list.stdout.contains(t), "\(t) in \(list.stdout)") }
        let un = try Self.run(["schedule", "-i", inv, "--uninstall", "--directory", units])
        #expect(un.status == 0 && !FileManager.default.fileExists(atPath: units + "/drplan-documents-nightly.timer"), "\(un.stdout)\(un.stderr)")
        // cron: a file with CRON_TZ and flock, merged and removed without touching other lines.
        let cronDir = try dir.makeDirectory("cron.d")
        try "MAILTO=root\n".write(toFile: cronDir + "/drplan", atomically: true, encoding: .utf8)
        #expect(try Self.run(["schedule", "-i", inv, "--format", "cron", "--install", "--directory", cronDir]).status == 0)
        let cron = try String(contentsOfFile: cronDir + "/drplan", encoding: .utf8)
        #expect(cron.hasPrefix("MAILTO=root\n") && cron.contains("CRON_TZ=Europe/London\n0 21 * * * root cd ") && cron.contains("flock -n"), "\(cron)")
        #expect(try Self.run(["schedule", "-i", inv, "--format", "cron", "--uninstall", "--directory", cronDir]).status == 0)
        #expect(try String(contentsOfFile: cronDir + "/drplan", encoding: .utf8) == "MAILTO=root\n")
        // A schedule no calendar expresses stops the command before anything is written.
        let bad = try dir.write("bad.yaml", try String(contentsOfFile: inv, encoding: .utf8).replacingOccurrences(of: "schedule: \"0 21 * * *\"", with: "schedule: \"every 2d\""))
        let b = try Self.run(["schedule", "-i", bad, "--install", "--directory", dir.path + "/none"])
        #expect(b.status == 2 && b.stderr.contains("cannot be scheduled") && !FileManager.default.fileExists(atPath: dir.path + "/none"), "\(b.stderr)")
    }

    static func inventory(_ dir: TempDir, notify: String, schedule: String = "0 2 * * *") throws -> String {
        try dir.makeDirectory("data")
        try dir.write("data/a.txt", String(repeating: "ledger line\n", count: 500))
        try dir.makeDirectory("disk")
        try dir.write("pass.txt", "correct horse battery staple\n")
        chmod(dir.path + "/pass.txt", 0o600)
        return try dir.write("drplan.yaml", """
            drplan: 1
            timezone: Europe/London
            sites: [{ id: office, kind: office }]
            storage: [{ id: disk, kind: nas, site: office, path: disk, create: true }]
            assets: [{ id: books, kind: file-store, site: office, rpo: 24h, source: { path: data } }]
            jobs:
              - id: books-nightly
                assets: [books]
                schedule: "\(schedule)"
                targets: [disk]
                encryption: { at_rest: true, passphrase: "file:pass.txt" }
                monitoring:
                  metrics_file: metrics/drplan.prom
                  notify:
            \(notify)
            restore_tests:
              - { id: books-restore, job: books-nightly, scope: full, every: 30d }
            """)
    }

    @Test("backup --due runs what came due; a missed night is DR605 with the last success and the runs missed, and a missed notification")
    func dueAndMissed() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let inv = try Self.inventory(dir, notify: "          - { url: \"file:events.log\", on: [start, success, failure, missed] }\n          - { url: \"http://127.0.0.1:9/down\", on: [success] }")
        try dir.makeDirectory("metrics")
        let first = try Self.run(["backup", "-i", inv])
        // A notification that cannot be delivered is said, and the backup still succeeded.
        #expect(first.status == 0 && first.stderr.contains("success notification to http://127.0.0.1:9/… failed"), "\(first.stderr)")
        // The run measured the target's filesystem: DR602 and the forecast use it.
        let facts = try Self.run(["facts", "-i", inv])
        let f = try #require(try JSONSerialization.jsonObject(with: Data(facts.stdout.utf8)) as? [String: Any])
        let disk = try #require((f["storage"] as? [[String: Any]])?.first)
        #expect(disk["capacity_source"] as? String == "measured" && ((disk["free_bytes"] as? Int) ?? 0) > 0, "\(disk)")
        // restore-test --due: never succeeded, so due; then not due for its 30 days.
        let t1 = try Self.run(["restore-test", "-i", inv, "--due"])
        #expect(t1.status == 0 && t1.stderr.contains("restore-test books-restore"), "\(t1.stderr)")
        let t2 = try Self.run(["restore-test", "-i", inv, "--due"])
        #expect(t2.status == 0 && t2.stderr.contains("not due"), "\(t2.stderr)")
        let events = try String(contentsOfFile: dir.path + "/events.log", encoding: .utf8).split(separator: "\n")
        #expect(events.count == 2 && events[0].contains("drplan.run.running") && events[1].contains("drplan.run.success"), "\(events)")
        // Just backed up: nothing is due.
        let again = try Self.run(["backup", "-i", inv, "--due"])
        #expect(again.status == 0 && again.stderr.contains("not due") && again.stderr.contains("nothing is due"), "\(again.stderr)")
        // A night later it is.
        let tomorrow = ISO8601DateFormatter().string(from: Date().addingTimeInterval(26 * 3600))
        let due = try Self.run(["backup", "-i", inv, "--due", "--now", tomorrow])
        #expect(due.status == 0 && due.stderr.contains("success"), "\(due.stderr)")
        // Five nights without a run: DR605 names the last success and the runs missed.
        let later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(6 * 86_400))
        let check = try Self.run(["check", "-i", inv, "--now", later, "--format", "json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        let findings = (report["findings"] as? [[String: Any]]) ?? []
        let missed = try #require(findings.first { $0["rule"] as? String == "DR605" }, "\(check.stdout.prefix(2000))")
        let message = missed["message"] as? String ?? ""
        #expect(message.contains("last success 20") && message.contains("scheduled runs since"), "\(message)")
        // The due run that finds the gap sends a missed notification before it backs up.
        let catchUp = try Self.run(["backup", "-i", inv, "--due", "--now", later])
        #expect(catchUp.status == 0 && catchUp.stderr.contains("missed since the last success"), "\(catchUp.stderr)")
        let all = try String(contentsOfFile: dir.path + "/events.log", encoding: .utf8)
        #expect(all.contains("drplan.run.failed"), "the missed event is sent as a failed run: \(all)")
        // The metrics file backup refreshed is valid textfile-collector input.
        let metrics = try String(contentsOfFile: dir.path + "/metrics/drplan.prom", encoding: .utf8)
        #expect(metrics.contains("drplan_last_success_timestamp_seconds{job=\"books-nightly\",target=\"disk\"}"), "\(metrics)")
        #expect(metrics.contains("drplan_storage_free_bytes{storage=\"disk\"}") && metrics.contains("drplan_repository_size_bytes{storage=\"disk\"}"))
        guard Self.have("promtool") else {
            _ = Tools.skip("promtool check", because: "no promtool (apt-get install prometheus)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let out = dir.path + "/m.prom"
        #expect(try Self.run(["metrics", "-i", inv, "-o", out]).status == 0)
        for file in [out, dir.path + "/metrics/drplan.prom"] {
            let p = try Tools.run("sh", ["-c", "promtool check metrics < \"$1\"", "sh", file])
            #expect(p.status == 0, "\(p.stdout)\(p.stderr)")
        }
        let rules = try Tools.run("promtool", ["check", "rules", CLITests.root + "/docs/prometheus/drplan-alerts.yml"])
        #expect(rules.status == 0, "\(rules.stdout)\(rules.stderr)")
    }

    @Test("a health-check ping gets one verdict per job: start, then /fail when any target failed, even if a later one succeeded")
    func healthCheckVerdict() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let port = 30_000 + Int(getpid() % 20_000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", "-c", """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    self.rfile.read(int(self.headers.get('Content-Length', 0)))
                    with open(sys.argv[2], 'a') as f: f.write(self.path + '\\n')
                    self.send_response(200); self.end_headers()
                def log_message(self, *a): pass
            http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
            """, String(port), dir.path + "/pings.log"]
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL); server.waitUntilExit() }
        for _ in 0..<50 where (try? Tools.run("python3", ["-c", "import socket; socket.create_connection(('127.0.0.1', \(port)), 1)"]).status) != 0 { Thread.sleep(forTimeInterval: 0.1) }
        var inv = try String(contentsOfFile: try Self.inventory(dir, notify: "          - { url: \"hc+http://127.0.0.1:\(port)/ping/abc\" }"), encoding: .utf8)
        // A first target that cannot be written (not mounted), then one that can.
        inv = inv.replacingOccurrences(of: "storage: [{ id: disk, kind: nas, site: office, path: disk, create: true }]",
                                       with: "storage: [{ id: usb, kind: removable, site: office, path: /nonexistent/usb }, { id: disk, kind: nas, site: office, path: disk, create: true }]")
            .replacingOccurrences(of: "targets: [disk]", with: "targets: [usb, disk]")
        let path = try dir.write("drplan.yaml", inv)
        let r = try Self.run(["backup", "-i", path])
        #expect(r.status == 1, "\(r.stderr)")
        let pings = try String(contentsOfFile: dir.path + "/pings.log", encoding: .utf8).split(separator: "\n")
        #expect(pings == ["/ping/abc/start", "/ping/abc/fail"], "\(pings)")
    }

    @Test("a failed backup's mailto: notification arrives at a real MTA (msmtp-mta relaying to aiosmtpd), without secrets; the backup's status is its own")
    func mail() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/sendmail"), Tools.hasPython(module: "aiosmtpd") else {
            _ = Tools.skip("mail delivery", because: "needs /usr/sbin/sendmail (apt-get install msmtp-mta) and python3's aiosmtpd (pip install aiosmtpd)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        for d in ["mail/tmp", "mail/new", "mail/cur", "home"] { try dir.makeDirectory(d) }
        let port = 20_000 + Int(getpid() % 20_000)
        let smtpd = Process()
        smtpd.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        smtpd.arguments = ["python3", "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "-c", "aiosmtpd.handlers.Mailbox", dir.path + "/mail"]
        smtpd.standardOutput = FileHandle.nullDevice
        smtpd.standardError = FileHandle.nullDevice
        try smtpd.run()
        defer { kill(smtpd.processIdentifier, SIGKILL); smtpd.waitUntilExit() }
        try dir.write("home/.msmtprc", "account default\nhost 127.0.0.1\nport \(port)\nfrom drplan@localhost\nauth off\ntls off\n")
        chmod(dir.path + "/home/.msmtprc", 0o600)
        for _ in 0..<50 where (try? Tools.run("python3", ["-c", "import socket; socket.create_connection(('127.0.0.1', \(port)), 1)"]).status) != 0 { Thread.sleep(forTimeInterval: 0.1) }
        let inv = try Self.inventory(dir, notify: "          - { url: \"mailto:ops@example.com\" }\n          - { url: \"mailto:nobody@example.com\", on: [success] }")
        // The source is gone: the run fails, and says so by mail.
        try FileManager.default.removeItem(atPath: dir.path + "/data")
        let r = try Self.run(["backup", "-i", inv], env: ["HOME": dir.path + "/home"])
        #expect(r.status == 1, "\(r.stderr)")
        var delivered: [String] = []
        for _ in 0..<50 {
            delivered = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/mail/new")
            if !delivered.isEmpty { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(delivered.count == 1, "one mail (failure), none for on: [success]")
        let text = try String(contentsOfFile: dir.path + "/mail/new/" + (delivered.first ?? ""), encoding: .utf8)
        #expect(text.contains("To: ops@example.com") && text.contains("Subject: drplan: backup books-nightly/books to disk FAILED"), "\(text)")
        #expect(text.contains("job: books-nightly") && text.contains("error: "), "\(text)")
        #expect(!text.contains("correct horse"), "no secret in a mail")
        // With the MTA gone, the notification fails loudly in the log and the audit log, and
        // the run's own status is unchanged.
        kill(smtpd.processIdentifier, SIGKILL); smtpd.waitUntilExit()
        let r2 = try Self.run(["backup", "-i", inv], env: ["HOME": dir.path + "/home"])
        #expect(r2.status == 1 && r2.stderr.contains("failure notification to mailto:ops@example.com failed"), "\(r2.stderr)")
    }
}
