import ArgumentParser
import DRInventory
import DRPolicy
import Foundation

enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Evaluate the policies and report findings: the CI gate.",
        discussion: """
            Example:
              drplan check -i samples/betpro.yaml --now 2026-11-22T00:00:00Z

            Exits 0 when no active finding is at or above --fail-on (default: the inventory's
            policy.fail_on, else high), 1 when one is, 2 for unusable input.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Add the policy files under this directory (repeatable).", valueName: "dir"))
    var policies: [String] = []

    @Option(name: .long, help: "Output format: text or json.")
    var format: ReportFormat = .text

    @Option(name: .short, help: ArgumentHelp("Write the report here instead of stdout.", valueName: "path"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("Fail on findings at or above: critical, high, medium, low, info or none.", valueName: "severity"))
    var failOn: String?

    @Option(name: .long, help: ArgumentHelp("An earlier JSON report: findings already in it are 'existing' and do not fail.", valueName: "file"))
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

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        let policySet = try Loaders.policies(policies, quiet: global.quiet)
        var options = CheckOptions()
        options.failOn = failOn.flatMap(FailThreshold.init)
        options.frameworks = framework
        options.toolVersion = Drplan.version
        if let baseline {
            guard let data = FileManager.default.contents(atPath: baseline) else {
                Console.error("drplan: error: cannot read baseline '\(baseline)'; pass a JSON report written by 'drplan check --format json -o FILE'")
                throw CommandFailure(status: .badInput)
            }
            options.baseline = try Loaders.report(Check.baselineFingerprints(data))
        }
        let result: CheckResult
        do {
            result = try Check.run(inventory: inventory, policies: policySet, now: global.instant(), options: options)
        } catch {
            Console.error(error.description)
            throw CommandFailure(status: .badInput)
        }
        switch format {
        case .text: try Console.write(TextReport.render(result, color: output == nil && Console.colorEnabled(fd: 1)), to: output)
        case .json: try Console.write(JSONReport.render(result), to: output)
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
}
