import CEL
import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRFacts

/// Proves the fast day-profile analysis exact by comparing it with a plain enumeration of
/// every fire time in the window, for hundreds of generated expressions and their unions.
@Suite("Schedule gap analysis")
struct GapAnalysisTests {
    /// (month, day, weekday) for every day of the window, from Foundation's Gregorian
    /// calendar: independent of the hand-written `Civil` arithmetic under test.
    static let days: [(month: Int, day: Int, weekday: Int)] = {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC") ?? cal.timeZone
        let start = cal.date(from: DateComponents(year: 2026, month: 1, day: 1)) ?? Date()
        return (0..<1461).map { i in
            let d = cal.date(byAdding: .day, value: i, to: start) ?? start
            let c = cal.dateComponents([.month, .day, .weekday], from: d)
            return (c.month ?? 0, c.day ?? 0, (c.weekday ?? 1) - 1)
        }
    }()

    /// Every fire time in the window, in seconds from 2026-01-01, listed one by one.
    static func enumerate(_ s: Schedule) -> [Int64] {
        switch s {
        case .continuous: return []
        case .every(let p):
            return Array(stride(from: Int64(0), to: 1461 * 86_400, by: Int(p.seconds)))
        case .cron(let c):
            var out: [Int64] = []
            for (i, d) in days.enumerated() where c.matches(month: d.month, day: d.day, weekday: d.weekday) {
                for h in 0..<24 where c.hours & (1 << UInt32(h)) != 0 {
                    for m in 0..<60 where c.minutes & (1 << UInt64(m)) != 0 {
                        out.append(Int64(i) * 86_400 + Int64(h * 3600 + m * 60))
                    }
                }
            }
            return out
        }
    }

    static func bruteForce(_ set: [Schedule]) -> GapStats? {
        let times = Array(Set(set.flatMap(enumerate))).sorted()
        guard times.count >= 2 else { return nil }
        var maxGap: Int64 = 0, minGap = Int64.max
        for i in 1..<times.count {
            maxGap = max(maxGap, times[i] - times[i - 1])
            minGap = min(minGap, times[i] - times[i - 1])
        }
        return GapStats(maxGap: maxGap, minGap: minGap)
    }

    static func generated(count: Int, seed: UInt64) -> [String] { CronGenerator.generated(count: count, seed: seed) }

    @Test("the issue's worked examples")
    func examples() throws {
        let a = ScheduleAnalyzer()
        #expect(a.gaps(try Schedule.parse("0 2 * * 1-5")) == GapStats(maxGap: 259_200, minGap: 86_400))
        #expect(a.gaps(try Schedule.parse("0 0 31 * *")) == GapStats(maxGap: 61 * 86_400, minGap: 31 * 86_400))
        #expect(a.gaps(try Schedule.parse("*/15 * * * *")) == GapStats(maxGap: 900, minGap: 900))
        #expect(a.gaps(try Schedule.parse("@yearly")) == GapStats(maxGap: 366 * 86_400, minGap: 365 * 86_400))
        #expect(a.gaps(try Schedule.parse("every 4h")) == GapStats(maxGap: 14_400, minGap: 14_400))
        #expect(a.gaps(try Schedule.parse("every 7h")) == GapStats(maxGap: 25_200, minGap: 25_200))
        #expect(a.gaps(Schedule.continuous) == nil)
    }

    @Test("a schedule firing once in the window is analysed over 28 years")
    func sparse() throws {
        let a = ScheduleAnalyzer()
        #expect(a.gaps(try Schedule.parse("0 0 29 2 *")) == GapStats(maxGap: 1461 * 86_400, minGap: 1461 * 86_400))
        #expect(a.gaps(try Schedule.parse("every 5y")) == GapStats(maxGap: 5 * 365 * 86_400, minGap: 5 * 365 * 86_400))
    }

    @Test("300 generated expressions: fast analysis equals plain enumeration")
    func singleSchedules() throws {
        let a = ScheduleAnalyzer()
        var compared = 0
        for text in Self.generated(count: 300, seed: 42) {
            let s = try Schedule.parse(text)
            guard s.everFires, let expected = Self.bruteForce([s]) else { continue }  // once-only: see the sparse test
            #expect(a.gaps(s) == expected, "\(text)")
            compared += 1
        }
        #expect(compared >= 250)
    }

    @Test("100 generated unions of 2–4 schedules: fast analysis equals plain enumeration")
    func unions() throws {
        let a = ScheduleAnalyzer()
        let pool = try Self.generated(count: 60, seed: 7).map { try Schedule.parse($0) }.filter(\.everFires)
            + [try Schedule.parse("every 4h"), try Schedule.parse("every 90m"), try Schedule.parse("every 7h"), try Schedule.parse("every 2d")]
        var rng = SplitMix(seed: 99)
        var compared = 0
        for _ in 0..<100 {
            let k = 2 + Int(rng.next() % 3)
            let set = (0..<k).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
            guard let expected = Self.bruteForce(set) else { continue }
            #expect(a.gaps(of: set) == expected, "\(set)")
            compared += 1
        }
        #expect(compared >= 90)
    }
}
