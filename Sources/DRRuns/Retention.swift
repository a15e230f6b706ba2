import CEL
import DRInventory
import Foundation

/// restic's `forget --keep-*` semantics: a snapshot is kept when any rule keeps it.
/// - keep_last N: the N newest snapshots;
/// - keep_hourly/daily/weekly/monthly/yearly N: the newest snapshot in each of the N most
///   recent hours/days/ISO weeks/months/years that have a snapshot (UTC);
/// - keep_within D: every snapshot taken within D of the *newest* snapshot, so a backup that
///   stopped running never lets pruning delete everything.
public enum Retention {
    /// `snapshots` come oldest first, as engines list them; that order breaks ties between
    /// snapshots taken within one second.
    public static func keep(_ snapshots: [(id: String, time: Int64)], policy r: JobRetention) -> Set<String> {
        let sorted = snapshots.enumerated().sorted { ($0.element.time, $0.offset) > ($1.element.time, $1.offset) }.map(\.element)
        guard let newest = sorted.first else { return [] }
        var keep = Set<String>()
        if let n = r.keepLast { for s in sorted.prefix(n) { keep.insert(s.id) } }
        if let w = r.keepWithin { for s in sorted where newest.time - s.time <= w.seconds { keep.insert(s.id) } }
        let rules: [(Int?, (Int64) -> String)] = [
            (r.keepHourly, { bucket($0, "hour") }), (r.keepDaily, { bucket($0, "day") }), (r.keepWeekly, { bucket($0, "week") }),
            (r.keepMonthly, { bucket($0, "month") }), (r.keepYearly, { bucket($0, "year") }),
        ]
        for (count, key) in rules {
            guard var left = count, left > 0 else { continue }
            var last: String? = nil
            for s in sorted {
                let k = key(s.time)
                if k == last { continue }
                last = k
                keep.insert(s.id)
                left -= 1
                if left == 0 { break }
            }
        }
        return keep
    }

    static func bucket(_ t: Int64, _ unit: String) -> String {
        let day = Civil.floorDiv(Int(t), 86_400)
        let (y, m, d) = Civil.date(days: day)
        switch unit {
        case "hour": return "\(y)-\(m)-\(d)-\((Int(t) - day * 86_400) / 3600)"
        case "day": return "\(y)-\(m)-\(d)"
        case "week":
            let isoWeekday = (Civil.weekday(days: day) + 6) % 7 + 1
            let thursday = day - isoWeekday + 4
            let isoYear = Civil.date(days: thursday).year
            return "\(isoYear)-W\((thursday - Civil.days(year: isoYear, month: 1, day: 1)) / 7 + 1)"
        case "month": return "\(y)-\(m)"
        default: return "\(y)"
        }
    }
}
