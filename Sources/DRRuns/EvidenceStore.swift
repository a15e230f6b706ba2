import CEL
import Crypto
import DRFacts
import DRInventory
import Foundation
import GRDB
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
                host: String = ProcessInfo.processInfo.hostName, pid: Int32 = getpid(), startedAt: Date = Date(), status: Status = .running) {
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

/// The evidence store: SQLite through GRDB, WAL, versioned migrations. Runs, per-job locks,
/// and an append-only audit log in which each entry holds the hash of the one before.
public final class EvidenceStore: @unchecked Sendable {
    let db: any DatabaseWriter
    public let path: String
    /// Set once, before recording, by `useSigningKey(_:)`: each finished run is then anchored
    /// by a signed checkpoint.
    var signer: Curve25519.Signing.PrivateKey?
    /// An empty store in memory, for commands that only read repositories and must not
    /// create an evidence file (`drplan snapshots`, `check-repository` without a store).
    public static func ephemeral() throws(EvidenceError) -> EvidenceStore { try EvidenceStore(memory: ()) }

    private init(memory: Void) throws(EvidenceError) {
        path = ":memory:"
        isReadOnly = false
        do {
            db = try DatabaseQueue()
            try Self.migrator.migrate(db)
        } catch {
            throw EvidenceError(kind: .unreadable, message: "cannot open an in-memory evidence store: \(error)")
        }
    }

    /// Opened by `reading(_:)`: nothing is ever written, and runs whose process is gone are
    /// shown as interrupted without being marked so.
    public let isReadOnly: Bool

    /// Opens the store at `path` for commands that only read (`check`, `facts`, `plan`,
    /// `report`, `history`, `eval`, `evidence verify`): no migration, no marking of
    /// interrupted runs, no lock, nothing written, so reading evidence never changes it. A
    /// store an older drplan wrote is upgraded in a copy in memory (SQLite's backup API); the
    /// file is upgraded by the next command that records.
    public static func reading(_ path: String) throws(EvidenceError) -> EvidenceStore {
        guard FileManager.default.fileExists(atPath: path) else {
            throw EvidenceError(kind: .unreadable, message: "no evidence store at \(path)")
        }
        do {
            var config = Configuration()
            config.readonly = true
            config.busyMode = .timeout(30)
            let file = try DatabaseQueue(path: path, configuration: config)
            if try file.read({ try Self.migrator.hasCompletedMigrations($0) }) { return EvidenceStore(path: path, readOnly: file) }
            let copy = try DatabaseQueue()
            try file.backup(to: copy)
            try Self.migrator.migrate(copy)
            return EvidenceStore(path: path, readOnly: copy)
        } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be read: \(error); check the path and its permissions, or pass another with --evidence")
        }
    }

    private init(path: String, readOnly db: DatabaseQueue) {
        self.path = path
        self.db = db
        isReadOnly = true
    }

    /// Excerpts of engine output are cut to this many characters.
    public static let outputLimit = 8_192

    /// Opens (creating when `create`) the store at `path`, migrates it, and marks runs left
    /// `running` by a process that no longer exists as `interrupted`.
    public init(path: String, create: Bool = true) throws(EvidenceError) {
        self.path = path
        isReadOnly = false
        do {
            if !create && !FileManager.default.fileExists(atPath: path) {
                throw EvidenceError(kind: .unreadable, message: "no evidence store at \(path)")
            }
            // A bare file name ("evidence.sqlite") has no directory to create: it is the current one.
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            // Two processes opening a new store at once would both run the first migration
            // ("table runs already exists"): opening and migrating is serialized by an flock on
            // the store's directory (not on the database file, whose fcntl locks SQLite owns).
            let dirFd = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
            if dirFd >= 0 { flock(dirFd, LOCK_EX) }
            defer { if dirFd >= 0 { flock(dirFd, LOCK_UN); close(dirFd) } }
            // Concurrent drplan processes wait for each other's short write transactions
            // instead of failing with SQLite's raw "database is locked".
            var config = Configuration()
            config.busyMode = .timeout(30)
            db = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(db)
        } catch let e as EvidenceError {
            throw e
        } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be opened: \(error); check the path and its permissions, or pass another with --evidence")
        }
        try markInterrupted()
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE runs (
                  id TEXT PRIMARY KEY, kind TEXT NOT NULL, job TEXT, restore_test TEXT, engine TEXT NOT NULL, storage TEXT,
                  host TEXT NOT NULL, pid INTEGER NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
                  bytes_read INTEGER NOT NULL DEFAULT 0, bytes_written INTEGER NOT NULL DEFAULT 0, files INTEGER NOT NULL DEFAULT 0,
                  snapshot TEXT, verified_files INTEGER NOT NULL DEFAULT 0, verified_bytes INTEGER NOT NULL DEFAULT 0,
                  error TEXT, output TEXT);
                CREATE INDEX runs_job ON runs(job, started_at);
                CREATE TABLE locks (job TEXT PRIMARY KEY, run_id TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, acquired_at TEXT NOT NULL);
                CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL,
                  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
                CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                """)
        }
        // Interrupted runs are found when the store is next opened, perhaps by a command that sends
        // no alerts; this remembers which still owe one (older rows count as alerted).
        m.registerMigration("v2") { db in
            try db.execute(sql: "ALTER TABLE runs ADD COLUMN alert_pending INTEGER NOT NULL DEFAULT 0")
        }
        // Evidence per (job, asset, target): each copy is proven on its own.
        m.registerMigration("v3") { db in
            try db.execute(sql: "ALTER TABLE runs ADD COLUMN asset TEXT")
            try db.execute(sql: "CREATE INDEX runs_target ON runs(job, storage, started_at)")
        }
        // The snapshots each repository was seen to hold, so that one that disappears (deleted
        // by hand, lost with a file) is reported instead of silently replaced by an older one.
        m.registerMigration("v4") { db in
            try db.execute(sql: """
                CREATE TABLE repository_snapshots (repository TEXT NOT NULL, storage TEXT NOT NULL, snapshot TEXT NOT NULL,
                  first_seen TEXT NOT NULL, forgotten_at TEXT, PRIMARY KEY (repository, snapshot));
                """)
        }
        // What drplan measured of a storage itself, apart from any run's data: whether its
        // Object Lock holds (read back from the bucket and from an object written), and the
        // repository's size and object count after each backup (kind `capacity`).
        m.registerMigration("v5") { db in
            try db.execute(sql: """
                CREATE TABLE storage_checks (seq INTEGER PRIMARY KEY AUTOINCREMENT, storage TEXT NOT NULL, kind TEXT NOT NULL,
                  at TEXT NOT NULL, ok INTEGER NOT NULL, detail TEXT NOT NULL, run_id TEXT, bytes INTEGER, objects INTEGER);
                CREATE INDEX storage_checks_storage ON storage_checks(storage, at);
                """)
        }
        return m
    }

    /// Interrupted runs whose alert has not been sent yet, oldest first.
    public func interruptionsToAlert() throws(EvidenceError) -> [RunRecord] {
        let ids = try read { db in try String.fetchAll(db, sql: "SELECT id FROM runs WHERE status = 'interrupted' AND alert_pending = 1") }
        return try runs().filter { ids.contains($0.id) }
    }

    /// Records that an interrupted run's alert went out (or was attempted).
    public func markAlerted(_ id: String) throws(EvidenceError) {
        try write { db in try db.execute(sql: "UPDATE runs SET alert_pending = 0 WHERE id = ?", arguments: [id]) }
    }

    public static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    public static func date(_ s: String?) -> Date? {
        guard let s else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s)
    }

    static func alive(_ pid: Int32, host: String) -> Bool {
        host != ProcessInfo.processInfo.hostName || kill(pid, 0) == 0 || errno == EPERM
    }

    func write<T>(_ body: (Database) throws -> T) throws(EvidenceError) -> T {
        do { return try db.write(body) } catch let e as EvidenceError { throw e } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be written: \(error)")
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(EvidenceError) -> T {
        do { return try db.read(body) } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be read: \(error)")
        }
    }

    // MARK: runs and locks

    /// Records a new run and takes its job's lock; a live holder is named in the error.
    public func begin(_ run: RunRecord) throws(EvidenceError) -> RunRecord {
        try write { db in
            if let job = run.job, run.kind != .restoreTest {
                if let row = try Row.fetchOne(db, sql: "SELECT run_id, host, pid, acquired_at FROM locks WHERE job = ?", arguments: [job]) {
                    let host: String = row["host"], pid: Int32 = row["pid"]
                    // A holder on another host cannot be asked whether it runs: its lock
                    // expires as a repository lock does, 30 minutes after it was taken.
                    let acquired = Self.date(row["acquired_at"]) ?? .distantPast
                    let expired = host != ProcessInfo.processInfo.hostName && Date().timeIntervalSince(acquired) > BuiltinRepository.staleLockAge
                    if !expired && Self.alive(pid, host: host) {
                        let since: String = row["acquired_at"], holder: String = row["run_id"]
                        throw EvidenceError(kind: .locked, message: "job '\(job)' is already running: run \(holder) (pid \(pid) on \(host), since \(since)); wait for it to finish")
                    }
                    try db.execute(sql: "DELETE FROM locks WHERE job = ?", arguments: [job])
                    let holder: String = row["run_id"], since: String = row["acquired_at"]
                    try Self.append(db, "lock.broken", ["job": job, "holder": holder, "host": host, "pid": String(pid), "since": since,
                                                         "reason": expired ? "held for more than 30 minutes by a host that cannot be asked" : "its process no longer runs"])
                }
                try db.execute(sql: "INSERT INTO locks (job, run_id, host, pid, acquired_at) VALUES (?, ?, ?, ?, ?)",
                               arguments: [job, run.id, run.host, run.pid, Self.iso(run.startedAt)])
            }
            try db.execute(sql: """
                INSERT INTO runs (id, kind, job, restore_test, asset, engine, storage, host, pid, started_at, status)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')
                """, arguments: [run.id, run.kind.rawValue, run.job, run.restoreTest, run.asset, run.engine, run.storage, run.host, run.pid, Self.iso(run.startedAt)])
            try Self.append(db, "run.started", ["run": run.id, "kind": run.kind.rawValue, "job": run.job ?? "", "restore_test": run.restoreTest ?? "",
                                                 "row_sha256": try Self.rowDigest(db, run.id)])
            return run
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
        try write { db in
            try db.execute(sql: """
                UPDATE runs SET finished_at = ?, status = ?, bytes_read = ?, bytes_written = ?, files = ?, snapshot = ?,
                  verified_files = ?, verified_bytes = ?, error = ?, output = ? WHERE id = ?
                """, arguments: [Self.iso(r.finishedAt ?? Date()), r.status.rawValue, r.bytesRead, r.bytesWritten, r.files, r.snapshot,
                                 r.verifiedFiles, r.verifiedBytes, r.error, r.output, r.id])
            try db.execute(sql: "DELETE FROM locks WHERE run_id = ?", arguments: [r.id])
            try Self.append(db, "run.finished", ["run": r.id, "status": r.status.rawValue, "snapshot": r.snapshot ?? "", "row_sha256": try Self.rowDigest(db, r.id)])
        }
        try checkpoint()
    }

    /// Runs still `running` whose process is gone (killed, crashed) become `interrupted`, never `success`.
    func markInterrupted() throws(EvidenceError) {
        try write { db in
            for row in try Row.fetchAll(db, sql: "SELECT id, host, pid FROM runs WHERE status = 'running'") {
                let id: String = row["id"], host: String = row["host"], pid: Int32 = row["pid"]
                guard !Self.alive(pid, host: host) else { continue }
                try db.execute(sql: "UPDATE runs SET status = 'interrupted', alert_pending = 1, finished_at = ?, error = 'the process running it ended before it finished' WHERE id = ?",
                               arguments: [Self.iso(Date()), id])
                try db.execute(sql: "DELETE FROM locks WHERE run_id = ?", arguments: [id])
                try Self.append(db, "run.interrupted", ["run": id, "row_sha256": try Self.rowDigest(db, id)])
            }
        }
    }

    /// Compares what a repository lists with what the evidence saw it hold: records the new
    /// snapshots, and returns those seen before, never forgotten by a prune, and now gone.
    public func reconcileSnapshots(repository: String, storage: String, listed: Set<String>) throws(EvidenceError) -> [(snapshot: String, firstSeen: String)] {
        try write { db in
            var vanished: [(String, String)] = []
            for row in try Row.fetchAll(db, sql: "SELECT snapshot, first_seen FROM repository_snapshots WHERE repository = ? AND forgotten_at IS NULL", arguments: [repository]) {
                let id: String = row["snapshot"]
                if !listed.contains(id) { vanished.append((id, row["first_seen"])) }
            }
            let now = Self.iso(Date())
            for id in listed {
                try db.execute(sql: "INSERT OR IGNORE INTO repository_snapshots (repository, storage, snapshot, first_seen) VALUES (?, ?, ?, ?)", arguments: [repository, storage, id, now])
            }
            for (id, _) in vanished {
                try Self.append(db, "snapshot.vanished", ["repository": repository, "storage": storage, "snapshot": id])
            }
            return vanished
        }
    }

    /// Records that drplan itself removed these snapshots (prune, repair), so that their
    /// absence is expected.
    public func forgetSnapshots(repository: String, _ ids: [String]) throws(EvidenceError) {
        try write { db in
            for id in ids {
                try db.execute(sql: "UPDATE repository_snapshots SET forgotten_at = ? WHERE repository = ? AND snapshot = ?", arguments: [Self.iso(Date()), repository, id])
            }
            if !ids.isEmpty { try Self.append(db, "snapshots.forgotten", ["repository": repository, "snapshots": ids.sorted().joined(separator: " "), "count": String(ids.count)]) }
        }
    }

    /// Records one measurement of a storage (`kind`: `object_lock` or `capacity`); an Object
    /// Lock check is also audited.
    public func recordStorageCheck(storage: String, kind: String, ok: Bool, detail: String, run: String?, at: Date = Date(),
                                   bytes: Int64? = nil, objects: Int? = nil) throws(EvidenceError) {
        try write { db in
            try db.execute(sql: "INSERT INTO storage_checks (storage, kind, at, ok, detail, run_id, bytes, objects) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           arguments: [storage, kind, Self.iso(at), ok ? 1 : 0, detail, run, bytes, objects])
            if kind == "object_lock" { try Self.append(db, "storage.\(kind).\(ok ? "verified" : "failed")", ["storage": storage, "detail": detail, "run": run ?? ""]) }
        }
    }

    /// Records a filesystem measurement (kind `filesystem`): free bytes in `bytes`, total
    /// bytes in `objects`, so that stores written before it need no migration to be read.
    public func recordFilesystem(storage: String, _ space: FilesystemSpace.Space, run: String?, at: Date = Date()) throws(EvidenceError) {
        try recordStorageCheck(storage: storage, kind: "filesystem", ok: true, detail: "", run: run, at: at, bytes: space.free, objects: Int(space.total))
    }

    /// Storage checks, oldest first, up to an instant.
    public struct StorageCheck: Sendable {
        public var storage: String, kind: String, at: Date, ok: Bool, detail: String
        public var bytes: Int64?, objects: Int64?
    }

    public func storageChecks(until: Date? = nil) throws(EvidenceError) -> [StorageCheck] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT storage, kind, at, ok, detail, bytes, objects FROM storage_checks WHERE at <= ? ORDER BY seq",
                             arguments: [Self.iso(until ?? .distantFuture)]).compactMap { row in
                guard let at = Self.date(row["at"]) else { return nil }
                let ok: Int = row["ok"]
                return StorageCheck(storage: row["storage"], kind: row["kind"], at: at, ok: ok != 0, detail: row["detail"], bytes: row["bytes"], objects: row["objects"])
            }
        }
    }

    /// Everything the facts measure from this store: runs and storage checks, up to `until`.
    /// `runs`: the store's runs when the caller has read them already (an export measures
    /// the start and the end of a period from one read).
    public func measured(until: Date? = nil, runs read: [RunRecord]? = nil) throws(EvidenceError) -> MeasuredEvidence {
        let all: [RunRecord]
        if let read { all = read } else { all = try runs() }
        let runs = all.filter { r in until.map { r.startedAt <= $0 } ?? true }
        var m = MeasuredEvidence(runs: runs)
        m.store = MeasuredEvidence.Store(chainStarted: try chainStart().map(Timestamp.init), oldestRun: runs.first.map { Timestamp($0.startedAt) }, runs: runs.count)
        for c in try storageChecks(until: until) {
            switch c.kind {
            case "object_lock": m.recordLockCheck(storage: c.storage, MeasuredEvidence.LockCheck(at: Timestamp(c.at), ok: c.ok, detail: c.detail))
            case "capacity":
                if let b = c.bytes, let o = c.objects {
                    m.capacity[c.storage] = .init(at: Timestamp(c.at), bytes: b, objects: o)
                    m.sizeHistory[c.storage, default: []].append(.init(at: Timestamp(c.at), bytes: b))
                }
            case "filesystem": if let free = c.bytes, let total = c.objects { m.filesystems[c.storage] = .init(at: Timestamp(c.at), free: free, total: total) }
            default: continue
            }
        }
        return m
    }

    /// When each target last had a run of restore test `id` (any outcome), for rotation.
    public func lastRuns(restoreTest id: String) throws(EvidenceError) -> [String: Date] {
        try read { db in
            var out: [String: Date] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT storage, MAX(started_at) AS at FROM runs WHERE kind = 'restore_test' AND restore_test = ? AND storage IS NOT NULL GROUP BY storage", arguments: [id]) {
                if let s: String = row["storage"], let at = Self.date(row["at"]) { out[s] = at }
            }
            return out
        }
    }

    /// Recorded runs, oldest first, optionally for one job and since an instant.
    public func runs(job: String? = nil, since: Date? = nil) throws(EvidenceError) -> [RunRecord] {
        try read { db in
            var sql = "SELECT * FROM runs WHERE 1 = 1"
            var args: [(any DatabaseValueConvertible)?] = []
            if let job { sql += " AND job = ?"; args.append(job) }
            if let since { sql += " AND started_at >= ?"; args.append(Self.iso(since)) }
            sql += " ORDER BY started_at, id"
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { row in
                var r = RunRecord(id: row["id"], kind: RunRecord.Kind(rawValue: row["kind"]) ?? .backup, job: row["job"], restoreTest: row["restore_test"],
                                  engine: row["engine"], storage: row["storage"], host: row["host"], pid: row["pid"],
                                  startedAt: Self.date(row["started_at"]) ?? Date(timeIntervalSince1970: 0),
                                  status: RunRecord.Status(rawValue: row["status"]) ?? .failed)
                r.finishedAt = Self.date(row["finished_at"])
                r.asset = row["asset"]
                r.bytesRead = row["bytes_read"]; r.bytesWritten = row["bytes_written"]; r.files = row["files"]; r.snapshot = row["snapshot"]
                r.verifiedFiles = row["verified_files"]; r.verifiedBytes = row["verified_bytes"]; r.error = row["error"]; r.output = row["output"]
                // What markInterrupted would record, shown without writing it.
                if isReadOnly, r.status == .running, !Self.alive(r.pid, host: r.host) {
                    r.status = .interrupted
                    r.error = r.error ?? "the process running it ended before it finished"
                }
                return r
            }
        }
    }
}
