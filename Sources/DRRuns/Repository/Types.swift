import CEL
import Crypto
import _CryptoExtras
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a repository operation failed.
///
/// `kind` says what happened; `category` groups the kinds the way callers act on them (the
/// exit status, whether a retry can help), so that mapping lives in one place.
public struct RepositoryError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case notARepository, alreadyExists, wrongPassphrase, passphraseRequired, corrupt, unsafePath, targetNotEmpty, missingTool, io
        /// A file or directory that should be there is not (a lost pack, an unplugged drive).
        case missing
        /// Another process holds a lock that this operation needs.
        case locked
        /// The inventory or the command asks for something that cannot be done as written.
        case config
        /// The target is full: an I/O failure, but one that a retry a few seconds later will not cure.
        case noSpace
    }

    /// How a caller reacts: `config` needs the user to change something, `io` may succeed on
    /// retry, `integrity` means data is damaged or lost, `locked` means wait for the holder.
    public enum Category: String, Sendable { case config, io, integrity, locked }

    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }

    public var category: Category {
        switch kind {
        case .io, .noSpace: return .io
        case .locked: return .locked
        case .corrupt, .missing: return .integrity
        case .notARepository, .alreadyExists, .wrongPassphrase, .passphraseRequired, .unsafePath, .targetNotEmpty, .missingTool, .config: return .config
        }
    }

    /// Whether the same call will fail again: only I/O failures (a network blip, a busy disk)
    /// are worth retrying. Read by `RetryPolicy`.
    public var permanent: Bool { category != .io || kind == .noSpace }

    /// The same error with context in front ("storage 'nas': …").
    public func prefixed(_ context: String) -> RepositoryError { RepositoryError(kind, context + message) }
}

/// One entry of a snapshot: a file, a directory or a symlink, relative to the source root.
public struct ManifestEntry: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case file, dir, symlink }
    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var mtime: Int64
    public var mtimeNanos: Int32
    public var size: Int64
    /// SHA-256 of the plaintext, for verification after restore.
    public var sha256: String?
    public var chunks: [String]?
    public var target: String?
    /// Change time (ns since the epoch) and inode when backed up: with size and mtime, how the
    /// next backup knows a file is unchanged without reading it.
    public var ctime: Int64?
    public var inode: UInt64?
}

public struct Snapshot: Codable, Sendable {
    public var id: String
    public var time: Int64
    /// Sub-second part of `time`, so two snapshots in one second still have an order
    /// (absent in repositories written before it existed).
    public var timeNanos: Int32?
    public var host: String
    public var tags: [String]
    public var paths: [String]
    public var entries: [ManifestEntry]
}

public struct BackupSummary: Sendable {
    public var snapshot: String
    public var files: Int
    public var bytesRead: Int64
    /// Bytes of new objects stored (after deduplication, including encryption overhead).
    public var bytesWritten: Int64
    public var newObjects: Int
    /// Files not read again because the parent snapshot already had them, unchanged.
    public var filesReused: Int = 0
    /// Sockets, devices and FIFOs met in the source: recorded, not backed up.
    public var skipped: [String] = []
}

public struct RestoreReport: Sendable {
    public var files = 0
    public var bytes: Int64 = 0
    /// Files that could not be restored intact, with the reason (missing, corrupt or truncated object, checksum mismatch).
    public var damaged: [String: String] = [:]
}

/// How often a run retries a step that failed in a way a retry can cure (`permanent` false:
/// an I/O error on a network share, a storage that timed out), and how long it waits.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    /// Waits before the second, third… attempt, in seconds; a random jitter of up to a quarter
    /// is added so that many clients do not retry in step.
    public var delays: [Double]
    public init(attempts: Int = 3, delays: [Double] = [2, 8]) { self.attempts = attempts; self.delays = delays }
    public static let none = RetryPolicy(attempts: 1, delays: [])

    /// Runs `body`, retrying its non-permanent failures; `log` hears of each retry.
    public func run<T>(_ what: String, log: (String) -> Void, _ body: () throws(RepositoryError) -> T) throws(RepositoryError) -> T {
        var attempt = 1
        var g = SystemRandomNumberGenerator()
        while true {
            do { return try body() } catch {
                guard !error.permanent, attempt < attempts else { throw error }
                let base = delays.isEmpty ? 0 : delays[min(attempt - 1, delays.count - 1)]
                let wait = base + Double.random(in: 0...(base / 4), using: &g)
                log("\(what): \(error.message); retrying in \(String(format: "%.1f", wait))s (attempt \(attempt + 1) of \(attempts))")
                Thread.sleep(forTimeInterval: wait)
                attempt += 1
            }
        }
    }
}
