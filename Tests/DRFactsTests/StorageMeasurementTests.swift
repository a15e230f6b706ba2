import CEL
import DRInventory
import Foundation
import Testing
@testable import DRFacts

/// What drplan measured of a storage itself: its Object Lock, its size, its restore rate.
@Suite("Facts: measured storage")
struct StorageMeasurementTests {
    static let now = Timestamp(seconds: Int64(Civil.days(year: 2026, month: 11, day: 22)) * 86_400)
    static let inventory = """
        drplan: 1
        sites: [{ id: office, kind: office }, { id: cloud, kind: cloud-region }]
        storage:
          - { id: bucket, kind: cloud-object, site: cloud, url: "s3://b/p", object_lock: { mode: compliance, days: 60 }, restore_rate: 10MB/s }
          - { id: vault, kind: cloud-object, site: cloud, immutable: true }
        assets: [{ id: docs, kind: file-store, site: office, tier: high, size: 100GB }]
        jobs: [{ id: nightly, assets: [docs], schedule: "@daily", targets: [bucket, vault] }]
        """

    func storage(_ f: Facts, _ id: String) throws -> Value { try #require(f.storage.first { $0["id"] == .string(id) }) }
    func asset(_ f: Facts) throws -> Value { try #require(f.assets.first) }

    @Test("a cloud copy is immutable only once its lock is verified; a refuted lock or a bare declaration does not count")
    func lockEvidence() throws {
        let inv = try InventoryLoader.load(texts: [("inv.yaml", Self.inventory)])
        let declared = FactDeriver.derive(inv, now: Self.now)
        #expect(try storage(declared, "bucket")["immutable_verified"] == .bool(false) && storage(declared, "bucket")["lock_days"] == .int(60))
        #expect(try asset(declared)["immutable_count"] == .int(0))
        var m = MeasuredEvidence()
        m.recordLockCheck(storage: "bucket", .init(at: Timestamp(seconds: Self.now.seconds - 3600), ok: true, detail: "ok"))
        let verified = FactDeriver.derive(inv, now: Self.now, measured: m)
        #expect(try storage(verified, "bucket")["immutable_verified"] == .bool(true) && asset(verified)["immutable_count"] == .int(1))
        m.recordLockCheck(storage: "bucket", .init(at: Self.now, ok: false, detail: "no lock"))
        let refuted = FactDeriver.derive(inv, now: Self.now, measured: m)
        #expect(try storage(refuted, "bucket")["immutable_verified"] == .bool(false) && asset(refuted)["immutable_count"] == .int(0))
        #expect(try storage(refuted, "vault")["immutable"] == .bool(false) && storage(refuted, "vault")["immutable_declared"] == .bool(true))
    }

    @Test("the repository's measured size and object count, and a measured restore rate over the declared one")
    func capacityAndRate() throws {
        let inv = try InventoryLoader.load(texts: [("inv.yaml", Self.inventory)])
        let before = FactDeriver.derive(inv, now: Self.now)
        #expect(try storage(before, "bucket")["repository_size"] == .null && storage(before, "bucket")["restore_rate"] == .int(10_000_000))
        #expect(try storage(before, "bucket")["restore_rate_source"] == .string("declared"))
        var m = MeasuredEvidence()
        m.capacity["bucket"] = .init(at: Self.now, bytes: 123_456, objects: 42)
        m.restoreRates["bucket"] = .init(at: Self.now, bytesPerSecond: 50e6, bytes: 1 << 30)
        let after = FactDeriver.derive(inv, now: Self.now, measured: m)
        let b = try storage(after, "bucket")
        #expect(b["repository_size"] == .int(123_456) && b["object_count"] == .int(42))
        #expect(b["restore_rate"] == .int(50_000_000) && b["restore_rate_source"] == .string("measured"))
        // 100 GB at the measured 50 MB/s: 2,000 s, not the declared rate's 10,000 s.
        #expect(try asset(after)["rto_estimate"] == .duration(CELDuration(seconds: 2000)))
    }
}
