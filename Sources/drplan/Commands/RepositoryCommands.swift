import ArgumentParser
import CEL
import DRInventory
import DRRuns
import Foundation

struct SnapshotsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots",
        abstract: "List the snapshots of jobs on their targets: id, time, host, size and target.",
        discussion: """
            Example:
              drplan snapshots documents-nightly -i samples/demo/drplan.yaml --from usb-at-home

            Ids may be shortened to a unique prefix of 8 or more characters wherever a snapshot is named. A target that cannot be read is an error (exit 3, or 1 when its data is damaged), never an empty list.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Jobs (default: every job drplan writes).")
    var jobs: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only this target.", valueName: "storage"))
    var from: String?

    @Option(name: .long, help: "text or json.")
    var format: Format = .text

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(jobs, among: inventory.jobs.map(\.id), what: "job")
        if let from { try checkNames([from], among: inventory.storage.map(\.id), what: "storage") }
        let runner = try global.readOnlyRunner(inventory)
        let listed = try reporting { () throws(RepositoryError) in try runner.snapshots(jobs: jobs, from: from) }
        switch format {
        case .json:
            let list: [Value] = listed.map { l in
                .object([("id", .string(l.snapshot.id)), ("job", .string(l.job)), ("target", .string(l.target)),
                         ("time", .timestamp(Timestamp(seconds: l.snapshot.time))), ("host", .string(l.snapshot.host)),
                         ("size", l.snapshot.size.map(Value.int) ?? .null), ("tags", .strings(l.snapshot.tags))])
            }
            Console.out(JSONWriter().string(.object([("snapshots", .list(list))])))
        case .text:
            if listed.isEmpty { Console.out("no snapshots"); return }
            for l in listed {
                let size = l.snapshot.size.map { ByteSize.format($0) } ?? "-"
                Console.out("\(l.snapshot.id.prefix(8))  \(Timestamp(seconds: l.snapshot.time).description.prefix(19))  \(l.snapshot.host)  \(size)  \(l.job) → \(l.target)  [\(l.snapshot.tags.joined(separator: ","))]")
            }
        }
    }
}

struct CheckRepositoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-repository",
        abstract: "Check the repositories of jobs: structure, and with --read-data the data itself.",
        discussion: """
            Example:
              drplan check-repository -i samples/demo/drplan.yaml --read-data-subset 1/12

            Checks config, index, snapshots and that every object a snapshot uses is in a pack that exists and is long enough. --read-data reads every pack and authenticates every object; --read-data-subset reads a share (5%) or a part (n/m: run 1/12 to 12/12 on successive days to read everything once). Each damaged or missing object is named with the files and snapshots that use it, and is never deduplicated against again. restic repositories are checked with 'restic check'. Exit status 1 when a problem is found.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Jobs whose repositories to check (default: all).")
    var jobs: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only this target.", valueName: "storage"))
    var from: String?

    @Flag(name: .long, help: "Read and authenticate all data.")
    var readData = false

    @Option(name: .long, help: ArgumentHelp("Read a share of the data: '5%' or 'n/m'.", valueName: "subset"))
    var readDataSubset: String?

    func validate() throws {
        if readData && readDataSubset != nil { throw ValidationError("give --read-data or --read-data-subset, not both") }
        if let s = readDataSubset, ReadDataSelection.parse(s) == nil { throw ValidationError("invalid --read-data-subset '\(s)': give a percentage such as '5%' or a part such as '1/12'") }
    }

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(jobs, among: inventory.jobs.map(\.id), what: "job")
        if let from { try checkNames([from], among: inventory.storage.map(\.id), what: "storage") }
        var runner = try global.readOnlyRunner(inventory)
        let quiet = global.quiet
        runner.log = { if !quiet { Console.error("drplan: " + Escape.line(Redaction.text($0))) } }
        let selection: ReadDataSelection = readData ? .all : readDataSubset.flatMap(ReadDataSelection.parse) ?? .none
        let results = try reporting { () throws(RepositoryError) in try runner.checkRepositories(jobs: jobs, from: from, readData: selection) }
        var problems = 0
        for (job, target, report) in results {
            for p in report.problems { Console.error("drplan: \(target) (\(job)): \(p)") }
            for n in report.notes where !quiet { Console.error("drplan: \(target) (\(job)): note: \(n)") }
            problems += report.problems.count
            if !quiet {
                let read = selection == .none ? "structure only (add --read-data-subset to read data)" : "\(report.packsRead) pack(s), \(report.objectsRead) object(s), \(report.bytesRead) bytes read and authenticated"
                Console.out("\(target) (\(job)): \(report.problems.isEmpty ? "no problems" : "\(report.problems.count) problem(s)"): \(report.snapshots) snapshot(s), \(report.packs) pack(s); \(read)")
            }
        }
        if results.isEmpty, !quiet { Console.out("no repository to check") }
        if problems > 0 {
            Console.error("drplan: \(problems) problem(s) found; 'drplan repair index' rebuilds a damaged index, 'drplan repair snapshots' removes lost files from snapshots, and the next backup stores damaged data afresh")
            throw CommandFailure(status: .findings)
        }
    }
}

struct RepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Repair a builtin repository: rebuild its index, or rewrite snapshots that use lost data.",
        subcommands: [RepairIndexCommand.self, RepairSnapshotsCommand.self])
}

/// The storages a repair or unlock acts on: those named, or every one holding drplan's own
/// repository. Loads the inventory and opens the runner once for all of them.
struct RepositoryStorages: ParsableArguments {
    @Argument(help: "Storage ids (default: every storage holding a drplan repository).")
    var storage: [String] = []

    func each(_ global: GlobalOptions, _ body: (Runner, String) throws -> Void) throws {
        global.apply()
        let runner = try global.runner(try global.loadInventory())
        let all = runner.builtinStorages
        if !storage.isEmpty { try checkNames(storage, among: all, what: "storage holding a drplan repository") }
        for id in storage.isEmpty ? all : storage { try body(runner, id) }
    }
}

struct RepairIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Rebuild the index from the packs' own trailers, leaving out copies found damaged.",
        discussion: """
            Example:
              drplan repair index usb-at-home -i samples/demo/drplan.yaml

            Holds an exclusive lock. Afterwards the next backup stores afresh whatever is no longer indexed.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var storages: RepositoryStorages

    func run() throws {
        try storages.each(global) { runner, id in
            let lines = try reporting { () throws(RepositoryError) -> [String] in
                let repo = try runner.repository(on: id)
                return try repo.withLock(exclusive: true, operation: "repair index", log: { Console.error("drplan: " + Escape.line(Redaction.text($0))) }) { () throws(RepositoryError) in try repo.repairIndex() }
            }
            for l in lines { Console.out("\(id): \(l)") }
            try global.recording { () throws(EvidenceError) in try runner.store.audit("repair.index", ["storage": id, "result": lines.joined(separator: "; ")]) }
        }
    }
}

struct RepairSnapshotsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshots",
        abstract: "Rewrite snapshots that use lost or damaged data without the files affected, naming them.",
        discussion: """
            Example:
              drplan repair snapshots usb-at-home -i samples/demo/drplan.yaml --dry-run

            Each snapshot changed is written anew with the tag 'repaired' and the original removed. Run 'drplan repair index' first when the index is damaged.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var storages: RepositoryStorages

    @Flag(name: .long, help: "Say what would change, change nothing.")
    var dryRun = false

    func run() throws {
        try storages.each(global) { runner, id in
            let dry = dryRun
            var removed: [String] = [], repository = ""
            let lines = try reporting { () throws(RepositoryError) -> [String] in
                let repo = try runner.repository(on: id)
                repository = repo.id
                return try repo.withLock(exclusive: true, operation: "repair snapshots", log: { Console.error("drplan: " + Escape.line(Redaction.text($0))) }) { () throws(RepositoryError) in
                    let before = Set(try repo.snapshotNames())
                    let lines = try repo.repairSnapshots(dryRun: dry)
                    removed = before.subtracting(try repo.snapshotNames()).sorted()
                    return lines
                }
            }
            for l in lines { Console.out("\(id): \(l)") }
            if !dryRun {
                try global.recording { () throws(EvidenceError) in
                    // The originals of rewritten snapshots are gone on purpose.
                    try runner.store.forgetSnapshots(repository: repository, removed)
                    try runner.store.audit("repair.snapshots", ["storage": id, "result": lines.joined(separator: "; ")])
                }
            }
        }
    }
}

struct UnlockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "Remove stale repository locks: not refreshed for 30 minutes, or left by a process of this host that no longer runs.",
        discussion: """
            Example:
              drplan unlock -i samples/demo/drplan.yaml

            A lock whose holder still runs is never removed; the message names it.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var storages: RepositoryStorages

    func run() throws {
        try storages.each(global) { runner, id in
            var removed: [String] = []
            let live = try reporting { () throws(RepositoryError) -> [String] in
                let repo = try runner.repository(on: id)
                try repo.removeStaleLocks { removed.append($0) }
                return try repo.locks().map { $0.info?.holder ?? "an unreadable lock \($0.name.prefix(12))" }
            }
            for r in removed { Console.out("\(id): \(r)") }
            for l in live { Console.out("\(id): still locked by \(l) (not stale; left in place)") }
            if removed.isEmpty && live.isEmpty && !global.quiet { Console.out("\(id): no locks") }
            if !removed.isEmpty { try global.recording { () throws(EvidenceError) in try runner.store.audit("locks.removed", ["storage": id, "locks": removed.joined(separator: "; ")]) } }
        }
    }
}

struct InitRepositoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init-repository",
        abstract: "Create drplan's repository on a storage, on purpose (the folder itself must exist).",
        discussion: """
            Example:
              drplan init-repository usb-at-home -i samples/demo/drplan.yaml

            Backups never create a repository unless the storage says 'create: true'; this is the other way to make one. The key comes from the passphrase of the jobs that write there.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The storage to create the repository on.")
    var storage: String

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames([storage], among: inventory.storage.map(\.id), what: "storage")
        let runner = try global.runner(inventory)
        let repo = try reporting { () throws(RepositoryError) in try runner.repository(on: storage, create: true) }
        try global.recording { () throws(EvidenceError) in try runner.store.audit("repository.created", ["storage": storage, "repository": repo.id]) }
        if !global.quiet { Console.out("created a drplan repository (id \(repo.id.prefix(8))) at \(repo.storage.location)") }
    }
}
