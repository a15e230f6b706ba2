import CEL
import DRFacts
import DRInventory
import Foundation
import Testing
@testable import DRPolicy

/// The type checker's schema must describe exactly the facts `FactDeriver` produces.
@Suite("Fact model schema")
struct FactModelTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    func compare(_ value: Value, _ type: CELType, path: String) {
        switch (type, value) {
        case (_, .null), (.dyn, _): return
        case (.object(let name), .map(let m)):
            guard let fields = FactModel.objects[name] else { Issue.record("no schema '\(name)' (at \(path))"); return }
            let keys = Set(m.entries.compactMap { if case .string(let s) = $0.key { s } else { nil } })
            #expect(keys == Set(fields.keys), "\(path) (\(name)): facts have \(keys.subtracting(fields.keys).sorted()), schema has \(Set(fields.keys).subtracting(keys).sorted())")
            for e in m.entries { if case .string(let k) = e.key, let t = fields[k] { compare(e.value, t, path: path + "." + k) } }
        case (.list(let t), .list(let items)): for (i, v) in items.enumerated() { compare(v, t, path: "\(path)[\(i)]") }
        case (.map(_, let t), .map(let m)): for e in m.entries { compare(e.value, t, path: path + "[…]") }
        case (.int, .int), (.double, .double), (.string, .string), (.bool, .bool), (.duration, .duration), (.timestamp, .timestamp): return
        default: Issue.record("\(path): schema says \(type), facts hold \(Builtins.typeName(value))")
        }
    }

    @Test("schema and facts agree on every sample and the full fixture", arguments: [
        "samples/small-office.yaml", "samples/betpro.yaml", "samples/clinic.yaml", "samples/clean.yaml", "Tests/DRInventoryTests/Fixtures/valid/full.yaml",
    ])
    func agree(path: String) throws {
        let facts = FactDeriver.derive(try InventoryLoader.load(paths: [Self.root + "/" + path]), now: RuleExamples.defaultNow)
        compare(facts.inventoryValue, .object("inventory"), path: "inventory")
        compare(facts.policy, .object("policy"), path: "policy")
    }
}
