import CEL
import DRInventory
import Foundation
import Testing
@testable import DRFacts

/// A copy counts only while its target has a recent success, judged per asset and target.
@Suite("Facts: copies proven by evidence")
struct CopyEvidenceTests {
    static let now = Timestamp(seconds: Int64(Civil.days(year: 2026, month: 11, day: 22)) * 86_400 + 6 * 3600)
    static let inventory = """
        drplan: 1
        sites: [{ id: office, kind: office }, { id: home, kind: home }]
        storage: [{ id: drive, kind: removable, site: home }, { id: bucket, kind: cloud-object, site: home }, { id: tape, kind: tape, site: home }]
        assets:
          - { id: docs, kind: file-store, site: office, rpo: 24h }
          - { id: mail, kind: file-store, site: office, rpo: 24h }
        jobs: [{ id: nightly, assets: [docs, mail], schedule: "@daily", targets: [drive, bucket, tape], target_engines: { tape: external } }]
        """

    func copies(_ facts: Facts, _ asset: String, _ key: String = "copies") -> [String: String] {
        guard let a = facts.assets.first(where: { $0["id"] == .string(asset) }), case .list(let l)? = a[key] else { return [:] }
        var out: [String: String] = [:]
        for c in l { if case .string(let s)? = c["storage"], case .string(let e)? = c["evidence"] { out[s] = e } }
        return out
    }

    @Test("without runs every copy is declared; with runs, a target with no recent success is not counted, per asset")
    func perAssetAndTarget() throws {
        let inv = try InventoryLoader.load(texts: [("inv.yaml", Self.inventory)])
        let declared = FactDeriver.derive(inv, now: Self.now)
        #expect(copies(declared, "docs") == ["drive": "declared", "bucket": "declared", "tape": "declared"])
        var m = MeasuredEvidence()
        let recent = Timestamp(seconds: Self.now.seconds - 5 * 3600), old = Timestamp(seconds: Self.now.seconds - 10 * 86_400)
        m.record(job: "nightly", target: "drive", asset: "docs", at: recent, success: true)
        m.record(job: "nightly", target: "drive", asset: "mail", at: recent, success: false)
        m.record(job: "nightly", target: "bucket", asset: "docs", at: old, success: true)
        m.record(job: "nightly", target: "bucket", asset: "docs", at: recent, success: false)
        let facts = FactDeriver.derive(inv, now: Self.now, measured: m)
        // docs: the drive is proven, the bucket's last success is too old, the tape is external.
        #expect(copies(facts, "docs") == ["drive": "measured", "tape": "declared"])
        #expect(copies(facts, "docs", "unproven_copies") == ["bucket": "stale"])
        // mail: its own runs to the drive failed, and it never reached the bucket.
        #expect(copies(facts, "mail") == ["tape": "declared"])
        #expect(copies(facts, "mail", "unproven_copies") == ["drive": "failed", "bucket": "none"])
        let docs = try #require(facts.assets.first { $0["id"] == .string("docs") })
        #expect(docs["copy_count"] == .int(3))   // the primary, the drive and the tape
        let unproven = FactDeriver(inv, now: Self.now, measured: m).unprovenCopies()
        #expect(unproven == [MeasuredEvidence.key(job: "nightly", target: "bucket", asset: "docs"), MeasuredEvidence.key(job: "nightly", target: "drive", asset: "mail"),
                             MeasuredEvidence.key(job: "nightly", target: "bucket", asset: "mail")])
    }
}
