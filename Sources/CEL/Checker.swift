/// Static types, for checking expressions before they run over thousands of subjects.
public indirect enum CELType: Equatable, Sendable, CustomStringConvertible {
    case int, uint, double, bool, string, bytes, null, duration, timestamp, type, dyn
    case list(CELType)
    case map(CELType, CELType)
    /// A map with a known set of fields (a fact object), by schema name.
    case object(String)

    public var description: String {
        switch self {
        case .int: return "int"
        case .uint: return "uint"
        case .double: return "double"
        case .bool: return "bool"
        case .string: return "string"
        case .bytes: return "bytes"
        case .null: return "null"
        case .duration: return "duration"
        case .timestamp: return "timestamp"
        case .type: return "type"
        case .dyn: return "dyn"
        case .list(let t): return "list(\(t))"
        case .map(let k, let v): return "map(\(k), \(v))"
        case .object(let n): return n
        }
    }

    public var isNumeric: Bool { self == .int || self == .uint || self == .double }
    /// False for `dyn`: a type the checker cannot judge.
    public var isKnown: Bool { self != .dyn }
}

/// Names and shapes an expression may use.
public struct Declarations: Sendable {
    public var variables: [String: CELType]
    /// Object schemas: schema name → field → type.
    public var objects: [String: [String: CELType]]
    /// Host functions beyond the standard library, with their result types.
    public var functions: [String: CELType]
    /// Fields that existed once, as `schema.field` → what to use instead: an expression
    /// written for an older drplan then fails with the way forward, not just "no field".
    public var retired: [String: String]

    public init(variables: [String: CELType], objects: [String: [String: CELType]] = [:], functions: [String: CELType] = [:],
                retired: [String: String] = [:]) {
        self.variables = variables
        self.objects = objects
        self.functions = functions
        self.retired = retired
    }
}

/// Infers types bottom-up and reports what cannot work: unknown names, unknown fields,
/// unknown functions and operators applied to incompatible types. Unknown (`dyn`) types pass.
public struct TypeChecker {
    let decls: Declarations
    var scopes: [[String: CELType]] = []
    public private(set) var errors: [CELError] = []

    public init(_ decls: Declarations) { self.decls = decls }

    /// Checks `expr`; returns its type, with problems in `errors`.
    public mutating func check(_ e: Expr) -> CELType {
        switch e.kind {
        case .literal(let v): return Self.typeOf(v)
        case .ident(let name):
            for s in scopes.reversed() { if let t = s[name] { return t } }
            if let t = decls.variables[name] { return t }
            if typeNames[name] != nil { return .type }
            let known = Array(decls.variables.keys) + scopes.flatMap(\.keys)
            errors.append(CELError("undeclared reference to '\(name)'" + hint(name, known), at: e.offset))
            return .dyn
        case .select(let operand, let field, let testOnly):
            if case .ident(let root) = operand.kind, decls.variables[root] == nil, !scopes.contains(where: { $0[root] != nil }), typeNames[root + "." + field] != nil {
                return .type
            }
            let t = check(operand)
            let fieldType: CELType
            switch t {
            case .object(let name):
                guard let fields = decls.objects[name] else { fieldType = .dyn; break }
                guard let ft = fields[field] else {
                    let why = decls.retired[name + "." + field].map { ": \($0)" } ?? hint(field, Array(fields.keys))
                    errors.append(CELError("\(name) has no field '\(field)'" + why, at: e.offset))
                    return testOnly ? .bool : .dyn
                }
                fieldType = ft
            case .map(_, let v): fieldType = v
            case .dyn, .null: fieldType = .dyn
            default:
                errors.append(CELError("type '\(t)' has no fields, so '.\(field)' cannot be selected", at: e.offset))
                fieldType = .dyn
            }
            return testOnly ? .bool : fieldType
        case .list(let items):
            let types = items.map { check($0) }
            return .list(Self.join(types))
        case .map(let entries):
            let ks = entries.map { check($0.0) }, vs = entries.map { check($0.1) }
            return .map(Self.join(ks), Self.join(vs))
        case .comprehension(let c):
            let rt = check(c.range)
            var vars: [String: CELType] = [:]
            var elem: CELType = .dyn
            switch rt {
            case .list(let t): elem = t; if let s = c.second { vars[c.first] = .int; vars[s] = t } else { vars[c.first] = t }
            case .map(let k, let v): elem = k; vars[c.first] = k; if let s = c.second { vars[s] = v }
            case .dyn: vars[c.first] = .dyn; if let s = c.second { vars[s] = .dyn }
            default:
                errors.append(CELError("a macro needs a list or a map to range over, not \(rt)", at: c.range.offset))
                vars[c.first] = .dyn; if let s = c.second { vars[s] = .dyn }
            }
            scopes.append(vars)
            defer { scopes.removeLast() }
            if let p = c.predicate { expectBool(check(p), at: p.offset, what: "a macro predicate") }
            let tt = c.transform.map { check($0) } ?? .dyn
            switch c.op {
            case .all, .exists, .existsOne: return .bool
            case .filter: return .list(elem)
            case .map, .transformList: return .list(tt)
            case .transformMap: return .map(elem, tt)
            }
        case .call(let name, let target, let args):
            let targetType = target.map { check($0) }
            let types = args.map { check($0) }
            // A literal pattern is compiled now, so what RE2 refuses is a load-time error.
            if name == "matches", let last = args.last, case .literal(.string(let pattern)) = last.kind {
                do { _ = try RE2Regex.compiled(pattern) } catch { errors.append(CELError(error.description, at: last.offset)) }
            }
            return call(name, targetType, types, at: e.offset)
        }
    }

    func hint(_ word: String, _ candidates: [String]) -> String {
        var best: (String, Int)? = nil
        for c in candidates {
            let d = editDistance(Array(word), Array(c))
            if d <= max(1, c.count / 3), d < (best?.1 ?? Int.max) { best = (c, d) }
        }
        return best.map { " (did you mean '\($0.0)'?)" } ?? ""
    }

    mutating func expectBool(_ t: CELType, at offset: Int, what: String) {
        if t.isKnown && t != .bool && t != .null { errors.append(CELError("\(what) must be a bool, not \(t)", at: offset)) }
    }

    mutating func mismatch(_ op: String, _ types: [CELType], at offset: Int) -> CELType {
        errors.append(CELError("no matching overload for '\(op)' applied to (\(types.map(\.description).joined(separator: ", ")))", at: offset))
        return .dyn
    }

    static func comparable(_ a: CELType, _ b: CELType) -> Bool {
        if !a.isKnown || !b.isKnown || a == .null || b == .null { return true }
        if a.isNumeric && b.isNumeric { return true }
        if case .object = a, case .map = b { return true }
        if case .map = a, case .object = b { return true }
        if case .list = a, case .list = b { return true }
        if case .map = a, case .map = b { return true }
        return a == b
    }

    mutating func call(_ name: String, _ target: CELType?, _ a: [CELType], at offset: Int) -> CELType {
        let all = (target.map { [$0] } ?? []) + a
        let known = all.allSatisfy(\.isKnown)
        switch (name, all.count) {
        case ("==", 2), ("!=", 2):
            return Self.comparable(all[0], all[1]) ? .bool : mismatch("_\(name)_", all, at: offset)
        case ("<", 2), ("<=", 2), (">", 2), (">=", 2):
            if !known || all.contains(.null) { return .bool }
            if all[0].isNumeric && all[1].isNumeric { return .bool }
            if all[0] == all[1], [.string, .bytes, .bool, .timestamp, .duration].contains(all[0]) { return .bool }
            return mismatch("_\(name)_", all, at: offset)
        case ("&&", 2), ("||", 2):
            for t in all { expectBool(t, at: offset, what: "each side of '\(name)'") }
            return .bool
        case ("!", 1):
            expectBool(all[0], at: offset, what: "the operand of '!'")
            return .bool
        case ("neg", 1):
            if !known { return .dyn }
            return [.int, .double, .duration].contains(all[0]) ? all[0] : mismatch("-_", all, at: offset)
        case ("?:", 3):
            expectBool(all[0], at: offset, what: "the condition of '?:'")
            return all[1] == all[2] ? all[1] : .dyn
        case ("+", 2), ("-", 2), ("*", 2), ("/", 2), ("%", 2):
            if !known || all.contains(.null) { return .dyn }
            let (x, y) = (all[0], all[1])
            switch (name, x, y) {
            case (_, .int, .int), (_, .uint, .uint): return x
            case (let op, .double, .double) where op != "%": return x
            case ("+", .string, .string), ("+", .bytes, .bytes): return x
            case ("+", .list(let p), .list(let q)): return .list(p == q ? p : .dyn)
            case ("+", .duration, .duration), ("-", .duration, .duration): return .duration
            case ("+", .timestamp, .duration), ("-", .timestamp, .duration), ("+", .duration, .timestamp): return .timestamp
            case ("-", .timestamp, .timestamp): return .duration
            default: return mismatch("_\(name)_", all, at: offset)
            }
        case ("in", 2):
            switch all[1] {
            case .list, .map, .object, .dyn, .null: return .bool
            default: return mismatch("@in", all, at: offset)
            }
        case ("[]", 2):
            switch all[0] {
            case .list(let t):
                if all[1].isKnown && !all[1].isNumeric { return mismatch("_[_]", all, at: offset) }
                return t
            case .map(_, let v): return v
            case .object, .dyn, .null: return .dyn
            default: return mismatch("_[_]", all, at: offset)
            }
        case ("size", 1):
            switch all[0] {
            case .string, .bytes, .list, .map, .object, .dyn: return .int
            default: return mismatch("size", all, at: offset)
            }
        case ("contains", 2), ("startsWith", 2), ("endsWith", 2), ("matches", 2):
            for t in all where t.isKnown && t != .string { return mismatch(name, all, at: offset) }
            return .bool
        case ("int", 1): return .int
        case ("uint", 1): return .uint
        case ("double", 1): return .double
        case ("string", 1): return .string
        case ("bytes", 1): return .bytes
        case ("bool", 1): return .bool
        case ("type", 1): return .type
        case ("dyn", 1): return .dyn
        case ("duration", 1):
            if known, all[0] != .string, all[0] != .duration { return mismatch(name, all, at: offset) }
            return .duration
        case ("timestamp", 1):
            if known, ![.string, .int, .timestamp].contains(all[0]) { return mismatch(name, all, at: offset) }
            return .timestamp
        case ("getFullYear", _), ("getMonth", _), ("getDayOfMonth", _), ("getDate", _), ("getDayOfWeek", _), ("getDayOfYear", _),
             ("getHours", _), ("getMinutes", _), ("getSeconds", _), ("getMilliseconds", _):
            if let f = all.first, f.isKnown, f != .timestamp, f != .duration { return mismatch(name, all, at: offset) }
            return .int
        default:
            if let t = decls.functions[name] { return t }
            let names = Array(Builtins.functionNames.filter { $0.first?.isLetter ?? false }) + Array(decls.functions.keys)
            errors.append(CELError("unknown function '\(name)'" + hint(name, names), at: offset))
            return .dyn
        }
    }

    static func typeOf(_ v: Value) -> CELType {
        switch v {
        case .null: return .null
        case .bool: return .bool
        case .int: return .int
        case .uint: return .uint
        case .double: return .double
        case .string: return .string
        case .bytes: return .bytes
        case .timestamp: return .timestamp
        case .duration: return .duration
        case .type: return .type
        case .list: return .list(.dyn)
        case .map: return .map(.dyn, .dyn)
        }
    }

    static func join(_ types: [CELType]) -> CELType {
        guard let f = types.first else { return .dyn }
        return types.allSatisfy { $0 == f } ? f : .dyn
    }
}

/// Levenshtein distance, for the "did you mean" hints of every layer (each picks its own limit).
public func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    var prev = Array(0...b.count), cur = prev
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count { cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)) }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
