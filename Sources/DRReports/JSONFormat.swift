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

    public static func write(_ r: CheckResult, context: ReportContext, to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try JSONWriter().stream(value(r, context: context), to: sink)
        try sink([0x0A])
    }

    public static func value(_ r: CheckResult, context: ReportContext) -> Value {
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
            ("tool", .object([("name", .string("drplan")), ("version", .string(context.toolVersion))])),
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
}

