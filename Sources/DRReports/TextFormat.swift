import DRInventory
import DRPolicy
import Foundation

/// The text report: findings grouped by severity, one line each, then a summary line.
public enum TextFormat: ReportFormat {
    public static let name = "text"
    public static let fileName = "report.txt"

    public static func render(_ r: CheckResult, context: ReportContext) -> String {
        let color = context.color
        func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        let colors: [Severity: String] = [.critical: "1;35", .high: "31", .medium: "33", .low: "36", .info: "2"]
        func line(_ f: Finding) -> String {
            let sev = (f.kind == .error ? "error" : f.severity.rawValue).padding(toLength: 8, withPad: " ", startingAt: 0)
            var subject = "\(f.subjectKind.rawValue) \(f.subject)"
            if let rel = f.related { subject += " (\(rel))" }
            var s = "\(paint(sev, colors[f.severity] ?? "0"))  \(f.rule) \(f.name)  \(subject)  \(f.message)"
            if let l = f.location, l.line > 0 { s += "  (\(l))" }
            return s
        }
        var out: [String] = []
        if !r.unverifiedEvidence.isEmpty {
            out += ["WARNING: judged from evidence that fails verification (\(r.unverifiedEvidence.count) problem(s); --allow-unverified-evidence): \(Escape.line(r.unverifiedEvidence[0]))", ""]
        }
        for sev in Severity.allCases {
            let group = r.findings.filter { $0.severity == sev && $0.status == .active }
            if group.isEmpty { continue }
            out.append(contentsOf: group.map(line))
            out.append("")
        }
        let existing = r.findings.filter { $0.status == .existing }
        if !existing.isEmpty {
            out.append("existing (in the baseline, not counted):")
            out.append(contentsOf: existing.map { "  " + line($0) })
            out.append("")
        }
        let waived = r.findings.filter { $0.status == .waived }
        if !waived.isEmpty {
            out.append("waived:")
            for f in waived {
                out.append("  " + line(f))
                if let w = f.waiver { out.append("      waived until \(w.expires) by \(w.approvedBy): \(w.reason)") }
            }
            out.append("")
        }
        // A fleet's store: one line per host, so that a machine that went quiet shows.
        if case .list(let hosts)? = r.facts.evidence.first?["hosts"], hosts.count > 1 || hosts.contains(where: { $0["declared"] == .bool(true) }) {
            out.append("hosts:")
            for h in hosts {
                let stopped = h["stopped_reporting"] == .bool(true)
                out.append("  \(HTMLFormat.text(h["name"])): \(HTMLFormat.text(h["runs"])) runs recorded, last \(HTMLFormat.text(h["last_run"]))" + (stopped ? " — " + paint("stopped reporting", "31") : ""))
            }
            out.append("")
        }
        let active = r.active
        var parts = [Severity.critical, .high, .medium, .low].map { "\(r.count($0)) \($0.rawValue)" }
        if r.count(.info) > 0 { parts.append("\(r.count(.info)) info") }
        var summary = "\(active.count) finding\(active.count == 1 ? "" : "s") (\(parts.joined(separator: ", "))), \(r.waived) waived"
        if r.existing > 0 { summary += ", \(r.existing) existing" }
        summary += " — " + (r.passed ? paint("PASS", "32") : paint("FAIL", "31"))
        if r.failOn != .none { summary += " (fails on \(r.failOn) and above)" }
        out.append(summary)
        return out.joined(separator: "\n") + "\n"
    }
}
