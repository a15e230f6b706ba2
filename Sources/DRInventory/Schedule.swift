import CEL
/// A parsed 5-field cron expression, as bit sets, read in `zone` (UTC when nil), as cronie
/// reads a crontab under `CRON_TZ`.
///
/// Day matching follows Vixie cron: when both day-of-month and day-of-week are restricted
/// (neither field starts with `*`), a day matches if *either* matches; otherwise both must.
public struct CronSpec: Hashable, Sendable {
    public var minutes: UInt64      // bits 0…59
    public var hours: UInt32        // bits 0…23
    public var daysOfMonth: UInt32  // bits 1…31
    public var months: UInt16       // bits 1…12
    public var daysOfWeek: UInt8    // bits 0…6, Sunday = 0
    public var domStar: Bool
    public var dowStar: Bool
    /// The zone its fields are read in; nil is UTC (the default when no `timezone:` is given).
    public var zone: ZoneRules? = nil

    public func matches(month: Int, day: Int, weekday: Int) -> Bool {
        guard months & (1 << UInt16(month)) != 0 else { return false }
        let dom = daysOfMonth & (1 << UInt32(day)) != 0
        let dow = daysOfWeek & (1 << UInt8(weekday)) != 0
        return (domStar || dowStar) ? (dom && dow) : (dom || dow)
    }

    /// Fire times within a matching day, as sorted seconds since midnight.
    public var secondsOfDay: [Int] {
        var out: [Int] = []
        for h in 0..<24 where hours & (1 << UInt32(h)) != 0 {
            for m in 0..<60 where minutes & (1 << UInt64(m)) != 0 { out.append(h * 3600 + m * 60) }
        }
        return out
    }
}

/// When a job runs: a cron expression, a fixed period, or continuously.
public enum Schedule: Hashable, Sendable {
    case cron(CronSpec)
    /// Every `period`, aligned to 2026-01-01T00:00:00Z (the analysis window's start).
    case every(TimeSpan)
    case continuous

    static let macros: [String: String] = [
        "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
    ]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Parses `*/15 * * * *`, `0 2 * * mon-fri`, `@daily`, `every 4h` or `continuous`.
    public static func parse(_ text: String) throws(ScalarError) -> Schedule {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s == "continuous" { return .continuous }
        if s.hasPrefix("every ") {
            let span = try TimeSpan.parse(String(s.dropFirst(6)))
            guard span.seconds > 0 else { throw ScalarError("'every' needs a period greater than zero") }
            return .every(span)
        }
        if s.hasPrefix("@") {
            guard let expansion = macros[s.lowercased()] else {
                throw ScalarError("unknown macro; use one of \(macros.keys.sorted().joined(separator: " ")), 'every <duration>' or 'continuous'")
            }
            return try parseCron(expansion)
        }
        return try parseCron(s)
    }

    static func parseCron(_ s: String) throws(ScalarError) -> Schedule {
        let fields = s.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw ScalarError("a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one has \(fields.count); or use '@daily', 'every 4h' or 'continuous'")
        }
        let minutes = try field(fields[0], name: "minute", range: 0...59, names: [])
        let hours = try field(fields[1], name: "hour", range: 0...23, names: [])
        let dom = try field(fields[2], name: "day-of-month", range: 1...31, names: [])
        let months = try field(fields[3], name: "month", range: 1...12, names: monthNames, nameBase: 1)
        var dow = try field(fields[4], name: "day-of-week", range: 0...7, names: dayNames)
        if dow & (1 << 7) != 0 { dow = (dow | 1) & 0x7F }  // 7 is Sunday too
        let spec = CronSpec(
            minutes: minutes, hours: UInt32(hours), daysOfMonth: UInt32(dom), months: UInt16(months), daysOfWeek: UInt8(dow),
            domStar: fields[2].hasPrefix("*"), dowStar: fields[4].hasPrefix("*"))
        return .cron(spec)
    }

    /// One cron field: a list of `*`, `N`, `A-B`, each with an optional `/STEP`; names allowed.
    static func field(_ text: String, name: String, range: ClosedRange<Int>, names: [String], nameBase: Int = 0) throws(ScalarError) -> UInt64 {
        func value(_ t: Substring) throws(ScalarError) -> Int {
            if let n = Int(t) {
                guard range.contains(n) else { throw ScalarError("\(name) \(n) is out of range \(range.lowerBound)-\(range.upperBound)") }
                return n
            }
            if let i = names.firstIndex(of: t.lowercased()) { return i + nameBase }
            let hint = names.isEmpty ? "a number \(range.lowerBound)-\(range.upperBound)" : "a number \(range.lowerBound)-\(range.upperBound) or a name such as '\(names[1])'"
            throw ScalarError("\(name) field has '\(t)', expected \(hint)")
        }
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw ScalarError("\(name) field has an empty list item") }
            var base = item
            var step = 1
            if let slash = item.firstIndex(of: "/") {
                base = item[..<slash]
                guard let st = Int(item[item.index(after: slash)...]), st > 0 else {
                    throw ScalarError("\(name) field has step '\(item[item.index(after: slash)...])', expected a whole number above 0")
                }
                step = st
            }
            var lo: Int, hi: Int
            if base == "*" {
                (lo, hi) = (range.lowerBound, range.upperBound)
                if name == "day-of-week" { hi = 6 }
            } else if let dash = base.firstIndex(of: "-"), dash != base.startIndex {
                lo = try value(base[..<dash])
                hi = try value(base[base.index(after: dash)...])
                guard lo <= hi else { throw ScalarError("\(name) range \(base) runs backwards; write the smaller value first") }
            } else {
                lo = try value(base)
                hi = item.contains("/") ? (name == "day-of-week" ? 6 : range.upperBound) : lo
            }
            var v = lo
            // A step past the field's end (fuzzing found `8/+9223372036854775805`) must end
            // the walk, not overflow it.
            while v <= hi {
                bits |= 1 << UInt64(v)
                guard step <= hi - v else { break }
                v += step
            }
        }
        return bits
    }
}

extension Schedule {
    /// Window start for `every` alignment and gap analysis: 2026-01-01T00:00:00Z.
    public static let windowStartDay = Civil.days(year: 2026, month: 1, day: 1)
    /// Window end (exclusive): 2030-01-01T00:00:00Z.
    public static let windowEndDay = Civil.days(year: 2030, month: 1, day: 1)

    /// This schedule read in `zone`. Only cron expressions have a zone: `every` counts
    /// elapsed time, which no clock change alters, and `continuous` has no fire times.
    public func inZone(_ zone: ZoneRules?) -> Schedule {
        guard case .cron(var c) = self else { return self }
        c.zone = zone
        if let z = zone, z.offsets.count == 1, z.offsets[0] == 0 { c.zone = nil }  // UTC by another name
        return .cron(c)
    }

    /// The zone a cron schedule is read in (nil for UTC and for other kinds).
    public var zone: ZoneRules? {
        if case .cron(let c) = self { return c.zone }
        return nil
    }

    /// The first fire time strictly after `t`, or nil (continuous, or a cron that never fires).
    public func nextFire(after t: Timestamp) -> Timestamp? {
        switch self {
        case .cron(let c) where c.zone != nil:
            return c.nextZonedFire(after: t)
        case .continuous:
            return nil
        case .every(let p):
            let origin = Int64(Schedule.windowStartDay) * 86_400
            let k = Int64(Civil.floorDiv(Int(t.seconds - origin), Int(p.seconds))) + 1
            return Timestamp(seconds: origin + k * p.seconds)
        case .cron(let c):
            let times = c.secondsOfDay
            guard !times.isEmpty else { return nil }
            let startDay = Civil.floorDiv(Int(t.seconds), 86_400)
            let sod = Int(t.seconds) - startDay * 86_400
            // 28 years covers every weekday/leap-year combination, so a cron that fires at all fires within it.
            for day in startDay...(startDay + 366 * 28) {
                let (_, m, d) = Civil.date(days: day)
                guard c.matches(month: m, day: d, weekday: Civil.weekday(days: day)) else { continue }
                for s in times where day > startDay || s > sod {
                    return Timestamp(seconds: Int64(day) * 86_400 + Int64(s))
                }
            }
            return nil
        }
    }

    /// Fire times after `since` and up to `until`, counted up to `limit` (missed runs).
    public func fires(after since: Timestamp, through until: Timestamp, limit: Int = 10_000) -> Int {
        var n = 0
        var t = since
        while n < limit, let next = nextFire(after: t), next.seconds <= until.seconds { n += 1; t = next }
        return n
    }

    /// Whether the schedule ever fires (a cron such as `0 0 30 2 *` never does).
    public var everFires: Bool {
        if case .cron = self { return nextFire(after: Timestamp(seconds: Int64(Schedule.windowStartDay) * 86_400 - 1)) != nil }
        return true
    }
}

extension CronSpec {
    /// Fire times in `zone`: each matching local day's times, mapped to instants by
    /// `ZoneRules.instant(forLocal:)`. That map never decreases, so the first instant past
    /// `t` in local order is the next one; two local times mapped to one instant (both in a
    /// skipped hour) fire once.
    func nextZonedFire(after t: Timestamp) -> Timestamp? {
        guard let zone else { return nil }
        let times = secondsOfDay
        guard !times.isEmpty else { return nil }
        let local = t.seconds + Int64(zone.offset(atUTC: t.seconds))
        // A day early: the first occurrence of a repeated time can lie before `local`.
        let startDay = Civil.floorDiv(Int(local), 86_400) - 1
        for day in startDay...(startDay + 366 * 28) {
            let (_, m, d) = Civil.date(days: day)
            guard matches(month: m, day: d, weekday: Civil.weekday(days: day)) else { continue }
            for s in times {
                let u = zone.instant(forLocal: Int64(day) * 86_400 + Int64(s))
                if u > t.seconds { return Timestamp(seconds: u) }
            }
        }
        return nil
    }

    /// Fire instants within the UTC day [dayStart, dayStart + 86 400), sorted and distinct.
    public func zonedFires(inUTCDayStarting dayStart: Int64) -> [Int64] {
        guard let zone else { return [] }
        let times = secondsOfDay
        let dayEnd = dayStart + 86_400
        var out: [Int64] = []
        let firstLocalDay = Civil.floorDiv(Int(dayStart) - 86_400, 86_400)
        for day in firstLocalDay...(firstLocalDay + 3) {
            let (_, m, d) = Civil.date(days: day)
            guard matches(month: m, day: d, weekday: Civil.weekday(days: day)) else { continue }
            let base = Int64(day) * 86_400
            if let o = zone.constantOffset(from: base - 86_400, to: base + 2 * 86_400) {
                for s in times {
                    let u = base + Int64(s) - Int64(o)
                    if u >= dayStart && u < dayEnd { out.append(u) }
                }
            } else {
                for s in times {
                    let u = zone.instant(forLocal: base + Int64(s))
                    if u >= dayStart && u < dayEnd { out.append(u) }
                }
            }
        }
        out.sort()
        var distinct: [Int64] = []
        distinct.reserveCapacity(out.count)
        for u in out where distinct.last != u { distinct.append(u) }
        return distinct
    }
}
