import CEL
import DRInventory
import DRPolicy
import DRRuns
import Foundation

/// Prometheus metrics in the text exposition format, for node_exporter's textfile collector
/// (`drplan metrics`, docs/monitoring.md). Written by hand: the format is a few lines per
/// metric, and promtool checks it in CI.
public enum PrometheusMetrics {
    struct Family {
        var name: String, help: String
        var samples: [(labels: [(String, String)], value: Double)] = []
    }

    static func escape(_ v: String) -> String {
        v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    /// The metrics text. `space`: free and total bytes of local storage, measured now.
    public static func render(_ result: CheckResult, runs: [RunRecord], storageChecks: [EvidenceStore.StorageCheck],
                              space: [String: FilesystemSpace.Space], now: Date) -> String {
        let inv = result.inventory
        var families: [Family] = []
        func family(_ name: String, _ help: String, _ build: (inout Family) -> Void) {
            var f = Family(name: name, help: help)
            build(&f)
            families.append(f)
        }
        func time(_ d: Date) -> Double { d.timeIntervalSince1970.rounded(.down) }
        let assets = Dictionary(inv.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let backups = Dictionary(grouping: runs.filter { $0.kind == .backup && $0.job != nil && $0.storage != nil && $0.status != .running }) {
            [$0.job ?? "", $0.storage ?? ""]
        }
        let units = inv.jobs.flatMap { j in j.targets.filter { j.engine(for: $0) != nil }.map { (j, $0) } }
        func labels(_ j: Job, _ t: String) -> [(String, String)] { [("job", j.id), ("target", t)] }

        family("drplan_last_success_timestamp_seconds", "When the last successful backup of a job to a target finished (Unix time).") { f in
            for (j, t) in units {
                if let last = backups[[j.id, t]]?.filter({ $0.status == .success }).last { f.samples.append((labels(j, t), time(last.finishedAt ?? last.startedAt))) }
            }
        }
        family("drplan_last_run_success", "Whether the last backup run of a job to a target succeeded (1) or not (0).") { f in
            for (j, t) in units { if let last = backups[[j.id, t]]?.last { f.samples.append((labels(j, t), last.status == .success ? 1 : 0)) } }
        }
        family("drplan_last_run_duration_seconds", "How long the last backup run of a job to a target took.") { f in
            for (j, t) in units {
                if let last = backups[[j.id, t]]?.last, let end = last.finishedAt { f.samples.append((labels(j, t), max(0, end.timeIntervalSince(last.startedAt)))) }
            }
        }
        family("drplan_last_run_bytes", "Bytes the last backup run of a job to a target read from its source.") { f in
            for (j, t) in units { if let last = backups[[j.id, t]]?.last { f.samples.append((labels(j, t), Double(last.bytesRead))) } }
        }
        family("drplan_rpo_seconds", "The tightest recovery point objective among the job's assets.") { f in
            for (j, t) in units {
                if let rpo = j.assets.compactMap({ assets[$0]?.rpo?.seconds }).min() { f.samples.append((labels(j, t), Double(rpo))) }
            }
        }
        family("drplan_achieved_rpo_seconds", "The longest time between successful backups of a job to a target over the last 30 days, or since the oldest of them to now.") { f in
            let since = now.addingTimeInterval(-30 * 86_400)
            for (j, t) in units {
                let starts = (backups[[j.id, t]] ?? []).filter { $0.status == .success && $0.startedAt >= since }.map(\.startedAt).sorted()
                guard let last = starts.last else { continue }
                let gaps = zip(starts.dropFirst(), starts).map { $0.timeIntervalSince($1) } + [now.timeIntervalSince(last)]
                f.samples.append((labels(j, t), (gaps.max() ?? 0).rounded(.down)))
            }
        }
        let tests = Dictionary(grouping: runs.filter { $0.kind == .restoreTest && $0.status == .success }) { $0.restoreTest ?? "" }
        family("drplan_restore_test_last_success_timestamp_seconds", "When a restore test last succeeded (Unix time).") { f in
            for t in inv.restoreTests { if let last = tests[t.id]?.last { f.samples.append(([("test", t.id), ("job", t.job)], time(last.finishedAt ?? last.startedAt))) } }
        }
        family("drplan_restore_test_interval_seconds", "How often a restore test is due (its every:, else policy.restore_test_every).") { f in
            for t in inv.restoreTests { f.samples.append(([("test", t.id), ("job", t.job)], Double(t.interval(policy: inv.policy).seconds))) }
        }
        var size: [String: Int64] = [:]
        var measuredSpace: [String: FilesystemSpace.Space] = [:]
        for c in storageChecks {
            if c.kind == "capacity", let b = c.bytes { size[c.storage] = b }
            if c.kind == "filesystem", let free = c.bytes, let total = c.objects { measuredSpace[c.storage] = .init(free: free, total: Int64(total)) }
        }
        for (k, v) in space { measuredSpace[k] = v }
        family("drplan_repository_size_bytes", "Bytes drplan's repository on a storage held at its last measurement.") { f in
            for s in inv.storage { if let b = size[s.id] { f.samples.append(([("storage", s.id)], Double(b))) } }
        }
        family("drplan_storage_free_bytes", "Free bytes on a local storage's filesystem (statvfs).") { f in
            for s in inv.storage { if let sp = measuredSpace[s.id] { f.samples.append(([("storage", s.id)], Double(sp.free))) } }
        }
        family("drplan_storage_size_bytes", "Total bytes of a local storage's filesystem (statvfs).") { f in
            for s in inv.storage { if let sp = measuredSpace[s.id] { f.samples.append(([("storage", s.id)], Double(sp.total))) } }
        }
        family("drplan_findings", "Active findings of drplan check, by severity.") { f in
            for s in Severity.allCases { f.samples.append(([("severity", s.rawValue)], Double(result.count(s)))) }
        }
        family("drplan_metrics_generated_timestamp_seconds", "When this file was written (Unix time): a stale file means drplan stopped running.") { f in
            f.samples.append(([], time(now)))
        }
        var out = ""
        for f in families where !f.samples.isEmpty {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) gauge\n"
            for s in f.samples {
                let l = s.labels.isEmpty ? "" : "{" + s.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(f.name)\(l) \(number(s.value))\n"
            }
        }
        return out
    }

    /// Writes `text` to `path` by a temporary name in the same directory and a rename, so
    /// node_exporter never reads half a file.
    public static func write(_ text: String, to path: String) throws(RepositoryError) {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/." + (path as NSString).lastPathComponent + ".\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw RepositoryError(.io, "cannot write \(tmp): \(String(cString: strerror(errno))); check that the directory exists and is writable")
        }
        if rename(tmp, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw RepositoryError(.io, "cannot rename \(tmp) to \(path): \(reason)")
        }
    }
}
