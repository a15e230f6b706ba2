import Yams

/// A copy of an inventory file fit to leave the machine (evidence bundles): each secret is
/// masked where it is written, by the same rules as every other output (`Redaction`), and
/// everything else — comments, order, layout, line numbers — stays as in the file, so the
/// findings' `FILE:LINE:COL` still point at the right place.
///
/// Fail closed: the copy is re-read and checked before it is returned (it must parse, hold no
/// literal under a secret-named key, hold nothing `Redaction.text` would still change, and
/// contain none of the values it masked). Where a secret's extent in the text cannot be found
/// for certain (a plain scalar folded over several lines), or any check fails, the result is
/// `.withheld` and the caller leaves the file out and says why.
public enum SourceRedaction {
    public enum Outcome: Equatable, Sendable {
        /// The redacted text, and how many values were masked.
        case redacted(String, masked: Int)
        case withheld(reason: String)
    }

    public static func redact(_ bytes: [UInt8]) -> Outcome {
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        guard let text = String(validating: body, as: UTF8.self) else { return .withheld(reason: "the file is not UTF-8") }
        let root: Node
        do {
            guard let r = try Parser(yaml: text, resolver: .basic).nextRoot() else { return .redacted(text, masked: 0) }
            root = r
        } catch { return .withheld(reason: "the file is not valid YAML") }
        var doc = Document(text)
        var edits: [Edit] = []
        var secrets: [String] = []
        var failure: String?
        // Scalars by where they start. An alias shares its anchor's node and place, so a value
        // is secret if any of the keys that reach it is.
        var scalars: [Int: (scalar: Node.Scalar, line: Int, secret: Bool, flags: [String])] = [:]
        walk(root) { node, s, secret, flags in
            guard let mark = node.mark, let start = doc.offset(line: mark.line, column: mark.column) else {
                failure = "a value has no position in the file"; return
            }
            let before = scalars[start]
            scalars[start] = (s, mark.line, secret || (before?.secret ?? false), flags + (before?.flags ?? []))
        }
        for (start, entry) in scalars.sorted(by: { $0.key < $1.key }) {
            let value = entry.scalar.string
            let masked = entry.secret && !value.isEmpty && SecretRef.classify(value) == .literal
            let cleaned = masked ? Redaction.mask : Redaction.command(value, secretFlags: entry.flags)
            secrets += Redaction.optionValues(value, flags: entry.flags)
            guard let span = doc.scalarSpan(from: start, value: value, style: entry.scalar.style) else {
                if cleaned != value { failure = "a secret at line \(entry.line) is a plain value folded over several lines" }
                continue
            }
            doc.quotedOrBlock.append(span)
            if cleaned != value {
                edits.append(Edit(range: span, replacement: Escape.yamlDoubleQuoted(cleaned)))
                if masked { secrets.append(value) } else { secrets.append(contentsOf: Document.changedWords(value, cleaned)) }
            }
        }
        if let failure { return .withheld(reason: failure) }
        edits += doc.commentEdits()
        let out = doc.applying(edits)
        // Check the copy as a reader would see it.
        do {
            guard let again = try Parser(yaml: out, resolver: .basic).nextRoot() else { return .withheld(reason: "the redacted copy is empty") }
            if let problem = leftover(again) { return .withheld(reason: problem) }
        } catch { return .withheld(reason: "the redacted copy would not parse") }
        // Anywhere in the copy: a comment, another value, or what a replacement kept.
        if secrets.contains(where: { $0.count >= 4 && out.contains($0) }) {
            return .withheld(reason: "a masked value still appears in the copy (in a comment or another value)")
        }
        return .redacted(out, masked: edits.count)
    }

    struct Visit {
        var node: Node
        var secret: Bool
        var flags: [String]
    }

    /// The option names a mapping lists under `secret_args`.
    static func secretArgs(_ m: Node.Mapping) -> [String] {
        guard case .sequence(let list)? = m["secret_args"] else { return [] }
        return list.compactMap { $0.scalar?.string }.filter(Redaction.isOptionName)
    }

    /// Calls `visit` on every scalar of a tree with whether a secret-named key holds it (lists
    /// inherit their key, maps do not) and the `secret_args` of the mappings around it (a job's
    /// reach every command in it). Iterative, so no nesting exhausts the stack.
    static func walk(_ root: Node, _ visit: (Node, Node.Scalar, _ secret: Bool, _ flags: [String]) -> Void) {
        var stack: [Visit] = [Visit(node: root, secret: false, flags: [])]
        while let v = stack.popLast() {
            switch v.node {
            case .mapping(let m):
                let flags = v.flags + secretArgs(m)
                for (key, value) in m {
                    stack.append(Visit(node: key, secret: false, flags: []))
                    stack.append(Visit(node: value, secret: key.scalar.map { Redaction.isSecretKey($0.string) } ?? false, flags: flags))
                }
            case .sequence(let s): for item in s { stack.append(Visit(node: item, secret: v.secret, flags: v.flags)) }
            case .scalar(let s): visit(v.node, s, v.secret, v.flags)
            case .alias: continue
            }
        }
    }

    /// What a redacted tree still holds that it should not, or nil.
    static func leftover(_ root: Node) -> String? {
        var problem: String?
        walk(root) { node, s, secret, flags in
            guard problem == nil else { return }
            let line = node.mark?.line ?? 0
            if secret, !s.string.isEmpty, s.string != Redaction.mask, SecretRef.classify(s.string) == .literal {
                problem = "a literal secret at line \(line) is still in the copy"
            } else if Redaction.command(s.string, secretFlags: flags) != s.string {
                problem = "a secret at line \(line) is still in the copy"
            }
        }
        return problem
    }

    struct Edit {
        var range: Range<Int>
        var replacement: String
    }

    /// The file as Unicode scalars (libyaml's marks count characters), with where each line starts.
    struct Document {
        var chars: [Unicode.Scalar]
        var lineStarts: [Int]
        /// Spans of quoted and block scalars, inside which `#` starts no comment.
        var quotedOrBlock: [Range<Int>] = []

        init(_ text: String) {
            chars = Array(text.unicodeScalars)
            lineStarts = [0]
            for (i, c) in chars.enumerated() where c == "\n" { lineStarts.append(i + 1) }
        }

        func offset(line: Int, column: Int) -> Int? {
            guard line >= 1, line <= lineStarts.count, column >= 1 else { return nil }
            let o = lineStarts[line - 1] + column - 1
            return o <= chars.count ? o : nil
        }

        func indent(ofLineAt offset: Int) -> Int {
            var s = lineStarts.last { $0 <= offset } ?? 0, n = 0
            while s < chars.count, chars[s] == " " { s += 1; n += 1 }
            return n
        }

        /// Where a scalar's text lies, from its node's mark (which may sit on an anchor or a tag).
        func scalarSpan(from mark: Int, value: String, style: Node.Scalar.Style) -> Range<Int>? {
            var p = mark
            // Skip `&anchor` and `!tag` properties before the scalar itself.
            while p < chars.count, chars[p] == "&" || chars[p] == "!" {
                while p < chars.count, !" \t\n".unicodeScalars.contains(chars[p]) { p += 1 }
                while p < chars.count, chars[p] == " " || chars[p] == "\t" { p += 1 }
            }
            guard p < chars.count else { return value.isEmpty ? p..<p : nil }
            switch chars[p] {
            case "\"" where style == .doubleQuoted:
                var i = p + 1
                while i < chars.count {
                    if chars[i] == "\\" { i += 2; continue }
                    if chars[i] == "\"" { return p..<(i + 1) }
                    i += 1
                }
                return nil
            case "'" where style == .singleQuoted:
                var i = p + 1
                while i < chars.count {
                    if chars[i] == "'" {
                        if i + 1 < chars.count, chars[i + 1] == "'" { i += 2; continue }
                        return p..<(i + 1)
                    }
                    i += 1
                }
                return nil
            case "|" where style == .literal, ">" where style == .folded:
                // The block runs while lines are blank or indented deeper than the line that opens it.
                let parent = indent(ofLineAt: p)
                guard var line = lineStarts.firstIndex(where: { $0 > p }) else { return p..<chars.count }
                var end = lineStarts[line] - 1   // the opening line's break
                while line < lineStarts.count {
                    let s = lineStarts[line]
                    let e = line + 1 < lineStarts.count ? lineStarts[line + 1] - 1 : chars.count
                    let text = chars[s..<e]
                    let blank = text.allSatisfy { $0 == " " || $0 == "\t" || $0 == "\r" }
                    let depth = text.prefix { $0 == " " }.count
                    guard blank || depth > parent else { break }
                    if !blank { end = e }
                    line += 1
                }
                return p..<end
            default:
                // A plain scalar: on one line its text is its value.
                let v = Array(value.unicodeScalars)
                guard style == .plain, p + v.count <= chars.count, Array(chars[p..<(p + v.count)]) == v else { return nil }
                return p..<(p + v.count)
            }
        }

        /// Comments (`#` at a line's start or after a blank, outside quoted and block scalars)
        /// scrubbed as text.
        func commentEdits() -> [Edit] {
            var out: [Edit] = []
            let spans = quotedOrBlock.sorted { $0.lowerBound < $1.lowerBound }
            var inside = 0
            for (n, s) in lineStarts.enumerated() {
                let e = n + 1 < lineStarts.count ? lineStarts[n + 1] - 1 : chars.count
                var i = s
                while i < e {
                    while inside < spans.count, spans[inside].upperBound <= i { inside += 1 }
                    if inside < spans.count, spans[inside].contains(i) { i = spans[inside].upperBound; continue }
                    if chars[i] == "#", i == s || chars[i - 1] == " " || chars[i - 1] == "\t" {
                        let comment = String(String.UnicodeScalarView(chars[i..<e]))
                        let cleaned = Redaction.text(comment)
                        if cleaned != comment { out.append(Edit(range: i..<e, replacement: cleaned.replacingOccurrences(of: "\n", with: " "))) }
                        break
                    }
                    i += 1
                }
            }
            return out
        }

        func applying(_ edits: [Edit]) -> String {
            var out = String.UnicodeScalarView()
            var at = 0
            for e in edits.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) where e.range.lowerBound >= at {
                out.append(contentsOf: chars[at..<e.range.lowerBound])
                out.append(contentsOf: e.replacement.unicodeScalars)
                at = e.range.upperBound
            }
            out.append(contentsOf: chars[at...])
            return String(out)
        }

        /// The words of `before` that redaction removed (to check that none survives elsewhere).
        static func changedWords(_ before: String, _ after: String) -> [String] {
            let kept = Set(after.split(whereSeparator: { " /:@?&=;,'\"".contains($0) }).map(String.init))
            return before.split(whereSeparator: { " /:@?&=;,'\"".contains($0) }).map(String.init).filter { !kept.contains($0) }
        }
    }
}
