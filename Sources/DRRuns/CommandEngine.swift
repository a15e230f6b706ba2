import DRInventory
import Foundation

/// The command engine: the job's `options.backup`, `options.restore` and `options.verify`
/// commands, run with `/bin/sh -c`. A non-zero exit is a failure. The commands learn what to
/// work on from the environment: DRPLAN_JOB, DRPLAN_ASSETS, DRPLAN_STORAGE_PATH and, for
/// restore and verify, DRPLAN_RESTORE_TARGET.
public enum CommandEngine {
    /// The named command from a job's options, or nil.
    public static func option(_ job: Job, _ name: String) -> String? {
        guard case .map(let pairs)? = job.options else { return nil }
        for (k, v) in pairs where k == name { if case .scalar(let s, _) = v { return s } }
        return nil
    }

    /// Runs one command; returns its combined output (last 8 KiB) or throws with it. The
    /// command as shown in errors has the values after `secretArgs` (and `--password` and the
    /// like) masked, and those values are removed from its output too, since a command may
    /// echo its own arguments.
    public static func run(_ command: String, cwd: String, env: [String: String], secretArgs: [String] = []) throws(RepositoryError) -> String {
        let shown = Redaction.command(command, secretFlags: secretArgs)
        let secrets = Redaction.optionValues(command, flags: secretArgs)
        do throws(RepositoryError) { return Redaction.text(try execute(command, shown: shown, cwd: cwd, env: env), removing: secrets) }
        catch { throw RepositoryError(error.kind, Redaction.text(error.message, removing: secrets)) }
    }

    static func execute(_ command: String, shown: String, cwd: String, env: [String: String]) throws(RepositoryError) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        p.environment = ProcessInfo.processInfo.environment.merging(env) { _, new in new }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        do { try p.run() } catch { throw RepositoryError(.io, "cannot run '\(shown)': \(error)") }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let excerpt = String(text.suffix(EvidenceStore.outputLimit))
        guard p.terminationStatus == 0 else {
            throw RepositoryError(.io, "'\(shown)' exited with status \(p.terminationStatus)" + (excerpt.isEmpty ? "" : ": \(excerpt.suffix(300))"))
        }
        return excerpt
    }
}
