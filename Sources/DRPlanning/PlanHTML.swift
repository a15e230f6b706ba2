import CEL
import DRInventory
import Mustache

/// The runbook as one self-contained HTML page, with a Gantt chart of the recovery waves.
/// Markup: reports/templates/plan.html.mustache.
public enum PlanHTML {
    public struct TemplateError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func render(_ plans: [ScenarioPlan], inventory: Inventory, inventoryArgs: String, asOf: Timestamp, restoreRoot: String = PlanFormat.defaultRestoreRoot, baseDirectory: String = "") throws -> String {
        let name = "reports/templates/plan.html.mustache"
        guard let text = Templates.files.first(where: { $0.name == name })?.text else { throw TemplateError(description: "\(name) is not built in") }
        let template: MustacheTemplate
        do { template = try MustacheTemplate(string: text) } catch { throw TemplateError(description: "\(name): \(error)") }
        let rto = Dictionary(inventory.assets.compactMap { a in a.rto.map { (a.id, Double($0.seconds)) } }, uniquingKeysWith: { a, _ in a })
        let view: [String: Any] = [
            "organization": inventory.organization ?? "inventory", "asOf": asOf.description,
            "scenarios": plans.map { scenarioView($0, rto: rto, inventory: inventory, inventoryArgs: inventoryArgs, restoreRoot: restoreRoot, baseDirectory: baseDirectory) },
        ]
        return template.render(view) + "\n"
    }

    static func scenarioView(_ p: ScenarioPlan, rto: [String: Double], inventory: Inventory, inventoryArgs: String, restoreRoot: String, baseDirectory: String) -> [String: Any] {
        let fail = p.verdict.hasPrefix("FAIL") || p.verdict.hasPrefix("RISK")
        var view: [String: Any] = [
            "name": p.scenario.description, "anchor": p.scenario.description.replacingOccurrences(of: ":", with: "-"),
            "verdict": p.verdict, "verdictClass": fail ? "fail" : "ok",
        ]
        if case .storage = p.scenario {
            view["storageRows"] = p.rows.map { r -> [String: Any] in
                ["asset": r.asset, "copies": r.remainingCopies ?? 0, "rule": r.below321 == true ? "broken" : "holds", "onlyOffsite": r.lostOnlyOffsite == true ? "yes" : "no"]
            }
            return view
        }
        var problems: [String] = []
        if !p.summary.lost.isEmpty { problems.append("Lost for good (no copy survives): \(p.summary.lost.joined(separator: ", ")).") }
        if !p.summary.rebuild.isEmpty { problems.append("Not backed up by design (backup: none), rebuild instead: \(p.summary.rebuild.joined(separator: ", ")).") }
        for r in p.rows where r.blocked { problems.append("\(r.asset) is blocked: it waits for \(r.waitsFor.joined(separator: ", ")), which cannot come back.") }
        view["problems"] = problems
        let waves = Dictionary(grouping: p.rows.filter { $0.wave != nil }, by: { $0.wave ?? 0 })
        view["waves"] = waves.keys.sorted().map { w -> [String: Any] in
            ["wave": w, "steps": (waves[w] ?? []).map { r -> [String: Any] in
                var step: [String: Any] = [
                    "asset": r.asset, "tier": r.tier.rawValue, "source": r.source ?? "-", "job": r.job ?? "-",
                    "start": PlanFormat.opt(r.start), "ready": PlanFormat.opt(r.readyAt), "duration": PlanFormat.opt(r.restoreTime),
                    "dataLoss": PlanFormat.opt(r.dataLoss), "late": r.meetsRTO == false, "overRPO": r.meetsRPO == false,
                    "command": PlanFormat.restoreCommand(r, inventory: inventory, inventoryArgs: inventoryArgs, restoreRoot: restoreRoot, baseDirectory: baseDirectory),
                    "keys": PlanFormat.keyNote(r, scenario: p.scenario, inventory: inventory).text,
                    "keyDanger": PlanFormat.keyNote(r, scenario: p.scenario, inventory: inventory).danger,
                    "verify": PlanFormat.verification(r, inventory: inventory, inventoryArgs: inventoryArgs),
                ]
                if !r.waitsFor.isEmpty { step["waitsFor"] = r.waitsFor.joined(separator: ", ") }
                return step
            }]
        }
        // Gantt: one bar per restorable asset with known times, on one time axis.
        let timed = p.rows.filter { $0.start != nil && $0.readyAt != nil }
        let end = max(timed.compactMap(\.readyAt).max() ?? 0, timed.compactMap { rto[$0.asset] }.max() ?? 0, 1)
        let left = 150.0, width = 760.0
        func x(_ t: Double) -> Int { Int(left + t / end * width) }
        view["hasGantt"] = !timed.isEmpty
        view["ganttWidth"] = Int(left + width + 20)
        view["ganttHeight"] = 24 + timed.count * 20
        view["ticks"] = (0...4).map { i -> [String: Any] in
            let t = end * Double(i) / 4
            return ["x": x(t), "height": 8 + timed.count * 20, "labelY": 18 + timed.count * 20, "label": PlanFormat.duration(t)]
        }
        view["bars"] = timed.enumerated().map { (i, r) -> [String: Any] in
            let y = 4 + i * 20
            var bar: [String: Any] = [
                "asset": r.asset, "textY": y + 11, "y": y, "x": x(r.start ?? 0), "width": max(2, x(r.readyAt ?? 0) - x(r.start ?? 0)),
                "start": PlanFormat.opt(r.start), "ready": PlanFormat.opt(r.readyAt),
                "color": r.meetsRTO == nil ? "#9e9e9e" : (r.meetsRTO == true ? "#1e88e5" : "#c62828"),
            ]
            if let limit = rto[r.asset] { bar["rto"] = ["rtoX": x(limit), "rtoY2": y + 14, "rtoLabel": PlanFormat.duration(limit)] }
            return bar
        }
        return view
    }
}
