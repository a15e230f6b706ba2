import Foundation
import Testing
@testable import DRRuns

/// The restore's cache of whole packs: each pack fetched once while it is still wanted, let go
/// once it is not, and never more than its capacity held.
@Suite("Pack cache")
struct PackCacheTests {
    /// Counts loads per pack, from any thread.
    final class Loads: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [String: Int] = [:]
        func load(_ id: String) -> [UInt8] { lock.withLock { counts[id, default: 0] += 1 }; return Array(id.utf8) }
        func count(_ id: String) -> Int { lock.withLock { counts[id, default: 0] } }
    }

    @Test func aPackIsFetchedOnceForAllItsPlannedReadsThenLetGo() throws {
        let cache = PackCache(capacity: 10, uses: ["a": 3, "b": 1])
        let loads = Loads()
        for id in ["a", "b", "a", "a"] {
            let bytes = try cache.pack(id) { () throws(RepositoryError) -> [UInt8] in loads.load(id) }
            #expect(bytes == Array(id.utf8))
        }
        #expect(loads.count("a") == 1)
        #expect(loads.count("b") == 1)
        #expect(cache.fetches == 2)
        // Every planned read of "a" was served, so it was dropped: an unplanned read fetches it again.
        _ = try cache.pack("a") { () throws(RepositoryError) -> [UInt8] in loads.load("a") }
        #expect(loads.count("a") == 2)
    }

    @Test func overCapacityTheLeastRecentlyUsedWantedPackIsFetchedAgain() throws {
        let cache = PackCache(capacity: 1, uses: ["a": 2, "b": 2])
        let loads = Loads()
        for id in ["a", "b", "a"] { _ = try cache.pack(id) { () throws(RepositoryError) -> [UInt8] in loads.load(id) } }
        #expect(loads.count("a") == 2)
        #expect(cache.fetches == 3)
    }

    @Test func concurrentReadersOfOnePackShareOneFetch() throws {
        let cache = PackCache(capacity: 2, uses: ["p": 64])
        let loads = Loads()
        let failures = Loads()
        DispatchQueue.concurrentPerform(iterations: 64) { _ in
            do {
                let bytes = try cache.pack("p") { () throws(RepositoryError) -> [UInt8] in
                    usleep(2_000)
                    return loads.load("p")
                }
                if bytes != Array("p".utf8) { _ = failures.load("wrong") }
            } catch { _ = failures.load("error") }
        }
        #expect(loads.count("p") == 1)
        #expect(failures.count("wrong") == 0 && failures.count("error") == 0)
    }

    @Test func aFailedFetchIsReportedAndNotCached() throws {
        let cache = PackCache(capacity: 4, uses: ["p": 2])
        #expect(throws: RepositoryError.self) {
            try cache.pack("p") { () throws(RepositoryError) -> [UInt8] in throw RepositoryError(.io, "connection reset") }
        }
        let loads = Loads()
        let bytes = try cache.pack("p") { () throws(RepositoryError) -> [UInt8] in loads.load("p") }
        #expect(bytes == Array("p".utf8))
        #expect(loads.count("p") == 1)
    }
}
