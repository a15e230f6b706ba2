import CEL
import Testing
@testable import DRInventory

@Suite("Schedules")
struct ScheduleTests {
    func cron(_ s: String) throws -> CronSpec {
        guard case .cron(let c) = try Schedule.parse(s) else { throw ScalarError("not a cron") }
        return c
    }

    func bits<T: FixedWidthInteger>(_ v: T) -> [Int] { (0..<T.bitWidth).filter { v & (T(1) << T($0)) != 0 } }

    @Test("fields: ranges, lists, steps and names")
    func fields() throws {
        #expect(bits(try cron("*/7 * * * *").minutes) == [0, 7, 14, 21, 28, 35, 42, 49, 56])
        #expect(bits(try cron("0 9-17/2 * * *").hours) == [9, 11, 13, 15, 17])
        #expect(bits(try cron("0 0 * * mon-fri").daysOfWeek) == [1, 2, 3, 4, 5])
        #expect(bits(try cron("0 0 * * MON,wed,Fri").daysOfWeek) == [1, 3, 5])
        #expect(bits(try cron("0 0 * jan,jul-sep *").months) == [1, 7, 8, 9])
        #expect(bits(try cron("0 0 * * 7").daysOfWeek) == [0])
        #expect(bits(try cron("0 0 * * 5-7").daysOfWeek) == [0, 5, 6])
        #expect(bits(try cron("5/20 * * * *").minutes) == [5, 25, 45])
        #expect(bits(try cron("0 0 1,15,31 * *").daysOfMonth) == [1, 15, 31])
        // A step past the field's end fires once, at the start (found by fuzzing: it overflowed).
        #expect(bits(try cron("8/+9223372036854775805 * * * *").minutes) == [8])
        #expect(bits(try cron("*/100 */9223372036854775807 * * *").hours) == [0])
    }

    @Test("macros, every and continuous")
    func forms() throws {
        #expect(try Schedule.parse("@daily") == Schedule.parse("0 0 * * *"))
        #expect(try Schedule.parse("@midnight") == Schedule.parse("0 0 * * *"))
        #expect(try Schedule.parse("@weekly") == Schedule.parse("0 0 * * 0"))
        #expect(try Schedule.parse("@monthly") == Schedule.parse("0 0 1 * *"))
        #expect(try Schedule.parse("@annually") == Schedule.parse("0 0 1 1 *"))
        #expect(try Schedule.parse("@hourly") == Schedule.parse("0 * * * *"))
        #expect(try Schedule.parse("every 4h") == .every(TimeSpan(seconds: 14_400)))
        #expect(try Schedule.parse("every 1h30m") == .every(TimeSpan(seconds: 5_400)))
        #expect(try Schedule.parse("continuous") == .continuous)
    }

    @Test("rejected expressions", arguments: [
        "61 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *",
        "5-1 * * * *", "* * * *", "* * * * * *", "@reboot", "every 0s", "every soon", "0 0 * * funday", "1,,2 * * * *",
    ])
    func rejected(expression: String) {
        #expect(throws: ScalarError.self) { try Schedule.parse(expression) }
    }

    @Test("the error names the field and the range")
    func errorWording() {
        do {
            _ = try Schedule.parse("61 * * * *")
            Issue.record("accepted 61")
        } catch {
            #expect(error.reason == "minute 61 is out of range 0-59")
        }
    }

    @Test("Vixie day matching: either day field when both are restricted")
    func vixie() throws {
        // 2026-11-13 is a Friday, the 13th.
        let either = try cron("0 0 13 * 5")
        #expect(either.matches(month: 11, day: 13, weekday: 5))
        #expect(either.matches(month: 11, day: 20, weekday: 5))   // a Friday, not the 13th
        #expect(either.matches(month: 10, day: 13, weekday: 2))   // the 13th, a Tuesday
        #expect(!either.matches(month: 11, day: 14, weekday: 6))
        // A star (even with a step) in either field means both must match.
        let both = try cron("0 0 */2 * 5")
        #expect(both.matches(month: 11, day: 13, weekday: 5))
        #expect(!both.matches(month: 11, day: 20, weekday: 5))
        #expect(!both.matches(month: 11, day: 15, weekday: 0))
        let weekdays = try cron("0 2 * * 1-5")
        #expect(weekdays.matches(month: 11, day: 23, weekday: 1))
        #expect(!weekdays.matches(month: 11, day: 22, weekday: 0))
    }

    @Test("Feb 29 fires only in leap years; Feb 30 never fires")
    func leap() throws {
        let feb29 = try Schedule.parse("0 0 29 2 *")
        #expect(feb29.everFires)
        #expect(feb29.nextFire(after: try Timestamp.parse("2026-01-01"))?.description == "2028-02-29T00:00:00Z")
        #expect(try !Schedule.parse("0 0 30 2 *").everFires)
        #expect(try !Schedule.parse("0 0 31 4,6,9,11 *").everFires)
        #expect(try Schedule.parse("continuous").everFires)
    }

    @Test("next fire time is strictly after now")
    func nextFire() throws {
        let t = try Timestamp.parse("2026-11-22T00:00:00Z")  // a Sunday
        #expect(try Schedule.parse("0 0 * * *").nextFire(after: t)?.description == "2026-11-23T00:00:00Z")
        #expect(try Schedule.parse("0 2 * * 1-5").nextFire(after: t)?.description == "2026-11-23T02:00:00Z")
        #expect(try Schedule.parse("*/15 * * * *").nextFire(after: t.adding(seconds: 1))?.description == "2026-11-22T00:15:00Z")
        #expect(try Schedule.parse("every 4h").nextFire(after: t)?.description == "2026-11-22T04:00:00Z")
        #expect(try Schedule.parse("0 0 31 * *").nextFire(after: t)?.description == "2026-12-31T00:00:00Z")
        #expect(Schedule.continuous.nextFire(after: t) == nil)
    }
}
