import DRInventory

/// What the facts say about an asset's dependencies, computed for every asset in one pass
/// over the `depends_on` graph: linear in assets plus edges, however long the chains.
///
/// A transitive list per asset (the spec's first `dependencies` fact) cannot be linear: a
/// chain of n assets has n²/2 (asset, dependency) pairs. What rules need from the transitive
/// closure is a maximum (the deepest chain, the slowest dependency), and a maximum over a DAG
/// can be computed bottom-up once per node, the way a build system computes the critical path.
public struct DependencySummary: Sendable, Equatable {
    /// Longest chain of `depends_on` below the asset: 0 with no dependencies, 1 when its
    /// dependencies have none, and so on.
    public var depth: Int
    /// The transitive dependency that comes back last by its declared `rto`, one without an
    /// `rto` counting as slowest; ties go to the smaller id. Nil with no dependencies.
    public var slowest: Slowest?

    public struct Slowest: Sendable, Equatable {
        public var id: String
        public var rto: TimeSpan?
        /// The asset's direct dependency through which `id` is reached (`id` itself when direct).
        public var via: String
    }

    /// Summaries of every asset. Iterative (no recursion, so no chain overflows the stack);
    /// ids that name no asset are skipped (the validator reports them), and an edge that closes
    /// a cycle is ignored (the validator reports the cycle), so any inventory gives an answer.
    public static func summaries(_ assets: [Asset]) -> [String: DependencySummary] {
        var byID: [String: Asset] = [:]
        for a in assets where byID[a.id] == nil { byID[a.id] = a }
        var done: [String: DependencySummary] = [:]
        DependencyWalk.postOrder(assets.map(\.id), next: { byID[$0]?.dependsOn ?? [] },
                                 enter: { done[$0] == nil && byID[$0] != nil }) { id in
            var summary = DependencySummary(depth: 0, slowest: nil)
            for d in byID[id]?.dependsOn ?? [] {
                guard let dep = byID[d], let below = done[d] else { continue }
                summary.depth = max(summary.depth, below.depth + 1)
                summary.consider(Slowest(id: d, rto: dep.rto, via: d))
                if let s = below.slowest { summary.consider(Slowest(id: s.id, rto: s.rto, via: d)) }
            }
            done[id] = summary
        }
        return done
    }

    mutating func consider(_ c: Slowest) {
        guard let s = slowest else { slowest = c; return }
        if Self.slower(c, than: s) { slowest = c }
    }

    /// Unknown (no rto) is slowest; then the larger rto; then the smaller id, then the smaller via.
    static func slower(_ a: Slowest, than b: Slowest) -> Bool {
        switch (a.rto, b.rto) {
        case (nil, .some): return true
        case (.some, nil): return false
        case let (x?, y?) where x.seconds != y.seconds: return x.seconds > y.seconds
        default: return (a.id, a.via) < (b.id, b.via)
        }
    }
}

/// A depth-first walk of `depends_on`, children before parents, without recursion (so no
/// chain exhausts the stack): what the facts' summaries and the planner's waits-for both
/// compute over.
public enum DependencyWalk {
    /// Calls `finish` on each root `enter` admits and on what it leads to through `next`, each
    /// after everything below it. A node `enter` refuses (done already, unknown, not to be
    /// crossed) is not entered, and an edge back onto the current path (a cycle, which the
    /// validator reports) is skipped. `enter` is asked again before each node, so it can
    /// consult what `finish` recorded.
    public static func postOrder(_ roots: [String], next: (String) -> [String], enter: (String) -> Bool, finish: (String) -> Void) {
        var onPath = Set<String>()
        for root in roots where enter(root) {
            var work: [(id: String, next: Int)] = [(root, 0)]
            onPath.insert(root)
            while let (id, i) = work.last {
                let deps = next(id)
                if i < deps.count {
                    work[work.count - 1].next += 1
                    let d = deps[i]
                    if !onPath.contains(d), enter(d) {
                        onPath.insert(d)
                        work.append((d, 0))
                    }
                    continue
                }
                work.removeLast()
                onPath.remove(id)
                finish(id)
            }
        }
    }
}
