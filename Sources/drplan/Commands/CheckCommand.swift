import ArgumentParser
import CEL
import DRFacts
import DRInventory
import DRPlanning
import DRPolicy
import DRReports
import Foundation

/// `--format` values: every report format by name.
enum FormatName: String, ExpressibleByArgument, CaseIterable {
    case text, json, html, sarif, junit, markdown
}

/// The options `check` and `report` share: which policies, the threshold, the baseline, the frameworks.
struct EvaluationOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Add the policy files under this directory (repeatable).", valueName: "dir"))
    var policies: [String] = []

    @Option(name: .long, help: ArgumentHelp("The verdict fails on findings at or above: critical, high, medium, low, info or none (default: policy.fail_on, else high).", valueName: "severity"))
    var failOn: String?

    @Option(name: .long, help: ArgumentHelp("An earlier JSON report: findings already in it are 'existing' and do not count.", valueName: "file"))
    var baseline: String?

    @Option(name: .long, help: ArgumentHelp("Limit findings and control matrices to a framework (repeatable).", valueName: "name"))
    var framework: [String] = []

    func validate() throws {
        if let f = failOn, FailThreshold(f) == nil {
            throw ValidationError("invalid --fail-on '\(f)': use critical, high, medium, low, info or none")
        }
        for f in framework where Framework(rawValue: f) == nil {
            throw ValidationError("invalid --framework '\(f)': use one of \(Framework.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Evaluate the policies and report findings: the CI gate.",
        discussion: """
            Example:
              drplan check -i samples/betpro.yaml --now 2026-11-22T00:00:00Z

            Exits 0 when no active finding is at or above --fail-on (default: the inventory's policy.fail_on, else high), 1 when one is, 2 for unusable input.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var evaluation: EvaluationOptions

    @Option(name: .long, help: "Output format: text, json, html, sarif, junit or markdown.")
    var format: FormatName = .text

    @Option(name: .short, help: ArgumentHelp("Write the report here instead of stdout.", valueName: "path"))
    var output: String?

    func run() throws {
        global.apply()
        let result = try Loaders.check(global, evaluation)
        let context = ReportContext(toolVersion: Drplan.version, generatedAt: GlobalOptions.wallClock(), color: output == nil && Console.colorEnabled(fd: 1))
        let chosen = ReportFormats.byName[format.rawValue] ?? TextFormat.self
        try Console.stream(to: output, what: "\(chosen.name) report") { sink in try chosen.write(result, context: context, to: sink) }
        // A restore test reads only what it samples: a flipped bit elsewhere waits for a read of
        // the whole repository (docs/repository-format.md, "Check").
        let ownRepositories = result.inventory.jobs.contains { j in j.targets.contains { t in [.builtin, .sqlite, .pgDump].contains(j.engine(for: t)) } }
        if ownRepositories, !global.quiet, try global.readStore() != nil, format == .text, output == nil {
            Console.error("drplan: note: restore tests read only the files they sample; run 'drplan check-repository --read-data-subset 1/30' daily (or --read-data monthly) so that every stored object is read and checked over time")
        }
        if !result.passed { throw CommandFailure(status: .findings) }
    }
}

/// Loading helpers shared by commands: every problem printed, then exit 2.
enum Loaders {
    static func policies(_ dirs: [String], quiet: Bool) throws(CommandFailure) -> PolicySet {
        do {
            return try PolicyLoader.load(directories: dirs)
        } catch {
            for d in error.diagnostics { Console.diagnostic(d.location.description, d.message) }
            if !quiet { Console.error("drplan: \(error.diagnostics.count) problem\(error.diagnostics.count == 1 ? "" : "s") in the policies; nothing was evaluated") }
            throw CommandFailure(status: .badInput)
        }
    }

    static func report<T>(_ body: @autoclosure () throws(InputError) -> T) throws(CommandFailure) -> T {
        do { return try body() } catch {
            for d in error.diagnostics { Console.error("drplan: error: \(d.message)") }
            throw CommandFailure(status: .badInput)
        }
    }

    /// Loads the inventory and policies, reads the baseline, and evaluates: what `check` and
    /// `report` share. Every failure is printed and mapped to its exit status.
    /// `evidence`: measured evidence already read and verified (by `report`, which also plans
    /// from it), so that the store is read and verified once.
    /// `evaluation`: nil for the defaults (the built-in policies, no baseline), for commands
    /// that have no evaluation options of their own.
    static func check(_ global: GlobalOptions, _ evaluation: EvaluationOptions?,
                      inventory loaded: Inventory? = nil, evidence: ReadEvidence? = nil, plans: [ScenarioPlan]? = nil) throws(CommandFailure) -> CheckResult {
        let inventory: Inventory
        if let loaded { inventory = loaded } else { inventory = try global.loadInventory() }
        let policySet = try Loaders.policies(evaluation?.policies ?? [], quiet: global.quiet)
        var options = CheckOptions()
        options.failOn = evaluation?.failOn.flatMap(FailThreshold.init)
        options.frameworks = evaluation?.framework ?? []
        if let baseline = evaluation?.baseline {
            guard let data = FileManager.default.contents(atPath: baseline) else {
                Console.error("drplan: error: cannot read baseline '\(baseline)'; pass a JSON report written by 'drplan check --format json -o FILE'")
                throw CommandFailure(status: .badInput)
            }
            options.baseline = try Loaders.report(Check.baselineFingerprints(data))
        }
        let read: ReadEvidence
        if let evidence { read = evidence } else { read = try global.measuredEvidence(inventory) }
        options.lostIn = Scenario.lostIn(plans ?? Scenario.defaultPlans(inventory, now: global.instant(), measured: read.evidence))
        do throws(RuleEvaluationError) {
            var result = try Check.run(inventory: inventory, policies: policySet, now: global.instant(), measured: read.evidence, options: options)
            result.unverifiedEvidence = read.unverified
            result.evidenceStatus = read.status
            return result
        } catch {
            Console.error(error.description)
            throw CommandFailure(status: .badInput)
        }
    }

    static func render(_ format: any ReportFormat.Type, _ result: CheckResult, _ context: ReportContext) throws(CommandFailure) -> String {
        do { return try format.render(result, context: context) } catch {
            Console.error("drplan: error: cannot render the \(format.name) report: \(error); this is a bug in drplan, please report it")
            throw CommandFailure(status: .environment)
        }
    }
}
