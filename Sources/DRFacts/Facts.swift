import CEL
import DRInventory

/// Evidence that drplan recorded itself (runs.md). Empty until the evidence store exists;
/// where both declared and measured evidence exist, the newer wins.
public struct MeasuredEvidence: Sendable {
    public struct JobRun: Sendable {
        public var at: Timestamp
        public var status: JobStatus
        public var lastSuccess: Timestamp?
        public init(at: Timestamp, status: JobStatus, lastSuccess: Timestamp?) { self.at = at; self.status = status; self.lastSuccess = lastSuccess }
    }
    public struct TestRun: Sendable {
        public var at: Timestamp
        public var result: TestResult
        public var duration: TimeSpan?
        public var restored: Int64?
        public init(at: Timestamp, result: TestResult, duration: TimeSpan?, restored: Int64?) { self.at = at; self.result = result; self.duration = duration; self.restored = restored }
    }
    public var jobs: [String: JobRun] = [:]
    /// Per job and target (`key(job:target:)`): each copy's own evidence.
    public var targets: [String: JobRun] = [:]
    public var tests: [String: TestRun] = [:]
    /// When each host last recorded a run of any kind and outcome (fleets: a host that
    /// stopped reporting, DR607).
    public var hostLastRun: [String: Timestamp] = [:]
    /// How many runs each host recorded.
    public var hostRuns: [String: Int] = [:]

    /// Counts a run of `host` started `at`, keeping the host's latest start.
    public mutating func recordHostRun(host: String, at: Timestamp) {
        if hostLastRun[host].map({ at > $0 }) ?? true { hostLastRun[host] = at }
        hostRuns[host, default: 0] += 1
    }
    /// Jobs whose runs name their asset: their copies are judged per asset only (older runs,
    /// and a command job's, cover every asset of the job at once).
    public var jobsWithAssetRuns = Set<String>()
    /// What drplan last saw of each storage's Object Lock: read back from the bucket and from
    /// an object it wrote (`ok`), or refuted (the bucket has no lock, or ignored it).
    public struct LockCheck: Sendable {
        public var at: Timestamp
        public var ok: Bool
        public var detail: String
        public init(at: Timestamp, ok: Bool, detail: String) { self.at = at; self.ok = ok; self.detail = detail }
    }
    public var lockChecks: [String: LockCheck] = [:]
    /// A storage's repository as last measured after a backup: bytes stored and objects
    /// (files, or S3 objects) it holds.
    public struct Capacity: Sendable {
        public var at: Timestamp
        public var bytes: Int64
        public var objects: Int64
        public init(at: Timestamp, bytes: Int64, objects: Int64) { self.at = at; self.bytes = bytes; self.objects = objects }
    }
    public var capacity: [String: Capacity] = [:]
    /// Every measured repository size, oldest first: the growth behind the forecast.
    public struct SizePoint: Sendable {
        public var at: Timestamp
        public var bytes: Int64
        public init(at: Timestamp, bytes: Int64) { self.at = at; self.bytes = bytes }
    }
    public var sizeHistory: [String: [SizePoint]] = [:]
    /// A local target's filesystem as last measured at a run (statvfs).
    public struct Filesystem: Sendable {
        public var at: Timestamp
        public var free: Int64
        public var total: Int64
        public init(at: Timestamp, free: Int64, total: Int64) { self.at = at; self.free = free; self.total = total }
    }
    public var filesystems: [String: Filesystem] = [:]
    /// The restore rate the newest qualifying restore test from each storage achieved.
    public struct RestoreRate: Sendable {
        public var at: Timestamp
        public var bytesPerSecond: Double
        public var bytes: Int64
        public init(at: Timestamp, bytesPerSecond: Double, bytes: Int64) { self.at = at; self.bytesPerSecond = bytesPerSecond; self.bytes = bytes }
    }
    public var restoreRates: [String: RestoreRate] = [:]
    /// The evidence store itself, when there is one: when its log began and its oldest run.
    public struct Store: Sendable {
        public var chainStarted: Timestamp?
        public var oldestRun: Timestamp?
        public var runs: Int
        public init(chainStarted: Timestamp?, oldestRun: Timestamp?, runs: Int) { self.chainStarted = chainStarted; self.oldestRun = oldestRun; self.runs = runs }
    }
    public var store: Store?
    /// A restore test must restore at least this much for its rate to stand for the storage:
    /// below it, start-up and key derivation dominate and the rate says nothing about bulk.
    public static let minimumRateSample: Int64 = 64 << 20
    public init() {}

    /// Keeps the newest check of each storage.
    public mutating func recordLockCheck(storage: String, _ check: LockCheck) {
        if lockChecks[storage].map({ check.at >= $0.at }) ?? true { lockChecks[storage] = check }
    }

    public static func key(job: String, target: String, asset: String? = nil) -> String {
        job + "\u{1F}" + target + (asset.map { "\u{1F}" + $0 } ?? "")
    }

    /// Folds one finished backup run of `job` to `target` into the evidence: the newest run
    /// sets the status, and the newest success is kept whatever came after it.
    /// A run of one asset is also recorded under (job, target, asset), so that each asset's
    /// copy is judged on its own runs.
    /// Per job and target (`key(job:target:)`): the last restore test run from that copy, and
    /// its last pass. Only measured runs name the copy they restored from.
    public var restoredTargets: [String: JobRun] = [:]
    /// Jobs with at least one measured restore-test run.
    public var jobsWithRestoreRuns = Set<String>()

    /// Records a restore test run of `job`'s copy on `target`.
    public mutating func recordRestore(job: String, target: String, at: Timestamp, success: Bool) {
        jobsWithRestoreRuns.insert(job)
        Self.merge(&restoredTargets[Self.key(job: job, target: target)], at: at, success: success)
    }

    public mutating func record(job: String, target: String?, asset: String? = nil, at: Timestamp, success: Bool) {
        Self.merge(&jobs[job], at: at, success: success)
        guard let target else { return }
        Self.merge(&targets[Self.key(job: job, target: target)], at: at, success: success)
        if let asset {
            jobsWithAssetRuns.insert(job)
            Self.merge(&targets[Self.key(job: job, target: target, asset: asset)], at: at, success: success)
        }
    }

    static func merge(_ slot: inout JobRun?, at: Timestamp, success: Bool) {
        let lastSuccess = success ? max(at, slot?.lastSuccess ?? at) : slot?.lastSuccess
        if slot.map({ at >= $0.at }) ?? true {
            slot = JobRun(at: at, status: success ? .success : .failed, lastSuccess: lastSuccess)
        } else if let p = slot {
            slot = JobRun(at: p.at, status: p.status, lastSuccess: lastSuccess)
        }
    }
}

/// Facts derived from an inventory as of one instant, in the expression language's value
/// model: what `drplan facts` prints and what policies read. Each list holds maps in inventory order.
public struct Facts: Sendable {
    public var asOf: Timestamp
    public var organization: String?
    public var policy: Value
    public var sites: [Value]
    public var storage: [Value]
    public var assets: [Value]
    public var jobs: [Value]
    public var restoreTests: [Value]
    public var waivers: [Value]
    /// Secret-named keys (DR703's subjects): `{id, path, key, literal}`, never the value.
    public var documents: [Value]
    /// The evidence store (DR910's subject), when one was read or `evidence.first_run` says
    /// one should exist: `{id, chain_started, oldest_run, runs, first_run, retention}`.
    public var evidence: [Value] = []
    /// The DR plan's governance (DR802–DR804's subject): always one, declared or not.
    public var plan: [Value] = []

    /// The whole document, as `drplan facts` prints it.
    public var document: Value {
        .object([
            ("as_of", .timestamp(asOf)), ("organization", organization.map(Value.string) ?? .null), ("policy", policy),
            ("sites", .list(sites)), ("storage", .list(storage)), ("assets", .list(assets)), ("jobs", .list(jobs)),
            ("restore_tests", .list(restoreTests)), ("waivers", .list(waivers)), ("documents", .list(documents)),
            ("evidence", .list(evidence)), ("plan", .list(plan)),
        ])
    }

    /// What expressions see as `inventory`: every list, plus `by_id` (every object with an id)
    /// so that rules look objects up in constant time instead of filtering lists.
    public var inventoryValue: Value {
        var byId = OrderedMap()
        for list in [sites, storage, assets, jobs, restoreTests] {
            for o in list { if case .string(let id)? = o["id"], byId[.string(id)] == nil { byId[.string(id)] = o } }
        }
        return .object([
            ("organization", organization.map(Value.string) ?? .null),
            ("sites", .list(sites)), ("storage", .list(storage)), ("assets", .list(assets)), ("jobs", .list(jobs)),
            ("restore_tests", .list(restoreTests)), ("waivers", .list(waivers)), ("documents", .list(documents)),
            ("by_id", .map(byId)),
        ])
    }
}

extension Value {
    /// Field access on a map value, for tests and reports.
    public subscript(field: String) -> Value? {
        if case .map(let m) = self { return m[field] }
        return nil
    }
}
