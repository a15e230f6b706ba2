/// Parses CEL source into an `Expr`, expanding macros (`has`, `all`, `exists`, `exists_one`,
/// `map`, `filter` and the two-variable forms) into comprehension nodes.
public struct CELParser {
    var lexer: Lexer
    var token: Token = .eof
    var tokenStart = 0
    let macros: Bool
    var depth = 0
    /// Deeper nesting, and taller trees (see `Expr.height`), are refused, so hostile input
    /// cannot overflow the stack.
    static let maxDepth = 250
    /// The longest expression accepted, in bytes of UTF-8: far above any real rule, and small
    /// enough that parsing and checking stay in milliseconds.
    public static let maxLength = 64 << 10

    public static func parse(_ text: String, macros: Bool = true) throws(CELError) -> Expr {
        guard text.utf8.count <= maxLength else {
            throw CELError("expression is \(text.utf8.count) bytes long, more than the \(maxLength) allowed; split the rule, or compute the value in the facts", at: 0)
        }
        var p = CELParser(lexer: Lexer(text), macros: macros)
        try p.advance()
        let e = try p.expr()
        guard p.token == .eof else { throw CELError("unexpected \(p.describe(p.token)) after the end of the expression", at: p.tokenStart) }
        return e
    }

    init(lexer: Lexer, macros: Bool) {
        self.lexer = lexer
        self.macros = macros
    }

    mutating func advance() throws(CELError) { (token, tokenStart) = try lexer.next() }

    func describe(_ t: Token) -> String {
        switch t {
        case .eof: return "end of input"
        case .op(let o): return "'\(o)'"
        case .ident(let i): return "'\(i)'"
        default: return "literal"
        }
    }

    func isOp(_ o: String) -> Bool { token == .op(o) }

    mutating func expect(_ o: String) throws(CELError) {
        guard isOp(o) else { throw CELError("expected '\(o)', found \(describe(token))", at: tokenStart) }
        try advance()
    }

    mutating func enter() throws(CELError) {
        depth += 1
        if depth > Self.maxDepth { throw CELError("expression nested too deeply (more than \(Self.maxDepth) levels)", at: tokenStart) }
    }

    /// Refuses a node whose tree is taller than `maxDepth`: a chain of 16,000 `+` parses in a
    /// loop, but is a tree 16,000 deep.
    func bounded(_ e: Expr) throws(CELError) -> Expr {
        guard e.height <= Self.maxDepth else {
            throw CELError("expression nested too deeply: a chain of more than \(Self.maxDepth) operators, fields or indexes; split it, or use a list and all()/exists()", at: e.offset)
        }
        return e
    }

    mutating func expr() throws(CELError) -> Expr {
        try enter(); defer { depth -= 1 }
        let start = tokenStart
        let cond = try binary(0)
        guard isOp("?") else { return cond }
        try advance()
        let a = try binary(0)
        try expect(":")
        let b = try expr()
        return Expr(.call("?:", target: nil, args: [cond, a, b]), at: start)
    }

    static let levels: [[String]] = [["||"], ["&&"], ["<", "<=", ">", ">=", "==", "!=", "in"], ["+", "-"], ["*", "/", "%"]]

    func binaryOp(at level: Int) -> String? {
        switch token {
        case .op(let o) where Self.levels[level].contains(o): return o
        case .ident("in") where level == 2: return "in"
        default: return nil
        }
    }

    mutating func binary(_ level: Int) throws(CELError) -> Expr {
        if level == Self.levels.count { return try unary() }
        var lhs = try binary(level + 1)
        while let op = binaryOp(at: level) {
            let at = tokenStart
            try advance()
            try enter()
            let rhs = try binary(level + 1)
            depth -= 1
            lhs = try bounded(Expr(.call(op, target: nil, args: [lhs, rhs]), at: at))
        }
        return lhs
    }

    mutating func unary() throws(CELError) -> Expr {
        let start = tokenStart
        if isOp("!") {
            try advance()
            try enter(); defer { depth -= 1 }
            return Expr(.call("!", target: nil, args: [try unary()]), at: start)
        }
        if isOp("-") {
            try advance()
            try enter(); defer { depth -= 1 }
            // Fold a directly negated numeric literal, so -9223372036854775808 is an int.
            switch token {
            case .int(let v):
                try advance()
                return try member(Expr(.literal(.int(-v)), at: start))
            case .minIntMagnitude:
                try advance()
                return try member(Expr(.literal(.int(Int64.min)), at: start))
            case .double(let d):
                try advance()
                return try member(Expr(.literal(.double(-d)), at: start))
            default:
                return Expr(.call("neg", target: nil, args: [try unary()]), at: start)
            }
        }
        return try member(try primary())
    }

    mutating func member(_ base: Expr) throws(CELError) -> Expr {
        var e = base
        while true {
            let at = tokenStart
            if isOp(".") {
                if let quoted = try lexer.backtickIdentifier() {
                    try advance()
                    e = try bounded(Expr(.select(e, quoted, testOnly: false), at: at))
                    continue
                }
                try advance()
                guard case .ident(let name) = token else { throw CELError("expected a field name after '.', found \(describe(token))", at: tokenStart) }
                try advance()
                if isOp("(") {
                    try advance()
                    let args = try exprList(closing: ")")
                    e = try bounded(try macro(name, target: e, args: args, at: at) ?? Expr(.call(name, target: e, args: args), at: at))
                } else {
                    e = try bounded(Expr(.select(e, name, testOnly: false), at: at))
                }
            } else if isOp("[") {
                try advance()
                let index = try expr()
                try expect("]")
                e = try bounded(Expr(.call("[]", target: nil, args: [e, index]), at: at))
            } else {
                return e
            }
        }
    }

    mutating func exprList(closing: String) throws(CELError) -> [Expr] {
        var items: [Expr] = []
        if isOp(closing) { try advance(); return items }
        while true {
            items.append(try expr())
            if isOp(",") {
                try advance()
                if isOp(closing) && closing != ")" { try advance(); return items }
                continue
            }
            try expect(closing)
            return items
        }
    }

    mutating func primary() throws(CELError) -> Expr {
        let start = tokenStart
        switch token {
        case .int(let v): try advance(); return Expr(.literal(.int(v)), at: start)
        case .uint(let v): try advance(); return Expr(.literal(.uint(v)), at: start)
        case .minIntMagnitude: throw CELError("int literal out of range", at: start)
        case .double(let d): try advance(); return Expr(.literal(.double(d)), at: start)
        case .string(let s): try advance(); return Expr(.literal(.string(s)), at: start)
        case .bytes(let b): try advance(); return Expr(.literal(.bytes(b)), at: start)
        case .ident(let name):
            try advance()
            return try identifier(name, at: start, leadingDot: false)
        case .op("."):
            try advance()
            guard case .ident(let name) = token else { throw CELError("expected an identifier after '.'", at: tokenStart) }
            try advance()
            return try identifier(name, at: start, leadingDot: true)
        case .op("("):
            try advance()
            let e = try expr()
            try expect(")")
            return e
        case .op("["):
            try advance()
            return Expr(.list(try exprList(closing: "]")), at: start)
        case .op("{"):
            try advance()
            var entries: [(Expr, Expr)] = []
            while !isOp("}") {
                let k = try expr()
                try expect(":")
                let v = try expr()
                entries.append((k, v))
                if isOp(",") { try advance() } else { break }
            }
            try expect("}")
            return Expr(.map(entries), at: start)
        default:
            throw CELError("unexpected \(describe(token))", at: start)
        }
    }

    mutating func identifier(_ name: String, at start: Int, leadingDot: Bool) throws(CELError) -> Expr {
        switch name {
        case "true": return Expr(.literal(.bool(true)), at: start)
        case "false": return Expr(.literal(.bool(false)), at: start)
        case "null": return Expr(.literal(.null), at: start)
        case "in": throw CELError("unexpected 'in'", at: start)
        default: break
        }
        if Lexer.reserved.contains(name) { throw CELError("'\(name)' is a reserved word and cannot be used as an identifier", at: start) }
        if isOp("(") {
            try advance()
            let args = try exprList(closing: ")")
            if !leadingDot, let m = try macro(name, target: nil, args: args, at: start) { return m }
            return Expr(.call(name, target: nil, args: args), at: start)
        }
        if isOp("{") {
            throw CELError("message construction ('\(name){…}') is not supported", at: start)
        }
        return Expr(.ident(leadingDot ? "." + name : name), at: start)
    }

    /// Expands a macro call, or returns nil when `name` is not a macro of this arity.
    mutating func macro(_ name: String, target: Expr?, args: [Expr], at: Int) throws(CELError) -> Expr? {
        guard macros else { return nil }
        if target == nil {
            guard name == "has", args.count == 1 else { return nil }
            guard case .select(let operand, let field, _) = args[0].kind else {
                throw CELError("has() needs a field selection such as has(asset.rpo)", at: args[0].offset)
            }
            return Expr(.select(operand, field, testOnly: true), at: at)
        }
        guard let range = target else { return nil }
        func variable(_ e: Expr) throws(CELError) -> String {
            guard case .ident(let v) = e.kind, !v.hasPrefix(".") else { throw CELError("the macro's variable must be a simple name", at: e.offset) }
            return v
        }
        func make(_ op: Comprehension.Op, _ first: String, _ second: String?, _ pred: Expr?, _ transform: Expr?) -> Expr {
            Expr(.comprehension(Comprehension(op: op, range: range, first: first, second: second, predicate: pred, transform: transform)), at: at)
        }
        switch (name, args.count) {
        case ("all", 2): return make(.all, try variable(args[0]), nil, args[1], nil)
        case ("exists", 2): return make(.exists, try variable(args[0]), nil, args[1], nil)
        case ("exists_one", 2), ("existsOne", 2): return make(.existsOne, try variable(args[0]), nil, args[1], nil)
        case ("map", 2): return make(.map, try variable(args[0]), nil, nil, args[1])
        case ("map", 3): return make(.map, try variable(args[0]), nil, args[1], args[2])
        case ("filter", 2): return make(.filter, try variable(args[0]), nil, args[1], nil)
        case ("all", 3): return make(.all, try variable(args[0]), try variable(args[1]), args[2], nil)
        case ("exists", 3): return make(.exists, try variable(args[0]), try variable(args[1]), args[2], nil)
        case ("exists_one", 3), ("existsOne", 3): return make(.existsOne, try variable(args[0]), try variable(args[1]), args[2], nil)
        case ("transformList", 3): return make(.transformList, try variable(args[0]), try variable(args[1]), nil, args[2])
        case ("transformList", 4): return make(.transformList, try variable(args[0]), try variable(args[1]), args[2], args[3])
        case ("transformMap", 3): return make(.transformMap, try variable(args[0]), try variable(args[1]), nil, args[2])
        case ("transformMap", 4): return make(.transformMap, try variable(args[0]), try variable(args[1]), args[2], args[3])
        default: return nil
        }
    }
}
