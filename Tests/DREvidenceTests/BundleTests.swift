import CEL
import Crypto
@testable import DREvidence
import DRInventory
import DRPolicy
import DRRuns
import Foundation
import Testing
import TestSupport
import ZIPFoundation

/// A bundle made from a real store and verified from the zip alone; then edited as an
/// attacker would, each edit caught (or, without the key, documented as not catchable).
@Suite("Evidence bundles: signed, verified, tampered")
struct BundleTests {
    static let inventoryText = """
        drplan: 1
        organization: Tamper Test
        sites: [{ id: hq, kind: office }]
        storage: [{ id: nas, kind: nas, site: hq, path: /srv/nas }]
        assets: [{ id: docs, kind: file-store, site: hq, rpo: 1d, rto: 4h, source: { path: /srv/docs } }]
        jobs: [{ id: nightly, assets: [docs], schedule: "0 2 * * *", targets: [nas] }]
        restore_tests: [{ id: docs-full, job: nightly, scope: full, every: 30d }]
        """

    struct Fixture {
        var dir: TempDir
        var store: EvidenceStore
        var key: Curve25519.Signing.PrivateKey
        var inventory: Inventory
        var to: Timestamp
    }

    /// A store with three runs (one failed), signed checkpoints, and a period that covers them.
    static func fixture() throws -> Fixture {
        let dir = try TempDir()
        let path = dir.path + "/evidence.sqlite"
        let key = Curve25519.Signing.PrivateKey()
        let store = try EvidenceStore(path: path)
        try store.useSigningKey(key)
        for status in [RunRecord.Status.success, .failed, .success] {
            var run = try store.begin(RunRecord(kind: .backup, job: "nightly", asset: "docs", engine: "builtin", storage: "nas"))
            run.status = status
            run.snapshot = status == .success ? String(repeating: "ab", count: 16) : nil
            run.error = status == .failed ? "the target is not mounted" : nil
            try store.finish(run)
        }
        let inventory = try InventoryLoader.load(texts: [("inv.yaml", inventoryText)])
        return Fixture(dir: dir, store: store, key: key, inventory: inventory, to: Timestamp(seconds: Timestamp(Date()).seconds + 1))
    }

    static let identity = Identity(user: "auditee", host: "build-1", commandLine: ["drplan", "evidence", "export"], toolVersion: "9.9.9", binarySHA256: nil)

    static func build(_ f: Fixture, signed: Bool = true) throws -> ExportedBundle {
        let reading = try EvidenceStore.reading(f.store.path)
        let request = ExportRequest(inventory: f.inventory, policies: try PolicyLoader.load(), options: CheckOptions(),
                                    from: Timestamp(seconds: 0), to: f.to, store: reading,
                                    verification: try reading.verification(key: f.key.publicKey), signer: signed ? f.key : nil,
                                    identity: identity, generatedAt: f.to, baseDirectory: f.dir.path, inventoryArgs: "-i inv.yaml ")
        return try EvidenceExport.build(request)
    }

    static func write(_ files: [(name: String, data: Data)], _ f: Fixture, _ name: String) throws -> URL {
        let url = URL(fileURLWithPath: f.dir.path + "/" + name)
        try EvidenceBundle.write(files, to: url, modified: Date(timeIntervalSince1970: 0))
        return url
    }

    /// The files with one replaced, and (when `rehash`) the manifest recomputed as an attacker would.
    static func edit(_ files: [(name: String, data: Data)], _ name: String, rehash: Bool, _ change: (String) -> String) -> [(name: String, data: Data)] {
        var out = files.map { $0.name == name ? ($0.name, Data(change(String(decoding: $0.data, as: UTF8.self)).utf8)) : $0 }
        if rehash { out = rehashed(out) }
        return out
    }

    static func rehashed(_ files: [(name: String, data: Data)]) -> [(name: String, data: Data)] {
        let content = files.filter { $0.name != EvidenceBundle.manifestName && $0.name != EvidenceBundle.signatureName }
        var out = content
        out.append((EvidenceBundle.manifestName, EvidenceBundle.manifest(content)))
        if let sig = files.first(where: { $0.name == EvidenceBundle.signatureName }) { out.append(sig) }
        return out
    }

    static func verify(_ url: URL, _ key: Curve25519.Signing.PublicKey?) throws -> BundleVerdict {
        try BundleVerifier.verify(url, key: key, now: Timestamp(seconds: 0))
    }

    @Test("an untouched bundle verifies, with and without the key, and its paragraph says what was checked")
    func intact() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        let bundle = try Self.build(f)
        let names = Set(bundle.files.map(\.name))
        for n in ["attestation.json", "attestation.sig", "MANIFEST.sha256", "controls.csv", "controls.html", "period.json", "period.csv", "runbook.md",
                  "scenarios.json", "report.sarif", "report.junit.xml", "runs.json", "audit-log.json", "checkpoints.jsonl", "inventory/1-inv.yaml"] {
            #expect(names.contains(n), "\(n) is missing")
        }
        let url = try Self.write(bundle.files, f, "b.zip")
        let withKey = try Self.verify(url, f.key.publicKey)
        #expect(withKey.intact, "\(withKey.problems)")
        #expect(withKey.paragraph.contains("valid Ed25519 signature by key \(EvidenceKeys.keyId(f.key.publicKey))") && withKey.paragraph.contains("each of the 3 run(s)"))
        let without = try Self.verify(url, nil)
        #expect(without.intact && without.notes.contains { $0.contains("signature was not checked") })
        // The runs are as the store holds them, failed one included.
        let csv = try #require(bundle.files.first { $0.name == "runs.csv" }?.data)
        let runs = String(decoding: csv, as: UTF8.self)
        #expect(runs.contains("\"failed\"") && runs.contains("the target is not mounted"))
        // The period figures count them: three runs of nightly to nas, two of them successes.
        let periodData = try #require(bundle.files.first { $0.name == "period.json" }?.data)
        let period = try #require(try JSONSerialization.jsonObject(with: periodData) as? [String: Any])
        let row = try #require((period["jobs"] as? [[String: Any]])?.first { $0["job"] as? String == "nightly" && $0["target"] as? String == "nas" })
        #expect(row["runs_done"] as? Int == 3 && row["runs_succeeded"] as? Int == 2, "\(row)")
        // The control table links the runs behind each control that judged their job, asset or storage.
        let controls = String(decoding: try #require(bundle.files.first { $0.name == "controls.csv" }?.data), as: UTF8.self)
        let backupLine = try #require(controls.split(separator: "\r\n").first { $0.hasPrefix("\"iso27001\",\"A.8.13\"") })
        for id in try f.store.runs().map(\.id) { #expect(backupLine.contains(id), "\(id) not behind A.8.13: \(backupLine)") }
    }

    @Test("a file edited without touching the manifest is caught, with or without the key")
    func editedFile() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        let files = Self.edit(try Self.build(f).files, "runs.csv", rehash: false) { $0.replacingOccurrences(of: "\"failed\"", with: "\"success\"") }
        let v = try Self.verify(try Self.write(files, f, "x.zip"), nil)
        #expect(v.problems.contains("runs.csv does not match its SHA-256 in the manifest: it was changed"), "\(v.problems)")
        #expect(v.paragraph.contains("FAILED"))
    }

    @Test("a run edited and the manifest re-hashed: the signature fails with the key, the chain without it")
    func rehashedManifest() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        var files = Self.edit(try Self.build(f).files, "runs.json", rehash: true) { $0.replacingOccurrences(of: "\"failed\"", with: "\"success\"") }
        files = Self.edit(files, "runs.csv", rehash: true) { $0.replacingOccurrences(of: "\"failed\"", with: "\"success\"") }
        let url = try Self.write(files, f, "x.zip")
        let withKey = try Self.verify(url, f.key.publicKey)
        #expect(withKey.problems.contains { $0.contains("is not a valid signature of the manifest") }, "\(withKey.problems)")
        let without = try Self.verify(url, nil)
        #expect(without.problems.contains { $0.contains("differs from what the audit log recorded: it was edited") }, "\(without.problems)")
    }

    @Test("the whole chain recomputed after an edit: the checkpoints catch it; dropped too, only the key does")
    func recomputedChain() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        let original = try Self.build(f).files
        // The attacker rewrites the failed run as a success, recomputes its digest, every
        // entry's hash after it, the attested head and the manifest.
        func text(_ n: String) throws -> String { String(decoding: try #require(original.first { $0.name == n }?.data), as: UTF8.self) }
        guard case .success(var rows) = RunsFile.parse(Data(try text("runs.json").utf8)) else { Issue.record("runs.json does not parse"); return }
        let failed = try #require(rows.firstIndex { RunsFile.field($0, "status") == "failed" })
        let id = RunsFile.field(rows[failed], "id")
        rows[failed] = rows[failed].map { field -> (String, Value) in
            switch field.0 {
            case "status": return (field.0, Value.string("success"))
            case "error": return (field.0, Value.null)
            default: return field
            }
        }
        guard case .success(var entries) = ChainExtract.parse(Data(try text("audit-log.json").utf8)) else { Issue.record("audit-log.json does not parse"); return }
        var prev = entries[0].prevHash
        for i in entries.indices {
            if entries[i].detail.contains(id) && entries[i].event == "run.finished" {
                entries[i].detail = #"{"row_sha256":"\#(EvidenceStore.runDigest(rows[failed]))","run":"\#(id)","snapshot":"","status":"success"}"#
            }
            entries[i].prevHash = prev
            entries[i].hash = EvidenceStore.chainHash(prev: prev, at: entries[i].at, event: entries[i].event, detail: entries[i].detail)
            prev = entries[i].hash
        }
        let oldHead = try #require(ChainExtract.parse(Data(try text("audit-log.json").utf8)).success?.last?.hash)
        var files = original.map { f -> (name: String, data: Data) in
            switch f.name {
            case "runs.json": return (f.name, Data(RunsFile.json(rows).utf8))
            case "runs.csv": return (f.name, Data(RunsFile.csv(rows).utf8))
            case "audit-log.json": return (f.name, Data(ChainExtract.json(entries).utf8))
            case "attestation.json": return (f.name, Data(String(decoding: f.data, as: UTF8.self).replacingOccurrences(of: oldHead, with: prev).utf8))
            default: return f
            }
        }
        files = Self.rehashed(files)
        let url = try Self.write(files, f, "x.zip")
        let caught = try Self.verify(url, nil)
        #expect(caught.problems.contains { $0.contains("the chain was rewritten after it was signed") }, "\(caught.problems)")
        // Without the checkpoints (and the signature), nothing in the bundle itself contradicts
        // the rewrite: docs/evidence.md says so, and only the key catches it.
        let bare = Self.rehashed(files.filter { $0.name != "checkpoints.jsonl" && $0.name != EvidenceBundle.signatureName })
        let unsigned = try Self.write(bare, f, "bare.zip")
        #expect(try Self.verify(unsigned, nil).intact, "a consistent forgery without anchors is not detectable without the key")
        let withKey = try Self.verify(unsigned, f.key.publicKey)
        #expect(withKey.problems.contains { $0.contains("the bundle is not signed") })
        #expect(try Self.verify(url, f.key.publicKey).problems.contains { $0.contains("is not a valid signature of the manifest") })
    }

    @Test("a signature swapped for another key's is refused with the real key")
    func swappedSignature() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        var files = try Self.build(f).files
        let manifest = try #require(files.first { $0.name == EvidenceBundle.manifestName }?.data)
        let other = Curve25519.Signing.PrivateKey()
        let forged = Data((try other.signature(for: manifest).base64EncodedString() + "\n").utf8)
        files = files.map { $0.name == EvidenceBundle.signatureName ? ($0.name, forged) : $0 }
        let url = try Self.write(files, f, "x.zip")
        #expect(try Self.verify(url, f.key.publicKey).problems.contains { $0.contains("is not a valid signature of the manifest") })
        #expect(try Self.verify(url, other.publicKey).problems.contains { $0.contains("checkpoints.jsonl") || $0.contains("names key") })
    }

    @Test("an added file, a removed one, and an entry that escapes the folder are each named")
    func addedRemovedEscaping() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        let files = try Self.build(f).files
        let added = try Self.verify(try Self.write(files + [("extra.txt", Data("x".utf8))], f, "a.zip"), nil)
        #expect(added.problems.contains("extra.txt is in the bundle but not in the manifest: it was added"))
        let removed = try Self.verify(try Self.write(files.filter { $0.name != "period.json" }, f, "r.zip"), nil)
        #expect(removed.problems.contains("period.json is listed in the manifest but missing from the bundle"))
        let escaping = try Self.verify(try Self.write(files + [("../../etc/cron.d/x", Data("x".utf8))], f, "e.zip"), nil)
        #expect(escaping.problems.contains { $0.contains("could escape the folder") }, "\(escaping.problems)")
    }

    @Test("an unsigned bundle checked with a key fails; without one it says it is unsigned")
    func unsigned() throws {
        let f = try Self.fixture(); defer { f.dir.cleanup() }
        let url = try Self.write(try Self.build(f, signed: false).files, f, "u.zip")
        #expect(try Self.verify(url, f.key.publicKey).problems.contains { $0.contains("the bundle is not signed") })
        let without = try Self.verify(url, nil)
        #expect(without.intact && without.notes.contains { $0.contains("not signed") })
    }
}

extension Result {
    var success: Success? { if case .success(let s) = self { return s } else { return nil } }
}
