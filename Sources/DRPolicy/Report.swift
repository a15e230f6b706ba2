import CEL
import DRFacts
import DRInventory
import Foundation

/// The JSON report, schema `drplan.report/v1` (docs/schemas/drplan.report.v1.json).
public enum JSONReport {
    public static func value(_ r: CheckResult) -> Value {
        func loc(_ l: SourceLocation?) -> Value {
            guard let l, l.line > 0 else { return .null }
            return .object([("file", .string(l.file)), ("line", .int(Int64(l.line))), ("column", .int(Int64(l.column)))])
        }
        let findings: [Value] = r.findings.map { f in
            .object([
                ("rule", .string(f.rule)), ("name", .string(f.name)), ("severity", .string(f.severity.rawValue)),
                ("subject", .object([("kind", .string(f.subjectKind.rawValue)), ("id", .string(f.subject))])),
                ("related", f.related.map(Value.string) ?? .null), ("status", .string(f.status.rawValue)),
                ("message", .string(f.message)), ("location", loc(f.location)), ("controls", .strings(f.controls)),
                ("fingerprint", .string(f.fingerprint)),
                ("waiver", f.waiver.map { w in
                    .object([("reason", .string(w.reason)), ("approved_by", .string(w.approvedBy)), ("expires", .timestamp(w.expires))])
                } ?? .null),
            ])
        }
        let counts = Severity.allCases.map { ($0.rawValue, Value.int(Int64(r.count($0)))) }
        let protected = r.facts.assets.filter { $0["protected"] == .bool(true) }.count
        return .object([
            ("schema", .string("drplan.report/v1")),
            ("tool", .object([("name", .string("drplan")), ("version", .string(r.options.toolVersion))])),
            ("as_of", .timestamp(r.facts.asOf)),
            ("inventory", .object([
                ("files", .strings(r.inventory.files.map(\.path))), ("organization", r.inventory.organization.map(Value.string) ?? .null),
                ("sha256", .string(r.inventorySHA256)),
            ])),
            ("summary", .object([
                ("passed", .bool(r.passed)), ("fail_on", .string(r.failOn.description)), ("counts", .object(counts)),
                ("waived", .int(Int64(r.waived))), ("existing", .int(Int64(r.existing))),
                ("assets", .int(Int64(r.inventory.assets.count))), ("protected_assets", .int(Int64(protected))),
                ("jobs", .int(Int64(r.inventory.jobs.count))), ("storage", .int(Int64(r.inventory.storage.count))),
                ("rules", .int(Int64(r.policies.rules.filter(\.enabled).count))),
            ])),
            ("findings", .list(findings)),
            ("not_applicable", .list(r.notApplicable.map { n in
                .object([("rule", .string(n.rule)), ("subject", .object([("kind", .string(n.subjectKind.rawValue)), ("id", .string(n.subject))])), ("reason", .string(n.reason))])
            })),
            ("controls", .list(r.controls.map { c in
                .object([("control", .string(c.control)), ("status", .string(c.status.rawValue)), ("findings", .int(Int64(c.findings))), ("rules", .strings(c.rules))])
            })),
            ("facts", .object([
                ("sites", .list(r.facts.sites)), ("storage", .list(r.facts.storage)), ("assets", .list(r.facts.assets)),
                ("jobs", .list(r.facts.jobs)), ("restore_tests", .list(r.facts.restoreTests)),
            ])),
        ])
    }

    public static func render(_ r: CheckResult) -> String { JSONWriter().string(value(r)) + "\n" }
}

/// The text report: findings grouped by severity, one line each, then a summary line.
public enum TextReport {
    public static func render(_ r: CheckResult, color: Bool) -> String {
        func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        let colors: [Severity: String] = [.critical: "1;35", .high: "31", .medium: "33", .low: "36", .info: "2"]
        func line(_ f: Finding) -> String {
            let sev = f.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
            var subject = "\(f.subjectKind.rawValue) \(f.subject)"
            if let rel = f.related { subject += " (\(rel))" }
            var s = "\(paint(sev, colors[f.severity] ?? "0"))  \(f.rule) \(f.name)  \(subject)  \(f.message)"
            if let l = f.location, l.line > 0 { s += "  (\(l))" }
            return s
        }
        var out: [String] = []
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
