import Foundation

/// A CEL duration: seconds plus nanoseconds, both with the same sign.
public struct CELDuration: Hashable, Comparable, Sendable {
    public var seconds: Int64
    public var nanos: Int32
    public init(seconds: Int64, nanos: Int32 = 0) { self.seconds = seconds; self.nanos = nanos }
    /// From fractional seconds, rounded to the nanosecond.
    public init(fractional s: Double) {
        let whole = s.rounded(.towardZero)
        self.init(seconds: Int64(whole), nanos: Int32(((s - whole) * 1e9).rounded()))
    }
    public var totalSeconds: Double { Double(seconds) + Double(nanos) / 1e9 }
    public static func < (a: CELDuration, b: CELDuration) -> Bool { (a.seconds, a.nanos) < (b.seconds, b.nanos) }
}

/// A CEL timestamp: seconds and nanoseconds since 1970-01-01T00:00:00Z.
public struct CELTimestamp: Hashable, Comparable, Sendable {
    public var seconds: Int64
    public var nanos: Int32
    public init(seconds: Int64, nanos: Int32 = 0) { self.seconds = seconds; self.nanos = nanos }
    public static func < (a: CELTimestamp, b: CELTimestamp) -> Bool { (a.seconds, a.nanos) < (b.seconds, b.nanos) }
}

/// An insertion-ordered map, so that JSON output is deterministic and reads in the spec's order.
/// String keys (every fact field) are indexed by the plain string, which hashes far faster
/// than the `Value` enum; other keys, rare outside map literals, are found by a scan.
public struct OrderedMap: Hashable, Sendable {
    public private(set) var entries: [(key: Value, value: Value)] = []
    private var stringIndex: [String: Int] = [:]

    public init() {}
    public init(_ pairs: [(String, Value)]) {
        entries.reserveCapacity(pairs.count)
        stringIndex.reserveCapacity(pairs.count)
        for (k, v) in pairs {
            if let i = stringIndex[k] { entries[i].value = v; continue }
            stringIndex[k] = entries.count
            entries.append((.string(k), v))
        }
    }

    private func position(of key: Value) -> Int? {
        if case .string(let s) = key { return stringIndex[s] }
        return entries.firstIndex { $0.key == key }
    }

    public subscript(key: Value) -> Value? {
        get { position(of: key).map { entries[$0].value } }
        set {
            if let i = position(of: key) {
                if let newValue { entries[i].value = newValue } else {
                    entries.remove(at: i)
                    stringIndex = [:]
                    for (j, e) in entries.enumerated() { if case .string(let s) = e.key { stringIndex[s] = j } }
                }
            } else if let newValue {
                if case .string(let s) = key { stringIndex[s] = entries.count }
                entries.append((key, newValue))
            }
        }
    }

    public subscript(field: String) -> Value? { stringIndex[field].map { entries[$0].value } }
    public var count: Int { entries.count }

    public static func == (a: OrderedMap, b: OrderedMap) -> Bool {
        a.count == b.count && a.entries.allSatisfy { b[$0.key] == $0.value }
    }
    public func hash(into h: inout Hasher) { h.combine(count) }
}

/// Every value an expression can see: CEL's types, with timestamps and durations.
/// Facts are built in this model, so `drplan facts`, policies and reports read the same data.
public indirect enum Value: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case list([Value])
    case map(OrderedMap)
    case timestamp(CELTimestamp)
    case duration(CELDuration)
    case type(String)

    public static func object(_ pairs: [(String, Value)]) -> Value { .map(OrderedMap(pairs)) }
    public static func strings(_ s: [String]) -> Value { .list(s.map(Value.string)) }
}

/// How durations appear in JSON: seconds (facts, reports) or CEL's `"90s"` strings (`drplan eval`).
public enum DurationStyle: Sendable { case seconds, celString }

/// Writes values as JSON with stable key order and two-space indentation.
public struct JSONWriter: Sendable {
    public var durations: DurationStyle
    public var pretty: Bool

    public init(durations: DurationStyle = .seconds, pretty: Bool = true) {
        self.durations = durations
        self.pretty = pretty
    }

    public func string(_ v: Value) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        write(v, into: &out, indent: 0)
        return String(decoding: out, as: UTF8.self)
    }

    /// The same text as `string(v)`, handed to `sink` in pieces of about `piece` bytes, so a
    /// report of hundreds of megabytes is never held in memory whole (as bytes, then as a
    /// String, then as Data to write it).
    public func stream(_ v: Value, piece: Int = 1 << 20, to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try streaming(piece: piece, to: sink) { out, flush in write(v, into: &out, indent: 0, flush: flush) }
    }

    /// A member of an object streamed by `stream(members:)`: a value, or a list whose items
    /// are made one at a time as they are written, so a list of 100,000 records never exists
    /// as values all at once.
    public enum Member {
        case value(Value)
        case items(count: Int, item: (Int) -> Value)

        /// The member as one value, for callers that want the whole document.
        public var value: Value {
            switch self {
            case .value(let v): v
            case .items(let count, let item): .list((0..<count).map(item))
            }
        }
    }

    /// The same text as `string(.object(members))`, streamed like `stream(_:)`.
    public func stream(members: [(String, Member)], piece: Int = 1 << 20, to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try streaming(piece: piece, to: sink) { out, flush in
            if members.isEmpty { out += [0x7B, 0x7D]; return }
            out.append(0x7B)
            for (i, (key, member)) in members.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(&out, 1)
                Self.quote(key, into: &out)
                out.append(0x3A)
                if pretty { out.append(0x20) }
                switch member {
                case .value(let v): write(v, into: &out, indent: 1, flush: flush)
                case .items(let count, let item):
                    if count == 0 { out += [0x5B, 0x5D]; break }
                    out.append(0x5B)
                    for j in 0..<count {
                        if j > 0 { out.append(0x2C) }
                        newline(&out, 2)
                        write(item(j), into: &out, indent: 2, flush: flush)
                        flush(&out)
                    }
                    newline(&out, 1)
                    out.append(0x5D)
                }
                flush(&out)
            }
            newline(&out, 0)
            out.append(0x7D)
        }
    }

    /// Runs `body` with a buffer and a flush hook that hands the buffer to `sink` whenever it
    /// holds `piece` bytes; the first error from `sink` stops the output and is thrown.
    private func streaming(piece: Int, to sink: (ArraySlice<UInt8>) throws -> Void,
                           _ body: (inout [UInt8], @escaping (inout [UInt8]) -> Void) -> Void) throws {
        var out: [UInt8] = []
        out.reserveCapacity(piece + (1 << 16))
        var failure: (any Error)? = nil
        // `write` takes its flush hook as an optional (so escaping) closure; it does not keep it.
        withoutActuallyEscaping(sink) { sink in
            body(&out) { buffer in
                guard failure == nil, buffer.count >= piece else { return }
                do { try sink(buffer[...]) } catch { failure = error }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        if let failure { throw failure }
        try sink(out[...])
    }

    /// `flush` is offered the buffer after each list item and object member.
    func write(_ v: Value, into out: inout [UInt8], indent: Int, flush: ((inout [UInt8]) -> Void)? = nil) {
        switch v {
        case .null: out += Self.nullBytes
        case .bool(let b): out += b ? Self.trueBytes : Self.falseBytes
        case .int(let i): out += String(i).utf8
        case .uint(let u): out += String(u).utf8
        case .double(let d): out += Self.number(d).utf8
        case .string(let s): Self.quote(s, into: &out)
        case .bytes(let b): Self.quote(Data(b).base64EncodedString(), into: &out)
        case .type(let t): Self.quote(t, into: &out)
        case .timestamp(let t): Self.quote(Self.rfc3339(t), into: &out)
        case .duration(let d):
            switch durations {
            case .seconds: out += (d.nanos == 0 ? String(d.seconds) : Self.number(d.totalSeconds)).utf8
            case .celString: Self.quote(Self.celDuration(d), into: &out)
            }
        case .list(let items):
            if items.isEmpty { out += [0x5B, 0x5D]; return }
            out.append(0x5B)
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(&out, indent + 1)
                write(item, into: &out, indent: indent + 1, flush: flush)
                flush?(&out)
            }
            newline(&out, indent)
            out.append(0x5D)
        case .map(let m):
            if m.count == 0 { out += [0x7B, 0x7D]; return }
            out.append(0x7B)
            for (i, e) in m.entries.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(&out, indent + 1)
                switch e.key {
                case .string(let s): Self.quote(s, into: &out)
                default:
                    var k: [UInt8] = []
                    write(e.key, into: &k, indent: 0)
                    Self.quote(String(decoding: k, as: UTF8.self), into: &out)
                }
                out.append(0x3A)
                if pretty { out.append(0x20) }
                write(e.value, into: &out, indent: indent + 1, flush: flush)
                flush?(&out)
            }
            newline(&out, indent)
            out.append(0x7D)
        }
    }

    static let nullBytes = Array("null".utf8), trueBytes = Array("true".utf8), falseBytes = Array("false".utf8)

    func newline(_ out: inout [UInt8], _ indent: Int) {
        guard pretty else { return }
        out.append(0x0A)
        for _ in 0..<(indent * 2) { out.append(0x20) }
    }

    public static func number(_ d: Double) -> String {
        guard d.isFinite else { return d.isNaN ? "\"NaN\"" : (d > 0 ? "\"Infinity\"" : "\"-Infinity\"") }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    /// A JSON string literal. Bytes pass through unless they must be escaped; UTF-8 stays UTF-8.
    public static func quote(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
            default: out.append(b)
            }
        }
        out.append(0x22)
    }

    /// RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits. Hand-formatted: this runs for every
    /// timestamp in a report, and `String(format:)` was a measurable share of large checks.
    public static func rfc3339(_ t: CELTimestamp) -> String {
        let day = Civil.floorDiv(Int(t.seconds), 86_400)
        let sod = Int(t.seconds) - day * 86_400
        let (y, m, d) = Civil.date(days: day)
        var b: [UInt8] = []
        b.reserveCapacity(30)
        func digits(_ v: Int, _ width: Int) {
            var x = v, buf = [UInt8](repeating: 48, count: width)
            for i in stride(from: width - 1, through: 0, by: -1) { buf[i] = UInt8(48 + x % 10); x /= 10 }
            b += buf
        }
        digits(y, 4); b.append(45); digits(m, 2); b.append(45); digits(d, 2); b.append(84)
        digits(sod / 3600, 2); b.append(58); digits(sod / 60 % 60, 2); b.append(58); digits(sod % 60, 2)
        if t.nanos != 0 {
            b.append(46)
            if t.nanos % 1_000_000 == 0 { digits(Int(t.nanos / 1_000_000), 3) }
            else if t.nanos % 1000 == 0 { digits(Int(t.nanos / 1000), 6) }
            else { digits(Int(t.nanos), 9) }
        }
        b.append(90)
        return String(decoding: b, as: UTF8.self)
    }

    /// Lower-case hexadecimal of bytes (digests, fingerprints, object ids). Inlinable so each
    /// caller gets a version specialised to its byte sequence: the generic one was a fifth of
    /// an incremental backup, which hexes every object id of its parent snapshot.
    @inlinable
    public static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(hexDigit(byte >> 4))
            out.append(hexDigit(byte & 15))
        }
        return String(decoding: out, as: UTF8.self)
    }

    @usableFromInline
    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 48 + v : 87 + v }

    /// CEL's duration text: `"90s"`, `"1.5s"`.
    public static func celDuration(_ d: CELDuration) -> String {
        if d.nanos == 0 { return "\(d.seconds)s" }
        var frac = String(format: "%09d", abs(Int(d.nanos)))
        while frac.hasSuffix("0") { frac.removeLast() }
        let sign = (d.seconds < 0 || d.nanos < 0) ? "-" : ""
        return "\(sign)\(abs(d.seconds)).\(frac)s"
    }
}
