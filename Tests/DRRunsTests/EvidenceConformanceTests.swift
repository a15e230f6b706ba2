import Crypto
import DRFacts
import Foundation
import Testing
import TestSupport
@testable import DRRuns

/// One suite over every evidence database: SQLite in a temporary file, and a fresh database
/// on the real PostgreSQL server `.ci/postgres.sh` starts. Each behaviour the store promises
/// (runs, per-host interruption, leases, one unforked chain, read-only reads, append-only
/// log, checkpoints, copying) is checked on both, by the same code.
@Suite("Evidence store conformance")
struct EvidenceConformanceTests {
    enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case sqlite, postgresql
        var testDescription: String { rawValue }
    }

    /// Where one test's store lives; nil (after a printed skip) when the backend is missing.
    struct Place: @unchecked Sendable {
        let location: String
        let password: String?
        let server: PostgresServer?
        let dir: TempDir
        func open(host: String = "host-a") throws -> EvidenceStore { try EvidenceStore(path: location, password: password, host: host) }
        func reading() throws -> EvidenceStore { try EvidenceStore.reading(location, password: password) }
    }

    static func place(_ b: Backend) throws -> Place? {
        let dir = try TempDir()
        switch b {
        case .sqlite: return Place(location: dir.path + "/evidence.sqlite", password: nil, server: nil, dir: dir)
        case .postgresql:
            guard let server = PostgresServer.fromEnvironment() else {
                _ = Tools.skip("evidence conformance on PostgreSQL", because: "no PostgreSQL server and psql (start one with: eval \"$(bash .ci/postgres.sh start /tmp/drplan-pg)\")") { Issue.record(Comment(rawValue: $0)) }
                return nil
            }
            return Place(location: try server.freshDatabase(), password: server.password, server: server, dir: dir)
        }
    }

    @Test("runs are recorded with every field and read back, per host and in total", arguments: Backend.allCases)
    func runs(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let a = try p.open(host: "host-a"), other = try p.open(host: "host-b")
        var run = try a.begin(RunRecord(kind: .backup, job: "nightly", asset: "docs", engine: "builtin", storage: "nas", host: "host-a"))
        run.status = .success; run.bytesRead = 1000; run.bytesWritten = 400; run.files = 3; run.snapshot = "abc123"
        run.output = String(repeating: "x", count: EvidenceStore.outputLimit + 10)
        try a.finish(run)
        var r2 = try other.begin(RunRecord(kind: .backup, job: "db", engine: "builtin", storage: "nas", host: "host-b"))
        r2.status = .failed; r2.error = "disk full"
        try other.finish(r2)
        let reader = try p.reading()
        let all = try reader.runs()
        #expect(all.count == 2)
        let back = try #require(all.first { $0.id == run.id })
        #expect(back.status == .success && back.bytesWritten == 400 && back.snapshot == "abc123" && back.asset == "docs" && back.host == "host-a")
        #expect(back.output?.count == EvidenceStore.outputLimit)
        #expect(try reader.runs(host: "host-b").map(\.id) == [r2.id])
        #expect(try reader.runs(job: "db").first?.error == "disk full")
        let v = try reader.verification(key: nil)
        #expect(v.problems.isEmpty)
        #expect(v.head.seq == 4)
    }

    @Test("a job's lock is held across hosts; a lapsed lease of another host is taken over and audited", arguments: Backend.allCases)
    func leases(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let a = try p.open(host: "host-a"), other = try p.open(host: "host-b")
        let held = try a.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas", host: "host-a"))
        do {
            _ = try other.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas", host: "host-b"))
            Issue.record("host-b took a lock host-a holds")
        } catch {
            #expect(error.kind == .locked)
            #expect(error.message.contains(held.id) && error.message.contains("host-a"))
        }
        // host-a stops renewing (crashed): past the lease, host-b takes the job over.
        other.leaseDuration = 0.5
        Thread.sleep(forTimeInterval: 1.2)
        let taken = try other.begin(RunRecord(kind: .backup, job: "nightly", engine: "builtin", storage: "nas", host: "host-b"))
        try other.finish(taken)
        let events = try p.reading().audit(fromSeq: 0).map(\.event)
        #expect(events.contains("lock.broken"))
    }

    @Test("a host marks only its own dead runs interrupted, when it next starts", arguments: Backend.allCases)
    func interruptedPerHost(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let dead = try Self.deadPid()
        let a = try p.open(host: "host-a")
        for h in ["host-a", "host-b"] {
            _ = try a.begin(RunRecord(kind: .backup, job: "job-\(h)", engine: "builtin", storage: "nas", host: h, pid: dead))
        }
        _ = try p.open(host: "host-b")   // host-b's start: its own run (its pid is gone here) is interrupted
        let runs = try p.reading().runs()
        #expect(runs.first { $0.host == "host-b" }?.status == .interrupted)
        // host-a's run is left running for host-a to judge (a reader on host-b cannot ask).
        #expect(try EvidenceStore.readingIfPresent(p.location, password: p.password).map { _ in true } == true)
        let raw = try p.open(host: "host-c").runs()
        #expect(raw.first { $0.host == "host-a" }?.status == .running)
        _ = try p.open(host: "host-a")
        #expect(try p.reading().runs().allSatisfy { $0.status == .interrupted })
        #expect(try p.reading().verification(key: nil).problems.isEmpty)
    }

    @Test("concurrent writers on separate connections never fork the chain", arguments: Backend.allCases)
    func concurrentChain(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        _ = try p.open()
        let writers = 8, each = 25
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: writers) { w in
            do {
                let store = try p.open(host: "host-\(w)")
                for i in 0..<each {
                    var run = try store.begin(RunRecord(kind: .backup, job: "job-\(w)", engine: "builtin", storage: "nas", host: "host-\(w)"))
                    run.status = .success; run.files = Int64(i)
                    try store.finish(run)
                }
            } catch { failures.add("\(error)") }
        }
        #expect(failures.values.isEmpty, "\(failures.values)")
        let reader = try p.reading()
        let v = try reader.verification(key: nil)
        #expect(v.problems.isEmpty)
        #expect(v.head.seq == Int64(writers * each * 2))
        #expect(try reader.runs().count == writers * each)
    }

    @Test("reading never creates, migrates or marks: a place with no store reads as none", arguments: Backend.allCases)
    func readOnly(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        #expect(try EvidenceStore.readingIfPresent(p.location, password: p.password) == nil)
        #expect(try EvidenceStore.readingIfPresent(p.location, password: p.password) == nil)
        if let server = p.server, let db = p.location.split(separator: "/").last {
            #expect(try server.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database: String(db)) == "0")
        } else {
            #expect(!FileManager.default.fileExists(atPath: p.location))
        }
        let store = try p.open()
        _ = try store.begin(RunRecord(kind: .backup, job: "j", engine: "builtin", storage: "s", pid: try Self.deadPid()))
        let reader = try p.reading()
        #expect(try reader.runs().first?.status == .interrupted)   // shown so…
        #expect(throws: EvidenceError.self) { _ = try reader.begin(RunRecord(kind: .backup, job: "k", engine: "builtin", storage: "s")) }
        #expect(try p.open(host: "elsewhere").runs().first?.status == .running)   // …but not written
    }

    @Test("the audit log refuses updates and deletes from the database itself", arguments: Backend.allCases)
    func appendOnly(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let store = try p.open()
        try store.audit("test.event", ["k": "v"])
        for sql in ["UPDATE audit SET event = 'x'", "DELETE FROM audit"] {
            #expect(throws: EvidenceError.self) { try store.write { tx throws(EvidenceError) in try tx.execute(sql) } }
        }
        #expect(try store.verifyAudit().isEmpty)
    }

    @Test("signed checkpoints anchor the chain, and a checkpoint that disagrees is caught", arguments: Backend.allCases)
    func checkpoints(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let key = Curve25519.Signing.PrivateKey()
        let store = try p.open()
        try store.useSigningKey(key)
        var run = try store.begin(RunRecord(kind: .backup, job: "j", engine: "builtin", storage: "s"))
        run.status = .success
        try store.finish(run)
        let v = try p.reading().verification(key: key.publicKey)
        #expect(v.problems.isEmpty)
        #expect(v.state == .verifiedSigned)
        #expect(v.checkpoints.last?.seq == v.head.seq)
        // A checkpoint signed by another key is named.
        let forged = try Checkpoints.sign(seq: v.head.seq, head: v.head.hash, at: Date(), with: Curve25519.Signing.PrivateKey())
        try store.db.appendCheckpoint(forged)
        #expect(try p.reading().verification(key: key.publicKey).problems.contains { $0.contains("not by the key given") })
    }

    @Test("a store copied to the other database keeps its chain, runs and checkpoints, and verifies", arguments: Backend.allCases)
    func copy(_ b: Backend) throws {
        guard let from = try Self.place(b), let to = try Self.place(b == .sqlite ? .postgresql : .sqlite) else { return }
        defer { from.dir.cleanup(); to.dir.cleanup() }
        let key = Curve25519.Signing.PrivateKey()
        let store = try from.open()
        try store.useSigningKey(key)
        for i in 0..<5 {
            var run = try store.begin(RunRecord(kind: .backup, job: "j\(i % 2)", engine: "builtin", storage: "s"))
            run.status = .success; run.snapshot = "snap\(i)"
            try store.finish(run)
        }
        try store.recordStorageCheck(storage: "s", kind: "capacity", ok: true, detail: "", run: nil, bytes: 10, objects: 2)
        _ = try store.reconcileSnapshots(repository: "r", storage: "s", listed: ["snap1"])
        let source = try from.reading()
        let result = try EvidenceStore.copy(from: source, to: to.location, password: to.password)
        let sourceSeq = try source.auditHead().seq
        #expect(result.runs == 5 && result.entries == sourceSeq && result.checkpoints > 0)
        let copied = try to.reading()
        let v = try copied.verification(key: key.publicKey)
        #expect(v.problems.isEmpty)
        let sourceHead = try source.verification(key: nil).head
        #expect(v.head == sourceHead)
        #expect(try copied.runs().map(\.id) == source.runs().map(\.id))
        #expect(try copied.storageChecks().count == 1)
        // The copy goes on: a new run chains onto the copied head.
        let next = try to.open()
        try next.finish(try next.begin(RunRecord(kind: .backup, job: "j9", engine: "builtin", storage: "s")))
        #expect(try to.reading().verification(key: nil).problems.isEmpty)
        // A destination that already holds evidence is refused: nothing is merged or replaced.
        #expect(throws: EvidenceError.self) { _ = try EvidenceStore.copy(from: source, to: to.location, password: to.password) }
    }

    @Test("the facts' evidence read in summary is what reading every run gives, to any instant", arguments: Backend.allCases)
    func summarized(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let store = try p.open()
        let t0 = Date(timeIntervalSince1970: 1_790_000_000)
        var i = 0
        for day in 0..<6 {
            for (job, asset) in [("j1", "a1"), ("j1", "a2"), ("j2", nil as String?)] {
                for target in ["s1", "s2"] {
                    i += 1
                    let start = t0.addingTimeInterval(Double(day * 86_400 + i * 60))
                    var r = try store.begin(RunRecord(kind: .backup, job: job, asset: asset, engine: "builtin", storage: target, host: "h\(i % 3)", startedAt: start))
                    r.status = (i % 4 == 0) ? .failed : .success
                    r.finishedAt = start.addingTimeInterval(30)
                    try store.finish(r)
                }
            }
            for (target, bytes) in [("s1", Int64(100 << 20)), ("s2", Int64(1 << 20))] {
                i += 1
                let start = t0.addingTimeInterval(Double(day * 86_400 + 40_000 + i))
                var r = try store.begin(RunRecord(kind: .restoreTest, job: "j1", restoreTest: "t1", engine: "builtin", storage: target, host: "h0", startedAt: start))
                r.status = day == 5 ? .failed : .success
                r.verifiedBytes = bytes
                r.finishedAt = start.addingTimeInterval(20)
                try store.finish(r)
            }
        }
        let reader = try p.reading()
        let all = try reader.runs()
        for until in [nil, t0.addingTimeInterval(2.5 * 86_400)] {
            let expected = try reader.measured(until: until, runs: all)
            let got = try reader.measured(until: until)
            #expect(Self.shape(got) == Self.shape(expected))
        }
        #expect(!(try reader.measured()).restoreRates.isEmpty)
    }

    @Test("check's verification from this machine's mark reads only what is new, gives the same evidence, and still finds edits", arguments: Backend.allCases)
    func fromMark(_ b: Backend) throws {
        guard let p = try Self.place(b) else { return }
        defer { p.dir.cleanup() }
        let store = try p.open()
        var ids: [String] = []
        for i in 0..<6 {
            var r = try store.begin(RunRecord(kind: .backup, job: "j\(i % 2)", engine: "builtin", storage: "s", host: "h\(i % 3)"))
            r.status = i == 1 ? .failed : .success; r.error = i == 1 ? "disk full" : nil
            try store.finish(r)
            ids.append(r.id)
        }
        var pending = try store.begin(RunRecord(kind: .backup, job: "j2", engine: "builtin", storage: "s", host: "h0"))   // running at the mark
        let full = try p.reading().verification(key: nil)
        let mark = try #require(full.mark)
        #expect(full.problems.isEmpty && full.readFrom == 1 && full.fullAt == nil && mark.seq == full.head.seq)
        #expect(mark.closed == nil, "the triggers keep ended runs final: no checksum is needed")
        for job in ["j0", "j3"] { var r = try store.begin(RunRecord(kind: .backup, job: job, engine: "builtin", storage: "s", host: "h4")); r.status = .success; try store.finish(r) }
        pending.status = .failed; pending.error = "cut short"
        try store.finish(pending)

        let (quick, evidence) = try p.reading().verifiedEvidence(key: nil, after: mark)
        #expect(quick.problems.isEmpty, "\(quick.problems)")
        #expect(quick.readFrom == mark.seq + 1 && quick.fullAt == mark.fullAt && quick.head.seq == mark.seq + 5)
        #expect(quick.mark?.seq == quick.head.seq)
        #expect(Self.shape(evidence) == Self.shape(try p.reading().measured()), "the summary from the mark is the summary of every run")

        // Ended runs are final in the database itself.
        #expect(throws: EvidenceError.self) { try store.write { tx throws(EvidenceError) in try tx.execute("UPDATE runs SET status = 'success' WHERE id = ?", [.text(ids[1])]) } }
        #expect(throws: EvidenceError.self) { try store.write { tx throws(EvidenceError) in try tx.execute("DELETE FROM runs WHERE id = ?", [.text(ids[0])]) } }
        // With the triggers gone, a mark carries a checksum of every ended run, and edits are found from it.
        try store.write { tx throws(EvidenceError) in
            for sql in b == .sqlite ? ["DROP TRIGGER runs_final", "DROP TRIGGER runs_no_delete"] : ["ALTER TABLE runs DISABLE TRIGGER runs_final"] { try tx.execute(sql) }
        }
        let unguarded = try #require(try p.reading().verification(key: nil).mark)
        #expect(unguarded.closed != nil)
        #expect(try p.reading().verifiedEvidence(key: nil, after: unguarded).0.readFrom > 1)

        // The failed run (one the facts use), edited: found.
        try store.write { tx throws(EvidenceError) in try tx.execute("UPDATE runs SET status = 'success', error = NULL WHERE id = ?", [.text(ids[1])]) }
        let edited = try p.reading().verifiedEvidence(key: nil, after: unguarded).0
        #expect(edited.mark == nil)
        #expect(edited.problems.contains { $0.contains("run \(ids[1])") && $0.contains("differs from what drplan recorded") }, "\(edited.problems)")
        try store.write { tx throws(EvidenceError) in try tx.execute("UPDATE runs SET status = 'failed', error = 'disk full' WHERE id = ?", [.text(ids[1])]) }
        #expect(try p.reading().verifiedEvidence(key: nil, after: unguarded).0.problems.isEmpty)

        // A run the facts do not use (a success superseded since), backdated: the checksum no longer adds up.
        let original = try #require(try store.read { tx throws(EvidenceError) in try tx.row("SELECT started_at FROM runs WHERE id = ?", [.text(ids[2])]) }?.text("started_at"))
        try store.write { tx throws(EvidenceError) in try tx.execute("UPDATE runs SET started_at = '2020-01-01T00:00:00.000Z' WHERE id = ?", [.text(ids[2])]) }
        let backdated = try p.reading().verifiedEvidence(key: nil, after: unguarded).0
        #expect(backdated.problems.contains { $0.contains("run \(ids[2])") && $0.contains("differs from what drplan recorded") }, "\(backdated.problems)")
        try store.write { tx throws(EvidenceError) in try tx.execute("UPDATE runs SET started_at = ? WHERE id = ?", [.text(original), .text(ids[2])]) }
        #expect(try p.reading().verifiedEvidence(key: nil, after: unguarded).0.readFrom > 1)

        // A mark the log no longer reaches is a finding for check, and a note for a full verification.
        var rewritten = unguarded
        rewritten.hash = String(repeating: "e", count: 64)
        let caught = try p.reading().verifiedEvidence(key: nil, after: rewritten).0
        #expect(caught.problems.first?.contains("the log was rewritten or replaced since") == true && caught.readFrom == 1)
        let whole = try p.reading().verification(key: nil, previous: rewritten)
        #expect(whole.problems.isEmpty && whole.notes.first?.contains("rewritten or replaced") == true && whole.mark != nil)
        var past = unguarded
        past.seq += 5
        #expect(try p.reading().verifiedEvidence(key: nil, after: past).0.problems.first?.contains("entries were removed") == true)

        // A run deleted changes the runs' count against the log: the whole log is read, and the run named.
        try store.write { tx throws(EvidenceError) in try tx.execute("DELETE FROM runs WHERE id = ?", [.text(ids[0])]) }
        let deleted = try p.reading().verifiedEvidence(key: nil, after: unguarded).0
        #expect(deleted.readFrom == 1 && deleted.problems.contains { $0.contains("run \(ids[0]) is in the audit log but not among the runs") }, "\(deleted.problems)")
    }

    /// Everything the facts read of measured evidence, as text to compare.
    static func shape(_ m: MeasuredEvidence) -> String {
        [m.jobs.sorted { $0.key < $1.key }.description, m.targets.sorted { $0.key < $1.key }.description, m.tests.sorted { $0.key < $1.key }.description,
         m.restoreRates.sorted { $0.key < $1.key }.description, m.hostLastRun.sorted { $0.key < $1.key }.description,
         m.hostRuns.sorted { $0.key < $1.key }.description, m.jobsWithAssetRuns.sorted().description,
         "\(m.store?.runs ?? -1) \(String(describing: m.store?.oldestRun)) \(String(describing: m.store?.chainStarted))"].joined(separator: "\n")
    }

    /// A pid that no process has: a child that has exited.
    static func deadPid() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }
}

/// Errors gathered from concurrent workers.
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
    var values: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
