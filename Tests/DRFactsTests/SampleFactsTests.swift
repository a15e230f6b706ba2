import CEL
import DRInventory
import Foundation
import Testing
@testable import DRFacts

@Suite("Facts on the samples")
struct SampleFactsTests {
    static let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("samples").path
    static let now = Timestamp(seconds: Int64(Civil.days(year: 2026, month: 11, day: 22)) * 86_400)

    func facts(_ name: String) throws -> Facts {
        FactDeriver.derive(try InventoryLoader.load(paths: [Self.samples + "/" + name]), now: Self.now)
    }

    func find(_ list: [Value], _ id: String) throws -> Value {
        try #require(list.first { $0["id"] == .string(id) }, "no object '\(id)'")
    }

    func seconds(_ v: Value?) -> Double? {
        if case .duration(let d)? = v { return d.totalSeconds }
        return nil
    }

    func int(_ v: Value?) -> Int64? {
        if case .int(let i)? = v { return i }
        return nil
    }

    @Test("every sample validates", arguments: ["small-office.yaml", "betpro.yaml", "clinic.yaml", "clean.yaml"])
    func validates(name: String) throws {
        let f = try facts(name)
        #expect(!f.assets.isEmpty)
    }

    @Test("every field facts.md lists is present on every object", arguments: ["small-office.yaml", "betpro.yaml", "clinic.yaml", "clean.yaml"])
    func allFields(name: String) throws {
        let f = try facts(name)
        let required: [(String, [Value], [String])] = [
            ("asset", f.assets, ["region", "protected", "jobs", "copies", "copy_count", "media_count", "offsite_count", "immutable_count",
                                 "rpo_achievable", "rto_estimate", "retention_effective", "retention_required_min", "retention_allowed_max",
                                 "last_success", "last_success_source", "restore_tests", "dependency_depth", "slowest_dependency",
                                 "tier", "media", "data_classes", "depends_on", "labels", "backup"]),
            ("job", f.jobs, ["max_gap", "min_gap", "retention_effective", "versioned", "offsite_targets", "last_success", "last_status", "next_run", "lag", "engine"]),
            ("storage", f.storage, ["media", "utilization", "holds", "immutable", "air_gapped"]),
            ("restore_test", f.restoreTests, ["assets", "last_run", "result", "age", "full_equivalent", "every", "scope"]),
        ]
        for (kind, objects, keys) in required {
            for o in objects {
                for k in keys { #expect(o[k] != nil, "\(kind) \(String(describing: o["id"])) lacks \(k)") }
            }
        }
        for a in f.assets {
            guard case .list(let copies)? = a["copies"] else { Issue.record("copies not a list"); continue }
            #expect(copies.first?["primary"] == .bool(true) && copies.first?["storage"] == .null)
            for c in copies {
                for k in ["storage", "site", "region", "media", "offsite", "immutable", "air_gapped", "encrypted_at_rest", "versioned", "primary"] {
                    #expect(c[k] != nil, "copy lacks \(k)")
                }
            }
        }
    }

    @Test("small office: copies, achievable RPO across two jobs, retention and utilisation")
    func smallOffice() throws {
        let f = try facts("small-office.yaml")
        let db = try find(f.assets, "accounts-db")
        #expect(int(db["copy_count"]) == 3 && int(db["media_count"]) == 3 && int(db["offsite_count"]) == 1 && int(db["immutable_count"]) == 0)
        // Weeknights 22:30 plus nightly 23:00: the largest gap is Friday 23:00 → Saturday 23:00.
        #expect(seconds(db["rpo_achievable"]) == 86_400)
        #expect(seconds(db["retention_effective"]) == Double(28 * 86_400))   // only the versioned USB job counts
        #expect(seconds(db["retention_required_min"]) == Double(6 * 365 * 86_400))
        #expect(seconds(db["rto_estimate"]) == 20)                   // 2 GB from removable media at 100 MB/s
        #expect(db["last_success"] == .timestamp(try Timestamp.parse("2026-11-21T23:12:00Z")))
        #expect(db["last_success_source"] == .string("declared"))
        let usb = try find(f.storage, "usb-drive")
        #expect(usb["utilization"] == .double(0.875))
        #expect(usb["holds"] == .strings(["file-share", "accounts-db"]))
        let pc = try find(f.assets, "reception-pc")
        #expect(pc["protected"] == .bool(false) && pc["rpo_achievable"] == .null && pc["retention_effective"] == .null)
        let mirror = try find(f.jobs, "share-to-cloud")
        #expect(mirror["versioned"] == .bool(false) && mirror["offsite_targets"] == .strings(["s3-backup"]))
        #expect(try find(f.jobs, "share-to-usb")["max_gap"] == .duration(CELDuration(seconds: 259_200)))
    }

    @Test("betpro: continuous lag, dependencies, sample scaling, ages")
    func betpro() throws {
        let f = try facts("betpro.yaml")
        #expect(seconds(try find(f.assets, "wallets-db")["rpo_achievable"]) == 30)
        #expect(seconds(try find(f.assets, "auth-svc")["rpo_achievable"]) == Double(23 * 3600))
        #expect(seconds(try find(f.assets, "trades-db")["rpo_achievable"]) == 900)
        #expect(seconds(try find(f.assets, "wallets-db")["rto_estimate"]) == 10_000)
        #expect(seconds(try find(f.assets, "trades-db")["rto_estimate"]) == 2_000)   // the NAS's own 250 MB/s
        let app = try find(f.assets, "app-servers")
        #expect(app["dependency_depth"] == .int(3))   // app-servers → trades-db → auth-svc → dns
        // file-servers (rto 48h) is the slowest of auth-svc, dns, file-servers and trades-db.
        #expect(app["slowest_dependency"] == .object([("id", .string("file-servers")), ("rto", .duration(CELDuration(seconds: 172_800))), ("via", .string("file-servers"))]))
        #expect(try find(f.assets, "dns")["slowest_dependency"] == .null && find(f.assets, "dns")["dependency_depth"] == .int(0))
        #expect(seconds(try find(f.assets, "wallets-db")["retention_effective"]) == Double(5 * 365 * 86_400))
        #expect(seconds(try find(f.assets, "file-servers")["retention_allowed_max"]) == Double(2 * 365 * 86_400))
        let trades = try find(f.restoreTests, "trades-quarterly")
        #expect(seconds(trades["full_equivalent"]) == 7_200)   // 12m × 500 GB / 50 GB
        #expect(seconds(trades["age"]) == Double(52 * 86_400 + 14 * 3600))
        #expect(try find(f.restoreTests, "auth-restore")["every"] == .duration(CELDuration(seconds: 90 * 86_400)))
        let replica = try find(f.jobs, "wallets-replica")
        #expect(replica["max_gap"] == .duration(CELDuration(seconds: 30)) && replica["next_run"] == .null)
        #expect(try find(f.jobs, "laptops-backup")["next_run"] == .timestamp(try Timestamp.parse("2026-11-22T04:00:00Z")))
        #expect(try find(f.jobs, "weekly-vault")["offsite_targets"] == .strings(["tape-vault"]))
        #expect(try find(f.storage, "endpoint-cloud")["utilization"] == .double(0.84))
        #expect(try find(f.sites, "fra-dc1")["region"] == .string("eu-central"))
    }

    @Test("secret values never reach the facts output")
    func redaction() throws {
        for name in ["small-office.yaml", "betpro.yaml"] {
            let json = JSONWriter().string(try facts(name).document)
            for secret in ["wJalrXUtnFEMI", "Summer2019!"] { #expect(!json.contains(secret)) }
        }
        let json = JSONWriter().string(FactDeriver.derive(try InventoryLoader.load(paths: [Self.samples + "/../Tests/DRInventoryTests/Fixtures/valid/full.yaml"]), now: Self.now).document)
        for secret in ["literal-token-value", "s3cret", "hunter2"] { #expect(!json.contains(secret), "\(secret) leaked") }
        #expect(json.contains("env:API") && json.contains("<redacted>"))
    }
}
