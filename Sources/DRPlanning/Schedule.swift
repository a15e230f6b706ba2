import DRFacts
import DRInventory
import HeapModule

/// Restore order and times. Every step here is linear in the scenario's assets plus their
/// dependency edges (the heap adds a log factor under a parallelism limit), so a chain of
/// 100,000 assets plans in about the time of 100,000 independent ones.
extension Planner {
    /// Per row, the lost assets it waits for: its lost dependencies, and those reached through
    /// dependencies that were not lost, since an intact service that needs a lost one is not
    /// usable either. One memoised pass: what an intact asset leads to is worked out once,
    /// however many lost assets need it.
    func lostDependencies(_ rows: [PlanRow], lost: [String: Int]) -> [[String]] {
        var through: [String: Set<String>] = [:]   // intact asset → lost assets reached through it
        func reach(_ d: String) -> Set<String>? { lost[d] != nil ? [d] : through[d] }
        DependencyWalk.postOrder(rows.flatMap { assets[$0.asset]?.dependsOn ?? [] }, next: { assets[$0]?.dependsOn ?? [] },
                                 enter: { lost[$0] == nil && through[$0] == nil && assets[$0] != nil }) { id in
            var set = Set<String>()
            for d in assets[id]?.dependsOn ?? [] { if let r = reach(d) { set.formUnion(r) } }
            through[id] = set
        }
        return rows.map { row in
            var set = Set<String>()
            for d in assets[row.asset]?.dependsOn ?? [] where d != row.asset { if let r = reach(d) { set.formUnion(r) } }
            set.remove(row.asset)
            return set.sorted()
        }
    }

    /// Waves, start and ready-at times: an asset starts once every lost dependency is ready;
    /// with a parallelism limit, restores start in order of tier then id as slots free up.
    func schedule(_ rows: inout [PlanRow], index: [String: Int], parallel: Int?) {
        for (i, w) in lostDependencies(rows, lost: index).enumerated() { rows[i].waitsFor = w }
        // Topological order (the validator rules out cycles); blocked and waves first.
        var indegree = rows.map(\.waitsFor.count)
        var dependents: [[Int]] = Array(repeating: [], count: rows.count)
        for (i, r) in rows.enumerated() { for d in r.waitsFor { if let j = index[d] { dependents[j].append(i) } } }
        var queue = rows.indices.filter { indegree[$0] == 0 }
        var topo: [Int] = []
        while let i = queue.popLast() {
            topo.append(i)
            for k in dependents[i] { indegree[k] -= 1; if indegree[k] == 0 { queue.append(k) } }
        }
        for i in topo {
            let deps = rows[i].waitsFor.compactMap { index[$0] }
            if !rows[i].recoverable { continue }
            if deps.contains(where: { (!rows[$0].recoverable && !rows[$0].notBackedUp) || rows[$0].blocked }) { rows[i].blocked = true; rows[i].meetsRTO = false; continue }
            rows[i].wave = 1 + (deps.compactMap { rows[$0].wave }.max() ?? 0)
        }
        // Times. Unknown restore times make the asset's and its dependents' times unknown.
        let runnable = topo.filter { rows[$0].recoverable && !rows[$0].blocked }
        if let limit = parallel, limit > 0 {
            simulate(&rows, runnable: runnable, dependents: dependents, index: index, limit: limit)
        } else {
            for i in runnable {
                var start: Double? = 0
                for d in rows[i].waitsFor.compactMap({ index[$0] }) {
                    guard let s = start, let r = rows[d].readyAt else { start = nil; break }
                    start = max(s, r)
                }
                rows[i].start = start
                if let s = start, let t = rows[i].restoreTime { rows[i].readyAt = s + t }
            }
        }
        for i in rows.indices where rows[i].recoverable && !rows[i].blocked {
            if let rto = assets[rows[i].asset]?.rto {
                rows[i].meetsRTO = rows[i].readyAt.map { $0 <= Double(rto.seconds) }
            }
        }
        rows.sort { ($0.wave ?? Int.max, $0.tier.priority, $0.asset) < ($1.wave ?? Int.max, $1.tier.priority, $1.asset) }
    }

    /// An event simulation under `limit` restore slots. In each round, the restores that are
    /// ready (every lost dependency finished) start in order of tier then id while slots are
    /// free; a restore whose time is unknown holds no slot and makes what waits on it unknown.
    /// When nothing more can start, the clock moves to the next restore to finish. Readiness is
    /// tracked by counting unfinished dependencies, so no round rescans what is pending.
    private func simulate(_ rows: inout [PlanRow], runnable: [Int], dependents: [[Int]], index: [String: Int], limit: Int) {
        struct Ready: Comparable {
            var tier: Int, asset: String, row: Int
            static func < (a: Ready, b: Ready) -> Bool { (a.tier, a.asset, a.row) < (b.tier, b.asset, b.row) }
        }
        let isRunnable = Set(runnable)
        var waiting = [Int](repeating: 0, count: rows.count)
        for i in runnable { waiting[i] = rows[i].waitsFor.compactMap { index[$0] }.count }
        var finished: [Int: Double?] = [:]
        var ready = Heap<Ready>()
        var becameReady: [Int] = runnable.filter { waiting[$0] == 0 }
        var running = Heap<RunningRestore>()
        var clock = 0.0
        func finish(_ i: Int, at end: Double?) {
            finished[i] = .some(end)
            for k in dependents[i] where isRunnable.contains(k) {
                waiting[k] -= 1
                if waiting[k] == 0 { becameReady.append(k) }
            }
        }
        while true {
            for i in becameReady { ready.insert(Ready(tier: rows[i].tier.priority, asset: rows[i].asset, row: i)) }
            becameReady = []
            var started = false
            // What became ready during this round waits for the next one, as a rescan would.
            while running.count < limit, let next = ready.popMin() {
                let i = next.row
                let depsDone = rows[i].waitsFor.compactMap { index[$0] }.map { finished[$0] ?? nil }
                let depUnknown = depsDone.contains { $0 == nil }
                started = true
                if depUnknown || rows[i].restoreTime == nil {
                    rows[i].start = depUnknown ? nil : clock
                    finish(i, at: nil)
                    continue
                }
                rows[i].start = clock
                running.insert(RunningRestore(end: clock + (rows[i].restoreTime ?? 0), row: i))
            }
            if started { continue }
            guard let first = running.min else { break }
            clock = first.end
            while let r = running.min, r.end <= clock {
                _ = running.popMin()
                rows[r.row].readyAt = r.end
                finish(r.row, at: r.end)
            }
        }
    }

    /// The chain of dependencies that ends last: from the last asset back through the
    /// dependency whose readiness set each start (built backwards, then reversed once).
    func criticalPath(restorable: [PlanRow], rows: [PlanRow], index: [String: Int]) -> [String] {
        guard var cur = restorable.max(by: { ($0.readyAt ?? 0, $1.asset) < ($1.readyAt ?? 0, $0.asset) }) else { return [] }
        var path = [cur.asset]
        while let prev = cur.waitsFor.compactMap({ index[$0] }).map({ rows[$0] }).max(by: { ($0.readyAt ?? 0) < ($1.readyAt ?? 0) }),
              path.count <= rows.count {
            path.append(prev.asset)
            cur = prev
        }
        return path.reversed()
    }
}

/// A restore in flight, ordered by when it ends (then by row, so ties finish in a fixed order).
struct RunningRestore: Comparable {
    var end: Double
    var row: Int
    static func < (a: RunningRestore, b: RunningRestore) -> Bool { (a.end, a.row) < (b.end, b.row) }
}
