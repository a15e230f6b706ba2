import ArgumentParser
import CEL
import DRFacts
import DRInventory
import DRPlanning
import DREvidence
import DRPolicy
import DRReports
import Foundation

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write the audit report (JSON, HTML, SARIF, JUnit, Markdown) and the DR runbook into a folder.",
        discussion: """
            Example:
              drplan report -i samples/clinic.yaml --now 2026-11-22T00:00:00Z

            The folder defaults to reports/<organization>-<date>/ (the date of --now). Files are written to a staging folder first and moved into place, so a failed run never leaves half a report. Exit status is 0 whatever the findings; gate on 'drplan check'.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var evaluation: EvaluationOptions

    @Flag(name: .long, help: "Record the reports written (path, format, SHA-256) and the waivers they relied on in the evidence store's audit log. Without it, report only reads the store.")
    var record = false

    @Option(name: .short, help: ArgumentHelp("The folder to write into.", valueName: "dir"))
    var output: String?

    /// `BetPro Exchange` → `betpro-exchange`.
    static func slug(_ s: String) -> String {
        let lowered = s.lowercased().unicodeScalars.map { CharacterSet.alphanumerics.contains($0) && $0.isASCII ? Character($0) : "-" }
        return String(lowered).split(separator: "-").joined(separator: "-")
    }

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        let evidence = try global.measuredEvidence(inventory)
        // The default scenarios, planned once: their LOST verdicts are findings (DR407), and
        // their verdicts go into the HTML report, linked to the runbook written beside it.
        let plans = Scenario.defaultPlans(inventory, now: global.instant(), measured: evidence.evidence)
        let result = try Loaders.check(global, evaluation, inventory: inventory, evidence: evidence, plans: plans)
        let scenarios = plans.map { ($0.verdict, "runbook.html#" + $0.scenario.description.replacingOccurrences(of: ":", with: "-")) }
        let context = ReportContext(toolVersion: Drplan.version, generatedAt: GlobalOptions.wallClock(), scenarios: scenarios)
        let folder = output ?? "reports/\(Self.slug(result.inventory.organization ?? "inventory"))-\(result.facts.asOf.description.prefix(10))"
        var rendered: [(String, String)] = []
        for format in ReportFormats.all { rendered.append((format.fileName, try Loaders.render(format, result, context))) }
        let args = global.inventory.map { "-i \($0) " }.joined()
        do {
            rendered.append(("runbook.html", try PlanHTML.render(plans, inventory: result.inventory, inventoryArgs: args, asOf: result.facts.asOf, baseDirectory: global.baseDirectory)))
        } catch {
            Console.error("drplan: error: cannot render the runbook: \(error); this is a bug in drplan, please report it")
            throw CommandFailure(status: .environment)
        }
        rendered.append(("runbook.md", PlanFormat.markdown(plans, inventory: result.inventory, inventoryArgs: args, asOf: result.facts.asOf, baseDirectory: global.baseDirectory)))
        let fm = FileManager.default
        let staging = (folder as NSString).deletingLastPathComponent + "/.drplan-report-\(UUID().uuidString)"
        do {
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
            for (name, text) in rendered { try Data(text.utf8).write(to: URL(fileURLWithPath: staging + "/" + name)) }
            if fm.fileExists(atPath: folder) {
                for (name, _) in rendered {
                    let target = folder + "/" + name
                    if fm.fileExists(atPath: target) { try fm.removeItem(atPath: target) }
                    try fm.moveItem(atPath: staging + "/" + name, toPath: target)
                }
                try fm.removeItem(atPath: staging)
            } else {
                try fm.moveItem(atPath: staging, toPath: folder)
            }
        } catch {
            try? fm.removeItem(atPath: staging)
            Console.error("drplan: error: cannot write the report into '\(folder)': \(error.localizedDescription); check that the folder is writable")
            throw CommandFailure(status: .badInput)
        }
        // What was handed out, and under which waivers, goes into the audit log (runs.md) when
        // asked: by default a report is a read, and reading evidence never changes it.
        var entries = rendered.map { name, text in
            (event: "report.written", detail: ["path": folder + "/" + name, "format": (name as NSString).pathExtension,
                                               "sha256": Digests.sha256Hex([Array(text.utf8)])])
        }
        entries += WaiverAudit.applied(result)
        if record { try global.audit(result.inventory, entries) }
        if !global.quiet {
            for (name, _) in rendered { Console.out(folder + "/" + name) }
        }
    }
}
