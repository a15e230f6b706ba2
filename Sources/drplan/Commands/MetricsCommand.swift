import ArgumentParser
import DREvidence
import DRInventory
import DRPolicy
import DRRuns
import Foundation

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Write Prometheus metrics (textfile-collector format) from the evidence and a check.",
        discussion: """
            Example:
              drplan metrics -i drplan.yaml -o /var/lib/prometheus/node-exporter/drplan.prom

            The file is written by a temporary name and renamed, for node_exporter's --collector.textfile.directory. Metrics: last success, duration and bytes of each job's last run per target, its RPO and achieved RPO, restore tests' last success, repository size, storage free space, findings by severity (docs/monitoring.md; example alerting rules in docs/prometheus/drplan-alerts.yml). A job's 'monitoring.metrics_file' makes 'drplan backup' refresh the file after its runs.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var evaluation: EvaluationOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file (atomically) instead of standard output.", valueName: "file"))
    var output: String?

    func run() throws {
        global.apply()
        let text = try Self.render(global, evaluation, inventory: try global.loadInventory())
        if let output {
            do { try PrometheusMetrics.write(text, to: output) } catch {
                Console.error("drplan: error: \(error.message)")
                throw CommandFailure(status: .environment)
            }
        } else {
            Console.write(fd: 1, text)
        }
    }

    /// The metrics text: a check of the inventory, the store's runs and storage checks, and
    /// the free space of local storage measured now.
    static func render(_ global: GlobalOptions, _ evaluation: EvaluationOptions?, inventory: Inventory) throws(CommandFailure) -> String {
        let result = try Loaders.check(global, evaluation, inventory: inventory)
        var runs: [RunRecord] = []
        var checks: [EvidenceStore.StorageCheck] = []
        if let store = try global.readStore() {
            do {
                runs = try store.runs()
                checks = try store.storageChecks()
            } catch {
                Console.error("drplan: error: \(error.message)")
                throw CommandFailure(status: .environment)
            }
        }
        var space: [String: FilesystemSpace.Space] = [:]
        for s in inventory.storage where s.url == nil {
            guard let p = s.path else { continue }
            // An unmounted drive has no space to report; its last measurement stands.
            if case .success(let sp) = FilesystemSpace.measure(Secrets.filePath(p, relativeTo: global.baseDirectory)) { space[s.id] = sp }
        }
        return PrometheusMetrics.render(result, runs: runs, storageChecks: checks, space: space, now: Date())
    }
}
