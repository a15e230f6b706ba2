import CEL
import Crypto
import DRFacts
import DRInventory
import Foundation

public enum FindingStatus: String, Sendable { case active, waived, existing }

/// One rule violated by one subject (and, for `each` rules, one related object).
public struct Finding: Sendable {
    public var rule: String
    public var name: String
    public var severity: Severity
    public var subjectKind: SubjectKind
    public var subject: String
    public var related: String?
    public var message: String
    public var location: SourceLocation?
    public var controls: [String]
    public var status: FindingStatus = .active
    public var waiver: Waiver?
    /// `violation`: the rule judged the subject and it failed. `error`: the rule could not be
    /// judged for this subject (its evaluation ran out of budget); it fails the check whatever
    /// its severity, since an unjudged subject must not pass.
    public var kind: FindingKind = .violation

    /// Stable across runs and machines for the same (rule, subject, related).
    public var fingerprint: String {
        let key = ["drplan-finding-v1", rule, subjectKind.rawValue, subject, related ?? ""].joined(separator: "\u{0}")
        return JSONWriter.hex(SHA256.hash(data: Data(key.utf8)))
    }
}

/// A rule that could not judge a subject: it lacked the data it needs.
public struct NotApplicable: Sendable {
    public var rule: String
    public var subjectKind: SubjectKind
    public var subject: String
    public var reason: String
}

public enum FindingKind: String, Sendable { case violation, error }

/// A rule whose expression failed on a subject (division by zero, a missing key…). Never a
/// silent pass: `drplan check` reports it and exits 2.
public struct RuleEvaluationError: Error, Sendable, CustomStringConvertible {
    public var rule: String
    public var subject: String
    public var location: SourceLocation
    public var message: String
    /// The expression ran out of its evaluation budget (`EvalError.exhausted`).
    public var exhausted = false
    public init(rule: String, subject: String, location: SourceLocation, message: String, exhausted: Bool = false) {
        self.rule = rule; self.subject = subject; self.location = location; self.message = message; self.exhausted = exhausted
    }
    public var description: String {
        "\(location): error: rule \(rule) failed on '\(subject)': \(message); fix the rule's expression or the inventory value it reads"
    }
}

/// The outcome of evaluating a policy set: findings (sorted), not-applicable records, and
/// for each rule how many subjects it could judge.
public struct Evaluation: Sendable {
    public var findings: [Finding] = []
    public var notApplicable: [NotApplicable] = []
    public var applicable: [String: Int] = [:]
    /// Judgements that passed, per rule, as `subject` or `subject/related` (JUnit's passing cases).
    public var passed: [String: [String]] = [:]
}

/// Evaluates rules over facts. Expressions were compiled once at load time; here each runs
/// against every subject of its kind with only the bindings changing.
public struct Engine {
    let facts: Facts
    let inventory: Inventory
    let globals: [String: Value]
    let origins: [String: Origin]

    public init(facts: Facts, inventory: Inventory) {
        self.facts = facts
        self.inventory = inventory
        globals = ["inventory": facts.inventoryValue, "policy": facts.policy, "now": .timestamp(facts.asOf)]
        var o: [String: Origin] = [:]
        for s in inventory.sites { o[s.id] = s.origin }
        for s in inventory.storage { o[s.id] = s.origin }
        for a in inventory.assets { o[a.id] = a.origin }
        for j in inventory.jobs { o[j.id] = j.origin }
        for t in inventory.restoreTests { o[t.id] = t.origin }
        origins = o
    }

    func subjects(_ kind: SubjectKind) -> [Value] {
        switch kind {
        case .asset: return facts.assets
        case .job: return facts.jobs
        case .storage: return facts.storage
        case .site: return facts.sites
        case .restoreTest: return facts.restoreTests
        case .waiver: return facts.waivers
        case .document: return facts.documents
        case .evidence: return facts.evidence
        case .plan: return facts.plan
        }
    }

    /// Evaluates every enabled rule, applies waivers (valid while `expires` ≥ now) and sorts.
    public func evaluate(_ rules: [Rule]) throws(RuleEvaluationError) -> Evaluation {
        var result = Evaluation()
        for rule in rules where rule.enabled {
            for (index, subject) in subjects(rule.subject).enumerated() {
                do { try evaluate(rule, subject: subject, index: index, into: &result) } catch where error.exhausted {
                    // One subject too costly to judge: a finding of kind error, and the others
                    // are still judged.
                    result.findings.append(Finding(rule: rule.id, name: rule.name, severity: rule.severity, subjectKind: rule.subject, subject: error.subject,
                                                   related: nil, message: "rule \(rule.id) could not be judged for \(error.subject): \(error.message)",
                                                   location: error.location, controls: rule.controls, kind: .error))
                }
            }
        }
        applyWaivers(&result)
        result.findings.sort(by: Self.order)
        return result
    }

    static func order(_ a: Finding, _ b: Finding) -> Bool {
        if a.severity != b.severity { return a.severity > b.severity }
        if a.rule != b.rule { return a.rule < b.rule }
        if a.subject != b.subject { return a.subject < b.subject }
        return (a.related ?? "") < (b.related ?? "")
    }

    func evaluate(_ rule: Rule, subject: Value, index: Int, into result: inout Evaluation) throws(RuleEvaluationError) {
        var bindings = globals
        bindings[rule.subject.rawValue] = subject
        let naturalId: String
        if case .string(let s)? = subject["id"] { naturalId = s } else if case .string(let s)? = subject["subject"] { naturalId = s } else { naturalId = "#\(index + 1)" }

        func run(_ c: Condition, _ b: [String: Value]) throws(RuleEvaluationError) -> Bool {
            do {
                guard case .bool(let v) = try c.program.evaluate(b, functions: DrplanFunctions.all, limits: inventory.policy.evalLimits) else {
                    throw RuleEvaluationError(rule: rule.id, subject: naturalId, location: c.location, message: "the expression did not evaluate to a bool")
                }
                return v
            } catch let e as RuleEvaluationError {
                throw e
            } catch {
                throw RuleEvaluationError(rule: rule.id, subject: naturalId, location: c.location, message: "\(error)", exhausted: (error as? EvalError)?.exhausted ?? false)
            }
        }
        func string(_ p: Program?, _ b: [String: Value], fallback: String?) throws(RuleEvaluationError) -> String? {
            guard let p else { return fallback }
            do { return Self.display(try p.evaluate(b, functions: DrplanFunctions.all, limits: inventory.policy.evalLimits)) } catch {
                throw RuleEvaluationError(rule: rule.id, subject: naturalId, location: rule.location, message: "\(error)", exhausted: error.exhausted)
            }
        }
        func firstFailing(_ b: [String: Value]) throws(RuleEvaluationError) -> String? {
            for c in rule.conditions where !(try run(c, b)) { return c.reason }
            return nil
        }

        let subjectId = try string(rule.subjectId, bindings, fallback: naturalId) ?? naturalId
        guard let eachProgram = rule.each else {
            if let reason = try firstFailing(bindings) {
                result.notApplicable.append(NotApplicable(rule: rule.id, subjectKind: rule.subject, subject: subjectId, reason: reason))
                return
            }
            result.applicable[rule.id, default: 0] += 1
            if try !run(rule.assertion, bindings) {
                let related = try string(rule.related, bindings, fallback: nil)
                result.findings.append(try finding(rule, subjectId: subjectId, naturalId: naturalId, related: related, bindings))
            } else {
                result.passed[rule.id, default: []].append(subjectId)
            }
            return
        }
        let items: [Value]
        do {
            guard case .list(let l) = try eachProgram.evaluate(bindings, functions: DrplanFunctions.all, limits: inventory.policy.evalLimits) else {
                throw RuleEvaluationError(rule: rule.id, subject: naturalId, location: rule.location, message: "'each' did not evaluate to a list")
            }
            items = l
        } catch let e as RuleEvaluationError {
            throw e
        } catch {
            throw RuleEvaluationError(rule: rule.id, subject: naturalId, location: rule.location, message: "\(error)", exhausted: (error as? EvalError)?.exhausted ?? false)
        }
        var firstReason: String? = items.isEmpty ? "nothing to check" : nil
        var judged = false
        for item in items {
            var b = bindings
            b[rule.eachName] = item
            if let reason = try firstFailing(b) {
                if firstReason == nil { firstReason = reason }
                continue
            }
            judged = true
            let related: String
            if case .string(let s) = item { related = s } else if case .string(let s)? = item["id"] { related = s } else { related = Self.display(item) }
            if try !run(rule.assertion, b) {
                result.findings.append(try finding(rule, subjectId: subjectId, naturalId: naturalId, related: try string(rule.related, b, fallback: related), b))
            } else {
                result.passed[rule.id, default: []].append(subjectId + "/" + related)
            }
        }
        if judged {
            result.applicable[rule.id, default: 0] += 1
        } else {
            result.notApplicable.append(NotApplicable(rule: rule.id, subjectKind: rule.subject, subject: subjectId, reason: firstReason ?? "nothing to check"))
        }
    }

    func finding(_ rule: Rule, subjectId: String, naturalId: String, related: String?, _ b: [String: Value]) throws(RuleEvaluationError) -> Finding {
        var text = ""
        for part in rule.message.parts {
            switch part {
            case .text(let t): text += t
            case .expr(let p):
                do { text += Self.display(try p.evaluate(b, functions: DrplanFunctions.all, limits: inventory.policy.evalLimits)) } catch {
                    throw RuleEvaluationError(rule: rule.id, subject: naturalId, location: rule.location, message: "in the message: \(error)", exhausted: error.exhausted)
                }
            }
        }
        return Finding(
            rule: rule.id, name: rule.name, severity: rule.severity, subjectKind: rule.subject, subject: subjectId, related: related,
            message: text, location: location(rule.subject, naturalId: naturalId, related: related), controls: rule.controls)
    }

    /// Where a finding points: the secret's value, the waiver, or the subject object; for a
    /// related object, the place the subject names it (a `targets` entry, say) when there is one.
    func location(_ kind: SubjectKind, naturalId: String, related: String?) -> SourceLocation? {
        switch kind {
        case .document:
            return inventory.secretKeys.first { $0.path == naturalId }?.location
        case .waiver:
            return nil
        case .evidence:
            return inventory.evidence.origin?.location
        case .plan:
            return inventory.plan?.origin?.location
        default:
            guard let origin = origins[naturalId] else { return nil }
            if let related {
                let places = origin.values.filter { $0.key.hasSuffix("/" + related) }.map(\.value).sorted()
                if let first = places.first { return first }
            }
            return origin.location
        }
    }

    func applyWaivers(_ result: inout Evaluation) {
        let now = facts.asOf
        for i in result.findings.indices {
            let f = result.findings[i]
            guard f.rule != "DR900" else { continue }
            if let w = inventory.waivers.first(where: { $0.rule == f.rule && $0.subject == f.subject && $0.expires >= now }) {
                result.findings[i].status = .waived
                result.findings[i].waiver = w
            }
        }
        // DR900's findings sit at the waiver; other waiver-subject rules have no place of their own.
        for i in result.findings.indices where result.findings[i].subjectKind == .waiver {
            let f = result.findings[i]
            result.findings[i].location = inventory.waivers.first { $0.subject == f.subject && $0.rule == (f.related ?? "") }?.origin.location
        }
    }

    /// How values read inside messages: durations as `1h30m`, timestamps in RFC 3339, lists joined.
    public static func display(_ v: Value) -> String {
        switch v {
        case .null: return "none"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(format: "%.3g", d)
        case .string(let s): return s
        case .bytes(let b): return Data(b).base64EncodedString()
        case .type(let t): return t
        case .timestamp(let t): return t.description
        case .duration(let d):
            if d.nanos == 0 { return TimeSpan(seconds: d.seconds).description }
            let s = d.totalSeconds
            return s >= 60 ? TimeSpan(seconds: Int64(s.rounded())).description : String(format: "%.1fs", s)
        case .list(let items): return items.map(display).joined(separator: ", ")
        case .map(let m): return "{" + m.entries.map { display($0.key) + ": " + display($0.value) }.joined(separator: ", ") + "}"
        }
    }
}
