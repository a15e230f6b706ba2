import CEL
import Crypto
import DRFacts
import DRInventory
import Foundation

/// The severity at or above which `drplan check` fails, or `none`.
public enum FailThreshold: Sendable, Equatable, CustomStringConvertible {
    case severity(Severity)
    case none

    public init?(_ text: String) {
        if text == "none" { self = .none } else if let s = Severity(rawValue: text) { self = .severity(s) } else { return nil }
    }

    public func fails(_ s: Severity) -> Bool {
        if case .severity(let t) = self { return s >= t }
        return false
    }

    public var description: String {
        if case .severity(let s) = self { return s.rawValue }
        return "none"
    }
}

/// What a check is asked to do beyond evaluating the policies.
public struct CheckOptions: Sendable {
    /// nil: `policy.fail_on` from the inventory.
    public var failOn: FailThreshold?
    /// `--framework`: limits findings and control matrices. Empty: no limit.
    public var frameworks: [String] = []
    /// Fingerprints from a `--baseline` report: those findings are `existing`.
    public var baseline: Set<String> = []
    /// Asset → the default disaster scenarios it is lost for good in, from the planner
    /// (`Scenarios.lostIn`); empty when the caller did not plan.
    public var lostIn: [String: [String]] = [:]
    public init() {}
}

/// A control of a framework, and how the rules that support it fared.
public struct ControlStatus: Sendable {
    /// `pass`: every mapped rule judged at least one in-scope subject and none failed; `fail`:
    /// one did fail; `waived`: what failed is waived; `not assessed`: some mapped rule had no
    /// in-scope subject; `manual`: no rule observes the control (`ask` says what to ask for).
    public enum Status: String, Sendable { case pass, fail, waived, notAssessed = "not assessed", manual }
    public var control: String
    public var status: Status
    public var rules: [String]
    public var findings: Int
    /// The in-scope subjects the control's rules judged, sorted.
    public var subjects: [String] = []
    /// The control's title, from policies/controls/.
    public var title: String?
    /// For a `manual` control: the evidence an auditor should ask for.
    public var ask: String?
}

/// The state of the measured evidence behind a result, as the reports' headers show it.
public struct EvidenceStatus: Sendable {
    /// "verified and signed", "verified; checkpoint signatures not checked (no key here)",
    /// "verified and unsigned" or "unverified".
    public var state: String
    /// "head: entry N, sha256 …".
    public var head: String
    public var problems: [String]
    /// How much of the log was read ("entries 1…N and every run read", or from a mark).
    public var scope: String
    public init(state: String, head: String, problems: [String], scope: String = "") {
        self.state = state; self.head = head; self.problems = problems; self.scope = scope
    }
}

/// Everything `drplan check` and the reports need, computed once.
public struct CheckResult: Sendable {
    public var inventory: Inventory
    public var facts: Facts
    public var policies: PolicySet
    public var findings: [Finding]
    public var notApplicable: [NotApplicable]
    public var controls: [ControlStatus]
    public var failOn: FailThreshold
    public var options: CheckOptions
    /// Passing judgements per rule (`subject` or `subject/related`), for JUnit.
    public var passedJudgements: [String: [String]]
    /// Why the measured evidence behind this result failed verification, when it was used
    /// anyway (`--allow-unverified-evidence`); every report says so at its top.
    public var unverifiedEvidence: [String] = []
    /// The evidence store's verification state and head, when one was read.
    public var evidenceStatus: EvidenceStatus?

    public var active: [Finding] { findings.filter { $0.status == .active } }
    public func count(_ s: Severity) -> Int { active.filter { $0.severity == s }.count }
    public var waived: Int { findings.filter { $0.status == .waived }.count }
    public var existing: Int { findings.filter { $0.status == .existing }.count }
    /// True when no active finding is at or above the threshold.
    /// Fails on an active finding at or above `failOn`, and on any rule that could not be
    /// judged (kind `error`), whatever its severity.
    public var passed: Bool { !active.contains { failOn.fails($0.severity) || $0.kind == .error } }
    public var rulesById: [String: Rule] { Dictionary(policies.rules.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }) }

    /// SHA-256 of the inventory: of the one file's bytes, or of all files' bytes in load order.
    public var inventorySHA256: String { Digests.sha256Hex(inventory.files.map(\.bytes)) }
}

/// SHA-256 in lower-case hex, for inventory hashes and bundle manifests.
public enum Digests {
    public static func sha256Hex(_ parts: [[UInt8]]) -> String {
        var h = SHA256()
        for p in parts { h.update(data: p) }
        return JSONWriter.hex(h.finalize())
    }
}

public enum Check {
    /// Evaluates `policies` over `inventory` as of `now`: findings, waivers, baseline, the
    /// framework filter and the control matrix.
    public static func run(inventory: Inventory, policies: PolicySet, now: Timestamp, measured: MeasuredEvidence = MeasuredEvidence(),
                           options: CheckOptions) throws(RuleEvaluationError) -> CheckResult {
        let facts = FactDeriver.derive(inventory, now: now, measured: measured, lostIn: options.lostIn)
        var evaluation = try Engine(facts: facts, inventory: inventory).evaluate(policies.rules)
        if !options.baseline.isEmpty {
            for i in evaluation.findings.indices where evaluation.findings[i].status == .active && options.baseline.contains(evaluation.findings[i].fingerprint) {
                evaluation.findings[i].status = .existing
            }
        }
        let rules = policies.rules.filter(\.enabled)
        let selected = Set(options.frameworks)
        func inScope(_ ruleId: String) -> Bool {
            guard !selected.isEmpty else { return true }
            return rules.first { $0.id == ruleId }.map { !$0.frameworks.isDisjoint(with: selected) } ?? false
        }
        // A finding counts for the frameworks whose scope holds its subject (GDPR for assets
        // with personal data, say); it shows whatever its frameworks, and `--framework` keeps
        // the findings that count for one of those asked for.
        let scope = FrameworkScope(inventory: inventory, catalog: policies.catalog)
        func framework(_ control: String) -> String { String(control.split(separator: ":").first ?? "") }
        for i in evaluation.findings.indices {
            let f = evaluation.findings[i]
            evaluation.findings[i].controls = f.controls.filter { scope.applies(framework($0), kind: f.subjectKind, subject: f.subject) }
        }
        let findings = evaluation.findings.filter { f in
            inScope(f.rule) && (selected.isEmpty || f.controls.contains { selected.contains(framework($0)) } || f.kind == .error)
        }
        let matrixFrameworks = selected.isEmpty ? Set(inventory.policy.frameworks.map(\.rawValue)) : selected
        var controlRules: [String: [String]] = [:]
        for r in rules { for c in r.controls { controlRules[c, default: []].append(r.id) } }
        let kinds = Dictionary(rules.map { ($0.id, $0.subject) }, uniquingKeysWith: { a, _ in a })
        // Computed once, not per control: what each rule judged, each control's findings, and
        // each rule's in-scope subjects per framework (many controls share a framework and a rule).
        var judgedByRule: [String: Set<String>] = [:]
        for (rule, passed) in evaluation.passed { judgedByRule[rule, default: []].formUnion(passed.map { String($0.split(separator: "/").first ?? "") }) }
        for f in evaluation.findings { judgedByRule[f.rule, default: []].insert(f.subject) }
        var findingsByControl: [String: [Finding]] = [:]
        for f in findings { for c in Set(f.controls) { findingsByControl[c, default: []].append(f) } }
        var inScopeByRule: [String: Set<String>] = [:]
        func inScopeSubjects(_ fw: String, _ rule: String) -> Set<String> {
            let key = fw + "\u{0}" + rule
            if let done = inScopeByRule[key] { return done }
            let kind = kinds[rule] ?? .asset
            let inside = (judgedByRule[rule] ?? []).filter { scope.applies(fw, kind: kind, subject: $0) }
            inScopeByRule[key] = inside
            return inside
        }
        var controls = controlRules.keys.filter { matrixFrameworks.contains(framework($0)) }.sorted().map { c -> ControlStatus in
            let fw = framework(c), ids = controlRules[c] ?? []
            // A finding lists a control only when its rule cites it, in scope.
            let mine = findingsByControl[c] ?? []
            var subjects = Set<String>(), unassessed = false
            for id in ids {
                let inside = inScopeSubjects(fw, id)
                if inside.isEmpty { unassessed = true }
                subjects.formUnion(inside)
            }
            let status: ControlStatus.Status
            if mine.contains(where: { $0.status != .waived }) { status = .fail }
            else if !mine.isEmpty { status = .waived }
            else if unassessed { status = .notAssessed }
            else { status = .pass }
            return ControlStatus(control: c, status: status, rules: ids, findings: mine.count, subjects: subjects.sorted(),
                                 title: policies.catalog.controls[c]?.title)
        }
        for m in policies.catalog.manualControls(frameworks: matrixFrameworks) where controlRules[m.key] == nil {
            controls.append(ControlStatus(control: m.key, status: .manual, rules: [], findings: 0, title: m.title, ask: m.manual))
        }
        controls.sort { $0.control < $1.control }
        return CheckResult(
            inventory: inventory, facts: facts, policies: policies, findings: findings,
            notApplicable: evaluation.notApplicable.filter { inScope($0.rule) }, controls: controls,
            failOn: options.failOn ?? .severity(inventory.policy.failOn), options: options,
            passedJudgements: evaluation.passed.filter { inScope($0.key) })
    }

    /// Fingerprints of the findings in an earlier JSON report, for `--baseline`.
    public static func baselineFingerprints(_ data: Data) throws(InputError) -> Set<String> {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], json["schema"] as? String == "drplan.report/v1",
              let findings = json["findings"] as? [[String: Any]]
        else {
            throw InputError([Diagnostic(SourceLocation(file: "baseline", line: 0, column: 0), "the baseline is not a drplan JSON report (schema drplan.report/v1); create one with 'drplan check --format json -o FILE'")])
        }
        return Set(findings.compactMap { $0["fingerprint"] as? String })
    }
}
