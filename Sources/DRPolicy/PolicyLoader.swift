import CEL
import DRFacts
import DRInventory
import Foundation
import Yams

/// drplan's functions beyond CEL's standard library.
public enum DrplanFunctions {
    public static let all: [String: Builtins.Function] = [
        "quantity": { (a: [Value]) throws(EvalError) -> Value in
            guard a.count == 1, case .string(let s) = a[0] else { throw EvalError("quantity() takes one string such as '500GB'") }
            do throws(ScalarError) { return .int(try ByteSize.parse(s)) } catch { throw EvalError("quantity('\(s)'): \(error.reason)") }
        },
        "rate": { (a: [Value]) throws(EvalError) -> Value in
            guard a.count == 1, case .string(let s) = a[0] else { throw EvalError("rate() takes one string such as '250MB/s'") }
            do throws(ScalarError) { return .int(try ByteRate.parse(s)) } catch { throw EvalError("rate('\(s)'): \(error.reason)") }
        },
    ]
}

/// Reads policy files (facts.md's format) into checked rules. Every expression is parsed and
/// type-checked against the fact model here, so a bad policy fails before anything runs.
public struct PolicyLoader {
    let sink = DiagnosticSink()
    public private(set) var set = PolicySet()
    private var definedAt: [String: SourceLocation] = [:]

    public init() {}

    /// Loads the built-in catalog, then every `*.yaml`/`*.yml` under each directory, in order.
    /// Policy files given as text (the fuzzer's entry; tests).
    public static func load(texts: [(name: String, text: String)], builtin: Bool = false) throws(InputError) -> PolicySet {
        var loader = PolicyLoader()
        if builtin { for (name, text) in Catalog.files { loader.read(text: text, file: name) } }
        for (name, text) in texts {
            loader.set.files.append((name, Array(text.utf8)))
            loader.read(text: text, file: name)
        }
        loader.applyOverrides()
        if !loader.sink.isEmpty { throw InputError(loader.sink.items) }
        loader.set.rules.sort { $0.id < $1.id }
        return loader.set
    }

    public static func load(builtin: Bool = true, directories: [String] = []) throws(InputError) -> PolicySet {
        var loader = PolicyLoader()
        if builtin { for (name, text) in Catalog.files { loader.read(text: text, file: name) } }
        for dir in directories {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
                loader.sink.add(SourceLocation(file: dir, line: 0, column: 0), "policy directory '\(dir)' does not exist; pass an existing directory with --policies")
                continue
            }
            let files: [String]
            if isDir.boolValue {
                let all = (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String]) ?? []
                files = all.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { InventoryLoader.join(dir, $0) }
            } else {
                files = [dir]
            }
            for f in files {
                guard let data = FileManager.default.contents(atPath: f) else {
                    loader.sink.add(SourceLocation(file: f, line: 0, column: 0), "cannot read policy file '\(f)'")
                    continue
                }
                guard let text = InventoryLoader.decodeUTF8([UInt8](data), file: f, sink: loader.sink) else { continue }
                loader.set.files.append((f, [UInt8](data)))
                loader.read(text: text, file: f)
            }
        }
        loader.applyOverrides()
        if !loader.sink.isEmpty { throw InputError(loader.sink.items) }
        loader.set.rules.sort { $0.id < $1.id }
        return loader.set
    }

    /// Reads one policy file's text.
    public mutating func read(text: String, file: String) {
        let ctx = ReadContext(file: file, sink: sink)
        guard let root = InventoryLoader.compose(text, file: file, sink: sink) else { return }
        guard let top = ObjectReader(root, what: "the policy file", ctx: ctx) else { return }
        if let (v, node) = top.scalarText("drplan-policy", shape: "the number 1") {
            if v != "1" { ctx.error(node, "unsupported policy format version '\(v)'; this drplan reads 'drplan-policy: 1'") }
        } else {
            sink.add(SourceLocation(file: file, line: 1, column: 1), "missing 'drplan-policy:' version; add 'drplan-policy: 1' as the first line")
        }
        top.finish(allowed: ["drplan-policy", "rules", "overrides", "frameworks"])
        // More data classes for a framework's scope (policies/frameworks.yaml's format).
        if top.has("frameworks") { set.catalog.read(text, file: file, sink: sink) }
        if let rules = top.value("rules") {
            guard case .sequence(let items) = rules else {
                ctx.error(rules, "'rules' must be a list of rules")
                return
            }
            for (i, item) in items.enumerated() {
                guard let r = ObjectReader(item, what: "rule #\(i + 1)", ctx: ctx) else { continue }
                if let rule = readRule(r, ctx: ctx) {
                    if let first = definedAt[rule.id] {
                        ctx.error(r.value("id") ?? item, "duplicate rule id '\(rule.id)': already defined at \(first); rule ids are unique across all loaded policies")
                    } else {
                        definedAt[rule.id] = rule.location
                        set.rules.append(rule)
                    }
                }
            }
        }
        if case .sequence(let items)? = top.value("overrides") {
            for item in items {
                guard let o = ObjectReader(item, what: "an override", ctx: ctx) else { continue }
                guard let rule = o.parsed("rule", required: true, shape: "a rule id", Identifier.validateRule) else { continue }
                let severity: Severity? = o.choice("severity")
                let enabled = o.bool("enabled")
                o.finish(allowed: ["rule", "enabled", "severity"])
                set.overrides.append(Override(rule: rule, enabled: enabled, severity: severity, location: ctx.location(item)))
            }
        } else if let v = top.value("overrides") {
            ctx.error(v, "'overrides' must be a list such as [{ rule: DR702, enabled: false }]")
        }
    }

    mutating func applyOverrides() {
        for o in set.overrides {
            guard let i = set.rules.firstIndex(where: { $0.id == o.rule }) else {
                let known = set.rules.map(\.id)
                sink.add(o.location, "override names rule '\(o.rule)', which no loaded policy defines" + (suggestion(for: o.rule, among: known).map { " (did you mean '\($0)'?)" } ?? ""))
                continue
            }
            if let e = o.enabled { set.rules[i].enabled = e }
            if let s = o.severity { set.rules[i].severity = s }
        }
    }

    // MARK: rules

    func readRule(_ r: ObjectReader, ctx: ReadContext) -> Rule? {
        let id = r.parsed("id", required: true, shape: "a rule id", Identifier.validateRule)
        if let id { r.what = "rule \(id)" }
        let name = r.string("name", required: true)
        let title = r.string("title") ?? name ?? ""
        let severity: Severity? = r.choice("severity", required: true)
        let subject: SubjectKind? = r.choice("subject", required: true)
        // "framework:id Short title": the title is for the reader of the file (and checked
        // against policies/controls/ for the built-in catalog); the id is what is matched.
        var controls: [String] = [], controlTitles: [String: String] = [:]
        for (c, n) in r.list("controls") ?? [] {
            let id = String(c.split(separator: " ", maxSplits: 1).first ?? "")
            guard id.contains(":") else {
                ctx.error(n, "control '\(c)' in \(r.what) must be written 'framework:id', such as 'gdpr:Art.32(1)(c)', optionally followed by the control's title")
                continue
            }
            controls.append(id)
            if c.count > id.count { controlTitles[id] = String(c.dropFirst(id.count + 1)).trimmingCharacters(in: .whitespaces) }
        }
        let rationale = r.string("rationale") ?? ""
        r.finish(allowed: ["id", "name", "title", "severity", "subject", "when", "assert", "each", "as", "message", "subject_id", "related", "controls", "rationale", "examples"])
        guard let id, let name, let severity, let subject else { return nil }

        var base = FactModel.declarations(subject: subject)
        let eachName = r.string("as") ?? "item"
        var each: Program?
        if let (src, node) = r.scalarText("each", shape: "an expression") {
            if let (p, t) = compile(src, node: node, ctx: ctx, decls: base, what: "'each' of rule \(id)") {
                each = p
                switch t {
                case .list(let elem): base.variables[eachName] = elem
                case .dyn: base.variables[eachName] = .dyn
                default:
                    ctx.error(node, "'each' of rule \(id) must be a list, not \(t)")
                    base.variables[eachName] = .dyn
                }
            } else {
                base.variables[eachName] = .dyn
            }
        }
        var conditions: [Condition] = []
        if let w = r.value("when") {
            let items: [Node]
            if case .sequence(let seq) = w { items = Array(seq) } else { items = [w] }
            for item in items {
                var src: String?, reason: String?, exprNode = item
                switch item {
                case .scalar(let s): src = s.string
                case .mapping:
                    guard let c = ObjectReader(item, what: "a 'when' condition of rule \(id)", ctx: ctx) else { continue }
                    if let (s, n) = c.scalarText("expr", shape: "an expression") { src = s; exprNode = n } else { c.missing("expr") }
                    reason = c.string("reason")
                    c.finish(allowed: ["expr", "reason"])
                default:
                    ctx.error(item, "a 'when' condition of rule \(id) must be an expression or { expr, reason }")
                }
                guard let src, let (p, t) = compile(src, node: exprNode, ctx: ctx, decls: base, what: "'when' of rule \(id)") else { continue }
                if t.isKnown && t != .bool { ctx.error(exprNode, "'when' of rule \(id) must be a bool expression, not \(t)") }
                conditions.append(Condition(program: p, reason: reason ?? "condition not met: \(src)", location: ctx.location(exprNode)))
            }
        }
        guard let (assertSrc, assertNode) = r.scalarText("assert", shape: "an expression") else {
            if !r.has("assert") { r.missing("assert") }
            return nil
        }
        guard let (assertProgram, assertType) = compile(assertSrc, node: assertNode, ctx: ctx, decls: base, what: "'assert' of rule \(id)") else { return nil }
        if assertType.isKnown && assertType != .bool { ctx.error(assertNode, "'assert' of rule \(id) must be a bool expression, not \(assertType)") }
        let subjectId = r.scalarText("subject_id", shape: "an expression").flatMap { compile($0.0, node: $0.1, ctx: ctx, decls: base, what: "'subject_id' of rule \(id)")?.0 }
        let related = r.scalarText("related", shape: "an expression").flatMap { compile($0.0, node: $0.1, ctx: ctx, decls: base, what: "'related' of rule \(id)")?.0 }
        var message = MessageTemplate(parts: [.text(title)])
        if let (text, node) = r.scalarText("message", shape: "a string") {
            message = template(text, node: node, ctx: ctx, decls: base, rule: id)
        }
        return Rule(
            id: id, name: name, title: title, severity: severity, subject: subject, conditions: conditions,
            assertion: Condition(program: assertProgram, reason: "", location: ctx.location(assertNode)),
            each: each, eachName: eachName, message: message, subjectId: subjectId, related: related, controls: controls,
            controlTitles: controlTitles, rationale: rationale, examples: readExamples(r, ctx: ctx, rule: id), location: ctx.location(r.node), file: ctx.file)
    }

    /// Parses and type-checks one expression; reports problems at their column in the file.
    func compile(_ src: String, node: Node, ctx: ReadContext, decls: Declarations, what: String) -> (Program, CELType)? {
        do {
            let p = try Program(src)
            var checker = TypeChecker(decls)
            let t = checker.check(p.root)
            for e in checker.errors { sink.add(position(of: e.offset, in: src, node: node, ctx: ctx), "in \(what): \(e.message)") }
            return checker.errors.isEmpty ? (p, t) : nil
        } catch {
            sink.add(position(of: error.offset, in: src, node: node, ctx: ctx), "syntax error in \(what): \(error.message)")
            return nil
        }
    }

    /// The file position of `offset` (in Unicode scalars) inside the scalar `node`.
    func position(of offset: Int, in src: String, node: Node, ctx: ReadContext) -> SourceLocation {
        var loc = ctx.location(node)
        guard case .scalar(let s) = node else { return loc }
        let before = src.unicodeScalars.prefix(offset)
        let newlines = before.filter { $0 == "\n" }.count
        switch s.style {
        case .literal, .folded:
            loc.line += 1 + newlines
        default:
            if newlines == 0 {
                loc.column += offset + (s.style == .singleQuoted || s.style == .doubleQuoted ? 1 : 0)
            } else {
                loc.line += newlines
            }
        }
        return loc
    }

    func template(_ text: String, node: Node, ctx: ReadContext, decls: Declarations, rule: String) -> MessageTemplate {
        var parts: [MessageTemplate.Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                ctx.error(node, "message of rule \(rule) has '{{' without a closing '}}'")
                return MessageTemplate(parts: parts)
            }
            let src = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if let (p, _) = compile(src, node: node, ctx: ctx, decls: decls, what: "the message of rule \(rule)") { parts.append(.expr(p)) }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return MessageTemplate(parts: parts)
    }

    func readExamples(_ r: ObjectReader, ctx: ReadContext, rule: String) -> [RuleExample] {
        guard let ex = r.object("examples") else { return [] }
        ex.finish(allowed: ["pass", "fail"])
        var out: [RuleExample] = []
        for (key, isPass) in [("pass", true), ("fail", false)] {
            guard let v = ex.value(key) else { continue }
            guard case .sequence(let items) = v else {
                ctx.error(v, "'\(key)' examples of rule \(rule) must be a list")
                continue
            }
            for item in items {
                guard let e = ObjectReader(item, what: "a \(key) example of rule \(rule)", ctx: ctx) else { continue }
                let now = e.timestamp("now")
                let findings = e.list("findings")?.map(\.0) ?? []
                if isPass && !findings.isEmpty { ctx.error(item, "a pass example of rule \(rule) cannot list findings") }
                var runs: [ExampleRun] = []
                // `runs` (backups) and `restore_runs` (restore tests, from the copy on `target`).
                var restoreRuns: [ExampleRun] = []
                for (key, what) in [("runs", "run"), ("restore_runs", "restore run")] {
                    var runNodes: [Node] = []
                    if let v = e.value(key) {
                        if case .sequence(let items) = v { runNodes = Array(items) } else { ctx.error(v, "'\(key)' of an example of rule \(rule) must be a list of {job, target, status, at}") }
                    }
                    for node in runNodes {
                        guard let run = ObjectReader(node, what: "a \(what) of an example of rule \(rule)", ctx: ctx) else { continue }
                        let job = run.string("job", required: true), target = run.string("target", required: true)
                        let status = run.string("status", required: true), at = run.timestamp("at", required: true)
                        let host = run.string("host")
                        run.finish(allowed: ["job", "target", "status", "at", "host"])
                        if let status, !["success", "failed"].contains(status) { ctx.error(node, "a run's status is 'success' or 'failed', not '\(status)'") }
                        guard let job, let target, let status, let at else { continue }
                        let r = ExampleRun(job: job, target: target, success: status == "success", at: at, host: host)
                        if key == "runs" { runs.append(r) } else { restoreRuns.append(r) }
                    }
                }
                var lockChecks: [(storage: String, ok: Bool, at: Timestamp)] = []
                if let v = e.value("lock_checks") {
                    if case .sequence(let items) = v {
                        for node in items {
                            guard let c = ObjectReader(node, what: "a lock check of an example of rule \(rule)", ctx: ctx) else { continue }
                            let storage = c.string("storage", required: true), ok = c.bool("ok"), at = c.timestamp("at", required: true)
                            if ok == nil { c.missing("ok") }
                            c.finish(allowed: ["storage", "ok", "at"])
                            if let storage, let ok, let at { lockChecks.append((storage, ok, at)) }
                        }
                    } else { ctx.error(v, "'lock_checks' of an example of rule \(rule) must be a list of {storage, ok, at}") }
                }
                // `capacity: [{storage, at, bytes}]`: repository sizes measured after backups.
                var sizes: [(storage: String, at: Timestamp, bytes: Int64)] = []
                if let v = e.value("capacity") {
                    if case .sequence(let items) = v {
                        for node in items {
                            guard let c = ObjectReader(node, what: "a capacity measurement of an example of rule \(rule)", ctx: ctx) else { continue }
                            let storage = c.string("storage", required: true), at = c.timestamp("at", required: true), bytes = c.int("bytes")
                            if bytes == nil { c.missing("bytes") }
                            c.finish(allowed: ["storage", "at", "bytes"])
                            if let storage, let at, let bytes { sizes.append((storage, at, Int64(bytes))) }
                        }
                    } else { ctx.error(v, "'capacity' of an example of rule \(rule) must be a list of {storage, at, bytes}") }
                }
                // `lost_in: {asset: [scenario…]}`: what the planner would find (it sits above the
                // policy layer, so examples state it).
                var lostIn: [String: [String]] = [:]
                if let l = e.object("lost_in") { for entry in l.entries { lostIn[entry.key] = l.list(entry.key)?.map(\.0) ?? [] } }
                var store: MeasuredEvidence.Store?
                if let s = e.object("evidence_store") {
                    store = MeasuredEvidence.Store(chainStarted: s.timestamp("chain_started"), oldestRun: s.timestamp("oldest_run"), runs: s.int("runs") ?? 0)
                    s.finish(allowed: ["chain_started", "oldest_run", "runs"])
                }
                e.finish(allowed: ["inventory", "now", "findings", "runs", "restore_runs", "lock_checks", "capacity", "evidence_store", "lost_in"])
                guard let inv = e.value("inventory") else { e.missing("inventory"); continue }
                var node = inv
                if case .mapping(var m) = inv, m["drplan"] == nil {
                    m[Node("drplan")] = Node("1")
                    node = .mapping(m)
                }
                guard let text = try? Yams.serialize(node: node) else {
                    ctx.error(inv, "example inventory of rule \(rule) could not be read")
                    continue
                }
                out.append(RuleExample(inventory: text, now: now, expectation: isPass ? .pass : .fail(findings), location: ctx.location(item), runs: runs, lockChecks: lockChecks, store: store, restoreRuns: restoreRuns, lostIn: lostIn, sizes: sizes))
            }
        }
        return out
    }
}

