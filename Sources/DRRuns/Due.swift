import CEL
import DRFacts
import DRInventory
import Foundation

/// Whether scheduled work has come due (`drplan backup --due`, `restore-test --due`).
public enum Due {
    public enum State: Equatable, Sendable {
        case due
        /// Not yet: the next fire time after the last success.
        case notDue(next: Date)
        /// A continuous job has no fire times; replication runs it.
        case continuous
    }

    /// Due when it never succeeded, or when its schedule fired after the last success began.
    public static func state(_ schedule: Schedule, lastSuccess: Date?, now: Date) -> State {
        if schedule == .continuous { return .continuous }
        guard let last = lastSuccess else { return .due }
        guard let next = schedule.nextFire(after: Timestamp(seconds: Int64(last.timeIntervalSince1970.rounded(.down)))) else {
            return .notDue(next: .distantFuture)
        }
        let nextDate = Date(timeIntervalSince1970: TimeInterval(next.seconds))
        return nextDate <= now ? .due : .notDue(next: nextDate)
    }

    /// A restore test is due when it never succeeded or its last success is `every` old.
    public static func state(every: TimeSpan, lastSuccess: Date?, now: Date) -> State {
        guard let last = lastSuccess else { return .due }
        let next = last.addingTimeInterval(TimeInterval(every.seconds))
        return next <= now ? .due : .notDue(next: next)
    }

    /// Scheduled runs that passed unserved: fire times after the last success, beyond the
    /// one now due, when the last success is older than `monitoring.max_age` (default twice
    /// the longest gap, as DR605). nil when nothing was missed.
    public static func missed(_ job: Job, lastSuccess: Date?, now: Date) -> Int? {
        guard let last = lastSuccess, job.schedule != .continuous else { return nil }
        let end = Int64(now.timeIntervalSince1970.rounded(.down))
        let fires = job.schedule.fires(after: Timestamp(seconds: Int64(last.timeIntervalSince1970.rounded(.down))), through: Timestamp(seconds: end))
        let maxAge = ScheduleAnalyzer().maxAge(job)
        guard end - Int64(last.timeIntervalSince1970) > maxAge, fires > 1 else { return nil }
        return fires - 1
    }
}
