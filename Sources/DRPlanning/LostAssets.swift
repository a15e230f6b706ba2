import CEL
import DRFacts
import DRInventory

extension Planner {
    /// A planner that judges as `drplan plan` does: restore rates measured by the evidence
    /// are preferred, and a copy the evidence shows was never made is no source to recover from.
    public init(_ inventory: Inventory, now: Timestamp, measured: MeasuredEvidence) {
        self.init(inventory, measuredRates: measured.restoreRates.mapValues(\.bytesPerSecond),
                  unproven: FactDeriver(inventory, now: now, measured: measured).unprovenCopies())
    }
}

extension Scenario {
    /// The default scenarios (`Scenario.defaults`), each planned.
    public static func defaultPlans(_ inventory: Inventory, now: Timestamp, measured: MeasuredEvidence) -> [ScenarioPlan] {
        let planner = Planner(inventory, now: now, measured: measured)
        return defaults(for: inventory).map { planner.plan($0) }
    }

    /// For each asset, the planned scenarios that leave no copy of it: what `drplan plan`
    /// reports as "LOST", for the check to turn into findings (DR407).
    public static func lostIn(_ plans: [ScenarioPlan]) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for plan in plans {
            for asset in plan.summary.lost { out[asset, default: []].append(plan.scenario.description) }
        }
        return out
    }
}
