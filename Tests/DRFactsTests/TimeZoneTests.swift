import CEL
import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRFacts

/// Cron schedules read in a zone (docs/schedules.md): times that do not exist run at the
/// clock change, times that occur twice run once, and the gap analysis behind the
/// achievable RPO sees the 23- and 25-hour days.
@Suite("Time zones and DST")
struct TimeZoneTests {
    static func zoned(_ cron: String, _ zone: String) throws -> Schedule {
        guard let z = ZoneRules.named(zone) else { throw ScalarError("no zone \(zone)") }
        return try Schedule.parse(cron).inZone(z)
    }

    static func utc(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int) -> Int64 {
        Int64(Civil.days(year: y, month: mo, day: d)) * 86_400 + Int64(h * 3600 + mi * 60)
    }

    /// Consecutive fire times from `from`, by nextFire.
    static func fires(_ s: Schedule, from: Int64, count: Int) -> [Int64] {
        var out: [Int64] = []
        var t = Timestamp(seconds: from)
        while out.count < count, let n = s.nextFire(after: t) { out.append(n.seconds); t = n }
        return out
    }

    @Test("London 02:30 daily: a 23-hour gap at the spring change, 25 hours in autumn")
    func london() throws {
        let s = try Self.zoned("30 2 * * *", "Europe/London")
        // 2026-03-29: clocks go 01:00 GMT -> 02:00 BST; 02:30 BST is 01:30Z.
        let spring = Self.fires(s, from: Self.utc(2026, 3, 27, 12, 0), count: 3)
        #expect(spring == [Self.utc(2026, 3, 28, 2, 30), Self.utc(2026, 3, 29, 1, 30), Self.utc(2026, 3, 30, 1, 30)])
        #expect(spring[1] - spring[0] == 23 * 3600)
        // 2026-10-25: 02:00 BST -> 01:00 GMT; 02:30 GMT is 02:30Z.
        let autumn = Self.fires(s, from: Self.utc(2026, 10, 23, 12, 0), count: 3)
        #expect(autumn == [Self.utc(2026, 10, 24, 1, 30), Self.utc(2026, 10, 25, 2, 30), Self.utc(2026, 10, 26, 2, 30)])
        #expect(autumn[1] - autumn[0] == 25 * 3600)
        let g = try #require(ScheduleAnalyzer().gaps(s))
        #expect(g.maxGap == 25 * 3600)
        #expect(g.minGap == 23 * 3600)
    }

    @Test("New York 02:30 daily: runs at 03:00 EDT on the spring day (23.5 h gaps), 25 h in autumn")
    func newYork() throws {
        let s = try Self.zoned("30 2 * * *", "America/New_York")
        // 2026-03-08: 02:00 EST -> 03:00 EDT; 02:30 does not exist, so it runs at 03:00 EDT = 07:00Z.
        let spring = Self.fires(s, from: Self.utc(2026, 3, 6, 12, 0), count: 3)
        #expect(spring == [Self.utc(2026, 3, 7, 7, 30), Self.utc(2026, 3, 8, 7, 0), Self.utc(2026, 3, 9, 6, 30)])
        #expect(spring[1] - spring[0] == 23 * 3600 + 1800)
        #expect(spring[2] - spring[1] == 23 * 3600 + 1800)
        // 2026-11-01: 02:00 EDT -> 01:00 EST; 02:30 EST is 07:30Z.
        let autumn = Self.fires(s, from: Self.utc(2026, 10, 30, 12, 0), count: 2)
        #expect(autumn[1] - autumn[0] == 25 * 3600)
        let g = try #require(ScheduleAnalyzer().gaps(s))
        #expect(g.maxGap == 25 * 3600)
        #expect(g.minGap == 23 * 3600 + 1800)
    }

    @Test("a time that occurs twice runs once, at its first occurrence; skipped times that meet run once")
    func repeatedAndSkipped() throws {
        // London 2026-10-25: 01:30 is 00:30Z (BST) and again 01:30Z (GMT).
        let s = try Self.zoned("30 1 * * *", "Europe/London")
        let f = Self.fires(s, from: Self.utc(2026, 10, 24, 12, 0), count: 2)
        #expect(f == [Self.utc(2026, 10, 25, 0, 30), Self.utc(2026, 10, 26, 1, 30)])
        // New York 2026-03-08: 02:00, 02:30 and 03:00 all mean 07:00Z; one run.
        let n = try Self.zoned("0,30 2,3 8 3 *", "America/New_York")
        let nf = Self.fires(n, from: Self.utc(2026, 3, 8, 0, 0), count: 2)
        #expect(nf == [Self.utc(2026, 3, 8, 7, 0), Self.utc(2026, 3, 8, 7, 30)])
    }

    @Test("UTC by any name is the default behaviour, and every counts elapsed time")
    func utcDefault() throws {
        let plain = try Schedule.parse("30 2 * * *")
        #expect(try Self.zoned("30 2 * * *", "UTC") == plain)
        #expect(try Self.zoned("30 2 * * *", "Etc/UTC") == plain)
        #expect(try Schedule.parse("every 4h").inZone(ZoneRules.named("Europe/London")) == Schedule.parse("every 4h"))
        #expect(ZoneRules.named("Mars/Olympus") == nil)
        #expect(ZoneRules.named("europe/london") == nil)
    }

    /// An independent reading of the rule: wall times from Foundation's Gregorian calendar,
    /// instants from Foundation's zone directly (no precomputed transitions).
    static func reference(_ cron: String, zone name: String, days: Range<Int>) throws -> [Int64] {
        guard case .cron(let c) = try Schedule.parse(cron), let tz = TimeZone(identifier: name) else { return [] }
        func off(_ t: Int64) -> Int64 { Int64(tz.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t)))) }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC") ?? cal.timeZone
        var out: [Int64] = []
        let start = Int64(Schedule.windowStartDay) * 86_400
        for i in days {
            let day = start + Int64(i) * 86_400
            let comps = cal.dateComponents([.month, .day, .weekday], from: Date(timeIntervalSince1970: TimeInterval(day)))
            guard c.matches(month: comps.month ?? 0, day: comps.day ?? 0, weekday: (comps.weekday ?? 1) - 1) else { continue }
            for sod in c.secondsOfDay {
                let local = day + Int64(sod)
                let valid = Set([off(local - 86_400), off(local + 86_400)]).map { local - $0 }.filter { local - $0 == off($0) }
                if let first = valid.min() { out.append(first); continue }
                // Skipped: the clock change that jumped over it.
                let change = tz.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: TimeInterval(local - off(local - 86_400) - 86_400)))
                out.append(Int64(change?.timeIntervalSince1970 ?? 0))
            }
        }
        return Array(Set(out)).sorted()
    }

    @Test("fire times and gaps agree with an independent reading over two years, in four zones")
    func agreesWithReference() throws {
        let crons = ["30 2 * * *", "0 * * * *", "15 1,2,3 * * 0", "*/20 0-4 1-10 3,10,11 *", "0 12 * * *", "45 23 * * 1-5"]
        let zones = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
        for zone in zones {
            for cron in crons {
                let expected = try Self.reference(cron, zone: zone, days: 0..<730)
                let s = try Self.zoned(cron, zone)
                // The reference starts at the window's first local day; compare from its first fire.
                guard let first = expected.first, let last = expected.last else { continue }
                let got = Self.fires(s, from: first - 1, count: expected.count + 10).filter { $0 <= last }
                let expectedInWindow = expected
                let firstDifference = zip(got, expectedInWindow).first { $0 != $1 }
                // Gaps over the analysis window, from the reference's fires in it.
                let start = Int64(Schedule.windowStartDay) * 86_400, end = Int64(Schedule.windowEndDay) * 86_400
                let all = try Self.reference(cron, zone: zone, days: -1..<1462).filter { $0 >= start && $0 < end }
                let steps = zip(all.dropFirst(), all).map { $0 - $1 }
                let g = ScheduleAnalyzer().gaps(s)
                #expect(g?.maxGap == steps.max() && g?.minGap == steps.min(), "gaps of \(cron) in \(zone)")
                #expect(got.count == expectedInWindow.count && firstDifference == nil,
                        "\(cron) in \(zone): \(got.count) vs \(expectedInWindow.count) fires, first difference \(String(describing: firstDifference))")
            }
        }
    }
}
