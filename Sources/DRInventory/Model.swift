import CEL
import Foundation
/// The inventory model (inventory-v1): what the loader produces once a file validates.
/// Defaults from the spec are applied here, so later layers never guess.

public enum SiteKind: String, CaseIterable, Sendable { case datacenter, office, cloudRegion = "cloud-region", colo, home, vault }
public enum StorageKind: String, CaseIterable, Sendable { case nas, das, san, disk, removable, tape, cloudObject = "cloud-object", optical }
public enum Media: String, CaseIterable, Sendable, Comparable {
    case disk, removable, tape, object, optical
    public static func < (a: Media, b: Media) -> Bool { a.rawValue < b.rawValue }
}
public enum AssetKind: String, CaseIterable, Sendable { case database, fileStore = "file-store", server, vm, endpoint, application, saas }
public enum Tier: String, CaseIterable, Sendable {
    case critical, high, medium, low
    /// `critical` or `high`: the rules' "tier ≥ high".
    public var isHighOrAbove: Bool { self == .critical || self == .high }
}
public enum JobType: String, CaseIterable, Sendable {
    case full, incremental, differential, snapshot, logShipping = "log-shipping", mirror, replica
    /// Mirrors and replicas overwrite in place, so they keep no point in time.
    public var isVersioned: Bool { self != .mirror && self != .replica }
}
public enum Engine: String, CaseIterable, Sendable { case builtin, restic, rsync, sqlite, pgDump = "pg_dump", command }
public enum TestScope: String, CaseIterable, Sendable { case sample, full, failover }
public enum TestResult: String, CaseIterable, Sendable { case pass, fail }
public enum JobStatus: String, CaseIterable, Sendable { case success, failed }
public enum BackupRequirement: String, CaseIterable, Sendable { case required, none }
public enum Severity: String, CaseIterable, Sendable, Comparable {
    case critical, high, medium, low, info
    public var rank: Int { Severity.allCases.count - (Severity.allCases.firstIndex(of: self) ?? 0) }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}
public enum Framework: String, CaseIterable, Sendable {
    case gdpr, hipaa, iso27001, nist80053 = "nist-800-53", soc2, dora, pciDss = "pci-dss"
}

extension StorageKind {
    /// The media a storage kind implies when `media` is not given.
    public var defaultMedia: Media {
        switch self {
        case .nas, .das, .san, .disk: return .disk
        case .removable: return .removable
        case .tape: return .tape
        case .cloudObject: return .object
        case .optical: return .optical
        }
    }
}

/// Where an object and each of its keys were written, for messages and report annotations.
public struct Origin: Sendable, Hashable {
    public var location: SourceLocation
    public var keys: [String: SourceLocation]
    /// Positions of scalar values inside lists and nested maps, keyed by "key/value".
    public var values: [String: SourceLocation]
    public init(location: SourceLocation, keys: [String: SourceLocation] = [:], values: [String: SourceLocation] = [:]) {
        self.location = location
        self.keys = keys
        self.values = values
    }
    /// The key's own position, or the object's when the key was not written.
    public func of(_ key: String) -> SourceLocation { keys[key] ?? location }
    /// Where `value` was written under `key` (a list item, say), else the key's position.
    public func of(_ key: String, value: String) -> SourceLocation { values[key + "/" + value] ?? of(key) }
}

public struct RetentionBounds: Sendable, Hashable {
    public var min: TimeSpan?
    public var max: TimeSpan?
    public init(min: TimeSpan? = nil, max: TimeSpan? = nil) { self.min = min; self.max = max }
}

public struct Policy: Sendable {
    public var frameworks: [Framework] = Framework.allCases
    /// What evaluating one rule for one subject may cost (`policy.limits: {steps, memory}`).
    public var evalLimits = EvalLimits.default
    public var failOn: Severity = .high
    public var restoreTestEvery: TimeSpan = .days(90)
    public var minRecoveryWindow: TimeSpan = .days(35)
    public var capacityThreshold: Double = 0.8
    public var retention: [(dataClass: String, bounds: RetentionBounds)] = []
    public var restoreRates: [Media: Int64] = [:]
    /// How long evidence is kept (`policy.evidence_retention`): six years by default, after
    /// HIPAA 164.316(b)(2)(i). drplan itself never deletes evidence.
    public var evidenceRetention: TimeSpan = .days(6 * 365)
    /// How far apart, in metres, two sites in the same region must be (by their `location`)
    /// to count as separate: 50 km by default, after ISO/IEC 27002 8.13's "sufficient distance".
    public var minSiteDistance: Double = 50_000
    /// How long ransomware may sit unnoticed before it strikes (`policy.ransomware_dwell`):
    /// an Object Lock shorter than this protects nothing it needs to.
    public var ransomwareDwell: TimeSpan = .days(30)
    public var origin: Origin?
    public init() {}

    /// The restore rates rules.md gives when neither the storage nor the policy sets one.
    public static let defaultRestoreRates: [Media: Int64] = [
        .disk: 200_000_000, .removable: 100_000_000, .tape: 150_000_000, .object: 50_000_000, .optical: 20_000_000,
    ]
    public func restoreRate(for media: Media) -> Int64 { restoreRates[media] ?? Policy.defaultRestoreRates[media] ?? 1 }
}

/// How often removable media are swapped, and whether they are offline in between.
public struct Rotation: Sendable, Hashable {
    public var every: TimeSpan
    public var offline: Bool
    public init(every: TimeSpan, offline: Bool) { self.every = every; self.offline = offline }
}

/// The top-level `plan:` section: the DR plan's governance (who approved it and when, how
/// often it is reviewed, whom to call, and how the business runs in emergency mode).
public struct PlanGovernance: Sendable {
    public struct Contact: Sendable {
        public var name: String
        public var role: String?
        /// Reachable when the organization's own systems are down (a phone, a personal address).
        public var outOfBand: Bool
    }
    public var approvedBy: String?
    public var approvedOn: Timestamp?
    public var reviewEvery: TimeSpan = .days(365)
    public var contacts: [Contact] = []
    public var emergencyMode: String?
    public var origin: Origin?
    public init() {}
}

/// The top-level `evidence:` section: how evidence is anchored.
public struct EvidenceSettings: Sendable {
    /// `signing_key: file:…` (or `env:…`): the Ed25519 private key that signs checkpoints
    /// after each run (`drplan evidence keygen` writes one).
    public var signingKey: SecretRef?
    /// `first_run`: when the organization first recorded evidence; a store whose log starts
    /// later has been reset or replaced (rule DR910).
    public var firstRun: Timestamp?
    /// `url`: where the evidence store is, a file path (relative to the inventory) or a
    /// `postgresql://USER@HOST:PORT/DB?sslmode=…` URL without a password (`--evidence` wins).
    public var url: String?
    /// `password`: the PostgreSQL password, as an `env:` or `file:` reference.
    public var password: SecretRef?
    public var origin: Origin?
    public init() {}
}

public struct Site: Sendable {
    public var id: String
    public var kind: SiteKind
    public var region: String?
    public var name: String?
    public var labels: [(String, String)]
    public var origin: Origin
    /// `location: {lat, lon}`, for telling sites in one region apart by distance.
    public var location: GeoPoint? = nil
    /// `provider`: who runs the site (a cloud provider, a colocation company).
    public var provider: String? = nil
}

/// A point on the Earth, in degrees.
public struct GeoPoint: Sendable, Hashable {
    public var lat: Double
    public var lon: Double
    public init(lat: Double, lon: Double) { self.lat = lat; self.lon = lon }

    /// Great-circle distance in metres (haversine, mean Earth radius).
    public func distance(to o: GeoPoint) -> Double {
        let r = 6_371_008.8, rad = Double.pi / 180
        let dLat = (o.lat - lat) * rad, dLon = (o.lon - lon) * rad
        let a = sin(dLat / 2) * sin(dLat / 2) + cos(lat * rad) * cos(o.lat * rad) * sin(dLon / 2) * sin(dLon / 2)
        return 2 * r * asin(min(1, a.squareRoot()))
    }

    static func degrees(_ t: String, limit: Double) throws(ScalarError) -> Double {
        guard let v = Double(t.trimmingCharacters(in: .whitespaces)), v.isFinite, abs(v) <= limit else {
            throw ScalarError("expected degrees between -\(Int(limit)) and \(Int(limit)), such as 51.5")
        }
        return v
    }

    /// "50km", "500 m": metres.
    public static func parseDistance(_ text: String) throws(ScalarError) -> Double {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        for (unit, factor) in [("km", 1000.0), ("m", 1.0)] where t.hasSuffix(unit) {
            if let v = Double(t.dropLast(unit.count).trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0 { return v * factor }
        }
        throw ScalarError("expected a distance in km or m, such as 50km")
    }
}

extension Storage {
    /// The rate restores from this storage run at: its own `restore_rate`, else the policy's
    /// or the default rate of its media (rules.md).
    public func effectiveRestoreRate(_ policy: Policy) -> Int64 { restoreRate ?? policy.restoreRate(for: media) }
}

public struct StorageEncryption: Sendable {
    public var atRest = false
    public var inTransit = false
    public var passphrase: SecretRef?
    public init() {}
}

public struct Storage: Sendable {
    public var id: String
    public var kind: StorageKind
    public var site: String
    public var media: Media
    public var immutable: Bool
    public var airGapped: Bool
    public var encryption: StorageEncryption
    public var mfaDelete: Bool
    public var networkIsolated: Bool
    /// `access.admins`: who can delete or overwrite the backups on this storage.
    public var admins: [String] = []
    /// `access.delete_requires`: what deleting takes besides those credentials (a second
    /// person, a break-glass account).
    public var deleteRequires: String? = nil
    /// `provider`: who runs the storage (else its site's provider).
    public var provider: String? = nil
    public var capacity: Int64?
    public var used: Int64?
    public var restoreRate: Int64?
    public var path: String?
    public var url: String?
    public var credentials: [(String, SecretRef)]
    public var name: String?
    public var labels: [(String, String)]
    public var origin: Origin
    /// Whether the first backup may create drplan's repository in `path` (which must exist).
    public var create = false
    /// For an `s3://` url: the endpoint (MinIO, Ceph, B2, R2…; default AWS), the region, and
    /// path-style addressing (default: on with an endpoint, off for AWS).
    public var endpoint: String? = nil
    public var region: String? = nil
    public var pathStyle: Bool? = nil
    /// Allows a plain-http endpoint that is not on loopback.
    public var insecureHTTP = false
    /// S3 Object Lock: the retention every object drplan writes gets (storage `object_lock`).
    public var objectLock: ObjectLock? = nil
    /// `rotation: {every, offline}`: media taken offline between writes (a drive swapped
    /// weekly). An air gap is only plausible when no job writes the storage more often.
    public var rotation: Rotation? = nil
    /// `retrieval`: how long it takes to bring the media back before a restore can start
    /// (tapes in a vault, a drive at someone's home). Added to every restore from it.
    public var retrieval: TimeSpan? = nil
    /// Why a copy declared immutable cannot be verified by drplan (DR104 accepts an
    /// unverified cloud copy only with this explanation).
    public var immutableReason: String? = nil

    /// Declared immutable: `immutable: true`, or an Object Lock.
    public var declaresImmutable: Bool { immutable || objectLock != nil }
}

/// S3 Object Lock retention: COMPLIANCE cannot be shortened or removed by anyone, the root
/// account included; GOVERNANCE can by users with `s3:BypassGovernanceRetention`.
public struct ObjectLock: Sendable, Equatable {
    public enum Mode: String, CaseIterable, Sendable { case compliance, governance }
    public var mode: Mode
    public var days: Int
    public init(mode: Mode, days: Int) { self.mode = mode; self.days = days }
}

/// What the engines read for an asset (runs.md).
public enum AssetSource: Sendable {
    case paths([String], exclude: [String])
    case sqlite(String)
    case postgres(dsn: String, password: SecretRef?)
    case command(String)
}

public struct Asset: Sendable {
    public var id: String
    public var kind: AssetKind
    public var site: String
    public var media: Media
    public var tier: Tier
    public var owner: String?
    public var name: String?
    public var size: Int64?
    public var dataClasses: [String]
    public var rpo: TimeSpan?
    public var rto: TimeSpan?
    public var dependsOn: [String]
    public var retention: RetentionBounds
    public var backup: BackupRequirement
    public var reason: String?
    public var source: AssetSource?
    public var labels: [(String, String)]
    public var origin: Origin
    /// `admins`: who administers the system in production (whose credentials ransomware or a
    /// rogue insider would hold).
    public var admins: [String] = []
    /// `host`: the machine that backs this asset up (fleets: `drplan backup` runs the jobs of
    /// this host's assets; nil: any host).
    public var host: String?
}

public struct JobRetention: Sendable, Hashable {
    public var keepWithin: TimeSpan?
    public var keepLast: Int?
    public var keepHourly: Int?
    public var keepDaily: Int?
    public var keepWeekly: Int?
    public var keepMonthly: Int?
    public var keepYearly: Int?
    public init() {}
}

public struct JobEncryption: Sendable {
    public var atRest = false
    public var inTransit = false
    public var keyStorage: String?
    public var passphrase: SecretRef?
    /// `key_escrow`: the storage or site where a copy of the key is kept for recovery.
    public var keyEscrow: String?
    public init() {}
}

public struct Monitoring: Sendable {
    public var alertOnFailure: [String] = []
    public var maxAge: TimeSpan?
    /// `notify: [{url, on}]`; `alert_on_failure` entries are here too, with `on: [failure]`.
    public var notify: [Notify] = []
    /// `metrics_file`: the Prometheus textfile `drplan backup` rewrites after its runs.
    public var metricsFile: String?
    public init() {}
}

/// One notification target of a job (docs/monitoring.md).
public struct Notify: Sendable, Equatable {
    public enum Event: String, CaseIterable, Sendable { case start, success, failure, missed }
    public var url: String
    public var on: [Event]
    public init(url: String, on: [Event]) { self.url = url; self.on = on }

    /// The URL schemes drplan sends to, with what each sends.
    public static let schemes = ["https://", "http://", "file:", "exec:", "mailto:", "hc+https://", "hc+http://", "ntfy://", "ntfy+http://",
                                 "slack+https://", "teams+https://", "discord+https://"]

    /// Events a URL gets when `on` is not given: a health-check ping wants every run, the rest
    /// only failures.
    public static func defaultEvents(_ url: String) -> [Event] { url.hasPrefix("hc+") ? [.start, .success, .failure] : [.failure] }
}

public struct Job: Sendable {
    public var id: String
    public var assets: [String]
    public var type: JobType
    /// Read in `timezone` (the loader applies the inventory's zone where the job names none).
    public var schedule: Schedule
    public var scheduleText: String
    /// The zone the schedule is read in: the job's `timezone:`, else the inventory's; nil is UTC.
    public var timezone: ZoneRules?
    public var lag: TimeSpan
    public var engine: Engine
    public var targets: [String]
    public var retention: JobRetention?
    public var encryption: JobEncryption
    public var monitoring: Monitoring
    public var lastSuccess: Timestamp?
    public var lastStatus: JobStatus?
    /// Engine options, kept as written (strings, numbers, booleans, lists, maps); secret-like keys are redacted on output.
    public var options: YAMLValue?
    public var labels: [(String, String)]
    public var origin: Origin
    /// The engine that writes a target, where it is not the job's own `engine`
    /// (`target_engines: {nas: rsync}`); `external` means drplan does not write it.
    public var targetEngines: [String: TargetEngine] = [:]
    /// A source that reads as empty (or under 1% of the asset's declared size) is accepted.
    public var allowEmpty = false
    /// Options of the command engine's commands whose value is secret (`--license`,
    /// `--api-key`): the value after each is masked wherever a command is shown or stored,
    /// beside the ones `Redaction` always masks (`--password`, `-p`, …).
    public var secretArgs: [String] = []
    /// `host`: the machine that runs this job (else the host of its assets, if they name one).
    public var host: String?
}

/// Who writes one target of a job.
public enum TargetEngine: Sendable, Equatable {
    case engine(Engine)
    /// Written by something outside drplan (a tape rotation, a NAS's own replication); drplan
    /// records no runs for it and counts its copy as declared, not measured.
    case external
}

extension Job {
    /// The engine that writes `target`, or nil when it is written outside drplan.
    public func engine(for target: String) -> Engine? {
        switch targetEngines[target] {
        case .engine(let e)?: return e
        case .external?: return nil
        case nil: return engine
        }
    }
}

/// Which of its job's targets a restore test restores from.
public enum RestoreTargets: Sendable, Equatable {
    /// One target per run, in turn, so that every copy is tested over time (the default).
    case rotate
    /// Every target, on every run.
    case all
    /// These targets, on every run.
    case only([String])
}

public struct RestoreTest: Sendable {
    public var id: String
    public var job: String
    public var asset: String?
    public var scope: TestScope
    /// As written; `nil` means `policy.restore_test_every` (see `interval(policy:)`).
    public var every: TimeSpan?
    public var lastRun: Timestamp?
    public var result: TestResult?
    public var duration: TimeSpan?
    public var restored: Int64?
    public var labels: [(String, String)]
    public var origin: Origin
    public var targets: RestoreTargets = .rotate
    /// What was done about failed runs, as the test's owner records it (NIST CP-4 c).
    public var correctiveActions: [CorrectiveAction] = []
}

/// One corrective action after a restore test: when it was opened, what it is, who owns it,
/// when it is due and when it was closed.
public struct CorrectiveAction: Sendable {
    public var opened: Timestamp
    public var action: String
    public var owner: String?
    public var due: Timestamp?
    public var closed: Timestamp?

    /// Still open after its due date.
    public func isOverdue(at now: Timestamp) -> Bool { closed == nil && due.map { $0 < now } == true }
}

extension RestoreTest {
    /// How often the test must run: its own `every`, else the policy's default.
    public func interval(policy: Policy) -> TimeSpan { every ?? policy.restoreTestEvery }
}

public struct Waiver: Sendable {
    public var rule: String
    public var subject: String
    public var reason: String
    public var approvedBy: String
    public var expires: Timestamp
    public var labels: [(String, String)]
    public var origin: Origin
}

/// A free-form YAML value (engine options), with its scalars kept as text.
public indirect enum YAMLValue: Sendable {
    case scalar(String, plain: Bool)
    case null
    case list([YAMLValue])
    case map([(String, YAMLValue)])
}

/// A secret-named key anywhere in the inventory (rule DR703's subjects). Only its path, place
/// and whether it holds a literal are kept, never the value.
public struct SecretKey: Sendable, Hashable {
    /// Dotted path, list items named by their `id` or index: `storage.s3-eu.credentials.secret_key`.
    public var path: String
    public var location: SourceLocation
    /// True when the value is a literal string or a number, not an `env:`/`file:`/`vault:` reference.
    public var isLiteral: Bool
}

public struct InventoryFile: Sendable {
    /// The path as the user gave it (or as an include resolved it), for messages and reports.
    public var path: String
    /// The exact bytes read, so reports can hash what was evaluated.
    public var bytes: [UInt8]
}

/// A whole, validated inventory: the merge of every file that was read.
public struct Inventory: Sendable {
    public var files: [InventoryFile] = []
    public var organization: String?
    /// `timezone:`: the zone every job's cron schedule is read in unless the job names its
    /// own; nil is UTC.
    public var timezone: ZoneRules?
    public var policy = Policy()
    public var evidence = EvidenceSettings()
    /// nil: the inventory declares no `plan:` section.
    public var plan: PlanGovernance?
    public var sites: [Site] = []
    public var storage: [Storage] = []
    public var assets: [Asset] = []
    public var jobs: [Job] = []
    public var restoreTests: [RestoreTest] = []
    public var waivers: [Waiver] = []
    public var secretKeys: [SecretKey] = []
    public init() {}

    /// The secret keys that hold literals (DR703 findings).
    public var plaintextSecrets: [SecretKey] { secretKeys.filter(\.isLiteral) }
}
