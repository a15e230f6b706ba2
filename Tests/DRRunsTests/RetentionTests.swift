import CEL
import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRRuns

@Suite("Retention and pruning")
struct RetentionTests {
    static let day: Int64 = 86_400
    /// 2026-03-01T12:00Z, a Sunday.
    static let start = Int64(Civil.days(year: 2026, month: 3, day: 1)) * 86_400 + 12 * 3600

    /// One snapshot a day for `days` days, plus a second one on the newest day.
    static func daily(_ days: Int) -> [(id: String, time: Int64)] {
        (0..<days).map { (id: "d\($0)", time: start + Int64($0) * day) } + [(id: "d\(days - 1)b", time: start + Int64(days - 1) * day + 3600)]
    }

    func policy(_ f: (inout JobRetention) -> Void) -> JobRetention { var r = JobRetention(); f(&r); return r }

    @Test("keep_last, keep_daily and keep_within, as restic counts them")
    func basic() {
        let snaps = Self.daily(40)
        #expect(Retention.keep(snaps, policy: policy { $0.keepLast = 3 }) == ["d39b", "d39", "d38"])
        // The newest snapshot of each of the 7 newest days.
        #expect(Retention.keep(snaps, policy: policy { $0.keepDaily = 7 }) == ["d39b", "d38", "d37", "d36", "d35", "d34", "d33"])
        // Within 2 days of the newest snapshot (d39b at day 39 + 1h), not of now.
        #expect(Retention.keep(snaps, policy: policy { $0.keepWithin = TimeSpan(seconds: 2 * Self.day) }) == ["d39b", "d39", "d38"])
        #expect(Retention.keep([], policy: policy { $0.keepLast = 3 }).isEmpty)
        #expect(Retention.keep(snaps, policy: JobRetention()).isEmpty)
    }

    @Test("weekly buckets are ISO weeks, monthly and yearly are calendar months and years")
    func buckets() {
        let snaps = Self.daily(40)   // 2026-03-01 (Sunday) … 2026-04-09
        // ISO weeks end on Sundays: the newest snapshot of each of the 4 newest weeks.
        #expect(Retention.keep(snaps, policy: policy { $0.keepWeekly = 4 }) == ["d39b", "d35", "d28", "d21"])
        #expect(Retention.keep(snaps, policy: policy { $0.keepMonthly = 12 }) == ["d39b", "d30"])   // April, and March 31
        #expect(Retention.keep(snaps, policy: policy { $0.keepYearly = 5 }) == ["d39b"])
        #expect(Retention.bucket(Int64(Civil.days(year: 2027, month: 1, day: 1)) * 86_400, "week") == "2026-W53")   // a Friday in 2026's week 53
        #expect(Retention.bucket(Int64(Civil.days(year: 2024, month: 12, day: 30)) * 86_400, "week") == "2025-W1")
    }

    @Test("rules combine: a snapshot any rule keeps stays")
    func combined() {
        let snaps = Self.daily(40)
        let kept = Retention.keep(snaps, policy: policy { $0.keepLast = 2; $0.keepWeekly = 2 })
        #expect(kept == ["d39b", "d39", "d35"])
    }

    @Test("prune forgets old snapshots and frees their data; the kept snapshot still restores")
    func pruneFrees() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try BuiltinRepository.initialize(at: URL(fileURLWithPath: dir.path + "/repo"), passphrase: nil)
        var ids: [String] = []
        for i in 0..<3 {
            try RepositoryTests.randomFile(dir.path + "/src/data.bin", bytes: 300_000)   // incompressible: the freed bytes are its size
            ids.append(try repo.backup(paths: [dir.path + "/src"], tags: ["job", "asset"]).snapshot)
        }
        let keep = Retention.keep(try repo.snapshots().map { (id: $0.id, time: $0.time) }, policy: policy { $0.keepLast = 1 })
        #expect(keep.count == 1)
        try repo.forget(Set(ids).subtracting(keep))
        #expect(try repo.snapshots().map(\.id) == Array(keep))
        let young = try repo.collectGarbage(grace: 3600)
        #expect(young.objects == 0)   // everything was stored within the grace period
        let gc = try repo.collectGarbage(grace: 0)
        #expect(gc.objects == 2 && gc.bytes >= 600_000)
        let report = try repo.restore(try #require(keep.first), to: URL(fileURLWithPath: dir.path + "/out"))
        #expect(report.damaged.isEmpty && report.files == 1)
    }

    @Test("a pack holding live and dead objects is rewritten with the live ones; leftovers of a crashed backup go too")
    func pruneRewritesPacks() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try BuiltinRepository.initialize(at: URL(fileURLWithPath: dir.path + "/repo"), passphrase: "p", kdfRounds: 1 << 10)
        // One file, so one worker and one pack: its first 1 MiB chunk stays, its tail changes.
        // Random bytes, which do not compress, so the freed bytes are the tail's size.
        let head = Data((0..<BuiltinRepository.chunkSize).map { _ in UInt8.random(in: 0...255) })
        try dir.write("src/file.bin", head + Data((0..<300_000).map { _ in UInt8.random(in: 0...255) }))
        let first = try repo.backup(paths: [dir.path + "/src"], tags: ["job", "asset"])
        let tail = Data((0..<300_000).map { _ in UInt8.random(in: 0...255) })
        try dir.write("src/file.bin", head + tail)
        let second = try repo.backup(paths: [dir.path + "/src"], tags: ["job", "asset"])
        let keptId = try #require(try repo.snapshot(second.snapshot).entries.first { $0.path == "file.bin" }?.chunks?.first)
        let oldPack = try #require(repo.location(keptId)).pack
        // What a backup killed before writing its index leaves: a pack nothing names.
        let orphan = repo.packURL(String(repeating: "ab", count: 32))
        try FileManager.default.createDirectory(at: orphan.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(repeating: 9, count: 1000).write(to: orphan)

        try repo.forget([first.snapshot])
        let gc = try repo.collectGarbage(grace: 0)
        #expect(gc.objects == 1 && gc.bytes >= 300_000, "\(gc)")
        let newPack = try #require(repo.location(keptId)).pack
        #expect(newPack != oldPack && !FileManager.default.fileExists(atPath: repo.packURL(oldPack).path))
        #expect(!FileManager.default.fileExists(atPath: orphan.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/repo/index").count == 1)
        #expect(try repo.check().isEmpty)
        // Reopened from disk, the rewritten index still finds everything.
        let reopened = try BuiltinRepository.open(at: URL(fileURLWithPath: dir.path + "/repo"), passphrase: "p")
        let report = try reopened.restore(second.snapshot, to: URL(fileURLWithPath: dir.path + "/out"))
        #expect(report.damaged.isEmpty && report.files == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/out/file.bin")) == head + tail)
        // Nothing left to collect: a second prune changes nothing.
        #expect(try reopened.collectGarbage(grace: 0).objects == 0)
    }
}
