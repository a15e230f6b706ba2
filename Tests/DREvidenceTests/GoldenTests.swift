import CEL
@testable import DREvidence
import DRInventory
import DRPolicy
import Foundation
import Testing

/// The bundle's own files for a sample, byte for byte, under an injected clock and identity
/// (reports/examples/clinic/bundle/). After an intended change, regenerate them with
/// DRPLAN_UPDATE_GOLDEN=1 swift test --filter golden, and review the diff.
@Suite("Evidence bundles: golden files")
struct GoldenTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("golden attestation, control table and period figures", arguments: ["clinic"])
    func golden(sample: String) throws {
        let name = "samples/\(sample).yaml"
        let text = try String(contentsOfFile: Self.root + "/" + name, encoding: .utf8)
        // Loaded under the name a user types from the repository root, wherever the test runs.
        let inventory = try InventoryLoader.load(texts: [(name, text)])
        let day = { (m: Int, d: Int) in Timestamp(seconds: Int64(Civil.days(year: 2026, month: m, day: d)) * 86_400) }
        let request = ExportRequest(inventory: inventory, policies: try PolicyLoader.load(), options: CheckOptions(),
                                    from: day(10, 1), to: day(11, 1).adding(seconds: -1), store: nil, verification: nil, signer: nil,
                                    identity: Identity(user: "auditee", host: "clinic-nas", commandLine: ["drplan", "evidence", "export", "-i", name],
                                                       toolVersion: "0.1.0", binarySHA256: String(repeating: "0", count: 64)),
                                    generatedAt: day(11, 2), baseDirectory: Self.root + "/samples", inventoryArgs: "-i \(name) ")
        let bundle = try EvidenceExport.build(request)
        let dir = Self.root + "/reports/examples/\(sample)/bundle"
        for file in ["attestation.json", "controls.csv", "period.json"] {
            let data = try #require(bundle.files.first { $0.name == file }?.data)
            let path = dir + "/" + file
            if ProcessInfo.processInfo.environment["DRPLAN_UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try data.write(to: URL(fileURLWithPath: path))
            }
            let golden = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(data == golden, "\(path) differs; regenerate with DRPLAN_UPDATE_GOLDEN=1 and review the diff")
        }
        // The same request twice gives the same bytes: nothing reads the real clock or machine.
        let again = try EvidenceExport.build(request)
        #expect(again.files.map(\.data) == bundle.files.map(\.data))
    }
}
