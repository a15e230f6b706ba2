import DRInventory
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a backup produced.
public struct EngineBackup: Sendable {
    public var snapshot: String
    public var files: Int
    public var bytesRead: Int64
    public var bytesWritten: Int64
    /// Sockets, devices and FIFOs met in the source and not backed up.
    public var skipped: [String] = []
    public init(snapshot: String, files: Int, bytesRead: Int64, bytesWritten: Int64, skipped: [String] = []) {
        self.snapshot = snapshot; self.files = files; self.bytesRead = bytesRead; self.bytesWritten = bytesWritten; self.skipped = skipped
    }
}

/// What a restore produced, and what it could not restore intact.
public struct EngineRestore: Sendable {
    public var files: Int
    public var bytes: Int64
    public var damaged: [String: String]
}

/// How far a backup or restore has got, for the terminal display or `--progress json`.
/// Events are typed: `started` opens a run (naming it), `running` reports counts, `done`
/// closes it with its final counts and status; engines send `running` only.
public struct RunProgress: Sendable, Equatable {
    public enum Phase: String, Sendable { case started, running, done }
    public var phase: Phase = .running
    /// Which run (`backup JOB/ASSET → TARGET`), on `started` and `done`.
    public var label: String? = nil
    /// On `done`: success, failed or interrupted.
    public var status: String? = nil
    public var files: Int64 = 0
    public var bytes: Int64 = 0
    /// Known once the engine has scanned its input; nil while unknown (no ETA then).
    public var totalFiles: Int64?
    public var totalBytes: Int64?
    public init(files: Int64 = 0, bytes: Int64 = 0, totalFiles: Int64? = nil, totalBytes: Int64? = nil) {
        self.files = files; self.bytes = bytes; self.totalFiles = totalFiles; self.totalBytes = totalBytes
    }
    public static func started(_ label: String) -> RunProgress { var p = RunProgress(); p.phase = .started; p.label = label; return p }
    public static func done(_ label: String, status: String, files: Int64, bytes: Int64) -> RunProgress {
        var p = RunProgress(files: files, bytes: bytes, totalFiles: files, totalBytes: bytes)
        p.phase = .done; p.label = label; p.status = status
        return p
    }
}

/// Receives progress; called often, from the engine's thread, so it must be cheap.
public typealias ProgressSink = @Sendable (RunProgress) -> Void

/// One snapshot as `drplan snapshots` lists it.
public struct EngineSnapshot: Sendable, Equatable {
    public var id: String
    /// Seconds since the epoch.
    public var time: Int64
    public var tags: [String]
    public var host: String = ""
    /// Bytes of file data, where the engine knows it without reading the whole snapshot.
    public var size: Int64? = nil
    public init(id: String, time: Int64, tags: [String], host: String = "", size: Int64? = nil) {
        self.id = id; self.time = time; self.tags = tags; self.host = host; self.size = size
    }
}

/// A backup engine: how a job's data gets into a storage target and back.
///
/// Contract, checked by the conformance suite for every engine:
/// - `backup` creates one new snapshot tagged with the job id and asset id, or fails without
///   making any snapshot visible; running it twice makes two snapshots and stores unchanged
///   data once.
/// - `snapshots(tag:)` lists only complete snapshots, oldest first. It never creates a
///   repository, and a failed listing throws.
/// - `restore` writes a snapshot into an empty directory (or, with `force`, over one) and
///   reports every file it could not restore intact by path; it never writes outside the
///   target.
/// - `check` reads the repository without changing its data, and reports every problem.
/// - `prune` plans first and fails closed: a listing or read it cannot make aborts it before
///   anything is deleted.
/// - Errors carry a `category` (config, io, integrity, locked); only io is worth a retry.
public protocol BackupEngine: Sendable {
    var name: String { get }
    /// Where progress goes while a backup or restore runs; nil for none.
    var progress: ProgressSink? { get set }
    func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup
    func snapshots(tag: String?) throws(RepositoryError) -> [EngineSnapshot]
    /// `select` receives the snapshot's file paths and returns those to restore (nil: all).
    func restore(snapshot: String, to target: URL, options: RestoreOptions, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore
    /// Checks the repository's own consistency beyond what a restore read (restic's `check
    /// --read-data-subset`); returns the problems found, empty when sound. Read-only.
    func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String]
    /// `drplan check-repository`: the structure, and with `readData` the data itself.
    func check(readData: ReadDataSelection) throws(RepositoryError) -> RepositoryCheckReport
    /// Removes the snapshots `ids`, then the data no snapshot references any more (data younger
    /// than `grace` stays, for a backup that may be running). Returns a one-line summary; with
    /// `dryRun`, the plan, and changes nothing. Removing an id that no longer exists is not an
    /// error, so a retried prune is harmless.
    func prune(forget ids: Set<String>, grace: TimeInterval, dryRun: Bool) throws(RepositoryError) -> String
    /// False for a mirror, whose one copy is its current state and carries no checksums:
    /// its restore test compares it with the source.
    var keepsHistory: Bool { get }
    /// The repository's stable id, for the evidence store's record of the snapshots it holds;
    /// nil where the engine has none.
    var repositoryId: String? { get }
}

extension BackupEngine {
    public var keepsHistory: Bool { true }
    public var repositoryId: String? { nil }

    /// Engines whose restore already authenticates every byte it reads have nothing to add.
    public func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String] { [] }

    public func check(readData: ReadDataSelection) throws(RepositoryError) -> RepositoryCheckReport {
        var pct = 0
        switch readData {
        case .none: pct = 0
        case .all: pct = 100
        case .percent(let p): pct = Int(p.rounded(.up))
        case .part(_, let m): pct = max(1, 100 / m)
        }
        return RepositoryCheckReport(problems: try checkRepository(readDataPercent: pct))
    }

    /// Engines without history (a mirror) have nothing to prune.
    public func prune(forget ids: Set<String>, grace: TimeInterval, dryRun: Bool) throws(RepositoryError) -> String {
        throw RepositoryError(.config, "the \(name) engine keeps no snapshots to prune; remove 'retention' from the job or use a versioned engine")
    }

    public func restore(snapshot: String, to target: URL, force: Bool, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore {
        try restore(snapshot: snapshot, to: target, options: RestoreOptions(force: force), select: select)
    }
}

/// The builtin engine: drplan's own repository, inside the storage's `path`. Backups, restores
/// and checks hold a shared repository lock; prune and repair an exclusive one.
public struct BuiltinEngine: BackupEngine {
    public let repository: BuiltinRepository
    public var name: String { "builtin" }
    public var repositoryId: String? { repository.id }
    public var progress: ProgressSink?
    /// Messages about locks (a stale one removed), for the terminal.
    public var log: @Sendable (String) -> Void = { _ in }
    /// How long to wait for a conflicting lock.
    public var lockWait: TimeInterval = 0

    /// Opens the repository in `storage`; with `create`, creates it when there is none (the
    /// storage's root folder's parent must exist). Without `create`, a missing repository is
    /// an error, so an unplugged drive never gets an empty repository in its mount point.
    public static func open(storage: any RepositoryStorage, passphrase: String?, create: Bool) throws(RepositoryError) -> BuiltinEngine {
        if create {
            if let local = storage as? LocalStorage, mkdir(local.root, 0o700) != 0 && errno != EEXIST { throw LocalStorage.failure("create", local.root, errno: errno) }
            return BuiltinEngine(repository: try BuiltinRepository.create(storage: storage, passphrase: passphrase).0)
        }
        return BuiltinEngine(repository: try BuiltinRepository.open(storage: storage, passphrase: passphrase))
    }

    /// Opens the repository at `directory`, creating it on first use (tests).
    public static func open(directory: URL, passphrase: String?) throws(RepositoryError) -> BuiltinEngine {
        try open(storage: LocalStorage(root: directory.path), passphrase: passphrase, create: true)
    }

    public init(repository: BuiltinRepository, progress: ProgressSink? = nil) {
        self.repository = repository
        self.progress = progress
    }

    /// A shared lock for an operation that only reads. A repository on read-only media cannot
    /// take one; reading it without a lock is then allowed, with a warning.
    func readLock(_ operation: String) throws(RepositoryError) -> RepositoryLock? {
        do { return try repository.lock(exclusive: false, operation: operation, wait: lockWait, log: log) } catch where error.kind == .io {
            log("warning: cannot take a lock on \(repository.storage.location) (\(error.message)); reading it without one")
            return nil
        }
    }

    public func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup {
        let s = try repository.withLock(exclusive: false, operation: "backup", wait: lockWait, log: log) { () throws(RepositoryError) in
            try repository.backup(paths: paths, exclude: exclude, tags: tags, progress: progress)
        }
        return EngineBackup(snapshot: s.snapshot, files: s.files, bytesRead: s.bytesRead, bytesWritten: s.bytesWritten, skipped: s.skipped)
    }

    public func snapshots(tag: String?) throws(RepositoryError) -> [EngineSnapshot] {
        try repository.snapshotHeaders().filter { tag == nil || $0.tags.contains(tag ?? "") }.map { EngineSnapshot(id: $0.id, time: $0.time, tags: $0.tags, host: $0.host, size: $0.size) }
    }

    /// Structural only (every object indexed, every pack present and long enough): the
    /// restore it follows has authenticated every byte it read.
    public func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String] {
        let held = try readLock("check")
        defer { held?.release() }
        return try repository.check()
    }

    public func check(readData: ReadDataSelection) throws(RepositoryError) -> RepositoryCheckReport {
        let held = try readLock("check")
        defer { held?.release() }
        return try repository.check(readData: readData)
    }

    public func prune(forget ids: Set<String>, grace: TimeInterval, dryRun: Bool) throws(RepositoryError) -> String {
        try repository.withLock(exclusive: true, operation: "prune", wait: lockWait, log: log) { () throws(RepositoryError) in
            let plan = try repository.planPrune(forget: ids, grace: grace)
            if dryRun { return "would " + plan.summary }
            let gc = try repository.executePrune(plan)
            return "forgot \(plan.forget.count) snapshot(s), removed \(gc.objects) object(s), \(gc.bytes) bytes" + plan.lockedSummary
        }
    }

    public func restore(snapshot: String, to target: URL, options: RestoreOptions, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore {
        let held = try readLock("restore")
        defer { held?.release() }
        let id = try repository.resolveSnapshot(snapshot)
        var only: ((ManifestEntry) -> Bool)? = nil
        if let select {
            let chosen = select(try repository.snapshot(id).entries.filter { $0.kind == .file }.map(\.path))
            only = { e in e.kind != .file || chosen.contains(e.path) }
        }
        let r = try repository.restore(id, to: target, options: options, only: only, progress: progress)
        return EngineRestore(files: r.files, bytes: r.bytes, damaged: r.damaged)
    }
}

/// Resolves secret references. A literal secret in the inventory is refused here: it is rule
/// DR703, and drplan does not use it.
public enum Secrets {
    /// Where a `file:` secret is: `~` expanded, a relative path from the inventory's folder.
    public static func filePath(_ path: String, relativeTo dir: String) -> String {
        let expanded = expandTilde(path)
        return expanded.hasPrefix("/") ? expanded : dir + "/" + expanded
    }

    public static func resolve(_ ref: SecretRef, relativeTo dir: String) throws(RepositoryError) -> String {
        switch ref {
        case .env(let name):
            guard let v = ProcessInfo.processInfo.environment[name], !v.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw RepositoryError(.passphraseRequired, "the secret env:\(name) is not set; export \(name) before running drplan")
            }
            return v
        case .file(let path):
            let full = filePath(path, relativeTo: dir)
            guard let data = FileManager.default.contents(atPath: full) else {
                throw RepositoryError(.passphraseRequired, "the secret file:\(path) cannot be read; check the file and its permissions")
            }
            let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
            // An empty passphrase would "encrypt" with a key anyone can derive.
            guard !value.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw RepositoryError(.passphraseRequired, "the secret file:\(path) is empty; write the passphrase into it (an empty passphrase is no encryption)")
            }
            return value
        case .vault(let path):
            throw RepositoryError(.passphraseRequired, "vault:\(path) secrets are not supported by this drplan; use env: or file:")
        case .literal:
            throw RepositoryError(.passphraseRequired, "the passphrase is written into the inventory (rule DR703); move it to env: or file: — drplan will not use it")
        }
    }
}

/// `~` and `~/…` as the shell expands them, from `$HOME`.
public func expandTilde(_ path: String) -> String {
    guard path == "~" || path.hasPrefix("~/") else { return path }
    let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
    return home + path.dropFirst()
}

/// What the runner needs to know of an engine, in one place, so that its loop asks about
/// capabilities instead of testing which engine it has.
extension DRInventory.Engine {
    /// The job's own commands do the work (`options.backup`, `restore`, `verify`): one run per
    /// target covers every asset, and there is no repository for drplan to read.
    public var runsUserCommands: Bool { self == .command }
    /// Stores through drplan's own repository (and so on any `RepositoryStorage`).
    public var usesBuiltinRepository: Bool { self == .builtin || self == .sqlite || self == .pgDump }
    /// A snapshot holds one dump, so a restore test restores it whole (a sample would test nothing).
    public var storesOneDump: Bool { self == .sqlite || self == .pgDump }
    /// The name of the dump file inside such a snapshot.
    public var dumpFileName: String? {
        switch self {
        case .sqlite: return SQLiteBackup.fileName
        case .pgDump: return PostgresBackup.fileName
        default: return nil
        }
    }
}
