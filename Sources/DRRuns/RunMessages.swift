import DRInventory
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

    static func noPath(_ storage: String, url: String?) -> String {
        url == nil
            ? "storage '\(storage)' has no 'path' for drplan to write into; add the folder (a mounted drive or share) as 'path'"
            : "storage '\(storage)' has only a 'url' (\(url ?? "")), and drplan's own engine writes to a 'path' or an s3:// url; give it one of those, or have restic write it ('target_engines: {\(storage): restic}')"
    }
    static func notMounted(_ storage: String, _ path: String) -> String {
        "storage '\(storage)' is not mounted at \(path): plug it in or fix 'path' (drplan never creates a missing mount point, so a backup cannot land on the internal disk by mistake)"
    }
    static func writtenOutside(_ job: String, _ storage: String) -> String {
        "job '\(job)' declares '\(storage)' as written outside drplan (target_engines: external), so drplan has no copy there to read"
    }
    static func noRepository(_ storage: String, _ root: String) -> String {
        "storage '\(storage)' holds no drplan repository at \(root); create it with 'drplan init-repository \(storage)', or set 'create: true' on the storage so that the first backup creates it"
    }
    static func sourceTooSmall(_ asset: String, found: Int64, declared: Int64, job: String) -> String {
        "asset '\(asset)' reads as \(found) bytes, under 1% of its declared size (\(declared) bytes): its source looks missing or unmounted, so nothing was backed up (retention would otherwise age out the good snapshots). Fix the source, correct 'size', or set 'allow_empty: true' on job '\(job)'"
    }
    static func snapshotVanished(_ id: String, target: String, since: String) -> String {
        "snapshot \(id.prefix(8)) on '\(target)', recorded since \(since), has disappeared without a prune by drplan: it was deleted or lost; 'drplan check-repository' checks what is left"
    }
    static func sourceMissing(_ path: String) -> String {
        "the source \(path) does not exist: is it mounted? Nothing was backed up"
    }

    /// A value from a file or a snapshot, quoted, with control characters escaped, so that no
    /// name can break a message across lines or forge one.
    public static func quoted(_ s: String) -> String {
        "'" + Escape.line(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")) + "'"
    }

    /// The last line or two of a tool's stderr, which is where the reason is.
    static func tail(_ s: String) -> String {
        let lines = s.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let text = lines.suffix(3).joined(separator: " | ")
        return text.isEmpty ? "(no output)" : String(text.suffix(600))
    }
}
