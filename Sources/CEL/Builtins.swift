import Foundation

/// The standard function library, with drplan's `quantity()` and `rate()`.
public enum Builtins {
    /// A host function (drplan's `quantity`, `rate`), passed to `Program.evaluate`.
    public typealias Function = @Sendable ([Value]) throws(EvalError) -> Value

    /// Every function name the library knows, for load-time checks of policies.
    public static let functionNames: Set<String> = [
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "bytes", "bool", "type",
        "dyn", "duration", "timestamp", "getFullYear", "getMonth", "getDayOfMonth", "getDate", "getDayOfWeek", "getDayOfYear",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
        "==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%", "!", "neg", "[]",
    ]

    public static func typeName(_ v: Value) -> String {
        switch v {
        case .null: return "null_type"
        case .bool: return "bool"
        case .int: return "int"
        case .uint: return "uint"
        case .double: return "double"
        case .string: return "string"
        case .bytes: return "bytes"
        case .list: return "list"
        case .map: return "map"
        case .timestamp: return "google.protobuf.Timestamp"
        case .duration: return "google.protobuf.Duration"
        case .type: return "type"
        }
    }

    static func noOverload(_ name: String, _ args: [Value]) -> EvalError {
        EvalError("no matching overload for '\(name)' applied to (\(args.map(typeName).joined(separator: ", ")))")
    }

    // MARK: dispatch

    static func call(_ name: String, _ a: [Value], receiver: Bool, extensions: [String: Function] = [:]) throws(EvalError) -> Value {
        switch (name, a.count) {
        case ("==", 2): return .bool(equals(a[0], a[1]))
        case ("!=", 2): return .bool(!equals(a[0], a[1]))
        case ("<", 2), ("<=", 2), (">", 2), (">=", 2):
            guard let c = try compare(a[0], a[1]) else { return .bool(false) }
            switch name {
            case "<": return .bool(c < 0)
            case "<=": return .bool(c <= 0)
            case ">": return .bool(c > 0)
            default: return .bool(c >= 0)
            }
        case ("!", 1):
            guard case .bool(let b) = a[0] else { throw noOverload("!_", a) }
            return .bool(!b)
        case ("neg", 1):
            switch a[0] {
            case .int(let i):
                guard i != Int64.min else { throw EvalError("return error for overflow") }
                return .int(-i)
            case .double(let d): return .double(-d)
            case .duration(let d): return .duration(try CELTime.duration(nanos: -CELTime.nanos(d)))
            default: throw noOverload("-_", a)
            }
        case ("+", 2), ("-", 2), ("*", 2), ("/", 2), ("%", 2): return try arithmetic(name, a[0], a[1])
        case ("in", 2): return .bool(try contains(a[1], a[0]))
        case ("[]", 2): return try index(a[0], a[1])
        case ("size", 1): return .int(try size(a[0]))
        case ("contains", 2), ("startsWith", 2), ("endsWith", 2):
            guard receiver, case .string(let s) = a[0], case .string(let t) = a[1] else { throw noOverload(name, a) }
            if name == "contains" { return .bool(t.isEmpty || s.contains(t)) }
            return .bool(name == "startsWith" ? s.unicodeScalars.starts(with: t.unicodeScalars) : s.unicodeScalars.reversed().starts(with: t.unicodeScalars.reversed()))
        case ("matches", 2):
            guard case .string(let s) = a[0], case .string(let pattern) = a[1] else { throw noOverload(name, a) }
            return .bool(try matches(s, pattern))
        case ("int", 1): return try toInt(a[0])
        case ("uint", 1): return try toUint(a[0])
        case ("double", 1): return try toDouble(a[0])
        case ("string", 1): return try toString(a[0])
        case ("bytes", 1):
            switch a[0] {
            case .bytes: return a[0]
            case .string(let s): return .bytes(Array(s.utf8))
            default: throw noOverload(name, a)
            }
        case ("bool", 1):
            switch a[0] {
            case .bool: return a[0]
            case .string(let s):
                switch s {
                case "1", "t", "true", "TRUE", "True": return .bool(true)
                case "0", "f", "false", "FALSE", "False": return .bool(false)
                default: throw EvalError("cannot convert '\(s)' to bool")
                }
            default: throw noOverload(name, a)
            }
        case ("type", 1): return .type(typeName(a[0]))
        case ("dyn", 1): return a[0]
        case ("duration", 1):
            switch a[0] {
            case .duration: return a[0]
            case .string(let s): return .duration(try CELTime.parseDuration(s))
            default: throw noOverload(name, a)
            }
        case ("timestamp", 1):
            switch a[0] {
            case .timestamp: return a[0]
            case .string(let s):
                guard case .success(let t) = CELTime.parseTimestamp(s) else { throw EvalError("invalid timestamp '\(s)'") }
                return .timestamp(try CELTime.checkTimestamp(t))
            case .int(let i): return .timestamp(try CELTime.checkTimestamp(CELTimestamp(seconds: i)))
            default: throw noOverload(name, a)
            }
        case ("getFullYear", _), ("getMonth", _), ("getDayOfMonth", _), ("getDate", _), ("getDayOfWeek", _), ("getDayOfYear", _),
             ("getHours", _), ("getMinutes", _), ("getSeconds", _), ("getMilliseconds", _):
            return try accessor(name, a)
        default:
            if let ext = extensions[name] { return try ext(a) }
            throw EvalError("no such function '\(name)' with \(a.count) argument\(a.count == 1 ? "" : "s")")
        }
    }

    // MARK: equality and ordering

    /// CEL equality: numbers compare by value across int, uint and double; other types by
    /// structure; values of different kinds are unequal (never an error).
    public static func equals(_ x: Value, _ y: Value) -> Bool {
        switch (x, y) {
        case (.int, _), (.uint, _), (.double, _):
            guard isNumber(y), let c = numericCompare(x, y) else { return false }
            return c == 0
        case (.list(let a), .list(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { equals($0, $1) }
        case let (.string(a), .string(b)):
            return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.map(let a), .map(let b)):
            guard a.count == b.count else { return false }
            for (k, v) in a.entries {
                guard let w = mapGet(b, k), equals(v, w) else { return false }
            }
            return true
        default:
            return x == y
        }
    }

    static func isNumber(_ v: Value) -> Bool {
        switch v { case .int, .uint, .double: return true; default: return false }
    }

    /// -1, 0, 1, or nil when unordered (NaN).
    static func numericCompare(_ x: Value, _ y: Value) -> Int? {
        func sign<T: Comparable>(_ a: T, _ b: T) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        switch (x, y) {
        case let (.int(a), .int(b)): return sign(a, b)
        case let (.uint(a), .uint(b)): return sign(a, b)
        case let (.double(a), .double(b)): return a.isNaN || b.isNaN ? nil : sign(a, b)
        case let (.int(a), .uint(b)): return a < 0 ? -1 : sign(UInt64(a), b)
        case let (.uint(a), .int(b)): return b < 0 ? 1 : sign(a, UInt64(b))
        case let (.int(a), .double(b)): return compareIntDouble(a, b)
        case let (.double(a), .int(b)): return compareIntDouble(b, a).map { -$0 }
        case let (.uint(a), .double(b)): return compareUintDouble(a, b)
        case let (.double(a), .uint(b)): return compareUintDouble(b, a).map { -$0 }
        default: return nil
        }
    }

    /// CEL compares an integer with a double by converting the integer to double, lossy as
    /// that is (the conformance data pins it: 9223372036854775807 is not < 9223372036854775808.0).
    static func compareIntDouble(_ a: Int64, _ b: Double) -> Int? {
        if b.isNaN { return nil }
        let x = Double(a)
        return x < b ? -1 : (x > b ? 1 : 0)
    }

    static func compareUintDouble(_ a: UInt64, _ b: Double) -> Int? {
        if b.isNaN { return nil }
        let x = Double(a)
        return x < b ? -1 : (x > b ? 1 : 0)
    }

    static func compare(_ x: Value, _ y: Value) throws(EvalError) -> Int? {
        func sign<T: Comparable>(_ a: T, _ b: T) -> Int { a < b ? -1 : (a > b ? 1 : 0) }
        if isNumber(x), isNumber(y) { return numericCompare(x, y) }
        switch (x, y) {
        case let (.string(a), .string(b)):
            // By code point, as CEL specifies (Swift's String comparison uses canonical equivalence).
            if a.unicodeScalars.elementsEqual(b.unicodeScalars) { return 0 }
            return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) ? -1 : 1
        case let (.bytes(a), .bytes(b)): return a.lexicographicallyPrecedes(b) ? -1 : (a == b ? 0 : 1)
        case let (.bool(a), .bool(b)): return a == b ? 0 : (a ? 1 : -1)
        case let (.timestamp(a), .timestamp(b)): return sign(a, b)
        case let (.duration(a), .duration(b)): return sign(a, b)
        default: throw noOverload("_<_", [x, y])
        }
    }

    /// Map lookup with CEL's numeric key equivalence (`{1u: 'a'}[1]`).
    public static func mapGet(_ m: OrderedMap, _ k: Value) -> Value? {
        if let v = m[k] { return v }
        guard isNumber(k) else { return nil }
        for e in m.entries where isNumber(e.key) && numericCompare(e.key, k) == 0 { return e.value }
        return nil
    }

    // MARK: operators

    static func arithmetic(_ op: String, _ x: Value, _ y: Value) throws(EvalError) -> Value {
        func overflow() -> EvalError { EvalError("return error for overflow") }
        switch (x, y) {
        case let (.int(a), .int(b)):
            switch op {
            case "+": let (r, o) = a.addingReportingOverflow(b); if o { throw overflow() }; return .int(r)
            case "-": let (r, o) = a.subtractingReportingOverflow(b); if o { throw overflow() }; return .int(r)
            case "*": let (r, o) = a.multipliedReportingOverflow(by: b); if o { throw overflow() }; return .int(r)
            case "/":
                guard b != 0 else { throw EvalError("division by zero") }
                let (r, o) = a.dividedReportingOverflow(by: b); if o { throw overflow() }; return .int(r)
            default:
                guard b != 0 else { throw EvalError("modulus by zero") }
                let (r, o) = a.remainderReportingOverflow(dividingBy: b); if o { throw overflow() }; return .int(r)
            }
        case let (.uint(a), .uint(b)):
            switch op {
            case "+": let (r, o) = a.addingReportingOverflow(b); if o { throw overflow() }; return .uint(r)
            case "-": let (r, o) = a.subtractingReportingOverflow(b); if o { throw overflow() }; return .uint(r)
            case "*": let (r, o) = a.multipliedReportingOverflow(by: b); if o { throw overflow() }; return .uint(r)
            case "/": guard b != 0 else { throw EvalError("division by zero") }; return .uint(a / b)
            default: guard b != 0 else { throw EvalError("modulus by zero") }; return .uint(a % b)
            }
        case let (.double(a), .double(b)):
            switch op {
            case "+": return .double(a + b)
            case "-": return .double(a - b)
            case "*": return .double(a * b)
            case "/": return .double(a / b)
            default: throw noOverload("_%_", [x, y])
            }
        case let (.string(a), .string(b)) where op == "+": return .string(a + b)
        case let (.bytes(a), .bytes(b)) where op == "+": return .bytes(a + b)
        case let (.list(a), .list(b)) where op == "+": return .list(a + b)
        case let (.duration(a), .duration(b)) where op == "+" || op == "-":
            return .duration(try CELTime.duration(nanos: op == "+" ? CELTime.nanos(a) + CELTime.nanos(b) : CELTime.nanos(a) - CELTime.nanos(b)))
        case let (.timestamp(a), .duration(b)) where op == "+" || op == "-":
            return .timestamp(try CELTime.timestamp(nanos: op == "+" ? CELTime.nanos(a) + CELTime.nanos(b) : CELTime.nanos(a) - CELTime.nanos(b)))
        case let (.duration(a), .timestamp(b)) where op == "+":
            return .timestamp(try CELTime.timestamp(nanos: CELTime.nanos(a) + CELTime.nanos(b)))
        case let (.timestamp(a), .timestamp(b)) where op == "-":
            return .duration(try CELTime.duration(nanos: CELTime.nanos(a) - CELTime.nanos(b)))
        default:
            throw noOverload("_\(op)_", [x, y])
        }
    }

    static func contains(_ container: Value, _ item: Value) throws(EvalError) -> Bool {
        switch container {
        case .list(let items): return items.contains { equals($0, item) }
        case .map(let m): return mapGet(m, item) != nil
        default: throw noOverload("@in", [item, container])
        }
    }

    static func index(_ c: Value, _ i: Value) throws(EvalError) -> Value {
        switch c {
        case .list(let items):
            let n: Int64
            switch i {
            case .int(let v): n = v
            case .uint(let v): n = v > UInt64(Int64.max) ? Int64.max : Int64(v)
            case .double(let d):
                guard d == d.rounded(), abs(d) < 9.2e18 else { throw EvalError("invalid list index \(d)") }
                n = Int64(d)
            default: throw noOverload("_[_]", [c, i])
            }
            guard n >= 0, n < items.count else { throw EvalError("index out of range: \(n)") }
            return items[Int(n)]
        case .map(let m):
            switch i {
            case .int, .uint, .double, .bool, .string: break
            default: throw EvalError("unsupported key type '\(typeName(i))'")
            }
            guard let v = mapGet(m, i) else { throw EvalError("no such key: \(i)") }
            return v
        default:
            throw noOverload("_[_]", [c, i])
        }
    }

    static func size(_ v: Value) throws(EvalError) -> Int64 {
        switch v {
        case .string(let s): return Int64(s.unicodeScalars.count)
        case .bytes(let b): return Int64(b.count)
        case .list(let l): return Int64(l.count)
        case .map(let m): return Int64(m.count)
        default: throw noOverload("size", [v])
        }
    }

    /// RE2-style partial match (the pattern may match anywhere), in linear time (Regex.swift).
    static func matches(_ s: String, _ pattern: String) throws(EvalError) -> Bool {
        do { return try RE2Regex.compiled(pattern).matches(s) } catch { throw EvalError(error.description) }
    }

    // MARK: conversions

    static func toInt(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .int: return v
        case .uint(let u):
            guard u <= UInt64(Int64.max) else { throw EvalError("range error converting \(u) to int") }
            return .int(Int64(u))
        case .double(let d):
            guard d.isFinite, d > -9_223_372_036_854_775_809.0, d < 9_223_372_036_854_775_807.0 else { throw EvalError("range error converting \(d) to int") }
            return .int(Int64(d.rounded(.towardZero)))
        case .string(let s):
            guard let i = Int64(s) else { throw EvalError("cannot convert '\(s)' to int") }
            return .int(i)
        case .timestamp(let t): return .int(t.seconds)
        default: throw noOverload("int", [v])
        }
    }

    static func toUint(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .uint: return v
        case .int(let i):
            guard i >= 0 else { throw EvalError("range error converting \(i) to uint") }
            return .uint(UInt64(i))
        case .double(let d):
            guard d.isFinite, d > -1, d < 18_446_744_073_709_551_616.0 else { throw EvalError("range error converting \(d) to uint") }
            return .uint(UInt64(d.rounded(.towardZero)))
        case .string(let s):
            guard let u = UInt64(s) else { throw EvalError("cannot convert '\(s)' to uint") }
            return .uint(u)
        default: throw noOverload("uint", [v])
        }
    }

    static func toDouble(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .double: return v
        case .int(let i): return .double(Double(i))
        case .uint(let u): return .double(Double(u))
        case .string(let s):
            let t = s.lowercased()
            if t == "nan" { return .double(.nan) }
            if t == "inf" || t == "+inf" || t == "infinity" { return .double(.infinity) }
            if t == "-inf" || t == "-infinity" { return .double(-.infinity) }
            guard let d = Double(s) else { throw EvalError("cannot convert '\(s)' to double") }
            return .double(d)
        default: throw noOverload("double", [v])
        }
    }

    static func toString(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .string: return v
        case .int(let i): return .string(String(i))
        case .uint(let u): return .string(String(u))
        case .double(let d): return .string(formatDouble(d))
        case .bool(let b): return .string(b ? "true" : "false")
        case .bytes(let b):
            guard let s = String(validating: b, as: UTF8.self) else { throw EvalError("invalid UTF-8 in bytes converted to string") }
            return .string(s)
        case .timestamp(let t): return .string(JSONWriter.rfc3339(t))
        case .duration(let d): return .string(JSONWriter.celDuration(d))
        case .type(let t): return .string(t)
        default: throw noOverload("string", [v])
        }
    }

    /// Doubles print in their shortest round-trip form; whole numbers without a fraction (`1e+06`-style above 1e21).
    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "+Inf" : "-Inf" }
        if d == d.rounded(), abs(d) < 1e21 { return String(format: "%.0f", d) }
        return "\(d)"
    }

    // MARK: timestamp and duration accessors

    static func accessor(_ name: String, _ a: [Value]) throws(EvalError) -> Value {
        if case .duration(let d) = a.first, a.count == 1 {
            let total = CELTime.nanos(d)
            switch name {
            case "getHours": return .int(Int64(total / 3_600_000_000_000))
            case "getMinutes": return .int(Int64(total / 60_000_000_000))
            case "getSeconds": return .int(Int64(total / 1_000_000_000))
            case "getMilliseconds": return .int(Int64((total % 1_000_000_000) / 1_000_000))
            default: throw noOverload(name, a)
            }
        }
        guard case .timestamp(let t) = a.first, a.count <= 2 else { throw noOverload(name, a) }
        var offset = 0
        if a.count == 2 {
            guard case .string(let zone) = a[1] else { throw noOverload(name, a) }
            offset = try CELTime.offset(zone: zone, at: t)
        }
        let local = Int(t.seconds) + offset
        let day = Civil.floorDiv(local, 86_400)
        let sod = local - day * 86_400
        let (y, m, d) = Civil.date(days: day)
        switch name {
        case "getFullYear": return .int(Int64(y))
        case "getMonth": return .int(Int64(m - 1))
        case "getDayOfMonth": return .int(Int64(d - 1))
        case "getDate": return .int(Int64(d))
        case "getDayOfWeek": return .int(Int64(Civil.weekday(days: day)))
        case "getDayOfYear": return .int(Int64(day - Civil.days(year: y, month: 1, day: 1)))
        case "getHours": return .int(Int64(sod / 3600))
        case "getMinutes": return .int(Int64(sod / 60 % 60))
        case "getSeconds": return .int(Int64(sod % 60))
        default: return .int(Int64(t.nanos / 1_000_000))
        }
    }
}
