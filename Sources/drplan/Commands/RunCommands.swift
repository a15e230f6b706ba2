import ArgumentParser
import CEL
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

    @Argument(help: "Jobs to run (default: every job drplan can run).")
    var jobs: [String] = []

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(jobs, among: inventory.jobs.map(\.id), what: "job")
        var runner = try global.runner(inventory)
        runner.progress = progress.sink(quiet: global.quiet)
        let records = try global.recording { () throws(EvidenceError) in try runner.backup(jobs: jobs) }
        if records.isEmpty, !global.quiet { Console.error("drplan: no job has a source drplan writes; nothing to back up") }
        if records.contains(where: \.missingTool) { throw CommandFailure(status: .environment) }
        if records.contains(where: { $0.status != .success }) { throw CommandFailure(status: .findings) }
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
        var runner = try global.runner(inventory)
        runner.progress = progress.sink(quiet: global.quiet)
        let chosenSample = sample.flatMap(Runner.Sample.parse), chosenSeed = seed ?? UInt64(Date().timeIntervalSince1970)
        let results = try global.recording { () throws(EvidenceError) in
            try runner.restoreTest(tests: tests, sample: chosenSample, seed: chosenSeed, keep: keep, from: from)
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
        if FileManager.default.fileExists(atPath: global.evidencePath) {
            do {
                let sinceDate = since.flatMap { try? Timestamp.parse($0) }.map { Date(timeIntervalSince1970: TimeInterval($0.seconds)) }
                runs = try EvidenceStore.reading(global.evidencePath).runs(job: job, since: sinceDate)
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
            if runs.isEmpty { Console.out("no runs recorded in \(global.evidencePath)"); return }
            for r in runs {
                let what = r.kind == .restoreTest ? "restore-test \(r.restoreTest ?? "?")" : "\(r.kind.rawValue) \(r.job ?? "?")"
                Console.out("\(Timestamp(r.startedAt).description.prefix(19))  \(r.status.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(what) → \(r.storage ?? "-")  \(r.files) files, \(r.bytesRead) read, \(r.bytesWritten) written, \(r.verifiedBytes) verified" + (r.error.map { "  error: \($0)" } ?? ""))
            }
        }
    }
}

struct EvidenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evidence",
        abstract: "Work with the evidence store.",
        subcommands: [EvidenceExportCommand.self, EvidenceVerifyCommand.self])
}

struct EvidenceVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the evidence store's audit log, or an evidence bundle against its manifest.",
        discussion: """
            Example:
              drplan evidence verify -i samples/demo/drplan.yaml
              drplan evidence verify evidence-2026-q4.zip

            Exit status 0 when everything is intact, 1 when an entry or file was edited, deleted or added, 3 when it cannot be read.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "An evidence bundle to check (default: the store's audit log).")
    var bundle: String?

    func run() throws {
        global.apply()
        if let bundle {
            let problems: [String]
            do { problems = try EvidenceBundle.verify(URL(fileURLWithPath: bundle)) } catch {
                Console.error("drplan: error: \(error.message)")
                throw CommandFailure(status: .environment)
            }
            for p in problems { Console.error("drplan: \(bundle): \(p)") }
            if !problems.isEmpty { throw CommandFailure(status: .findings) }
            if !global.quiet { Console.out("ok: every file of \(bundle) matches its manifest") }
            return
        }
        guard FileManager.default.fileExists(atPath: global.evidencePath) else {
            Console.error("drplan: error: no evidence store at \(global.evidencePath); record runs with 'drplan backup' first, or pass --evidence")
            throw CommandFailure(status: .environment)
        }
        let problems: [String], head: (seq: Int64, hash: String), unbound: Int
        do {
            let store = try EvidenceStore.reading(global.evidencePath)
            let runs = try store.verifyRuns()
            problems = try store.verifyAudit() + runs.problems
            unbound = runs.unbound
            head = try store.auditHead()
        } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
        // The head, always: written down somewhere else, it shows later whether entries were
        // removed from the end (which no chain can show by itself).
        let headLine = "head: entry \(head.seq), sha256 \(head.hash)"
            + (unbound > 0 ? "; \(unbound) run(s) recorded before runs were bound to the log are not checked" : "")
        if problems.isEmpty {
            if !global.quiet { Console.out("ok: the audit log of \(global.evidencePath) is intact and every run matches it; \(headLine)") }
            return
        }
        for p in problems { Console.error("drplan: \(global.evidencePath): \(p)") }
        Console.out("FAILED: the audit log of \(global.evidencePath) has \(problems.count) problem(s); \(headLine)")
        throw CommandFailure(status: .findings)
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
        var runner = try global.runner(inventory)
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

struct EvidenceExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write an evidence bundle for an audit period: reports, runs, inventory, audit log, manifest.",
        discussion: """
            Example:
              drplan evidence export -i samples/demo/drplan.yaml --from 2026-10-01 --to 2026-12-31 -o evidence.zip

            The bundle holds the HTML and JSON reports as of --to (from the evidence recorded by then), the runs of the period (CSV and JSON), the inventory files, the audit-log entries of the period, and MANIFEST.sha256 with every file's SHA-256. Check it with 'drplan evidence verify FILE.zip' or 'sha256sum -c'.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Start of the period.", valueName: "timestamp"))
    var from: String

    @Option(name: .long, help: ArgumentHelp("End of the period; the reports are as of this instant.", valueName: "timestamp"))
    var to: String

    @Option(name: .long, help: ArgumentHelp("Limit findings and control matrices to a framework (repeatable).", valueName: "name"))
    var framework: [String] = []

    @Option(name: .long, help: ArgumentHelp("Add the policy files under this directory (repeatable), as 'check' does: the bundle judges what the CI gate judges.", valueName: "dir"))
    var policies: [String] = []

    @Option(name: .short, help: ArgumentHelp("The zip file to write.", valueName: "file"))
    var output: String

    func validate() throws {
        let (start, end) = try period()
        for f in framework where Framework(rawValue: f) == nil { throw ValidationError("invalid --framework '\(f)'") }
        // Evidence of a period that has not ended cannot be complete, and a bundle dated in
        // the future would claim what nobody has seen yet.
        if end > global.instant() { throw ValidationError("--to \(to) is in the future (now is \(global.instant())); an evidence period must have ended") }
        if start > end { throw ValidationError("--from \(from) is after --to \(to)") }
    }

    /// The period as instants: a date alone means from its first second to its last. A value
    /// that does not parse is the usage error that names the flag.
    func period() throws(ValidationError) -> (Timestamp, Timestamp) {
        func parse(_ flag: String, _ v: String) throws(ValidationError) -> Timestamp {
            do { return try Timestamp.parse(v) } catch { throw ValidationError("invalid \(flag) '\(v)': \(error.reason)") }
        }
        let start = try parse("--from", from)
        var end = try parse("--to", to)
        if to.count == 10 { end = end.adding(seconds: 86_399) }
        return (start, end)
    }

    func run() throws {
        global.apply()
        let (start, end) = try period()
        let inventory = try global.loadInventory()
        let policies = try Loaders.policies(self.policies, quiet: global.quiet)
        let (startDate, endDate) = (Date(timeIntervalSince1970: TimeInterval(start.seconds)), Date(timeIntervalSince1970: TimeInterval(end.seconds)))
        var runs: [RunRecord] = []
        var audit: [[String: String]] = []
        var measured = MeasuredEvidence()
        if FileManager.default.fileExists(atPath: global.evidencePath) {
            do {
                let store = try EvidenceStore(path: global.evidencePath, create: false)
                runs = try store.runs().filter { $0.startedAt <= endDate }
                measured = try store.measured(until: endDate)
                audit = try store.auditEntries(from: startDate, to: endDate)
            } catch {
                Console.error("drplan: error: \(error.message)")
                throw CommandFailure(status: .environment)
            }
        }
        var options = CheckOptions()
        options.frameworks = framework
        let result: CheckResult
        do { result = try Check.run(inventory: inventory, policies: policies, now: end, measured: measured, options: options) } catch {
            Console.error(error.description)
            throw CommandFailure(status: .badInput)
        }
        let context = ReportContext(toolVersion: Drplan.version, generatedAt: GlobalOptions.wallClock())
        let inPeriod = runs.filter { $0.startedAt >= startDate }
        var files: [(name: String, data: Data)] = [
            ("report.json", Data(try Loaders.render(JSONFormat.self, result, context).utf8)),
            ("report.html", Data(try Loaders.render(HTMLFormat.self, result, context).utf8)),
            ("runs.json", Data(Self.runsJSON(inPeriod).utf8)),
            ("runs.csv", Data(Self.csv(inPeriod).utf8)),
            ("restore-tests.csv", Data(Self.csv(inPeriod.filter { $0.kind == .restoreTest }).utf8)),
            ("audit-log.json", Data((JSONWriter().string(.list(audit.map { e in .object(e.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }) })) + "\n").utf8)),
        ]
        // The inventory as it was written, with every secret masked where it stands (the
        // bundle leaves the machine; the report's inventory_sha256 is of the original bytes).
        var notes: [String] = []
        for (i, f) in inventory.files.enumerated() {
            let name = "inventory/\(i + 1)-\((f.path as NSString).lastPathComponent)"
            switch SourceRedaction.redact(f.bytes) {
            case .redacted(let text, let masked):
                files.append((name, Data(text.utf8)))
                notes.append("\(name): \(f.path), \(masked == 0 ? "copied as it is (no secret found)" : "copied with secrets masked (\(Redaction.mask)) in \(masked) place(s)")")
            case .withheld(let reason):
                notes.append("\(name): \(f.path), not included: \(reason); drplan will not copy what it cannot redact for certain")
                Console.error("drplan: warning: \(f.path) is not in the bundle: \(reason)")
            }
        }
        files.append(("inventory/README.txt", Data((["The inventory files this bundle was made from, with secrets masked in place (line and column numbers are unchanged).", ""] + notes).joined(separator: "\n").utf8 + [0x0A])))
        do { try EvidenceBundle.write(files, to: URL(fileURLWithPath: output), modified: endDate) } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .badInput)
        }
        if !global.quiet { Console.out("wrote \(output): \(files.count + 1) files, \(inPeriod.count) runs, \(audit.count) audit entries") }
    }

    static let columns = ["id", "kind", "job", "restore_test", "engine", "storage", "host", "started_at", "finished_at", "status",
                          "bytes_read", "bytes_written", "files", "snapshot", "verified_files", "verified_bytes", "error"]

    static func fields(_ r: RunRecord) -> [String] {
        [r.id, r.kind.rawValue, r.job ?? "", r.restoreTest ?? "", r.engine, r.storage ?? "", r.host,
         Timestamp(r.startedAt).description, r.finishedAt.map { Timestamp($0).description } ?? "", r.status.rawValue,
         String(r.bytesRead), String(r.bytesWritten), String(r.files), r.snapshot ?? "", String(r.verifiedFiles), String(r.verifiedBytes), r.error ?? ""]
    }

    /// RFC 4180: every field quoted, quotes doubled.
    static func csv(_ runs: [RunRecord]) -> String {
        ([columns] + runs.map(fields)).map { $0.map(Escape.csvField).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
    }

    static func runsJSON(_ runs: [RunRecord]) -> String {
        JSONWriter().string(.object([("runs", .list(runs.map { r in .object(zip(columns, fields(r)).map { ($0, Value.string($1)) }) }))])) + "\n"
    }
}
