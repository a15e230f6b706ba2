import ArgumentParser
import CEL
import DRInventory
import DRRuns
import DRSchedule
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Turn the jobs' schedules into systemd timers, cron lines or launchd plists, and install them.",
        discussion: """
            Examples:
              drplan schedule -i drplan.yaml --list
              drplan schedule -i drplan.yaml --format systemd            # print the units
              drplan schedule -i drplan.yaml --format systemd --install  # write, reload, enable
              drplan schedule -i drplan.yaml --format cron --install     # /etc/cron.d/drplan as root, else your crontab

            Each entry runs `drplan backup JOB -i INVENTORY` with absolute paths from the inventory's directory. systemd units go to /etc/systemd/system as root and ~/.config/systemd/user otherwise; --install runs `systemctl daemon-reload` and enables the timers where systemd is running, and prints those commands otherwise. --directory writes the files there and runs nothing. Continuous jobs have no timer and are listed as such; a schedule a format cannot express stops the command (exit 2) before anything is written, with the reason and what to do. docs/schedules.md explains time zones and DST.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case systemd, cron, launchd }

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "systemd, cron or launchd.")
    var format: Format = {
        #if os(macOS)
        return .launchd
        #else
        return .systemd
        #endif
    }()

    @Flag(name: .long, help: "Write the entries where the scheduler reads them and enable them.")
    var install = false

    @Flag(name: .long, help: "Disable and remove the entries of these jobs (all of this inventory's when none are named).")
    var uninstall = false

    @Flag(name: .long, help: "Print each job's next 3 runs in its time zone.")
    var list = false

    @Option(name: .long, help: ArgumentHelp("With --install or --uninstall: use this directory, and run no systemctl or launchctl.", valueName: "dir"))
    var directory: String?

    @Argument(help: "Jobs to schedule (default: every job drplan runs).")
    var jobs: [String] = []

    func validate() throws {
        if [install, uninstall, list].filter({ $0 }).count > 1 { throw ValidationError("choose one of --install, --uninstall and --list") }
        if directory != nil && !(install || uninstall) { throw ValidationError("--directory goes with --install or --uninstall") }
    }

    func run() throws {
        global.apply()
        let inventory = try global.loadInventory()
        try checkNames(jobs, among: inventory.jobs.map(\.id), what: "job")
        // A fleet's inventory names each job's host: this machine installs only its own.
        let selected = jobs.isEmpty ? Runner.runnableJobs(inventory).filter { inventory.runs($0, on: ThisHost.name) }
            : jobs.compactMap { n in inventory.jobs.first { $0.id == n } }
        let now = global.instant()
        if list {
            for job in selected {
                let zone = job.timezone?.name ?? "UTC"
                let next = ScheduleGenerator.nextRuns(job, after: now).map { ScheduleGenerator.local($0, zone: job.timezone) }
                let when = next.isEmpty ? (job.schedule == .continuous ? "continuous (no fire times)" : "never") : next.joined(separator: ", ")
                Console.out("\(job.id)  \(job.scheduleText)  \(zone)  next: \(when)")
            }
            return
        }
        let asRoot = geteuid() == 0
        let invocation = try Self.invocation(global)
        let output = ScheduleGenerator.generate(
            selected, format: ScheduleFormat(rawValue: format.rawValue) ?? .systemd, invocation: { invocation($0.id) },
            inventory: invocation("").inventory, cronUser: (asRoot || directory != nil) ? "root" : nil, now: now)
        for w in output.warnings { Console.error("drplan: warning: \(w)") }
        // Continuous jobs have nothing to schedule, which is said, not an error; any other
        // job left out would be a backup that silently never runs.
        let continuous = Set(selected.filter { $0.schedule == .continuous }.map(\.id))
        for s in output.skipped where continuous.contains(s.job) { Console.error("drplan: note: job '\(s.job)' not scheduled: \(s.reason)") }
        let failed = output.skipped.filter { !continuous.contains($0.job) }
        for s in failed { Console.error("drplan: error: job '\(s.job)' cannot be scheduled as \(format.rawValue): \(s.reason)") }
        if !failed.isEmpty { throw CommandFailure(status: .badInput) }

        guard install || uninstall else {
            for f in output.files { Console.out("# ==> \(f.name) <==\n" + f.contents) }
            return
        }
        let fmt = ScheduleFormat(rawValue: format.rawValue) ?? .systemd
        let dir = directory ?? ScheduleInstaller.defaultDirectory(fmt, asRoot: asRoot, home: NSHomeDirectory())
        let manage: Bool
        switch fmt {
        case .systemd: manage = directory == nil && ScheduleInstaller.systemdRunning
        case .launchd: manage = directory == nil && FileManager.default.isExecutableFile(atPath: "/bin/launchctl")
        case .cron: manage = false
        }
        let installer = ScheduleInstaller(format: fmt, directory: dir, manage: manage, asRoot: asRoot, userCrontab: fmt == .cron && !asRoot && directory == nil)
        do {
            let outcome: ScheduleInstaller.Outcome
            if install {
                outcome = try installer.install(output, jobs: selected.map(\.id), inventory: invocation("").inventory)
            } else {
                let names = selected.flatMap { j -> [String] in
                    let n = invocation(j.id)
                    switch fmt {
                    case .systemd: return [n.name + ".timer", n.name + ".service"]
                    case .launchd: return [LaunchdFormat.label(n) + ".plist"]
                    case .cron: return []
                    }
                }
                outcome = try installer.uninstall(names: names, jobs: jobs, inventory: invocation("").inventory)
            }
            if !global.quiet {
                for c in outcome.changed { Console.out("\(install ? "wrote" : "removed") \(c)") }
                for r in outcome.ran { Console.out("ran \(r)") }
                if !outcome.toRun.isEmpty {
                    Console.out("\(fmt == .systemd ? "systemd" : "launchd") is not running here\(directory != nil ? " or --directory was given" : ""); run:")
                    for r in outcome.toRun { Console.out("  \(r)") }
                }
            }
        } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
    }

    /// Builds each job's command: this drplan, the inventories and evidence store as absolute
    /// paths, from the first inventory's directory.
    static func invocation(_ global: GlobalOptions) throws(CommandFailure) -> (String) -> Invocation {
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String {
            let full = p.hasPrefix("/") ? p : cwd + "/" + p
            return (full as NSString).standardizingPath
        }
        let exe = try Self.executablePath()
        let inventories = global.inventoryPaths.map(absolute)
        let workDir = absolute(global.baseDirectory)
        var extra = global.evidence.map { ["--evidence", PostgresLocation.isURL($0) ? $0 : absolute($0)] } ?? []
        if let host = global.host { extra += ["--host", host] }
        return { job in Invocation(executable: exe, inventories: inventories, workingDirectory: workDir, job: job, extraArguments: extra) }
    }

    /// This drplan's own path, from the system (argv[0] may be a bare name found on PATH,
    /// which a timer could not find).
    static func executablePath() throws(CommandFailure) -> String {
        guard let p = Bundle.main.executablePath, p.hasPrefix("/") else {
            Console.error("drplan: error: cannot tell where this drplan executable is, so no entry can name it; run drplan by its absolute path")
            throw CommandFailure(status: .environment)
        }
        return p
    }
}
