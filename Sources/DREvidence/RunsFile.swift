import CEL
import DRInventory
import DRRuns
import Foundation

/// runs.json and runs.csv: each run as its canonical row, the exact fields whose SHA-256 the
/// audit log holds, so that a verifier can recompute every run's digest from the bundle alone.
enum RunsFile {
    /// The CSV's columns: every evidence column but the engine's output excerpt (in runs.json).
    static let columns = ["id", "kind", "job", "restore_test", "asset", "engine", "storage", "host", "pid", "started_at", "finished_at", "status",
                          "bytes_read", "bytes_written", "files", "snapshot", "verified_files", "verified_bytes", "error"]

    static func field(_ row: [(String, Value)], _ name: String) -> String {
        switch row.first(where: { $0.0 == name })?.1 {
        case .string(let s)?: return s
        case .int(let i)?: return String(i)
        case .double(let d)?: return String(d)
        default: return ""
        }
    }

    static func json(_ rows: [[(String, Value)]]) -> String {
        JSONWriter().string(.object([("runs", .list(rows.map { .object($0) }))])) + "\n"
    }

    /// RFC 4180: every field quoted, quotes doubled.
    static func csv(_ rows: [[(String, Value)]]) -> String {
        Escape.csv([columns] + rows.map { r in columns.map { field(r, $0) } })
    }

    /// runs.json read back as canonical rows (keys sorted, integers as integers), or why not.
    static func parse(_ data: Data) -> Result<[[(String, Value)]], BundleProblem> {
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let runs = top["runs"] as? [[String: Any]] else {
            return .failure(BundleProblem("runs.json is not a list of runs"))
        }
        var out: [[(String, Value)]] = []
        for (i, run) in runs.enumerated() {
            var fields: [(String, Value)] = []
            for key in run.keys.sorted() {
                switch run[key] {
                case is NSNull: fields.append((key, .null))
                case let s as String: fields.append((key, .string(s)))
                // Every numeric evidence column is an integer; a fraction is an edit.
                case let n as NSNumber where Double(n.int64Value) == n.doubleValue: fields.append((key, .int(n.int64Value)))
                default: return .failure(BundleProblem("runs.json: run \(i + 1) has a field '\(key)' that is neither text, a number nor null"))
                }
            }
            out.append(fields)
        }
        return .success(out)
    }
}

/// audit-log.json: the chain's entries from the period's first one to the head at export,
/// with their hashes, so that the extract can be re-linked and recomputed offline.
enum ChainExtract {
    static func json(_ entries: [EvidenceStore.AuditEntry]) -> String {
        JSONWriter().string(.object([("entries", .list(entries.map { e in
            .object([("seq", .int(e.seq)), ("at", .string(e.at)), ("event", .string(e.event)), ("detail", .string(e.detail)),
                     ("prev_hash", .string(e.prevHash)), ("hash", .string(e.hash))])
        }))])) + "\n"
    }

    static func parse(_ data: Data) -> Result<[EvidenceStore.AuditEntry], BundleProblem> {
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let list = top["entries"] as? [[String: Any]] else {
            return .failure(BundleProblem("audit-log.json is not a list of entries"))
        }
        var out: [EvidenceStore.AuditEntry] = []
        for (i, e) in list.enumerated() {
            guard let seq = (e["seq"] as? NSNumber)?.int64Value, let at = e["at"] as? String, let event = e["event"] as? String,
                  let detail = e["detail"] as? String, let prev = e["prev_hash"] as? String, let hash = e["hash"] as? String else {
                return .failure(BundleProblem("audit-log.json: entry \(i + 1) lacks one of seq, at, event, detail, prev_hash, hash"))
            }
            out.append(EvidenceStore.AuditEntry(seq: seq, at: at, event: event, detail: detail, prevHash: prev, hash: hash))
        }
        return .success(out)
    }
}

/// One thing wrong with a bundle, in words an auditor can act on.
struct BundleProblem: Error { var message: String; init(_ m: String) { message = m } }
