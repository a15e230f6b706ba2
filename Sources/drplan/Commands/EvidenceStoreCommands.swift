import ArgumentParser
import DRRuns
import Foundation

struct EvidenceMigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create the evidence store's tables, or upgrade them to this drplan's schema.",
        discussion: """
            Example:
              drplan evidence migrate --evidence 'postgresql://drplan@db.example.com:5432/evidence?sslmode=verify-full'

            Commands that record (backup, restore-test, prune…) apply migrations on their first write; commands that only read never do, and refuse a PostgreSQL store whose schema is older than theirs. Run this once when a fleet's drplan is upgraded, as a role that may create tables (docs/fleets.md lists the grants). Exit status 3 when the store cannot be reached or upgraded.
            """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        global.apply()
        try global.learnEvidenceLocation()
        let password = try global.evidencePassword()
        let store = try global.recording { () throws(EvidenceError) in try EvidenceStore(path: global.evidencePath, password: password) }
        if !global.quiet { Console.out("ok: the evidence store \(store.path) has every migration this drplan knows (\(EvidenceStore.schemaVersions.joined(separator: ", ")))") }
    }
}

struct EvidenceCopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy an evidence store, chain intact, into a new one (SQLite to PostgreSQL for a fleet), and verify the copy.",
        discussion: """
            Example:
              drplan evidence copy --from .drplan/evidence.sqlite --to 'postgresql://drplan@db.example.com/evidence?sslmode=verify-full'

            The source must verify; the destination must hold no evidence yet (nothing is merged or replaced). Every run, audit entry (same sequence numbers and hashes), snapshot record, storage measurement and checkpoint is copied in one transaction, then the copy is verified against the source's head. Passwords come from PGPASSWORD or ~/.pgpass (never from the command line). Stop every drplan that writes to the source first. Exit status 3 when either store cannot be used or the copy does not verify.
            """)

    @Option(name: .long, help: ArgumentHelp("The store to copy: a file or a postgresql:// URL.", valueName: "path|url"))
    var from: String

    @Option(name: .long, help: ArgumentHelp("The new store: a file or a postgresql:// URL.", valueName: "path|url"))
    var to: String

    @Flag(name: .shortAndLong, help: "Print only errors.")
    var quiet = false

    func validate() throws {
        for u in [from, to] where PostgresLocation.isURL(u) {
            do { _ = try PostgresLocation.parse(u) } catch { throw ValidationError(error.message) }
        }
        if from == to { throw ValidationError("--from and --to name the same store") }
    }

    func run() throws {
        let result = try recordingFailure { () throws(EvidenceError) in
            let source = try EvidenceStore.reading(from)
            return (try EvidenceStore.copy(from: source, to: to, password: nil), source.path)
        }
        let display = PostgresLocation.display(of: to)
        if !quiet {
            Console.out("copied \(result.0.runs) runs, \(result.0.entries) audit entries, \(result.0.checkpoints) checkpoints, \(result.0.snapshots) snapshot records and \(result.0.storageChecks) storage measurements from \(result.1) to \(display)")
            Console.out("verified: head entry \(result.0.entries), sha256 \(result.0.head), the same as the source's")
        }
    }

    /// An evidence failure is exit 3, its message printed.
    func recordingFailure<T>(_ body: () throws(EvidenceError) -> T) throws(CommandFailure) -> T {
        do { return try body() } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
    }
}
