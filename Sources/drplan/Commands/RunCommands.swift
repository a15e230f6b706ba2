import ArgumentParser
import CEL
import DREvidence
import DRFacts
import DRInventory
import DRPolicy
import DRReports
import DRRuns
import Foundation

/// Checks that every named id exists, with a suggestion when one is close (exit 2 otherwise).
func checkNames(_ names: [String], among known: [String], what: String) throws(CommandFailure) {
    for n in names where !known.contains(n) {
        Console.error("drplan: error: no \(what) '\(n)' in the inventory" + (suggestion(for: n, among: known).map { " (did you mean '\($0)'?)" } ?? "") + "; known: \(known.joined(separator: ", "))")
        throw CommandFailure(status: .badInput)
    }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Run backup jobs now and record what they did as evidence.",
        discussion: """
            Example:
              drplan backup -i samples/demo/drplan.yaml

            With no job names, runs every job that has a source, in inventory order, once per asset and target: every declared target is written or its run fails loudly (a target that is not mounted, has no 'path', or holds no repository and is not 'create: true'). Exit status 1 when a run failed, 3 when the evidence store cannot be used or another run of the job holds its lock. Ctrl-C records the runs in progress as interrupted and releases the locks.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var progress: ProgressOptions

    @Flag(name: .long, help: "Run only what has come due since its last successful run (for a timer every 15 minutes, as anacron).")
    var due = false

    @Argument(help: "Jobs to run (default: every job drplan can run).")
    var jobs: [String] = []

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(jobs, among: inventory.jobs.map(\.id), what: "job")
        let chosen = try Self.hostJobs(jobs, inventory)
        if chosen.isEmpty, !inventory.hosts.isEmpty {
            if !global.quiet { Console.error("drplan: no job of this inventory runs on host '\(ThisHost.name)' (its hosts: \(inventory.hosts.joined(separator: ", "))); pass --host NAME to act as another") }
            return
        }
        var runner = try global.runner(inventory)
        runner.progress = progress.sink(quiet: global.quiet)
        let dueAt = due ? Date(timeIntervalSince1970: TimeInterval(global.instant().seconds)) : nil
        let records = try global.recording { () throws(EvidenceError) in try runner.backup(jobs: chosen, due: dueAt) }
        if records.isEmpty, !global.quiet { Console.error(due ? "drplan: nothing is due" : "drplan: no job has a source drplan writes; nothing to back up") }
        // monitoring.metrics_file: refreshed after the runs, so a scrape sees this run. A file
        // that cannot be written is said; the backups themselves are done.
        for file in Set(inventory.jobs.compactMap(\.monitoring.metricsFile)).sorted() {
            do {
                let text = try MetricsCommand.render(global, nil, inventory: inventory)
                try PrometheusMetrics.write(text, to: Secrets.filePath(file, relativeTo: global.baseDirectory))
            } catch let e as RepositoryError {
                Console.error("drplan: warning: the metrics file \(file) could not be written: \(e.message)")
            } catch {
                Console.error("drplan: warning: the metrics file \(file) could not be written")
            }
        }
        if records.contains(where: \.missingTool) { throw CommandFailure(status: .environment) }
        if records.contains(where: { $0.status != .success }) { throw CommandFailure(status: .findings) }
    }
}

extension BackupCommand {
    /// The jobs this host runs: those named (each must be this host's), else every runnable
    /// job whose `host` is this one or unset. Never empty by accident: an empty result means
    /// nothing, not "every job".
    static func hostJobs(_ names: [String], _ inventory: Inventory) throws(CommandFailure) -> [String] {
        let here = ThisHost.name
        if !names.isEmpty {
            for n in names {
                if let job = inventory.jobs.first(where: { $0.id == n }), let h = inventory.host(of: job), h != here {
                    Console.error("drplan: error: job '\(n)' runs on host '\(h)', and this is '\(here)'; run it there, or pass --host \(h)")
                    throw CommandFailure(status: .badInput)
                }
            }
            return names
        }
        return Runner.backupCandidates(inventory).filter { inventory.runs($0, on: here) }.map(\.id)
    }
}

struct RestoreTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-test",
        abstract: "Run restore tests now: restore into scratch space, verify every byte, record the result.",
        discussion: """
            Example:
              drplan restore-test -i samples/demo/drplan.yaml

            A test of scope 'sample' restores 10% of the files unless --sample says otherwise; 'full' and 'failover' restore everything. Exit status 1 when a test failed.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Restore a sample: a percentage ('5%') or a number of files ('200').", valueName: "size"))
    var sample: String?

    @Option(name: .long, help: ArgumentHelp("Seed of the sample's random choice (recorded with the run).", valueName: "n"))
    var seed: UInt64?

    @Flag(name: .long, help: "Keep the restored copy for inspection and print where it is.")
    var keep = false

    @Option(name: .long, help: ArgumentHelp("Test this target's copy (default: as the test's 'targets' says; 'rotate' tests each copy in turn).", valueName: "storage"))
    var from: String?

    @Flag(name: .long, help: "Run only the tests whose 'every' has passed since their last success.")
    var due = false

    @OptionGroup var progress: ProgressOptions

    @Argument(help: "Restore tests to run (default: all).")
    var tests: [String] = []

    func validate() throws {
        if let s = sample, Runner.Sample.parse(s) == nil { throw ValidationError("invalid --sample '\(s)': give a percentage such as '5%' or a number of files such as '200'") }
    }

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(tests, among: inventory.restoreTests.map(\.id), what: "restore test")
        if let from { try checkNames([from], among: inventory.storage.map(\.id), what: "storage") }
        // A restore test restores on the host that runs its job (into that host's scratch space).
        let here = ThisHost.name
        let jobsHere = Set(inventory.jobs.filter { inventory.runs($0, on: here) }.map(\.id))
        for t in tests {
            if let test = inventory.restoreTests.first(where: { $0.id == t }), !jobsHere.contains(test.job),
               let job = inventory.jobs.first(where: { $0.id == test.job }), let h = inventory.host(of: job) {
                Console.error("drplan: error: restore test '\(t)' tests job '\(test.job)', which runs on host '\(h)', and this is '\(here)'; run it there, or pass --host \(h)")
                throw CommandFailure(status: .badInput)
            }
        }
        let chosen = tests.isEmpty ? inventory.restoreTests.filter { jobsHere.contains($0.job) }.map(\.id) : tests
        if chosen.isEmpty, !inventory.restoreTests.isEmpty {
            if !global.quiet { Console.error("drplan: no restore test of this inventory tests a job of host '\(here)'; pass --host NAME to act as another") }
            return
        }
        var runner = try global.runner(inventory)
        runner.progress = progress.sink(quiet: global.quiet)
        let chosenSample = sample.flatMap(Runner.Sample.parse), chosenSeed = seed ?? UInt64(Date().timeIntervalSince1970)
        let results = try global.recording { () throws(EvidenceError) in
            try runner.restoreTest(tests: chosen, sample: chosenSample, seed: chosenSeed, keep: keep, from: from,
                                   due: due ? Date(timeIntervalSince1970: TimeInterval(global.instant().seconds)) : nil)
        }
        for (_, kept) in results { if let kept { Console.out(kept) } }
        if results.contains(where: { $0.0.missingTool }) { throw CommandFailure(status: .environment) }
        if results.contains(where: { $0.0.status != .success }) { throw CommandFailure(status: .findings) }
    }
}

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List recorded runs.",
        discussion: """
            Example:
              drplan history -i samples/demo/drplan.yaml --format json
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Only this job's runs.", valueName: "job"))
    var job: String?

    @Option(name: .long, help: ArgumentHelp("Only runs started at or after this instant.", valueName: "timestamp"))
    var since: String?

    @Option(name: .long, help: "text or json.")
    var format: Format = .text

    func validate() throws {
        if let since { do { _ = try Timestamp.parse(since) } catch { throw ValidationError("invalid --since '\(since)': \(error.reason)") } }
    }

    func run() throws {
        global.apply()
        var runs: [RunRecord] = []
        try global.learnEvidenceLocation()
        if let store = try global.readStore() {
            do {
                let sinceDate = since.flatMap { try? Timestamp.parse($0) }.map { Date(timeIntervalSince1970: TimeInterval($0.seconds)) }
                runs = try store.runs(job: job, since: sinceDate, host: global.host)
            } catch {
                Console.error("drplan: error: \(error.message)")
                throw CommandFailure(status: .environment)
            }
        }
        func ts(_ d: Date?) -> Value { d.map { .timestamp(Timestamp($0)) } ?? .null }
        switch format {
        case .json:
            let list: [Value] = runs.map { r in
                .object([
                    ("id", .string(r.id)), ("kind", .string(r.kind.rawValue)), ("job", r.job.map(Value.string) ?? .null),
                    ("restore_test", r.restoreTest.map(Value.string) ?? .null), ("engine", .string(r.engine)), ("storage", r.storage.map(Value.string) ?? .null),
                    ("host", .string(r.host)), ("started_at", ts(r.startedAt)), ("finished_at", ts(r.finishedAt)), ("status", .string(r.status.rawValue)),
                    ("bytes_read", .int(r.bytesRead)), ("bytes_written", .int(r.bytesWritten)), ("files", .int(r.files)),
                    ("snapshot", r.snapshot.map(Value.string) ?? .null), ("verified_files", .int(r.verifiedFiles)), ("verified_bytes", .int(r.verifiedBytes)),
                    ("error", r.error.map(Value.string) ?? .null),
                ])
            }
            Console.out(JSONWriter().string(.object([("runs", .list(list))])))
        case .text:
            if runs.isEmpty { Console.out("no runs recorded in \(global.evidenceDisplay)"); return }
            // A fleet's store: each line says which host ran it.
            let manyHosts = Set(runs.map(\.host)).count > 1
            for r in runs {
                let what = (r.kind == .restoreTest ? "restore-test \(r.restoreTest ?? "?")" : "\(r.kind.rawValue) \(r.job ?? "?")") + (manyHosts ? " on \(r.host)" : "")
                Console.out("\(Timestamp(r.startedAt).description.prefix(19))  \(r.status.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(what) → \(r.storage ?? "-")  \(r.files) files, \(r.bytesRead) read, \(r.bytesWritten) written, \(r.verifiedBytes) verified" + (r.error.map { "  error: \($0)" } ?? ""))
            }
        }
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a job's latest (or a given) snapshot, for a real recovery.",
        discussion: """
            Example:
              drplan restore documents-nightly -i samples/demo/drplan.yaml --target /tmp/recovered

            A job with one asset restores its files directly into the target; a job with several gets one folder per asset. A non-empty target is refused unless --force. Every file is checked against the snapshot's SHA-256; damaged files are listed and the exit status is 1.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var progress: ProgressOptions

    @Argument(help: "The job whose backup to restore.")
    var job: String

    @Option(name: .long, help: ArgumentHelp("The snapshot to restore: its id, or a unique prefix of 8 or more characters (default: the latest).", valueName: "id"))
    var snapshot: String?

    @Option(name: .long, help: ArgumentHelp("The directory to restore into.", valueName: "dir"))
    var target: String

    @Option(name: .long, help: ArgumentHelp("Restore from this target (default: the first copy that can be read).", valueName: "storage"))
    var from: String?

    @Option(name: .long, help: ArgumentHelp("Restore only this path of the snapshot and what lies under it (repeatable).", valueName: "path"))
    var include: [String] = []

    @Flag(name: .long, help: "Restore into a non-empty directory, replacing the files and links the snapshot names (never a directory, never anything else).")
    var force = false

    @Flag(name: .long, help: "Keep setuid, setgid and sticky bits as stored (masked by default).")
    var keepSpecialModes = false

    @Flag(name: .long, help: "Accept a target that is, or lies under, a symlink.")
    var follow = false

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames([job], among: inventory.jobs.map(\.id), what: "job")
        if let from { try checkNames([from], among: inventory.storage.map(\.id), what: "storage") }
        var runner = try global.runner(inventory, recovering: true)
        runner.progress = progress.sink(quiet: global.quiet)
        let options = RestoreOptions(force: force, keepSpecialModes: keepSpecialModes, follow: follow)
        let results = try reporting { () throws(RepositoryError) in
            try runner.restore(job: job, snapshot: snapshot, target: URL(fileURLWithPath: target), from: from, include: include, options: options)
        }
        var damaged = 0
        for (asset, r) in results {
            if !global.quiet { Console.out("\(asset): \(r.files) files, \(r.bytes) bytes restored and verified into \(target)") }
            for (path, why) in r.damaged.sorted(by: { $0.key < $1.key }) { Console.error("drplan: \(asset)/\(path): not restored intact: \(why)") }
            damaged += r.damaged.count
        }
        if damaged > 0 { throw CommandFailure(status: .findings) }
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Apply jobs' retention (keep_* rules) to what drplan's engine stored, then free unreferenced data.",
        discussion: """
            Example:
              drplan prune -i samples/demo/drplan.yaml

            restic's semantics: a snapshot stays when any keep_* rule keeps it; keep_within is measured from the newest snapshot. Prune plans first and fails closed: a listing, index or snapshot it cannot read, or an object a snapshot uses that no index names, stops it before anything is deleted. It holds an exclusive repository lock, so no backup runs into the same repository meanwhile. Jobs without retention keep everything.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Jobs to prune (default: all with a retention).")
    var jobs: [String] = []

    @Flag(name: .long, help: "Print the plan (snapshots to forget, packs to delete and rewrite) and change nothing.")
    var dryRun = false

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(jobs, among: inventory.jobs.map(\.id), what: "job")
        let runner = try global.runner(inventory)
        let records = try global.recording { () throws(EvidenceError) in try runner.prune(jobs: jobs, dryRun: dryRun) }
        if records.contains(where: { $0.status != .success }) { throw CommandFailure(status: .findings) }
    }
}
