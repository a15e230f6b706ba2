import Foundation

/// Timestamps and durations as CEL defines them: nanosecond precision, timestamps within
/// years 1…9999, durations within what int64 nanoseconds hold (about ±292 years).
public enum CELTime {
    public static let minTimestampSeconds: Int64 = -62_135_596_800      // 0001-01-01T00:00:00Z
    public static let maxTimestampSeconds: Int64 = 253_402_300_799      // 9999-12-31T23:59:59Z

    static func checkTimestamp(_ t: CELTimestamp) throws(EvalError) -> CELTimestamp {
        guard t.seconds >= minTimestampSeconds, t.seconds <= maxTimestampSeconds else { throw EvalError("timestamp out of range") }
        return t
    }

    static func checkDuration(_ d: CELDuration) throws(EvalError) -> CELDuration {
        let n = nanos(d)
        guard n >= Int128(Int64.min), n <= Int128(Int64.max) else { throw EvalError("duration out of range") }
        return d
    }

    static func nanos(_ d: CELDuration) -> Int128 { Int128(d.seconds) * 1_000_000_000 + Int128(d.nanos) }
    static func nanos(_ t: CELTimestamp) -> Int128 { Int128(t.seconds) * 1_000_000_000 + Int128(t.nanos) }

    static func duration(nanos n: Int128) throws(EvalError) -> CELDuration {
        let s = n / 1_000_000_000
        guard s >= Int128(Int64.min), s <= Int128(Int64.max) else { throw EvalError("duration out of range") }
        return try checkDuration(CELDuration(seconds: Int64(s), nanos: Int32(n % 1_000_000_000)))
    }

    static func timestamp(nanos n: Int128) throws(EvalError) -> CELTimestamp {
        var s = n / 1_000_000_000
        var r = n % 1_000_000_000
        if r < 0 { r += 1_000_000_000; s -= 1 }
        guard s >= Int128(Int64.min), s <= Int128(Int64.max) else { throw EvalError("timestamp out of range") }
        return try checkTimestamp(CELTimestamp(seconds: Int64(s), nanos: Int32(r)))
    }

    /// Go-style durations, as CEL's `duration()` takes them: `1h30m`, `1.5s`, `-300ms`, `10us`.
    public static func parseDuration(_ text: String) throws(EvalError) -> CELDuration {
        var chars = Array(text.unicodeScalars)[...]
        var negative = false
        if chars.first == "-" || chars.first == "+" { negative = chars.first == "-"; chars = chars.dropFirst() }
        if chars.count == 1 && chars.first == "0" { return CELDuration(seconds: 0) }
        guard !chars.isEmpty else { throw EvalError("invalid duration '\(text)'") }
        var total: Int128 = 0
        while !chars.isEmpty {
            var whole: Int128 = 0, frac: Int128 = 0, fracScale: Int128 = 1, digits = 0
            while let c = chars.first, ("0"..."9").contains(c) { whole = whole * 10 + Int128(c.value - 48); chars = chars.dropFirst(); digits += 1; if whole > Int128(Int64.max) { throw EvalError("duration out of range") } }
            if chars.first == "." {
                chars = chars.dropFirst()
                while let c = chars.first, ("0"..."9").contains(c) {
                    if fracScale < 1_000_000_000_000_000_000 { frac = frac * 10 + Int128(c.value - 48); fracScale *= 10 }
                    chars = chars.dropFirst(); digits += 1
                }
            }
            guard digits > 0 else { throw EvalError("invalid duration '\(text)'") }
            var unit = ""
            while let c = chars.first, !("0"..."9").contains(c), c != "." { unit.unicodeScalars.append(c); chars = chars.dropFirst() }
            let scale: Int128
            switch unit {
            case "ns": scale = 1
            case "us", "µs", "μs": scale = 1_000
            case "ms": scale = 1_000_000
            case "s": scale = 1_000_000_000
            case "m": scale = 60_000_000_000
            case "h": scale = 3_600_000_000_000
            default: throw EvalError("invalid duration '\(text)': unknown unit '\(unit)'")
            }
            total += whole * scale + frac * scale / fracScale
        }
        return try duration(nanos: negative ? -total : total)
    }

    /// CEL's duration spelling: seconds with the fraction CEL prints (`"1.5s"`, `"-0.001s"`).
    public static func format(_ d: CELDuration) -> String { JSONWriter.celDuration(d) }

    /// RFC 3339 timestamp: `2009-02-13T23:31:30Z`, fractions of any length, `Z` or an offset.
    /// With `allowDate`, a bare `YYYY-MM-DD` means midnight UTC (the inventory's form).
    public static func parseTimestamp(_ text: String, allowDate: Bool = false) -> Result<CELTimestamp, TimestampError> {
        let b = Array(text.utf8)
        func num(_ r: Range<Int>) -> Int? {
            guard r.upperBound <= b.count else { return nil }
            var v = 0
            for i in r { guard b[i] >= 48, b[i] <= 57 else { return nil }; v = v * 10 + Int(b[i] - 48) }
            return v
        }
        guard b.count >= 10, let y = num(0..<4), b[4] == 45, let mo = num(5..<7), b[7] == 45, let d = num(8..<10) else { return .failure(.malformed) }
        guard (1...12).contains(mo), d >= 1, d <= Civil.daysInMonth(year: y, month: mo) else { return .failure(.noSuchDate) }
        var secs = Int64(Civil.days(year: y, month: mo, day: d)) * 86_400
        if b.count == 10 { return allowDate ? .success(CELTimestamp(seconds: secs)) : .failure(.malformed) }
        guard b.count >= 20, b[10] == 84 || b[10] == 116 || (allowDate && b[10] == 32), let h = num(11..<13), b[13] == 58,
              let mi = num(14..<16), b[16] == 58, let s = num(17..<19)
        else { return .failure(.malformed) }
        guard h < 24, mi < 60, s < 61 else { return .failure(.noSuchTime) }
        secs += Int64(h * 3600 + mi * 60 + min(s, 59))
        var i = 19
        var nanos: Int32 = 0
        if b[i] == 46 {
            i += 1
            var digits = 0, frac = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 9 { frac = frac * 10 + Int(b[i] - 48); digits += 1 }
                i += 1
            }
            guard digits > 0 else { return .failure(.malformed) }
            for _ in digits..<9 { frac *= 10 }
            nanos = Int32(frac)
        }
        guard i < b.count else { return .failure(.missingZone) }
        if b[i] == 90 || b[i] == 122 {
            guard i + 1 == b.count else { return .failure(.malformed) }
        } else if b[i] == 43 || b[i] == 45, i + 6 == b.count, let oh = num(i + 1..<i + 3), b[i + 3] == 58, let om = num(i + 4..<i + 6), oh < 24, om < 60 {
            let offset = Int64(oh * 3600 + om * 60)
            secs += b[i] == 43 ? -offset : offset
        } else {
            return .failure(.malformed)
        }
        return .success(CELTimestamp(seconds: secs, nanos: nanos))
    }

    public enum TimestampError: Error, Sendable {
        case malformed, noSuchDate, noSuchTime, missingZone
    }

    /// The UTC offset, in seconds, of a time zone given as an IANA name or `±HH:MM`, at an instant.
    static func offset(zone: String, at t: CELTimestamp) throws(EvalError) -> Int {
        // A fixed offset: `+02:00`, `-08:00`, or `02:00` (positive).
        var u = Array(zone.utf8)
        var sign = 1
        if u.count == 6, u[0] == 43 || u[0] == 45 { sign = u[0] == 43 ? 1 : -1; u.removeFirst() }
        if u.count == 5, u[2] == 58, let h = Int(String(decoding: u[0..<2], as: UTF8.self)), let m = Int(String(decoding: u[3..<5], as: UTF8.self)) {
            return sign * (h * 3600 + m * 60)
        }
        if zone == "UTC" || zone == "Z" { return 0 }
        guard let tz = TimeZone(identifier: zone) else { throw EvalError("unknown time zone '\(zone)'") }
        return tz.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t.seconds)))
    }
}
