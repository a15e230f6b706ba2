import DRFacts
import DRInventory
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs backups, restores, restore tests and repository maintenance as the inventory
/// declares them, recording every run.
///
/// One loop drives every engine: begin → stage the source → store it → finish → alert. What
/// an engine is and where it writes is decided once, in `engine(for:target:purpose:)`; the
/// loop never asks which engine it has.
public struct Runner {
    public let inventory: Inventory
    /// Relative paths in the inventory (sources, storage paths, secret files) are relative to this.
    public let baseDirectory: String
    public let store: EvidenceStore
    /// One line per event, for the terminal.
    public var log: @Sendable (String) -> Void = { _ in }
    /// Per-path detail (`-v`): each special file skipped.
    public var verbose = false
    /// Progress of the engine's current backup or restore.
    public var progress: ProgressSink?
    /// How long to wait for a conflicting repository lock.
    public var lockWait: TimeInterval = 0
    /// Retries of a store step that failed with a non-permanent (I/O) error.
    public var retry = RetryPolicy()

    public init(inventory: Inventory, baseDirectory: String, store: EvidenceStore) {
        self.inventory = inventory
        self.baseDirectory = baseDirectory
        self.store = store
    }

    /// Absolute, because engines may run tools from another working directory; `~` is the home directory.
    public func resolve(_ path: String) -> String {
        let p = expandTilde(path)
        if p.hasPrefix("/") { return p }
        let base = baseDirectory.hasPrefix("/") ? baseDirectory : FileManager.default.currentDirectoryPath + "/" + baseDirectory
        return URL(fileURLWithPath: base + "/" + p).standardizedFileURL.path
    }

    /// Why an engine is being opened: only a backup may create a repository, and only where
    /// the storage says `create: true`.
    public enum Purpose: Sendable { case backup, read, maintain }

    func storage(_ id: String) throws(RepositoryError) -> Storage {
        guard let s = inventory.storage.first(where: { $0.id == id }) else { throw RepositoryError(.config, "there is no storage '\(id)' in the inventory") }
        return s
    }

    /// The storage's `path`, which must exist: a missing mount point is an unplugged drive or
    /// an unmounted share, and writing into the empty folder beneath it would put the
    /// "backup" on the internal disk.
    func mountedPath(_ s: Storage) throws(RepositoryError) -> String {
        guard let path = s.path else { throw RepositoryError(.config, RunMessages.noPath(s.id, url: s.url)) }
        let full = resolve(path)
        var st = stat()
        guard stat(full, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw RepositoryError(.missing, RunMessages.notMounted(s.id, full)) }
        return full
    }

    /// The engine that writes (or reads) `job`'s copy on `target`. Fails loudly for a target
    /// the engine cannot reach: no `path`, a path that is not mounted, a `url` the engine
    /// cannot write, or no repository where a read expects one.
    public func engine(for job: Job, target: String, purpose: Purpose) throws(RepositoryError) -> any BackupEngine {
        let s = try storage(target)
        guard let kind = job.engine(for: target) else { throw RepositoryError(.config, RunMessages.writtenOutside(job.id, target)) }
        let passphraseRef = job.encryption.passphrase ?? s.encryption.passphrase
        switch kind {
        case .restic:
            guard let ref = passphraseRef else { throw RepositoryError(.passphraseRequired, RunMessages.resticNeedsPassword(job.id)) }
            let password: ResticEngine.Password
            if case .file(let file) = ref { password = .file(resolve(file)) } else { password = .value(try Secrets.resolve(ref, relativeTo: baseDirectory)) }
            let location: String
            if let url = s.url { location = url } else { location = try mountedPath(s) + "/drplan-restic" }
            var credentials: [String: String] = [:]
            for (key, ref) in s.credentials { credentials[ResticEngine.environmentName(key)] = try Secrets.resolve(ref, relativeTo: baseDirectory) }
            return try ResticEngine(repository: location, password: password, progress: progress, credentials: credentials, create: purpose == .backup && s.create)
        case .rsync:
            var e = try RsyncEngine(root: URL(fileURLWithPath: try mountedPath(s)).appendingPathComponent("drplan-rsync").appendingPathComponent(job.id))
            e.progress = progress
            return e
        case .builtin, .sqlite, .pgDump:
            if passphraseRef == nil && job.encryption.atRest {
                throw RepositoryError(.passphraseRequired, "job '\(job.id)' asks for encryption at rest but names no 'encryption.passphrase' secret")
            }
            let passphrase = try secret(passphraseRef)
            let storage = try repositoryStorage(s)
            var e: BuiltinEngine
            do { e = try BuiltinEngine.open(storage: storage, passphrase: passphrase, create: purpose == .backup && s.create) } catch where error.kind == .notARepository {
                throw RepositoryError(.notARepository, RunMessages.noRepository(s.id, storage.location))
            }
            e.progress = progress
            e.log = log
            e.lockWait = lockWait
            return e
        case .command:
            throw RepositoryError(.config, "job '\(job.id)' uses the command engine, which has no repository drplan can read; use its own tools")
        }
    }

    /// Where drplan's own repository on `s` lives: `<path>/drplan-repository` on a mounted
    /// folder, or the `s3://` url's bucket and prefix.
    func repositoryStorage(_ s: Storage) throws(RepositoryError) -> any RepositoryStorage {
        if s.path == nil, let url = s.url, url.hasPrefix("s3://") {
            let location = try S3Location(url: url, endpoint: s.endpoint, region: s.region ?? AWSConfig.region(), pathStyle: s.pathStyle, insecureHTTP: s.insecureHTTP)
            let storage = S3Storage(location, credentials: try s3Credentials(s))
            storage.objectLock = s.objectLock
            return storage
        }
        return LocalStorage(root: try mountedPath(s) + "/drplan-repository")
    }

    /// Credentials for an S3 storage, in the order AWS tools use: the storage's `credentials:`
    /// map, then AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then the
    /// AWS_PROFILE (or `default`) profile of ~/.aws/credentials.
    func s3Credentials(_ s: Storage) throws(RepositoryError) -> AWSCredentials {
        var map: [String: String] = [:]
        for (k, ref) in s.credentials { map[k] = try Secrets.resolve(ref, relativeTo: baseDirectory) }
        if let id = map["access_key_id"], let secret = map["secret_access_key"] {
            return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: map["session_token"])
        }
        if let c = AWSConfig.fromEnvironment() { return c }
        if let c = try AWSConfig.fromProfile() { return c }
        throw RepositoryError(.config, "storage '\(s.id)' has no S3 credentials: give 'credentials: {access_key_id: env:…, secret_access_key: env:…}', or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE)")
    }

    /// The value of an optional secret reference.
    func secret(_ ref: SecretRef?) throws(RepositoryError) -> String? {
        try ref.map { (r: SecretRef) throws(RepositoryError) -> String in try Secrets.resolve(r, relativeTo: baseDirectory) }
    }

    /// Sends the alerts that runs killed mid-way still owe (runs.md: a failed *or interrupted*
    /// run notifies). Called before new runs start, whichever command first found them.
    public func alertInterruptions() throws(EvidenceError) {
        for run in try store.interruptionsToAlert() {
            if let job = inventory.jobs.first(where: { $0.id == run.job }) { alert(run, job) }
            try store.markAlerted(run.id)
        }
    }

    /// The jobs `drplan backup` runs with no names given: those with a source and at least
    /// one target drplan writes.
    public static func runnableJobs(_ inventory: Inventory) -> [Job] {
        let assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return inventory.jobs.filter { j in hasSource(j, assets) && j.targets.contains { j.engine(for: $0) != nil } }
    }

    /// The jobs `backup` runs when none is named: every job with something to back up.
    public static func backupCandidates(_ inventory: Inventory) -> [Job] {
        let assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return inventory.jobs.filter { hasSource($0, assets) }
    }

    /// Whether a job has something to back up: a source on an asset, or a command.
    static func hasSource(_ j: Job, _ assets: [String: Asset]) -> Bool {
        j.engine.runsUserCommands ? CommandEngine.option(j, "backup") != nil : j.assets.contains { assets[$0]?.source != nil }
    }

    /// Backs up `jobs` (every job with a source when empty): one run per job, asset and
    /// target, so every declared copy is either made or recorded as failed. A target written
    /// outside drplan (`target_engines: {X: external}`) gets no run and a line saying so.
    /// A lock held by another run of the job throws.
    ///
    /// With `due`, only the units whose schedule has fired since their last successful run
    /// (or that never succeeded) run, as anacron does: one frequent timer then serves a
    /// machine that sleeps through the scheduled time.
    public func backup(jobs names: [String], due: Date? = nil) throws(EvidenceError) -> [RunRecord] {
        let assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let jobs = names.isEmpty ? Self.backupCandidates(inventory) : names.compactMap { n in inventory.jobs.first { $0.id == n } }
        try alertInterruptions()
        var records: [RunRecord] = []
        for job in jobs {
            let successes = try due.map { _ throws(EvidenceError) in try lastSuccesses(job: job.id) } ?? [:]
            let before = records.count
            var pinged = false
            for target in job.targets {
                guard let kind = job.engine(for: target) else {
                    log("backup \(job.id) → \(target): not written by drplan (target_engines: external); its copy counts as declared, not measured")
                    continue
                }
                // A command job's command writes every asset at once.
                let units: [String?] = kind.runsUserCommands ? [nil] : job.assets.map { Optional($0) }
                for asset in units {
                    if let now = due {
                        let last = successes[UnitKey(target: target, asset: asset)]
                        let label = "backup \(job.id)\(asset.map { "/\($0)" } ?? "") → \(target)"
                        switch Due.state(job.schedule, lastSuccess: last, now: now) {
                        case .due:
                            if let missed = Due.missed(job, lastSuccess: last, now: now) {
                                log("\(label): \(missed) scheduled run\(missed == 1 ? "" : "s") missed since the last success at \(last.map(EvidenceStore.iso) ?? "never")")
                                var r = RunRecord(kind: .backup, job: job.id, asset: asset, engine: kind.rawValue, storage: target)
                                r.status = .failed
                                let message = Notifications.Message(event: .missed, run: r, missedRuns: missed, lastSuccess: last)
                                notify(message, job)
                                notify(message, job, pings: true)
                            }
                        case .notDue(let next):
                            log("\(label): not due (last success \(last.map(EvidenceStore.iso) ?? "never"), next run due \(EvidenceStore.iso(next)))")
                            continue
                        case .continuous:
                            log("\(label): not run by --due: the job is continuous (replication runs it, not a timer)")
                            continue
                        }
                    }
                    if !pinged {
                        pinged = true
                        notify(Notifications.Message(event: .start, run: RunRecord(kind: .backup, job: job.id, engine: kind.rawValue, storage: nil)), job, pings: true)
                    }
                    records.append(try backupOne(job, asset: asset, target: target, engine: kind, assets: assets))
                }
            }
            // One verdict per job for health checks: success only when every run succeeded.
            let mine = records[before...]
            if let outcome = mine.first(where: { $0.status != .success }) ?? mine.last {
                notify(Notifications.Message(event: outcome.status == .success ? .success : .failure, run: outcome), job, pings: true)
            }
        }
        return records
    }

    struct UnitKey: Hashable { var target: String?; var asset: String? }

    /// The start of each unit's last successful backup of a job.
    func lastSuccesses(job: String) throws(EvidenceError) -> [UnitKey: Date] {
        var out: [UnitKey: Date] = [:]
        for r in try store.runs(job: job) where r.kind == .backup && r.status == .success {
            let k = UnitKey(target: r.storage, asset: r.asset)
            if out[k].map({ $0 < r.startedAt }) ?? true { out[k] = r.startedAt }
        }
        return out
    }

    func backupOne(_ job: Job, asset: String?, target: String, engine kind: Engine, assets: [String: Asset]) throws(EvidenceError) -> RunRecord {
        var run = try store.begin(RunRecord(kind: .backup, job: job.id, asset: asset, engine: kind.rawValue, storage: target))
        let label = "backup \(job.id)\(asset.map { "/\($0)" } ?? "") → \(target)"
        let interruption = RunInterruption.register(store: store, run: run)
        defer { RunInterruption.unregister(interruption) }
        progress?(.started(label))
        log("\(label): started (run \(run.id.prefix(8)))")
        notify(Notifications.Message(event: .start, run: run), job)
        let started = Date()
        do throws(RepositoryError) {
            if kind.runsUserCommands {
                guard let cmd = CommandEngine.option(job, "backup") else { throw RepositoryError(.config, "job '\(job.id)' uses the command engine but has no 'options.backup'") }
                run.output = try CommandEngine.run(cmd, cwd: baseDirectory, env: commandEnvironment(job, try storage(target)), secretArgs: job.secretArgs)
                run.status = .success
                log("\(label): success (command)")
            } else {
                guard let asset, let a = assets[asset] else { throw RepositoryError(.config, "job '\(job.id)' names the asset '\(asset ?? "")', which has no entry") }
                // Before the engine opens (and perhaps creates) the repository: every object it
                // writes there asks for a retention the bucket must be able to keep.
                let locked = try objectLockStorage(target, engine: kind)
                if let locked {
                    try recordLockCheck(target, run: run.id) { () throws(RepositoryError) -> String in
                        let b = try locked.requireObjectLock(storage: target)
                        return "bucket '\(locked.s3.bucket)' has Object Lock enabled" + (b.defaultMode.map { ", default retention \($0) \(b.defaultDays ?? 0) days" } ?? "")
                    }
                }
                let engine = try engine(for: job, target: target, purpose: .backup)
                let staged = try stage(a, for: kind, job: job, runId: run.id)
                defer { staged.cleanup() }
                try checkNotEmpty(staged, asset: a, job: job)
                let b = try retry.run(label, log: log) { () throws(RepositoryError) in try engine.backup(paths: staged.paths, exclude: staged.exclude, tags: [job.id, asset]) }
                run.bytesRead = b.bytesRead; run.bytesWritten = b.bytesWritten; run.files = Int64(b.files)
                run.snapshot = b.snapshot
                if let locked {
                    // The proof: an object this backup wrote, read back with its retention.
                    try recordLockCheck(target, run: run.id) { () throws(RepositoryError) -> String in try locked.verifyLocked("snapshots/" + b.snapshot, storage: target) }
                }
                if !b.skipped.isEmpty {
                    run.output = "skipped \(b.skipped.count) special file(s) (sockets, devices, FIFOs), which hold no data to back up: " + b.skipped.prefix(50).map { RunMessages.quoted($0) }.joined(separator: ", ")
                    log("\(label): skipped \(b.skipped.count) special file(s) (sockets, devices, FIFOs)" + (verbose ? "" : "; -v lists them"))
                    if verbose { for p in b.skipped { log("  skipped \(RunMessages.quoted(p))") } }
                }
                if let builtin = engine as? BuiltinEngine { recordCapacity(builtin.repository, target: target, run: run.id, label: label) }
                recordFilesystem(target, run: run.id, label: label)
                for w in try vanishedSnapshots(engine, target: target) {
                    log("\(label): WARNING: \(w)")
                    run.output = ((run.output.map { $0 + "\n" }) ?? "") + "WARNING: " + w
                }
                run.status = .success
                log("\(label): success, \(run.files) files, \(run.bytesRead) bytes read, \(run.bytesWritten) new bytes stored in \(String(format: "%.1f", Date().timeIntervalSince(started)))s")
            }
        } catch {
            run.status = .failed
            run.error = error.message
            run.missingTool = error.kind == .missingTool
            log("\(label): FAILED: \(error.message)")
        }
        progress?(.done(label, status: run.status.rawValue, files: run.files, bytes: run.bytesRead))
        try store.finish(run)
        alert(run, job)
        return run
    }

    /// The S3 storage of a target that declares `object_lock`, or nil. Only drplan's own
    /// repository sets a retention on every object; another engine could not keep the promise.
    func objectLockStorage(_ target: String, engine kind: Engine) throws(RepositoryError) -> S3Storage? {
        let s = try storage(target)
        guard s.objectLock != nil else { return nil }
        guard kind.usesBuiltinRepository, let s3 = try repositoryStorage(s) as? S3Storage else {
            throw RepositoryError(.config, "storage '\(target)' declares object_lock, which drplan applies through its own repository (engines builtin, sqlite, pg_dump); the \(kind.rawValue) engine cannot lock what it writes: use one of those, or remove object_lock and set the bucket's default retention")
        }
        return s3
    }

    /// Measures what the repository occupies (facts: `repository_size`, `object_count`). A
    /// measurement that fails is said, not fatal: the backup itself is done and durable.
    func recordCapacity(_ repository: BuiltinRepository, target: String, run: String, label: String) {
        do {
            let u = try repository.usage()
            try store.recordStorageCheck(storage: target, kind: "capacity", ok: true, detail: "", run: run, bytes: u.bytes, objects: u.objects)
        } catch {
            log("\(label): WARNING: the repository's size could not be measured: \(error)")
        }
    }

    /// Measures the free and total space of a local target's filesystem (DR602 and the
    /// forecast use it over declared figures). Failing to measure is said, not fatal.
    func recordFilesystem(_ target: String, run: String, label: String) {
        let s: Storage
        do { s = try storage(target) } catch { return }  // the backup already reported it
        guard let path = s.path, s.url == nil else { return }
        switch FilesystemSpace.measure(resolve(path)) {
        case .success(let space):
            do { try store.recordFilesystem(storage: target, space, run: run) } catch {
                log("\(label): WARNING: the free space of \(target) could not be recorded: \(error.message)")
            }
        case .failure(let e):
            log("\(label): WARNING: \(e.message)")
        }
    }

    /// Runs one Object Lock measurement and records its outcome, success or failure, in the
    /// evidence store, so `check` sees a refuted lock as well as a verified one.
    func recordLockCheck(_ target: String, run: String, _ body: () throws(RepositoryError) -> String) throws(RepositoryError) {
        let outcome: Result<String, RepositoryError>
        do { outcome = .success(try body()) } catch { outcome = .failure(error) }
        do {
            switch outcome {
            case .success(let detail): try store.recordStorageCheck(storage: target, kind: "object_lock", ok: true, detail: detail, run: run)
            case .failure(let e): try store.recordStorageCheck(storage: target, kind: "object_lock", ok: false, detail: e.message, run: run)
            }
        } catch {
            throw RepositoryError(.io, "the Object Lock check of '\(target)' could not be recorded in the evidence store: \(error.message)")
        }
        _ = try outcome.get()
    }

    /// A source that reads as empty, or as under 1% of what the asset declares, is a source
    /// that is not there (an unmounted share, a moved folder): backing it up would store an
    /// empty snapshot and let retention age out the good ones.
    func checkNotEmpty(_ staged: StagedSource, asset: Asset, job: Job) throws(RepositoryError) {
        guard !job.allowEmpty, let declared = asset.size, declared > 0, staged.checkSize else { return }
        let found = try StagedSource.size(of: staged.paths, exclude: staged.exclude)
        if found * 100 < declared {
            throw RepositoryError(.config, RunMessages.sourceTooSmall(asset.id, found: found, declared: declared, job: job.id))
        }
    }

    /// Applies each job's retention to each target drplan writes, then removes unreferenced
    /// data (plan first; `dryRun` prints the plan). Jobs without `retention` keep everything.
    public func prune(jobs names: [String], grace: TimeInterval = 3600, dryRun: Bool = false) throws(EvidenceError) -> [RunRecord] {
        let jobs = names.isEmpty ? inventory.jobs : names.compactMap { n in inventory.jobs.first { $0.id == n } }
        var records: [RunRecord] = []
        for job in jobs {
            guard let policy = job.retention else { continue }
            for target in job.targets {
                guard let kind = job.engine(for: target), !kind.runsUserCommands else { continue }
                var run = try store.begin(RunRecord(kind: .prune, job: job.id, engine: kind.rawValue, storage: target))
                let interruption = RunInterruption.register(store: store, run: run)
                defer { RunInterruption.unregister(interruption) }
                var forgotten: [String]? = nil, repository: String? = nil
                do throws(RepositoryError) {
                    let engine = try engine(for: job, target: target, purpose: .maintain)
                    var forget = Set<String>()
                    let all = try engine.snapshots(tag: job.id)
                    for a in job.assets {
                        let snaps = all.filter { $0.tags.contains(a) }.map { (id: $0.id, time: $0.time) }
                        let keep = Retention.keep(snaps, policy: policy)
                        forget.formUnion(snaps.map(\.id).filter { !keep.contains($0) })
                    }
                    run.output = try engine.prune(forget: forget, grace: grace, dryRun: dryRun)
                    run.files = Int64(forget.count)
                    run.status = .success
                    log("prune \(job.id) on \(target): \(run.output ?? "")")
                    if !dryRun {
                        // What is gone, not what was asked: a snapshot under Object Lock stays.
                        let remaining = Set(try engine.snapshots(tag: job.id).map(\.id))
                        forgotten = forget.subtracting(remaining).sorted()
                        repository = engine.repositoryId
                    }
                } catch {
                    run.status = .failed
                    run.error = error.message
                    log("prune \(job.id) on \(target): FAILED: \(error.message)")
                }
                try store.finish(run)
                if let forgotten {
                    if let repository { try store.forgetSnapshots(repository: repository, forgotten) }
                    try store.audit("prune", ["job": job.id, "storage": target, "forgotten": forgotten.joined(separator: ",")])
                }
                records.append(run)
            }
        }
        return records
    }

    /// Snapshots the evidence saw on this target that are gone now, without a prune by drplan
    /// having removed them: one sentence each. Records the snapshots listed now.
    func vanishedSnapshots(_ engine: any BackupEngine, target: String, listed given: [EngineSnapshot]? = nil) throws(RepositoryError) -> [String] {
        guard let id = engine.repositoryId else { return [] }
        let listed: Set<String>
        if let given { listed = Set(given.map(\.id)) } else { listed = Set(try engine.snapshots(tag: nil).map(\.id)) }
        do {
            return try store.reconcileSnapshots(repository: id, storage: target, listed: listed).map {
                RunMessages.snapshotVanished($0.snapshot, target: target, since: $0.firstSeen)
            }
        } catch { throw RepositoryError(.io, error.message) }
    }

    func commandEnvironment(_ job: Job, _ storage: Storage?) -> [String: String] {
        var env = ["DRPLAN_JOB": job.id, "DRPLAN_ASSETS": job.assets.joined(separator: " ")]
        if let path = storage?.path { env["DRPLAN_STORAGE_PATH"] = resolve(path) }
        return env
    }

    /// A finished run's notifications: `success`, or `failure` for a failed or interrupted
    /// one. Only backups report success and start: a health-check ping that a restore test's
    /// success reached would say the backup ran when it did not.
    func alert(_ run: RunRecord, _ job: Job) {
        if run.status == .success && run.kind != .backup { return }
        let message = Notifications.Message(event: run.status == .success ? .success : .failure, run: run)
        notify(message, job)
        // A restore test or an interrupted run found later is not part of a backup
        // invocation's verdict; a failure still reaches the health check.
        if run.kind != .backup || run.status == .interrupted, message.event == .failure { notify(message, job, pings: true) }
    }

    /// Sends one event to the job's notify entries that asked for it, and audits the outcome.
    /// A notification that fails is logged and audited; the run's own status stands.
    func notify(_ message: Notifications.Message, _ job: Job, pings: Bool = false) {
        guard job.monitoring.notify.contains(where: { $0.on.contains(message.event) && $0.url.hasPrefix("hc+") == pings }) else { return }
        let problems = Notifications.send(message, job: job, baseDirectory: baseDirectory, pings: pings)
        for p in problems { log(p) }
        let event = message.event == .failure ? "alert" : "notify.\(message.event.rawValue)"
        do { try store.audit(problems.isEmpty ? "\(event).sent" : "\(event).failed", ["run": message.run.id, "problems": problems.joined(separator: "; ")]) } catch {
            log("warning: the notification could not be recorded in the audit log: \(error.message)")
        }
    }
}

/// The run in progress, so that SIGINT and SIGTERM can record it as interrupted.
public enum RunInterruption {
    struct Entry: @unchecked Sendable { let id: Int; let store: EvidenceStore; let run: RunRecord }
    static let current = LockedBox<(next: Int, entries: [Entry])>((0, []))

    static func register(store: EvidenceStore, run: RunRecord) -> Int {
        current.withLock { state in
            state.next += 1
            state.entries.append(Entry(id: state.next, store: store, run: run))
            return state.next
        }
    }

    static func unregister(_ id: Int) { current.withLock { $0.entries.removeAll { $0.id == id } } }

    /// Records every run in progress as interrupted and releases every repository lock.
    /// Returns how many runs were marked. Called from the signal handler.
    public static func interruptAll(signal name: String) -> Int {
        let entries = current.withLock { $0.entries }
        for e in entries {
            var r = e.run
            r.status = .interrupted
            r.error = "interrupted by \(name)"
            do { try e.store.finish(r) } catch {
                FileHandle.standardError.write(Data("drplan: run \(r.id.prefix(8)) could not be recorded as interrupted (\(error.message)); the next run of drplan will find it and mark it so\n".utf8))
            }
        }
        RepositoryLock.releaseAll()
        return entries.count
    }
}
