import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Twenty distinct secrets, written every way an inventory can hold one, go through every
/// command and format, the evidence store's bytes and an unzipped bundle; none may come out.
/// While backups and restore tests run, every process's command line is sampled too.
@Suite("Command line: secrets never leak")
struct CanaryCLITests {
    static func canary(_ n: Int) -> String { "CANARY\(n)x7Qz" }

    /// The demo, plus jobs and fields that carry the canaries. Some targets fail on purpose,
    /// so that errors and alerts (which quote URLs and commands) are produced too.
    static func inventory(_ dir: TempDir) throws -> String {
        let c = canary
        let inv = dir.path + "/demo/drplan.yaml"
        var yaml = try String(contentsOfFile: inv, encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "organization: Demo Office", with: "organization: \"Demo Office token=\(c(1))\"")
        yaml = yaml.replacingOccurrences(of: "  - { id: office, kind: office, region: town }", with: "  - { id: office, kind: office, region: town, labels: { secret: \"\(c(2))\" } }")
        yaml = yaml.replacingOccurrences(of: "    owner: office-manager\n", with: """
                owner: office-manager
                labels: { db_password: "\(c(3))", api_token: "\(c(4))", conn: "host=db password=\(c(5)) user=x", link: "https://portal.example/?password=\(c(6))&x=1" }

            """)
        yaml = yaml.replacingOccurrences(of: "    monitoring: { alert_on_failure: [\"file:alerts.log\"] }", with: """
                monitoring: { alert_on_failure: ["file:alerts.log", "https://hooks.slack.com/services/T0/B0/\(c(7))"] }
            """)
        yaml = yaml.replacingOccurrences(of: "jobs:\n", with: """
            jobs:
              - id: db-dump
                assets: [orders-db]
                engine: pg_dump
                schedule: "0 2 * * *"
                targets: [office-disk]
                encryption: { at_rest: true, passphrase: "\(c(8))" }
                monitoring: { alert_on_failure: ["https://x.webhook.office.com/webhookb2/\(c(9))", "https://discord.com/api/webhooks/1/\(c(10))", "https://\(c(11))@hooks.example.invalid/a", "https://hooks.example.invalid/b?token=\(c(12))"] }
              - id: db-dump-kv
                assets: [orders-kv]
                engine: pg_dump
                schedule: "0 2 * * *"
                targets: [office-disk]
                encryption: { at_rest: true, passphrase: "file:passphrase.txt" }
              - id: export
                assets: [documents]
                engine: command
                schedule: "0 3 * * *"
                targets: [office-disk]
                options: { backup: "false --password \(c(13)) -p \(c(14)) 'Authorization: Bearer \(c(15))' --license \(c(21)) --site-key='\(c(22))'", api_key: "\(c(16))" }
                secret_args: [--license, --site-key]
                monitoring: { alert_on_failure: ["file:alerts.log"] }

            """)
        yaml = yaml.replacingOccurrences(of: "assets:\n", with: """
            assets:
              - { id: orders-db, kind: database, site: office, tier: high, source: { postgres: "postgresql://app:\(c(17))@127.0.0.1:1/orders" } }
              - { id: orders-kv, kind: database, site: office, tier: high, source: { postgres: "host=127.0.0.1 port=1 dbname=orders user=app password=\(c(18))" } }

            """)
        // Storage nothing writes to (so no backup tries it), an asset no job covers and a
        // restore test's labels: fields that reach the facts, reports and the bundle only.
        yaml = yaml.replacingOccurrences(of: "storage:\n", with: """
            storage:
              - id: vault
                kind: cloud-object
                site: home
                url: "s3://bucket/prefix?X-Amz-Signature=\(c(23))"
                endpoint: "https://minio:\(c(24))@minio.example.invalid"
                credentials: { access_key_id: AKIAEXAMPLE, secret_access_key: "\(c(25))", session_token: "\(c(26))" }
                encryption: { at_rest: true, passphrase: "\(c(27))" }

            """)
        yaml = yaml.replacingOccurrences(of: "restore_tests:\n", with: "restore_tests:\n  - { id: canary-test, job: export, labels: { auth_header: \"Bearer \(c(30))\" } }\n")
        yaml = yaml.replacingOccurrences(of: "assets:\n", with: """
            assets:
              - { id: exported, kind: application, site: office, source: { command: "dump --token \(c(28))" }, labels: { ticket: "https://jira.example/x?apikey=\(c(29))" } }

            """)
        yaml += """

            waivers:
              - { rule: DR102, subject: documents, reason: "one medium until March; vault pwd=\(c(19))", approved_by: "it@example.com", expires: 2030-01-01 }
              - { rule: DR103, subject: orders-db, reason: "see https://u:\(c(20))@wiki.example/dr", approved_by: "it@example.com", expires: 2030-01-01 }

            """
        try yaml.write(toFile: inv, atomically: true, encoding: .utf8)
        return inv
    }

    /// Every process's command line, sampled until `running` says stop.
    final class CmdlineSampler: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [String] = []
        private var stop = false
        private var thread: Thread?

        func start() {
            let t = Thread { [self] in
                while !lock.withLock({ stop }) {
                    for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where pid.allSatisfy(\.isNumber) {
                        if let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !d.isEmpty {
                            let text = String(decoding: d.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
                            lock.withLock { seen.append(text) }
                        }
                    }
                    usleep(5_000)
                }
            }
            thread = t
            t.start()
        }

        func finish() -> [String] {
            lock.withLock { stop = true }
            while thread?.isFinished == false { usleep(1_000) }
            return lock.withLock { seen }
        }
    }

    @Test("30 canaries: none in any output, report, evidence byte, bundle or child process command line")
    func noLeak() throws {
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = try Self.inventory(dir)
        let written = try String(contentsOfFile: inv, encoding: .utf8)
        for n in 1...30 { #expect(written.contains(Self.canary(n)), "canary \(n) was never planted") }
        let validate = try CLITests.run(["validate", "-i", inv], cwd: dir.path)
        #expect(validate.status == 0, "\(validate.stderr)")
        let sampler = CmdlineSampler()
        sampler.start()
        var outputs: [(String, String)] = []
        for args in [["backup", "-v"], ["restore-test"], ["backup"]] {
            let r = try CLITests.run([args[0], "-i", inv] + args.dropFirst(), cwd: dir.path)
            outputs.append((args.joined(separator: " "), r.stdout + r.stderr))
        }
        let cmdlines = sampler.finish()
        #expect(cmdlines.count > 10)
        let reports = dir.path + "/reports"
        for args in [["validate"], ["facts"], ["check"], ["check", "--format", "json"], ["check", "--format", "sarif"], ["check", "--format", "junit"],
                     ["check", "--format", "markdown"], ["check", "--format", "html"], ["plan"], ["plan", "--format", "json"], ["plan", "--format", "markdown"],
                     ["report", "-o", reports], ["history"], ["history", "--format", "json"], ["eval", "--", "inventory"], ["eval", "--", "inventory.assets"],
                     ["evidence", "export", "--from", "2026-01-01", "--to", CLITests.nowStamp(), "-o", dir.path + "/bundle.zip"]] {
            let words = args[0] == "evidence" ? 2 : 1   // `-i` goes after the (sub)command
            let r = try CLITests.run(Array(args.prefix(words)) + ["-i", inv] + args.dropFirst(words), cwd: dir.path)
            outputs.append((args.joined(separator: " "), r.stdout + r.stderr))
            // Every command ran (one that failed would have written nothing for grep to search);
            // `check` exits 1 for its findings.
            #expect(r.status == 0 || (args[0] == "check" && r.status == 1), "drplan \(args.joined(separator: " ")) exited \(r.status): \(r.stderr.prefix(500))")
        }
        // The failing jobs did fail (their errors are among what is checked) and alerted.
        #expect(outputs[0].1.contains("db-dump") && outputs[0].1.contains("FAILED"), "\(outputs[0].1)")
        let unzip = try Tools.run("unzip", ["-q", "-o", dir.path + "/bundle.zip", "-d", dir.path + "/unzipped"])
        #expect(unzip.status == 0, "unzip: \(unzip.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.path + "/unzipped/inventory/1-drplan.yaml"), "the bundle holds no inventory: \((try? String(contentsOfFile: dir.path + "/unzipped/inventory/README.txt", encoding: .utf8)) ?? "no README either")")
        var files: [String] = []
        for root in [reports, dir.path + "/unzipped", dir.path + "/demo/.drplan"] {
            for f in (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? [] { files.append(root + "/" + f) }
        }
        files.append(dir.path + "/demo/alerts.log")
        #expect(files.contains { $0.hasSuffix("evidence.sqlite") } && files.contains { $0.hasSuffix("report.html") })
        var leaks: [String] = []
        for n in 1...30 {
            let secret = Self.canary(n)
            for (what, text) in outputs where text.contains(secret) { leaks.append("canary \(n) in `drplan \(what)`") }
            for f in files {
                if let data = FileManager.default.contents(atPath: f), data.range(of: Data(secret.utf8)) != nil { leaks.append("canary \(n) in \(f)") }
            }
            // The command engine's own shell necessarily sees its command; drplan's children
            // (pg_dump, psql, restic…) must not see any secret.
            for line in cmdlines where line.contains(secret) && !line.hasPrefix("/bin/sh -c false") && !line.hasPrefix("false ") {
                leaks.append("canary \(n) in a command line: \(line.prefix(200))")
            }
        }
        #expect(leaks.isEmpty, "\(leaks.count) leaks:\n\(leaks.joined(separator: "\n"))")
        // Redacted, and still intact: the bundle verifies from the zip alone.
        let verify = try CLITests.run(["evidence", "verify", dir.path + "/bundle.zip"], cwd: dir.path)
        #expect(verify.status == 0 && verify.stdout.contains("was verified with drplan evidence verify"), "\(verify.stdout)\(verify.stderr)")
    }
}
