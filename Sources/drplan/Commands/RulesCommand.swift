import ArgumentParser
import DRPolicy

struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "List the loaded rules, or explain one with its rationale and examples.",
        discussion: """
            Example:
              drplan rules
              drplan rules DR104
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Add the policy files under this directory (repeatable).", valueName: "dir"))
    var policies: [String] = []

    @Argument(help: "A rule id to explain.")
    var id: String?

    func run() throws {
        global.apply()
        let set = try Loaders.policies(policies, quiet: global.quiet)
        guard let id else {
            for r in set.rules {
                let state = r.enabled ? "" : "  (disabled)"
                Console.out("\(r.id)  \(r.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(r.severity.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(r.subject.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(r.controls.joined(separator: " "))\(state)")
            }
            return
        }
        guard let r = set.rule(id) else {
            let known = set.rules.map(\.id)
            Console.error("drplan: error: no rule '\(id)' is loaded" + (known.first { $0.lowercased() == id.lowercased() }.map { " (did you mean '\($0)'?)" } ?? "") + "; 'drplan rules' lists them")
            throw CommandFailure(status: .badInput)
        }
        var lines = [
            "\(r.id) \(r.name): \(r.title)",
            "severity: \(r.severity.rawValue)\(r.enabled ? "" : " (disabled)")   subject: \(r.subject.rawValue)   defined at: \(r.location)",
            "controls: \(r.controls.joined(separator: " "))",
            "",
            r.rationale,
            "",
        ]
        if let each = r.each { lines.append("for each \(r.eachName) in: \(each.source)") }
        for c in r.conditions { lines.append("applies when: \(c.program.source)   (else not applicable: \(c.reason))") }
        lines.append("passes when: \(r.assertion.program.source)")
        for (i, ex) in r.examples.enumerated() {
            let kind: String
            switch ex.expectation {
            case .pass: kind = "passes"
            case .fail(let f): kind = f.isEmpty ? "fails" : "fails with \(f.joined(separator: ", "))"
            }
            lines.append("")
            lines.append("example \(i + 1) (\(kind)\(ex.now.map { ", as of \($0)" } ?? "")):")
            lines.append(contentsOf: ex.inventory.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 })
        }
        Console.out(lines.joined(separator: "\n"))
    }
}
