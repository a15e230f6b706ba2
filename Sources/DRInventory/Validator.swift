/// Checks what no single object can check alone: references, their kinds, dependency
/// cycles and waiver subjects. Runs on the merged inventory, after every file was read.
struct Validator {
    var inventory: Inventory
    let declared: [String: Declared]
    let sink: DiagnosticSink

    init(inventory: inout Inventory, declared: [String: Declared], sink: DiagnosticSink) {
        self.inventory = inventory
        self.declared = declared
        self.sink = sink
        inventory.secretKeys.sort { $0.location < $1.location }
    }

    func run() {
        for s in inventory.storage { ref(s.site, .site, key: "site", in: "storage '\(s.id)'", at: s.origin) }
        for a in inventory.assets {
            ref(a.site, .site, key: "site", in: "asset '\(a.id)'", at: a.origin)
            for d in a.dependsOn { ref(d, .asset, key: "depends_on", in: "asset '\(a.id)'", at: a.origin) }
        }
        for j in inventory.jobs {
            let what = "job '\(j.id)'"
            for a in j.assets { ref(a, .asset, key: j.origin.keys["asset"] != nil ? "asset" : "assets", in: what, at: j.origin) }
            for t in j.targets { ref(t, .storage, key: "targets", in: what, at: j.origin) }
            for t in j.targetEngines.keys.sorted() where !j.targets.contains(t) {
                sink.add(j.origin.of("target_engines", value: t), "'target_engines' in \(what) names '\(t)', which is not one of its targets (\(j.targets.joined(separator: ", "))); add it to 'targets' or remove it")
            }
            if j.host == nil {
                let hosts = Set(j.assets.compactMap { id in inventory.assets.first { $0.id == id }?.host })
                if hosts.count > 1 {
                    sink.add(j.origin.of(j.origin.keys["asset"] != nil ? "asset" : "assets"), "\(what) backs up assets of hosts \(hosts.sorted().joined(separator: ", ")), so no one host runs it; set 'host:' on the job, or split it into one job per host")
                }
            }
            if let k = j.encryption.keyStorage { ref(k, .storage, key: "encryption", in: what, at: j.origin) }
            // The escrow copy of a key is kept on a storage or at a site.
            if let k = j.encryption.keyEscrow {
                if let d = declared[k], d.kind == .site { } else { ref(k, .storage, key: "encryption", in: what + " (key_escrow: a storage or a site)", at: j.origin) }
            }
        }
        let jobs = Dictionary(inventory.jobs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for t in inventory.restoreTests {
            let what = "restore test '\(t.id)'"
            ref(t.job, .job, key: "job", in: what, at: t.origin)
            if case .only(let ids) = t.targets, let job = jobs[t.job] {
                for id in ids where !job.targets.contains(id) {
                    sink.add(t.origin.of("targets", value: id), "restore test '\(t.id)' names the target '\(id)', which job '\(t.job)' does not write (its targets: \(job.targets.joined(separator: ", "))); use one of those, 'all' or 'rotate'")
                }
            }
            if let a = t.asset {
                ref(a, .asset, key: "asset", in: what, at: t.origin)
                if let job = jobs[t.job], declared[a]?.kind == .asset, !job.assets.contains(a) {
                    sink.add(t.origin.of("asset", value: a), Messages.assetNotInJob(a, test: t.id, job: t.job))
                }
            }
        }
        let secretPaths = Set(inventory.plaintextSecrets.map(\.path))
        for w in inventory.waivers where declared[w.subject] == nil && !secretPaths.contains(w.subject) {
            sink.add(w.origin.of("subject", value: w.subject), Messages.waiverSubjectUnknown(w.subject, suggestion: suggestion(for: w.subject, among: declared.keys.sorted())))
        }
        checkCycles()
    }

    /// Reports a missing id, or an id of another kind, at the referring key.
    func ref(_ id: String, _ kind: ObjectKind, key: String, in what: String, at origin: Origin) {
        if id.isEmpty { return }  // the key was missing or invalid, and that was reported already
        guard let d = declared[id] else {
            let sameKind = declared.filter { $0.value.kind == kind }.keys.sorted()
            sink.add(origin.of(key, value: id), Messages.unknownReference(id, key: key, in: what, expectedKind: kind.rawValue, suggestion: suggestion(for: id, among: sameKind)))
            return
        }
        if d.kind != kind {
            sink.add(origin.of(key, value: id), Messages.wrongKindReference(id, key: key, in: what, expectedKind: kind.rawValue, actualKind: d.kind.rawValue))
        }
    }

    /// Finds every strongly connected component of `depends_on` (Tarjan, iterative so that
    /// long chains cannot overflow the stack) and reports each cycle at each member's `depends_on`.
    func checkCycles() {
        let assets = inventory.assets
        var indexOf: [String: Int] = [:]
        for (i, a) in assets.enumerated() where indexOf[a.id] == nil { indexOf[a.id] = i }
        let edges: [[Int]] = assets.map { $0.dependsOn.compactMap { indexOf[$0] } }
        var index = [Int](repeating: -1, count: assets.count)
        var low = [Int](repeating: 0, count: assets.count)
        var onStack = [Bool](repeating: false, count: assets.count)
        var stack: [Int] = []
        var counter = 0
        var components: [[Int]] = []
        for root in assets.indices where index[root] < 0 {
            var work: [(node: Int, edge: Int)] = [(root, 0)]
            index[root] = counter; low[root] = counter; counter += 1
            stack.append(root); onStack[root] = true
            while let (v, e) = work.last {
                if e < edges[v].count {
                    work[work.count - 1].edge += 1
                    let w = edges[v][e]
                    if index[w] < 0 {
                        index[w] = counter; low[w] = counter; counter += 1
                        stack.append(w); onStack[w] = true
                        work.append((w, 0))
                    } else if onStack[w] {
                        low[v] = min(low[v], index[w])
                    }
                } else {
                    work.removeLast()
                    if let parent = work.last { low[parent.node] = min(low[parent.node], low[v]) }
                    if low[v] == index[v] {
                        var comp: [Int] = []
                        while let w = stack.popLast() {
                            onStack[w] = false
                            comp.append(w)
                            if w == v { break }
                        }
                        if comp.count > 1 || edges[v].contains(v) { components.append(comp) }
                    }
                }
            }
        }
        for comp in components {
            let members = Set(comp)
            guard let start = comp.min(by: { assets[$0].id < assets[$1].id }) else { continue }
            // Walk a shortest path back to the start inside the component, to name one concrete cycle.
            var prev: [Int: Int] = [:]
            var queue = [start], head = 0
            var found = false
            while head < queue.count, !found {
                let v = queue[head]; head += 1
                for w in edges[v] where members.contains(w) {
                    if w == start { prev[-1] = v; found = true; break }
                    if prev[w] == nil { prev[w] = v; queue.append(w) }
                }
            }
            var path = [start]
            var cur = prev[-1] ?? start
            while cur != start, path.count <= comp.count { path.insert(cur, at: 1); cur = prev[cur] ?? start }
            let names = path.map { assets[$0].id } + [assets[start].id]
            for i in comp.sorted() {
                sink.add(assets[i].origin.of("depends_on"), Messages.dependencyCycle(names))
            }
        }
    }
}
