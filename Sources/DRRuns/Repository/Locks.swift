import CEL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who holds a repository lock, as written in its file under `locks/`.
public struct RepositoryLockInfo: Codable, Sendable, Equatable {
    public var exclusive: Bool
    public var operation: String
    public var host: String
    public var pid: Int32
    public var user: String
    /// When the holder started (RFC 3339).
    public var started: String

    /// "prune (exclusive) by pid 4711 of alice on nas-1, since 2026-12-01T02:00:00Z"
    public var holder: String {
        "\(operation) (\(exclusive ? "exclusive" : "shared")) by pid \(pid) of \(user) on \(host), since \(started)"
    }
}

/// A lock held on a repository, as restic's are: a file under `locks/` naming its holder,
/// refreshed while held, removed by `release`. Shared locks (backup, restore, check) coexist;
/// an exclusive one (prune, repair) excludes every other.
public final class RepositoryLock: @unchecked Sendable {
    let storage: any RepositoryStorage
    let name: String
    let body: [UInt8]
    /// Hears of a refresh or release that failed.
    let log: @Sendable (String) -> Void
    private let lock = NSLock()
    private var timer: DispatchSourceTimer?
    private var released = false

    init(storage: any RepositoryStorage, name: String, body: [UInt8], log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.storage = storage
        self.name = name
        self.body = body
        self.log = log
    }

    /// Rewrites the lock file every `interval`, so that others see a live holder.
    func startRefreshing(every interval: TimeInterval) {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        t.schedule(deadline: .now() + interval, repeating: interval)
        t.setEventHandler { [weak self] in self?.refresh() }
        t.resume()
        lock.withLock { timer = t }
    }

    func refresh() {
        lock.withLock {
            guard !released else { return }
            // A failed refresh leaves the old file, which others will take as stale only after
            // 30 minutes without one; the holder goes on, and says so.
            do throws(RepositoryError) { try storage.write("locks/" + name, body, exclusive: false) } catch {
                log("warning: cannot refresh the lock \(name.prefix(12)) on \(storage.location): \(error.message)")
            }
        }
    }

    /// Removes the lock file. Called on every path out, including SIGINT and SIGTERM.
    public func release() {
        lock.withLock {
            guard !released else { return }
            released = true
            timer?.cancel()
            timer = nil
            do throws(RepositoryError) { try storage.delete("locks/" + name) } catch {
                log("warning: cannot remove the lock \(name.prefix(12)) on \(storage.location) (\(error.message)); it is stale once 30 minutes old, or 'drplan unlock' removes it")
            }
        }
        RepositoryLock.registry.withLock { $0.removeAll { $0 === self } }
    }

    /// Every lock this process holds, so a signal handler can release them.
    static let registry = LockedBox<[RepositoryLock]>([])

    /// Releases every lock this process holds (SIGINT, SIGTERM).
    public static func releaseAll() {
        for l in registry.withLock({ $0 }) { l.release() }
    }
}

/// A value guarded by a lock.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

extension BuiltinRepository {
    /// A lock not refreshed for this long is stale, whoever holds it.
    public static let staleLockAge: TimeInterval = 30 * 60
    /// How often a holder rewrites its lock file.
    public static let lockRefreshInterval: TimeInterval = 5 * 60

    /// The locks in `locks/`, with their files' modification times. A lock file that vanished
    /// since the listing is left out (its holder released it); one that cannot be read is
    /// kept, with no info, so that it still blocks until it is stale.
    public func locks() throws(RepositoryError) -> [(name: String, info: RepositoryLockInfo?, modified: Date)] {
        let names: [String]
        do { names = try storage.list("locks") } catch where error.kind == .missing { return [] }
        var out: [(String, RepositoryLockInfo?, Date)] = []
        for n in names {
            guard let stat = try storage.info("locks/" + n) else { continue }
            let bytes: [UInt8]
            do { bytes = try storage.read("locks/" + n) } catch where error.kind == .missing { continue }
            let info = (try? open(bytes, aad: Array(("lock:" + n).utf8))).flatMap { try? JSONDecoder().decode(RepositoryLockInfo.self, from: Data($0)) }
            out.append((n, info, stat.modified))
        }
        return out
    }

    /// Why a lock is stale, or nil when its holder may still be running.
    public static func staleness(_ info: RepositoryLockInfo?, modified: Date, now: Date = Date()) -> String? {
        let age = now.timeIntervalSince(modified)
        if age > staleLockAge { return "not refreshed for \(Int(age / 60)) minutes" }
        if let info, info.host == ProcessInfo.processInfo.hostName, kill(info.pid, 0) != 0, errno == ESRCH {
            return "its process \(info.pid) on this host no longer runs"
        }
        return nil
    }

    /// Removes stale locks, saying which; returns how many. `drplan unlock` and every lock
    /// attempt call it.
    @discardableResult
    public func removeStaleLocks(log: (String) -> Void) throws(RepositoryError) -> Int {
        var removed = 0
        for l in try locks() {
            guard let why = Self.staleness(l.info, modified: l.modified) else { continue }
            try storage.delete("locks/" + l.name)
            log("removed a stale lock on \(storage.location): \(l.info?.holder ?? "unreadable lock \(l.name.prefix(12))") — \(why)")
            removed += 1
        }
        return removed
    }

    /// Takes a lock, waiting up to `wait` seconds for a conflicting holder to finish, and
    /// refreshes it until released. Stale locks are removed on the way, with a message.
    ///
    /// Two processes that take conflicting locks at the same moment both write theirs, and
    /// both see the other's when they look again; each then removes its own and retries after
    /// a random pause, so one of them wins within a few seconds.
    public func lock(exclusive: Bool, operation: String, wait: TimeInterval = 0, log: @escaping @Sendable (String) -> Void = { _ in }) throws(RepositoryError) -> RepositoryLock {
        if let local = storage as? LocalStorage { try local.makeDirectory("locks") }
        let info = RepositoryLockInfo(exclusive: exclusive, operation: operation, host: ProcessInfo.processInfo.hostName, pid: getpid(),
                                      user: Self.userName(), started: EvidenceStore.iso(Date()))
        let name = JSONWriter.hex(Self.randomBytes(32))
        let json = try Self.io { try JSONEncoder().encode(info) }
        let body = [UInt8](try seal([UInt8](json), aad: Array(("lock:" + name).utf8)))
        // A race between two new locks resolves within this window even when `wait` is 0.
        let deadline = Date().addingTimeInterval(max(wait, 5))
        let patience = Date().addingTimeInterval(wait)
        func conflict(ignoring own: String?) throws(RepositoryError) -> (RepositoryLockInfo?, Date)? {
            try removeStaleLocks(log: log)
            for l in try locks() where l.name != own {
                if exclusive || (l.info?.exclusive ?? true) { return (l.info, l.modified) }
            }
            return nil
        }
        var g = SystemRandomNumberGenerator()
        while true {
            if let (holder, _) = try conflict(ignoring: nil) {
                guard Date() < patience else { throw Self.lockedError(storage, holder) }
                Thread.sleep(forTimeInterval: Double.random(in: 0.2...0.6, using: &g))
                continue
            }
            try storage.write("locks/" + name, body, exclusive: true)
            guard let (holder, _) = try conflict(ignoring: name) else { break }
            try storage.delete("locks/" + name)
            guard Date() < deadline else { throw Self.lockedError(storage, holder) }
            Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.5, using: &g))
        }
        let held = RepositoryLock(storage: storage, name: name, body: body, log: log)
        held.startRefreshing(every: Self.lockRefreshInterval)
        RepositoryLock.registry.withLock { $0.append(held) }
        return held
    }

    /// The name of the user this process runs as (its uid when the name is unknown).
    static func userName() -> String {
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return String(getuid())
    }

    static func lockedError(_ storage: any RepositoryStorage, _ holder: RepositoryLockInfo?) -> RepositoryError {
        RepositoryError(.locked, "the repository at \(storage.location) is locked by \(holder?.holder ?? "another process (its lock file cannot be read)"); wait for it to finish, or if it no longer runs, remove its lock with 'drplan unlock' (a lock is also taken as stale after 30 minutes without a refresh)")
    }

    /// Runs `body` under a lock, releasing it on every path out.
    public func withLock<T>(exclusive: Bool, operation: String, wait: TimeInterval = 0, log: @escaping @Sendable (String) -> Void = { _ in },
                            _ body: () throws(RepositoryError) -> T) throws(RepositoryError) -> T {
        let held = try lock(exclusive: exclusive, operation: operation, wait: wait, log: log)
        defer { held.release() }
        return try body()
    }
}
