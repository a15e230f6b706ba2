import CEL

/// The one place secrets are removed from text before drplan prints, stores or sends it
/// (docs/security.md). Every output path calls it: the facts (and so every report format,
/// `check`, `eval`), the evidence store's runs and audit log (and so history, the runs CSV and
/// JSON, and evidence bundles), alerts, and the terminal log. Redaction is deliberately eager:
/// a username or a port shown as `<redacted>` costs a reader little, a leaked token a lot.
public enum Redaction {
    public static let mask = "<redacted>"

    /// Key names whose values are secrets, for redaction and for rule DR703 alike: any name containing `password`, `passwd`, `secret`,
    /// `token`, `passphrase`, `credential`, `private`, `auth` or `key`, apart from the names
    /// below, which hold identifiers or references rather than secrets.
    public static func isSecretKey(_ key: String) -> Bool {
        // Bytes, not Foundation's `contains` (which bridges to NSString on Linux): the facts'
        // redaction pass asks this of every key of every object.
        var k = Array(key.utf8)
        for i in k.indices where k[i] >= 0x41 && k[i] <= 0x5A { k[i] += 0x20 }
        guard secretWordBytes.contains(where: { contains(k, $0) }) else { return false }
        return !notSecret.contains(String(decoding: k, as: UTF8.self))
    }

    static let secretWordBytes: [[UInt8]] = secretWords.map { Array($0.utf8) }

    /// Whether `needle` occurs in `hay` (both short: a key, a word).
    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= hay.count, let first = needle.first else { return needle.isEmpty }
        var i = 0
        while i + needle.count <= hay.count {
            if hay[i] == first {
                var j = 1
                while j < needle.count, hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }

    /// Whether `s` has any shape a secret takes in free text: `://`, `=`, `-p`, `--`, or (in
    /// any case) `authoriz`, `hook` (Slack, Teams and Discord webhooks, with or without a
    /// scheme), `logic.azure`, or a secret's name (`pass`, `pwd`, `secret`, `token`). One pass over the bytes; most values (ids, names, paths)
    /// have none and skip the regular expressions. A property test holds it to `scrub`.
    static func mayHoldSecret(_ s: String) -> Bool {
        var previous: UInt8 = 0, beforeThat: UInt8 = 0
        var matched = [Int](repeating: 0, count: fastPathWords.count)
        for b in s.utf8 {
            if b == 0x3D { return true }                                       // =
            if b == 0x2F, previous == 0x2F, beforeThat == 0x3A { return true } // ://
            if previous == 0x2D, b == 0x70 || b == 0x2D { return true }        // -p, --
            let lower = b >= 0x41 && b <= 0x5A ? b + 0x20 : b
            for (w, word) in fastPathWords.enumerated() {
                matched[w] = lower == word[matched[w]] ? matched[w] + 1 : (lower == word[0] ? 1 : 0)
                if matched[w] == word.count { return true }
            }
            beforeThat = previous; previous = b
        }
        return false
    }

    /// No word repeats its first letter, so restarting a match at that letter is exact.
    static let fastPathWords: [[UInt8]] = ["authoriz", "hook", "logic.azure", "pass", "pwd", "secret", "token"].map { Array($0.utf8) }

    static let secretWords = ["password", "passwd", "pwd", "secret", "token", "passphrase", "credential", "private", "auth", "key"]
    /// `key` itself names a key (the facts' `documents`), not a secret.
    static let notSecret: Set<String> = ["key", "key_storage", "key_escrow", "access_key_id", "aws_access_key_id", "key_id", "kms_key_id", "public_key", "keys",
                                         "monkey", "author", "authority", "keyboard", "hotkey", "secret_args"]
    /// Query parameters that carry signatures and credentials whatever their name says.
    static let secretParameters: Set<String> = ["sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "code", "apikey"]

    // The patterns, compiled once: a regex literal in a function body is parsed again on
    // every call (with this toolchain, a fifth of `facts` on 20,000 assets). `Regex` is not
    // marked Sendable, but it is immutable once built and compiles its program lazily with an
    // atomic compare-and-swap, so sharing one across threads is safe: hence `unsafe`.
    nonisolated(unsafe) static let userinfoPattern = /(?<scheme>[A-Za-z][A-Za-z0-9+.\-]*:\/\/)(?<info>[^\/\s?#@'"]+)@/
    nonisolated(unsafe) static let queryPattern = /(?<lead>[?&;](?<name>[A-Za-z0-9_.\-]+)=)(?<value>[^&#\s'"]*)/
    nonisolated(unsafe) static let namedValuePattern = /(?i)(?<name>\b[A-Za-z_]*(?:password|passwd|pwd|secret|token|passphrase)[A-Za-z_]*)(?<eq>\s*=\s*|["']?\s*:(?!\/\/)\s*(?!(?:env|file|vault):))(?<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s;&'",}]+)/
    nonisolated(unsafe) static let webhookPattern = /(?i)(?<host>hooks\.slack\.com\/(?:services|workflows|triggers)\/|discord(?:app)?\.com\/api\/webhooks\/|\.webhook\.office\.com\/webhookb2\/|outlook\.office\.com\/webhook\/|\.logic\.azure\.com(?::\d+)?\/workflows\/)(?<rest>[^\s'"?#]+)/
    nonisolated(unsafe) static let authorizationPattern = /(?i)(?<lead>authorization\s*[:=]\s*(?:bearer|basic|token|aws4-hmac-sha256)?\s*)(?<value>[^\s'",]+)/
    nonisolated(unsafe) static let flagPattern = /(?<lead>(?:^|\s)--?(?:password|passwd|pass|pwd|token|secret|api-key|apikey|auth|passphrase)(?:=|\s+))(?<value>'[^']*'|"[^"]*"|[^\s'"]+)/
    nonisolated(unsafe) static let shortPPattern = /(?<lead>(?:^|\s)-p\s+)(?<value>[^\s-]\S*)/
    nonisolated(unsafe) static let optionNamePattern = /--?[A-Za-z0-9][A-Za-z0-9_.\-]*/
    nonisolated(unsafe) static let optionMaskPattern = /(?<lead>(?:^|\s)(?<flag>--?[A-Za-z0-9][A-Za-z0-9_.\-]*)(?:=|\s+))(?<value>'[^']*'|"(?:[^"\\]|\\.)*"|[^\s'"]+)/

    /// Free text with its secrets masked: URL userinfo, secret-named query parameters,
    /// `password=…` pairs (key/value DSNs), the token part of Slack, Teams and Discord webhook
    /// URLs, `Authorization:` values, and the value after `--password`, `-p ` and the like (`-pSECRET`, attached, is not
    /// recognised: too many tools have `-p…` options that are not passwords).
    public static func text(_ s: String) -> String {
        // Fast path: text with none of the shapes a secret takes here.
        guard mayHoldSecret(s) else { return s }
        // Until nothing changes: one mask can expose the rest of a value to another pattern
        // (fuzzing found `secret_key: "a: ["…KEY"`, whose unquoted tail survived one pass).
        var out = s
        for _ in 0..<8 {
            let next = scrub(out)
            if next == out { break }
            out = next
        }
        return out
    }

    /// `text` without its fast path (a test checks that the fast path skips only text this
    /// leaves alone).
    static func scrub(_ s: String) -> String {
        var out = s
        out = out.replacing(Self.userinfoPattern) { m in "\(m.output.scheme)\(userinfo(String(m.output.info)))@" }
        out = out.replacing(Self.queryPattern) { m in
            isSecretKey(String(m.output.name)) || secretParameters.contains(m.output.name.lowercased()) ? "\(m.output.lead)\(mask)" : String(m.output.0)
        }
        // `password=x` (DSNs), and `password: x` or `"token": "x"` (prose, JSON); a reference
        // after a colon (`env:NAME`) says where the secret is and stays.
        out = out.replacing(Self.namedValuePattern) { m in
            "\(m.output.name)\(m.output.eq)\(mask)"
        }
        out = out.replacing(Self.webhookPattern) { m in
            "\(m.output.host)\(mask)"
        }
        out = out.replacing(Self.authorizationPattern) { m in "\(m.output.lead)\(mask)" }
        out = out.replacing(Self.flagPattern) { m in "\(m.output.lead)\(mask)" }
        out = out.replacing(Self.shortPPattern) { m in "\(m.output.lead)\(mask)" }
        return out
    }

    /// `user:password` keeps the user; a lone name (a webhook token passed as the user) goes.
    static func userinfo(_ info: String) -> String {
        if let colon = info.firstIndex(of: ":") { return String(info[..<colon]) + ":" + mask }
        return mask
    }

    /// A value stored under `key`: masked whole when the key names a secret and the value is a
    /// literal (a reference such as `env:NAME` or `file:path` is shown: it is where the secret
    /// is, not the secret), else scrubbed as text.
    public static func value(_ s: String, key: String?) -> String {
        if let key, isSecretKey(key), SecretRef.classify(s) == .literal, !s.isEmpty { return mask }
        return text(s)
    }

    /// An option name as `secret_args` lists it: `-k`, `--api-key`, `--license.file`.
    public static func isOptionName(_ s: String) -> Bool {
        s.wholeMatch(of: Self.optionNamePattern) != nil
    }

    /// The values a command passes after the options `flags` (`--flag VALUE`, `--flag=VALUE`,
    /// quoted or not), as written.
    public static func optionValues(_ command: String, flags: [String]) -> [String] {
        guard !flags.isEmpty else { return [] }
        var out: [String] = []
        for m in command.matches(of: Self.optionMaskPattern)
        where flags.contains(String(m.output.flag)) {
            var v = String(m.output.value)
            if v.count >= 2, let f = v.first, f == "'" || f == "\"", v.last == f { v = String(v.dropFirst().dropLast()) }
            if !v.isEmpty { out.append(v) }
        }
        return out
    }

    /// A command line with the values after `flags` masked, then scrubbed as text (which
    /// masks `--password` and the like whatever the flags).
    public static func command(_ command: String, secretFlags flags: [String]) -> String {
        guard !flags.isEmpty else { return text(command) }
        let masked = command.replacing(Self.optionMaskPattern) { m in
            flags.contains(String(m.output.flag)) ? "\(m.output.lead)\(mask)" : String(m.output.0)
        }
        return text(masked)
    }

    /// Removes `secrets` (known values, such as a command job's `secret_args`) from `s`, then
    /// scrubs it as text.
    public static func text(_ s: String, removing secrets: [String]) -> String {
        var out = s
        for secret in secrets where secret.count >= 4 { out = out.replacingOccurrences(of: secret, with: mask) }
        return text(out)
    }
}

extension Redaction {
    /// Every string of a value tree scrubbed, and secret-named entries holding literals masked.
    public static func value(_ v: Value, key: String? = nil) -> Value {
        switch v {
        case .string(let s): return .string(value(s, key: key))
        case .list(let l): return .list(l.map { value($0, key: key) })
        case .map(let m):
            var out = OrderedMap()
            for (k, x) in m.entries {
                if case .string(let name) = k { out[k] = value(x, key: name) } else { out[k] = value(x, key: key) }
            }
            return .map(out)
        default: return v
        }
    }
}
