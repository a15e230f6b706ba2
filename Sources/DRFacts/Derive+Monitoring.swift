import CEL
import DRInventory

/// The facts behind monitoring: how long a job may go without a success (DR605), the runs it
/// missed, and a storage's measured capacity and forecast (DR602, DR606).
extension FactDeriver {
    /// How long a job may go without a success on a target before DR605 calls runs missed.
    func maxAge(_ j: Job) -> Int64 { analyzer.maxAge(j) }

    /// Each host the inventory names (`host:` on jobs and assets): its jobs, when it last
    /// recorded any run, and whether it has stopped reporting, that is recorded nothing
    /// within the shortest `max_age` of its jobs (a live host would at least have recorded
    /// its most frequent job's run, failed or not).
    /// Hosts the store holds runs of but the inventory does not name (`declared: false`: a
    /// machine that runs the jobs naming no host, or a host renamed) are listed, not judged.
    func hostFacts() -> [Value] {
        let byHost = inv.jobsByHost
        let declared = Set(byHost.keys)
        return (declared.union(measured.hostLastRun.keys)).sorted().map { h in
            let jobs = byHost[h] ?? []
            let window = jobs.map(maxAge).min() ?? 0
            let last = measured.hostLastRun[h]
            let stopped = declared.contains(h) && (last.map { now.seconds - $0.seconds > window } ?? true)
            return .object([
                ("name", .string(h)), ("declared", .bool(declared.contains(h))), ("jobs", .list(jobs.map { .string($0.id) })),
                ("last_run", opt(last, Value.timestamp)), ("runs", .int(Int64(measured.hostRuns[h] ?? 0))),
                ("max_age", dur(TimeSpan(seconds: window))), ("stopped_reporting", .bool(stopped)),
            ])
        }
    }

    /// Fire times of the job's schedule after `since` and up to now, counted up to 10,000.
    func missedRuns(_ j: Job, since: Timestamp) -> Int { j.schedule.fires(after: since, through: now) }

    /// Free and total space of a storage: measured (statvfs at the last run) when there is a
    /// measurement, else declared (`capacity`, `used`); nil when neither is known.
    func capacity(_ s: Storage) -> (free: Int64, total: Int64, utilization: Double, source: String)? {
        if let f = measured.filesystems[s.id], f.total > 0 {
            return (f.free, f.total, Double(f.total - f.free) / Double(f.total), "measured")
        }
        if let c = s.capacity, let u = s.used, c > 0 { return (max(0, c - u), c, Double(u) / Double(c), "declared") }
        return nil
    }

    /// Days until `free` is used up at the repository's growth over the last 30 days
    /// (measured sizes after each backup); nil without two measurements 1 day apart in the
    /// window, or when it is not growing.
    func forecast(_ s: Storage, free: Int64?) -> (perDay: Double, days: Double?)? {
        let since = now.seconds - 30 * 86_400
        let points = (measured.sizeHistory[s.id] ?? []).filter { $0.at.seconds >= since && $0.at.seconds <= now.seconds }
        guard let first = points.first, let last = points.last, last.at.seconds - first.at.seconds >= 86_400 else { return nil }
        let perDay = Double(last.bytes - first.bytes) / (Double(last.at.seconds - first.at.seconds) / 86_400)
        guard perDay > 0, let free else { return (perDay, nil) }
        return (perDay, Double(free) / perDay)
    }
}
