import CEL
import DRInventory

/// Derives facts (facts.md, rules.md) from a validated inventory.
///
/// Lookups go through dictionaries built once, and schedule gaps through one shared
/// `ScheduleAnalyzer`, so derivation is linear in the inventory's size.
public struct FactDeriver {
    let inv: Inventory
    let now: Timestamp
    let measured: MeasuredEvidence
    let analyzer = ScheduleAnalyzer()
    let sites: [String: Site]
    let storage: [String: Storage]
    let assets: [String: Asset]
    let jobs: [String: Job]
    let jobsByAsset: [String: [Job]]
    let testsByAsset: [String: [String]]
    let holds: [String: [String]]
    /// Ids of the assets and of the storage at each site, in inventory order.
    let assetsAtSite: [String: [String]]
    let storageAtSite: [String: [String]]
    let dependencySummaries: [String: DependencySummary]

    public init(_ inventory: Inventory, now: Timestamp, measured: MeasuredEvidence = MeasuredEvidence()) {
        inv = inventory
        self.now = now
        self.measured = measured
        sites = Dictionary(inventory.sites.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        storage = Dictionary(inventory.storage.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var byAsset: [String: [Job]] = [:]
        var holds: [String: [String]] = [:]
        var seenHold: Set<[String]> = []
        for j in inventory.jobs {
            for a in j.assets {
                byAsset[a, default: []].append(j)
                for t in j.targets where seenHold.insert([t, a]).inserted { holds[t, default: []].append(a) }
            }
        }
        jobsByAsset = byAsset
        self.holds = holds
        let jobs = Dictionary(inventory.jobs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        self.jobs = jobs
        var tests: [String: [String]] = [:]
        for t in inventory.restoreTests {
            for a in t.asset.map({ [$0] }) ?? jobs[t.job]?.assets ?? [] { tests[a, default: []].append(t.id) }
        }
        testsByAsset = tests
        assetsAtSite = Dictionary(grouping: inventory.assets, by: \.site).mapValues { $0.map(\.id) }
        storageAtSite = Dictionary(grouping: inventory.storage, by: \.site).mapValues { $0.map(\.id) }
        dependencySummaries = DependencySummary.summaries(inventory.assets)
    }

    /// Convenience: derive everything at once.
    /// `lostIn`: asset → the disaster scenarios `drplan plan` finds it lost for good in
    /// (computed by the planner, which sits above the facts; empty when not computed).
    public static func derive(_ inventory: Inventory, now: Timestamp, measured: MeasuredEvidence = MeasuredEvidence(),
                              lostIn: [String: [String]] = [:]) -> Facts {
        var d = FactDeriver(inventory, now: now, measured: measured)
        d.lostIn = lostIn
        return d.facts()
    }

    /// Asset → scenarios it is lost in (`asset.lost_in`, DR407).
    public var lostIn: [String: [String]] = [:]

    public func facts() -> Facts {
        var nextRuns: [Schedule: Timestamp?] = [:]
        let jobFacts = inv.jobs.map { j -> Value in
            if nextRuns[j.schedule] == nil { nextRuns[j.schedule] = .some(j.schedule.nextFire(after: now)) }
            return jobValue(j, nextRun: nextRuns[j.schedule] ?? nil)
        }
        // Every output of drplan reads the facts, so secrets are removed here, once, by the
        // one redaction function (Redaction.swift): rules, reports and `eval` never see them.
        // (Display text such as the organization was scrubbed when the inventory was read;
        // `yaml` masks secret-named options itself, before they become numbers.)
        let r: (Value) -> Value = { Redaction.value($0) }
        var facts = Facts(
            asOf: now, organization: inv.organization, policy: policyValue(),
            sites: inv.sites.map(siteValue).map(r), storage: inv.storage.map(storageValue).map(r), assets: inv.assets.map(assetValue).map(r),
            jobs: jobFacts.map(r), restoreTests: inv.restoreTests.map(testValue).map(r), waivers: inv.waivers.map(waiverValue).map(r),
            documents: inv.secretKeys.map { k in
                .object([("id", .string(k.path)), ("path", .string(k.path)), ("key", .string(String(k.path.split(separator: ".").last ?? ""))), ("literal", .bool(k.isLiteral))])
            })
        if measured.store != nil || inv.evidence.firstRun != nil {
            let s = measured.store
            facts.evidence = [.object([
                ("id", .string("evidence")), ("chain_started", opt(s?.chainStarted, Value.timestamp)), ("oldest_run", opt(s?.oldestRun, Value.timestamp)),
                ("runs", .int(Int64(s?.runs ?? 0))), ("first_run", opt(inv.evidence.firstRun, Value.timestamp)), ("retention", dur(inv.policy.evidenceRetention)),
                ("hosts", .list(hostFacts())),
            ])]
        }
        facts.assets = withRecoveryOrder(facts.assets)
        let p = inv.plan
        // drplan's own state (inventory, keys, policies, evidence) is an asset like any other:
        // the ones that declare the data class `drplan-state`, and whether one has a copy offsite.
        let state = facts.assets.filter { a in
            if case .list(let classes)? = a["data_classes"] { return classes.contains(.string("drplan-state")) }
            return false
        }
        let stateOffsite = state.contains { a in if case .int(let n)? = a["offsite_count"] { return n > 0 }; return false }
        facts.plan = [.object([
            ("state_assets", .list(state.compactMap { $0["id"] })), ("state_offsite", .bool(stateOffsite)),
            ("id", .string("plan")), ("declared", .bool(p != nil)), ("approved_by", opt(p?.approvedBy, Value.string)),
            ("approved_on", opt(p?.approvedOn, Value.timestamp)), ("review_every", dur(p?.reviewEvery ?? .days(365))),
            ("contacts", .int(Int64(p?.contacts.count ?? 0))), ("out_of_band_contacts", .int(Int64(p?.contacts.filter(\.outOfBand).count ?? 0))),
            ("emergency_mode", opt(p?.emergencyMode, Value.string)),
        ])]
        return facts
    }

    // MARK: derived numbers, exposed for tests and other layers

    public func region(ofSite id: String) -> String { sites[id]?.region ?? id }

    /// max_gap / min_gap of a job: its schedule's gaps, or its lag when continuous.
    public func gaps(_ j: Job) -> GapStats? {
        if j.schedule == .continuous { return GapStats(maxGap: j.lag.seconds, minGap: j.lag.seconds) }
        return analyzer.gaps(j.schedule)
    }

    /// Largest of keep_within and keep_* × their periods, with keep_last × the smallest gap.
    public func effectiveRetention(_ j: Job) -> TimeSpan {
        guard let r = j.retention else { return .zero }
        let day: Int64 = 86_400
        var best: Int64 = r.keepWithin?.seconds ?? 0
        for (n, unit) in [(r.keepHourly, 3_600), (r.keepDaily, day), (r.keepWeekly, 7 * day), (r.keepMonthly, 30 * day), (r.keepYearly, 365 * day)] {
            if let n { best = max(best, Int64(n).multipliedReportingOverflow(by: unit).overflow ? Int64.max : Int64(n) * unit) }
        }
        if let n = r.keepLast, let g = gaps(j) { best = max(best, Int64(n) * g.minGap) }
        return TimeSpan(seconds: best)
    }

    /// Achievable RPO: the largest gap in the union of the covering jobs' fire times; a
    /// continuous job contributes its lag, and the result is the smaller of lag and gap.
    public func achievableRPO(_ jobs: [Job]) -> Int64? { analyzer.worstDataLoss(jobs) }

    func jobLast(_ j: Job) -> (success: Timestamp?, status: JobStatus?, source: String?) {
        let declared = j.lastSuccess
        guard let m = measured.jobs[j.id] else { return (declared, j.lastStatus, declared == nil ? nil : "declared") }
        let success: Timestamp?
        var source: String?
        switch (declared, m.lastSuccess) {
        case let (d?, ms?): success = max(d, ms); source = ms >= d ? "measured" : "declared"
        case let (d?, nil): success = d; source = "declared"
        case let (nil, ms?): success = ms; source = "measured"
        default: success = nil
        }
        let status = (declared.map { m.at >= $0 } ?? true) ? m.status : (j.lastStatus ?? m.status)
        return (success, status, source)
    }

    /// How long a copy's last success stays recent: the asset's RPO or twice the job's
    /// longest gap, whichever is longer (a week when neither is known).
    func recentWindow(_ j: Job, _ a: Asset?) -> Int64 {
        let w = max(a?.rpo?.seconds ?? 0, 2 * (gaps(j)?.maxGap ?? 0))
        return w > 0 ? w : 7 * 86_400
    }

    /// The evidence behind job `j`'s copy on `target`:
    /// - `declared`: drplan has no runs of the job (the inventory's word stands), or the target
    ///   is written outside drplan (`target_engines: external`);
    /// - `measured`: the target's last success is within `recentWindow`;
    /// - `stale`: it succeeded once, longer ago; `failed`: its runs never succeeded;
    ///   `none`: the job has runs, but never to this target.
    /// Only declared and measured copies are counted as copies.
    func copyEvidence(_ j: Job, target: String, asset: Asset?) -> (evidence: String, lastSuccess: Timestamp?) {
        if j.engine(for: target) == nil || measured.jobs[j.id] == nil { return ("declared", j.lastSuccess) }
        // This asset's own runs to the target when there are any (a job with several assets
        // runs each on its own), else the job's runs to it.
        let perAsset = asset != nil && measured.jobsWithAssetRuns.contains(j.id)
        let key = perAsset ? MeasuredEvidence.key(job: j.id, target: target, asset: asset?.id) : MeasuredEvidence.key(job: j.id, target: target)
        guard let m = measured.targets[key] else { return ("none", nil) }
        guard let s = m.lastSuccess else { return ("failed", nil) }
        return (now.seconds - s.seconds <= recentWindow(j, asset) ? "measured" : "stale", s)
    }

    /// The (job, target, asset) copies, as `MeasuredEvidence.key`, that the evidence does not
    /// back (failed, stale, or never written): a plan must not recover from them.
    public func unprovenCopies() -> Set<String> {
        var out = Set<String>()
        for j in inv.jobs {
            for t in j.targets {
                for a in j.assets {
                    let e = copyEvidence(j, target: t, asset: assets[a])
                    if e.evidence != "measured" && e.evidence != "declared" { out.insert(MeasuredEvidence.key(job: j.id, target: t, asset: a)) }
                }
            }
        }
        return out
    }

    /// A job's weakest copy on `target` among its assets: what DR604 judges.
    func jobTargetEvidence(_ j: Job, target: String) -> (evidence: String, lastSuccess: Timestamp?, window: Int64) {
        let each = j.assets.map { a in (copyEvidence(j, target: target, asset: assets[a]), recentWindow(j, assets[a])) }
        guard let worst = each.min(by: { (Self.evidenceRank[$0.0.evidence] ?? 0) < (Self.evidenceRank[$1.0.evidence] ?? 0) }) else {
            let e = copyEvidence(j, target: target, asset: nil)
            return (e.evidence, e.lastSuccess, recentWindow(j, nil))
        }
        return (worst.0.evidence, worst.0.lastSuccess, worst.1)
    }

    static let evidenceRank = ["measured": 4, "declared": 3, "stale": 2, "failed": 1, "none": 0]

    func testLast(_ t: RestoreTest) -> (run: Timestamp?, result: TestResult?, duration: TimeSpan?, restored: Int64?, source: String?) {
        if let m = measured.tests[t.id], t.lastRun.map({ m.at >= $0 }) ?? true {
            return (m.at, m.result, m.duration, m.restored, "measured")
        }
        return (t.lastRun, t.result, t.duration, t.restored, t.lastRun == nil ? nil : "declared")
    }

    /// The rate restores from `s` run at: the newest restore test's measured rate (one that
    /// restored at least `MeasuredEvidence.minimumRateSample`), else `restore_rate`, else the
    /// policy's rate for its media.
    func rate(_ s: Storage) -> Int64 {
        if let m = measured.restoreRates[s.id] { return max(1, Int64(m.bytesPerSecond)) }
        return s.effectiveRestoreRate(inv.policy)
    }

    func rateSource(_ s: Storage) -> String {
        measured.restoreRates[s.id] != nil ? "measured" : (s.restoreRate != nil ? "declared" : "default")
    }

    // MARK: values

    func policyValue() -> Value {
        let p = inv.policy
        return .object([
            ("frameworks", .strings(p.frameworks.map(\.rawValue))), ("fail_on", .string(p.failOn.rawValue)),
            ("restore_test_every", dur(p.restoreTestEvery)), ("min_recovery_window", dur(p.minRecoveryWindow)),
            ("capacity_threshold", .double(p.capacityThreshold)), ("evidence_retention", dur(p.evidenceRetention)), ("min_site_distance", .double(p.minSiteDistance)), ("ransomware_dwell", dur(p.ransomwareDwell)),
            ("retention", .object(p.retention.map { ($0.dataClass, .object([("min", opt($0.bounds.min, dur)), ("max", opt($0.bounds.max, dur))])) })),
            ("restore_rates", .object(Media.allCases.map { ($0.rawValue, .int(p.restoreRate(for: $0))) })),
        ])
    }

    func siteValue(_ s: Site) -> Value {
        return .object([
            ("id", .string(s.id)), ("kind", .string(s.kind.rawValue)), ("region", .string(region(ofSite: s.id))),
            ("name", opt(s.name, Value.string)), ("labels", labels(s.labels)),
            ("location", opt(s.location) { .object([("lat", .double($0.lat)), ("lon", .double($0.lon))]) }), ("provider", opt(s.provider, Value.string)),
            ("assets", .strings(assetsAtSite[s.id] ?? [])),
            ("storage", .strings(storageAtSite[s.id] ?? [])),
        ])
    }

    /// Whether drplan's last look at the storage's Object Lock confirmed it.
    func lockVerified(_ s: Storage) -> Bool { s.objectLock != nil && measured.lockChecks[s.id]?.ok == true }

    /// Whether a copy on `s` counts as immutable or air-gapped (DR104).
    func countsImmutable(_ s: Storage) -> Bool { airGapHolds(s) || isImmutable(s) }

    /// Whether drplan judges `s` immutable. A cloud copy is, only when its lock was verified,
    /// or when it is declared with an explanation of why drplan cannot verify it
    /// (`immutable_reason`); a lock check that failed refutes the declaration. Other storage
    /// (WORM tape, optical) cannot be measured: its declaration stands.
    func isImmutable(_ s: Storage) -> Bool {
        guard s.kind == .cloudObject || (s.url ?? "").hasPrefix("s3://") else { return s.immutable }
        if lockVerified(s) { return true }
        if measured.lockChecks[s.id]?.ok == false { return false }
        return s.declaresImmutable && !(s.immutableReason ?? "").isEmpty
    }

    func lockValue(_ s: Storage) -> Value {
        guard let c = measured.lockChecks[s.id] else { return .null }
        return .object([("at", .timestamp(c.at)), ("ok", .bool(c.ok)), ("detail", .string(c.detail))])
    }

    func storageValue(_ s: Storage) -> Value {
        let space = capacity(s)
        let utilization: Value = space.map { .double($0.utilization) } ?? .null
        let forecast = forecast(s, free: space?.free)
        return .object([
            ("id", .string(s.id)), ("kind", .string(s.kind.rawValue)), ("site", .string(s.site)), ("region", .string(region(ofSite: s.site))),
            ("media", .string(s.media.rawValue)), ("immutable", .bool(isImmutable(s))),
            ("immutable_declared", .bool(s.declaresImmutable)), ("air_gapped", .bool(s.airGapped)), ("air_gap_holds", .bool(airGapHolds(s))),
            ("rotation", s.rotation.map { .object([("every", dur($0.every)), ("offline", .bool($0.offline))]) } ?? .null),
            ("retrieval", opt(s.retrieval, dur)),
            ("encryption", .object([("at_rest", .bool(s.encryption.atRest)), ("in_transit", .bool(s.encryption.inTransit)), ("passphrase", opt(s.encryption.passphrase, secret))])),
            ("access", .object([("mfa_delete", .bool(s.mfaDelete)), ("network_isolated", .bool(s.networkIsolated)),
                                ("admins", .strings(s.admins)), ("delete_requires", opt(s.deleteRequires, Value.string))])),
            // Who can delete these backups and also administers what they protect: one stolen
            // credential then takes the data and its copies.
            ("admins_overlap", .strings(Array(Set(s.admins).intersection((holds[s.id] ?? []).flatMap { assets[$0]?.admins ?? [] })).sorted())),
            ("provider", opt(provider(s), Value.string)),
            ("capacity", opt(s.capacity, Value.int)), ("used", opt(s.used, Value.int)), ("restore_rate", .int(rate(s))),
            ("path", opt(s.path, Value.string)), ("url", opt(s.url, Value.string)),
            ("credentials", .object(s.credentials.map { ($0.0, secret($0.1)) })), ("name", opt(s.name, Value.string)),
            ("labels", labels(s.labels)), ("utilization", utilization), ("holds", .strings(holds[s.id] ?? [])),
            ("object_lock", s.objectLock.map { .object([("mode", .string($0.mode.rawValue)), ("days", .int(Int64($0.days)))]) } ?? .null),
            ("lock_days", .int(Int64(s.objectLock?.days ?? 0))),
            ("lock_period", .duration(CELDuration(seconds: Int64(s.objectLock?.days ?? 0) * 86400))),
            ("immutable_verified", .bool(lockVerified(s))), ("lock_check", lockValue(s)),
            ("immutable_reason", opt(s.immutableReason, Value.string)),
            ("restore_rate_source", .string(rateSource(s))),
            ("repository_size", opt(measured.capacity[s.id]?.bytes, Value.int)),
            ("object_count", opt(measured.capacity[s.id]?.objects, Value.int)),
            ("capacity_measured_at", opt(measured.capacity[s.id]?.at, Value.timestamp)),
            ("capacity_source", opt(space?.source, Value.string)), ("free_bytes", opt(space?.free, Value.int)),
            ("total_bytes", opt(space?.total, Value.int)),
            ("growth_per_day", opt(forecast?.perDay, Value.double)), ("days_until_full", opt(forecast?.days, Value.double)),
        ])
    }

    func assetValue(_ a: Asset) -> Value {
        let jobs = jobsByAsset[a.id] ?? []
        let myRegion = region(ofSite: a.site)
        // Copies: the primary, then one per distinct target storage, in job and target order.
        var copies: [Value] = [.object([
            ("storage", .null), ("site", .string(a.site)), ("region", .string(myRegion)), ("media", .string(a.media.rawValue)),
            ("offsite", .bool(false)), ("immutable", .bool(false)), ("immutable_declared", .bool(false)), ("immutable_verified", .bool(false)),
            ("provider", opt(sites[a.site]?.provider, Value.string)),
            ("lock_days", .int(0)), ("air_gapped", .bool(false)),
            ("encrypted_at_rest", .bool(false)), ("versioned", .bool(false)), ("primary", .bool(true)),
            ("evidence", .string("declared")), ("last_success", .null),
        ])]
        var order: [String] = []
        var writers: [String: [Job]] = [:]
        for j in jobs {
            for t in j.targets {
                if writers[t] == nil { order.append(t) }
                writers[t, default: []].append(j)
            }
        }
        var media: Set<String> = [a.media.rawValue]
        var offsite = 0, immutable = 0, otherRegion = 0
        var offsiteProviders: [String] = []   // "" for a copy whose provider is not declared
        var unproven: [Value] = []
        var rto: Double? = nil
        for id in order {
            guard let s = storage[id] else { continue }
            let w = writers[id] ?? []
            // The best evidence among the jobs writing this copy.
            let evidence = w.map { copyEvidence($0, target: id, asset: a) }.max { (Self.evidenceRank[$0.evidence] ?? 0, $0.lastSuccess ?? Timestamp(seconds: Int64.min)) < (Self.evidenceRank[$1.evidence] ?? 0, $1.lastSuccess ?? Timestamp(seconds: Int64.min)) }
            let counts = evidence.map { $0.evidence == "measured" || $0.evidence == "declared" } ?? true
            let isOffsite = separate(a.site, s.site)
            if counts {
                media.insert(s.media.rawValue)
                if isOffsite {
                    offsite += 1
                    offsiteProviders.append(provider(s) ?? "")
                }
                if region(ofSite: s.site) != myRegion { otherRegion += 1 }
                if countsImmutable(s) { immutable += 1 }
                if let size = a.size { rto = min(rto ?? .infinity, Double(size) / Double(rate(s)) + Double(s.retrieval?.seconds ?? 0)) }
            }
            let copy: Value = .object([
                ("storage", .string(s.id)), ("site", .string(s.site)), ("region", .string(region(ofSite: s.site))), ("media", .string(s.media.rawValue)),
                ("offsite", .bool(isOffsite)), ("immutable", .bool(isImmutable(s))), ("immutable_declared", .bool(s.declaresImmutable)),
                ("provider", opt(provider(s), Value.string)),
                ("immutable_verified", .bool(lockVerified(s))), ("lock_days", .int(Int64(s.objectLock?.days ?? 0))), ("air_gapped", .bool(s.airGapped)),
                ("encrypted_at_rest", .bool(s.encryption.atRest || w.contains { $0.encryption.atRest })),
                ("versioned", .bool(w.contains { $0.type.isVersioned })), ("primary", .bool(false)),
                ("evidence", .string(evidence?.evidence ?? "declared")), ("last_success", opt(evidence?.lastSuccess, Value.timestamp)),
            ])
            // A copy whose target has runs but no recent success is not a copy: it is listed
            // apart, so that no rule counts it.
            if counts { copies.append(copy) } else { unproven.append(copy) }
        }
        let versioned = jobs.filter { $0.type.isVersioned }
        let retention: Value = jobs.isEmpty ? .null : dur(versioned.map(effectiveRetention).max() ?? .zero)
        let classBounds = inv.policy.retention.filter { a.dataClasses.contains($0.dataClass) }.map(\.bounds)
        let requiredMin = a.retention.min ?? classBounds.compactMap(\.min).max()
        let allowedMax = a.retention.max ?? classBounds.compactMap(\.max).min()
        var lastSuccess: (Timestamp, String)? = nil
        for j in jobs {
            let l = jobLast(j)
            if let s = l.success, s > (lastSuccess?.0 ?? Timestamp(seconds: Int64.min)) { lastSuccess = (s, l.source ?? "declared") }
        }
        return .object([
            ("id", .string(a.id)), ("kind", .string(a.kind.rawValue)), ("name", opt(a.name, Value.string)), ("site", .string(a.site)),
            ("region", .string(myRegion)), ("media", .string(a.media.rawValue)), ("tier", .string(a.tier.rawValue)),
            ("owner", opt(a.owner, Value.string)), ("size", opt(a.size, Value.int)), ("data_classes", .strings(a.dataClasses)),
            ("rpo", opt(a.rpo, dur)), ("rto", opt(a.rto, dur)), ("depends_on", .strings(a.dependsOn)),
            ("retention", .object([("min", opt(a.retention.min, dur)), ("max", opt(a.retention.max, dur))])),
            ("backup", .string(a.backup.rawValue)), ("reason", opt(a.reason, Value.string)), ("source", source(a.source)),
            ("labels", labels(a.labels)),
            ("protected", .bool(!jobs.isEmpty)), ("jobs", .strings(jobs.map(\.id))), ("copies", .list(copies)),
            ("copy_count", .int(Int64(copies.count))), ("media_count", .int(Int64(media.count))),
            ("offsite_count", .int(Int64(offsite))), ("other_region_count", .int(Int64(otherRegion))),
            ("offsite_providers", .strings(Array(Set(offsiteProviders)).sorted())), ("admins", .strings(a.admins)),
            ("untested_copies", opt(untestedCopies(a, jobs: jobs), Value.strings)), ("lost_in", .strings(lostIn[a.id] ?? [])), ("immutable_count", .int(Int64(immutable))),
            ("rpo_achievable", opt(achievableRPO(jobs), { .duration(CELDuration(seconds: $0)) })),
            ("rto_estimate", opt(rto, { .duration(CELDuration(fractional: $0)) })),
            ("retention_effective", retention), ("retention_required_min", opt(requiredMin, dur)), ("retention_allowed_max", opt(allowedMax, dur)),
            ("last_success", opt(lastSuccess?.0, Value.timestamp)), ("last_success_source", opt(lastSuccess?.1, Value.string)),
            ("restore_tests", .strings(testsByAsset[a.id] ?? [])), 
            ("dependency_depth", .int(Int64(dependencySummaries[a.id]?.depth ?? 0))),
            ("slowest_dependency", opt(dependencySummaries[a.id]?.slowest) { s in
                .object([("id", .string(s.id)), ("rto", opt(s.rto, dur)), ("via", .string(s.via))])
            }),
            ("unproven_copies", .list(unproven)),
        ])
    }

    func jobValue(_ j: Job, nextRun: Timestamp?) -> Value {
        let g = gaps(j)
        let last = jobLast(j)
        let jobSites = Set(j.assets.compactMap { assets[$0]?.site })
        let offsite = j.targets.filter { t in storage[t].map { s in jobSites.contains { separate($0, s.site) } } ?? false }
        var retention: Value = .null
        if let r = j.retention {
            retention = .object([
                ("keep_within", opt(r.keepWithin, dur)), ("keep_last", opt(r.keepLast, int)), ("keep_hourly", opt(r.keepHourly, int)),
                ("keep_daily", opt(r.keepDaily, int)), ("keep_weekly", opt(r.keepWeekly, int)),
                ("keep_monthly", opt(r.keepMonthly, int)), ("keep_yearly", opt(r.keepYearly, int)),
            ])
        }
        return .object([
            ("id", .string(j.id)), ("assets", .strings(j.assets)), ("type", .string(j.type.rawValue)),
            ("schedule", .string(j.scheduleText)), ("timezone", .string(j.timezone?.name ?? "UTC")), ("lag", dur(j.lag)), ("engine", .string(j.engine.rawValue)),
            ("targets", .strings(j.targets)), ("retention", retention),
            ("encryption", .object([
                ("at_rest", .bool(j.encryption.atRest)), ("in_transit", .bool(j.encryption.inTransit)),
                ("key_storage", opt(j.encryption.keyStorage, Value.string)), ("passphrase", opt(j.encryption.passphrase, secret)),
                ("key_escrow", opt(j.encryption.keyEscrow, Value.string)),
            ])),
            ("monitoring", .object([("alert_on_failure", .strings(j.monitoring.alertOnFailure)), ("max_age", opt(j.monitoring.maxAge, dur)),
                                    ("failure_notifications", int(j.monitoring.notify.filter { $0.on.contains(.failure) }.count)),
                                    ("metrics_file", opt(j.monitoring.metricsFile, Value.string))])),
            ("options", j.options.map { yaml($0, key: nil, secretArgs: j.secretArgs) } ?? .object([])), ("labels", labels(j.labels)),
            ("max_gap", opt(g?.maxGap, { .duration(CELDuration(seconds: $0)) })), ("min_gap", opt(g?.minGap, { .duration(CELDuration(seconds: $0)) })),
            ("retention_effective", dur(effectiveRetention(j))), ("versioned", .bool(j.type.isVersioned)),
            ("offsite_targets", .strings(offsite)), ("beside_data", .list(keysBesideData(j))),
            ("escrow_site", opt(j.encryption.keyEscrow.map { storage[$0]?.site ?? $0 }, Value.string)),
            ("escrow_on_target", .bool(j.encryption.keyEscrow.map(j.targets.contains) ?? false)),
            ("asset_sites", .strings(Array(jobSites).sorted())),
            ("target_evidence", .list(j.targets.map { t in
                let e = jobTargetEvidence(j, target: t)
                let age = maxAge(j)
                let overdue = e.evidence != "declared" && e.lastSuccess.map { now.seconds - $0.seconds > age } ?? true
                return .object([("storage", .string(t)), ("evidence", .string(e.evidence)), ("last_success", opt(e.lastSuccess, Value.timestamp)),
                                ("window", .duration(CELDuration(seconds: e.window))), ("max_age", .duration(CELDuration(seconds: age))),
                                ("overdue", .bool(overdue)),
                                // Counted only where DR605 judges (measured evidence), and only when overdue.
                                ("missed_runs", opt(overdue ? e.lastSuccess.map { missedRuns(j, since: $0) } : nil, int))])
            })),
            ("last_success", opt(last.success, Value.timestamp)), ("last_success_source", opt(last.source, Value.string)),
            ("last_status", opt(last.status?.rawValue, Value.string)), ("next_run", opt(nextRun, Value.timestamp)),
        ])
    }

    func testValue(_ t: RestoreTest) -> Value {
        let last = testLast(t)
        let testAssets = t.asset.map { [$0] } ?? (jobs[t.job]?.assets ?? [])
        var full: Value = .null
        if let d = last.duration {
            let sizes = testAssets.compactMap { assets[$0]?.size }
            if t.scope == .sample, let restored = last.restored, restored > 0, sizes.count == testAssets.count, !sizes.isEmpty {
                full = .duration(CELDuration(fractional: Double(d.seconds) * Double(sizes.reduce(0, +)) / Double(restored)))
            } else {
                full = dur(d)
            }
        }
        var age: Value = .null
        if let r = last.run {
            var s = now.seconds - r.seconds, n = now.nanos - r.nanos
            if n < 0 && s > 0 { s -= 1; n += 1_000_000_000 } else if n > 0 && s < 0 { s += 1; n -= 1_000_000_000 }
            age = .duration(CELDuration(seconds: s, nanos: n))
        }
        return .object([
            ("id", .string(t.id)), ("job", .string(t.job)), ("asset", opt(t.asset, Value.string)), ("scope", .string(t.scope.rawValue)),
            ("every", dur(t.interval(policy: inv.policy))), ("last_run", opt(last.run, Value.timestamp)),
            ("result", opt(last.result?.rawValue, Value.string)), ("duration", opt(last.duration, dur)), ("restored", opt(last.restored, Value.int)),
            ("labels", labels(t.labels)), ("assets", .strings(testAssets)), ("age", age), ("full_equivalent", full),
            ("last_run_source", opt(last.source, Value.string)),
            ("corrective_actions", .list(t.correctiveActions.map { a in
                .object([("opened", .timestamp(a.opened)), ("action", .string(a.action)), ("owner", opt(a.owner, Value.string)),
                         ("due", opt(a.due, Value.timestamp)), ("closed", opt(a.closed, Value.timestamp)),
                         ("overdue", .bool(a.isOverdue(at: now)))])
            })),
            ("failure_followed_up", last.result == .fail ? opt(last.run) { .bool(followedUp(t, failedRun: $0)) } : .null),
            ("overdue_actions", .int(Int64(t.correctiveActions.filter { $0.isOverdue(at: now) }.count))),
        ])
    }

    /// Whether a corrective action was opened on or after the day (UTC) of the failed run. By
    /// day, since an inventory dates an action as it dates `last_run`, while a measured run
    /// has a time of day.
    func followedUp(_ t: RestoreTest, failedRun run: Timestamp) -> Bool {
        let day = Int64(Civil.floorDiv(Int(run.seconds), 86_400)) * 86_400
        return t.correctiveActions.contains { $0.opened.seconds >= day }
    }

    func waiverValue(_ w: Waiver) -> Value {
        .object([
            ("rule", .string(w.rule)), ("subject", .string(w.subject)), ("reason", .string(w.reason)),
            ("approved_by", .string(w.approvedBy)), ("expires", .timestamp(w.expires)), ("labels", labels(w.labels)),
            ("expired", .bool(w.expires < now)),
        ])
    }

    // MARK: helpers

    func dur(_ t: TimeSpan) -> Value { .duration(CELDuration(seconds: t.seconds)) }
    func int(_ n: Int) -> Value { .int(Int64(n)) }
    func opt<T>(_ v: T?, _ f: (T) -> Value) -> Value { v.map(f) ?? .null }
    func secret(_ s: SecretRef) -> Value { .string(s.display) }

    func labels(_ l: [(String, String)]) -> Value {
        .object(l.map { ($0.0, .string($0.1)) })
    }

    func source(_ s: AssetSource?) -> Value {
        switch s {
        case nil: return .null
        case .paths(let p, let ex)?: return .object([("path", .strings(p)), ("exclude", .strings(ex))])
        case .sqlite(let f)?: return .object([("sqlite", .string(f))])
        case .postgres(let dsn, let pw)?: return .object([("postgres", .string(dsn)), ("password", opt(pw, secret))])
        case .command(let c)?: return .object([("command", .string(c))])
        }
    }

    /// Engine options as typed values; secret-named keys holding literals are redacted, and so
    /// are the values after a command job's `secret_args` options.
    func yaml(_ v: YAMLValue, key: String?, secretArgs: [String] = []) -> Value {
        switch v {
        case .null: return .null
        case .scalar(let s, let plain):
            if let key, Redaction.isSecretKey(key), SecretRef.classify(s) == .literal { return .string(Redaction.mask) }
            if plain, let i = Int64(s) { return .int(i) }
            if plain, s == "true" || s == "false" { return .bool(s == "true") }
            return .string(secretArgs.isEmpty ? s : Redaction.command(s, secretFlags: secretArgs))
        case .list(let items): return .list(items.map { yaml($0, key: key, secretArgs: secretArgs) })
        case .map(let pairs): return .object(pairs.map { ($0.0, yaml($0.1, key: $0.0, secretArgs: secretArgs)) })
        }
    }
}

