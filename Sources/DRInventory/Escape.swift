/// The one place user-supplied text is made safe for where it is printed: a terminal line, a
/// Markdown document, XML. Redaction of secrets is a separate concern (Redaction.swift does it
/// before any of these).
public enum Escape {
    /// One line of terminal output: control characters (C0, DEL, C1), line and paragraph
    /// separators and bidirectional overrides become visible escapes, so no value an inventory
    /// holds can start a forged `FILE:LINE:COL: error:` line or hide text.
    public static func line(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: needsEscape) else { return s }
        return replacing(s) { u in
            switch u {
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            default: return needsEscape(u) ? "\\u{" + String(u.value, radix: 16) + "}" : nil
            }
        }
    }

    /// A YAML double-quoted scalar that reads back as `s` exactly (the evidence bundle's
    /// redacted inventory writes its replacements so).
    public static func yamlDoubleQuoted(_ s: String) -> String {
        "\"" + replacing(s) { u in
            switch u {
            case "\"": return "\\\""
            case "\\": return "\\\\"
            case "\n": return "\\n"
            case "\t": return "\\t"
            case "\r": return "\\r"
            case _ where u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xFEFF:
                // Not printable for YAML: written as an escape.
                let hex = String(u.value, radix: 16)
                return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: return nil
            }
        } + "\""
    }

    /// `s` with each scalar for which `escape` gives text replaced by it.
    static func replacing(_ s: String, _ escape: (Unicode.Scalar) -> String?) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if let e = escape(u) { out += e } else { out.unicodeScalars.append(u) }
        }
        return out
    }

    static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029
            || (0x202A...0x202E).contains(u.value) || (0x2066...0x2069).contains(u.value)
    }

    /// Text for Markdown (tables and prose): HTML is escaped as entities, Markdown's own syntax
    /// (emphasis, links, images, code, headings, tables) with backslashes, and line breaks
    /// become spaces, so a value can neither inject HTML, a `javascript:` link or an image, nor
    /// break out of a table row.
    public static func markdown(_ s: String) -> String {
        var out = ""
        let flat = s.replacingOccurrences(of: "\r\n", with: " ").replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        for ch in line(flat) {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\\", "`", "*", "_", "{", "}", "[", "]", "(", ")", "#", "+", "!", "|", "~": out += "\\" + String(ch)
            default: out.append(ch)
            }
        }
        return out
    }

    /// Text inside a Markdown code span or fenced block: no backtick can close it and no line
    /// break can end it; HTML inside code is shown, not interpreted.
    public static func markdownCode(_ s: String) -> String {
        line(s).replacingOccurrences(of: "`", with: "'")
    }

    /// Text for XML 1.0: characters the standard forbids (most C0 controls, U+FFFE, U+FFFF,
    /// lone surrogates cannot occur in a Swift String) become visible `\u{…}` escapes; the XML
    /// writer escapes markup characters itself.
    public static func xml(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { !xmlAllowed($0) }) else { return s }
        return replacing(s) { u in xmlAllowed(u) ? nil : "\\u{" + String(u.value, radix: 16) + "}" }
    }

    /// One CSV field, quoted (RFC 4180). A field that a spreadsheet would read as a formula
    /// (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`, as
    /// OWASP advises: a command's output or an error is not to run in an auditor's Excel.
    public static func csvField(_ s: String) -> String {
        let formula = s.unicodeScalars.first.map { "=+-@\t\r".unicodeScalars.contains($0) } ?? false
        return "\"" + (formula ? "'" : "") + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Rows of fields as RFC 4180 CSV: every field quoted (`csvField`), CRLF line ends.
    public static func csv(_ rows: [[String]]) -> String {
        rows.map { $0.map(csvField).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
    }

    static func xmlAllowed(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: return true
        default: return false
        }
    }
}
