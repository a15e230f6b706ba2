import ArgumentParser
import Foundation

/// The `drplan` command. Each subcommand parses, validates, calls one core function and
/// maps failures to the exit codes in docs/cli.md; the work itself lives in the libraries.
struct Drplan: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "drplan",
        abstract: "Plan disaster recovery and audit backup compliance from a declarative inventory.",
        discussion: """
            Examples:
              drplan check -i samples/betpro.yaml --now 2026-11-22T00:00:00Z
              drplan validate -i samples/small-office.yaml
              drplan facts -i samples/betpro.yaml

            Exit status: 0 success, 1 findings at or above --fail-on (check) or a failed run,
            2 unusable input (bad inventory, flags or files), 3 internal or environment error.
            """,
        version: version,
        subcommands: [InitCommand.self, ValidateCommand.self, FactsCommand.self, CheckCommand.self, ReportCommand.self, PlanCommand.self, BackupCommand.self, RestoreTestCommand.self, RestoreCommand.self, PruneCommand.self, HistoryCommand.self, EvidenceCommand.self, EvalCommand.self, RulesCommand.self]
    )
}

/// Exit statuses, as docs/cli.md documents them.
enum ExitStatus: Int32 {
    case success = 0
    case findings = 1
    case badInput = 2
    case environment = 3
}

/// Thrown by commands after they have printed their own message.
struct CommandFailure: Error {
    let status: ExitStatus
}

@main
enum Main {
    static func main() {
        do {
            var command = try Drplan.parseAsRoot()
            try command.run()
        } catch let failure as CommandFailure {
            exit(failure.status.rawValue)
        } catch {
            // Help and --version are "errors" with a success code: let the parser print them.
            if Drplan.exitCode(for: error) == .success { Drplan.exit(withError: error) }
            Console.error(Drplan.fullMessage(for: error))
            exit(ExitStatus.badInput.rawValue)
        }
    }
}
