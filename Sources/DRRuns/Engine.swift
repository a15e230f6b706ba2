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
    func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup
    func snapshots(tag: String?) throws(RepositoryError) -> [(id: String, time: Int64, tags: [String])]
    /// `select` receives the snapshot's file paths and returns those to restore (nil: all).
    func restore(snapshot: String, to target: URL, force: Bool, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore
}

/// The builtin engine: drplan's own repository, inside the storage's `path`.
public struct BuiltinEngine: BackupEngine {
    public let repository: BuiltinRepository
    public var name: String { "builtin" }

    /// Opens the repository at `directory`, creating it on first use.
    public static func open(directory: URL, passphrase: String?) throws(RepositoryError) -> BuiltinEngine {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("config").path) {
            return BuiltinEngine(repository: try BuiltinRepository.open(at: directory, passphrase: passphrase))
        }
        return BuiltinEngine(repository: try BuiltinRepository.initialize(at: directory, passphrase: passphrase))
    }

    public func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup {
        let s = try repository.backup(paths: paths, exclude: exclude, tags: tags)
        return EngineBackup(snapshot: s.snapshot, files: s.files, bytesRead: s.bytesRead, bytesWritten: s.bytesWritten)
    }

    public func snapshots(tag: String?) throws(RepositoryError) -> [(id: String, time: Int64, tags: [String])] {
        try repository.snapshots().filter { tag == nil || $0.tags.contains(tag ?? "") }.map { ($0.id, $0.time, $0.tags) }
    }

    public func restore(snapshot: String, to target: URL, force: Bool, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore {
        var only: ((ManifestEntry) -> Bool)? = nil
        if let select {
            let chosen = select(try repository.snapshot(snapshot).entries.filter { $0.kind == .file }.map(\.path))
            only = { e in e.kind != .file || chosen.contains(e.path) }
        }
        let r = try repository.restore(snapshot, to: target, force: force, only: only)
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
