import CEL
import DRInventory
import DRPolicy
import DRRuns
import Foundation

/// What happened in an audit period, per job and target and per restore test: the figures an
/// auditor samples against (runs due by schedule against runs done, the worst gap between
/// successes against the RPO, days out of compliance), from the recorded runs alone.
public struct PeriodFigures: Sendable {
    public struct Target: Sendable {
        public var job: String, target: String
        public var assets: Int
        /// Runs the schedule asked for in the period (fire times × assets); nil for `continuous`.
        public var due: Int?
        public var done: Int, succeeded: Int
        public var rpo: TimeSpan?
        /// The longest time without a success, in seconds, and the asset it was for.
        public var worstGap: Int64, worstGapAsset: String
        /// Days (UTC) on which some asset's last success was older than its RPO.
        public var daysOutOfRPO: Int
    }

    public struct Test: Sendable {
        public var id: String, job: String
        public var due: Int, run: Int, passed: Int
        public var rto: TimeSpan?
        /// Measured durations of the runs, in seconds, oldest first.
        public var durations: [Int64]
        public var withinRTO: Int
    }

    public var from: Timestamp, to: Timestamp
    public var targets: [Target] = []
    public var tests: [Test] = []
    /// Active findings (rule and subject) when the period began and when it ended.
    public var openAtStart: [String] = []
    public var openAtEnd: [String] = []

    /// A cron that fires every minute still counts in under a second a year; past this many
    /// fire times the count stops and is reported as at least this.
    static let fireLimit = 2_000_000

    public static func compute(inventory: Inventory, runs: [RunRecord], from: Timestamp, to: Timestamp,
                               atStart: CheckResult, atEnd: CheckResult) -> PeriodFigures {
        var out = PeriodFigures(from: from, to: to)
        let assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let startDate = Date(timeIntervalSince1970: TimeInterval(from.seconds)), endDate = Date(timeIntervalSince1970: TimeInterval(to.seconds))
        // The runs grouped once (by job and target, and by restore test), not rescanned per row.
        var backups: [String: [RunRecord]] = [:], tests: [String: [RunRecord]] = [:]
        for r in runs where r.startedAt <= endDate {
            if r.kind == .backup, let job = r.job, let storage = r.storage { backups[job + "\u{0}" + storage, default: []].append(r) }
            if r.kind == .restoreTest, let t = r.restoreTest, r.startedAt >= startDate { tests[t, default: []].append(r) }
        }
        for job in inventory.jobs {
            let fires = fireCount(job.schedule, from: from, to: to)
            for target in job.targets {
                let all = backups[job.id + "\u{0}" + target] ?? []
                let mine = all.filter { $0.startedAt >= startDate }
                var row = Target(job: job.id, target: target, assets: job.assets.count, due: fires.map { $0 * job.assets.count },
                                 done: mine.count, succeeded: mine.filter { $0.status == .success }.count,
                                 rpo: job.assets.compactMap { assets[$0]?.rpo }.min(), worstGap: 0, worstGapAsset: "", daysOutOfRPO: 0)
                var outDays = Set<Int64>()
                for asset in job.assets {
                    let successes = all.filter { ($0.asset == nil || $0.asset == asset) && $0.status == .success }
                        .map { Int64(($0.finishedAt ?? $0.startedAt).timeIntervalSince1970) }.sorted()
                    let (gap, days) = gaps(successes, from: from.seconds, to: to.seconds, rpo: assets[asset]?.rpo?.seconds)
                    if gap > row.worstGap || row.worstGapAsset.isEmpty { row.worstGap = gap; row.worstGapAsset = asset }
                    outDays.formUnion(days)
                }
                row.daysOutOfRPO = outDays.count
                out.targets.append(row)
            }
        }
        let periodSeconds = max(1, to.seconds - from.seconds)
        for test in inventory.restoreTests {
            let mine = tests[test.id] ?? []
            let interval = max(1, test.interval(policy: inventory.policy).seconds)
            let tested = test.asset.map { [$0] } ?? (inventory.jobs.first { $0.id == test.job }?.assets ?? [])
            let rto = tested.compactMap { assets[$0]?.rto }.min()
            let durations = mine.compactMap { r in r.finishedAt.map { Int64($0.timeIntervalSince(r.startedAt).rounded()) } }
            let within = mine.filter { r in
                guard r.status == .success, let rto, let end = r.finishedAt else { return false }
                return Int64(end.timeIntervalSince(r.startedAt)) <= rto.seconds
            }
            out.tests.append(Test(id: test.id, job: test.job, due: Int(max(1, (periodSeconds + interval - 1) / interval)), run: mine.count,
                                  passed: mine.filter { $0.status == .success }.count, rto: rto, durations: durations, withinRTO: within.count))
        }
        func open(_ r: CheckResult) -> [String] { r.active.map { "\($0.rule) \($0.subject)\($0.related.map { "/" + $0 } ?? "")" }.sorted() }
        out.openAtStart = open(atStart)
        out.openAtEnd = open(atEnd)
        return out
    }

    static func fireCount(_ schedule: Schedule, from: Timestamp, to: Timestamp) -> Int? {
        if case .continuous = schedule { return nil }
        return schedule.fires(after: Timestamp(seconds: from.seconds - 1), through: to, limit: fireLimit)
    }

    /// The longest stretch without a success inside [from, to] (from the last success before
    /// `from` when there is one), and the UTC days on which the last success was older than `rpo`.
    static func gaps(_ successes: [Int64], from: Int64, to: Int64, rpo: Int64?) -> (Int64, Set<Int64>) {
        let before = successes.last { $0 < from }
        let inside = successes.filter { $0 >= from && $0 <= to }
        var points = [before ?? from] + inside
        points.append(to)
        var worst: Int64 = 0
        var days = Set<Int64>()
        for (a, b) in zip(points, points.dropFirst()) {
            worst = max(worst, b - a)
            guard let rpo else { continue }
            // Out of compliance from a + rpo until the next success (from the period's start
            // when no success came before it).
            let lo = max(from, before == nil && a == points[0] ? from : a + rpo), hi = b
            if hi > lo { for d in stride(from: lo / 86_400, through: (hi - 1) / 86_400, by: 1) { days.insert(d) } }
        }
        return (worst, days)
    }
}

extension PeriodFigures {
    static func span(_ s: Int64) -> String { TimeSpan(seconds: s).description }

    public var json: String {
        func opt(_ v: Int?) -> Value { v.map { .int(Int64($0)) } ?? .null }
        let t: [Value] = targets.map { r in
            .object([("job", .string(r.job)), ("target", .string(r.target)), ("assets", .int(Int64(r.assets))), ("runs_due", opt(r.due)),
                     ("runs_done", .int(Int64(r.done))), ("runs_succeeded", .int(Int64(r.succeeded))),
                     ("rpo", r.rpo.map { .string($0.description) } ?? .null), ("worst_gap", .string(Self.span(r.worstGap))),
                     ("worst_gap_seconds", .int(r.worstGap)), ("worst_gap_asset", .string(r.worstGapAsset)),
                     ("worst_gap_within_rpo", r.rpo.map { .bool(r.worstGap <= $0.seconds) } ?? .null), ("days_out_of_rpo", .int(Int64(r.daysOutOfRPO)))])
        }
        let tests: [Value] = tests.map { r in
            .object([("restore_test", .string(r.id)), ("job", .string(r.job)), ("due", .int(Int64(r.due))), ("run", .int(Int64(r.run))),
                     ("passed", .int(Int64(r.passed))), ("rto", r.rto.map { .string($0.description) } ?? .null),
                     ("durations_seconds", .list(r.durations.map { .int($0) })), ("passed_within_rto", .int(Int64(r.withinRTO)))])
        }
        return JSONWriter().string(.object([
            ("period", .object([("from", .string(from.description)), ("to", .string(to.description))])),
            ("basis", .string("runs recorded in the evidence store; a declared last_success is not a run and is not counted")),
            ("jobs", .list(t)), ("restore_tests", .list(tests)),
            ("findings_open_at_start", .list(openAtStart.map(Value.string))), ("findings_open_at_end", .list(openAtEnd.map(Value.string))),
        ])) + "\n"
    }

    public var csv: String {
        let head = ["job", "target", "assets", "runs_due", "runs_done", "runs_succeeded", "rpo", "worst_gap", "worst_gap_asset", "days_out_of_rpo"]
        let rows = targets.map { r in
            [r.job, r.target, String(r.assets), r.due.map(String.init) ?? "continuous", String(r.done), String(r.succeeded),
             r.rpo?.description ?? "", Self.span(r.worstGap), r.worstGapAsset, String(r.daysOutOfRPO)]
        }
        return Escape.csv([head] + rows)
    }
}
