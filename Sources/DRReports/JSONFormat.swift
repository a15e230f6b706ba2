import CEL
import DRFacts
import DRInventory
import DRPolicy
import Foundation

/// The JSON report, schema `drplan.report/v1` (docs/schemas/drplan.report.v1.json).
public enum JSONFormat: ReportFormat {
    public static let name = "json"
    public static let fileName = "report.json"

    public static func render(_ r: CheckResult, context: ReportContext) -> String { JSONWriter().string(value(r, context: context)) + "\n" }

    /// Streamed: findings and not-applicable records are made into values one at a time as
    /// they are written (at 20,000 assets there are 330,000 of them).
    public static func write(_ r: CheckResult, context: ReportContext, to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try JSONWriter().stream(members: members(r, context: context), to: sink)
        try sink([0x0A])
    }

    public static func value(_ r: CheckResult, context: ReportContext) -> Value {
        .object(members(r, context: context).map { ($0.0, $0.1.value) })
    }

    static func members(_ r: CheckResult, context: ReportContext) -> [(String, JSONWriter.Member)] {
        func loc(_ l: SourceLocation?) -> Value {
            guard let l, l.line > 0 else { return .null }
            return .object([("file", .string(l.file)), ("line", .int(Int64(l.line))), ("column", .int(Int64(l.column)))])
        }
        let finding: (Int) -> Value = { i in
            let f = r.findings[i]
            return .object([
                ("rule", .string(f.rule)), ("name", .string(f.name)), ("severity", .string(f.severity.rawValue)),
                ("subject", .object([("kind", .string(f.subjectKind.rawValue)), ("id", .string(f.subject))])),
                ("related", f.related.map(Value.string) ?? .null), ("status", .string(f.status.rawValue)), ("kind", .string(f.kind.rawValue)),
                ("message", .string(f.message)), ("location", loc(f.location)), ("controls", .strings(f.controls)),
                ("fingerprint", .string(f.fingerprint)),
                ("waiver", f.waiver.map { w in
                    .object([("reason", .string(w.reason)), ("approved_by", .string(w.approvedBy)), ("expires", .timestamp(w.expires))])
                } ?? .null),
            ])
        }
        let notApplicable: (Int) -> Value = { i in
            let n = r.notApplicable[i]
            return .object([("rule", .string(n.rule)), ("subject", .object([("kind", .string(n.subjectKind.rawValue)), ("id", .string(n.subject))])), ("reason", .string(n.reason))])
        }
        let counts = Severity.allCases.map { ($0.rawValue, Value.int(Int64(r.count($0)))) }
        let protected = r.facts.assets.filter { $0["protected"] == .bool(true) }.count
        // Present only when the evidence failed verification and was used anyway.
        let unverified: [(String, JSONWriter.Member)] = r.unverifiedEvidence.isEmpty ? [] : [
            ("evidence", .value(.object([("verified", .bool(false)), ("problems", .strings(r.unverifiedEvidence))]))),
        ]
        let head: [(String, JSONWriter.Member)] = [
            ("schema", .value(.string("drplan.report/v1"))),
            ("tool", .value(.object([("name", .string("drplan")), ("version", .string(context.toolVersion))]))),
            ("as_of", .value(.timestamp(r.facts.asOf))),
        ]
        return head + unverified + [
            ("inventory", .value(.object([
                ("files", .strings(r.inventory.files.map(\.path))), ("organization", r.inventory.organization.map(Value.string) ?? .null),
                ("sha256", .string(r.inventorySHA256)),
            ]))),
            ("summary", .value(.object([
                ("passed", .bool(r.passed)), ("fail_on", .string(r.failOn.description)), ("counts", .object(counts)),
                ("waived", .int(Int64(r.waived))), ("existing", .int(Int64(r.existing))),
                ("assets", .int(Int64(r.inventory.assets.count))), ("protected_assets", .int(Int64(protected))),
                ("jobs", .int(Int64(r.inventory.jobs.count))), ("storage", .int(Int64(r.inventory.storage.count))),
                ("rules", .int(Int64(r.policies.rules.filter(\.enabled).count))),
            ]))),
            ("findings", .items(count: r.findings.count, item: finding)),
            ("not_applicable", .items(count: r.notApplicable.count, item: notApplicable)),
            ("controls", .value(.list(r.controls.map { c in
                .object([("control", .string(c.control)), ("title", c.title.map(Value.string) ?? .null), ("status", .string(c.status.rawValue)),
                         ("findings", .int(Int64(c.findings))), ("subjects", .int(Int64(c.subjects.count))), ("rules", .strings(c.rules)),
                         ("ask", c.ask.map(Value.string) ?? .null)])
            }))),
            ("facts", .value(.object([
                ("sites", .list(r.facts.sites)), ("storage", .list(r.facts.storage)), ("assets", .list(r.facts.assets)),
                ("jobs", .list(r.facts.jobs)), ("restore_tests", .list(r.facts.restoreTests)),
            ]))),
        ]
    }
}
