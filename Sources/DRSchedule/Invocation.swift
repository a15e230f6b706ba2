import DRInventory

/// What a scheduled entry runs: `drplan backup JOB -i INVENTORY` from the inventory's
/// directory, with absolute paths, because a timer starts with neither the user's working
/// directory nor their PATH.
public struct Invocation: Sendable {
    /// Absolute path of the drplan executable.
    public var executable: String
    /// Absolute paths of the inventory files (`-i`, as given to `drplan schedule`).
    public var inventories: [String]
    /// The first inventory, which names the entries' origin.
    public var inventory: String { inventories.first ?? "" }
    /// Options passed through, such as `--evidence /abs/path`.
    public var extraArguments: [String]
    /// The directory relative paths in the inventory are read from.
    public var workingDirectory: String
    public var job: String

    public init(executable: String, inventories: [String], workingDirectory: String, job: String, extraArguments: [String] = []) {
        self.executable = executable
        self.inventories = inventories
        self.extraArguments = extraArguments
        self.workingDirectory = workingDirectory
        self.job = job
    }

    /// The command's words.
    public var arguments: [String] { [executable, "backup", job] + inventories.flatMap { ["-i", $0] } + extraArguments }

    /// The base of the unit, plist and lock names: `drplan-JOB`. Job ids are lower-case
    /// letters, digits, '.', '_' and '-' (Identifier), all valid in every one of them.
    public var name: String { "drplan-\(job)" }
}

/// One file a format produces, named as the system scheduler expects it.
public struct ScheduleFile: Equatable, Sendable {
    public var name: String
    public var contents: String
}

/// A job the formats could not write, and why; printed, never silently dropped.
public struct SkippedJob: Equatable, Sendable {
    public var job: String
    public var reason: String
}

/// Every format's output: the files, the jobs left out and why, and warnings for jobs whose
/// times the system scheduler reads differently from drplan (a DST gap under systemd).
public struct ScheduleOutput: Sendable {
    public var files: [ScheduleFile] = []
    public var skipped: [SkippedJob] = []
    public var warnings: [String] = []
}

enum Quote {
    /// POSIX shell single quotes.
    static func shell(_ s: String) -> String {
        if !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || "/._-+=:,@".contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// systemd's unit-file quoting: double quotes, with '%' (a specifier) and '$' (a
    /// variable) doubled so they stay literal.
    static func systemd(_ s: String) -> String {
        let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "%", with: "%%").replacingOccurrences(of: "$", with: "$$")
        return escaped.allSatisfy({ $0.isLetter || $0.isNumber || "/._-+=:,@%$".contains($0) }) ? escaped : "\"" + escaped + "\""
    }

    static func xml(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
