import CEL
import Crypto
import _CryptoExtras
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Work over a list of files on every core, shared by backup and restore: hands out items,
/// keeps the first error (after which no new item starts), and counts progress.
class FileWork: @unchecked Sendable {
    let lock = NSLock()
    var nextIndex = 0
    var firstError: RepositoryError?
    private var current: RunProgress
    private let progress: ProgressSink?

    init(total: RunProgress, progress: ProgressSink?) {
        current = total
        self.progress = progress
    }

    func locked<T>(_ body: () -> T) -> T { lock.lock(); defer { lock.unlock() }; return body() }

    var error: RepositoryError? { locked { firstError } }

    /// Calls `body` for items `0..<count` on every core; each worker has its own `local`
    /// state (a read buffer, say). An error is recorded and stops the handing out of items.
    /// `done` runs once per worker after its last item (to close what it has open).
    func forEach<Local>(_ count: Int, workers wanted: Int? = nil, local: @escaping @Sendable () -> Local, _ body: @escaping @Sendable (inout Local, Int) throws(RepositoryError) -> Void,
                        done: @escaping @Sendable (inout Local) throws(RepositoryError) -> Void = { _ in }) {
        let workers = min(max(1, wanted ?? ProcessInfo.processInfo.activeProcessorCount), max(1, count))
        Threads.perform(workers) { [self] _ in
            var state = local()
            while let i = next(count) {
                do throws(RepositoryError) { try body(&state, i) } catch { record(error) }
            }
            do throws(RepositoryError) { try done(&state) } catch { record(error) }
        }
    }

    private func record(_ error: RepositoryError) { locked { if firstError == nil { firstError = error } } }

    private func next(_ count: Int) -> Int? {
        locked {
            guard firstError == nil, nextIndex < count else { return nil }
            defer { nextIndex += 1 }
            return nextIndex
        }
    }

    func advance(bytes: Int64) {
        let p = locked { () -> RunProgress in current.bytes += bytes; return current }
        progress?(p)
    }

    /// Counts a finished file; `record` runs under the same lock, for the caller's results.
    func fileDone(_ record: () -> Void) {
        let p = locked { () -> RunProgress in
            record()
            current.files += 1
            return current
        }
        progress?(p)
    }
}


/// Runs `body(0..<count)` at once on threads of its own and waits for all. For work that
/// waits on the network: `DispatchQueue.concurrentPerform` runs no more iterations at once
/// than there are cores, so eight S3 requests "in flight" were two.
enum Threads {
    static func perform(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        if count <= ProcessInfo.processInfo.activeProcessorCount {
            DispatchQueue.concurrentPerform(iterations: count, execute: body)
            return
        }
        let group = DispatchGroup()
        for i in 0..<count {
            group.enter()
            let t = Thread { body(i); group.leave() }
            t.stackSize = 1 << 20
            t.start()
        }
        group.wait()
    }
}
