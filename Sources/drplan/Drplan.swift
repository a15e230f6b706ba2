import ArgumentParser
import DRRuns
import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
        subcommands: [InitCommand.self, ValidateCommand.self, FactsCommand.self, CheckCommand.self, ReportCommand.self, PlanCommand.self, BackupCommand.self, RestoreTestCommand.self, RestoreCommand.self, SnapshotsCommand.self, PruneCommand.self, CheckRepositoryCommand.self, RepairCommand.self, UnlockCommand.self, InitRepositoryCommand.self, HistoryCommand.self, ScheduleCommand.self, MetricsCommand.self, EvidenceCommand.self, EvalCommand.self, RulesCommand.self]
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

extension ExitStatus {
    /// The one place a repository or engine error becomes an exit status: what the user must
    /// fix is 2, damaged or lost data is 1 (a finding), and the environment (I/O, a missing
    /// tool, a lock held by another process) is 3.
    init(_ error: RepositoryError) {
        if error.kind == .missingTool { self = .environment; return }
        switch error.category {
        case .config: self = .badInput
        case .integrity: self = .findings
        case .io, .locked: self = .environment
        }
    }
}

/// Runs a core call, printing its error and mapping it to an exit status.
func reporting<T>(_ body: () throws(RepositoryError) -> T) throws(CommandFailure) -> T {
    do { return try body() } catch {
        Console.error("drplan: error: \(error.message)")
        throw CommandFailure(status: ExitStatus(error))
    }
}

/// SIGINT and SIGTERM: say what happens, record the runs in progress as interrupted, release
/// the repository locks, then exit as a shell expects (128 + the signal). SIGPIPE is ignored,
/// so `drplan backup | head -1` does not kill a backup: writes to the closed pipe just fail.
enum Signals {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []

    static func install() {
        signal(SIGPIPE, SIG_IGN)
        for (sig, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: DispatchQueue(label: "drplan.signal.\(name)"))
            source.setEventHandler {
                Console.error("drplan: \(name) received: stopping; runs in progress are recorded as interrupted and repository locks released")
                let n = RunInterruption.interruptAll(signal: name)
                if n > 0 { Console.error("drplan: \(n) run(s) recorded as interrupted; the repository keeps every earlier snapshot, and the next run cleans up") }
                exit(128 + sig)
            }
            source.resume()
            sources.append(source)
        }
    }
}

@main
enum Main {
    static func main() {
        Signals.install()
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
