import CEL
import DRInventory
import DRPolicy
import Foundation

/// SARIF 2.1.0, for code-scanning consumers: findings become annotations on the inventory's lines.
public enum SARIFFormat: ReportFormat {
    public static let name = "sarif"
    public static let fileName = "report.sarif"

    /// GitHub code scanning maps this 0–10 score to its own severities.
    static func securitySeverity(_ s: Severity) -> String {
        switch s {
        case .critical: return "9.5"
        case .high: return "7.5"
        case .medium: return "5.0"
        case .low: return "3.0"
        case .info: return "0.0"
        }
    }

    static func level(_ s: Severity) -> String {
        switch s {
        case .critical, .high: return "error"
        case .medium: return "warning"
        case .low, .info: return "note"
        }
    }

    /// A relative path stays relative to the checkout (`%SRCROOT%`); an absolute one becomes a file URI.
    static func artifact(_ path: String) -> Value {
        let allowed = CharacterSet.urlPathAllowed
        let encoded = path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path
        if path.hasPrefix("/") { return .object([("uri", .string("file://" + encoded))]) }
        let trimmed = encoded.hasPrefix("./") ? String(encoded.dropFirst(2)) : encoded
        return .object([("uri", .string(trimmed)), ("uriBaseId", .string("%SRCROOT%"))])
    }

    public static func render(_ r: CheckResult, context: ReportContext) -> String {
        let rules = r.policies.rules.filter(\.enabled)
        let index = Dictionary(rules.enumerated().map { ($0.element.id, $0.offset) }, uniquingKeysWith: { a, _ in a })
        let driverRules: [Value] = rules.map { rule in
            let help = "\(rule.rationale)\n\nControls: \(rule.controls.joined(separator: ", ")). See `drplan rules \(rule.id)`."
            return .object([
                ("id", .string(rule.id)), ("name", .string(rule.name)),
                ("shortDescription", .object([("text", .string(rule.title))])),
                ("fullDescription", .object([("text", .string(rule.rationale.isEmpty ? rule.title : rule.rationale))])),
                ("help", .object([("text", .string(help)), ("markdown", .string("**\(rule.title)**\n\n" + help))])),
                ("defaultConfiguration", .object([("level", .string(level(rule.severity)))])),
                ("properties", .object([
                    ("security-severity", .string(securitySeverity(rule.severity))),
                    ("tags", .strings(["drplan", rule.subject.rawValue] + rule.controls)),
                    ("precision", .string("very-high")),
                ])),
            ])
        }
        let firstFile = r.inventory.files.first?.path ?? "drplan.yaml"
        let results: [Value] = r.findings.map { f in
            let loc = f.location.flatMap { $0.line > 0 ? $0 : nil }
            var pairs: [(String, Value)] = [
                ("ruleId", .string(f.rule)), ("ruleIndex", .int(Int64(index[f.rule] ?? 0))), ("level", .string(f.kind == .error ? "error" : level(f.severity))),
                ("message", .object([("text", .string(f.message))])),
                ("locations", .list([.object([
                    ("physicalLocation", .object([
                        ("artifactLocation", artifact(loc?.file ?? firstFile)),
                        ("region", .object([("startLine", .int(Int64(loc?.line ?? 1))), ("startColumn", .int(Int64(loc?.column ?? 1)))])),
                    ])),
                    ("logicalLocations", .list([.object([("name", .string(f.subject)), ("kind", .string(f.subjectKind.rawValue))])])),
                ])])),
                ("partialFingerprints", .object([("drplanFinding/v1", .string(f.fingerprint))])),
                ("properties", .object([
                    ("subject", .string(f.subject)), ("subjectKind", .string(f.subjectKind.rawValue)),
                    ("related", f.related.map(Value.string) ?? .null), ("controls", .strings(f.controls)), ("status", .string(f.status.rawValue)),
                ])),
            ]
            if !r.options.baseline.isEmpty { pairs.append(("baselineState", .string(f.status == .existing ? "unchanged" : "new"))) }
            if let w = f.waiver, f.status == .waived {
                pairs.append(("suppressions", .list([.object([
                    ("kind", .string("external")),
                    ("justification", .string("\(w.reason) (approved by \(w.approvedBy), until \(w.expires))")),
                ])])))
            }
            return .object(pairs)
        }
        let run: Value = .object([
            ("tool", .object([("driver", .object([
                ("name", .string("drplan")), ("version", .string(context.toolVersion)), ("semanticVersion", .string(context.toolVersion)),
                ("informationUri", .string("https://github.com/drplan/drplan")), ("rules", .list(driverRules)),
            ]))])),
            ("invocations", .list([.object([
                ("executionSuccessful", .bool(true)), ("endTimeUtc", .timestamp(context.generatedAt)),
                ("properties", .object([("asOf", .timestamp(r.facts.asOf)), ("passed", .bool(r.passed)), ("failOn", .string(r.failOn.description))])),
            ])])),
            ("artifacts", .list(r.inventory.files.map { f in
                .object([("location", artifact(f.path)), ("hashes", .object([("sha-256", .string(Digests.sha256Hex([f.bytes])))]))])
            })),
            ("results", .list(results)),
        ])
        return JSONWriter().string(.object([
            ("$schema", .string("https://json.schemastore.org/sarif-2.1.0.json")), ("version", .string("2.1.0")), ("runs", .list([run])),
        ])) + "\n"
    }
}
