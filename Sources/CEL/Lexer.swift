/// Tokens of the CEL grammar.
enum Token: Equatable {
    case int(Int64), uint(UInt64), double(Double), string(String), bytes([UInt8])
    /// 9223372036854775808: valid only directly after a unary minus.
    case minIntMagnitude
    case ident(String)
    case op(String)
    case eof
}

/// Splits CEL source into tokens. Works on Unicode scalars, so offsets are scalar counts.
struct Lexer {
    let chars: [Unicode.Scalar]
    var pos = 0

    init(_ text: String) { chars = Array(text.unicodeScalars) }

    static let reserved: Set<String> = ["as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
                                        "loop", "package", "namespace", "return", "var", "void", "while"]

    func peek(_ k: Int = 0) -> Unicode.Scalar? { pos + k < chars.count ? chars[pos + k] : nil }

    mutating func skipSpace() {
        while let c = peek() {
            if c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0C}" { pos += 1; continue }
            if c == "/", peek(1) == "/" {
                while let d = peek(), d != "\n" { _ = d; pos += 1 }
                continue
            }
            break
        }
    }

    /// The length and meaning of a string prefix at the cursor (0 for a bare quote), or nil.
    func stringPrefix() -> (Int, raw: Bool, bytes: Bool)? {
        func isQuote(_ c: Unicode.Scalar?) -> Bool { c == "\"" || c == "'" }
        func kind(_ c: Unicode.Scalar?) -> Character? {
            switch c { case "r", "R": return "r"; case "b", "B": return "b"; default: return nil }
        }
        if isQuote(peek()) { return (0, false, false) }
        guard let k1 = kind(peek()) else { return nil }
        if isQuote(peek(1)) { return (1, k1 == "r", k1 == "b") }
        if let k2 = kind(peek(1)), k2 != k1, isQuote(peek(2)) { return (2, true, true) }
        return nil
    }

    static func hexValue(_ c: Unicode.Scalar?) -> UInt32? {
        guard let c, c.properties.isASCIIHexDigit else { return nil }
        return UInt32(String(c), radix: 16)
    }

    static func isIdentStart(_ c: Unicode.Scalar) -> Bool { c == "_" || (c.value < 128 && c.properties.isAlphabetic) }
    static func isIdentPart(_ c: Unicode.Scalar) -> Bool { isIdentStart(c) || ("0"..."9").contains(c) }
    static func isDigit(_ c: Unicode.Scalar?) -> Bool { c.map { ("0"..."9").contains($0) } ?? false }

    /// A backtick-quoted field name (`` .`content-type` ``) at the cursor, consumed; else nil.
    mutating func backtickIdentifier() throws(CELError) -> String? {
        skipSpace()
        guard peek() == "`" else { return nil }
        let start = pos
        pos += 1
        var s = ""
        while let c = peek(), c != "`" {
            guard c != "\n" else { break }
            s.unicodeScalars.append(c)
            pos += 1
        }
        guard peek() == "`", !s.isEmpty else { throw CELError("unterminated or empty quoted field name", at: start) }
        pos += 1
        return s
    }

    /// The next token and the offset where it starts.
    mutating func next() throws(CELError) -> (Token, Int) {
        skipSpace()
        let start = pos
        guard let c = peek() else { return (.eof, start) }

        // String and bytes literals, with optional r/b prefixes in either order (rb, br…).
        if let (prefix, raw, bytes) = stringPrefix() {
            pos += prefix
            return (try string(raw: raw, bytes: bytes, start: start), start)
        }

        if Lexer.isIdentStart(c) {
            var s = ""
            while let d = peek(), Lexer.isIdentPart(d) { s.unicodeScalars.append(d); pos += 1 }
            return (.ident(s), start)
        }
        if Lexer.isDigit(c) || (c == "." && Lexer.isDigit(peek(1))) { return (try number(start: start), start) }
        let two = String(String.UnicodeScalarView([c] + (peek(1).map { [$0] } ?? [])))
        if ["==", "!=", "<=", ">=", "&&", "||"].contains(two) { pos += 2; return (.op(two), start) }
        if "<>!+-*/%?:.,[](){}=".unicodeScalars.contains(c) {
            pos += 1
            if c == "=" { throw CELError("unexpected '='; use '==' to compare", at: start) }
            return (.op(String(c)), start)
        }
        throw CELError("unexpected character '\(c)'", at: start)
    }

    mutating func number(start: Int) throws(CELError) -> Token {
        if peek() == "0", peek(1) == "x" || peek(1) == "X" {
            pos += 2
            var digits = ""
            while let d = peek(), d.properties.isASCIIHexDigit { digits.unicodeScalars.append(d); pos += 1 }
            guard !digits.isEmpty else { throw CELError("a hexadecimal literal needs digits", at: start) }
            if peek() == "u" || peek() == "U" {
                pos += 1
                guard let v = UInt64(digits, radix: 16) else { throw CELError("uint literal out of range", at: start) }
                return .uint(v)
            }
            guard let v = UInt64(digits, radix: 16), v <= UInt64(Int64.max) + 1 else { throw CELError("int literal out of range", at: start) }
            return v == UInt64(Int64.max) + 1 ? .minIntMagnitude : .int(Int64(v))
        }
        var text = ""
        var isFloat = false
        while let d = peek(), Lexer.isDigit(d) { text.unicodeScalars.append(d); pos += 1 }
        if peek() == ".", Lexer.isDigit(peek(1)) {
            isFloat = true
            text += "."; pos += 1
            while let d = peek(), Lexer.isDigit(d) { text.unicodeScalars.append(d); pos += 1 }
        }
        if peek() == "e" || peek() == "E" {
            var k = 1
            if peek(1) == "+" || peek(1) == "-" { k = 2 }
            if Lexer.isDigit(peek(k)) {
                isFloat = true
                for _ in 0..<k { text.unicodeScalars.append(chars[pos]); pos += 1 }
                while let d = peek(), Lexer.isDigit(d) { text.unicodeScalars.append(d); pos += 1 }
            }
        }
        if isFloat {
            guard let v = Double(text.hasPrefix(".") ? "0" + text : text) else { throw CELError("bad number", at: start) }
            return .double(v)
        }
        if peek() == "u" || peek() == "U" {
            pos += 1
            guard let v = UInt64(text) else { throw CELError("uint literal out of range", at: start) }
            return .uint(v)
        }
        // 9223372036854775808 is only valid negated; the parser folds it.
        if text == "9223372036854775808" { return .minIntMagnitude }
        guard let v = Int64(text) else { throw CELError("int literal out of range", at: start) }
        return .int(v)
    }

    mutating func string(raw: Bool, bytes: Bool, start: Int) throws(CELError) -> Token {
        guard let q = peek() else { throw CELError("unterminated string", at: start) }
        let triple = peek(1) == q && peek(2) == q
        pos += triple ? 3 : 1
        var out: [UInt8] = []
        func appendScalar(_ s: Unicode.Scalar) { out += Array(String(s).utf8) }
        while true {
            guard let c = peek() else { throw CELError("unterminated string literal", at: start) }
            if c == q {
                if !triple { pos += 1; break }
                if peek(1) == q && peek(2) == q { pos += 3; break }
            }
            if !triple && (c == "\n" || c == "\r") { throw CELError("newline in a single-quoted string literal", at: pos) }
            if c == "\\" && !raw {
                let escStart = pos
                pos += 1
                guard let e = peek() else { throw CELError("unterminated escape", at: escStart) }
                pos += 1
                switch e {
                case "a": out.append(7)
                case "b": out.append(8)
                case "f": out.append(12)
                case "n": out.append(10)
                case "r": out.append(13)
                case "t": out.append(9)
                case "v": out.append(11)
                case "\\", "'", "\"", "`", "?": out.append(UInt8(e.value))
                case "x", "X", "u", "U":
                    let n = (e == "x" || e == "X") ? 2 : (e == "u" ? 4 : 8)
                    var v: UInt32 = 0
                    for _ in 0..<n {
                        guard let d = Lexer.hexValue(peek()) else { throw CELError("bad escape sequence", at: escStart) }
                        v = v * 16 + d; pos += 1
                    }
                    if n == 2 {
                        if bytes { out.append(UInt8(v)) } else {
                            guard let s = Unicode.Scalar(v) else { throw CELError("bad escape sequence", at: escStart) }
                            appendScalar(s)
                        }
                    } else {
                        if bytes { throw CELError("\\u escapes are not allowed in bytes literals", at: escStart) }
                        guard let s = Unicode.Scalar(v) else { throw CELError("invalid code point in escape", at: escStart) }
                        appendScalar(s)
                    }
                case "0"..."3":
                    var v = UInt32(e.value - 48)
                    for _ in 0..<2 {
                        guard let o = peek(), ("0"..."7").contains(o) else { throw CELError("bad octal escape", at: escStart) }
                        v = v * 8 + (o.value - 48); pos += 1
                    }
                    if bytes { out.append(UInt8(v)) } else {
                        guard let s = Unicode.Scalar(v) else { throw CELError("bad escape sequence", at: escStart) }
                        appendScalar(s)
                    }
                default:
                    throw CELError("bad escape sequence '\\\(e)'", at: escStart)
                }
                continue
            }
            appendScalar(c)
            pos += 1
        }
        if bytes { return .bytes(out) }
        return .string(String(decoding: out, as: UTF8.self))
    }
}
