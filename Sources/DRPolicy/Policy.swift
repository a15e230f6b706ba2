import CEL
import DRFacts
import DRInventory

/// What a rule is about. Expressions see the subject under this name.
public enum SubjectKind: String, CaseIterable, Sendable {
    case asset, job, storage, site, waiver, document, evidence, plan
    case restoreTest = "restore_test"
}

/// A rule condition: an expression and the reason reported when it does not hold.
public struct Condition: Sendable {
    public var program: Program
    public var reason: String
    public var location: SourceLocation
}

/// A compiled message: literal text and `{{ expr }}` parts.
public struct MessageTemplate: Sendable {
    public enum Part: Sendable { case text(String), expr(Program) }
    public var parts: [Part]
}

/// One inventory a rule's examples run against, and what the rule must find there.
public struct RuleExample: Sendable {
    public enum Expectation: Sendable, Equatable {
        case pass
        /// Findings expected, as `subject` or `subject/related`; empty means "at least one".
        case fail([String])
    }
    public var inventory: String
    public var now: Timestamp?
    public var expectation: Expectation
    public var location: SourceLocation
    /// Measured backup runs the example's facts see, as the evidence store would hold them.
    public var runs: [ExampleRun] = []
    /// Object Lock checks the example's facts see (`lock_checks: [{storage, ok, at}]`).
    public var lockChecks: [(storage: String, ok: Bool, at: Timestamp)] = []
    /// `evidence_store: {chain_started, oldest_run, runs}`: the store the example's facts see.
    public var store: MeasuredEvidence.Store?
    /// Measured restore-test runs (`restore_runs: [{job, target, status, at}]`).
    public var restoreRuns: [ExampleRun] = []
    /// `lost_in: {asset: [scenario]}`: the planner's verdicts the example's facts see.
    public var lostIn: [String: [String]] = [:]
    /// `capacity: [{storage, at, bytes}]`: repository sizes measured after backups.
    public var sizes: [(storage: String, at: Timestamp, bytes: Int64)] = []
}

/// A backup run in a rule example (`runs: [{job, target, status, at}]`).
public struct ExampleRun: Sendable {
    public var job: String
    public var target: String
    public var success: Bool
    public var at: Timestamp
    /// The host that recorded it (fleets); nil: not said.
    public var host: String? = nil
}

/// A rule, parsed and checked, ready to evaluate over many subjects without re-parsing.
public struct Rule: Sendable {
    public var id: String
    public var name: String
    public var title: String
    public var severity: Severity
    public var subject: SubjectKind
    public var conditions: [Condition]
    public var assertion: Condition
    public var each: Program?
    public var eachName: String
    public var message: MessageTemplate
    public var subjectId: Program?
    public var related: Program?
    public var controls: [String]
    /// The short title written beside each control id, where one was.
    public var controlTitles: [String: String] = [:]
    public var rationale: String
    public var examples: [RuleExample]
    public var enabled = true
    /// Where the rule was defined, for evaluation errors and `drplan rules`.
    public var location: SourceLocation
    /// Which policy file defined it (`builtin:…` for the catalog).
    public var file: String

    /// The frameworks this rule's controls belong to (`gdpr` from `gdpr:Art.32(1)(c)`).
    public var frameworks: Set<String> { Set(controls.compactMap { $0.split(separator: ":").first.map(String.init) }) }
}

/// A change to a loaded rule, from a policy file's `overrides`.
public struct Override: Sendable {
    public var rule: String
    public var enabled: Bool?
    public var severity: Severity?
    public var location: SourceLocation
}

/// Every rule drplan evaluates: the built-in catalog, then each `--policies` directory.
public struct PolicySet: Sendable {
    public var rules: [Rule] = []
    public var overrides: [Override] = []
    /// The policy files read besides the built-in catalog, in load order, with their exact
    /// bytes: an attestation names each with its SHA-256, and a bundle carries them.
    public var files: [(path: String, bytes: [UInt8])] = []
    /// The controls of each framework and their scopes: the built-in lists, extended by any
    /// policy file's `frameworks:` section.
    public var catalog = ControlCatalog.builtin
    public init() {}

    public func rule(_ id: String) -> Rule? { rules.first { $0.id == id } }
}

extension PolicySet {
    /// SHA-256 of the built-in catalog as compiled into this drplan: each file's name and
    /// text, in order. Two binaries with the same hash judge with the same built-in rules.
    public static var catalogSHA256: String {
        Digests.sha256Hex(Catalog.files.flatMap { [Array($0.name.utf8), [0], Array($0.text.utf8), [0]] })
    }
}

extension PolicySet {
    /// The built-in catalog's files (name and text), as compiled in: a bundle carries them.
    public static var builtinFiles: [(name: String, text: String)] { Catalog.files }
}
