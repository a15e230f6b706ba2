import Foundation

/// Every user-facing sentence the inventory layer prints lives here, so wording stays
/// consistent: each quotes the offending value and, where there is one, names the next step.
public enum Messages {
    // MARK: files
    static func fileNotFound(_ path: String) -> String {
        "inventory file '\(path)' does not exist; pass an existing file or directory with -i, or create one with 'drplan init'"
    }
    static func fileUnreadable(_ path: String, _ reason: String) -> String {
        "cannot read inventory file '\(path)': \(reason)"
    }
    static func fileTooLarge(_ path: String, _ bytes: Int, limit: Int) -> String {
        "inventory file '\(path)' is \(bytes) bytes, over the \(limit)-byte limit; split it into several files with 'include:'"
    }
    static func invalidUTF8(byte: UInt8) -> String {
        String(format: "the file is not UTF-8 text (byte 0x%02X cannot start or continue a character); save it as UTF-8", byte)
    }
    static func unreadableDirectory(_ path: String, reason: String) -> String {
        "cannot list the inventory directory \(path): \(reason); check its permissions"
    }

    static func emptyDirectory(_ path: String) -> String {
        "directory '\(path)' holds no *.yaml or *.yml files; point -i at an inventory file"
    }
    static func emptyDocument() -> String {
        "the file is empty; an inventory starts with 'drplan: 1' (run 'drplan init' for a commented starter)"
    }
    static func multipleDocuments() -> String {
        "the file holds more than one YAML document ('---'); put each in its own file and list them under 'include:'"
    }
    static func yamlSyntax(_ problem: String) -> String {
        "YAML syntax error: \(problem); fix the YAML at this position"
    }
    static func duplicateKeys(_ keys: [String]) -> String {
        "the key \(keys.map { "'\($0)'" }.joined(separator: ", ")) appears twice in one mapping; keep one of them"
    }
    static func aliasBomb(limit: Int) -> String {
        "YAML aliases expand to more than \(limit) nodes; this looks like an alias bomb, so the file was not read. Write the values out or use fewer nested aliases"
    }

    // MARK: structure
    static func topLevelNotMapping(found: String) -> String {
        "the top level of an inventory must be a mapping with 'drplan: 1', not \(found)"
    }
    static func missingVersion() -> String {
        "missing 'drplan:' version; add 'drplan: 1' as the first line"
    }
    static func unsupportedVersion(_ v: String) -> String {
        "unsupported inventory version '\(v)'; this drplan reads 'drplan: 1'"
    }
    static func unknownKey(_ key: String, in what: String, suggestion: String?) -> String {
        var s = "unknown key '\(key)' in \(what)"
        if let suggestion { s += " (did you mean '\(suggestion)'?)" } else { s += "; remove it, or prefix it with 'x-' to keep it as an extension" }
        return s
    }
    static func missingKey(_ key: String, in what: String) -> String {
        "missing required key '\(key)' in \(what)"
    }
    static func expected(_ shape: String, for key: String, in what: String, found: String) -> String {
        "'\(key)' in \(what) must be \(shape), not \(found)"
    }
    static func keyNotString(in what: String) -> String {
        "keys in \(what) must be plain strings"
    }
    static func invalidValue(_ value: String, key: String, in what: String, reason: String) -> String {
        "invalid value '\(value)' for '\(key)' in \(what): \(reason)"
    }
    static func oneOf(_ allowed: [String], suggestion: String?) -> String {
        var s = "expected one of \(allowed.joined(separator: ", "))"
        if let suggestion { s += " (did you mean '\(suggestion)'?)" }
        return s
    }
    static func signingKeyReference() -> String {
        "'signing_key' in 'evidence' must say where the key is: file:PATH (written by 'drplan evidence keygen') or env:NAME; a key written into the inventory signs nothing anyone can trust"
    }
    static func onlyOnce(_ key: String, first: SourceLocation) -> String {
        "'\(key)' may appear in one inventory file only; it is already set at \(first)"
    }
    static func bothAssetAndAssets(in what: String) -> String {
        "\(what) has both 'asset' and 'assets'; keep one"
    }
    static func reasonRequired(_ id: String) -> String {
        "asset '\(id)' has 'backup: none' without 'reason'; say why it needs no backup"
    }
    static func secretArgNotOption(_ value: String, in what: String) -> String {
        "'\(value)' in 'secret_args' of \(what) is not an option name; list the options whose value is secret, such as --token or -k"
    }

    static func secretArgsNeedCommand(in what: String) -> String {
        "'secret_args' in \(what) applies to the command engine's commands; remove it, or use 'engine: command'"
    }

    static func emptyList(_ key: String, in what: String) -> String {
        "'\(key)' in \(what) must name at least one entry"
    }

    // MARK: references
    static func duplicateId(_ id: String, kind: String, first: SourceLocation, firstKind: String) -> String {
        "duplicate id '\(id)': \(kind) reuses the id of the \(firstKind) at \(first); ids are unique across the whole inventory"
    }
    static func unknownReference(_ id: String, key: String, in what: String, expectedKind: String, suggestion: String?) -> String {
        var s = "\(what) refers in '\(key)' to \(expectedKind) '\(id)', which does not exist"
        if let suggestion { s += " (did you mean '\(suggestion)'?)" }
        return s
    }
    static func wrongKindReference(_ id: String, key: String, in what: String, expectedKind: String, actualKind: String) -> String {
        "\(what) refers in '\(key)' to '\(id)', which is \(article(actualKind)) \(actualKind), not \(article(expectedKind)) \(expectedKind)"
    }
    static func assetNotInJob(_ asset: String, test: String, job: String) -> String {
        "restore test '\(test)' names asset '\(asset)', which job '\(job)' does not back up; use one of the job's assets"
    }
    static func dependencyCycle(_ cycle: [String]) -> String {
        "dependency cycle: \(cycle.joined(separator: " -> ")); remove one of these 'depends_on' entries"
    }
    static func waiverSubjectUnknown(_ subject: String, suggestion: String?) -> String {
        var s = "waiver subject '\(subject)' matches no id in the inventory"
        if let suggestion { s += " (did you mean '\(suggestion)'?)" }
        return s + "; a waiver must point at the object its finding is about"
    }

    // MARK: includes
    static func includeMissing(_ pattern: String) -> String {
        "included file '\(pattern)' does not exist (paths are relative to the including file)"
    }
    static func includeNoMatch(_ pattern: String) -> String {
        "include pattern '\(pattern)' matches no file (paths are relative to the including file)"
    }
    static func includeCycle(_ chain: [String]) -> String {
        "include cycle: \(chain.joined(separator: " -> ")); a file may not include itself"
    }

    static func article(_ word: String) -> String {
        guard let c = word.first else { return "a" }
        return "aeiou".contains(c) ? "an" : "a"
    }
}
