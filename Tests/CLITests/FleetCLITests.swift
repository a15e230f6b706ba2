import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Fleets as an operator meets them: many hosts, one evidence store on a real PostgreSQL
/// server (the one `.ci/postgres.sh` starts), real drplan processes.
@Suite("Command line: fleets on PostgreSQL")
struct FleetCLITests {
    static func server() -> PostgresServer? {
        guard let s = PostgresServer.fromEnvironment() else {
            _ = Tools.skip("fleet test", because: "no PostgreSQL server and psql (start one with: eval \"$(bash .ci/postgres.sh start /tmp/drplan-pg)\")") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        return s
    }

    static func run(_ args: [String], _ dir: TempDir, password: String) throws -> CLITests.Result {
        try CLITests.run(args, cwd: dir.path, env: ["NO_COLOR": "1", "PGPASSWORD": password])
    }

    static func runs(_ url: String, _ dir: TempDir, password: String, inventory: String) throws -> [[String: Any]] {
        let h = try run(["history", "--format", "json", "--evidence", url, "-i", inventory], dir, password: password)
        return try #require((try JSONSerialization.jsonObject(with: Data(h.stdout.utf8)) as? [String: Any])?["runs"] as? [[String: Any]], "\(h.stderr)")
    }

    @Test("the demo points at PostgreSQL with one flag; two hosts' runs reach history, verify and the report; no password is printed")
    func demoOnPostgres() throws {
        guard let s = Self.server() else { return }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let url = try s.freshDatabase("drplan_demo"), inv = dir.path + "/demo/drplan.yaml"
        var outputs = ""
        for host in ["office-pc", "office-laptop"] {
            let r = try Self.run(["backup", "-i", inv, "--evidence", url, "--host", host], dir, password: s.password)
            #expect(r.status == 0, "\(r.stderr)")
            outputs += r.stdout + r.stderr
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/demo/.drplan/evidence.sqlite"), "nothing went to the SQLite default")
        let runs = try Self.runs(url, dir, password: s.password, inventory: inv)
        #expect(runs.count == 4 && Set(runs.compactMap { $0["host"] as? String }) == ["office-pc", "office-laptop"])
        let history = try Self.run(["history", "-i", inv, "--evidence", url], dir, password: s.password)
        #expect(history.stdout.contains("on office-pc") && history.stdout.contains("on office-laptop"), "\(history.stdout)")
        let verify = try Self.run(["evidence", "verify", "-i", inv, "--evidence", url], dir, password: s.password)
        #expect(verify.status == 0 && verify.stdout.contains("ok: the audit log of postgresql://drplan@"), "\(verify.stdout)\(verify.stderr)")
        let out = dir.path + "/reports"
        let report = try Self.run(["report", "-i", inv, "--evidence", url, "-o", out], dir, password: s.password)
        #expect(report.status == 0, "\(report.stderr)")
        let html = try String(contentsOfFile: try #require(try FileManager.default.contentsOfDirectory(atPath: out).first { $0.hasSuffix(".html") }.map { out + "/" + $0 }), encoding: .utf8)
        #expect(html.contains("<section id=\"hosts\">") && html.contains("office-pc") && html.contains("office-laptop"))
        let check = try Self.run(["check", "-i", inv, "--evidence", url], dir, password: s.password)
        outputs += check.stdout + check.stderr + report.stdout + report.stderr + verify.stdout + history.stdout
        #expect(check.stdout.contains("hosts:") && check.stdout.contains("office-laptop: 2 runs recorded"), "\(check.stdout)")
        #expect(!outputs.contains(s.password))
    }

    /// Three hosts, each with its own data and job, one store.
    static func fleet(_ dir: TempDir, hosts: [String], bytes: Int = 64) throws -> String {
        try dir.write("pass.txt", "fleet passphrase\n")
        var assets = "", jobs = "", storage = ""
        for h in hosts {
            try dir.write("data/\(h)/file.bin", Data(repeating: UInt8(ascii: "a"), count: bytes))
            _ = try dir.makeDirectory("nas/\(h)")
            storage += "  - { id: nas-\(h), kind: nas, site: dc1, path: nas/\(h), create: true }\n"
            assets += "  - { id: data-\(h), kind: file-store, site: dc1, host: \(h), source: { path: data/\(h) } }\n"
            jobs += "  - { id: \(h)-nightly, assets: [data-\(h)], schedule: \"0 1 * * *\", targets: [nas-\(h)], encryption: { at_rest: true, passphrase: \"file:pass.txt\" } }\n"
        }
        return try dir.write("fleet.yaml", "drplan: 1\norganization: Fleet\nsites: [{ id: dc1, kind: datacenter, region: r1 }]\nstorage:\n\(storage)assets:\n\(assets)jobs:\n\(jobs)")
    }

    @Test("backup --host runs only its host's jobs, refuses another's, schedule installs only its timers, and a silent host is DR607")
    func hosts() throws {
        guard let s = Self.server() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        let inv = try Self.fleet(dir, hosts: ["db1", "web1", "files1"])
        let url = try s.freshDatabase("drplan_hosts")
        for h in ["db1", "web1"] {
            let r = try Self.run(["backup", "-i", inv, "--evidence", url, "--host", h], dir, password: s.password)
            #expect(r.status == 0, "\(r.stderr)")
        }
        let runs = try Self.runs(url, dir, password: s.password, inventory: inv)
        #expect(Set(runs.map { "\($0["host"] ?? "")/\($0["job"] ?? "")" }) == ["db1/db1-nightly", "web1/web1-nightly"])
        let other = try Self.run(["backup", "db1-nightly", "-i", inv, "--evidence", url, "--host", "web1"], dir, password: s.password)
        #expect(other.status == 2 && other.stderr.contains("runs on host 'db1'"), "\(other.stderr)")
        let units = dir.path + "/units"
        let sched = try Self.run(["schedule", "-i", inv, "--host", "web1", "--install", "--directory", units], dir, password: s.password)
        #expect(sched.status == 0, "\(sched.stderr)")
        let installed = try FileManager.default.contentsOfDirectory(atPath: units).filter { $0.hasSuffix(".timer") }
        #expect(installed == ["drplan-web1-nightly.timer"])
        let service = try String(contentsOfFile: units + "/drplan-web1-nightly.service", encoding: .utf8)
        #expect(service.contains("--host web1"), "\(service)")
        // files1 never recorded a run: it has stopped reporting (never started); the others have not.
        let check = try Self.run(["check", "-i", inv, "--evidence", url, "--format", "json"], dir, password: s.password)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any], "\(check.stderr)")
        let findings = (doc["findings"] as? [[String: Any]] ?? []).filter { $0["rule"] as? String == "DR607" }
        #expect(findings.compactMap { $0["related"] as? String ?? $0["id"] as? String }.contains { $0.contains("files1") }, "\(findings)")
        #expect(!findings.contains { "\($0)".contains("db1") || "\($0)".contains("web1") }, "\(findings)")
        // Three days on, db1 and web1 have gone quiet too.
        let later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3 * 86_400))
        let quiet = try Self.run(["check", "-i", inv, "--evidence", url, "--now", later], dir, password: s.password)
        #expect(quiet.stdout.contains("DR607") && quiet.stdout.contains("host db1 has recorded no run within"), "\(quiet.stdout)")
    }

    @Test("20 hosts back up 10 times each into one store at once: 200 runs, one chain, no job run twice at the same moment; kill -9 leaves interrupted runs their host finds")
    func twentyHosts() throws {
        guard let s = Self.server() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        let hosts = (0..<20).map { "host\($0)" }
        let inv = try Self.fleet(dir, hosts: hosts)
        let url = try s.freshDatabase("drplan_twenty")
        let procs = try hosts.map { h -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = ["-c", "for i in $(seq 1 10); do echo ran > data/\(h)/n$i.txt; \"$0\" backup -q -i \"$1\" --evidence \"$2\" --host \(h) || exit $?; done", CLITests.binary, inv, url]
            p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            p.environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": s.password]) { _, n in n }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
        let runs = try Self.runs(url, dir, password: s.password, inventory: inv)
        #expect(runs.count == 200 && runs.allSatisfy { $0["status"] as? String == "success" })
        let verify = try Self.run(["evidence", "verify", "-i", inv, "--evidence", url], dir, password: s.password)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for h in hosts {
            let spans = runs.filter { $0["job"] as? String == "\(h)-nightly" }.compactMap { r -> (Date, Date)? in
                guard let a = (r["started_at"] as? String).flatMap(Self.date), let b = (r["finished_at"] as? String).flatMap(Self.date) else { return nil }
                return (a, b)
            }.sorted { $0.0 < $1.0 }
            #expect(spans.count == 10)
            for (x, y) in zip(spans, spans.dropFirst()) { #expect(y.0 >= x.1, "\(h): a run started before the one before it finished") }
        }
        // kill -9 three hosts mid-run (a large file keeps them busy), then start each again.
        let victims = ["host1", "host2", "host3"]
        for h in victims { try dir.write("data/\(h)/big.bin", Data(count: 120 << 20)) }
        for h in victims {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLITests.binary)
            p.arguments = ["backup", "-q", "-i", inv, "--evidence", url, "--host", h]
            p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            p.environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": s.password]) { _, n in n }
            p.standardError = FileHandle.nullDevice
            try p.run()
            var running = false
            for _ in 0..<300 where !running {
                usleep(50_000)
                running = (try? s.sql("SELECT count(*) FROM runs WHERE host = '\(h)' AND status = 'running'", database: String(url.split(separator: "/").last ?? ""))) == "1"
            }
            #expect(running, "\(h)'s run never started")
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        // Another host's start leaves them alone; each victim's own next start marks its run.
        #expect(try Self.run(["backup", "-q", "-i", inv, "--evidence", url, "--host", "host0"], dir, password: s.password).status == 0)
        var after = try Self.runs(url, dir, password: s.password, inventory: inv)
        #expect(after.filter { $0["status"] as? String == "running" }.count == 3)
        for h in victims {
            try FileManager.default.removeItem(atPath: dir.path + "/data/\(h)/big.bin")
            let r = try Self.run(["backup", "-i", inv, "--evidence", url, "--host", h], dir, password: s.password)
            #expect(r.status == 0, "\(r.stderr)")
        }
        after = try Self.runs(url, dir, password: s.password, inventory: inv)
        #expect(after.filter { $0["status"] as? String == "interrupted" }.count == 3)
        #expect(Set(after.filter { $0["status"] as? String == "interrupted" }.compactMap { $0["host"] as? String }) == Set(victims))
        #expect(try Self.run(["evidence", "verify", "-i", inv, "--evidence", url], dir, password: s.password).status == 0)
    }

    static func date(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s) ?? ISO8601DateFormatter().date(from: s)
    }

    @Test("a wrong password, a server that is down and a server that dies mid-run each give a clear message and exit 3; no run is recorded as a success")
    func badConnections() throws {
        guard let s = Self.server() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        let inv = try Self.fleet(dir, hosts: ["db1"])
        let url = try s.freshDatabase("drplan_bad")
        let wrong = try CLITests.run(["backup", "-i", inv, "--evidence", url, "--host", "db1"], cwd: dir.path, env: ["PGPASSWORD": "not-the-password"])
        #expect(wrong.status == 3 && wrong.stderr.contains("password authentication failed") && wrong.stderr.contains("PGPASSWORD"), "\(wrong.stderr)")
        #expect(!wrong.stderr.contains("not-the-password"))
        let down = try CLITests.run(["backup", "-i", inv, "--evidence", "postgresql://drplan@127.0.0.1:\(Self.freePort())/x", "--host", "db1"], cwd: dir.path, env: ["PGPASSWORD": s.password])
        #expect(down.status == 3 && down.stderr.contains("cannot connect to the evidence store postgresql://drplan@127.0.0.1:") && down.stderr.contains("is the server running"), "\(down.stderr)")
        #expect(try Self.runs(url, dir, password: s.password, inventory: inv).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/nas/db1").isEmpty, "nothing was backed up without a store to record it")
        // A server of its own, stopped while a backup runs.
        let pgDir = dir.path + "/pg"
        let started = try Self.postgres("start", pgDir)
        guard started.status == 0, let dsn = started.stdout.split(separator: "\n").first(where: { $0.contains("DRPLAN_PG_DSN=") })?.split(separator: "=", maxSplits: 1).last.map(String.init) else {
            Issue.record("cannot start a second PostgreSQL server: \(started.stderr)"); return
        }
        defer { _ = try? Self.postgres("stop", pgDir) }
        let pw = "drplan-ci-password"
        try dir.write("data/db1/big.bin", Data(count: 200 << 20))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLITests.binary)
        p.arguments = ["backup", "-i", inv, "--evidence", dsn, "--host", "db1"]
        p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        p.environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": pw]) { _, n in n }
        let err = Pipe()
        p.standardError = err
        try p.run()
        let second = PostgresServer(dsn: dsn, password: pw, psql: s.psql)
        var running = false
        for _ in 0..<300 where !running {
            usleep(50_000)
            running = (try? second.sql("SELECT count(*) FROM runs WHERE status = 'running'")) == "1"
        }
        #expect(running)
        #expect(try Self.postgres("halt", pgDir).status == 0)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 3, "\(stderr)")
        #expect(stderr.contains("the evidence store postgresql://drplan@127.0.0.1:") && (stderr.contains("closed the connection") || stderr.contains("is the server running") || stderr.contains("did not answer within")), "\(stderr)")
        #expect(try Self.postgres("resume", pgDir).status == 0)
        #expect(try second.sql("SELECT count(*) FROM runs WHERE status = 'success'") == "0")
        try FileManager.default.removeItem(atPath: dir.path + "/data/db1/big.bin")
        let next = try CLITests.run(["backup", "-i", inv, "--evidence", dsn, "--host", "db1"], cwd: dir.path, env: ["PGPASSWORD": pw])
        #expect(next.status == 0, "\(next.stderr)")
        #expect(try second.sql("SELECT string_agg(status, ',' ORDER BY started_at) FROM runs") == "interrupted,success")
    }

    @Test("TLS: sslmode=require connects encrypted; verify-full refuses a certificate the system store does not trust, accepts it with sslrootcert, and refuses an address")
    func tls() throws {
        guard Self.server() != nil else { return }
        guard ["/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"].contains(where: FileManager.default.isExecutableFile(atPath:)) else {
            _ = Tools.skip("the TLS test", because: "openssl is missing (apt-get install openssl)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        let inv = try Self.fleet(dir, hosts: ["db1"])
        let pgDir = dir.path + "/pg"
        let started = try Self.postgres("start-tls", pgDir)
        let port = try String(contentsOfFile: pgDir + "/port", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard started.status == 0, !port.isEmpty else { Issue.record("cannot start a PostgreSQL server with TLS: \(started.stdout)"); return }
        defer { _ = try? Self.postgres("stop", pgDir) }
        let env = ["PGPASSWORD": "drplan-ci-password"]
        // require: encrypted, and the server says so in its log.
        let require = try CLITests.run(["backup", "-i", inv, "--evidence", "postgresql://drplan@127.0.0.1:\(port)/postgres?sslmode=require", "--host", "db1"], cwd: dir.path, env: env)
        #expect(require.status == 0, "\(require.stderr)")
        let log = try String(contentsOfFile: pgDir + "/server.log", encoding: .utf8)
        #expect(log.contains("connection authorized: user=drplan database=postgres SSL enabled"), "\(log.suffix(2000))")
        // verify-full: the throwaway CA is in no system store.
        let base = "postgresql://drplan@localhost:\(port)/postgres?sslmode=verify-full"
        let untrusted = try CLITests.run(["history", "-i", inv, "--evidence", base], cwd: dir.path, env: env)
        #expect(untrusted.status == 3 && untrusted.stderr.contains("TLS certificate was not accepted") && untrusted.stderr.contains("sslrootcert"), "\(untrusted.stderr)")
        let trusted = try CLITests.run(["history", "-i", inv, "--evidence", base + "&sslrootcert=\(pgDir)/ca.crt"], cwd: dir.path, env: env)
        #expect(trusted.status == 0 && trusted.stdout.contains("success"), "\(trusted.stdout)\(trusted.stderr)")
        let address = try CLITests.run(["history", "-i", inv, "--evidence", "postgresql://drplan@127.0.0.1:\(port)/postgres?sslmode=verify-full&sslrootcert=\(pgDir)/ca.crt"], cwd: dir.path, env: env)
        #expect(address.status == 3 && address.stderr.contains("names an address"), "\(address.stderr)")
    }

    @Test("the grants in docs/fleets.md: the owner migrates, a host role records and verifies, and cannot edit, delete or unprotect the log")
    func grants() throws {
        guard let s = Self.server() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        let inv = try Self.fleet(dir, hosts: ["db1"])
        // The block as written in the docs, with this test's names and passwords.
        let docs = try String(contentsOfFile: CLITests.root + "/docs/fleets.md", encoding: .utf8)
        let section = try #require(docs.range(of: "## Roles and grants").map { docs[$0.upperBound...] })
        let block = try #require(section.range(of: "```sql\n").flatMap { start in section[start.upperBound...].range(of: "```").map { section[start.upperBound..<$0.lowerBound] } })
        let suffix = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(8)
        let owner = "drplan_owner_\(suffix)", host = "drplan_host_\(suffix)", db = "evidence_\(suffix)"
        var sql = String(block).replacingOccurrences(of: "drplan_owner", with: owner).replacingOccurrences(of: "drplan_host", with: host)
            .replacingOccurrences(of: "DATABASE evidence", with: "DATABASE \(db)")
        if let first = sql.range(of: "PASSWORD '…'") { sql.replaceSubrange(first, with: "PASSWORD 'owner-pw'") }
        sql = sql.replacingOccurrences(of: "PASSWORD '…'", with: "PASSWORD 'host-pw'")
        let lines = sql.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("--") && !$0.isEmpty }
        let split = try #require(lines.firstIndex { $0.hasPrefix("CREATE DATABASE") })
        defer {
            _ = try? s.sql("DROP DATABASE IF EXISTS \(db) WITH (FORCE)")
            _ = try? s.sql("DROP ROLE IF EXISTS \(host)")
            _ = try? s.sql("DROP ROLE IF EXISTS \(owner)")
        }
        for statement in lines[...split] { try s.sql(statement) }
        let base = "postgresql://"
        let hostPort = String(s.dsn[(s.dsn.range(of: "@")?.upperBound ?? s.dsn.startIndex)...].prefix { $0 != "/" })
        let ownerURL = "\(base)\(owner)@\(hostPort)/\(db)", hostURL = "\(base)\(host)@\(hostPort)/\(db)"
        let migrated = try CLITests.run(["evidence", "migrate", "--evidence", ownerURL], cwd: dir.path, env: ["PGPASSWORD": "owner-pw"])
        #expect(migrated.status == 0, "\(migrated.stderr)")
        for statement in lines[(split + 1)...] { try s.sql(statement, database: db) }

        let backup = try CLITests.run(["backup", "-i", inv, "--evidence", hostURL, "--host", "db1"], cwd: dir.path, env: ["PGPASSWORD": "host-pw"])
        #expect(backup.status == 0, "\(backup.stderr)")
        let verify = try CLITests.run(["evidence", "verify", "-i", inv, "--evidence", hostURL], cwd: dir.path, env: ["PGPASSWORD": "host-pw"])
        #expect(verify.status == 0 && verify.stdout.hasPrefix("ok:"), "\(verify.stdout)\(verify.stderr)")
        for attack in ["UPDATE audit SET event = 'x'", "DELETE FROM audit", "TRUNCATE audit", "DROP TRIGGER audit_no_update ON audit",
                       "ALTER TABLE audit DISABLE TRIGGER ALL", "DELETE FROM checkpoints", "DROP TABLE runs"] {
            let r = try Tools.run(executable: s.psql, ["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "--dbname=\(hostURL)", "-c", attack], env: ["PGPASSWORD": "host-pw"])
            #expect(r.status != 0 && (r.stderr.contains("permission denied") || r.stderr.contains("must be owner")), "\(attack): \(r.stderr)")
        }
        #expect(try s.sql("SELECT count(*) FROM runs WHERE status = 'success'", database: db) == "1")
    }

    /// `.ci/postgres.sh VERB DIR`, its output through a file: a server it starts keeps its
    /// inherited descriptors open, and a pipe would never reach end of file.
    static func postgres(_ verb: String, _ dir: String) throws -> Tools.Output {
        // posix_spawn and waitpid, not Process: Foundation's waitUntilExit was seen to hang on
        // this script once the server it starts had detached.
        let out = dir + ".\(verb).out"
        let argv = ["/bin/bash", "-c", "bash \"$0\" \(verb) \"$1\" > \"$2\" 2>&1 < /dev/null", CLITests.root + "/.ci/postgres.sh", dir, out]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/bash", nil, nil, &cargs, environ) == 0 else { throw CocoaError(.fileNoSuchFile) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Tools.Output(status: (status >> 8) & 0xff, stdout: try String(contentsOfFile: out, encoding: .utf8), stderr: "")
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
