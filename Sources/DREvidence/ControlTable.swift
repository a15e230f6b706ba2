import CEL
import DRInventory
import DRPolicy
import DRRuns
import Foundation

/// The control-by-control table of a bundle: for each control, its status, the subjects its
/// rules tested, and the evidence behind it (run, restore-test and snapshot ids, inventory
/// lines), so that an auditor can sample from the population instead of trusting a count.
/// Controls no rule can observe say what to ask for instead.
public struct ControlTable: Sendable {
    public struct Row: Sendable {
        public var framework: String
        public var control: String
        public var status: String
        public var rules: [String]
        public var subjects: [String]
        public var runs: [String]
        public var restoreTests: [String]
        public var snapshots: [String]
        public var inventoryLines: [String]
        /// For a control drplan cannot observe: what the auditor should ask for.
        public var ask: String?
    }

    public var rows: [Row]

    public static func build(_ result: CheckResult, runs: [RunRecord]) -> ControlTable {
        let inv = result.inventory
        var lines: [String: SourceLocation] = [:]
        func note(_ id: String, _ o: Origin) { lines[id] = lines[id] ?? o.location }
        for s in inv.sites { note(s.id, s.origin) }
        for s in inv.storage { note(s.id, s.origin) }
        for a in inv.assets { note(a.id, a.origin) }
        for j in inv.jobs { note(j.id, j.origin) }
        for t in inv.restoreTests { note(t.id, t.origin) }
        for w in inv.waivers { note("waiver:\(w.rule):\(w.subject)", w.origin) }
        // Each run indexed once by the ids it concerns (job, asset, storage, restore test), so a
        // control's runs are looked up by its subjects instead of scanning every run per control.
        var runsById: [String: [Int]] = [:]
        for (i, r) in runs.enumerated() {
            for id in Set([r.job, r.asset, r.storage, r.restoreTest].compactMap { $0 }) { runsById[id, default: []].append(i) }
        }
        var rows: [Row] = []
        for c in result.controls {
            let related = Set(c.subjects.flatMap { runsById[$0] ?? [] }).sorted().map { runs[$0] }
            let parts = c.control.split(separator: ":", maxSplits: 1).map(String.init)
            rows.append(Row(framework: parts.first ?? "", control: parts.count > 1 ? parts[1] : c.control,
                            status: c.status == .manual ? "manual evidence required" : c.status.rawValue,
                            rules: c.rules.sorted(), subjects: c.subjects,
                            runs: related.filter { $0.kind != .restoreTest }.map(\.id),
                            restoreTests: Array(Set(related.compactMap(\.restoreTest))).sorted(),
                            snapshots: Array(Set(related.compactMap(\.snapshot))).sorted(),
                            inventoryLines: c.subjects.compactMap { lines[$0] }.sorted { ($0.file, $0.line) < ($1.file, $1.line) }.map { "\($0.file):\($0.line)" },
                            ask: c.ask))
        }
        return ControlTable(rows: rows)
    }

    static let columns = ["framework", "control", "status", "rules", "subjects_tested", "runs", "restore_tests", "snapshots", "inventory_lines", "ask_for"]

    func fields(_ r: Row) -> [String] {
        [r.framework, r.control, r.status, r.rules.joined(separator: " "), r.subjects.joined(separator: " "), r.runs.joined(separator: " "),
         r.restoreTests.joined(separator: " "), r.snapshots.joined(separator: " "), r.inventoryLines.joined(separator: " "), r.ask ?? ""]
    }

    /// RFC 4180, every field quoted; lists are space-separated inside a field.
    public var csv: String {
        Escape.csv([Self.columns] + rows.map(fields))
    }

    /// A self-contained page (no script, no external resource).
    public func html(organization: String?, from: Timestamp, to: Timestamp) -> String {
        func e(_ s: String) -> String { Escape.xml(s) }
        func list(_ xs: [String], limit: Int = 50) -> String {
            let shown = xs.prefix(limit).map { "<code>\(e($0))</code>" }.joined(separator: " ")
            return xs.count > limit ? shown + " … and \(xs.count - limit) more (controls.csv lists all)" : shown
        }
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Controls — \(e(organization ?? "inventory"))</title>
            <style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left;font-size:90%}code{font-size:85%}.fail{color:#a00}.pass{color:#070}.manual{color:#a60}</style>
            </head><body>
            <h1>Controls, \(e(from.description)) to \(e(to.description))</h1>
            <p>Each control with the subjects its rules tested and the evidence behind it. A control marked <em>manual evidence required</em> is one drplan cannot observe: the last column says what to ask for.</p>
            <table><thead><tr><th>Framework</th><th>Control</th><th>Status</th><th>Rules</th><th>Subjects tested</th><th>Evidence</th></tr></thead><tbody>

            """
        for r in rows {
            let cls = r.status == "pass" ? "pass" : r.status == "fail" ? "fail" : r.ask != nil ? "manual" : ""
            var evidence: [String] = []
            if !r.runs.isEmpty { evidence.append("runs: " + list(r.runs, limit: 10)) }
            if !r.restoreTests.isEmpty { evidence.append("restore tests: " + list(r.restoreTests)) }
            if !r.snapshots.isEmpty { evidence.append("snapshots: " + list(r.snapshots, limit: 10)) }
            if !r.inventoryLines.isEmpty { evidence.append("inventory: " + list(r.inventoryLines)) }
            if let ask = r.ask { evidence.append("ask for: " + e(ask)) }
            out += "<tr><td>\(e(r.framework))</td><td>\(e(r.control))</td><td class=\"\(cls)\">\(e(r.status)) (\(r.subjects.count) subject(s))</td><td>\(list(r.rules))</td><td>\(list(r.subjects))</td><td>\(evidence.joined(separator: "<br>"))</td></tr>\n"
        }
        return out + "</tbody></table></body></html>\n"
    }
}
