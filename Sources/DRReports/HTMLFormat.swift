import CEL
import DRFacts
import Crypto
import DRInventory
import DRPolicy
import Foundation
import Mustache

/// The auditor's report: one self-contained HTML file (inline CSS, script and SVG; a
/// Content-Security-Policy forbids every network fetch). The markup lives in
/// reports/templates/report.html.mustache; this file only prepares the values it shows.
public enum HTMLFormat: ReportFormat {
    public static let name = "html"
    public static let fileName = "report.html"

    public enum TemplateError: Error, CustomStringConvertible {
        case missing(String), invalid(String, String)
        public var description: String {
            switch self {
            case .missing(let n): return "the report template '\(n)' is not built into this drplan"
            case .invalid(let n, let why): return "the report template '\(n)' is invalid: \(why)"
            }
        }
    }

    static func template() throws -> MustacheTemplate {
        let name = "reports/templates/report.html.mustache"
        guard let text = Templates.files.first(where: { $0.name == name })?.text else { throw TemplateError.missing(name) }
        do { return try MustacheTemplate(string: text) } catch { throw TemplateError.invalid(name, "\(error)") }
    }

    public static func render(_ r: CheckResult, context: ReportContext) throws -> String {
        try withScriptHash(template().render(view(r, context: context))) + "\n"
    }

    /// The Content-Security-Policy allows exactly the report's one inline script, by its
    /// SHA-256 (CSP level 2), instead of `'unsafe-inline'`: markup injected through a value
    /// could not run even if escaping failed. The template's CSP holds the placeholder.
    static func withScriptHash(_ html: String) throws -> String {
        guard let open = html.range(of: "<script>"), let close = html.range(of: "</script>", range: open.upperBound..<html.endIndex),
              html.range(of: "<script", range: close.upperBound..<html.endIndex) == nil else {
            throw TemplateError.invalid("reports/templates/report.html.mustache", "it must hold exactly one inline <script>")
        }
        let digest = Data(SHA256.hash(data: Data(html[open.upperBound..<close.lowerBound].utf8))).base64EncodedString()
        return html.replacingOccurrences(of: "'sha256-SCRIPT-HASH'", with: "'sha256-\(digest)'")
    }

    static let frameworkLabels: [String: String] = [
        "gdpr": "GDPR", "hipaa": "HIPAA (45 CFR)", "iso27001": "ISO/IEC 27001:2022 Annex A", "nist-800-53": "NIST SP 800-53 rev. 5",
        "soc2": "SOC 2 (2017 TSC)", "dora": "DORA (EU) 2022/2554", "pci-dss": "PCI DSS v4.0.1",
    ]

    static func text(_ v: Value?) -> String {
        guard let v, v != .null else { return "—" }
        return Engine.display(v)
    }

    static func seconds(_ v: Value?) -> Double? {
        if case .duration(let d)? = v { return d.totalSeconds }
        return nil
    }

    /// The values the template shows, as plain dictionaries and arrays.
    static func view(_ r: CheckResult, context: ReportContext) -> [String: Any] {
        let rules = r.rulesById
        let findings: [[String: Any]] = r.findings.map { f in
            var row: [String: Any] = [
                "severity": f.severity.rawValue, "rule": f.rule, "name": f.name, "subjectKind": f.subjectKind.rawValue, "subject": f.subject,
                "message": f.message, "status": f.status.rawValue, "controls": f.controls.joined(separator: " · "),
                "frameworks": (rules[f.rule]?.frameworks.sorted() ?? []).joined(separator: " "),
                "location": f.location.map { $0.line > 0 ? "\($0.file):\($0.line):\($0.column)" : $0.file } ?? "",
            ]
            if let rel = f.related { row["related"] = rel }
            if let w = f.waiver, f.status == .waived { row["waiver"] = ["expires": String(w.expires.description.prefix(10)), "approvedBy": w.approvedBy, "reason": w.reason] }
            return row
        }
        var byFramework: [String: [ControlStatus]] = [:]
        for c in r.controls { byFramework[String(c.control.split(separator: ":")[0]), default: []].append(c) }
        let frameworks: [[String: Any]] = byFramework.keys.sorted().map { fw in
            let cs = byFramework[fw] ?? []
            return [
                "name": fw, "label": frameworkLabels[fw] ?? fw,
                "passCount": cs.filter { $0.status == .pass }.count, "failCount": cs.filter { $0.status == .fail }.count,
                "waivedCount": cs.filter { $0.status == .waived }.count, "notAssessedCount": cs.filter { $0.status == .notAssessed }.count,
                "manualCount": cs.filter { $0.status == .manual }.count,
                "controls": cs.map { c -> [String: Any] in
                    ["control": c.control, "status": c.status.rawValue, "statusClass": c.status.rawValue.replacingOccurrences(of: " ", with: "-"),
                     "rules": c.rules.joined(separator: " "), "findings": c.findings, "subjects": c.subjects.count,
                     "title": c.title ?? "", "ask": c.ask ?? "", "hasAsk": c.ask != nil]
                },
            ]
        }
        let activeBySubject = Dictionary(grouping: r.findings.filter { $0.status == .active && $0.subjectKind == .asset }, by: \.subject)
        var testsById: [Value: Value] = [:]
        for t in r.facts.restoreTests { if let id = t["id"], testsById[id] == nil { testsById[id] = t } }
        let assetCards = r.facts.assets.map { assetCard($0, findings: activeBySubject, tests: testsById, asOf: r.facts.asOf) }
        let waivers: [[String: Any]] = r.inventory.waivers.map { w in
            let expired = w.expires < r.facts.asOf
            return ["rule": w.rule, "subject": w.subject, "reason": w.reason, "approvedBy": w.approvedBy,
                    "expires": String(w.expires.description.prefix(10)), "state": expired ? "expired" : "active", "stateClass": expired ? "fail" : "pass"]
        }
        let jobHistory: [[String: Any]] = r.facts.jobs.map { j in
            let status = text(j["last_status"])
            return ["id": text(j["id"]), "lastSuccess": text(j["last_success"]), "lastStatus": status,
                    "statusClass": status == "failed" ? "fail" : (status == "success" ? "pass" : "not-assessed"), "source": text(j["last_success_source"])]
        }
        let testHistory: [[String: Any]] = r.facts.restoreTests.map { t in
            let result = text(t["result"])
            return ["id": text(t["id"]), "scope": text(t["scope"]), "lastRun": text(t["last_run"]), "result": result,
                    "resultClass": result == "fail" ? "fail" : (result == "pass" ? "pass" : "not-assessed"), "duration": text(t["duration"]),
                    "source": text(t["last_run_source"])]
        }
        let usedRules = Set(r.findings.map(\.rule))
        // The provider register: each declared provider, with its sites, its storage (its own or
        // its site's provider) and the assets whose copies that storage holds.
        var register: [String: (sites: Set<String>, storage: Set<String>, assets: Set<String>)] = [:]
        for s in r.inventory.sites { if let p = s.provider { register[p, default: ([], [], [])].sites.insert(s.id) } }
        let siteProvider = Dictionary(r.inventory.sites.compactMap { s in s.provider.map { (s.id, $0) } }, uniquingKeysWith: { a, _ in a })
        for st in r.inventory.storage {
            guard let p = st.provider ?? siteProvider[st.site] else { continue }
            register[p, default: ([], [], [])].storage.insert(st.id)
            for j in r.inventory.jobs where j.targets.contains(st.id) { register[p, default: ([], [], [])].assets.formUnion(j.assets) }
        }
        let providers: [[String: Any]] = register.keys.sorted().map { p in
            let e = register[p] ?? ([], [], [])
            return ["name": p, "sites": e.sites.sorted().joined(separator: ", "), "storage": e.storage.sorted().joined(separator: ", "),
                    "assets": e.assets.sorted().joined(separator: ", ")]
        }
        // A fleet's hosts, from the evidence facts: which machine recorded how many runs, and when last.
        let hosts: [[String: Any]] = r.facts.evidence.first.flatMap { e -> [Value]? in if case .list(let l)? = e["hosts"] { return l } else { return nil } }.map { list in
            list.map { h in
                let stopped = h["stopped_reporting"] == .bool(true)
                return ["name": text(h["name"]), "jobs": text(h["jobs"]), "runs": text(h["runs"]), "lastRun": text(h["last_run"]),
                        "state": stopped ? "stopped reporting" : "reporting", "stateClass": stopped ? "fail" : "pass"] as [String: Any]
            }
        } ?? []
        return [
            "hosts": hosts, "hasHosts": hosts.count > 1 || r.inventory.jobs.contains { r.inventory.host(of: $0) != nil },
            "organization": r.inventory.organization ?? "inventory", "asOf": r.facts.asOf.description, "asOfDate": String(r.facts.asOf.description.prefix(10)),
            "generatedAt": Timestamp(seconds: context.generatedAt.seconds).description,
            "hasUnverified": !r.unverifiedEvidence.isEmpty, "unverified": r.unverifiedEvidence.isEmpty ? "" : "Judged from evidence that fails verification (\(r.unverifiedEvidence.count) problem(s); --allow-unverified-evidence): \(r.unverifiedEvidence[0])", "toolVersion": context.toolVersion, "sha256": r.inventorySHA256,
            "evidenceState": r.evidenceStatus?.state ?? "no evidence store (declared values only)", "evidenceHead": r.evidenceStatus?.head ?? "", "evidenceScope": r.evidenceStatus?.scope ?? "",
            "evidenceClass": r.evidenceStatus.map { $0.state == "unverified" ? "fail" : ($0.state == "verified and signed" ? "pass" : "not-assessed") } ?? "not-assessed",
            "hasEvidenceHead": r.evidenceStatus != nil,
            "verdict": r.passed ? "PASS" : "FAIL", "verdictClass": r.passed ? "pass" : "fail", "failOn": r.failOn.description,
            "counts": Severity.allCases.map { ["severity": $0.rawValue, "count": r.count($0)] as [String: Any] },
            "waived": r.waived, "existing": r.existing, "hasExisting": r.existing > 0,
            "assets": r.inventory.assets.count, "protectedAssets": r.facts.assets.filter { $0["protected"] == .bool(true) }.count,
            "jobs": r.inventory.jobs.count, "storage": r.inventory.storage.count, "rules": r.policies.rules.filter(\.enabled).count,
            "files": r.inventory.files.map { ["path": $0.path, "sha256": Digests.sha256Hex([$0.bytes])] },
            "severityOptions": Severity.allCases.map(\.rawValue),
            "ruleOptions": r.policies.rules.filter { usedRules.contains($0.id) }.map { ["id": $0.id, "name": $0.name] },
            "frameworkOptions": Framework.allCases.map(\.rawValue),
            "findings": findings, "hasFindings": !findings.isEmpty, "frameworks": frameworks, "assetCards": assetCards,
            "waivers": waivers, "hasWaivers": !waivers.isEmpty, "providers": providers, "hasProviders": !providers.isEmpty,
            "scenarios": context.scenarios.map { ["verdict": $0.verdict, "link": $0.link, "failing": !$0.verdict.hasPrefix("OK")] as [String: Any] },
            "hasScenarios": !context.scenarios.isEmpty, "jobHistory": jobHistory, "testHistory": testHistory, "hasTests": !testHistory.isEmpty,
        ]
    }

    /// One asset: its copies laid out by site and media, and RPO/RTO declared vs achievable vs measured.
    static func assetCard(_ a: Value, findings: [String: [Finding]], tests: [Value: Value], asOf: Timestamp) -> [String: Any] {
        let id = text(a["id"])
        var copies: [Value] = []
        if case .list(let l)? = a["copies"] { copies = l }
        // Copies the evidence does not back are shown struck out, never green.
        if case .list(let l)? = a["unproven_copies"] { copies += l }
        let sites = copies.reduce(into: [String]()) { acc, c in let s = text(c["site"]); if !acc.contains(s) { acc.append(s) } }
        let media = Media.allCases.map(\.rawValue).filter { m in copies.contains { text($0["media"]) == m } }
        let rows: [[String: Any]] = sites.map { site in
            let region = copies.first { text($0["site"]) == site }.map { text($0["region"]) } ?? ""
            return ["site": site, "region": region, "cells": media.map { m -> [String: Any] in
                let here = copies.filter { text($0["site"]) == site && text($0["media"]) == m }
                return ["copies": here.map { c -> [String: Any] in
                    let primary = c["primary"] == .bool(true)
                    let imm = c["immutable"] == .bool(true) || c["air_gapped"] == .bool(true)
                    let evidence = text(c["evidence"])
                    let missing = !primary && evidence != "measured" && evidence != "declared"
                    let status: String
                    switch evidence {
                    case "measured": status = "measured: last success \(text(c["last_success"]))"
                    case "stale": status = "NOT COUNTED: last success \(text(c["last_success"])) is too old"
                    case "failed": status = "NOT COUNTED: every run to this target failed"
                    case "none": status = "NOT COUNTED: no run has written this target"
                    default: status = "declared, not measured"
                    }
                    return ["label": primary ? "primary" : text(c["storage"]) + (missing ? " ✗ \(evidence)" : ""),
                            "classes": (primary ? "primary" : "") + (imm && !missing ? " imm" : "") + (missing ? " missing" : ""),
                            "title": primary ? "the asset itself" : "\(status); \(imm ? "immutable or air-gapped, " : "")\(c["encrypted_at_rest"] == .bool(true) ? "encrypted" : "not encrypted")"]
                }]
            }]
        }
        // Measured values: the age of the last success (data at risk now) and the best restore-test equivalent.
        let lastSuccessAge: Double? = {
            if case .timestamp(let t)? = a["last_success"] { return Double(asOf.seconds - t.seconds) }
            return nil
        }()
        var testedRTO: Double? = nil
        if case .list(let ids)? = a["restore_tests"] {
            for t in ids {
                if let tf = tests[t], let s = seconds(tf["full_equivalent"]) { testedRTO = min(testedRTO ?? s, s) }
            }
        }
        let series: [(String, Double?, String)] = [
            ("RPO declared", seconds(a["rpo"]), "#455a64"), ("RPO achievable", seconds(a["rpo_achievable"]), "#1e88e5"),
            ("RPO measured", lastSuccessAge, "#8e24aa"), ("RTO declared", seconds(a["rto"]), "#455a64"),
            ("RTO estimated", seconds(a["rto_estimate"]), "#1e88e5"), ("RTO tested", testedRTO, "#8e24aa"),
        ]
        // RPO and RTO bars each get their own scale: minutes of data loss next to days of
        // restore time would otherwise vanish.
        let rpoMax = series.prefix(3).compactMap(\.1).max() ?? 1, rtoMax = series.suffix(3).compactMap(\.1).max() ?? 1
        var bars: [[String: Any]] = []
        for (i, s) in series.enumerated() {
            let y = 4 + i * 18
            let scale = max(i < 3 ? rpoMax : rtoMax, 1)
            let width = s.1.map { max(1, Int(($0 / scale) * 200)) } ?? 0
            let value = s.1.map { Engine.display(.duration(CELDuration(fractional: $0))) } ?? "unknown"
            bars.append(["label": s.0, "y": y, "textY": y + 10, "width": width, "valueX": 124 + width + 4, "value": value, "color": s.2])
        }
        let tier = text(a["tier"])
        return [
            "id": id, "name": text(a["name"]), "kind": text(a["kind"]), "site": text(a["site"]), "region": text(a["region"]),
            "tier": tier, "tierClass": ["critical": "critical", "high": "high", "medium": "medium", "low": "low"][tier] ?? "info",
            "size": a["size"].flatMap { if case .int(let b) = $0 { return ByteSize.format(b) } else { return nil } } ?? "size unknown",
            "owner": text(a["owner"]), "badges": (findings[id] ?? []).map { "\($0.rule) \($0.name)" },
            "mediaColumns": media, "copyRows": rows, "bars": bars, "chartHeight": 4 + series.count * 18,
        ]
    }
}
