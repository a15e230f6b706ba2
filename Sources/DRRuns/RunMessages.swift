import Foundation

/// The user-facing messages of runs and engines, in one place: full sentences that quote the
/// value and end with what to do next.
public enum RunMessages {
    static func missingTool(_ name: String, package: String) -> String {
        "'\(name)' is not installed or not on PATH; install the Debian package '\(package)' (apt-get install \(package)) and run drplan again"
    }
    static func resticFailed(_ what: String, status: Int32, _ stderr: String) -> String {
        "restic \(what) exited with status \(status): \(tail(stderr))"
    }
    static func resticWrongPassword(_ repo: String) -> String {
        "wrong password for the restic repository \(repo); check the job's 'encryption.passphrase' secret — nothing was restored"
    }
    static func resticNeedsPassword(_ job: String) -> String {
        "job '\(job)' uses the restic engine, which always encrypts; give it an 'encryption.passphrase' secret (env: or file:)"
    }
    static func postgresFailed(_ tool: String, status: Int32, _ stderr: String) -> String {
        "\(tool) exited with status \(status): \(tail(stderr))"
    }
    static func notAPostgresSource(_ asset: String) -> String {
        "asset '\(asset)' has no 'source: {postgres: DSN}' for the pg_dump engine to read; add one"
    }
    static func rowCountMismatch(_ table: String, restored: Int64?, recorded: Int64) -> String {
        "table \(table) has \(restored.map(String.init) ?? "no") rows after the restore, the backup recorded \(recorded)"
    }

    /// The last line or two of a tool's stderr, which is where the reason is.
    static func tail(_ s: String) -> String {
        let lines = s.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let text = lines.suffix(3).joined(separator: " | ")
        return text.isEmpty ? "(no output)" : String(text.suffix(600))
    }
}
