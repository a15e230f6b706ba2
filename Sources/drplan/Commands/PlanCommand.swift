import ArgumentParser
import CEL
import DRFacts
import DRInventory
import DRPlanning
import Foundation

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Simulate disasters: what comes back, from where, in what order, how fast, and how much is lost.",
        discussion: """
            Example:
              drplan plan -i samples/betpro.yaml
              drplan plan -i samples/betpro.yaml --scenario site:fra-dc1 --format markdown

            Scenarios: site:ID, region:NAME, ransomware, asset:ID, storage:ID. Without --scenario: ransomware and the loss of each site that holds a primary. Exit status 0 whatever the verdicts; 2 for unusable input.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json, markdown, html }

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("A scenario to simulate (repeatable).", valueName: "scenario"))
    var scenario: [String] = []

    @Option(name: .long, help: ArgumentHelp("At most this many restores at once (default: unlimited).", valueName: "n"))
    var parallel: Int?

    @Option(name: .long, help: "Output: text, json, markdown or html (a runbook).")
    var format: Format = .text

    @Option(name: .long, help: ArgumentHelp("Where the runbook's restore commands restore to (default /restore).", valueName: "dir"))
    var restoreRoot: String = PlanFormat.defaultRestoreRoot

    @Option(name: .short, help: ArgumentHelp("Write the output here instead of stdout.", valueName: "path"))
    var output: String?

    func validate() throws {
        if let p = parallel, p < 1 { throw ValidationError("invalid --parallel \(p): give at least 1") }
    }

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        var scenarios: [Scenario] = []
        for s in scenario {
            do { scenarios.append(try Scenario.parse(s, in: inventory)) } catch {
                Console.error("drplan: error: invalid --scenario '\(s)': \(error.reason)")
                throw CommandFailure(status: .badInput)
            }
        }
        if scenarios.isEmpty { scenarios = Scenario.defaults(for: inventory) }
        // A copy the evidence shows was never made (its runs failed) is no source to recover from.
        let measured = try global.measured(inventory)
        let planner = Planner(inventory, now: global.instant(), measured: measured)
        let plans = scenarios.map { planner.plan($0, parallel: parallel) }
        let args = global.inventory.map { "-i \($0) " }.joined()
        let text: String
        switch format {
        case .text: text = PlanFormat.text(plans)
        case .json: text = PlanFormat.json(plans, asOf: global.instant())
        case .markdown: text = PlanFormat.markdown(plans, inventory: inventory, inventoryArgs: args, asOf: global.instant(), restoreRoot: restoreRoot, baseDirectory: global.baseDirectory)
        case .html:
            do { text = try PlanHTML.render(plans, inventory: inventory, inventoryArgs: args, asOf: global.instant(), restoreRoot: restoreRoot, baseDirectory: global.baseDirectory) } catch {
                Console.error("drplan: error: cannot render the runbook: \(error); this is a bug in drplan, please report it")
                throw CommandFailure(status: .environment)
            }
        }
        try Console.write(text, to: output)
    }
}
