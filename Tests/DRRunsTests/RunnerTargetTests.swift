import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRRuns
#if canImport(Glibc)
import Glibc
#endif

/// Every target is written or fails loudly; media that are not there are never replaced.
@Suite("Runner: every target, missing media, honest sources")
struct RunnerTargetTests {
    static func inventory(_ dir: TempDir, storage: String, job: String = "", asset: String = "size: 1KB") throws -> Inventory {
        try dir.write("pw.txt", "correct horse\n")
        try dir.write("data/a.txt", String(repeating: "a", count: 2000))
        let text = """
            drplan: 1
            sites: [{ id: office, kind: office }, { id: home, kind: home }]
            storage:
            \(storage)
            assets: [{ id: docs, kind: file-store, site: office, \(asset), source: { path: data } }]
            jobs: [{ id: nightly, assets: [docs], schedule: "@daily", targets: [drive, bucket], encryption: { at_rest: true, passphrase: "file:pw.txt" }\(job) }]
            restore_tests: [{ id: t, job: nightly, scope: full }]
            """
        try dir.write("inv.yaml", text)
        return try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", text)])
    }

    static let driveAndBucket = """
          - { id: drive, kind: removable, site: home, path: drive, create: true }
          - { id: bucket, kind: nas, site: home, url: "sftp://backup@nas/office" }
        """

    static func runner(_ inv: Inventory, _ dir: TempDir) throws -> Runner {
        Runner(inventory: inv, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
    }

    @Test("a target the builtin engine cannot write fails its run loudly; the other target is written")
    func everyTarget() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("drive")
        let runner = try Self.runner(try Self.inventory(dir, storage: Self.driveAndBucket), dir)
        let runs = try runner.backup(jobs: [])
        #expect(runs.map(\.storage) == ["drive", "bucket"])
        #expect(runs.map(\.status) == [.success, .failed])
        #expect(runs[1].error?.contains("only a 'url'") == true && runs[1].error?.contains("target_engines") == true, "\(runs[1].error ?? "")")
        #expect(runs.allSatisfy { $0.asset == "docs" })
        let stored = try runner.store.runs()
        #expect(stored.filter { $0.storage == "bucket" }.map(\.status) == [.failed])
    }

    @Test("an unplugged drive is never replaced by a folder on the internal disk, and reads create nothing")
    func missingMedia() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let inv = try Self.inventory(dir, storage: """
              - { id: drive, kind: removable, site: home, path: drive, create: true }
              - { id: bucket, kind: removable, site: home, path: other, create: true }
            """)
        let runner = try Self.runner(inv, dir)
        let runs = try runner.backup(jobs: [])
        #expect(runs.map(\.status) == [.failed, .failed])
        #expect(runs[0].error?.contains("storage 'drive' is not mounted at \(dir.path)/drive: plug it in or fix 'path'") == true, "\(runs[0].error ?? "")")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/drive"))
        // The drive is mounted, but holds no repository: a restore test creates nothing.
        try dir.makeDirectory("drive")
        let t = try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false, from: "drive")
        #expect(t.map(\.0.status) == [.failed] && t[0].0.error?.contains("holds no drplan repository") == true, "\(t[0].0.error ?? "")")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/drive").isEmpty)
        #expect(throws: RepositoryError.self) { _ = try runner.snapshots(jobs: [], from: "drive") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/drive").isEmpty)
    }

    @Test("without create: true a backup does not create a repository; init-repository does, once")
    func createOnPurpose() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("drive"); try dir.makeDirectory("other")
        let inv = try Self.inventory(dir, storage: """
              - { id: drive, kind: removable, site: home, path: drive }
              - { id: bucket, kind: removable, site: home, path: other, create: true }
            """)
        let runner = try Self.runner(inv, dir)
        let first = try runner.backup(jobs: [])
        #expect(first.map(\.status) == [.failed, .success])
        #expect(first[0].error?.contains("drplan init-repository drive") == true)
        _ = try runner.repository(on: "drive", create: true)
        #expect(throws: RepositoryError.self) { _ = try runner.repository(on: "drive", create: true) }
        #expect(try runner.backup(jobs: []).map(\.status) == [.success, .success])
    }

    @Test("restore and restore-test use any copy: with the first lost, recovery comes from the second")
    func restoreFromAnyCopy() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("drive"); try dir.makeDirectory("other")
        let inv = try Self.inventory(dir, storage: """
              - { id: drive, kind: removable, site: home, path: drive, create: true }
              - { id: bucket, kind: removable, site: home, path: other, create: true }
            """)
        let runner = try Self.runner(inv, dir)
        #expect(try runner.backup(jobs: []).map(\.status) == [.success, .success])
        try FileManager.default.removeItem(atPath: dir.path + "/drive")   // the drive is lost
        let out = URL(fileURLWithPath: dir.path + "/recovered")
        let r = try runner.restore(job: "nightly", snapshot: nil, target: out)
        #expect(r.count == 1 && r[0].result.damaged.isEmpty && r[0].result.files == 1)
        #expect(throws: RepositoryError.self) { _ = try runner.restore(job: "nightly", snapshot: nil, target: URL(fileURLWithPath: dir.path + "/x"), from: "drive") }
        let t = try runner.restoreTest(tests: ["t"], sample: nil, seed: 1, keep: false, from: "bucket")
        #expect(t.map(\.0.status) == [.success] && t[0].0.storage == "bucket")
        // --include restores part of a snapshot; a unique prefix of 8 names a snapshot.
        try dir.write("data/sub/b.txt", "bee")
        _ = try runner.backup(jobs: [])
        let snap = try #require(try runner.snapshots(jobs: [], from: "bucket").last?.snapshot.id)
        let part = try runner.restore(job: "nightly", snapshot: String(snap.prefix(8)), target: URL(fileURLWithPath: dir.path + "/part"), from: "bucket", include: ["sub"])
        #expect(part[0].result.files == 1 && FileManager.default.fileExists(atPath: dir.path + "/part/sub/b.txt") && !FileManager.default.fileExists(atPath: dir.path + "/part/a.txt"))
    }

    @Test("a snapshot that disappears is reported by the next run and by check-repository; one drplan pruned is not")
    func vanishedSnapshot() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("drive"); try dir.makeDirectory("other")
        let storage = """
              - { id: drive, kind: removable, site: home, path: drive, create: true }
              - { id: bucket, kind: removable, site: home, path: other, create: true }
            """
        let runner = try Self.runner(try Self.inventory(dir, storage: storage, job: ", retention: { keep_last: 1 }"), dir)
        _ = try runner.backup(jobs: [])
        try dir.write("data/b.txt", "more")
        _ = try runner.backup(jobs: [])
        // drplan's own prune removes the older snapshot: expected, never reported.
        #expect(try runner.prune(jobs: [], grace: 0).map(\.status) == [.success, .success])
        #expect(try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false, from: "drive").map(\.0.status) == [.success])
        // Someone deletes the newest snapshot file by hand.
        let snaps = dir.path + "/drive/drplan-repository/snapshots"
        for f in try FileManager.default.contentsOfDirectory(atPath: snaps) { try FileManager.default.removeItem(atPath: snaps + "/" + f) }
        let t = try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false, from: "drive")[0].0
        #expect(t.status == .failed && t.error?.contains("has disappeared without a prune by drplan") == true, "\(t.error ?? "")")
        let check = try runner.checkRepositories(jobs: [], from: "drive", readData: .none)
        #expect(check.count == 1 && check[0].report.problems.contains { $0.contains("has disappeared") })
        let b = try runner.backup(jobs: [])
        #expect(b[0].status == .success && b[0].output?.contains("WARNING: snapshot") == true)
        #expect(b[1].output?.contains("WARNING") != true)
    }

    @Test("targets: all tests every copy on each run; rotate tests each in turn")
    func testTargets() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("drive"); try dir.makeDirectory("other")
        let storage = """
              - { id: drive, kind: removable, site: home, path: drive, create: true }
              - { id: bucket, kind: removable, site: home, path: other, create: true }
            """
        let runner = try Self.runner(try Self.inventory(dir, storage: storage), dir)
        _ = try runner.backup(jobs: [])
        let order = try (0..<3).map { _ in try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false).map { $0.0.storage ?? "" } }
        #expect(order == [["drive"], ["bucket"], ["drive"]])
        let text = try String(contentsOfFile: dir.path + "/inv.yaml", encoding: .utf8).replacingOccurrences(of: "scope: full }", with: "scope: full, targets: all }")
        let all = Runner(inventory: try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", text)]), baseDirectory: dir.path, store: runner.store)
        #expect(try all.restoreTest(tests: [], sample: nil, seed: 1, keep: false).map { $0.0.storage ?? "" } == ["drive", "bucket"])
    }

    @Test("a source that reads as under 1% of its declared size fails the run unless allow_empty; an empty passphrase is refused")
    func honestSources() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("drive")
        let one = """
              - { id: drive, kind: removable, site: home, path: drive, create: true }
              - { id: bucket, kind: removable, site: home, path: drive, create: true }
            """
        let small = try Self.runner(try Self.inventory(dir, storage: one, asset: "size: 130MB"), dir)
        let runs = try small.backup(jobs: [])
        #expect(runs.allSatisfy { $0.status == .failed && ($0.error?.contains("under 1% of its declared size") ?? false) }, "\(runs.map { $0.error ?? "" })")
        let allowed = try Self.runner(try Self.inventory(dir, storage: one, job: ", allow_empty: true", asset: "size: 130MB"), dir)
        #expect(try allowed.backup(jobs: []).map(\.status) == [.success, .success])
        try dir.write("pw.txt", "\n")
        let emptyKey = Runner(inventory: try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", try String(contentsOfFile: dir.path + "/inv.yaml", encoding: .utf8))]), baseDirectory: dir.path, store: small.store)
        let refused = try emptyKey.backup(jobs: [])
        #expect(refused.allSatisfy { $0.status == .failed && ($0.error?.contains("is empty") ?? false) }, "\(refused.map { $0.error ?? "" })")
    }
}
