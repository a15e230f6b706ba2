import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRRuns

/// Object Lock on a real S3 server (moto, with a bucket created with Object Lock enabled).
@Suite("S3: Object Lock")
struct S3ObjectLockTests {
    static func lockedBucket() -> (S3TestServer, String)? {
        guard let s = S3TestServer.current() else { return nil }
        guard let b = ProcessInfo.processInfo.environment["DRPLAN_S3_LOCKED_BUCKET"] else {
            _ = Tools.skip("S3 Object Lock test", because: "no Object Lock bucket (DRPLAN_S3_LOCKED_BUCKET; .ci/s3.sh creates one)") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        return (s, b)
    }

    @Test("every repository object gets the declared retention; prune plans around it until it ends")
    func retentionAndPrune() throws {
        guard let (s, bucket) = Self.lockedBucket() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        let storage = try s.storage(prefix: "lock-" + UUID().uuidString.prefix(8).lowercased(), bucket: bucket)
        storage.objectLock = ObjectLock(mode: .governance, days: 1)
        #expect(try storage.requireObjectLock(storage: "bucket").enabled)
        let (repo, _) = try BuiltinRepository.create(storage: storage, passphrase: "pw", kdfRounds: 1 << 10)
        var ids: [String] = []
        for i in 0..<2 {
            try dir.write("src/f.txt", "version \(i)\n")
            ids.append(try repo.withLock(exclusive: false, operation: "backup") { () throws(RepositoryError) in try repo.backup(paths: [dir.path + "/src"]) }.snapshot)
        }
        let pack = try #require(try repo.packNames().first)
        let info = try #require(try storage.info(repo.packPath(pack)))
        let until = try #require(info.retainUntil)
        #expect(info.lockMode == "GOVERNANCE" && abs(until.timeIntervalSinceNow - 86400) < 600, "\(info)")
        #expect(try storage.verifyLocked("snapshots/" + ids[1], storage: "bucket").contains("locked (GOVERNANCE)"))
        // The repository's own lock files carry no retention: they were removed again.
        #expect(try storage.list("locks").isEmpty)

        let now = try repo.planPrune(forget: [ids[0]], grace: 0)
        #expect(now.forget.isEmpty && now.locked.map(\.path) == ["snapshots/" + ids[0]], "\(now.locked)")
        let later = try repo.planPrune(forget: [ids[0]], grace: 0, now: Date().addingTimeInterval(2 * 86400))
        #expect(later.forget == [ids[0]] && later.locked.isEmpty)
    }

    @Test("a declared lock on a bucket without Object Lock is refused before anything is written")
    func bucketWithoutLock() throws {
        guard let s = S3TestServer.current() else { return }
        let storage = try s.storage(prefix: "nolock-" + UUID().uuidString.prefix(8).lowercased())
        storage.objectLock = ObjectLock(mode: .compliance, days: 30)
        #expect(try storage.bucketObjectLock().enabled == false)
        let e = try #require(throws: RepositoryError.self) { try storage.requireObjectLock(storage: "cloud") }
        #expect(e.kind == .config && e.message.contains("has no Object Lock configuration") && e.message.contains("'\(s.bucket)'"))
        #expect(try storage.list("").isEmpty)
    }
}
