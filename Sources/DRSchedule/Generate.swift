import CEL
import Foundation
import DRInventory

/// The system scheduler formats `drplan schedule` writes.
public enum ScheduleFormat: String, CaseIterable, Sendable {
    case systemd, cron, launchd
}

/// Turns the inventory's job schedules into the system scheduler's own entries.
public enum ScheduleGenerator {
    /// Files for `jobs` in `format`. `invocation` builds each job's command; `cronUser` is
    /// the user field of /etc/cron.d lines (nil for a user's crontab). Jobs whose schedule
    /// the format cannot express are listed in `skipped` with the reason and what to do.
    public static func generate(_ jobs: [Job], format: ScheduleFormat, invocation: (Job) -> Invocation,
                                inventory: String, cronUser: String?, now: Timestamp) -> ScheduleOutput {
        var out = ScheduleOutput()
        var cronBlocks: [[String]] = []
        for job in jobs {
            let inv = invocation(job)
            let s: SystemSchedule
            do { s = try SystemSchedule.from(job.schedule, zone: job.timezone) } catch {
                out.skipped.append(SkippedJob(job: job.id, reason: error.reason))
                continue
            }
            switch format {
            case .systemd:
                out.files.append(ScheduleFile(name: inv.name + ".service", contents: SystemdFormat.service(inv)))
                out.files.append(ScheduleFile(name: inv.name + ".timer", contents: SystemdFormat.timer(inv, s, scheduleText: job.scheduleText)))
                if let w = SystemdFormat.dstWarning(job: job, now: now) { out.warnings.append(w) }
            case .cron:
                cronBlocks.append(CronFormat.lines(inv, s, job: job, user: cronUser))
            case .launchd:
                do {
                    out.files.append(ScheduleFile(name: LaunchdFormat.label(inv) + ".plist", contents: try LaunchdFormat.plist(inv, s)))
                } catch {
                    out.skipped.append(SkippedJob(job: job.id, reason: error.reason))
                }
            }
        }
        if format == .cron && !cronBlocks.isEmpty {
            out.files.append(ScheduleFile(name: "drplan", contents: CronFormat.file(inventory, jobs: cronBlocks)))
        }
        return out
    }

    /// The next `count` fire times of a job, for `drplan schedule --list`.
    public static func nextRuns(_ job: Job, after now: Timestamp, count: Int = 3) -> [Timestamp] {
        var out: [Timestamp] = []
        var t = now
        while out.count < count, let n = job.schedule.nextFire(after: t) { out.append(n); t = n }
        return out
    }

    /// `2026-12-02 02:30 GMT+00:00`-style local time of an instant in a job's zone.
    public static func local(_ t: Timestamp, zone: ZoneRules?) -> String {
        let off = zone?.offset(atUTC: t.seconds) ?? 0
        let l = t.seconds + Int64(off)
        let day = Civil.floorDiv(Int(l), 86_400)
        let (y, m, d) = Civil.date(days: day)
        let sod = Int(l) - day * 86_400
        let sign = off < 0 ? "-" : "+"
        return String(format: "%04d-%02d-%02d %02d:%02d ", y, m, d, sod / 3600, sod / 60 % 60) + sign + String(format: "%02d:%02d", abs(off) / 3600, abs(off) / 60 % 60)
    }
}
