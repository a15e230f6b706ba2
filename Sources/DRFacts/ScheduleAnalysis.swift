import CEL
import DRInventory

/// Gaps between consecutive fire times, in seconds.
public struct GapStats: Hashable, Sendable {
    public var maxGap: Int64
    public var minGap: Int64
}

/// Exact gap analysis of schedules over the fixed window [2026-01-01, 2030-01-01) UTC.
///
/// Why it is fast: a cron expression fires at the same seconds-of-day on every day it
/// matches, so each day contributes only (first, last, largest inner gap, smallest inner gap)
/// of a *day profile*, and that profile is computed once per distinct set of schedules that
/// match a day. The work per schedule set is O(days + fire times in one day), never
/// O(fire times in four years), and results are cached per distinct set, so thousands of
/// jobs sharing a handful of expressions cost a handful of analyses.
///
/// A schedule that fires fewer than twice in the window (`0 0 29 2 *` fires once, in 2028)
/// is analysed over 28 years instead, the period after which weekdays and leap years repeat.
public final class ScheduleAnalyzer {
    public static let windowStartDay = Schedule.windowStartDay
    public static let windowEndDay = Schedule.windowEndDay
    static let extendedEndDay = Schedule.windowStartDay + 28 * 366

    private var schedules: [Schedule] = []
    private var indexOf: [Schedule: Int] = [:]
    private var profiles: [[Int]: DayProfile] = [:]
    private var results: [[Int]: GapStats?] = [:]
    private var secondsOfDay: [Int: [Int]] = [:]
    private lazy var calendar: [(month: Int, day: Int, weekday: Int)] = {
        (Self.windowStartDay..<Self.extendedEndDay).map { d in
            let (_, m, dd) = Civil.date(days: d)
            return (m, dd, Civil.weekday(days: d))
        }
    }()

    public init() {}

    /// Gaps of one schedule, or nil for `continuous` (which has a lag, not a gap) and for a
    /// schedule that never fires twice.
    public func gaps(_ schedule: Schedule) -> GapStats? { gaps(of: [schedule]) }

    /// Gaps of the union of several schedules' fire times; `continuous` entries are ignored.
    public func gaps(of set: [Schedule]) -> GapStats? {
        let key = Array(Set(set.filter { $0 != .continuous }.map(register))).sorted()
        guard !key.isEmpty else { return nil }
        if let cached = results[key] { return cached }
        var r = analyse(key, endDay: Self.windowEndDay)
        if r.count < 2 { r = analyse(key, endDay: Self.extendedEndDay) }
        let stats = r.count < 2 ? nil : GapStats(maxGap: r.maxGap, minGap: r.minGap)
        results[key] = stats
        return stats
    }

    private func register(_ s: Schedule) -> Int {
        if let i = indexOf[s] { return i }
        indexOf[s] = schedules.count
        schedules.append(s)
        return schedules.count - 1
    }

    struct DayProfile {
        var first: Int, last: Int, maxInner: Int, minInner: Int, count: Int
        init?(_ times: [Int]) {
            guard let f = times.first, let l = times.last else { return nil }
            first = f; last = l; count = times.count
            maxInner = 0; minInner = Int.max
            for i in times.indices.dropFirst() {
                let g = times[i] - times[i - 1]
                maxInner = max(maxInner, g); minInner = min(minInner, g)
            }
        }
    }

    /// For a schedule that fires at the same seconds every day it fires, those seconds.
    private func uniformTimes(_ i: Int) -> [Int]? {
        if let t = secondsOfDay[i] { return t }
        let t: [Int]?
        switch schedules[i] {
        case .cron(let c) where c.zone == nil: t = c.secondsOfDay
        case .every(let p) where 86_400 % p.seconds == 0: t = Array(stride(from: 0, to: 86_400, by: Int(p.seconds)))
        case .every(let p) where p.seconds % 86_400 == 0: t = [0]
        default: t = nil
        }
        if let t { secondsOfDay[i] = t }
        return t
    }

    private func firesOn(_ i: Int, dayOffset: Int) -> Bool {
        switch schedules[i] {
        case .cron(let c):
            let d = calendar[dayOffset]
            return c.matches(month: d.month, day: d.day, weekday: d.weekday)
        case .every(let p) where p.seconds % 86_400 == 0:
            return dayOffset % Int(p.seconds / 86_400) == 0
        case .every:
            return true
        case .continuous:
            return false
        }
    }

    /// Fire times of an `every` schedule whose period neither divides nor is a multiple of a
    /// day, or of a cron read in a zone (whose UTC times shift with the zone's clock changes).
    private func irregularTimes(_ i: Int, dayOffset: Int) -> [Int] {
        if case .cron(let c) = schedules[i] {
            let dayStart = Int64(Self.windowStartDay + dayOffset) * 86_400
            return c.zonedFires(inUTCDayStarting: dayStart).map { Int($0 - dayStart) }
        }
        guard case .every(let p) = schedules[i] else { return [] }
        let period = Int(p.seconds)
        let dayStart = dayOffset * 86_400
        var t = (dayStart + period - 1) / period * period
        var out: [Int] = []
        while t < dayStart + 86_400 { out.append(t - dayStart); t += period }
        return out
    }

    private var timeIds: [[Int]: Int] = [:]
    private var timesById: [[Int]] = []
    private struct ZoneDay: Hashable { var schedule: Int; var offset: Int; var matches: UInt8 }
    private var zoneDays: [ZoneDay: Int] = [:]

    private func intern(_ t: [Int]) -> Int {
        if let id = timeIds[t] { return id }
        timeIds[t] = timesById.count
        timesById.append(t)
        return timesById.count - 1
    }

    /// An irregular entry's fire times on a day, as an interned id, so that days with the
    /// same times share one profile as uniform days do. A zoned cron's UTC times on a day
    /// away from any clock change depend only on the offset and on which of the local days
    /// around it match, so they are computed once per such class, not once per day.
    private func irregularId(_ i: Int, dayOffset: Int) -> Int {
        if case .cron(let c) = schedules[i], let zone = c.zone {
            let dayStart = Int64(Self.windowStartDay + dayOffset) * 86_400
            if let o = zone.constantOffset(from: dayStart - 3 * 86_400, to: dayStart + 4 * 86_400) {
                let firstLocal = Civil.floorDiv(Int(dayStart) - 86_400, 86_400)
                var bits: UInt8 = 0
                for k in 0..<4 {
                    let d = firstLocal + k
                    let (_, m, dd) = Civil.date(days: d)
                    if c.matches(month: m, day: dd, weekday: Civil.weekday(days: d)) { bits |= 1 << UInt8(k) }
                }
                let key = ZoneDay(schedule: i, offset: o, matches: bits)
                if let id = zoneDays[key] { return id }
                let id = intern(irregularTimes(i, dayOffset: dayOffset))
                zoneDays[key] = id
                return id
            }
        }
        return intern(irregularTimes(i, dayOffset: dayOffset))
    }

    private func analyse(_ key: [Int], endDay: Int) -> (maxGap: Int64, minGap: Int64, count: Int) {
        let irregular = key.filter { uniformTimes($0) == nil }
        let uniform = key.filter { uniformTimes($0) != nil }
        var prevLast: Int64? = nil
        var maxGap: Int64 = 0, minGap = Int64.max
        var count = 0
        var matching: [Int] = []
        matching.reserveCapacity(uniform.count)
        for offset in 0..<(endDay - Self.windowStartDay) {
            matching.removeAll(keepingCapacity: true)
            for i in uniform where firesOn(i, dayOffset: offset) { matching.append(i) }
            let profile: DayProfile?
            if irregular.isEmpty {
                if matching.isEmpty { continue }
                if let p = profiles[matching] { profile = p } else {
                    profile = DayProfile(merge(matching.map { uniformTimes($0) ?? [] }))
                    profiles[matching] = profile
                }
            } else {
                let ids = irregular.map { irregularId($0, dayOffset: offset) }
                let dayKey = matching + [-1] + ids
                if let p = profiles[dayKey] { profile = p } else {
                    profile = DayProfile(merge(matching.map { uniformTimes($0) ?? [] } + ids.map { timesById[$0] }))
                    profiles[dayKey] = profile
                }
            }
            guard let p = profile else { continue }
            let base = Int64(offset) * 86_400
            if let prev = prevLast {
                let g = base + Int64(p.first) - prev
                maxGap = max(maxGap, g); minGap = min(minGap, g)
            }
            if p.count > 1 { maxGap = max(maxGap, Int64(p.maxInner)); minGap = min(minGap, Int64(p.minInner)) }
            prevLast = base + Int64(p.last)
            count += p.count
        }
        return (maxGap, minGap, count)
    }

    private func merge(_ lists: [[Int]]) -> [Int] {
        if lists.count == 1 { return lists[0] }
        return Array(Set(lists.joined())).sorted()
    }
}

extension ScheduleAnalyzer {
    /// `monitoring.max_age`, else twice the schedule's longest gap (a continuous job's lag),
    /// else a week: how long a job may go without a success on a target before its runs
    /// count as missed (DR605, and `backup --due`'s missed notifications).
    public func maxAge(_ j: Job) -> Int64 {
        if let m = j.monitoring.maxAge { return m.seconds }
        let g = j.schedule == .continuous ? j.lag.seconds : (gaps(j.schedule)?.maxGap ?? 0)
        return g > 0 ? 2 * g : 7 * 86_400
    }

    /// The most data a failure can lose given these jobs' copies: the largest gap in the union
    /// of their fire times; a continuous job contributes its lag, and the smaller of lag and gap
    /// wins. nil when there are no jobs, or no schedule fires twice and none is continuous.
    /// Achievable RPO (facts) and a scenario's data loss (planning) are both this.
    public func worstDataLoss(_ jobs: [Job]) -> Int64? {
        let lag = jobs.filter { $0.schedule == .continuous }.map(\.lag.seconds).min()
        let scheduled = gaps(of: jobs.map(\.schedule))?.maxGap
        switch (lag, scheduled) {
        case let (l?, s?): return min(l, s)
        case let (l?, nil): return l
        case let (nil, s?): return s
        default: return nil
        }
    }
}
