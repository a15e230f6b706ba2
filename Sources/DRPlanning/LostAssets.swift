import CEL
import DRFacts
import DRInventory

extension Scenario {
    /// For each asset, the default scenarios (`Scenario.defaults`) that leave no copy of it:
    /// what `drplan plan` reports as "LOST", for the check to turn into findings (DR407). The
    /// copies the evidence shows were never made do not count, as in `plan`.
    public static func lostIn(_ inventory: Inventory, now: Timestamp, measured: MeasuredEvidence) -> [String: [String]] {
        let planner = Planner(inventory, measuredRates: measured.restoreRates.mapValues(\.bytesPerSecond),
                              unproven: FactDeriver(inventory, now: now, measured: measured).unprovenCopies())
        var out: [String: [String]] = [:]
        for scenario in defaults(for: inventory) {
            for asset in planner.plan(scenario).summary.lost { out[asset, default: []].append(scenario.description) }
        }
        return out
    }
}
