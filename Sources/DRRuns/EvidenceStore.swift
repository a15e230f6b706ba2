import CEL
import Crypto
import DRFacts
import DRInventory
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A recorded run (runs.md): a backup, a restore test or a prune, with what it read, wrote and verified.
public struct RunRecord: Sendable, Equatable {
    public enum Kind: String, Sendable { case backup, restoreTest = "restore_test", prune }
    public enum Status: String, Sendable { case running, success, failed, interrupted }
    public var id: String
    public var kind: Kind
    public var job: String?
    public var restoreTest: String?
    /// The asset this run covers (one run per job, asset and target); nil for a command job's run.
    public var asset: String?
    public var engine: String
    public var storage: String?
    public var host: String
    public var pid: Int32
    public var startedAt: Date
    public var finishedAt: Date?
    public var status: Status
    public var bytesRead: Int64 = 0
    public var bytesWritten: Int64 = 0
    public var files: Int64 = 0
    public var snapshot: String?
    public var verifiedFiles: Int64 = 0
    public var verifiedBytes: Int64 = 0
    public var error: String?
    /// A bounded excerpt of the engine's output.
    public var output: String?
    /// The run failed because an engine's program is not installed (not stored; exit status 3).
    public var missingTool = false

    public init(id: String = UUID().uuidString.lowercased(), kind: Kind, job: String?, restoreTest: String? = nil, asset: String? = nil, engine: String, storage: String?,
                host: String = ThisHost.name, pid: Int32 = getpid(), startedAt: Date = Date(), status: Status = .running) {
        self.id = id; self.kind = kind; self.job = job; self.restoreTest = restoreTest; self.asset = asset; self.engine = engine; self.storage = storage
        self.host = host; self.pid = pid; self.startedAt = startedAt; self.status = status
    }
}

/// Why the evidence store refused: a held lock names its holder; other failures are I/O.
public struct EvidenceError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case locked, unreadable, tampered }
    public var kind: Kind
    public var message: String
    public var description: String { message }
}

/// The evidence store: runs, per-job locks, and an append-only audit log in which each entry
/// holds the hash of the one before, written once over `EvidenceDatabase` (SQLite beside the
/// inventory, or PostgreSQL for a fleet).
public final class EvidenceStore: @unchecked Sendable {
    let db: any EvidenceDatabase
    /// The store as it may be printed (a path, or a URL without its password).
    public var path: String { db.location }
    /// The host this store records as and asks after: it marks only its own dead runs.
    public let host: String
    /// Set once, before recording, by `useSigningKey(_:)`: each finished run is then anchored
    /// by a signed checkpoint.
    var signer: Curve25519.Signing.PrivateKey?
    /// A job lock held by another host is taken over when it has not been renewed for this
    /// long: its holder crashed or lost the store. Holders renew every `leaseDuration / 5`.
    public var leaseDuration: TimeInterval = 5 * 60
    private let renewal = LockedBox<DispatchSourceTimer?>(nil)

    /// Opened by `reading(_:)`: nothing is ever written, and runs whose process is gone are
    /// shown as interrupted without being marked so.
    public let isReadOnly: Bool

    init(db: any EvidenceDatabase, readOnly: Bool, host: String = ThisHost.name) {
        self.db = db; isReadOnly = readOnly; self.host = host
    }

    deinit { renewal.withLock { $0?.cancel() } }

    /// An empty store in memory, for commands that only read repositories and must not
    /// create an evidence file (`drplan snapshots`, `check-repository` without a store).
    public static func ephemeral() throws(EvidenceError) -> EvidenceStore { EvidenceStore(db: try SQLiteEvidence.memory(), readOnly: false) }

    /// Opens the store for commands that only read (`check`, `facts`, `plan`, `report`,
    /// `history`, `eval`, `evidence verify`): no migration, no marking of interrupted runs, no
    /// lock, nothing written, so reading evidence never changes it. `location`: a path or a
    /// `postgresql://` URL; `password`: the inventory's `evidence.password`, resolved.
    public static func reading(_ location: String, password: String? = nil) throws(EvidenceError) -> EvidenceStore {
        guard let store = try readingIfPresent(location, password: password) else {
            throw EvidenceError(kind: .unreadable, message: "no evidence store at \(PostgresLocation.display(of: location))")
        }
        return store
    }

    /// `reading`, or nil when there is no store there yet (no file; a database without
    /// drplan's tables): commands that only read judge from no evidence, and create nothing.
    public static func readingIfPresent(_ location: String, password: String? = nil) throws(EvidenceError) -> EvidenceStore? {
        guard PostgresLocation.isURL(location) else {
            guard FileManager.default.fileExists(atPath: location) else { return nil }
            return EvidenceStore(db: try SQLiteEvidence.reading(location), readOnly: true)
        }
        let pg = try PostgresEvidence.connect(try PostgresLocation.parse(location), password: password)
        let state = try pg.schemaState()
        guard state.exists else { return nil }
        guard state.missing.isEmpty else {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(pg.location) was written by an older drplan (migrations \(state.missing.joined(separator: ", ")) not applied); run 'drplan evidence migrate --evidence \(pg.location)' first (commands that only read never change it)")
        }
        return EvidenceStore(db: pg, readOnly: true)
    }

    /// Excerpts of engine output are cut to this many characters.
    public static let outputLimit = 8_192

    /// Opens (creating when `create`) the store at `path` (a file, or a `postgresql://` URL),
    /// applies its migrations, and marks this host's runs left `running` by a process that no
    /// longer exists as `interrupted`.
    public convenience init(path: String, create: Bool = true, password: String? = nil, host: String = ThisHost.name) throws(EvidenceError) {
        if PostgresLocation.isURL(path) {
            let pg = try PostgresEvidence.connect(try PostgresLocation.parse(path), password: password)
            if !create, !(try pg.schemaState().exists) { throw EvidenceError(kind: .unreadable, message: "no evidence store at \(pg.location)") }
            try pg.migrate()
            self.init(db: pg, readOnly: false, host: host)
        } else {
            self.init(db: try SQLiteEvidence.open(path, create: create), readOnly: false, host: host)
        }
        try markInterrupted()
    }

    /// Interrupted runs whose alert has not been sent yet, oldest first.
    public func interruptionsToAlert() throws(EvidenceError) -> [RunRecord] {
        let ids = Set(try read { tx throws(EvidenceError) in
            try tx.rows("SELECT id FROM runs WHERE status = 'interrupted' AND alert_pending = 1 AND host = ?", [.text(host)]).map { r throws(EvidenceError) in try r.text("id") }
        })
        guard !ids.isEmpty else { return [] }
        return try runs().filter { ids.contains($0.id) }
    }

    /// Records that an interrupted run's alert went out (or was attempted).
    public func markAlerted(_ id: String) throws(EvidenceError) {
        try write { tx throws(EvidenceError) in try tx.execute("UPDATE runs SET alert_pending = 0 WHERE id = ?", [.text(id)]) }
    }

    /// RFC 3339 with milliseconds, UTC: how every time in the store is written. A format
    /// style (a value), not a formatter per call: reading a fleet's runs parses millions.
    static let isoStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    public static func iso(_ d: Date) -> String { isoStyle.format(d) }

    /// A stored time (nil: none, or not one drplan wrote).
    public static func date(_ s: String?) -> Date? {
        guard let s else { return nil }
        return try? isoStyle.parse(s)
    }

    /// Whether a run or lock holder may still be working: on another host it cannot be asked,
    /// so it is taken to be; here, its process must exist.
    func alive(_ pid: Int32, host: String) -> Bool {
        host != self.host || kill(pid, 0) == 0 || errno == EPERM
    }

    func write<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T {
        guard !isReadOnly else { throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) was opened for reading only; nothing was written") }
        return try db.write(body)
    }

    func read<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T { try db.read(body) }

    // MARK: runs and locks

    /// Records a new run and takes its job's lock (a lease, renewed while this process runs);
    /// a live holder is named in the error.
    public func begin(_ run: RunRecord) throws(EvidenceError) -> RunRecord {
        let result = try write { tx throws(EvidenceError) -> RunRecord in
            if let job = run.job, run.kind != .restoreTest {
                if let row = try tx.row("SELECT run_id, host, pid, acquired_at, renewed_at FROM locks WHERE job = ?", [.text(job)]) {
                    let holderHost = try row.text("host"), pid = Int32(truncatingIfNeeded: try row.int("pid"))
                    let since = try row.text("acquired_at"), holder = try row.text("run_id")
                    // A holder on another host cannot be asked whether it runs: its lease
                    // expires when it stops renewing it (a lock from a drplan that did not
                    // renew expires as a repository lock does, 30 minutes after it was taken).
                    let renewed = Self.date(try row.optionalText("renewed_at"))
                    let age = Date().timeIntervalSince(renewed ?? Self.date(since) ?? .distantPast)
                    let expired = holderHost != host && age > (renewed == nil ? BuiltinRepository.staleLockAge : leaseDuration)
                    if !expired && alive(pid, host: holderHost) {
                        throw EvidenceError(kind: .locked, message: "job '\(job)' is already running: run \(holder) (pid \(pid) on \(holderHost), since \(since)); wait for it to finish")
                    }
                    try tx.execute("DELETE FROM locks WHERE job = ?", [.text(job)])
                    let reason = expired ? "its lease was not renewed for \(Int(age)) s by a host that cannot be asked" : "its process no longer runs"
                    try Self.append(tx, "lock.broken", ["job": job, "holder": holder, "host": holderHost, "pid": String(pid), "since": since, "reason": reason])
                }
                let now = Self.iso(run.startedAt)
                try tx.execute("INSERT INTO locks (job, run_id, host, pid, acquired_at, renewed_at) VALUES (?, ?, ?, ?, ?, ?)",
                               [.text(job), .text(run.id), .text(run.host), .int(Int64(run.pid)), .text(now), .text(now)])
            }
            try tx.execute("""
                INSERT INTO runs (id, kind, job, restore_test, asset, engine, storage, host, pid, started_at, status)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')
                """, [.text(run.id), .text(run.kind.rawValue), Self.opt(run.job), Self.opt(run.restoreTest), Self.opt(run.asset), .text(run.engine),
                      Self.opt(run.storage), .text(run.host), .int(Int64(run.pid)), .text(Self.iso(run.startedAt))])
            try Self.append(tx, "run.started", ["run": run.id, "kind": run.kind.rawValue, "job": run.job ?? "", "restore_test": run.restoreTest ?? "",
                                                 "row_sha256": try Self.rowDigest(tx, run.id)])
            return run
        }
        if run.job != nil, run.kind != .restoreTest { startRenewing() }
        return result
    }

    static func opt(_ s: String?) -> SQLValue { s.map(SQLValue.text) ?? .null }

    /// Renews this process's job leases until it holds none. A renewal that fails is said
    /// out loud: the lease may lapse, and another host may then take the job over.
    private func startRenewing() {
        renewal.withLock { timer in
            guard timer == nil else { return }
            let t = DispatchSource.makeTimerSource(queue: .global())
            let every = max(1, leaseDuration / 5)
            t.schedule(deadline: .now() + every, repeating: every)
            t.setEventHandler { [weak self] in
                guard let self else { return }
                do throws(EvidenceError) {
                    try self.write { tx throws(EvidenceError) in
                        try tx.execute("UPDATE locks SET renewed_at = ? WHERE host = ? AND pid = ?", [.text(Self.iso(Date())), .text(self.host), .int(Int64(getpid()))])
                    }
                } catch {
                    FileHandle.standardError.write(Data("drplan: warning: cannot renew this run's job lock in \(self.path): \(error.message); another host may take the job over once the lease lapses\n".utf8))
                }
            }
            t.resume()
            timer = t
        }
    }

    /// Records how a run ended and releases its lock.
    public func finish(_ run: RunRecord) throws(EvidenceError) {
        var r = run
        if r.finishedAt == nil { r.finishedAt = Date() }
        // Errors and output quote commands, URLs and DSNs: no secret reaches the store (and
        // so history, the runs CSV and JSON, or a bundle).
        r.error = r.error.map(Redaction.text)
        r.output = r.output.map(Redaction.text)
        if let o = r.output, o.count > Self.outputLimit { r.output = String(o.suffix(Self.outputLimit)) }
        let holdsMore = try write { tx throws(EvidenceError) -> Bool in
            try tx.execute("""
                UPDATE runs SET finished_at = ?, status = ?, bytes_read = ?, bytes_written = ?, files = ?, snapshot = ?,
                  verified_files = ?, verified_bytes = ?, error = ?, output = ? WHERE id = ?
                """, [.text(Self.iso(r.finishedAt ?? Date())), .text(r.status.rawValue), .int(r.bytesRead), .int(r.bytesWritten), .int(r.files), Self.opt(r.snapshot),
                      .int(r.verifiedFiles), .int(r.verifiedBytes), Self.opt(r.error), Self.opt(r.output), .text(r.id)])
            try tx.execute("DELETE FROM locks WHERE run_id = ?", [.text(r.id)])
            try Self.append(tx, "run.finished", ["run": r.id, "status": r.status.rawValue, "snapshot": r.snapshot ?? "", "row_sha256": try Self.rowDigest(tx, r.id)])
            return try tx.row("SELECT 1 AS one FROM locks WHERE host = ? AND pid = ?", [.text(host), .int(Int64(getpid()))]) != nil
        }
        if !holdsMore { renewal.withLock { $0?.cancel(); $0 = nil } }
        try checkpoint()
    }

    /// This host's runs still `running` whose process is gone (killed, crashed) become
    /// `interrupted`, never `success`. Another host's runs are left to that host: it alone
    /// can tell whether they still run.
    func markInterrupted() throws(EvidenceError) {
        try write { tx throws(EvidenceError) in
            for row in try tx.rows("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", [.text(host)]) {
                let id = try row.text("id"), pid = Int32(truncatingIfNeeded: try row.int("pid"))
                guard !alive(pid, host: host) else { continue }
                try tx.execute("UPDATE runs SET status = 'interrupted', alert_pending = 1, finished_at = ?, error = 'the process running it ended before it finished' WHERE id = ?",
                               [.text(Self.iso(Date())), .text(id)])
                try tx.execute("DELETE FROM locks WHERE run_id = ?", [.text(id)])
                try Self.append(tx, "run.interrupted", ["run": id, "host": host, "row_sha256": try Self.rowDigest(tx, id)])
            }
        }
    }

    /// When each target last had a run of restore test `id` (any outcome), for rotation.
    public func lastRuns(restoreTest id: String) throws(EvidenceError) -> [String: Date] {
        try read { tx throws(EvidenceError) in
            var out: [String: Date] = [:]
            for row in try tx.rows("SELECT storage, MAX(started_at) AS at FROM runs WHERE kind = 'restore_test' AND restore_test = ? AND storage IS NOT NULL GROUP BY storage", [.text(id)]) {
                if let s = try row.optionalText("storage"), let at = Self.date(try row.optionalText("at")) { out[s] = at }
            }
            return out
        }
    }

    /// Recorded runs, oldest first, optionally for one job, since an instant, on one host.
    public func runs(job: String? = nil, since: Date? = nil, host onHost: String? = nil) throws(EvidenceError) -> [RunRecord] {
        try read { tx throws(EvidenceError) in
            var sql = "SELECT * FROM runs WHERE 1 = 1"
            var args: [SQLValue] = []
            if let job { sql += " AND job = ?"; args.append(.text(job)) }
            if let since { sql += " AND started_at >= ?"; args.append(.text(Self.iso(since))) }
            if let onHost { sql += " AND host = ?"; args.append(.text(onHost)) }
            sql += " ORDER BY started_at, id"
            return try tx.rows(sql, args).map { row throws(EvidenceError) in try record(row) }
        }
    }

    func record(_ row: SQLRow) throws(EvidenceError) -> RunRecord {
        var r = RunRecord(id: try row.text("id"), kind: RunRecord.Kind(rawValue: try row.text("kind")) ?? .backup, job: try row.optionalText("job"),
                          restoreTest: try row.optionalText("restore_test"), engine: try row.text("engine"), storage: try row.optionalText("storage"),
                          host: try row.text("host"), pid: Int32(truncatingIfNeeded: try row.int("pid")),
                          startedAt: Self.date(try row.text("started_at")) ?? Date(timeIntervalSince1970: 0),
                          status: RunRecord.Status(rawValue: try row.text("status")) ?? .failed)
        r.finishedAt = Self.date(try row.optionalText("finished_at"))
        r.asset = try row.optionalText("asset")
        r.bytesRead = try row.int("bytes_read"); r.bytesWritten = try row.int("bytes_written"); r.files = try row.int("files")
        r.snapshot = try row.optionalText("snapshot")
        r.verifiedFiles = try row.int("verified_files"); r.verifiedBytes = try row.int("verified_bytes")
        r.error = try row.optionalText("error"); r.output = try row.optionalText("output")
        // What markInterrupted would record, shown without writing it.
        if isReadOnly, r.status == .running, !alive(r.pid, host: r.host) {
            r.status = .interrupted
            r.error = r.error ?? "the process running it ended before it finished"
        }
        return r
    }
}
