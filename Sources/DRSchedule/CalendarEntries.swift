import CEL
import DRInventory

/// A schedule as the system schedulers write one: a few calendar entries, each a list of
/// allowed values per field (nil: any value), read in one zone. systemd's `OnCalendar=`,
/// cron lines and launchd's `StartCalendarInterval` are all unions of such entries, so one
/// exact conversion serves the three formats.
public struct CalendarEntry: Equatable, Sendable {
    public var minutes: [Int]
    public var hours: [Int]
    /// Days of the month, 1…31; nil: every day.
    public var days: [Int]?
    /// Months, 1…12; nil: every month.
    public var months: [Int]?
    /// Weekdays, 0…6 with Sunday 0; nil: every weekday.
    public var weekdays: [Int]?
}

/// Why a schedule cannot be written for the system scheduler, and what to do instead.
public struct Unconvertible: Error, Equatable, Sendable {
    public var reason: String
}

/// A job's schedule as calendar entries in its zone (`UTC` when none).
public struct SystemSchedule: Equatable, Sendable {
    public var entries: [CalendarEntry]
    /// The IANA zone the entries are read in.
    public var zone: String

    /// Converts exactly, or says why it cannot be done.
    ///
    /// Vixie cron fires when either the day of month or the weekday matches if both are
    /// restricted, where systemd and launchd require both: such a cron becomes two entries,
    /// one per field, whose union is exact. `every` counts from 2026-01-01T00:00Z, so a
    /// period that divides a day becomes UTC times of day; longer periods are not calendar
    /// patterns at all.
    public static func from(_ schedule: Schedule, zone: ZoneRules?) throws(Unconvertible) -> SystemSchedule {
        let zoneName = zone?.name ?? "UTC"
        switch schedule {
        case .continuous:
            throw Unconvertible(reason: "a continuous job is replication that its own service runs without stopping; there is no timer to install. Run that service under systemd itself, or give the job a cron schedule")
        case .every(let p):
            let s = Int(p.seconds)
            if s % 60 != 0 {
                throw Unconvertible(reason: "'every \(p)' is not a whole number of minutes, the finest step cron and launchd have; use a period in minutes")
            }
            if s == 86_400 { return SystemSchedule(entries: [CalendarEntry(minutes: [0], hours: [0])], zone: "UTC") }
            guard 86_400 % s == 0 else {
                throw Unconvertible(reason: "'every \(p)' counts \(p) steps from 2026-01-01 00:00 UTC, which no calendar pattern repeats (a day's times would differ from one day to the next); use a period that divides 24 hours, or a cron expression such as '0 2 */2 * *' (which restarts each month)")
            }
            // Times of day grouped by the hours they share, so `every 15m` is one entry.
            var hoursOfMinute: [Int: [Int]] = [:]
            for t in stride(from: 0, to: 86_400, by: s) { hoursOfMinute[(t % 3600) / 60, default: []].append(t / 3600) }
            var byHours: [[Int]: [Int]] = [:]
            for (m, hs) in hoursOfMinute { byHours[hs, default: []].append(m) }
            let entries = byHours.map { CalendarEntry(minutes: $0.value.sorted(), hours: $0.key) }
                .sorted { ($0.hours.first ?? 0, $0.minutes.first ?? 0) < ($1.hours.first ?? 0, $1.minutes.first ?? 0) }
            return SystemSchedule(entries: entries, zone: "UTC")
        case .cron(let c):
            func bits(_ v: UInt64, _ r: ClosedRange<Int>) -> [Int] { r.filter { v & (1 << UInt64($0)) != 0 } }
            let minutes = bits(c.minutes, 0...59), hours = bits(UInt64(c.hours), 0...23)
            let days = bits(UInt64(c.daysOfMonth), 1...31), months = bits(UInt64(c.months), 1...12)
            let weekdays = bits(UInt64(c.daysOfWeek), 0...6)
            let d: [Int]? = days.count == 31 ? nil : days
            let m: [Int]? = months.count == 12 ? nil : months
            let w: [Int]? = weekdays.count == 7 ? nil : weekdays
            if c.domStar || c.dowStar {
                return SystemSchedule(entries: [CalendarEntry(minutes: minutes, hours: hours, days: d, months: m, weekdays: w)], zone: zoneName)
            }
            return SystemSchedule(entries: [
                CalendarEntry(minutes: minutes, hours: hours, days: d, months: m, weekdays: nil),
                CalendarEntry(minutes: minutes, hours: hours, days: nil, months: m, weekdays: w),
            ], zone: zoneName)
        }
    }
}
