import CEL
import DRFacts
import DRInventory

/// Runs a rule's pass/fail examples: its documentation doubles as its tests, for the built-in
/// catalog and for users' own policies alike.
public enum RuleExamples {
    /// Examples without `now` are evaluated as of this instant, so they never depend on the clock.
    public static let defaultNow = Timestamp(seconds: Int64(Civil.days(year: 2026, month: 11, day: 22)) * 86_400)

    /// Problems found, one sentence each; empty when every example behaves as declared.
    public static func check(_ rule: Rule) -> [String] {
        var problems: [String] = []
        var enabled = rule
        enabled.enabled = true
        for (i, ex) in rule.examples.enumerated() {
            let label = "\(rule.id) example #\(i + 1) (\(ex.location))"
            let inventory: Inventory
            do {
                inventory = try InventoryLoader.load(texts: [("\(rule.id)-example-\(i + 1).yaml", ex.inventory)])
            } catch {
                problems.append("\(label): the example inventory is invalid: \(error.diagnostics.map(\.message).joined(separator: "; "))")
                continue
            }
            var measured = MeasuredEvidence()
            for r in ex.runs {
                measured.record(job: r.job, target: r.target, at: r.at, success: r.success)
                if let h = r.host { measured.recordHostRun(host: h, at: r.at) }
            }
            measured.store = ex.store
            for r in ex.restoreRuns { measured.recordRestore(job: r.job, target: r.target, at: r.at, success: r.success) }
            for c in ex.sizes {
                measured.capacity[c.storage] = .init(at: c.at, bytes: c.bytes, objects: 0)
                measured.sizeHistory[c.storage, default: []].append(.init(at: c.at, bytes: c.bytes))
            }
            for c in ex.lockChecks { measured.recordLockCheck(storage: c.storage, .init(at: c.at, ok: c.ok, detail: c.ok ? "verified (example)" : "refuted (example)")) }
            let facts = FactDeriver.derive(inventory, now: ex.now ?? defaultNow, measured: measured, lostIn: ex.lostIn)
            let found: [String]
            do throws(RuleEvaluationError) {
                found = try Engine(facts: facts, inventory: inventory).evaluate([enabled]).findings
                    .filter { $0.status == .active }
                    .map { f in f.related.map { "\(f.subject)/\($0)" } ?? f.subject }
            } catch {
                problems.append("\(label): evaluation failed: \(error.message)")
                continue
            }
            switch ex.expectation {
            case .pass where !found.isEmpty:
                problems.append("\(label): expected no finding, got \(found.sorted())")
            case .fail(let expected) where expected.isEmpty && found.isEmpty:
                problems.append("\(label): expected a finding, got none")
            case .fail(let expected) where !expected.isEmpty && Set(expected) != Set(found):
                problems.append("\(label): expected findings \(expected.sorted()), got \(found.sorted())")
            default:
                break
            }
        }
        return problems
    }
}
