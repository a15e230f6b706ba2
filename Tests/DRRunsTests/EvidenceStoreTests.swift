import DRFacts
import Foundation
import GRDB
import Testing
import TestSupport
@testable import DRRuns

@Suite("Evidence store")
struct EvidenceStoreTests {
    @Test("runs are recorded with every field, and history reads them back")
    func runs() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let store = try EvidenceStore(path: dir.path + "/.drplan/evidence.sqlite")
        var run = try store.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas"))
        run.status = .success
        run.bytesRead = 1000; run.bytesWritten = 400; run.files = 3; run.snapshot = "abc123"
        run.output = String(repeating: "x", count: EvidenceStore.outputLimit + 500)
        try store.finish(run)
        let back = try #require(try store.runs(job: "nightly").first)
        #expect(back.status == .success && back.bytesWritten == 400 && back.snapshot == "abc123" && back.finishedAt != nil)
        #expect(back.output?.count == EvidenceStore.outputLimit)
        #expect(try store.runs(job: "other").isEmpty)
        #expect(try store.verifyAudit().isEmpty)
    }

    @Test("a store an older drplan wrote is read through a migrated copy in memory; the file stays as it was, and writing to it fails loudly")
    func readingOldStore() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.path + "/old.sqlite"
        do {
            let queue = try DatabaseQueue(path: path)
            try SQLiteEvidence.migrator.migrate(queue, upTo: "v2")
            try queue.write { db in
                try db.execute(sql: "INSERT INTO runs (id, kind, job, engine, host, pid, started_at, status) VALUES ('r1', 'backup', 'nightly', 'builtin', 'h', 1, '2026-11-30T10:00:00.000Z', 'success')")
            }
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let store = try EvidenceStore.reading(path)
        #expect(try store.runs().map(\.id) == ["r1"])
        _ = try store.measured()   // reads v3–v5's columns and tables, which the file does not have
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(store.isReadOnly)
        // A fresh store opened for reading refuses writes instead of dropping them.
        let fresh = dir.path + "/fresh.sqlite"
        _ = try EvidenceStore(path: fresh)
        #expect(throws: EvidenceError.self) { _ = try EvidenceStore.reading(fresh).begin(RunRecord(kind: .backup, job: "j", engine: "builtin", storage: "s")) }
        #expect(throws: EvidenceError.self) { _ = try EvidenceStore.reading(dir.path + "/none.sqlite") }
    }

    @Test("two runs of one job never overlap: the second is told who holds the lock")
    func lock() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let store = try EvidenceStore(path: dir.path + "/ev.sqlite")
        let first = try store.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas"))
        do {
            _ = try store.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas"))
            Issue.record("a second run took the lock")
        } catch {
            #expect(error.kind == .locked)
            #expect(error.message.contains(first.id) && error.message.contains("pid \(getpid())"))
        }
        _ = try store.begin(RunRecord(kind: .backup, job: "weekly", engine: "builtin", storage: "nas"))   // other jobs are free
        var done = first
        done.status = .success
        try store.finish(done)
        _ = try store.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas"))
    }

    @Test("a run left running by a dead process is marked interrupted on the next open, and its lock released")
    func interrupted() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.path + "/ev.sqlite"
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run(); dead.waitUntilExit()
        do {
            let store = try EvidenceStore(path: path)
            _ = try store.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas", pid: dead.processIdentifier))
        }
        let reopened = try EvidenceStore(path: path)
        let run = try #require(try reopened.runs().first)
        #expect(run.status == .interrupted && run.error?.contains("ended before it finished") == true)
        _ = try reopened.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas"))   // the lock is free again
        #expect(try reopened.verifyAudit().isEmpty)
    }

    @Test("the audit log is append-only, and an edited or deleted entry is detected")
    func auditTampering() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.path + "/ev.sqlite"
        let store = try EvidenceStore(path: path)
        for i in 0..<5 { try store.audit("report.written", ["file": "r\(i).html"]) }
        #expect(try store.verifyAudit().isEmpty)
        // Ordinary SQL cannot change it.
        let q = try DatabaseQueue(path: path)
        #expect(throws: (any Error).self) { try q.write { try $0.execute(sql: "UPDATE audit SET detail = '{}' WHERE seq = 2") } }
        // Someone with the file drops the guard and edits an entry: detected.
        try q.write { db in
            try db.execute(sql: "DROP TRIGGER audit_no_update")
            try db.execute(sql: "UPDATE audit SET detail = '{\"file\":\"forged.html\"}' WHERE seq = 3")
        }
        #expect(try store.verifyAudit() == ["entry 3 (report.written) was edited after it was written"])
        // …or deletes one: detected too.
        try q.write { db in
            try db.execute(sql: "DROP TRIGGER audit_no_delete")
            try db.execute(sql: "DELETE FROM audit WHERE seq = 4")
        }
        let problems = try store.verifyAudit()
        #expect(problems.contains("entries 4…4 are missing") && problems.contains("entry 5 does not follow the entry before it (an entry was deleted or edited)"))
    }

    @Test("a store that cannot be opened is a clear error, not a crash")
    func unreadable() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("ev.sqlite", "this is not a database")
        do { _ = try EvidenceStore(path: dir.path + "/ev.sqlite"); Issue.record("opened garbage") } catch {
            #expect(error.kind == .unreadable && error.message.contains("--evidence"))
        }
        do { _ = try EvidenceStore(path: dir.path + "/none.sqlite", create: false); Issue.record("opened nothing") } catch {
            #expect(error.kind == .unreadable)
        }
    }
}

@Suite("Evidence store: storage measurements")
struct StorageMeasurementStoreTests {
    @Test("a restore test's rate stands for its storage once it restored enough; storage checks reach the facts' evidence")
    func ratesAndChecks() throws {
        let store = try EvidenceStore.ephemeral()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        func test(_ storage: String, bytes: Int64, seconds: Double) -> RunRecord {
            var r = RunRecord(kind: .restoreTest, job: "j", restoreTest: "t", engine: "builtin", storage: storage, startedAt: start, status: .success)
            r.finishedAt = start.addingTimeInterval(seconds)
            r.verifiedBytes = bytes
            return r
        }
        let m = MeasuredEvidence(runs: [test("bucket", bytes: 200 << 20, seconds: 4), test("drive", bytes: 10_000, seconds: 0.5)])
        #expect(abs((m.restoreRates["bucket"]?.bytesPerSecond ?? 0) - Double(200 << 20) / 4) < 1)
        #expect(m.restoreRates["drive"] == nil)   // 10 kB says nothing about bulk restores
        try store.recordStorageCheck(storage: "bucket", kind: "object_lock", ok: false, detail: "no lock", run: nil, at: start)
        try store.recordStorageCheck(storage: "bucket", kind: "object_lock", ok: true, detail: "locked", run: nil, at: start.addingTimeInterval(60))
        try store.recordStorageCheck(storage: "bucket", kind: "capacity", ok: true, detail: "", run: nil, at: start, bytes: 999, objects: 7)
        let measured = try store.measured()
        #expect(measured.lockChecks["bucket"]?.ok == true && measured.capacity["bucket"]?.bytes == 999 && measured.capacity["bucket"]?.objects == 7)
        #expect(try store.measured(until: start.addingTimeInterval(30)).lockChecks["bucket"]?.ok == false)
        #expect(try store.verifyAudit().isEmpty)
    }
}
