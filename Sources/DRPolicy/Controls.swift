import DRInventory
import Foundation
import Yams

/// The controls of each framework that drplan cites or marks manual, from policies/controls/
/// (id, title, source URL, and for a control no rule can observe, what the auditor should ask
/// for), and each framework's scope, from policies/frameworks.yaml.
public struct ControlCatalog: Sendable {
    public struct Control: Sendable, Equatable {
        public var framework: String
        public var id: String
        public var title: String
        public var url: String
        /// What to ask for, when no rule can observe the control.
        public var manual: String?
        /// `framework:id`, as rules cite it.
        public var key: String { framework + ":" + id }
    }

    /// Each framework's display title ("PCI DSS v4.0.1").
    public var titles: [String: String] = [:]
    /// Every control by `framework:id`.
    public var controls: [String: Control] = [:]
    /// Framework → the data classes that bring a subject into its scope; absent or nil means
    /// organization-wide.
    public var dataClasses: [String: Set<String>] = [:]

    /// The catalog compiled into drplan. Its files are tested to load without a problem, so a
    /// failure here is a defect of the build, reported as such.
    public static let builtin: ControlCatalog = {
        var c = ControlCatalog()
        let sink = DiagnosticSink()
        for (name, text) in ControlFiles.files { c.read(text, file: name, sink: sink) }
        builtinProblems = sink.items.map(\.description)
        return c
    }()

    /// Problems found reading the built-in files (empty in a correct build; a test checks).
    nonisolated(unsafe) public private(set) static var builtinProblems: [String] = []

    /// Reads a controls file (`framework:`, `title:`, `controls:`) or a scope file (`frameworks:`).
    package mutating func read(_ text: String, file: String, sink: DiagnosticSink) {
        let ctx = ReadContext(file: file, sink: sink)
        guard let root = InventoryLoader.compose(text, file: file, sink: sink), let top = ObjectReader(root, what: file, ctx: ctx) else { return }
        if let scopes = top.object("frameworks") {
            for e in scopes.entries {
                guard let f = ObjectReader(e.value, what: "framework '\(e.key)'", ctx: ctx) else { continue }
                if let classes = f.list("data_classes")?.map(\.0) { dataClasses[e.key, default: []].formUnion(classes) }
                f.finish(allowed: ["data_classes"])
            }
        }
        if let framework = top.string("framework") {
            titles[framework] = top.string("title") ?? framework
            if let list = top.value("controls"), case .sequence(let items) = list {
                for item in items {
                    guard let r = ObjectReader(item, what: "a control of \(framework)", ctx: ctx) else { continue }
                    let id = r.string("id", required: true), title = r.string("title", required: true), url = r.string("url", required: true)
                    let manual = r.string("manual")
                    r.finish(allowed: ["id", "title", "url", "manual"])
                    if let id, let title, let url { controls[framework + ":" + id] = Control(framework: framework, id: id, title: title, url: url, manual: manual) }
                }
            }
        }
        // A policy file holds rules and overrides beside its `frameworks:`; PolicyLoader checks those.
        top.finish(allowed: ["framework", "title", "controls", "frameworks", "drplan-policy", "rules", "overrides"])
    }

    /// Controls no rule observes, for the frameworks given: the matrix shows them as `manual`.
    public func manualControls(frameworks: Set<String>) -> [Control] {
        controls.values.filter { $0.manual != nil && frameworks.contains($0.framework) }.sorted { $0.key < $1.key }
    }
}

/// Which subjects fall under which framework: an asset by its data classes, and everything
/// else through the assets it holds, protects, tests or hosts.
public struct FrameworkScope: Sendable {
    let dataClasses: [String: Set<String>]
    /// Subject id → the data classes it carries.
    let classes: [String: Set<String>]
    /// Data-scoped frameworks with at least one asset in scope (organization-level subjects,
    /// such as the evidence store or a secret in the inventory, count for those).
    let present: Set<String>

    public init(inventory: Inventory, catalog: ControlCatalog) {
        dataClasses = catalog.dataClasses.filter { !$0.value.isEmpty }
        var c: [String: Set<String>] = [:]
        for a in inventory.assets {
            let mine = Set(a.dataClasses)
            c[a.id, default: []].formUnion(mine)
            c[a.site, default: []].formUnion(mine)
        }
        for j in inventory.jobs {
            let held = j.assets.reduce(into: Set<String>()) { $0.formUnion(c[$1] ?? []) }
            c[j.id, default: []].formUnion(held)
            for t in j.targets { c[t, default: []].formUnion(held) }
        }
        let storageSites = Dictionary(inventory.storage.map { ($0.id, $0.site) }, uniquingKeysWith: { a, _ in a })
        for s in inventory.storage { if let site = storageSites[s.id] { c[site, default: []].formUnion(c[s.id] ?? []) } }
        for t in inventory.restoreTests {
            let tested = t.asset.map { c[$0] ?? [] } ?? c[t.job] ?? []
            c[t.id, default: []].formUnion(tested)
        }
        classes = c
        let all = inventory.assets.reduce(into: Set<String>()) { $0.formUnion($1.dataClasses) }
        present = Set(dataClasses.filter { !$0.value.isDisjoint(with: all) }.keys)
    }

    /// Whether `framework`'s controls apply to this subject.
    public func applies(_ framework: String, kind: SubjectKind, subject: String) -> Bool {
        guard let scoped = dataClasses[framework] else { return true }
        switch kind {
        case .document, .evidence, .plan: return present.contains(framework)
        case .waiver: return classes[subject].map { !$0.isDisjoint(with: scoped) } ?? present.contains(framework)
        default: return !(classes[subject] ?? []).isDisjoint(with: scoped)
        }
    }
}

extension ControlCatalog {
    /// Citations that do not name a listed control of a listed framework, or whose written
    /// title differs from the list's: a typo'd control id is caught here, not by an auditor.
    public func citationProblems(_ rules: [Rule]) -> [String] {
        var problems: [String] = []
        for r in rules {
            for c in r.controls {
                let fw = String(c.split(separator: ":").first ?? "")
                guard titles[fw] != nil else { problems.append("\(r.id) cites \(c): no framework '\(fw)' in policies/controls/"); continue }
                guard let known = controls[c] else { problems.append("\(r.id) cites \(c), which is not a control listed in policies/controls/\(fw).yaml"); continue }
                if let written = r.controlTitles[c], written != known.title {
                    problems.append("\(r.id) writes \(c) as '\(written)'; policies/controls/\(fw).yaml calls it '\(known.title)'")
                }
            }
        }
        return problems
    }
}
