import Foundation

/// CEL's `matches`: RE2 syntax, matched in time linear in the input (a Pike VM over a
/// Thompson NFA), so no pattern can hang drplan, as a backtracking engine can with `(a+)+$`.
/// What RE2 refuses is refused here too, at compile time: backreferences, lookaround,
/// possessive quantifiers and repeat counts over 1000. Matching is on Unicode scalars.
public struct RE2Regex: Sendable {
    enum Inst: Sendable {
        case char(Unicode.Scalar, fold: Bool)
        case any(newline: Bool)
        case set(CharSet)
        case split(Int, Int)
        case jump(Int)
        case assert(Assertion)
        case match
    }

    enum Assertion: Sendable { case beginText, endText, beginLine, endLine, wordBoundary, notWordBoundary }

    struct CharSet: Sendable {
        var ranges: [ClosedRange<UInt32>]
        var negated: Bool
        var fold: Bool

        func contains(_ u: Unicode.Scalar) -> Bool {
            var hit = ranges.contains { $0.contains(u.value) }
            if !hit && fold {
                for v in [Self.lower(u), Self.upper(u)] where v != u.value { if ranges.contains(where: { $0.contains(v) }) { hit = true; break } }
            }
            return hit != negated
        }

        /// Simple case folding: a mapping to more than one scalar (ß → SS) is not a fold.
        static func lower(_ u: Unicode.Scalar) -> UInt32 { single(u.properties.lowercaseMapping) ?? u.value }
        static func upper(_ u: Unicode.Scalar) -> UInt32 { single(u.properties.uppercaseMapping) ?? u.value }
        static func single(_ s: String) -> UInt32? {
            var it = s.unicodeScalars.makeIterator()
            guard let first = it.next(), it.next() == nil else { return nil }
            return first.value
        }
    }

    let program: [Inst]
    /// The largest program compiled: a pattern's repetitions are expanded, so `(a{1000}){1000}`
    /// would otherwise be a million instructions.
    static let maxProgram = 20_000

    /// Compiles `pattern`, or throws a message saying what RE2 would refuse and where.
    public init(_ pattern: String) throws(RegexError) {
        var p = RegexParser(Array(pattern.unicodeScalars))
        let node = try p.parseAll()
        var c = RegexCompiler()
        try c.emit(node)
        c.program.append(.match)
        program = c.program
    }

    /// Whether the pattern matches anywhere in `s` (RE2's partial match, as CEL specifies).
    public func matches(_ s: String) -> Bool {
        let input = Array(s.unicodeScalars)
        var current = ThreadList(capacity: program.count), next = ThreadList(capacity: program.count)
        for i in 0...input.count {
            // An unanchored search: a new thread starts at every position.
            if add(&current, 0, at: i, input) { return true }
            if i == input.count { break }
            let u = input[i]
            next.clear()
            for pc in current.items {
                switch program[pc] {
                case .char(let c, let fold):
                    if c == u || (fold && (CharSet.lower(c) == CharSet.lower(u))) { if add(&next, pc + 1, at: i + 1, input) { return true } }
                case .any(let newline):
                    if newline || u != "\n" { if add(&next, pc + 1, at: i + 1, input) { return true } }
                case .set(let set):
                    if set.contains(u) { if add(&next, pc + 1, at: i + 1, input) { return true } }
                default: break
                }
            }
            swap(&current, &next)
        }
        return false
    }

    /// Adds the thread at `pc` and everything reachable from it without consuming input;
    /// true when that reaches `match`. Each pc is added once per position: the linear bound.
    func add(_ list: inout ThreadList, _ start: Int, at i: Int, _ input: [Unicode.Scalar]) -> Bool {
        var stack = [start]
        while let pc = stack.popLast() {
            guard list.insert(pc) else { continue }
            switch program[pc] {
            case .match: return true
            case .jump(let t): stack.append(t)
            case .split(let a, let b): stack.append(b); stack.append(a)
            case .assert(let a): if Self.holds(a, at: i, input) { stack.append(pc + 1) }
            default: list.items.append(pc)
            }
        }
        return false
    }

    static func isWord(_ u: Unicode.Scalar) -> Bool { u == "_" || ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) }

    static func holds(_ a: Assertion, at i: Int, _ input: [Unicode.Scalar]) -> Bool {
        switch a {
        case .beginText: return i == 0
        case .endText: return i == input.count
        case .beginLine: return i == 0 || input[i - 1] == "\n"
        case .endLine: return i == input.count || input[i] == "\n"
        case .wordBoundary, .notWordBoundary:
            let before = i > 0 && isWord(input[i - 1]), after = i < input.count && isWord(input[i])
            return (before != after) == (a == .wordBoundary)
        }
    }

    /// A sparse set of program counters, cleared in constant time.
    struct ThreadList {
        var items: [Int] = []
        var dense: [Int]
        var sparse: [Int]
        var members = 0

        init(capacity: Int) {
            dense = [Int](repeating: 0, count: capacity)
            sparse = [Int](repeating: 0, count: capacity)
        }

        mutating func clear() { members = 0; items.removeAll(keepingCapacity: true) }

        /// False when `pc` is already there.
        mutating func insert(_ pc: Int) -> Bool {
            let s = sparse[pc]
            if s < members && dense[s] == pc { return false }
            sparse[pc] = members
            dense[members] = pc
            members += 1
            return true
        }
    }

    // MARK: the cache

    nonisolated(unsafe) static var cache: [String: Result<RE2Regex, RegexError>] = [:]
    static let cacheLock = NSLock()

    /// The compiled pattern, compiled once per process (rules evaluate the same literal
    /// pattern for every subject).
    public static func compiled(_ pattern: String) throws(RegexError) -> RE2Regex {
        cacheLock.lock()
        let hit = cache[pattern]
        cacheLock.unlock()
        if let hit { return try hit.get() }
        let r: Result<RE2Regex, RegexError>
        do { r = .success(try RE2Regex(pattern)) } catch { r = .failure(error) }
        cacheLock.lock()
        if cache.count > 4096 { cache.removeAll() }
        cache[pattern] = r
        cacheLock.unlock()
        return try r.get()
    }
}

public struct RegexError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public var description: String { "invalid regular expression: \(message) (at character \(offset + 1))" }
}

/// The pattern's syntax tree.
indirect enum RegexNode {
    case empty
    case char(Unicode.Scalar, fold: Bool)
    case any(newline: Bool)
    case set(RE2Regex.CharSet)
    case assert(RE2Regex.Assertion)
    case concat([RegexNode])
    case alternate([RegexNode])
    case repeatNode(RegexNode, min: Int, max: Int?)
}

struct RegexParser {
    let s: [Unicode.Scalar]
    var i = 0
    var fold = false, dotNL = false, multiLine = false
    var depth = 0

    init(_ s: [Unicode.Scalar]) { self.s = s }

    func fail(_ m: String, at: Int? = nil) -> RegexError { RegexError(message: m, offset: at ?? i) }
    var atEnd: Bool { i >= s.count }
    func peek(_ k: Int = 0) -> Unicode.Scalar? { i + k < s.count ? s[i + k] : nil }

    mutating func parseAll() throws(RegexError) -> RegexNode {
        let n = try alternation()
        if !atEnd { throw fail("unmatched ')'") }
        return n
    }

    mutating func alternation() throws(RegexError) -> RegexNode {
        var alts = [try concatenation()]
        while peek() == "|" { i += 1; alts.append(try concatenation()) }
        return alts.count == 1 ? alts[0] : .alternate(alts)
    }

    mutating func concatenation() throws(RegexError) -> RegexNode {
        var items: [RegexNode] = []
        while let c = peek(), c != "|", c != ")" {
            let start = i
            var atom = try self.atom()
            if let q = peek(), q == "*" || q == "+" || q == "?" || (q == "{" && isCount()) {
                if case .empty = atom { throw fail("missing argument to repetition operator '\(q)'", at: start) }
                let (lo, hi) = try quantifier()
                if peek() == "?" { i += 1 }   // lazy: the same language, so the same answer
                if let p = peek(), p == "*" || p == "+" || p == "?" || (p == "{" && isCount()) {
                    throw fail("bad repetition operator: a quantifier cannot follow another (RE2 has no possessive quantifiers)")
                }
                atom = .repeatNode(atom, min: lo, max: hi)
            }
            items.append(atom)
        }
        return items.count == 1 ? items[0] : (items.isEmpty ? .empty : .concat(items))
    }

    func isCount() -> Bool {
        var k = i + 1
        var digits = 0
        while k < s.count, ("0"..."9").contains(s[k]) { k += 1; digits += 1 }
        guard digits > 0, k < s.count else { return false }
        if s[k] == "}" { return true }
        guard s[k] == "," else { return false }
        k += 1
        while k < s.count, ("0"..."9").contains(s[k]) { k += 1 }
        return k < s.count && s[k] == "}"
    }

    mutating func quantifier() throws(RegexError) -> (Int, Int?) {
        let c = s[i]
        i += 1
        switch c {
        case "*": return (0, nil)
        case "+": return (1, nil)
        case "?": return (0, 1)
        default:
            func number(_ p: inout RegexParser) -> Int? {
                var v = 0, any = false
                while let d = p.peek(), ("0"..."9").contains(d) { v = min(v * 10 + Int(d.value - 48), 100_000); p.i += 1; any = true }
                return any ? v : nil
            }
            let lo = number(&self) ?? 0
            var hi: Int? = lo
            if peek() == "," { i += 1; hi = number(&self) }
            i += 1   // "}"
            if lo > 1000 || (hi ?? 0) > 1000 { throw fail("bad repetition operator: counts above 1000 are refused (RE2's limit)") }
            if let h = hi, h < lo { throw fail("bad repetition operator: {\(lo),\(h)} has its maximum below its minimum") }
            return (lo, hi)
        }
    }

    mutating func atom() throws(RegexError) -> RegexNode {
        let c = s[i]
        switch c {
        case "(":
            depth += 1
            if depth > 100 { throw fail("pattern nested too deeply (more than 100 groups)") }
            defer { depth -= 1 }
            i += 1
            let saved = (fold, dotNL, multiLine)
            if peek() == "?" {
                i += 1
                guard let k = peek() else { throw fail("missing ')'") }
                if k == "=" || k == "!" || (k == "<" && (peek(1) == "=" || peek(1) == "!")) {
                    throw fail("lookahead and lookbehind are not supported (RE2 syntax: they cannot be matched in linear time)")
                }
                if k == "P" || k == "<" {
                    if k == "P" { i += 1 }
                    guard peek() == "<" else { throw fail("invalid named group") }
                    i += 1
                    while let n = peek(), n != ">" {
                        guard n == "_" || n.properties.isAlphabetic || ("0"..."9").contains(n) else { throw fail("invalid character in a group name") }
                        i += 1
                    }
                    guard peek() == ">" else { throw fail("missing '>' after a group name") }
                    i += 1
                } else {
                    // Flags: (?i) (?s) (?m) (?U), optionally negated after '-', then ')' or ':'.
                    var on = true
                    while let f = peek(), f != ")" && f != ":" {
                        switch f {
                        case "-": on = false
                        case "i": fold = on
                        case "s": dotNL = on
                        case "m": multiLine = on
                        case "U": break
                        default: throw fail("unknown flag '\(f)' in a (?…) group")
                        }
                        i += 1
                    }
                    guard let end = peek() else { throw fail("missing ')'") }
                    i += 1
                    // A bare (?i) sets the flags for the rest of the enclosing group, which
                    // restores its own flags when it closes.
                    if end == ")" { return .empty }
                }
            }
            let inner = try alternation()
            guard peek() == ")" else { throw fail("missing ')'") }
            i += 1
            (fold, dotNL, multiLine) = saved
            return inner
        case ")": throw fail("unmatched ')'")
        case ".": i += 1; return .any(newline: dotNL)
        case "^": i += 1; return .assert(multiLine ? .beginLine : .beginText)
        case "$": i += 1; return .assert(multiLine ? .endLine : .endText)
        case "[": return try charClass()
        case "\\": return try escape(inClass: false)
        case "*", "+", "?": throw fail("missing argument to repetition operator '\(c)'")
        default: i += 1; return .char(c, fold: fold)
        }
    }

    static func perl(_ c: Unicode.Scalar) -> (ranges: [ClosedRange<UInt32>], negated: Bool)? {
        switch c {
        case "d": return ([48...57], false)
        case "D": return ([48...57], true)
        case "w": return ([48...57, 65...90, 95...95, 97...122], false)
        case "W": return ([48...57, 65...90, 95...95, 97...122], true)
        case "s": return ([9...10, 12...13, 32...32], false)
        case "S": return ([9...10, 12...13, 32...32], true)
        default: return nil
        }
    }

    /// After a backslash: a class, an assertion or a literal.
    mutating func escape(inClass: Bool) throws(RegexError) -> RegexNode {
        let start = i
        i += 1
        guard let c = peek() else { throw fail("trailing backslash at the end of the pattern", at: start) }
        i += 1
        if let p = Self.perl(c) { return .set(.init(ranges: p.ranges, negated: p.negated, fold: false)) }
        switch c {
        case "1"..."9": throw fail("backreferences are not supported (RE2 syntax)", at: start)
        case "b" where !inClass: return .assert(.wordBoundary)
        case "B" where !inClass: return .assert(.notWordBoundary)
        case "A" where !inClass: return .assert(.beginText)
        case "z" where !inClass: return .assert(.endText)
        case "n": return .char("\n", fold: false)
        case "t": return .char("\t", fold: false)
        case "r": return .char("\r", fold: false)
        case "f": return .char("\u{0C}", fold: false)
        case "v": return .char("\u{0B}", fold: false)
        case "a": return .char("\u{07}", fold: false)
        case "0": return .char("\0", fold: false)
        case "x":
            var hex = ""
            if peek() == "{" {
                i += 1
                while let h = peek(), h != "}" { hex.unicodeScalars.append(h); i += 1 }
                guard peek() == "}" else { throw fail("missing '}' in \\x{…}", at: start) }
                i += 1
            } else {
                for _ in 0..<2 { guard let h = peek() else { break }; hex.unicodeScalars.append(h); i += 1 }
            }
            guard let v = UInt32(hex, radix: 16), let u = Unicode.Scalar(v) else { throw fail("invalid escape \\x\(hex)", at: start) }
            return .char(u, fold: fold)
        case "p", "P", "Q", "E", "C", "z", "Z", "G", "k", "g", "K", "R", "X", "h", "H":
            throw fail("the escape \\\(c) is not supported", at: start)
        default:
            // RE2 allows escaping punctuation only.
            guard c.value < 128, !c.properties.isAlphabetic, !("0"..."9").contains(c) else { throw fail("invalid escape sequence \\\(c)", at: start) }
            return .char(c, fold: fold)
        }
    }

    mutating func charClass() throws(RegexError) -> RegexNode {
        let start = i
        i += 1
        var negated = false
        if peek() == "^" { negated = true; i += 1 }
        var ranges: [ClosedRange<UInt32>] = []
        var subtract: [ClosedRange<UInt32>] = []
        var first = true
        while true {
            guard let c = peek() else { throw fail("missing ']' in a character class", at: start) }
            if c == "]" && !first { i += 1; break }
            first = false
            if c == "[" && peek(1) == ":" {
                guard let close = (i..<s.count).first(where: { s[$0] == ":" && $0 + 1 < s.count && s[$0 + 1] == "]" && $0 > i + 1 }) else { throw fail("invalid POSIX class", at: i) }
                var name = String(String.UnicodeScalarView(s[(i + 2)..<close]))
                i = close + 2
                let neg = name.hasPrefix("^")
                if neg { name.removeFirst() }
                guard let r = Self.posix[name] else { throw fail("unknown POSIX class [:\(name):]") }
                if neg { subtract += r } else { ranges += r }
                continue
            }
            var lo: UInt32
            if c == "\\" {
                let node = try escape(inClass: true)
                switch node {
                case .set(let set):
                    if set.negated { subtract += set.ranges } else { ranges += set.ranges }
                    continue
                case .char(let u, _): lo = u.value
                default: throw fail("invalid escape in a character class")
                }
            } else { lo = c.value; i += 1 }
            if peek() == "-", let n = peek(1), n != "]" {
                i += 1
                var hi: UInt32
                if n == "\\" {
                    guard case .char(let u, _) = try escape(inClass: true) else { throw fail("invalid range end in a character class") }
                    hi = u.value
                } else { hi = n.value; i += 1 }
                guard lo <= hi else { throw fail("invalid character class range", at: start) }
                ranges.append(lo...hi)
            } else {
                ranges.append(lo...lo)
            }
        }
        if !subtract.isEmpty {
            // [\D] and [^\d] style members: the complement of those ranges, within Unicode.
            var complement: [ClosedRange<UInt32>] = []
            var next: UInt32 = 0
            for r in subtract.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                if r.lowerBound > next { complement.append(next...(r.lowerBound - 1)) }
                next = max(next, r.upperBound + 1)
            }
            if next <= 0x10FFFF { complement.append(next...0x10FFFF) }
            ranges += complement
        }
        return .set(.init(ranges: ranges, negated: negated, fold: fold))
    }

    static let posix: [String: [ClosedRange<UInt32>]] = [
        "alnum": [48...57, 65...90, 97...122], "alpha": [65...90, 97...122], "ascii": [0...127], "blank": [9...9, 32...32],
        "cntrl": [0...31, 127...127], "digit": [48...57], "graph": [33...126], "lower": [97...122], "print": [32...126],
        "punct": [33...47, 58...64, 91...96, 123...126], "space": [9...13, 32...32], "upper": [65...90],
        "word": [48...57, 65...90, 95...95, 97...122], "xdigit": [48...57, 65...70, 97...102],
    ]
}

struct RegexCompiler {
    var program: [RE2Regex.Inst] = []

    mutating func push(_ i: RE2Regex.Inst) throws(RegexError) -> Int {
        guard program.count < RE2Regex.maxProgram else {
            throw RegexError(message: "pattern too large once its repetitions are expanded (more than \(RE2Regex.maxProgram) instructions)", offset: 0)
        }
        program.append(i)
        return program.count - 1
    }

    mutating func emit(_ n: RegexNode) throws(RegexError) {
        switch n {
        case .empty: break
        case .char(let c, let fold): _ = try push(.char(c, fold: fold))
        case .any(let nl): _ = try push(.any(newline: nl))
        case .set(let s): _ = try push(.set(s))
        case .assert(let a): _ = try push(.assert(a))
        case .concat(let items): for item in items { try emit(item) }
        case .alternate(let alts):
            var jumps: [Int] = []
            for (k, alt) in alts.enumerated() {
                if k < alts.count - 1 {
                    let split = try push(.split(0, 0))
                    try emit(alt)
                    jumps.append(try push(.jump(0)))
                    program[split] = .split(split + 1, program.count)
                } else {
                    try emit(alt)
                }
            }
            for j in jumps { program[j] = .jump(program.count) }
        case .repeatNode(let body, let lo, let hi):
            for _ in 0..<lo { try emit(body) }
            if let hi {
                // Optional copies, each skipping to the end.
                var splits: [Int] = []
                for _ in lo..<hi {
                    splits.append(try push(.split(0, 0)))
                    try emit(body)
                }
                for s in splits { program[s] = .split(s + 1, program.count) }
            } else {
                let split = try push(.split(0, 0))
                try emit(body)
                _ = try push(.jump(split))
                program[split] = .split(split + 1, program.count)
            }
        }
    }
}
