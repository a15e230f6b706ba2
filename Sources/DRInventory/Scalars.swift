import Foundation
import CEL

/// Why a scalar was rejected: a phrase that completes "invalid value 'X' for 'key' in …: ".
public struct ScalarError: Error, Sendable, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
}

/// A whole number of seconds. Inventory durations are written `15m`, `1h30m`, `7y`.
public struct TimeSpan: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Int64
    public init(seconds: Int64) { self.seconds = seconds }
    public static func < (a: TimeSpan, b: TimeSpan) -> Bool { a.seconds < b.seconds }
    public static let zero = TimeSpan(seconds: 0)
    public static func days(_ n: Int64) -> TimeSpan { TimeSpan(seconds: n * 86_400) }

    static let units: [(Character, Int64)] = [("y", 365 * 86_400), ("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)]
    static let expectation = "expected a duration such as '15m', '1h30m', '35d' or '7y' (units s m h d w y)"

    /// Parses `<int><unit>` repeated: `90s`, `1h30m`, `7y`. Rejects negatives, decimals and overflow.
    public static func parse(_ text: String) throws(ScalarError) -> TimeSpan {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty else { throw ScalarError(expectation) }
        var total: Int64 = 0
        var number: Int64? = nil
        for ch in s {
            if let d = ch.wholeNumberValue, ch.isASCII {
                let (m, o1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(d))
                guard !o1, !o2 else { throw ScalarError("the duration is too large") }
                number = a
            } else if let unit = units.first(where: { $0.0 == ch }) {
                guard let n = number else { throw ScalarError(expectation) }
                let (p, o1) = n.multipliedReportingOverflow(by: unit.1)
                let (t, o2) = total.addingReportingOverflow(p)
                guard !o1, !o2 else { throw ScalarError("the duration is too large") }
                total = t
                number = nil
            } else if ch == "-" {
                throw ScalarError("a duration cannot be negative")
            } else {
                throw ScalarError(expectation)
            }
        }
        if number != nil { throw ScalarError("a number needs a unit (s m h d w y), " + expectation) }
        return TimeSpan(seconds: total)
    }

    /// The shortest exact spelling: `1h30m`, `7y`, `0s`.
    public var description: String {
        if seconds == 0 { return "0s" }
        var rest = seconds
        var out = seconds < 0 ? "-" : ""
        rest = abs(rest)
        for (u, n) in Self.units where u != "w" {
            if rest >= n { out += "\(rest / n)\(u)"; rest %= n }
        }
        return out
    }
}

/// A size in bytes, written with decimal (`500GB`) or binary (`512GiB`) units.
public enum ByteSize {
    static let units: [(String, Double)] = [
        ("B", 1), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("PB", 1e15),
        ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776), ("PiB", 1_125_899_906_842_624),
    ]
    static let expectation = "expected a size such as '500GB' or '512GiB' (units B KB MB GB TB PB, KiB MiB GiB TiB PiB)"

    public static func parse(_ text: String) throws(ScalarError) -> Int64 {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s.hasPrefix("-") { throw ScalarError("a size cannot be negative") }
        guard let split = s.firstIndex(where: { !($0.isNumber && $0.isASCII) && $0 != "." }) else {
            throw ScalarError("a number needs a unit, " + expectation)
        }
        let numberText = s[..<split]
        let unitText = s[split...].trimmingCharacters(in: .whitespaces)
        guard !numberText.isEmpty, numberText.filter({ $0 == "." }).count <= 1, numberText.first != ".", numberText.last != ".",
              let number = Double(numberText)
        else { throw ScalarError(expectation) }
        guard let unit = units.first(where: { $0.0 == unitText }) ?? units.first(where: { $0.0.lowercased() == unitText.lowercased() && !unitText.lowercased().contains("i") }) ?? units.first(where: { $0.0.lowercased() == unitText.lowercased() })
        else { throw ScalarError(expectation) }
        let bytes = (number * unit.1).rounded()
        guard bytes < 9.2e18 else { throw ScalarError("the size is too large") }
        return Int64(bytes)
    }

    /// Human-readable, decimal units, for messages and text output.
    public static func format(_ bytes: Int64) -> String {
        let names = ["B", "KB", "MB", "GB", "TB", "PB", "EB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1000, i < names.count - 1 { v /= 1000; i += 1 }
        return i == 0 ? "\(bytes)B" : (v >= 100 || v == v.rounded() ? String(format: "%.0f%@", v, names[i]) : String(format: "%.1f%@", v, names[i]))
    }
}

/// A transfer rate in bytes per second, written `<size>/s`.
public enum ByteRate {
    public static func parse(_ text: String) throws(ScalarError) -> Int64 {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard s.hasSuffix("/s") else { throw ScalarError("expected a rate such as '250MB/s' (a size per second)") }
        let bytes = try ByteSize.parse(String(s.dropLast(2)))
        guard bytes > 0 else { throw ScalarError("a rate must be greater than zero") }
        return bytes
    }
}

/// A fraction in 0…1, written `80%` or `0.8`.
public enum Percent {
    public static func parse(_ text: String) throws(ScalarError) -> Double {
        let s = text.trimmingCharacters(in: .whitespaces)
        let value: Double
        if s.hasSuffix("%") {
            guard let p = Double(s.dropLast()), p.isFinite else { throw ScalarError("expected a percent such as '80%' or a number between 0 and 1") }
            value = p / 100
        } else {
            guard let p = Double(s), p.isFinite else { throw ScalarError("expected a percent such as '80%' or a number between 0 and 1") }
            value = p
        }
        guard value >= 0, value <= 1 else { throw ScalarError("a percent must lie between 0% and 100%") }
        return value
    }
}

/// An instant, to the nanosecond, in UTC: the expression language's timestamp.
public typealias Timestamp = CELTimestamp

extension CELTimestamp: CustomStringConvertible {
    public init(_ date: Date) {
        let t = date.timeIntervalSince1970
        let s = t.rounded(.down)
        self.init(seconds: Int64(s), nanos: Int32(((t - s) * 1e9).rounded(.down)))
    }

    /// RFC 3339 in UTC.
    public var description: String { JSONWriter.rfc3339(self) }

    public func adding(seconds delta: Int64) -> Timestamp { Timestamp(seconds: seconds + delta, nanos: nanos) }

    static let expectation = "expected an RFC 3339 timestamp such as '2026-09-30T10:00:00Z', or a date such as '2026-09-30'"

    /// RFC 3339 (`2026-09-30T10:00:00Z`, `…+02:00`, fractions), or a bare date meaning 00:00:00Z.
    public static func parse(_ text: String) throws(ScalarError) -> Timestamp {
        let b = Array(text.trimmingCharacters(in: .whitespaces).utf8)
        func num(_ r: Range<Int>) -> Int? {
            guard r.upperBound <= b.count else { return nil }
            var v = 0
            for i in r { guard b[i] >= 48, b[i] <= 57 else { return nil }; v = v * 10 + Int(b[i] - 48) }
            return v
        }
        guard b.count >= 10, let y = num(0..<4), b[4] == 45, let mo = num(5..<7), b[7] == 45, let d = num(8..<10) else {
            throw ScalarError(expectation)
        }
        guard (1...12).contains(mo), d >= 1, d <= Civil.daysInMonth(year: y, month: mo) else {
            throw ScalarError("no such date")
        }
        var secs = Int64(Civil.days(year: y, month: mo, day: d)) * 86_400
        if b.count == 10 { return Timestamp(seconds: secs) }
        guard b.count >= 20, b[10] == 84 || b[10] == 116 || b[10] == 32, let h = num(11..<13), b[13] == 58,
              let mi = num(14..<16), b[16] == 58, let s = num(17..<19)
        else { throw ScalarError(expectation) }
        guard h < 24, mi < 60, s < 61 else { throw ScalarError("no such time of day") }
        secs += Int64(h * 3600 + mi * 60 + min(s, 59))
        var i = 19
        var nanos: Int32 = 0
        if b[i] == 46 {
            i += 1
            var digits = 0
            var frac = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 9 { frac = frac * 10 + Int(b[i] - 48); digits += 1 }
                i += 1
            }
            guard digits > 0 else { throw ScalarError(expectation) }
            for _ in digits..<9 { frac *= 10 }
            nanos = Int32(frac)
        }
        guard i < b.count else { throw ScalarError("a time needs a zone: 'Z' or an offset such as '+02:00'") }
        if b[i] == 90 || b[i] == 122 {
            guard i + 1 == b.count else { throw ScalarError(expectation) }
        } else if b[i] == 43 || b[i] == 45, i + 6 == b.count, let oh = num(i + 1..<i + 3), b[i + 3] == 58, let om = num(i + 4..<i + 6), oh < 24, om < 60 {
            let offset = Int64(oh * 3600 + om * 60)
            secs += b[i] == 43 ? -offset : offset
        } else {
            throw ScalarError(expectation)
        }
        return Timestamp(seconds: secs, nanos: nanos)
    }

}

/// Where a secret comes from. A literal is accepted by the loader but is rule DR703,
/// and is never printed: outputs show `<redacted>`.
public enum SecretRef: Hashable, Sendable {
    case env(String)
    case file(String)
    case vault(String)
    case literal

    public static func classify(_ text: String) -> SecretRef {
        for (prefix, make) in [("env:", SecretRef.env), ("file:", SecretRef.file), ("vault:", SecretRef.vault)] as [(String, (String) -> SecretRef)] {
            if text.hasPrefix(prefix), text.count > prefix.count { return make(String(text.dropFirst(prefix.count))) }
        }
        return .literal
    }

    /// The reference as written, or `<redacted>` for a literal.
    public var display: String {
        switch self {
        case .env(let n): return "env:\(n)"
        case .file(let p): return "file:\(p)"
        case .vault(let p): return "vault:\(p)"
        case .literal: return "<redacted>"
        }
    }
}

/// Object ids: `[a-z0-9][a-z0-9._-]*`, at most 128 characters.
public enum Identifier {
    public static func validate(_ s: String) throws(ScalarError) -> String {
        guard !s.isEmpty else { throw ScalarError("an id cannot be empty") }
        guard s.utf8.count <= 128 else { throw ScalarError("an id has at most 128 characters") }
        let bytes = Array(s.utf8)
        func ok(_ c: UInt8, first: Bool) -> Bool {
            (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || (!first && (c == 46 || c == 95 || c == 45))
        }
        guard ok(bytes[0], first: true), bytes.dropFirst().allSatisfy({ ok($0, first: false) }) else {
            throw ScalarError("an id uses lower-case letters, digits, '.', '_' and '-', and starts with a letter or digit")
        }
        return s
    }

    /// Rule ids such as `DR101` or `ACME-7`.
    public static func validateRule(_ s: String) throws(ScalarError) -> String {
        let bytes = Array(s.utf8)
        guard let f = bytes.first, f >= 65, f <= 90,
              bytes.allSatisfy({ ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 })
        else { throw ScalarError("a rule id is upper-case letters, digits, '_' and '-', such as 'DR702'") }
        return s
    }
}

/// Closest candidate by edit distance, for "did you mean" hints; nil when nothing is close.
public func suggestion(for word: String, among candidates: some Sequence<String>) -> String? {
    let w = Array(word.lowercased())
    var best: (String, Int)? = nil
    for c in candidates {
        let d = editDistance(w, Array(c.lowercased()))
        let limit = max(1, min(3, c.count / 3))
        if d <= limit, d < (best?.1 ?? Int.max) { best = (c, d) }
    }
    return best?.0
}
