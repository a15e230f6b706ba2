import CEL
import DRFacts
import DRInventory
import Foundation
import Testing
@testable import DRPolicy

/// The built-in catalog: complete, embedded faithfully, and every example behaving as declared.
@Suite("Built-in catalog")
struct CatalogTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let catalog: PolicySet = (try? PolicyLoader.load()) ?? PolicySet()
    static let ruleIds = catalog.rules.map(\.id)

    @Test("the catalog loads without problems")
    func loads() throws {
        _ = try PolicyLoader.load()
    }

    @Test("every rule of rules.md, and the rules docs/policies.md adds (DR108–DR110, DR204, DR407, DR505–DR507, DR605–DR607, DR704, DR802–DR805, DR910), is in the catalog, with controls, a rationale and examples")
    func complete() {
        let expected = ["DR001", "DR101", "DR102", "DR103", "DR104", "DR105", "DR106", "DR107", "DR108", "DR109", "DR110", "DR201", "DR202", "DR203", "DR204", "DR301", "DR302", "DR303",
                        "DR401", "DR402", "DR403", "DR404", "DR405", "DR406", "DR407", "DR501", "DR502", "DR503", "DR504", "DR505", "DR506", "DR507",
                        "DR601", "DR602", "DR603", "DR604", "DR605", "DR606", "DR607", "DR701", "DR702", "DR703", "DR704", "DR801", "DR802", "DR803", "DR804", "DR805", "DR900", "DR910"]
        #expect(Self.ruleIds.sorted() == expected)
        for r in Self.catalog.rules {
            #expect(!r.controls.isEmpty, "\(r.id) has no controls")
            #expect(!r.rationale.isEmpty, "\(r.id) has no rationale")
            #expect(r.examples.contains { $0.expectation == .pass }, "\(r.id) has no pass example")
            #expect(r.examples.contains { $0.expectation != .pass }, "\(r.id) has no fail example")
        }
    }

    /// The one generic test: a new rule needs no new test file.
    @Test("every example of every rule behaves as declared", arguments: ruleIds)
    func examples(id: String) throws {
        let rule = try #require(Self.catalog.rule(id))
        for problem in RuleExamples.check(rule) { Issue.record(Comment(rawValue: problem)) }
    }

    @Test("the embedded catalog matches policies/ (run scripts/embed-resources.py after editing)")
    func embeddedMatchesFiles() throws {
        let dir = Self.root + "/policies"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") && $0 != "frameworks.yaml" }.sorted()
        #expect(Catalog.files.map(\.name) == files.map { "policies/" + $0 })
        let controls = try FileManager.default.contentsOfDirectory(atPath: dir + "/controls").filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(ControlFiles.files.map(\.name) == controls.map { "policies/controls/" + $0 } + ["policies/frameworks.yaml"])
        for (name, text) in Catalog.files + ControlFiles.files {
            let onDisk = try String(contentsOfFile: Self.root + "/" + name, encoding: .utf8)
            #expect(text.trimmingCharacters(in: .newlines) == onDisk.trimmingCharacters(in: .newlines), "\(name) differs from its embedded copy")
        }
    }
}
