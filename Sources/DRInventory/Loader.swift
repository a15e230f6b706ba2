import Foundation
import Yams
#if canImport(Glibc)
import Glibc
#endif

/// Reads inventory files into one validated `Inventory`, or throws every problem found.
public enum InventoryLoader {
    /// Files above this size are refused before parsing: the spec's largest test input is 50 MB.
    public static let maxFileBytes = 256 << 20
    /// Alias expansion may add this many nodes beyond one per source byte; more is an alias bomb.
    public static let aliasNodeAllowance = 1_000_000

    /// Loads `paths` (files, or directories meaning their `*.yaml`/`*.yml`, sorted), follows
    /// `include:`, merges, validates. Never returns a half-read inventory.
    public static func load(paths: [String]) throws(InputError) -> Inventory {
        var state = LoadState()
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                state.sink.add(SourceLocation(file: path, line: 0, column: 0), Messages.fileNotFound(path))
                continue
            }
            if isDir.boolValue {
                let listed: [String]
                do { listed = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
                    state.sink.add(SourceLocation(file: path, line: 0, column: 0), Messages.unreadableDirectory(path, reason: "\(error.localizedDescription)"))
                    continue
                }
                let entries = listed.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                if entries.isEmpty { state.sink.add(SourceLocation(file: path, line: 0, column: 0), Messages.emptyDirectory(path)) }
                for e in entries { state.readFile(display: join(path, e), chain: []) }
            } else {
                state.readFile(display: path, chain: [])
            }
        }
        var inventory = state.inventory
        inventory.applyTimezones()
        Validator(inventory: &inventory, declared: state.declared, sink: state.sink).run()
        if !state.sink.isEmpty { throw InputError(state.sink.items) }
        return inventory
    }

    /// Loads inventories given as text (policy examples, tests). `name` is used in messages and
    /// as the base for relative includes.
    public static func load(texts: [(name: String, text: String)]) throws(InputError) -> Inventory {
        var state = LoadState()
        for (name, text) in texts { state.read(display: name, bytes: Array(text.utf8), chain: []) }
        var inventory = state.inventory
        inventory.applyTimezones()
        Validator(inventory: &inventory, declared: state.declared, sink: state.sink).run()
        if !state.sink.isEmpty { throw InputError(state.sink.items) }
        return inventory
    }

    /// Parses YAML text into one document node, or reports where and why it cannot.
    package static func compose(_ text: String, file: String, sink: DiagnosticSink) -> Node? {
        do {
            // The basic resolver types nothing: drplan reads every scalar as text and types it
            // itself. Yams' default resolver runs regular expressions on every scalar (its
            // duplicate-key check hashes keys), which was half the load time on large files.
            let parser = try Parser(yaml: text, resolver: .basic)
            guard let root = try parser.nextRoot() else {
                sink.add(SourceLocation(file: file, line: 1, column: 1), Messages.emptyDocument())
                return nil
            }
            if try parser.nextRoot() != nil {
                sink.add(SourceLocation(file: file, line: 1, column: 1), Messages.multipleDocuments())
                return nil
            }
            return root
        } catch let error as YamlError {
            let (loc, message) = locate(error, file: file)
            sink.add(loc, message)
            return nil
        } catch {
            sink.add(SourceLocation(file: file, line: 1, column: 1), Messages.yamlSyntax("\(error)"))
            return nil
        }
    }

    /// Where libyaml stopped, and the message to print there.
    static func locate(_ error: YamlError, file: String) -> (SourceLocation, String) {
        func at(_ m: Mark) -> SourceLocation { SourceLocation(file: file, line: max(1, m.line), column: max(1, m.column)) }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let ctx = context.map { " (\($0.text) at line \($0.mark.line))" } ?? ""
            return (at(mark), Messages.yamlSyntax(problem + ctx))
        case let .duplicatedKeysInMapping(duplicates, context):
            return (at(context.mark), Messages.duplicateKeys(duplicates))
        case let .reader(problem, offset, _, yaml):
            var line = 1, col = 1
            if let offset {
                for ch in yaml.prefix(offset) { if ch == "\n" { line += 1; col = 1 } else { col += 1 } }
            }
            return (SourceLocation(file: file, line: line, column: col), Messages.yamlSyntax(problem))
        default:
            return (SourceLocation(file: file, line: 1, column: 1), Messages.yamlSyntax("\(error)"))
        }
    }

    /// Counts nodes with aliases expanded, stopping at `limit`. Returns false past it.
    package static func expandedSizeWithin(_ root: Node, limit: Int) -> Bool {
        var stack = [root]
        var count = 0
        while let n = stack.popLast() {
            count += 1
            if count > limit { return false }
            switch n {
            case .mapping(let m): for (k, v) in m { stack.append(k); stack.append(v) }
            case .sequence(let s): stack.append(contentsOf: s)
            default: break
            }
        }
        return true
    }

    /// Decodes UTF-8 (a leading BOM is dropped), or reports the first bad byte's line and column.
    package static func decodeUTF8(_ bytes: [UInt8], file: String, sink: DiagnosticSink) -> String? {
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        var line = 1, col = 1, i = body.startIndex
        while i < body.endIndex {
            let b = body[i]
            var len = 0
            if b < 0x80 { len = 1 } else if b & 0xE0 == 0xC0, b >= 0xC2 { len = 2 } else if b & 0xF0 == 0xE0 { len = 3 } else if b & 0xF8 == 0xF0, b <= 0xF4 { len = 4 }
            var ok = len > 0 && i + len <= body.endIndex
            if ok { for j in 1..<len where body[i + j] & 0xC0 != 0x80 { ok = false } }
            if ok, len == 3 {
                let cp = (Int(b & 0x0F) << 12) | (Int(body[i + 1] & 0x3F) << 6)
                ok = cp >= 0x800 && !(0xD800...0xDFFF).contains(cp | Int(body[i + 2] & 0x3F))
            }
            if ok, len == 4 { let cp = (Int(b & 0x07) << 18) | (Int(body[i + 1] & 0x3F) << 12); ok = cp >= 0x10000 && cp <= 0x10FFFF }
            guard ok else {
                sink.add(SourceLocation(file: file, line: line, column: col), Messages.invalidUTF8(byte: b))
                return nil
            }
            if b == 0x0A { line += 1; col = 1 } else { col += 1 }
            i += len
        }
        return String(decoding: body, as: UTF8.self)
    }

    package static func join(_ dir: String, _ name: String) -> String {
        if name.hasPrefix("/") { return name }
        if dir.isEmpty || dir == "." { return name }
        return dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    static func canonical(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }

    static func glob(_ pattern: String) -> [String] {
        #if canImport(Glibc)
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
        #else
        return []
        #endif
    }
}

/// Kinds of object that carry ids, for reference checks and messages.
public enum ObjectKind: String, Sendable {
    case site, storage, asset, job
    case restoreTest = "restore test"
}

/// An id as declared, even when the rest of its object was invalid: references to it are
/// then not reported a second time as missing.
struct Declared {
    var kind: ObjectKind
    var location: SourceLocation
}

struct LoadState {
    var inventory = Inventory()
    var sink = DiagnosticSink()
    var declared: [String: Declared] = [:]
    var loaded: Set<String> = []
    var organizationAt: SourceLocation?
    var evidenceAt: SourceLocation?
    var timezoneAt: SourceLocation?
    var planAt: SourceLocation?
    var policyAt: SourceLocation?

    mutating func readFile(display: String, chain: [(canonical: String, display: String)]) {
        if loaded.contains(InventoryLoader.canonical(display)) { return }
        let attributes = try? FileManager.default.attributesOfItem(atPath: display)
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
        if size > InventoryLoader.maxFileBytes {
            sink.add(SourceLocation(file: display, line: 0, column: 0), Messages.fileTooLarge(display, size, limit: InventoryLoader.maxFileBytes))
            return
        }
        guard let data = FileManager.default.contents(atPath: display) else {
            sink.add(SourceLocation(file: display, line: 0, column: 0), Messages.fileUnreadable(display, "permission denied or not a regular file"))
            return
        }
        read(display: display, bytes: [UInt8](data), chain: chain)
    }

    /// Reads one file's bytes: decode, compose, check alias expansion, read sections, follow includes.
    mutating func read(display: String, bytes: [UInt8], chain: [(canonical: String, display: String)]) {
        let canon = InventoryLoader.canonical(display)
        loaded.insert(canon)
        inventory.files.append(InventoryFile(path: display, bytes: bytes))
        guard let text = InventoryLoader.decodeUTF8(bytes, file: display, sink: sink),
              let root = InventoryLoader.compose(text, file: display, sink: sink)
        else { return }
        guard InventoryLoader.expandedSizeWithin(root, limit: bytes.count + InventoryLoader.aliasNodeAllowance) else {
            sink.add(SourceLocation(file: display, line: 1, column: 1), Messages.aliasBomb(limit: bytes.count + InventoryLoader.aliasNodeAllowance))
            return
        }
        let ctx = ReadContext(file: display, sink: sink)
        var sections = SectionReader(ctx: ctx)
        let includes = sections.readDocument(root)
        absorb(sections, ctx: ctx)

        let dir = (display as NSString).deletingLastPathComponent
        let here = chain + [(canon, display)]
        for (pattern, node) in includes {
            let target = InventoryLoader.join(dir, pattern)
            let isGlob = pattern.contains(where: { "*?[".contains($0) })
            let matches = isGlob ? InventoryLoader.glob(target).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") } : [target]
            if isGlob && matches.isEmpty { ctx.error(node, Messages.includeNoMatch(pattern)); continue }
            for m in matches {
                guard FileManager.default.fileExists(atPath: m) else { ctx.error(node, Messages.includeMissing(pattern)); continue }
                let mc = InventoryLoader.canonical(m)
                if let start = here.firstIndex(where: { $0.canonical == mc }) {
                    ctx.error(node, Messages.includeCycle(here[start...].map(\.display) + [m]))
                    continue
                }
                readFile(display: m, chain: here)
            }
        }
    }

    mutating func absorb(_ s: SectionReader, ctx: ReadContext) {
        // Top-level sections that may appear in one file only: the first one stands, a second
        // is an error naming the first.
        func once<T>(_ read: (T, SourceLocation)?, _ key: String, _ first: inout SourceLocation?, _ set: (T) -> Void) {
            guard let (value, at) = read else { return }
            if let first { ctx.sink.add(at, Messages.onlyOnce(key, first: first)) } else { set(value); first = at }
        }
        var inv = inventory
        once(s.organization, "organization", &organizationAt) { inv.organization = $0 }
        once(s.policyRead, "policy", &policyAt) { inv.policy = $0 }
        once(s.planRead, "plan", &planAt) { inv.plan = $0 }
        once(s.evidenceRead, "evidence", &evidenceAt) { inv.evidence = $0 }
        once(s.timezoneRead, "timezone", &timezoneAt) { inv.timezone = $0 }
        inventory = inv
        for (id, d) in s.declared {
            if let first = declared[id] {
                ctx.sink.add(d.location, Messages.duplicateId(id, kind: d.kind.rawValue, first: first.location, firstKind: first.kind.rawValue))
            } else {
                declared[id] = d
            }
        }
        inventory.sites += s.sites
        inventory.storage += s.storage
        inventory.assets += s.assets
        inventory.jobs += s.jobs
        inventory.restoreTests += s.restoreTests
        inventory.waivers += s.waivers
        inventory.secretKeys += s.secrets
    }
}

extension Inventory {
    /// Reads each job's cron schedule in its zone: its own `timezone:`, else the inventory's.
    /// Done once every file is read, because the inventory's zone may sit in another file.
    mutating func applyTimezones() {
        for i in jobs.indices {
            let zone = jobs[i].timezone ?? timezone
            jobs[i].timezone = zone
            jobs[i].schedule = jobs[i].schedule.inZone(zone)
        }
    }
}

extension Inventory {
    /// The host that runs a job: its own `host:`, else the one host its assets name (the
    /// validator refuses a job whose assets name several); nil: any host.
    public func host(of job: Job) -> String? { Self.host(of: job) { id in assets.first { $0.id == id }?.host } }

    static func host(of job: Job, assetHost: (String) -> String?) -> String? {
        if let h = job.host { return h }
        let hosts = Set(job.assets.compactMap(assetHost))
        return hosts.count == 1 ? hosts.first : nil
    }

    /// Each host's jobs, every job's host found once (a fleet has thousands of jobs).
    public var jobsByHost: [String: [Job]] {
        let assetHost = Dictionary(assets.map { ($0.id, $0.host) }, uniquingKeysWith: { a, _ in a })
        var out: [String: [Job]] = [:]
        for j in jobs {
            if let h = Self.host(of: j, assetHost: { assetHost[$0] ?? nil }) { out[h, default: []].append(j) }
        }
        return out
    }

    /// Whether `host` runs this job: a job for no particular host runs everywhere it is asked
    /// to (the single machine of a small office).
    public func runs(_ job: Job, on host: String) -> Bool { self.host(of: job).map { $0 == host } ?? true }

    /// The hosts the inventory names, sorted.
    public var hosts: [String] { jobsByHost.keys.sorted() }
}
