import DRInventory
import Foundation

/// What a backup produced.
public struct EngineBackup: Sendable {
    public var snapshot: String
    public var files: Int
    public var bytesRead: Int64
    public var bytesWritten: Int64
}

/// What a restore produced, and what it could not restore intact.
public struct EngineRestore: Sendable {
    public var files: Int
    public var bytes: Int64
    public var damaged: [String: String]
}

/// How far a backup or restore has got, for the terminal display or `--progress json`.
public struct RunProgress: Sendable, Equatable {
    public var files: Int64 = 0
    public var bytes: Int64 = 0
    /// Known once the engine has scanned its input; nil while unknown (no ETA then).
    public var totalFiles: Int64?
    public var totalBytes: Int64?
    public init(files: Int64 = 0, bytes: Int64 = 0, totalFiles: Int64? = nil, totalBytes: Int64? = nil) {
        self.files = files; self.bytes = bytes; self.totalFiles = totalFiles; self.totalBytes = totalBytes
    }
}

/// Receives progress; called often, from the engine's thread, so it must be cheap.
public typealias ProgressSink = @Sendable (RunProgress) -> Void

/// A backup engine: how a job's data gets into a storage target and back.
///
/// Contract, checked by the conformance suite for every engine:
/// - `backup` creates one new snapshot tagged with the job id and asset id, or fails without
///   making any snapshot visible; running it twice makes two snapshots and stores unchanged
///   data once.
/// - `snapshots(tag:)` lists only complete snapshots, oldest first.
/// - `restore` writes a snapshot into an empty directory and reports every file it could not
///   restore intact by path; it never writes outside the target.
/// - Errors carry `permanent`: a wrong passphrase, corrupt data or an unsafe path will fail
///   again on retry; I/O errors might not.
public protocol BackupEngine: Sendable {
    var name: String { get }
    /// Where progress goes while a backup or restore runs; nil for none.
    var progress: ProgressSink? { get set }
    func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup
    func snapshots(tag: String?) throws(RepositoryError) -> [(id: String, time: Int64, tags: [String])]
    /// `select` receives the snapshot's file paths and returns those to restore (nil: all).
    func restore(snapshot: String, to target: URL, force: Bool, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore
    /// Checks the repository's own consistency beyond what a restore read (restic's `check
    /// --read-data-subset`); returns the problems found, empty when sound. Read-only.
    func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String]
    /// Removes the snapshots `ids`, then the data no snapshot references any more (data younger
    /// than `grace` stays, for a backup that may be running). Returns a one-line summary.
    /// Removing an id that no longer exists is not an error, so a retried prune is harmless.
    func prune(forget ids: Set<String>, grace: TimeInterval) throws(RepositoryError) -> String
}

extension BackupEngine {
    /// Engines whose restore already authenticates every byte it reads have nothing to add.
    public func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String] { [] }

    /// Engines without history (a mirror) have nothing to prune.
    public func prune(forget ids: Set<String>, grace: TimeInterval) throws(RepositoryError) -> String {
        throw RepositoryError(.io, "the \(name) engine keeps no snapshots to prune; remove 'retention' from the job or use a versioned engine")
    }
}

/// The builtin engine: drplan's own repository, inside the storage's `path`.
public struct BuiltinEngine: BackupEngine {
    public let repository: BuiltinRepository
    public var name: String { "builtin" }
    public var progress: ProgressSink?

    /// Opens the repository at `directory`, creating it on first use.
    public static func open(directory: URL, passphrase: String?) throws(RepositoryError) -> BuiltinEngine {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("config").path) {
            return BuiltinEngine(repository: try BuiltinRepository.open(at: directory, passphrase: passphrase))
        }
        return BuiltinEngine(repository: try BuiltinRepository.initialize(at: directory, passphrase: passphrase))
    }

    public init(repository: BuiltinRepository, progress: ProgressSink? = nil) {
        self.repository = repository
        self.progress = progress
    }

    public func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup {
        let s = try repository.backup(paths: paths, exclude: exclude, tags: tags, progress: progress)
        return EngineBackup(snapshot: s.snapshot, files: s.files, bytesRead: s.bytesRead, bytesWritten: s.bytesWritten)
    }

    public func snapshots(tag: String?) throws(RepositoryError) -> [(id: String, time: Int64, tags: [String])] {
        try repository.snapshotHeaders().filter { tag == nil || $0.tags.contains(tag ?? "") }.map { ($0.id, $0.time, $0.tags) }
    }

    /// Structural only (every object indexed, every pack present and long enough): the
    /// restore it follows has authenticated every byte it read.
    public func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String] {
        try repository.check()
    }

    public func prune(forget ids: Set<String>, grace: TimeInterval) throws(RepositoryError) -> String {
        try repository.forget(ids)
        let gc = try repository.collectGarbage(grace: grace)
        return "forgot \(ids.count) snapshot(s), removed \(gc.objects) object(s), \(gc.bytes) bytes"
    }

    public func restore(snapshot: String, to target: URL, force: Bool, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore {
        var only: ((ManifestEntry) -> Bool)? = nil
        if let select {
            let chosen = select(try repository.snapshot(snapshot).entries.filter { $0.kind == .file }.map(\.path))
            only = { e in e.kind != .file || chosen.contains(e.path) }
        }
        let r = try repository.restore(snapshot, to: target, force: force, only: only, progress: progress)
        return EngineRestore(files: r.files, bytes: r.bytes, damaged: r.damaged)
    }
}

/// Resolves secret references. A literal secret in the inventory is refused here: it is rule
/// DR703, and drplan does not use it.
public enum Secrets {
    public static func resolve(_ ref: SecretRef, relativeTo dir: String) throws(RepositoryError) -> String {
        switch ref {
        case .env(let name):
            guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
                throw RepositoryError(.passphraseRequired, "the secret env:\(name) is not set; export \(name) before running drplan")
            }
            return v
        case .file(let path):
            let full = path.hasPrefix("/") ? path : dir + "/" + path
            guard let data = FileManager.default.contents(atPath: full) else {
                throw RepositoryError(.passphraseRequired, "the secret file:\(path) cannot be read; check the file and its permissions")
            }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        case .vault(let path):
            throw RepositoryError(.passphraseRequired, "vault:\(path) secrets are not supported by this drplan; use env: or file:")
        case .literal:
            throw RepositoryError(.passphraseRequired, "the passphrase is written into the inventory (rule DR703); move it to env: or file: — drplan will not use it")
        }
    }
}
