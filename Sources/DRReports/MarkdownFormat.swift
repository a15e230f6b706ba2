import DRInventory
import DRPolicy

/// The summary and a findings table, sized for a pull-request comment.
public enum MarkdownFormat: ReportFormat {
    public static let name = "markdown"
    public static let fileName = "report.md"
    /// Longer tables are cut, with a line saying how many rows were left out.
    public static let maxRows = 100

    /// Every user-supplied string goes through `Escape.markdown` (or `markdownCode` inside
    /// backticks): a finding's message can quote anything an inventory holds.
    static func cell(_ s: String) -> String { Escape.markdown(s) }
    static func code(_ s: String) -> String { "`" + Escape.markdownCode(s).replacingOccurrences(of: "|", with: "\\|") + "`" }

    public static func render(_ r: CheckResult, context: ReportContext) -> String {
        var out: [String] = []
        let verdict = r.passed ? "✅ PASS" : "❌ FAIL"
        out.append("## drplan: \(verdict) — \(Escape.markdown(r.inventory.organization ?? "inventory"))")
        out.append("")
        var counts = [Severity.critical, .high, .medium, .low].map { "\(r.count($0)) \($0.rawValue)" }
        if r.count(.info) > 0 { counts.append("\(r.count(.info)) info") }
        out.append("**\(r.active.count) active finding\(r.active.count == 1 ? "" : "s")** (\(counts.joined(separator: ", "))), \(r.waived) waived" + (r.existing > 0 ? ", \(r.existing) existing" : "") + ". Fails on **\(r.failOn)** and above.")
        out.append("")
        if !r.unverifiedEvidence.isEmpty {
            out.append("> **Warning:** judged from evidence that fails verification (\(r.unverifiedEvidence.count) problem(s); `--allow-unverified-evidence`): \(Escape.markdown(r.unverifiedEvidence[0]))")
            out.append("")
        }
        out.append("As of \(r.facts.asOf) · \(r.inventory.assets.count) assets, \(r.inventory.jobs.count) jobs, \(r.inventory.storage.count) storage · inventory SHA-256 `\(r.inventorySHA256.prefix(16))…` · drplan \(context.toolVersion)")
        out.append("")
        let shown = r.findings.filter { $0.status == .active } + r.findings.filter { $0.status != .active }
        if shown.isEmpty {
            out.append("No findings.")
        } else {
            out.append("| severity | rule | subject | finding | where | status |")
            out.append("|---|---|---|---|---|---|")
            for f in shown.prefix(maxRows) {
                let subject = "\(f.subjectKind.rawValue) \(code(f.subject))" + (f.related.map { " → \(code($0))" } ?? "")
                let place = f.location.map { code("\($0.file):\($0.line)") } ?? ""
                var status = f.status.rawValue
                if let w = f.waiver, f.status == .waived { status += " until \(String(w.expires.description.prefix(10)))" }
                out.append("| \(f.severity.rawValue) | \(f.rule) \(f.name) | \(subject) | \(cell(f.message)) | \(place) | \(status) |")
            }
            if shown.count > maxRows { out.append(""); out.append("…and \(shown.count - maxRows) more; see the full report.") }
        }
        let frameworks = Set(r.controls.map { String($0.control.split(separator: ":")[0]) }).sorted()
        if !frameworks.isEmpty {
            out.append("")
            out.append("<details><summary>Control matrix (\(frameworks.joined(separator: ", ")))</summary>")
            out.append("")
            out.append("| control | status | subjects | findings | rules |")
            out.append("|---|---|---|---|---|")
            for c in r.controls {
                let rules = c.ask.map { "ask for: " + Escape.markdown($0) } ?? c.rules.joined(separator: " ")
                out.append("| \(c.control) | \(c.status.rawValue) | \(c.subjects.count) | \(c.findings) | \(rules) |")
            }
            out.append("")
            out.append("</details>")
        }
        return out.joined(separator: "\n") + "\n"
    }
}
