import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Puts generated entries where the system scheduler reads them, and takes them away.
///
/// Files are written by a temporary name and a rename, so a scheduler never reads half a
/// unit. Commands that need a running service manager (`systemctl`, `launchctl`) run only
/// where it runs; elsewhere they are returned for the user to run.
public struct ScheduleInstaller {
    public var format: ScheduleFormat
    /// Where the files go: the format's system or user directory unless set (`--directory`).
    public var directory: String
    /// Whether the service manager is asked to reload and enable (false with `--directory`,
    /// or where it is not running).
    public var manage: Bool
    public var asRoot: Bool
    /// cron only: write the user's crontab through `crontab` instead of a file in `directory`.
    public var userCrontab: Bool

    /// The default directory for a format, for root or for the user.
    public static func defaultDirectory(_ format: ScheduleFormat, asRoot: Bool, home: String) -> String {
        switch format {
        case .systemd: return asRoot ? "/etc/systemd/system" : home + "/.config/systemd/user"
        case .cron: return "/etc/cron.d"
        case .launchd: return asRoot ? "/Library/LaunchDaemons" : home + "/Library/LaunchAgents"
        }
    }

    /// Whether systemd is the running service manager (sd_booted's test).
    public static var systemdRunning: Bool { FileManager.default.fileExists(atPath: "/run/systemd/system") }

    public init(format: ScheduleFormat, directory: String, manage: Bool, asRoot: Bool, userCrontab: Bool) {
        self.userCrontab = userCrontab
        self.format = format
        self.directory = directory
        self.manage = manage
        self.asRoot = asRoot
    }

    /// What install or uninstall did: files written or removed, and commands run or to run.
    public struct Outcome: Sendable {
        public var changed: [String] = []
        public var ran: [String] = []
        public var toRun: [String] = []
    }

    public struct Failure: Error, Sendable { public var message: String }

    func systemctl(_ args: [String]) -> [String] { ["systemctl"] + (asRoot ? [] : ["--user"]) + args }

    /// Writes `files`; for cron, merges this inventory's jobs into the file or crontab,
    /// keeping every other entry.
    public func install(_ output: ScheduleOutput, jobs: [String], inventory: String) throws(Failure) -> Outcome {
        var o = Outcome()
        if format == .cron && userCrontab { return try installUserCrontab(output, jobs: jobs, inventory: inventory) }
        try makeDirectory()
        for f in output.files {
            let path = directory + "/" + f.name
            var text = f.contents
            if format == .cron { text = CronBlocks.merge(existing: try read(path), new: f.contents, jobs: jobs, inventory: inventory) }
            try write(path, text)
            o.changed.append(path)
        }
        let timers = output.files.map(\.name).filter { $0.hasSuffix(".timer") }
        switch format {
        case .systemd where !timers.isEmpty:
            let cmds = [systemctl(["daemon-reload"]), systemctl(["enable", "--now"] + timers)]
            try run(cmds, into: &o)
        case .launchd:
            let cmds = output.files.map { ["launchctl", "load", "-w", directory + "/" + $0.name] }
            try run(cmds, into: &o)
        default: break
        }
        return o
    }

    /// Removes the entries of `jobs` (their unit or plist files, or their cron lines).
    public func uninstall(names: [String], jobs: [String], inventory: String) throws(Failure) -> Outcome {
        var o = Outcome()
        if format == .cron {
            if userCrontab {
                let merged = CronBlocks.remove(existing: try readCrontab(), jobs: jobs, inventory: inventory)
                try writeCrontab(merged)
                o.changed.append("crontab of the current user")
                return o
            }
            let path = directory + "/drplan"
            guard let existing = try read(path) else { return o }
            let merged = CronBlocks.remove(existing: existing, jobs: jobs, inventory: inventory)
            if merged.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                try remove(path)
            } else {
                try write(path, merged)
            }
            o.changed.append(path)
            return o
        }
        let present = names.filter { FileManager.default.fileExists(atPath: directory + "/" + $0) }
        switch format {
        case .systemd:
            let timers = present.filter { $0.hasSuffix(".timer") }
            if !timers.isEmpty { try run([systemctl(["disable", "--now"] + timers)], into: &o) }
        case .launchd:
            try run(present.map { ["launchctl", "unload", "-w", directory + "/" + $0] }, into: &o)
        case .cron: break
        }
        for n in present {
            try remove(directory + "/" + n)
            o.changed.append(directory + "/" + n)
        }
        if format == .systemd && !present.isEmpty { try run([systemctl(["daemon-reload"])], into: &o) }
        return o
    }

    func run(_ commands: [[String]], into o: inout Outcome) throws(Failure) {
        for c in commands {
            let line = c.map(Quote.shell).joined(separator: " ")
            guard manage else { o.toRun.append(line); continue }
            let (status, output) = Self.execute(c, input: nil)
            guard status == 0 else { throw Failure(message: "`\(line)` failed (exit \(status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))") }
            o.ran.append(line)
        }
    }

    static func execute(_ args: [String], input: String?) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let inPipe = Pipe()
        if input != nil { p.standardInput = inPipe }
        do { try p.run() } catch { return (127, "cannot run \(args.first ?? ""): \(error.localizedDescription)") }
        var writeProblem: String?
        if let input {
            do {
                try inPipe.fileHandleForWriting.write(contentsOf: Data(input.utf8))
                try inPipe.fileHandleForWriting.close()
            } catch {
                // `crontab -` would install what it got so far: stop it before it sees the end.
                writeProblem = error.localizedDescription
                p.terminate()
            }
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if let writeProblem { return (126, "could not write to \(args.first ?? ""): \(writeProblem)") }
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func makeDirectory() throws(Failure) {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw Failure(message: "cannot create \(directory): \(error.localizedDescription)")
        }
    }

    func read(_ path: String) throws(Failure) -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let d = FileManager.default.contents(atPath: path) else { throw Failure(message: "cannot read \(path)") }
        return String(decoding: d, as: UTF8.self)
    }

    func write(_ path: String, _ text: String) throws(Failure) {
        let tmp = path + ".drplan-tmp"
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: tmp))
            // cron.d refuses files others may write; units and plists are read by root too.
            chmod(tmp, 0o644)
            if rename(tmp, path) != 0 { throw Failure(message: "cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
        } catch let f as Failure {
            unlink(tmp)
            throw f
        } catch {
            unlink(tmp)
            throw Failure(message: "cannot write \(path): \(error.localizedDescription)")
        }
    }

    func remove(_ path: String) throws(Failure) {
        if unlink(path) != 0 && errno != ENOENT { throw Failure(message: "cannot remove \(path): \(String(cString: strerror(errno)))") }
    }

    func readCrontab() throws(Failure) -> String {
        let (status, out) = Self.execute(["crontab", "-l"], input: nil)
        if status == 0 { return out }
        // crontab -l exits 1 with "no crontab for USER" when there is none yet.
        if out.contains("no crontab") { return "" }
        throw Failure(message: "`crontab -l` failed (exit \(status)): \(out.trimmingCharacters(in: .whitespacesAndNewlines)); is cron installed?")
    }

    func writeCrontab(_ text: String) throws(Failure) {
        let (status, out) = Self.execute(["crontab", "-"], input: text)
        guard status == 0 else { throw Failure(message: "`crontab -` failed (exit \(status)): \(out.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    func installUserCrontab(_ output: ScheduleOutput, jobs: [String], inventory: String) throws(Failure) -> Outcome {
        var o = Outcome()
        guard let f = output.files.first else { return o }
        let merged = CronBlocks.merge(existing: try readCrontab(), new: f.contents, jobs: jobs, inventory: inventory)
        try writeCrontab(merged)
        o.changed.append("crontab of the current user")
        return o
    }
}

/// drplan's block in a cron file or crontab: the lines between its markers for one
/// inventory, grouped by the `# job ID:` line that starts each job's entries.
enum CronBlocks {
    /// Splits text into (before, groups by job, after) around this inventory's block.
    static func split(_ text: String, inventory: String) -> (before: [String], header: [String], groups: [(String, [String])], after: [String]) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let begin = CronFormat.beginMarker(inventory), end = CronFormat.endMarker(inventory)
        guard let b = lines.firstIndex(of: begin), let e = lines[b...].firstIndex(of: end) else {
            return (lines.last == "" ? Array(lines.dropLast()) : lines, [], [], [])
        }
        var header: [String] = []
        var groups: [(String, [String])] = []
        for l in lines[(b + 1)..<e] {
            if l.hasPrefix("# job "), let colon = l.firstIndex(of: ":") {
                groups.append((String(l[l.index(l.startIndex, offsetBy: 6)..<colon]), [l]))
            } else if groups.isEmpty {
                header.append(l)
            } else {
                groups[groups.count - 1].1.append(l)
            }
        }
        let after = Array(lines[(e + 1)...])
        return (Array(lines[..<b]), header, groups, after.last == "" ? Array(after.dropLast()) : after)
    }

    static func join(_ s: (before: [String], header: [String], groups: [(String, [String])], after: [String]), inventory: String) -> String {
        var out = s.before
        if !s.groups.isEmpty {
            out += [CronFormat.beginMarker(inventory)] + s.header + s.groups.flatMap(\.1) + [CronFormat.endMarker(inventory)]
        }
        out += s.after
        return out.isEmpty ? "" : out.joined(separator: "\n") + "\n"
    }

    /// Replaces the groups of `jobs` in `existing` with those in `new`, keeping the rest.
    static func merge(existing: String?, new: String, jobs: [String], inventory: String) -> String {
        var old = split(existing ?? "", inventory: inventory)
        let fresh = split(new, inventory: inventory)
        let replaced = Set(fresh.groups.map(\.0)).union(jobs)
        old.groups = old.groups.filter { !replaced.contains($0.0) } + fresh.groups
        old.header = fresh.header
        return join(old, inventory: inventory)
    }

    /// Removes the groups of `jobs` (all of this inventory's when empty).
    static func remove(existing: String, jobs: [String], inventory: String) -> String {
        var old = split(existing, inventory: inventory)
        old.groups = jobs.isEmpty ? [] : old.groups.filter { !jobs.contains($0.0) }
        return join(old, inventory: inventory)
    }
}
