import ArgumentParser
import CEL
import DRFacts

struct FactsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "facts",
        abstract: "Print the facts drplan derives from the inventory, as JSON (durations in seconds).",
        discussion: """
            Example:
              drplan facts -i samples/betpro.yaml --now 2026-11-22T00:00:00Z

            Secret values are never printed: a literal where a secret is expected shows as "<redacted>".
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .short, help: ArgumentHelp("Write the JSON here instead of stdout.", valueName: "path"))
    var output: String?

    func run() throws {
        global.apply()
        let inv = try global.loadInventory()
        let facts = FactDeriver.derive(inv, now: global.instant(), measured: try global.measured(inv))
        try Console.stream(to: output, what: "facts") { sink in
            try JSONWriter().stream(facts.document, to: sink)
            try sink([0x0A])
        }
    }
}
