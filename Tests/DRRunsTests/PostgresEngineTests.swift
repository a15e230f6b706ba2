import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRRuns

/// The pg_dump engine against a real PostgreSQL server: the one `.ci/postgres.sh` starts
/// (DRPLAN_PG_DSN, DRPLAN_PG_PASSWORD). Without one the tests skip, and fail in CI.
@Suite("pg_dump engine")
struct PostgresEngineTests {
    struct Server {
        let dsn: String, password: String, psql: String
        /// Runs SQL on `database`; throws with psql's message when it fails.
        func sql(_ text: String, database: String? = nil) throws -> String {
            let target = database.map { PostgresBackup.dsn(dsn, database: $0) } ?? dsn
            let r = try Tools.run(executable: psql, ["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "--dbname=\(target)", "-c", text], env: ["PGPASSWORD": password])
            guard r.status == 0 else { throw CocoaError(.featureUnsupported, userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    static func server() -> Server? {
        let env = ProcessInfo.processInfo.environment
        guard let dsn = env["DRPLAN_PG_DSN"], let password = env["DRPLAN_PG_PASSWORD"] else {
            _ = Tools.skip("pg_dump engine test", because: "no PostgreSQL server (start one with: eval \"$(bash .ci/postgres.sh start /tmp/drplan-pg)\")") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        guard let psql = try? ExternalTool.locate("psql", package: "postgresql-client"), (try? ExternalTool.locate("pg_dump", package: "postgresql-client")) != nil else {
            _ = Tools.skip("pg_dump engine test", because: "pg_dump or psql is missing (apt-get install postgresql-client)") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        return Server(dsn: dsn, password: password, psql: psql)
    }

    /// A database with two schemas, a quoted table name and a few hundred rows.
    static func makeDatabase(_ s: Server) throws -> String {
        let name = "drplan_test_" + UUID().uuidString.prefix(8).lowercased()
        _ = try s.sql("CREATE DATABASE \(name)")
        _ = try s.sql("""
            CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
            INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 250) g;
            CREATE SCHEMA ledger;
            CREATE TABLE ledger."Entries" (id bigint PRIMARY KEY, customer int REFERENCES customers(id), amount numeric(12,2));
            INSERT INTO ledger."Entries" SELECT g, 1 + g % 250, g * 1.5 FROM generate_series(1, 1000) g;
            CREATE TABLE empty_table (x int);
            """, database: name)
        return name
    }

    @Test("backup with pg_dump -Fc, restore test into a scratch database with row counts, scratch dropped")
    func roundTrip() throws {
        guard let server = Self.server() else { return }
        let db = try Self.makeDatabase(server)
        defer { _ = try? server.sql("DROP DATABASE IF EXISTS \(db)") }
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("target")
        let inv = try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", """
            drplan: 1
            sites: [{ id: s, kind: datacenter }]
            storage: [{ id: nas, kind: nas, site: s, path: target, create: true }]
            assets:
              - { id: crm, kind: database, site: s, source: { postgres: "\(PostgresBackup.dsn(server.dsn, database: db))", password: "env:DRPLAN_PG_PASSWORD" } }
            jobs: [{ id: crm-dump, assets: [crm], engine: pg_dump, schedule: "@daily", targets: [nas] }]
            restore_tests: [{ id: crm-restore, job: crm-dump, scope: full }]
            """)])
        let runner = Runner(inventory: inv, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let backups = try runner.backup(jobs: [])
        #expect(backups.map(\.status) == [.success], "\(backups.map { $0.error ?? "" })")
        #expect(backups[0].bytesRead > 1000 && backups[0].engine == "pg_dump")
        // The database changes after the backup; the restore test checks the dump, not the live database.
        _ = try server.sql("INSERT INTO customers (name) VALUES ('late')", database: db)
        let tests = try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false)
        #expect(tests.map(\.0.status) == [.success], "\(tests.map { $0.0.error ?? "" })")
        let scratch = "drplan_restore_test_" + (tests.first?.0.id.prefix(8).lowercased() ?? "")
        #expect(try server.sql("SELECT count(*) FROM pg_database WHERE datname = '\(scratch)'") == "0")
    }

    @Test("a password in the DSN is taken out of it: every form, percent-encoded or quoted")
    func splitPassword() {
        #expect(PostgresBackup.split("postgresql://u:s%40cr3t@db:5432/app?sslmode=require") == ("postgresql://u@db:5432/app?sslmode=require", "s@cr3t"))
        #expect(PostgresBackup.split("postgresql://u@db/app?password=pw&sslmode=verify-full") == ("postgresql://u@db/app?sslmode=verify-full", "pw"))
        #expect(PostgresBackup.split("postgres://db/app?password=pw") == ("postgres://db/app", "pw"))
        #expect(PostgresBackup.split("host=db user=u password='it''s \\' x' dbname=app") .password != nil)
        #expect(PostgresBackup.split("host=db password=plain dbname=app") == ("host=db dbname=app", "plain"))
        #expect(PostgresBackup.split("postgresql://u@db/app") == ("postgresql://u@db/app", nil))
    }

    @Test("a password written in the DSN never reaches a command line: pg_dump and psql get it through PGPASSWORD")
    func passwordOffTheCommandLine() throws {
        guard let server = Self.server() else { return }
        let db = try Self.makeDatabase(server)
        defer { _ = try? server.sql("DROP DATABASE IF EXISTS \(db)") }
        let dir = try TempDir(); defer { dir.cleanup() }
        let canary = server.password
        // The server's DSN with its password written into the userinfo, as users do.
        let dsn = PostgresBackup.dsn(server.dsn, database: db).replacingOccurrences(of: "://drplan@", with: "://drplan:\(canary)@")
        #expect(dsn.contains(canary))
        // Sample every process's command line while the dump runs.
        let seen = LockedBox<[String]>([])
        let stop = LockedBox<Bool>(false)
        let sampler = Thread {
            while !stop.withLock({ $0 }) {
                for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where pid.allSatisfy(\.isNumber) {
                    if let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), String(decoding: cmd, as: UTF8.self).contains(canary) {
                        seen.withLock { $0.append(String(decoding: cmd.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)) }
                    }
                }
                usleep(2000)
            }
        }
        sampler.start()
        let counts = try PostgresBackup.dump(dsn: dsn, password: nil, into: URL(fileURLWithPath: dir.path + "/staging"))
        let problems = try PostgresBackup.verify(restoredIn: URL(fileURLWithPath: dir.path + "/staging"), dsn: dsn, password: nil, scratch: "drplan_restore_test_pw\(db.suffix(8))")
        stop.withLock { $0 = true }
        while !sampler.isFinished { usleep(1000) }
        #expect(counts["public.customers"] == 250 && problems.isEmpty, "\(problems)")
        #expect(seen.withLock { $0 }.isEmpty, "the password was on a command line: \(seen.withLock { $0 })")
    }

    @Test("a restored dump whose row counts differ from the backup's names the table")
    func rowCountMismatch() throws {
        guard let server = Self.server() else { return }
        let db = try Self.makeDatabase(server)
        defer { _ = try? server.sql("DROP DATABASE IF EXISTS \(db)") }
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("target")
        let staging = URL(fileURLWithPath: dir.path + "/dump")
        let dsn = PostgresBackup.dsn(server.dsn, database: db)
        let counts = try PostgresBackup.dump(dsn: dsn, password: server.password, into: staging)
        #expect(counts == ["public.customers": 250, "ledger.Entries": 1000, "public.empty_table": 0])
        #expect(try PostgresBackup.verify(restoredIn: staging, dsn: dsn, password: server.password, scratch: "drplan_restore_test_ok\(db.suffix(8))").isEmpty)
        var edited = counts
        edited["ledger.Entries"] = 999
        try JSONSerialization.data(withJSONObject: edited).write(to: staging.appendingPathComponent(PostgresBackup.countsName))
        let problems = try PostgresBackup.verify(restoredIn: staging, dsn: dsn, password: server.password, scratch: "drplan_restore_test_bad\(db.suffix(8))")
        #expect(problems == ["table ledger.Entries has 1000 rows after the restore, the backup recorded 999"])
        #expect(try server.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'drplan_restore_test_%\(db.suffix(8))'") == "0")
    }

    @Test("a wrong database password is a permanent error quoting the server")
    func wrongPassword() throws {
        guard let server = Self.server() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("target")
        do {
            _ = try PostgresBackup.dump(dsn: server.dsn, password: "wrong", into: URL(fileURLWithPath: dir.path + "/dump"))
            Issue.record("pg_dump with a wrong password succeeded")
        } catch {
            #expect(error.permanent && error.message.contains("password authentication failed"), "\(error.message)")
        }
    }

    @Test("a DSN is pointed at another database, in URI and keyword forms")
    func dsnRewrite() {
        #expect(PostgresBackup.dsn("postgresql://u@h:5432/app?sslmode=require", database: "scratch") == "postgresql://u@h:5432/scratch?sslmode=require")
        #expect(PostgresBackup.dsn("postgresql://u@h", database: "scratch") == "postgresql://u@h/scratch")
        #expect(PostgresBackup.dsn("host=h user=u dbname=app", database: "scratch") == "host=h user=u dbname=app dbname=scratch")
    }
}
