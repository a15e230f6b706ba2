import CEL
import DRInventory

/// Facts that check what an inventory declares against what it implies (the catalog review,
/// December 2026): separate sites, air gaps the schedule allows, keys kept beside the data,
/// copies never restore-tested, and recovery in dependency order.
extension FactDeriver {
    /// Who runs a storage: its own `provider`, else its site's.
    func provider(_ s: Storage) -> String? { s.provider ?? sites[s.site]?.provider }

    /// Whether a copy at site `b` survives what destroys site `a`: their regions differ (a site
    /// without a region is its own), or both declare a `location` at least
    /// `policy.min_site_distance` apart. Two site ids in one region are one place otherwise.
    public func separate(_ a: String, _ b: String) -> Bool {
        if a == b { return false }
        if region(ofSite: a) != region(ofSite: b) { return true }
        guard let p = sites[a]?.location, let q = sites[b]?.location else { return false }
        return p.distance(to: q) >= inv.policy.minSiteDistance
    }

    /// A declared air gap stands only for media that go offline (`rotation.offline`) and that
    /// no job writes more often than they rotate: a drive written every night is online every
    /// night, whatever the inventory says.
    func airGapHolds(_ s: Storage) -> Bool {
        guard s.airGapped, let rot = s.rotation, rot.offline else { return false }
        return inv.jobs.filter { $0.targets.contains(s.id) }.allSatisfy { j in
            if case .continuous = j.schedule { return false }
            return (gaps(j)?.minGap ?? Int64.max) >= rot.every.seconds
        }
    }

    /// Adds `recovery_finish` to each asset: when it is back if its dependencies are restored
    /// first, each from its fastest copy, all at once where they do not depend on each other
    /// (the planner's waves with no limit on parallel restores): its own `rto_estimate` after
    /// the latest `recovery_finish` of its direct dependencies. Null where the asset or a
    /// dependency has no estimate. One post-order pass, linear in assets and edges.
    func withRecoveryOrder(_ values: [Value]) -> [Value] {
        var own: [String: Double] = [:]
        for v in values {
            if case .string(let id)? = v["id"], case .duration(let d)? = v["rto_estimate"] { own[id] = d.totalSeconds }
        }
        var finish: [String: Double?] = [:]
        DependencyWalk.postOrder(inv.assets.map(\.id), next: { assets[$0]?.dependsOn ?? [] },
                                 enter: { finish[$0] == nil && assets[$0] != nil }) { id in
            guard var t = own[id] else { finish[id] = .some(nil); return }
            var start = 0.0
            for d in assets[id]?.dependsOn ?? [] where assets[d] != nil {
                guard let f = finish[d] ?? nil else { finish[id] = .some(nil); return }
                start = max(start, f)
            }
            t += start
            finish[id] = .some(t)
        }
        return values.map { v in
            guard case .map(var fields) = v, case .string(let id)? = v["id"] else { return v }
            fields[.string("recovery_finish")] = opt(finish[id] ?? nil) { .duration(CELDuration(fractional: $0)) }
            return .map(fields)
        }
    }

    /// The copies of `a` (job targets) with no passed restore test within the test interval,
    /// from measured runs (which name the copy they restored from); nil when no job of the
    /// asset has a measured restore run, since declared results do not say which copy.
    func untestedCopies(_ a: Asset, jobs: [Job]) -> [String]? {
        guard jobs.contains(where: { measured.jobsWithRestoreRuns.contains($0.id) }) else { return nil }
        var out: [String] = []
        for j in jobs {
            let tests = inv.restoreTests.filter { $0.job == j.id && ($0.asset == nil || $0.asset == a.id) }
            let every = tests.map { $0.interval(policy: inv.policy).seconds }.min() ?? inv.policy.restoreTestEvery.seconds
            for t in j.targets where !out.contains(t) {
                let passed = measured.restoredTargets[MeasuredEvidence.key(job: j.id, target: t)]?.lastSuccess
                if passed.map({ now.seconds - $0.seconds > every }) ?? true { out.append(t) }
            }
        }
        return out
    }

    /// Key files (`passphrase: file:…` of the job or of its targets) that lie under a source
    /// path of the job's assets or under one of its targets' paths: whoever takes the data or
    /// the copy takes the key with it (DR203). Paths are resolved from the first inventory
    /// file's folder, as the runner resolves them.
    func keysBesideData(_ j: Job) -> [Value] {
        let first = inv.files.first?.path ?? "."
        let base = first.contains("/") ? String(first[..<(first.lastIndex(of: "/") ?? first.endIndex)]) : "."
        // Lexical normalization (".", "..", repeated slashes): the facts read no file system.
        func full(_ p: String) -> String {
            var parts: [Substring] = []
            for c in (p.hasPrefix("/") ? p : base + "/" + p).split(separator: "/") {
                if c == "." { continue }
                if c == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
                parts.append(c)
            }
            return ((p.hasPrefix("/") || base.hasPrefix("/")) ? "/" : "") + parts.joined(separator: "/")
        }
        func under(_ file: String, _ dir: String) -> Bool { file == dir || file.hasPrefix(dir.hasSuffix("/") ? dir : dir + "/") }
        var keys: [String] = []
        if case .file(let p)? = j.encryption.passphrase { keys.append(p) }
        for t in j.targets { if case .file(let p)? = storage[t]?.encryption.passphrase { keys.append(p) } }
        var out: [Value] = []
        for k in Set(keys).sorted() {
            let file = full(k)
            for a in j.assets {
                guard case .paths(let paths, _)? = assets[a]?.source else { continue }
                for p in paths where under(file, full(p)) {
                    out.append(.object([("file", .string("file:" + k)), ("beside", .string(a)), ("place", .string("under the source path \(p) of \(a)"))]))
                }
            }
            for t in j.targets {
                guard let p = storage[t]?.path, under(file, full(p)) else { continue }
                out.append(.object([("file", .string("file:" + k)), ("beside", .string(t)), ("place", .string("on the target \(t) (\(p))"))]))
            }
        }
        return out
    }
}
