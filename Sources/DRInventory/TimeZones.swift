import CEL
import Foundation

/// One IANA time zone's UTC offsets, read once from the system's zone data and kept as a
/// sorted list of transitions, so that schedule analysis over years of fire times costs a
/// binary search per lookup instead of a call into Foundation.
///
/// How a wall-clock time maps to an instant (docs/schedules.md), as cronie does for fixed
/// times:
/// - a time that does not exist (skipped by a spring-forward change) runs at the instant the
///   clocks change, which is the next valid minute (02:30 in New York on the spring day runs
///   at 03:00 EDT);
/// - a time that occurs twice (repeated by a fall-back change) runs once, at its first
///   occurrence.
public final class ZoneRules: Hashable, Sendable, CustomStringConvertible {
    /// The IANA name as written (`Europe/London`).
    public let name: String
    let zone: TimeZone
    /// starts[i] is the first UTC second at which offsets[i] applies; starts[0] is the start
    /// of the precomputed range, before which (and after `rangeEnd`) Foundation is asked.
    let starts: [Int64]
    let offsets: [Int]
    static let rangeStart: Int64 = 631_152_000      // 1990-01-01T00:00:00Z
    static let rangeEnd: Int64 = 4_102_444_800      // 2100-01-01T00:00:00Z

    /// The rules for an IANA name, or nil when the system has no such zone. Names are exact
    /// (`Europe/London`, not `europe/london`), as in the tz database.
    /// Rules are built once per name and process: an inventory of thousands of jobs names a
    /// handful of zones.
    public static func named(_ name: String) -> ZoneRules? {
        if let known = cache.get(name) { return known }
        guard !name.isEmpty, let zone = TimeZone(identifier: name) else { return nil }
        return cache.add(ZoneRules(name: name, zone: zone))
    }

    final class Cache: @unchecked Sendable {
        private let lock = NSLock()
        private var rules: [String: ZoneRules] = [:]
        func get(_ name: String) -> ZoneRules? { lock.withLock { rules[name] } }
        func add(_ r: ZoneRules) -> ZoneRules { lock.withLock { if let e = rules[r.name] { return e }; rules[r.name] = r; return r } }
    }
    static let cache = Cache()

    private init(name: String, zone: TimeZone) {
        self.name = name
        self.zone = zone
        func offset(_ t: Int64) -> Int { zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t))) }
        var starts = [Self.rangeStart]
        var offsets = [offset(Self.rangeStart)]
        // Daily steps find every change (no zone changes its offset twice within a day), and
        // a binary search finds the second it happened.
        var t = Self.rangeStart
        while t < Self.rangeEnd {
            let next = t + 86_400
            let o = offset(next)
            if o != offsets[offsets.count - 1] {
                var lo = t, hi = next   // offset(lo) is the old one, offset(hi) the new
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2
                    if offset(mid) == o { hi = mid } else { lo = mid }
                }
                starts.append(hi)
                offsets.append(o)
            }
            t = next
        }
        self.starts = starts
        self.offsets = offsets
    }

    public var description: String { name }
    public static func == (a: ZoneRules, b: ZoneRules) -> Bool { a.name == b.name }
    public func hash(into h: inout Hasher) { h.combine(name) }

    private func segment(_ utc: Int64) -> Int {
        var lo = 0, hi = starts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= utc { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Seconds east of UTC at the instant `utc`.
    public func offset(atUTC utc: Int64) -> Int {
        if utc < Self.rangeStart || utc >= Self.rangeEnd {
            return zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(utc)))
        }
        return offsets[segment(utc)]
    }

    /// The offset that holds for every instant in [from, to], or nil when it changes there.
    public func constantOffset(from: Int64, to: Int64) -> Int? {
        guard from >= Self.rangeStart, to < Self.rangeEnd else { return nil }
        let a = segment(from)
        return segment(to) == a ? offsets[a] : nil
    }

    /// The instant a wall-clock time (seconds since 1970-01-01T00:00 local) runs at: its only
    /// occurrence, its first when it occurs twice, or the moment the clocks change when it
    /// does not exist.
    public func instant(forLocal local: Int64) -> Int64 {
        // Offsets lie within ±18 h, so the instant lies within a day of `local`, and only
        // the offsets in force over that span can map to it.
        let from = local - 86_400, to = local + 86_400
        if let o = constantOffset(from: from, to: to) { return local - Int64(o) }
        var candidates: [Int] = []
        var changes: [(at: Int64, before: Int, after: Int)] = []
        if from >= Self.rangeStart && to < Self.rangeEnd {
            let first = segment(from), last = segment(to)
            candidates = Array(offsets[first...last])
            for i in (first + 1)..<(last + 1) { changes.append((starts[i], offsets[i - 1], offsets[i])) }
        } else {
            candidates = [offset(atUTC: from), offset(atUTC: local), offset(atUTC: to)]
        }
        let valid = Set(candidates).map { local - Int64($0) }.filter { offset(atUTC: $0) == Int(local - $0) }
        if let first = valid.min() { return first }
        // In a gap: the change whose jump from `before` to `after` skipped this wall time.
        for c in changes where c.at + Int64(c.before) <= local && local < c.at + Int64(c.after) { return c.at }
        // Outside the precomputed range (never for drplan's window): the smallest candidate.
        return local - Int64(candidates.max() ?? 0)
    }

    /// The wall-clock spans skipped by clock changes between two instants: local times in
    /// [localStart, localEnd) do not exist on that day.
    public func skippedIntervals(from: Int64, to: Int64) -> [(at: Int64, localStart: Int64, localEnd: Int64)] {
        var out: [(at: Int64, localStart: Int64, localEnd: Int64)] = []
        for i in starts.indices.dropFirst() where starts[i] >= from && starts[i] < to && offsets[i] > offsets[i - 1] {
            out.append((starts[i], starts[i] + Int64(offsets[i - 1]), starts[i] + Int64(offsets[i])))
        }
        return out
    }
}
