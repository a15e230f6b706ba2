import Yams

/// The file being read and where its problems go.
package struct ReadContext {
    package let file: String
    package let sink: DiagnosticSink

    package init(file: String, sink: DiagnosticSink) {
        self.file = file
        self.sink = sink
    }

    package func location(_ node: Node) -> SourceLocation {
        let mark = node.mark
        return SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    package func error(_ node: Node, _ message: String) { sink.add(location(node), message) }
}

extension Node {
    package var isNull: Bool {
        if case .scalar(let s) = self { return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string) }
        return false
    }

    /// How a node reads in a message: "a list", "a mapping", "'abc'".
    package var shapeDescription: String {
        switch self {
        case .scalar(let s): return isNull ? "null" : "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}

/// Reads one YAML mapping as a drplan object: every key it takes is remembered, so
/// `finish(allowed:)` can report the rest as unknown, with a did-you-mean suggestion.
package final class ObjectReader {
    package let ctx: ReadContext
    package let node: Node
    package var what: String
    package private(set) var entries: [(key: String, keyNode: Node, value: Node)] = []
    private var index: [String: Int] = [:]
    private var valueLocations: [String: SourceLocation] = [:]

    package init?(_ node: Node, what: String, ctx: ReadContext) {
        self.ctx = ctx
        self.node = node
        self.what = what
        guard case .mapping(let m) = node else {
            ctx.error(node, "\(what) must be a mapping of keys to values, not \(node.shapeDescription)")
            return nil
        }
        var merged: [(Node, Node)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                ctx.error(k, Messages.keyNotString(in: what))
                continue
            }
            // YAML merge keys (`<<: *defaults`): their entries apply unless written explicitly.
            if ks.string == "<<", ks.style == .plain {
                switch v {
                case .mapping(let base): merged += base.map { ($0.key, $0.value) }
                case .sequence(let bases):
                    for case .mapping(let base) in bases { merged += base.map { ($0.key, $0.value) } }
                default: ctx.error(v, "'<<' in \(what) must merge a mapping, such as '<<: *defaults'")
                }
                continue
            }
            index[ks.string] = entries.count
            entries.append((ks.string, k, v))
        }
        for (k, v) in merged {
            guard case .scalar(let ks) = k, index[ks.string] == nil else { continue }
            index[ks.string] = entries.count
            entries.append((ks.string, k, v))
        }
    }

    package var origin: Origin {
        var keys: [String: SourceLocation] = [:]
        for e in entries { keys[e.key] = ctx.location(e.keyNode) }
        return Origin(location: ctx.location(node), keys: keys, values: valueLocations)
    }

    /// The value under `key`, or nil when absent or written as null.
    package func value(_ key: String) -> Node? {
        guard let i = index[key] else { return nil }
        let v = entries[i].value
        return v.isNull ? nil : v
    }

    package func keyNode(_ key: String) -> Node? { index[key].map { entries[$0].keyNode } }

    /// Remembers where a value sits, so that a later reference error can point at it.
    package func note(_ key: String, value: String, at node: Node?) {
        if let node, valueLocations[key + "/" + value] == nil { valueLocations[key + "/" + value] = ctx.location(node) }
    }

    package func has(_ key: String) -> Bool { value(key) != nil }

    /// Reports keys outside `allowed`. `x-` extension keys are always allowed.
    package func finish(allowed: [String]) {
        let allowedSet = Set(allowed)
        for e in entries where !allowedSet.contains(e.key) && !e.key.hasPrefix("x-") {
            ctx.error(e.keyNode, Messages.unknownKey(e.key, in: what, suggestion: suggestion(for: e.key, among: allowed)))
        }
    }

    package func missing(_ key: String) {
        ctx.sink.add(ctx.location(node), Messages.missingKey(key, in: what))
    }

    // MARK: typed values

    package func scalarText(_ key: String, shape: String) -> (String, Node)? {
        guard let v = value(key) else { return nil }
        guard case .scalar(let s) = v else {
            ctx.error(v, Messages.expected(shape, for: key, in: what, found: v.shapeDescription))
            return nil
        }
        return (s.string, v)
    }

    package func string(_ key: String, required: Bool = false) -> String? {
        guard let (s, _) = scalarText(key, shape: "a string") else {
            if required && !has(key) { missing(key) }
            return nil
        }
        return s
    }

    package func parsed<T>(_ key: String, required: Bool = false, shape: String, _ parse: (String) throws(ScalarError) -> T) -> T? {
        guard let (s, node) = scalarText(key, shape: shape) else {
            if required && !has(key) { missing(key) }
            return nil
        }
        do {
            return try parse(s)
        } catch {
            ctx.error(node, Messages.invalidValue(s, key: key, in: what, reason: error.reason))
            return nil
        }
    }

    /// `timezone:`: an IANA zone name the system's zone data knows.
    package func timezone() -> ZoneRules? {
        parsed("timezone", shape: "an IANA time zone name") { (s: String) throws(ScalarError) -> ZoneRules in
            guard let z = ZoneRules.named(s) else {
                throw ScalarError("not a time zone this system knows; use an IANA name such as Europe/London, America/New_York or UTC (names are case-sensitive; see /usr/share/zoneinfo)")
            }
            return z
        }
    }

    package func duration(_ key: String, required: Bool = false) -> TimeSpan? { parsed(key, required: required, shape: "a duration", TimeSpan.parse) }
    package func size(_ key: String) -> Int64? { parsed(key, shape: "a size", ByteSize.parse) }
    package func rate(_ key: String) -> Int64? { parsed(key, shape: "a rate", ByteRate.parse) }
    package func timestamp(_ key: String, required: Bool = false) -> Timestamp? { parsed(key, required: required, shape: "a timestamp", Timestamp.parse) }
    package func id(_ key: String, required: Bool = true) -> String? {
        let v = parsed(key, required: required, shape: "an id", Identifier.validate)
        if let v { note(key, value: v, at: value(key)) }
        return v
    }

    package func choice<E: RawRepresentable & CaseIterable>(_ key: String, required: Bool = false) -> E? where E.RawValue == String {
        let names = E.allCases.map(\.rawValue)
        return parsed(key, required: required, shape: "one of \(names.joined(separator: ", "))") { (s: String) throws(ScalarError) -> E in
            guard let e = E(rawValue: s) else { throw ScalarError(Messages.oneOf(names, suggestion: suggestion(for: s, among: names))) }
            return e
        }
    }

    package func bool(_ key: String) -> Bool? {
        parsed(key, shape: "true or false") { (s: String) throws(ScalarError) -> Bool in
            switch s.lowercased() {
            case "true": return true
            case "false": return false
            default: throw ScalarError("expected true or false")
            }
        }
    }

    package func int(_ key: String, minimum: Int = 0) -> Int? {
        parsed(key, shape: "a whole number") { (s: String) throws(ScalarError) -> Int in
            guard let n = Int(s) else { throw ScalarError("expected a whole number") }
            guard n >= minimum else { throw ScalarError("must be at least \(minimum)") }
            return n
        }
    }

    package func secret(_ key: String) -> SecretRef? {
        guard let v = value(key) else { return nil }
        guard case .scalar(let s) = v else {
            ctx.error(v, Messages.expected("a secret reference such as 'env:NAME'", for: key, in: what, found: v.shapeDescription))
            return nil
        }
        return SecretRef.classify(s.string)
    }

    /// A list of scalars, each with its node for later messages.
    package func list(_ key: String, required: Bool = false) -> [(String, Node)]? {
        guard let v = value(key) else {
            if required { missing(key) }
            return nil
        }
        guard case .sequence(let seq) = v else {
            ctx.error(v, Messages.expected("a list such as [a, b]", for: key, in: what, found: v.shapeDescription))
            return nil
        }
        var out: [(String, Node)] = []
        for item in seq {
            guard case .scalar(let s) = item, !item.isNull else {
                ctx.error(item, Messages.expected("a list of plain values", for: key, in: what, found: "an entry that is \(item.shapeDescription)"))
                continue
            }
            out.append((s.string, item))
            note(key, value: s.string, at: item)
        }
        return out
    }

    /// A list of objects: `body` reads each one that is a mapping, named `item(i)` (from 0)
    /// in its messages; a value that is not a list is reported with `notAList(value)`.
    package func objects(_ key: String, item: (Int) -> String, notAList: (Node) -> String, _ body: (ObjectReader) -> Void) {
        guard let v = value(key) else { return }
        guard case .sequence(let items) = v else {
            ctx.error(v, notAList(v))
            return
        }
        for (i, node) in items.enumerated() {
            guard let r = ObjectReader(node, what: item(i), ctx: ctx) else { continue }
            body(r)
        }
    }

    package func idList(_ key: String, required: Bool = false) -> [String]? {
        guard let items = list(key, required: required) else { return nil }
        var out: [String] = []
        for (s, n) in items {
            do { out.append(try Identifier.validate(s)) } catch { ctx.error(n, Messages.invalidValue(s, key: key, in: what, reason: error.reason)) }
        }
        return out
    }

    package func object(_ key: String) -> ObjectReader? {
        guard let v = value(key) else { return nil }
        return ObjectReader(v, what: "'\(key)' of \(what)", ctx: ctx)
    }

    /// `labels:` — a map of strings, allowed on every object.
    package func labels() -> [(String, String)] {
        guard let v = value("labels") else { return [] }
        guard case .mapping(let m) = v else {
            ctx.error(v, Messages.expected("a mapping of strings", for: "labels", in: what, found: v.shapeDescription))
            return []
        }
        var out: [(String, String)] = []
        for (k, val) in m {
            guard case .scalar(let ks) = k, case .scalar(let vs) = val else {
                ctx.error(val, Messages.expected("a mapping of strings", for: "labels", in: what, found: "a nested value"))
                continue
            }
            out.append((ks.string, vs.string))
        }
        return out
    }
}

extension YAMLValue {
    init(_ node: Node) {
        switch node {
        case .scalar(let s): self = node.isNull ? .null : .scalar(s.string, plain: s.style == .plain)
        case .sequence(let seq): self = .list(seq.map(YAMLValue.init))
        case .mapping(let m): self = .map(m.map { (k, v) in (k.scalar?.string ?? "?", YAMLValue(v)) })
        case .alias: self = .null
        }
    }
}
