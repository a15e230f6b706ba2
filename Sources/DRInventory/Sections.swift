import Yams

/// Reads one file's document into objects. Problems go to the context's sink. Every object
/// with an id is kept, even when other fields are invalid, so that its references are still
/// checked and one run reports everything; a file with any problem is never used anyway.
struct SectionReader {
    let ctx: ReadContext
    var organization: (String, SourceLocation)?
    var policyRead: (Policy, SourceLocation)?
    var evidenceRead: (EvidenceSettings, SourceLocation)?
    var timezoneRead: (ZoneRules, SourceLocation)?
    var planRead: (PlanGovernance, SourceLocation)?
    var declared: [(String, Declared)] = []
    var sites: [Site] = []
    var storage: [Storage] = []
    var assets: [Asset] = []
    var jobs: [Job] = []
    var restoreTests: [RestoreTest] = []
    var waivers: [Waiver] = []
    var secrets: [SecretKey] = []

    init(ctx: ReadContext) { self.ctx = ctx }

    static let topKeys = ["drplan", "organization", "timezone", "policy", "evidence", "plan", "include", "sites", "storage", "assets", "jobs", "restore_tests", "waivers"]

    /// Reads the top level and returns the `include:` entries for the loader to follow.
    mutating func readDocument(_ root: Node) -> [(String, Node)] {
        guard case .mapping = root else {
            ctx.error(root, Messages.topLevelNotMapping(found: root.shapeDescription))
            return []
        }
        guard let top = ObjectReader(root, what: "the inventory", ctx: ctx) else { return [] }
        if let (v, node) = top.scalarText("drplan", shape: "the number 1") {
            if v != "1" { ctx.error(node, Messages.unsupportedVersion(v)) }
        } else if !top.has("drplan") {
            ctx.sink.add(SourceLocation(file: ctx.file, line: 1, column: 1), Messages.missingVersion())
        }
        top.finish(allowed: Self.topKeys)
        scanSecrets(root, path: [])
        // Display-only text is scrubbed as it is read: reports print it from the model.
        if let org = top.string("organization"), let k = top.keyNode("organization") { organization = (Redaction.text(org), ctx.location(k)) }
        if let z = top.timezone(), let k = top.keyNode("timezone") { timezoneRead = (z, ctx.location(k)) }
        if let p = top.object("policy"), let k = top.keyNode("policy") { policyRead = (readPolicy(p), ctx.location(k)) }
        if let e = top.object("evidence"), let k = top.keyNode("evidence") { evidenceRead = (readEvidence(e), ctx.location(k)) }
        if let p = top.object("plan"), let k = top.keyNode("plan") { planRead = (readPlan(p), ctx.location(k)) }
        readList(top, "sites", singular: "site") { $0.readSite($1) }
        readList(top, "storage", singular: "storage") { $0.readStorage($1) }
        readList(top, "assets", singular: "asset") { $0.readAsset($1) }
        readList(top, "jobs", singular: "job") { $0.readJob($1) }
        readList(top, "restore_tests", singular: "restore test") { $0.readRestoreTest($1) }
        readList(top, "waivers", singular: "waiver") { $0.readWaiver($1) }
        var includes: [(String, Node)] = []
        if let v = top.value("include") {
            if case .scalar(let s) = v { includes = [(s.string, v)] } else { includes = top.list("include") ?? [] }
        }
        return includes
    }

    mutating func readList(_ top: ObjectReader, _ key: String, singular: String, _ read: (inout SectionReader, ObjectReader) -> Void) {
        guard let v = top.value(key) else { return }
        guard case .sequence(let items) = v else {
            ctx.error(v, Messages.expected("a list of \(singular) entries", for: key, in: "the inventory", found: v.shapeDescription))
            return
        }
        for (i, item) in items.enumerated() {
            guard let r = ObjectReader(item, what: "\(singular) #\(i + 1)", ctx: ctx) else { continue }
            read(&self, r)
        }
    }

    /// Reads `id`, names the object after it in later messages, and declares it.
    mutating func declare(_ r: ObjectReader, kind: ObjectKind) -> String? {
        guard let id = r.id("id") else { return nil }
        r.what = "\(kind.rawValue) '\(id)'"
        declared.append((id, Declared(kind: kind, location: ctx.location(r.value("id") ?? r.node))))
        return id
    }

    // MARK: policy

    func readPolicy(_ r: ObjectReader) -> Policy {
        r.what = "'policy'"
        var p = Policy()
        p.origin = r.origin
        if let fws = r.list("frameworks") {
            var out: [Framework] = []
            for (s, n) in fws {
                if let f = Framework(rawValue: s) { out.append(f) } else {
                    let names = Framework.allCases.map(\.rawValue)
                    ctx.error(n, Messages.invalidValue(s, key: "frameworks", in: "'policy'", reason: Messages.oneOf(names, suggestion: suggestion(for: s, among: names))))
                }
            }
            p.frameworks = out
        }
        if let s: Severity = r.choice("fail_on") { p.failOn = s }
        if let d = r.duration("restore_test_every") { p.restoreTestEvery = d }
        if let d = r.duration("min_recovery_window") { p.minRecoveryWindow = d }
        if let d = r.duration("evidence_retention") { p.evidenceRetention = d }
        if let d = r.duration("ransomware_dwell") { p.ransomwareDwell = d }
        if let d = r.parsed("min_site_distance", shape: "a distance such as 50km", GeoPoint.parseDistance) { p.minSiteDistance = d }
        if let c = r.parsed("capacity_threshold", shape: "a percent", Percent.parse) { p.capacityThreshold = c }
        if let m = r.object("retention") {
            for e in m.entries {
                guard let b = ObjectReader(e.value, what: "retention for data class '\(e.key)'", ctx: ctx) else { continue }
                p.retention.append((e.key, readBounds(b)))
            }
        }
        if let m = r.object("restore_rates") {
            let names = Media.allCases.map(\.rawValue)
            for e in m.entries {
                guard let media = Media(rawValue: e.key) else {
                    ctx.error(e.keyNode, Messages.invalidValue(e.key, key: "restore_rates", in: "'policy'", reason: Messages.oneOf(names, suggestion: suggestion(for: e.key, among: names))))
                    continue
                }
                if let rate = m.rate(e.key) { p.restoreRates[media] = rate }
            }
        }
        if let l = r.object("limits") {
            if let steps = l.int("steps", minimum: 1000) { p.evalLimits.steps = steps }
            if let memory = l.size("memory") {
                if memory < 1 << 20 { if let n = l.value("memory") { ctx.error(n, "'memory' in policy.limits must be at least 1MB") } } else { p.evalLimits.bytes = Int(clamping: memory) }
            }
            l.finish(allowed: ["steps", "memory"])
        }
        r.finish(allowed: ["frameworks", "fail_on", "restore_test_every", "min_recovery_window", "capacity_threshold", "retention", "restore_rates", "limits", "evidence_retention", "min_site_distance", "ransomware_dwell"])
        return p
    }

    func readPlan(_ r: ObjectReader) -> PlanGovernance {
        r.what = "'plan'"
        var p = PlanGovernance()
        p.origin = r.origin
        p.approvedBy = r.string("approved_by")
        p.approvedOn = r.timestamp("approved_on")
        if let d = r.duration("review_every") { p.reviewEvery = d }
        p.emergencyMode = r.string("emergency_mode")
        r.objects("contacts", item: { "contact #\($0 + 1) of 'plan'" },
                  notAList: { Messages.expected("a list of contacts", for: "contacts", in: "'plan'", found: $0.shapeDescription) }) { c in
            let name = c.string("name", required: true)
            let contact = PlanGovernance.Contact(name: name ?? "", role: c.string("role"), outOfBand: c.bool("out_of_band") ?? false)
            c.finish(allowed: ["name", "role", "phone", "email", "out_of_band"])
            if name != nil { p.contacts.append(contact) }
        }
        r.finish(allowed: ["approved_by", "approved_on", "review_every", "contacts", "emergency_mode"])
        return p
    }

    func readEvidence(_ r: ObjectReader) -> EvidenceSettings {
        r.what = "'evidence'"
        var e = EvidenceSettings()
        e.origin = r.origin
        if let key = r.secret("signing_key") {
            switch key {
            case .file, .env: e.signingKey = key
            case .vault, .literal:
                if let n = r.value("signing_key") { ctx.error(n, Messages.signingKeyReference()) }
            }
        }
        e.firstRun = r.timestamp("first_run")
        e.url = r.string("url")
        if let u = e.url, u.contains("://"), !(u.hasPrefix("postgresql://") || u.hasPrefix("postgres://")), let n = r.value("url") {
            ctx.error(n, "evidence.url '\(Redaction.text(u))' is neither a file path nor a postgresql:// URL; write a path, or postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full")
        }
        if let u = e.url, let at = u.range(of: "@"), let scheme = u.range(of: "://"), u[scheme.upperBound..<at.lowerBound].contains(":"), let n = r.value("url") {
            ctx.error(n, "evidence.url carries a password; remove it from the URL and set evidence.password to an env: or file: reference (or use PGPASSWORD or ~/.pgpass)")
        }
        if let p = r.secret("password") {
            switch p {
            case .env, .file: e.password = p
            case .vault, .literal:
                if let n = r.value("password") { ctx.error(n, "evidence.password must be an env: or file: reference; a password written into the inventory would be in every copy of it") }
            }
        }
        r.finish(allowed: ["signing_key", "first_run", "url", "password"])
        return e
    }

    func readBounds(_ b: ObjectReader) -> RetentionBounds {
        let bounds = RetentionBounds(min: b.duration("min"), max: b.duration("max"))
        if let lo = bounds.min, let hi = bounds.max, lo > hi, let n = b.value("min") {
            ctx.error(n, "\(b.what) has min \(lo) above max \(hi); a copy cannot be kept longer than it may be kept")
        }
        b.finish(allowed: ["min", "max"])
        return bounds
    }

    // MARK: objects

    mutating func readSite(_ r: ObjectReader) {
        let id = declare(r, kind: .site)
        let kind: SiteKind? = r.choice("kind", required: true)
        let region = r.string("region"), name = r.string("name"), labels = r.labels()
        var location: GeoPoint?
        if let l = r.object("location") {
            let lat = l.parsed("lat", required: true, shape: "a latitude in degrees", { (t: String) throws(ScalarError) -> Double in try GeoPoint.degrees(t, limit: 90) })
            let lon = l.parsed("lon", required: true, shape: "a longitude in degrees", { (t: String) throws(ScalarError) -> Double in try GeoPoint.degrees(t, limit: 180) })
            l.finish(allowed: ["lat", "lon"])
            if let lat, let lon { location = GeoPoint(lat: lat, lon: lon) }
        }
        r.finish(allowed: ["id", "kind", "region", "name", "labels", "location", "provider"])
        guard let id else { return }
        var site = Site(id: id, kind: kind ?? .datacenter, region: region, name: name, labels: labels, origin: r.origin)
        site.location = location
        site.provider = r.string("provider")
        sites.append(site)
    }

    mutating func readStorage(_ r: ObjectReader) {
        let id = declare(r, kind: .storage)
        let kind: StorageKind? = r.choice("kind", required: true)
        let site = r.id("site")
        let media: Media? = r.choice("media")
        var enc = StorageEncryption()
        if let e = r.object("encryption") {
            enc.atRest = e.bool("at_rest") ?? false
            enc.inTransit = e.bool("in_transit") ?? false
            enc.passphrase = e.secret("passphrase")
            e.finish(allowed: ["at_rest", "in_transit", "passphrase"])
        }
        var mfa = false, isolated = false, admins: [String] = [], deleteRequires: String?
        if let a = r.object("access") {
            mfa = a.bool("mfa_delete") ?? false
            isolated = a.bool("network_isolated") ?? false
            admins = a.list("admins")?.map(\.0) ?? []
            deleteRequires = a.string("delete_requires")
            a.finish(allowed: ["mfa_delete", "network_isolated", "admins", "delete_requires"])
        }
        var credentials: [(String, SecretRef)] = []
        if let c = r.object("credentials") {
            for e in c.entries { if let s = c.secret(e.key) { credentials.append((e.key, s)) } }
        }
        var lock: ObjectLock? = nil
        if let l = r.object("object_lock") {
            let mode: ObjectLock.Mode? = l.choice("mode", required: true)
            let days = l.int("days", minimum: 1)
            if !l.has("days") { l.missing("days") }
            l.finish(allowed: ["mode", "days"])
            if let mode, let days { lock = ObjectLock(mode: mode, days: days) }
        }
        var s = Storage(
            id: id ?? "", kind: kind ?? .disk, site: site ?? "", media: media ?? kind?.defaultMedia ?? .disk,
            immutable: r.bool("immutable") ?? false, airGapped: r.bool("air_gapped") ?? false, encryption: enc,
            mfaDelete: mfa, networkIsolated: isolated, capacity: r.size("capacity"), used: r.size("used"),
            restoreRate: r.rate("restore_rate"), path: r.string("path"), url: r.string("url"), credentials: credentials,
            name: r.string("name"), labels: r.labels(), origin: r.origin, create: r.bool("create") ?? false,
            endpoint: r.string("endpoint"), region: r.string("region"), pathStyle: r.bool("path_style"), insecureHTTP: r.bool("insecure_http") ?? false)
        s.objectLock = lock
        s.immutableReason = r.string("immutable_reason")
        s.admins = admins
        s.deleteRequires = deleteRequires
        s.provider = r.string("provider")
        s.retrieval = r.duration("retrieval")
        if let rot = r.object("rotation") {
            let every = rot.duration("every", required: true), offline = rot.bool("offline") ?? false
            rot.finish(allowed: ["every", "offline"])
            if let every { s.rotation = Rotation(every: every, offline: offline) }
        }
        if lock != nil, !(s.url ?? "").hasPrefix("s3://"), let node = r.keyNode("object_lock") {
            r.ctx.error(node, "'object_lock' in storage '\(s.id)' needs an S3 bucket, 'url: s3://BUCKET/PREFIX': Object Lock is an S3 feature; for other storage say 'immutable: true' with an 'immutable_reason'")
        }
        r.finish(allowed: ["id", "kind", "site", "media", "immutable", "air_gapped", "encryption", "access", "capacity", "used", "restore_rate", "path", "url", "credentials", "name", "labels", "create",
                           "endpoint", "region", "path_style", "insecure_http", "object_lock", "immutable_reason", "rotation", "provider", "retrieval"])
        guard id != nil else { return }
        storage.append(s)
    }

    mutating func readAsset(_ r: ObjectReader) {
        let id = declare(r, kind: .asset)
        let kind: AssetKind? = r.choice("kind", required: true)
        let site = r.id("site")
        var retention = RetentionBounds()
        if let b = r.object("retention") { retention = readBounds(b) }
        let backup: BackupRequirement = r.choice("backup") ?? .required
        let reason = r.string("reason")
        if backup == .none, reason == nil, let id, let n = r.value("backup") {
            ctx.error(n, Messages.reasonRequired(id))
        }
        var a = Asset(
            id: id ?? "", kind: kind ?? .server, site: site ?? "", media: r.choice("media") ?? .disk, tier: r.choice("tier") ?? .medium,
            owner: r.string("owner"), name: r.string("name"), size: r.size("size"),
            dataClasses: r.list("data_classes")?.map(\.0) ?? [], rpo: r.duration("rpo"), rto: r.duration("rto"),
            dependsOn: r.idList("depends_on") ?? [], retention: retention, backup: backup, reason: reason,
            source: readSource(r), labels: r.labels(), origin: r.origin)
        a.admins = r.list("admins")?.map(\.0) ?? []
        a.host = r.string("host")
        r.finish(allowed: ["id", "kind", "site", "media", "tier", "owner", "name", "size", "data_classes", "rpo", "rto", "depends_on", "retention", "backup", "reason", "source", "labels", "admins", "host"])
        guard id != nil else { return }
        assets.append(a)
    }

    func readSource(_ r: ObjectReader) -> AssetSource? {
        guard let s = r.object("source") else { return nil }
        defer { s.finish(allowed: ["path", "exclude", "sqlite", "postgres", "password", "command"]) }
        let kinds = ["path", "sqlite", "postgres", "command"].filter { s.has($0) }
        guard kinds.count == 1 else {
            ctx.error(s.node, "\(s.what) must have exactly one of 'path', 'sqlite', 'postgres' or 'command'" + (kinds.isEmpty ? "" : ", not \(kinds.map { "'\($0)'" }.joined(separator: " and "))"))
            return nil
        }
        switch kinds[0] {
        case "path":
            let paths: [String]
            if case .scalar(let sc)? = s.value("path") { paths = [sc.string] } else { paths = s.list("path")?.map(\.0) ?? [] }
            return .paths(paths, exclude: s.list("exclude")?.map(\.0) ?? [])
        case "sqlite": return s.string("sqlite").map { .sqlite($0) }
        case "postgres": return s.string("postgres").map { .postgres(dsn: $0, password: s.secret("password")) }
        default: return s.string("command").map { .command($0) }
        }
    }

    /// A notification URL drplan can send to; anything else is an error at its line.
    static func checkNotifyURL(_ url: String, node: Node, ctx: ReadContext) -> Bool {
        if Notify.schemes.contains(where: { url.hasPrefix($0) }) && url.count > 7 { return true }
        ctx.error(node, "drplan cannot send to '\(Redaction.text(url))'; use one of \(Notify.schemes.map { $0 + "…" }.joined(separator: ", ")) (docs/monitoring.md)")
        return false
    }

    mutating func readJob(_ r: ObjectReader) {
        let id = declare(r, kind: .job)
        var assetIds = r.idList("assets")
        if let single = r.id("asset", required: false) {
            if assetIds != nil { ctx.error(r.keyNode("asset") ?? r.node, Messages.bothAssetAndAssets(in: r.what)) }
            assetIds = [single]
        }
        if assetIds == nil, !r.has("assets"), !r.has("asset") { r.missing("assets") }
        if let a = assetIds, a.isEmpty, let n = r.value("assets") { ctx.error(n, Messages.emptyList("assets", in: r.what)) }
        let type: JobType = r.choice("type") ?? .full
        var scheduleText = ""
        let schedule = r.parsed("schedule", required: true, shape: "a schedule") { (s: String) throws(ScalarError) -> Schedule in
            scheduleText = s
            let sch = try Schedule.parse(s)
            guard sch.everFires else { throw ScalarError("this schedule never fires (no date matches its day and month fields)") }
            return sch
        }
        let zone = r.timezone()
        let lag = r.duration("lag")
        if lag != nil, let schedule, schedule != .continuous, let n = r.keyNode("lag") {
            ctx.error(n, "'lag' in \(r.what) applies only to 'schedule: continuous'; remove it or make the job continuous")
        }
        let targets = r.idList("targets", required: true)
        if let t = targets, t.isEmpty, let n = r.value("targets") { ctx.error(n, Messages.emptyList("targets", in: r.what)) }
        var retention: JobRetention?
        if let k = r.object("retention") {
            var ret = JobRetention()
            ret.keepWithin = k.duration("keep_within")
            ret.keepLast = k.int("keep_last"); ret.keepHourly = k.int("keep_hourly"); ret.keepDaily = k.int("keep_daily")
            ret.keepWeekly = k.int("keep_weekly"); ret.keepMonthly = k.int("keep_monthly"); ret.keepYearly = k.int("keep_yearly")
            k.finish(allowed: ["keep_within", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"])
            retention = ret
        }
        var enc = JobEncryption()
        if let e = r.object("encryption") {
            enc.atRest = e.bool("at_rest") ?? false
            enc.inTransit = e.bool("in_transit") ?? false
            enc.keyStorage = e.id("key_storage", required: false)
            if let k = enc.keyStorage { r.note("encryption", value: k, at: e.value("key_storage")) }
            enc.passphrase = e.secret("passphrase")
            enc.keyEscrow = e.id("key_escrow", required: false)
            if let k = enc.keyEscrow { r.note("encryption", value: k, at: e.value("key_escrow")) }
            e.finish(allowed: ["at_rest", "in_transit", "key_storage", "passphrase", "key_escrow"])
        }
        var mon = Monitoring()
        if let m = r.object("monitoring") {
            let alerts = m.list("alert_on_failure") ?? []
            mon.alertOnFailure = alerts.map(\.0)
            mon.maxAge = m.duration("max_age")
            mon.metricsFile = m.string("metrics_file")
            for (url, node) in alerts {
                if Self.checkNotifyURL(url, node: node, ctx: ctx) { mon.notify.append(Notify(url: url, on: [.failure])) }
            }
            m.objects("notify", item: { _ in "a notify entry of \(r.what)" },
                      notAList: { _ in "'notify' in \(r.what) is a list of {url, on: [start, success, failure, missed]}" }) { n in
                let url = n.string("url", required: true)
                var events: [Notify.Event]? = nil
                if let list = n.list("on") {
                    events = list.compactMap { (name, node) in
                        if let e = Notify.Event(rawValue: name) { return e }
                        ctx.error(node, "unknown notification event '\(name)'; use \(Notify.Event.allCases.map(\.rawValue).joined(separator: ", "))")
                        return nil
                    }
                }
                n.finish(allowed: ["url", "on"])
                if let url, let node = n.value("url"), Self.checkNotifyURL(url, node: node, ctx: ctx) {
                    mon.notify.append(Notify(url: url, on: events ?? Notify.defaultEvents(url)))
                }
            }
            m.finish(allowed: ["alert_on_failure", "max_age", "notify", "metrics_file"])
        }
        let job = Job(
            id: id ?? "", assets: assetIds ?? [], type: type, schedule: schedule ?? .continuous, scheduleText: scheduleText,
            lag: lag ?? .zero, engine: r.choice("engine") ?? .builtin, targets: targets ?? [], retention: retention,
            encryption: enc, monitoring: mon, lastSuccess: r.timestamp("last_success"), lastStatus: r.choice("last_status"),
            options: r.value("options").map(YAMLValue.init), labels: r.labels(), origin: r.origin)
        var withTargets = job
        withTargets.timezone = zone
        withTargets.allowEmpty = r.bool("allow_empty") ?? false
        withTargets.host = r.string("host")
        if let args = r.list("secret_args") {
            for (a, node) in args where !Redaction.isOptionName(a) { ctx.error(node, Messages.secretArgNotOption(a, in: r.what)) }
            withTargets.secretArgs = args.map(\.0).filter(Redaction.isOptionName)
            if job.engine != .command, let n = r.keyNode("secret_args") { ctx.error(n, Messages.secretArgsNeedCommand(in: r.what)) }
        }
        if let m = r.object("target_engines") {
            for e in m.entries {
                if case .scalar(let sc) = e.value, sc.string == "external" { withTargets.targetEngines[e.key] = .external; continue }
                if let engine: Engine = m.choice(e.key) { withTargets.targetEngines[e.key] = .engine(engine) }
            }
        }
        r.finish(allowed: ["id", "assets", "asset", "type", "schedule", "timezone", "lag", "engine", "targets", "retention", "encryption", "monitoring", "last_success", "last_status", "options", "labels", "allow_empty", "target_engines", "secret_args", "host"])
        guard id != nil else { return }
        jobs.append(withTargets)
    }

    mutating func readRestoreTest(_ r: ObjectReader) {
        let id = declare(r, kind: .restoreTest)
        let job = r.id("job")
        let t = RestoreTest(
            id: id ?? "", job: job ?? "", asset: r.id("asset", required: false), scope: r.choice("scope") ?? .sample,
            every: r.duration("every"), lastRun: r.timestamp("last_run"), result: r.choice("result"),
            duration: r.duration("duration"), restored: r.size("restored"), labels: r.labels(), origin: r.origin)
        if let e = t.every, e.seconds == 0, let n = r.value("every") { ctx.error(n, Messages.invalidValue("0s", key: "every", in: r.what, reason: "a restore test interval must be greater than zero")) }
        var test = t
        if case .scalar(let sc)? = r.value("targets") {
            switch sc.string {
            case "all": test.targets = .all
            case "rotate": test.targets = .rotate
            default: if let n = r.value("targets") { ctx.error(n, Messages.invalidValue(sc.string, key: "targets", in: r.what, reason: "give 'all', 'rotate' or a list of the job's targets")) }
            }
        } else if let list = r.idList("targets") {
            test.targets = .only(list)
        }
        r.objects("corrective_actions", item: { "corrective action #\($0 + 1) of \(r.what)" },
                  notAList: { Messages.expected("a list of corrective actions", for: "corrective_actions", in: r.what, found: $0.shapeDescription) }) { c in
            let opened = c.timestamp("opened", required: true), action = c.string("action", required: true).map(Redaction.text)
            let owner = c.string("owner").map(Redaction.text), due = c.timestamp("due"), closed = c.timestamp("closed")
            if let opened, let closed, closed < opened, let n = c.value("closed") {
                ctx.error(n, Messages.invalidValue(closed.description, key: "closed", in: c.what, reason: "an action cannot be closed before it was opened (\(opened))"))
            }
            c.finish(allowed: ["opened", "action", "owner", "due", "closed"])
            if let opened, let action { test.correctiveActions.append(CorrectiveAction(opened: opened, action: action, owner: owner, due: due, closed: closed)) }
        }
        r.finish(allowed: ["id", "job", "asset", "scope", "every", "last_run", "result", "duration", "restored", "labels", "targets", "corrective_actions"])
        guard id != nil else { return }
        restoreTests.append(test)
    }

    mutating func readWaiver(_ r: ObjectReader) {
        let rule = r.parsed("rule", required: true, shape: "a rule id", Identifier.validateRule)
        let subject = r.string("subject", required: true)
        if let subject { r.note("subject", value: subject, at: r.value("subject")) }
        if let rule, let subject { r.what = "waiver for \(rule) on '\(subject)'" }
        let reason = r.string("reason", required: true).map(Redaction.text)
        let approver = r.string("approved_by", required: true).map(Redaction.text)
        let expires = r.timestamp("expires", required: true)
        let labels = r.labels()
        r.finish(allowed: ["rule", "subject", "reason", "approved_by", "expires", "labels"])
        guard let rule, let subject, let reason, let approver, let expires else { return }
        waivers.append(Waiver(rule: rule, subject: subject, reason: reason, approvedBy: approver, expires: expires, labels: labels, origin: r.origin))
    }

    // MARK: DR703

    /// Records every secret-named key with a scalar value, and whether it holds a literal (a
    /// string that is not a reference, or a number). Iterative, so nesting cannot exhaust the stack.
    mutating func scanSecrets(_ root: Node, path: [String]) {
        var stack: [(Node, [String])] = [(root, path)]
        while let (node, path) = stack.popLast() {
            switch node {
            case .mapping(let m):
                for (k, v) in m {
                    guard case .scalar(let ks) = k else { continue }
                    let p = path + [ks.string]
                    if Redaction.isSecretKey(ks.string), case .scalar(let vs) = v, !v.isNull {
                        let isRef = SecretRef.classify(vs.string) != .literal
                        let isBool = vs.style == .plain && ["true", "false"].contains(vs.string.lowercased())
                        if !isBool {
                            secrets.append(SecretKey(path: p.joined(separator: "."), location: ctx.location(v), isLiteral: !isRef))
                        }
                    } else {
                        stack.append((v, p))
                    }
                }
            case .sequence(let items):
                for (i, item) in items.enumerated().reversed() {
                    var name = String(i)
                    if case .mapping(let m) = item {
                        for (k, v) in m { if case .scalar(let ks) = k, ks.string == "id", case .scalar(let vs) = v { name = vs.string; break } }
                    }
                    stack.append((item, path + [name]))
                }
            default:
                break
            }
        }
    }
}
