import Foundation

/// An evaluation failure: CEL's error value. `&&`, `||` and the macros absorb it where the
/// spec says so; everywhere else it propagates to the caller, never as a silent result.
public struct EvalError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public var offset: Int
    /// The evaluation ran out of its budget (`EvalLimits`). Never absorbed by `&&`, `||` or a
    /// macro: a result computed from part of the work would be a guess.
    public var exhausted = false
    public init(_ message: String, at offset: Int = 0, exhausted: Bool = false) {
        self.message = message
        self.offset = offset
        self.exhausted = exhausted
    }
    public var description: String { message }
}

/// What one evaluation may cost, so that no expression, however written, can hang drplan or
/// exhaust its memory: evaluation steps (a node evaluated, a comprehension element visited),
/// and bytes of values created (strings and bytes by length, lists and maps at 16 bytes per
/// element). Policies can raise them (`policy.limits`, docs/policies.md).
public struct EvalLimits: Sendable, Equatable {
    public var steps: Int
    public var bytes: Int
    public init(steps: Int = 1_000_000, bytes: Int = 64 << 20) { self.steps = steps; self.bytes = bytes }
    public static let `default` = EvalLimits()
}

/// A parsed expression, ready to evaluate many times against different bindings.
public struct Program: Sendable {
    public let source: String
    public let root: Expr

    public init(_ source: String, macros: Bool = true) throws(CELError) {
        self.source = source
        root = try CELParser.parse(source, macros: macros)
    }

    /// Evaluates against `bindings`, with optional host `functions` beyond the standard
    /// library, within `limits`.
    public func evaluate(_ bindings: [String: Value], functions: [String: Builtins.Function] = [:], limits: EvalLimits = .default) throws(EvalError) -> Value {
        var i = Interpreter(globals: bindings, functions: functions, limits: limits)
        return try i.eval(root)
    }
}

/// Names that denote types when no variable shadows them.
let typeNames: [String: String] = [
    "int": "int", "uint": "uint", "double": "double", "bool": "bool", "string": "string", "bytes": "bytes",
    "list": "list", "map": "map", "null_type": "null_type", "type": "type",
    "google.protobuf.Timestamp": "google.protobuf.Timestamp", "google.protobuf.Duration": "google.protobuf.Duration",
]

struct Interpreter {
    let globals: [String: Value]
    let functions: [String: Builtins.Function]
    var locals: [(String, Value)] = []
    let limits: EvalLimits
    var steps = 0
    var bytes = 0

    init(globals: [String: Value], functions: [String: Builtins.Function] = [:], limits: EvalLimits = .default) {
        self.globals = globals
        self.functions = functions
        self.limits = limits
    }

    mutating func step(at offset: Int) throws(EvalError) {
        steps += 1
        if steps > limits.steps {
            throw EvalError("evaluation budget exceeded: more than \(limits.steps) steps; simplify the expression, or raise policy.limits.steps", at: offset, exhausted: true)
        }
    }

    /// Counts what a value created costs; values bound from the facts are not counted.
    mutating func charge(_ v: Value, at offset: Int) throws(EvalError) {
        switch v {
        case .string(let s): bytes += s.utf8.count
        case .bytes(let b): bytes += b.count
        case .list(let l): bytes += 16 * l.count
        case .map(let m): bytes += 32 * m.count
        default: return
        }
        if bytes > limits.bytes {
            throw EvalError("evaluation budget exceeded: the values it creates pass \(limits.bytes) bytes; simplify the expression, or raise policy.limits.memory", at: offset, exhausted: true)
        }
    }

    func lookup(_ name: String) -> Value? {
        for (n, v) in locals.reversed() where n == name { return v }
        if name.hasPrefix(".") { return globals[String(name.dropFirst())] ?? typeNames[String(name.dropFirst())].map(Value.type) }
        return globals[name] ?? typeNames[name].map(Value.type)
    }

    /// `a.b.c` as one dotted name, when the chain is made of identifiers only.
    func qualifiedName(_ e: Expr) -> String? {
        switch e.kind {
        case .ident(let n): return n
        case .select(let operand, let field, testOnly: false): return qualifiedName(operand).map { $0 + "." + field }
        default: return nil
        }
    }

    mutating func eval(_ e: Expr) throws(EvalError) -> Value {
        try step(at: e.offset)
        switch e.kind {
        case .literal(let v):
            return v
        case .ident(let name):
            guard let v = lookup(name) else { throw EvalError("undeclared reference to '\(name)'", at: e.offset) }
            return v
        case .select(let operand, let field, let testOnly):
            if !testOnly, let q = qualifiedName(operand), !locals.contains(where: { $0.0 == q.split(separator: ".").first.map(String.init) }) {
                let full = q + "." + field
                if let v = globals[full.hasPrefix(".") ? String(full.dropFirst()) : full] ?? typeNames[full.hasPrefix(".") ? String(full.dropFirst()) : full].map(Value.type) { return v }
            }
            let base = try eval(operand)
            guard case .map(let m) = base else {
                throw EvalError("type '\(Builtins.typeName(base))' does not support field selection", at: e.offset)
            }
            if testOnly { return .bool(m[field] != nil) }
            guard let v = m[field] else { throw EvalError("no such key: '\(field)'", at: e.offset) }
            return v
        case .list(let items):
            var out: [Value] = []
            out.reserveCapacity(items.count)
            for i in items { out.append(try eval(i)) }
            try charge(.list(out), at: e.offset)
            return .list(out)
        case .map(let entries):
            var m = OrderedMap()
            for (ke, ve) in entries {
                let k = try eval(ke)
                switch k {
                case .int, .uint, .bool, .string: break
                default: throw EvalError("unsupported key type '\(Builtins.typeName(k))'", at: ke.offset)
                }
                if Builtins.mapGet(m, k) != nil { throw EvalError("duplicate map key", at: ke.offset) }
                m[k] = try eval(ve)
            }
            try charge(.map(m), at: e.offset)
            return .map(m)
        case .comprehension(let c):
            return try comprehension(c, at: e.offset)
        case .call(let name, let target, let args):
            switch name {
            case "&&", "||": return try logical(name == "&&", args[0], args[1], at: e.offset)
            case "?:":
                guard case .bool(let b) = try eval(args[0]) else { throw EvalError("no matching overload for '_?_:_'", at: e.offset) }
                return try eval(b ? args[1] : args[2])
            default:
                var values: [Value] = []
                values.reserveCapacity(args.count + 1)
                if let target { values.append(try eval(target)) }
                for a in args { values.append(try eval(a)) }
                let result: Value
                do {
                    result = try Builtins.call(name, values, receiver: target != nil, extensions: functions)
                } catch {
                    throw EvalError(error.message, at: e.offset)
                }
                try charge(result, at: e.offset)
                return result
            }
        }
    }

    /// `&&` and `||` are commutative over errors: `false && error` is false, `error && false` too.
    mutating func logical(_ isAnd: Bool, _ a: Expr, _ b: Expr, at: Int) throws(EvalError) -> Value {
        var firstError: EvalError? = nil
        var sawOther = false
        for side in [a, b] {
            do {
                switch try eval(side) {
                case .bool(let v):
                    if v != isAnd { return .bool(v) }   // false for &&, true for ||: decided
                default:
                    sawOther = true
                }
            } catch {
                if error.exhausted { throw error }
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        if sawOther { throw EvalError("no matching overload for '\(isAnd ? "_&&_" : "_||_")'", at: at) }
        return .bool(isAnd)
    }

    mutating func comprehension(_ c: Comprehension, at: Int) throws(EvalError) -> Value {
        let range = try eval(c.range)
        // (first variable, second variable) per element: list → (element | index, element); map → (key | key, value).
        var pairs: [(Value, Value)] = []
        switch range {
        case .list(let items):
            pairs = items.enumerated().map { c.second == nil ? ($0.element, .null) : (.int(Int64($0.offset)), $0.element) }
        case .map(let m):
            pairs = m.entries.map { ($0.key, $0.value) }
        default:
            throw EvalError("expression of type '\(Builtins.typeName(range))' cannot be the range of a comprehension", at: at)
        }
        let depth = locals.count
        defer { locals.removeSubrange(depth...) }
        func bind(_ p: (Value, Value)) throws(EvalError) {
            try step(at: at)
            locals.removeSubrange(depth...)
            locals.append((c.first, p.0))
            if let s = c.second { locals.append((s, p.1)) }
        }
        func truth(_ e: Expr) throws(EvalError) -> Bool {
            guard case .bool(let b) = try eval(e) else { throw EvalError("a macro predicate must be a bool", at: e.offset) }
            return b
        }
        switch c.op {
        case .all, .exists:
            let decisive = c.op == .exists
            // An error is absorbed when another element decides the result, as in `&&`/`||`.
            var firstError: EvalError? = nil
            for p in pairs {
                try bind(p)
                do {
                    if try truth(c.predicate ?? c.range) == decisive { return .bool(decisive) }
                } catch {
                    if error.exhausted { throw error }
                    if firstError == nil { firstError = error }
                }
            }
            if let firstError { throw firstError }
            return .bool(!decisive)
        case .existsOne:
            var count = 0
            for p in pairs {
                try bind(p)
                if try truth(c.predicate ?? c.range) { count += 1 }
            }
            return .bool(count == 1)
        case .map, .filter, .transformList:
            var out: [Value] = []
            for p in pairs {
                try bind(p)
                if let pred = c.predicate, !(try truth(pred)) { continue }
                if c.op == .filter { out.append(p.0) } else if let t = c.transform { out.append(try eval(t)) }
                bytes += 16
                if bytes > limits.bytes { try charge(.list([]), at: at) }
            }
            return .list(out)
        case .transformMap:
            var m = OrderedMap()
            for p in pairs {
                try bind(p)
                if let pred = c.predicate, !(try truth(pred)) { continue }
                if let t = c.transform { m[p.0] = try eval(t) }
            }
            return .map(m)
        }
    }
}
