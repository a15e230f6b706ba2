import DRFacts
import DRInventory
import Foundation

/// Runs backups and restore tests as the inventory declares them, recording every run.
public struct Runner {
    public let inventory: Inventory
    /// Relative paths in the inventory (sources, storage paths, secret files) are relative to this.
    public let baseDirectory: String
    public let store: EvidenceStore
    /// One line per event, for the terminal.
    public var log: @Sendable (String) -> Void = { _ in }
    /// Progress of the engine's current backup or restore.
    public var progress: ProgressSink?

    public init(inventory: Inventory, baseDirectory: String, store: EvidenceStore) {
        self.inventory = inventory
        self.baseDirectory = baseDirectory
        self.store = store
    }

    /// Absolute, because engines may run tools from another working directory.
    func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let base = baseDirectory.hasPrefix("/") ? baseDirectory : FileManager.default.currentDirectoryPath + "/" + baseDirectory
        return URL(fileURLWithPath: base + "/" + path).standardizedFileURL.path
    }

    /// Whether drplan can reach `s` for `job`: a `path`, or for restic also a repository `url`.
    static func reachable(_ s: Storage, by job: Job) -> Bool {
        s.path != nil || (job.engine == .restic && s.url != nil)
    }

    /// The engine that runs `job` against storage `s`. The builtin, sqlite and pg_dump engines
    /// use drplan's repository at `<path>/drplan-repository`; restic its own repository.
    func engine(for job: Job, storage s: Storage) throws(RepositoryError) -> any BackupEngine {
        let passphraseRef = job.encryption.passphrase ?? s.encryption.passphrase
        if job.engine == .restic {
            guard let ref = passphraseRef else { throw RepositoryError(.passphraseRequired, RunMessages.resticNeedsPassword(job.id)) }
            let password: ResticEngine.Password
            if case .file(let file) = ref { password = .file(resolve(file)) } else { password = .value(try Secrets.resolve(ref, relativeTo: baseDirectory)) }
            guard let location = s.url ?? s.path.map({ resolve($0) + "/drplan-restic" }) else {
                throw RepositoryError(.io, "storage '\(s.id)' has neither 'path' nor 'url' for restic to write into; add one")
            }
            return try ResticEngine(repository: location, password: password, progress: progress)
        }
        guard let path = s.path else { throw RepositoryError(.io, "storage '\(s.id)' has no 'path' for drplan to write into; add one") }
        if job.engine == .rsync {
            var e = try RsyncEngine(root: URL(fileURLWithPath: resolve(path)).appendingPathComponent("drplan-rsync").appendingPathComponent(job.id))
            e.progress = progress
            return e
        }
        guard job.engine == .builtin || job.engine == .sqlite || job.engine == .pgDump else {
            throw RepositoryError(.io, "the \(job.engine.rawValue) engine cannot run job '\(job.id)' against storage '\(s.id)'")
        }
        if passphraseRef == nil && (job.encryption.atRest) {
            throw RepositoryError(.passphraseRequired, "job '\(job.id)' asks for encryption at rest but names no 'encryption.passphrase' secret")
        }
        let passphrase = try secret(passphraseRef)
        var e = try BuiltinEngine.open(directory: URL(fileURLWithPath: resolve(path)).appendingPathComponent("drplan-repository"), passphrase: passphrase)
        e.progress = progress
        return e
    }

    /// The value of an optional secret reference.
    func secret(_ ref: SecretRef?) throws(RepositoryError) -> String? {
        try ref.map { (r: SecretRef) throws(RepositoryError) -> String in try Secrets.resolve(r, relativeTo: baseDirectory) }
    }

    /// A pg_dump asset's DSN and password, or the error saying it has no postgres source.
    func postgresSource(_ asset: String) throws(RepositoryError) -> (dsn: String, password: String?) {
        guard case .postgres(let dsn, let ref)? = inventory.assets.first(where: { $0.id == asset })?.source else {
            throw RepositoryError(.io, RunMessages.notAPostgresSource(asset))
        }
        return (dsn, try secret(ref))
    }

    /// Sends the alerts that runs killed mid-way still owe (runs.md: a failed *or interrupted*
    /// run notifies). Called before new runs start, whichever command first found them.
    public func alertInterruptions() {
        guard let pending = try? store.interruptionsToAlert() else { return }
        for run in pending {
            if let job = inventory.jobs.first(where: { $0.id == run.job }) { alert(run, job) }
            try? store.markAlerted(run.id)
        }
    }

    /// Backs up `jobs` (all jobs with a source and a target with a path when empty), one run
    /// per job and target. Returns the recorded runs; a lock held by another run throws.
    public func backup(jobs names: [String]) throws(EvidenceError) -> [RunRecord] {
        let assets = Dictionary(inventory.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let storage = Dictionary(inventory.storage.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let jobs = names.isEmpty
            ? inventory.jobs.filter { j in
                // A command job's source is its backup command.
                let hasSource = j.engine == .command ? CommandEngine.option(j, "backup") != nil : j.assets.contains { assets[$0]?.source != nil }
                return hasSource && j.targets.contains { t in storage[t].map { Self.reachable($0, by: j) } ?? false }
            }
            : names.compactMap { n in inventory.jobs.first { $0.id == n } }
        alertInterruptions()
        var records: [RunRecord] = []
        for job in jobs {
            for target in job.targets {
                guard let s = storage[target], Self.reachable(s, by: job) || !names.isEmpty else { continue }
                var run = try store.begin(RunRecord(kind: .backup, job: job.id, engine: job.engine.rawValue, storage: target))
                progress?(RunProgress())
                log("backup \(job.id) → \(target): started (run \(run.id.prefix(8)))")
                let started = Date()
                do throws(RepositoryError) {
                    guard let s = storage[target] else { throw RepositoryError(.io, "unknown storage '\(target)'") }
                    if job.engine == .command {
                        guard let cmd = CommandEngine.option(job, "backup") else { throw RepositoryError(.io, "job '\(job.id)' uses the command engine but has no 'options.backup'") }
                        run.output = try CommandEngine.run(cmd, cwd: baseDirectory, env: commandEnvironment(job, s))
                        run.status = .success
                        log("backup \(job.id) → \(target): success (command)")
                    } else {
                        let engine = try engine(for: job, storage: s)
                        var snapshots: [String] = []
                        for a in job.assets {
                            let b: EngineBackup
                            if job.engine == .sqlite {
                                guard case .sqlite(let file)? = assets[a]?.source else {
                                    throw RepositoryError(.io, "asset '\(a)' has no 'source: {sqlite: FILE}' for the sqlite engine to read")
                                }
                                let staging = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("drplan-sqlite-\(run.id.prefix(8))-\(a)")
                                defer { try? FileManager.default.removeItem(at: staging) }
                                _ = try SQLiteBackup.dump(database: resolve(file), into: staging)
                                b = try engine.backup(paths: [staging.path], exclude: [], tags: [job.id, a])
                            } else if job.engine == .pgDump {
                                let (dsn, password) = try postgresSource(a)
                                let staging = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("drplan-pgdump-\(run.id.prefix(8))-\(a)")
                                defer { try? FileManager.default.removeItem(at: staging) }
                                _ = try PostgresBackup.dump(dsn: dsn, password: password, into: staging)
                                b = try engine.backup(paths: [staging.path], exclude: [], tags: [job.id, a])
                            } else {
                                guard case .paths(let paths, let exclude)? = assets[a]?.source else {
                                    throw RepositoryError(.io, "asset '\(a)' has no 'source: {path: …}' for the builtin engine to read")
                                }
                                b = try engine.backup(paths: paths.map(resolve), exclude: exclude, tags: [job.id, a])
                            }
                            run.bytesRead += b.bytesRead; run.bytesWritten += b.bytesWritten; run.files += Int64(b.files)
                            progress?(RunProgress(files: Int64(b.files), bytes: b.bytesRead, totalFiles: Int64(b.files), totalBytes: b.bytesRead))
                            snapshots.append(b.snapshot)
                        }
                        run.snapshot = snapshots.joined(separator: ",")
                        run.status = .success
                        log("backup \(job.id) → \(target): success, \(run.files) files, \(run.bytesRead) bytes read, \(run.bytesWritten) new bytes stored in \(String(format: "%.1f", Date().timeIntervalSince(started)))s")
                    }
                } catch {
                    run.status = .failed
                    run.error = error.message
                    run.missingTool = error.kind == .missingTool
                    log("backup \(job.id) → \(target): FAILED: \(error.message)")
                }
                try store.finish(run)
                alert(run, job)
                records.append(run)
            }
        }
        return records
    }

    /// Applies each job's retention to what drplan's engine stored, then removes unreferenced
    /// objects. Jobs without `retention` keep everything.
    public func prune(jobs names: [String], grace: TimeInterval = 3600) throws(EvidenceError) -> [RunRecord] {
        let jobs = names.isEmpty ? inventory.jobs : names.compactMap { n in inventory.jobs.first { $0.id == n } }
        var records: [RunRecord] = []
        for job in jobs {
            guard let policy = job.retention else { continue }
            for s in job.targets.compactMap({ t in inventory.storage.first { $0.id == t && Self.reachable($0, by: job) } }) {
                var run = try store.begin(RunRecord(kind: .prune, job: job.id, engine: job.engine.rawValue, storage: s.id))
                do throws(RepositoryError) {
                    let engine = try engine(for: job, storage: s)
                    var forget = Set<String>()
                    for a in job.assets {
                        let snaps = try engine.snapshots(tag: job.id).filter { $0.tags.contains(a) }.map { (id: $0.id, time: $0.time) }
                        let keep = Retention.keep(snaps, policy: policy)
                        forget.formUnion(snaps.map(\.id).filter { !keep.contains($0) })
                    }
                    run.output = try engine.prune(forget: forget, grace: grace)
                    run.files = Int64(forget.count)
                    run.status = .success
                    log("prune \(job.id) on \(s.id): \(run.output ?? "")")
                } catch {
                    run.status = .failed
                    run.error = error.message
                    log("prune \(job.id) on \(s.id): FAILED: \(error.message)")
                }
                try store.finish(run)
                records.append(run)
            }
        }
        return records
    }

    func commandEnvironment(_ job: Job, _ storage: Storage?) -> [String: String] {
        var env = ["DRPLAN_JOB": job.id, "DRPLAN_ASSETS": job.assets.joined(separator: " ")]
        if let path = storage?.path { env["DRPLAN_STORAGE_PATH"] = resolve(path) }
        return env
    }

    /// Alerts on a failed run; alert failures are logged and audited, never fatal.
    func alert(_ run: RunRecord, _ job: Job) {
        guard run.status != .success, !job.monitoring.alertOnFailure.isEmpty else { return }
        let problems = Alerts.send(run, to: job.monitoring.alertOnFailure, baseDirectory: baseDirectory)
        for p in problems { log(p) }
        try? store.audit(problems.isEmpty ? "alert.sent" : "alert.failed", ["run": run.id, "problems": problems.joined(separator: "; ")])
    }

    /// Restores a job's latest snapshot (or `snapshot`) for a real recovery: a single-asset job's
    /// files go straight into `target`, a job with several assets gets one folder per asset.
    public func restore(job name: String, snapshot: String?, target: URL, force: Bool) throws(RepositoryError) -> [(asset: String, result: EngineRestore)] {
        guard let job = inventory.jobs.first(where: { $0.id == name }) else { throw RepositoryError(.io, "no job '\(name)'") }
        guard let s = job.targets.lazy.compactMap({ t in self.inventory.storage.first { $0.id == t && Self.reachable($0, by: job) } }).first else {
            throw RepositoryError(.io, "job '\(name)' has no target with a path to restore from")
        }
        let fm = FileManager.default
        if !force, let items = try? fm.contentsOfDirectory(atPath: target.path), !items.isEmpty {
            throw RepositoryError(.targetNotEmpty, "\(target.path) is not empty; restore into an empty or new directory, or pass --force")
        }
        let engine = try engine(for: job, storage: s)
        var out: [(String, EngineRestore)] = []
        for a in job.assets {
            let snaps = try engine.snapshots(tag: job.id).filter { $0.tags.contains(a) }
            guard let chosen = snapshot.map({ id in snaps.first { $0.id == id } }) ?? snaps.last else {
                throw RepositoryError(.corrupt, snapshot.map { "snapshot \($0) of job '\(name)' does not exist on '\(s.id)'" } ?? "job '\(name)' has no snapshot of '\(a)' on '\(s.id)'")
            }
            let dest = job.assets.count == 1 ? target : target.appendingPathComponent(a)
            out.append((a, try engine.restore(snapshot: chosen.id, to: dest, force: true, select: nil)))
        }
        try? store.audit("restore", ["job": name, "storage": s.id, "target": target.path, "snapshot": snapshot ?? "latest"])
        return out
    }

    /// How much of a snapshot a restore test restores: everything, a fraction, or a count of files.
    public enum Sample: Sendable, Equatable {
        case all, percent(Double), files(Int)

        /// `5%` or `200`.
        public static func parse(_ s: String) -> Sample? {
            if s.hasSuffix("%"), let p = Double(s.dropLast()), p > 0, p <= 100 { return .percent(p) }
            if let n = Int(s), n > 0 { return .files(n) }
            return nil
        }
    }

    /// Runs restore tests: restores the job's latest snapshot into scratch space, verifies every
    /// byte, records the result, and removes the scratch copy unless `keep`.
    public func restoreTest(tests names: [String], sample: Sample?, seed: UInt64, keep: Bool) throws(EvidenceError) -> [(RunRecord, String?)] {
        let tests = names.isEmpty ? inventory.restoreTests : names.compactMap { n in inventory.restoreTests.first { $0.id == n } }
        alertInterruptions()
        var out: [(RunRecord, String?)] = []
        for test in tests {
            guard let job = inventory.jobs.first(where: { $0.id == test.job }) else { continue }
            let targets = job.targets.compactMap { t in inventory.storage.first { $0.id == t && Self.reachable($0, by: job) } }
            var run = try store.begin(RunRecord(kind: .restoreTest, job: job.id, restoreTest: test.id, engine: job.engine.rawValue, storage: targets.first?.id))
            progress?(RunProgress())
            let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("drplan-restore-test-\(test.id)-\(run.id.prefix(8))")
            let effective = sample ?? (test.scope == .sample ? .percent(10) : .all)
            do throws(RepositoryError) {
                if job.engine == .command {
                    guard let restore = CommandEngine.option(job, "restore"), let verify = CommandEngine.option(job, "verify") else {
                        throw RepositoryError(.io, "job '\(job.id)' uses the command engine but lacks 'options.restore' or 'options.verify'")
                    }
                    try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
                    let storage = job.targets.lazy.compactMap { t in self.inventory.storage.first { $0.id == t } }.first
                    var env = commandEnvironment(job, storage)
                    env["DRPLAN_RESTORE_TARGET"] = scratch.path
                    let a = try CommandEngine.run(restore, cwd: baseDirectory, env: env)
                    let b = try CommandEngine.run(verify, cwd: baseDirectory, env: env)
                    run.output = String((a + b).suffix(EvidenceStore.outputLimit))
                    run.status = .success
                } else {
                    guard let s = targets.first else { throw RepositoryError(.io, "job '\(job.id)' has no target with a path to restore from") }
                    let engine = try engine(for: job, storage: s)
                    let wanted = test.asset.map { [$0] } ?? job.assets
                    var damaged: [String: String] = [:]
                    if let mirror = engine as? RsyncEngine {
                        // A mirror's test compares it with the source, file by file (runs.md).
                        for a in wanted {
                            guard case .paths(let paths, let exclude)? = inventory.assets.first(where: { $0.id == a })?.source, paths.count == 1 else {
                                throw RepositoryError(.io, "asset '\(a)' needs one 'source: {path: …}' for an rsync restore test")
                            }
                            let (source, _, _) = try RsyncEngine.digests(resolve(paths[0]))
                            let (copy, bytes, _) = try RsyncEngine.digests(mirror.root.appendingPathComponent(a).path)
                            for (p, d) in source where copy[p] != d && !BuiltinRepository.excluded(p, exclude) {
                                damaged["\(a)/\(p)"] = copy[p] == nil ? "missing from the mirror" : "differs from the source"
                            }
                            run.verifiedFiles += Int64(copy.count); run.verifiedBytes += bytes; run.files += Int64(source.count)
                            run.snapshot = "mirror-\(a)"
                        }
                    }
                    for a in wanted where !(engine is RsyncEngine) {
                        guard let snap = try engine.snapshots(tag: job.id).filter({ $0.tags.contains(a) }).last else {
                            throw RepositoryError(.corrupt, "job '\(job.id)' has no snapshot of '\(a)' on '\(s.id)' yet; run 'drplan backup \(job.id)' first")
                        }
                        // A database snapshot is one dump: sampling it would test nothing.
                        let select = job.engine == .sqlite || job.engine == .pgDump ? nil : Self.selector(effective, seed: seed)
                        let r = try engine.restore(snapshot: snap.id, to: scratch.appendingPathComponent(a), force: false, select: select)
                        run.verifiedFiles += Int64(r.files); run.verifiedBytes += r.bytes; run.files += Int64(r.files + r.damaged.count)
                        progress?(RunProgress(files: Int64(r.files + r.damaged.count), bytes: r.bytes, totalFiles: Int64(r.files + r.damaged.count), totalBytes: r.bytes))
                        for (p, why) in r.damaged { damaged["\(a)/\(p)"] = why }
                        if job.engine == .sqlite, r.damaged.isEmpty {
                            for problem in SQLiteBackup.verify(restoredIn: scratch.appendingPathComponent(a)) { damaged["\(a)/\(SQLiteBackup.fileName)"] = problem }
                        }
                        if job.engine == .pgDump, r.damaged.isEmpty {
                            let (dsn, password) = try postgresSource(a)
                            let problems = try PostgresBackup.verify(restoredIn: scratch.appendingPathComponent(a), dsn: dsn, password: password,
                                                                     scratch: "drplan_restore_test_\(run.id.prefix(8).lowercased())")
                            for (i, problem) in problems.enumerated() { damaged["\(a)/\(PostgresBackup.fileName)" + (i == 0 ? "" : " #\(i + 1)")] = problem }
                        }
                        run.snapshot = snap.id
                    }
                    // restic re-reads a share of its packs too (runs.md): the sample's share, or 10%.
                    var percent = 10
                    if case .percent(let p) = effective { percent = Int(p.rounded(.up)) }
                    for (i, problem) in try engine.checkRepository(readDataPercent: percent).enumerated() {
                        damaged["(repository check \(i + 1))"] = problem
                    }
                    if damaged.isEmpty {
                        run.status = .success
                    } else {
                        run.status = .failed
                        run.error = "\(damaged.count) file(s) could not be restored intact: " + damaged.keys.sorted().prefix(20).map { "\($0) (\(damaged[$0] ?? ""))" }.joined(separator: "; ")
                    }
                    run.output = "sample: \(effective), seed: \(seed)"
                }
            } catch {
                run.status = .failed
                run.error = error.message
                run.missingTool = error.kind == .missingTool
            }
            if !keep { try? FileManager.default.removeItem(at: scratch) }
            try store.finish(run)
            alert(run, job)
            log("restore-test \(test.id): \(run.status == .success ? "passed" : "FAILED: \(run.error ?? "")"), \(run.verifiedFiles) files and \(run.verifiedBytes) bytes verified" + (keep ? ", kept in \(scratch.path)" : ""))
            out.append((run, keep ? scratch.path : nil))
        }
        return out
    }

    /// A seeded, reproducible choice of files (the seed is recorded with the run): a
    /// percentage rounds up, so a sample never restores nothing from a non-empty snapshot.
    static func selector(_ s: Sample, seed: UInt64) -> (([String]) -> Set<String>)? {
        let count: (Int) -> Int
        switch s {
        case .all: return nil
        case .percent(let p): count = { n in min(n, Int((Double(n) * p / 100).rounded(.up))) }
        case .files(let k): count = { n in min(n, k) }
        }
        return { paths in
            let ranked = paths.sorted { (stableHash($0, seed), $0) < (stableHash($1, seed), $1) }
            return Set(ranked.prefix(count(paths.count)))
        }
    }

    static func stableHash(_ s: String, _ seed: UInt64) -> UInt64 {
        var h: UInt64 = 0xcbf29ce484222325 ^ seed
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return h
    }
}

extension MeasuredEvidence {
    /// The latest finished run of each job and restore test, as the facts read them.
    public init(runs: [RunRecord]) {
        self.init()
        for r in runs where r.status != .running {
            let at = Timestamp(r.finishedAt ?? r.startedAt)
            switch r.kind {
            case .backup:
                guard let job = r.job else { continue }
                let previous = jobs[job]
                let lastSuccess = r.status == .success ? at : previous?.lastSuccess
                if previous.map({ at >= $0.at }) ?? true {
                    jobs[job] = JobRun(at: at, status: r.status == .success ? .success : .failed, lastSuccess: lastSuccess)
                } else if r.status == .success, let p = previous {
                    jobs[job] = JobRun(at: p.at, status: p.status, lastSuccess: max(p.lastSuccess ?? at, at))
                }
            case .restoreTest:
                guard let t = r.restoreTest, tests[t].map({ at >= $0.at }) ?? true else { continue }
                let seconds = Int64(((r.finishedAt ?? r.startedAt).timeIntervalSince(r.startedAt)).rounded(.up))
                tests[t] = TestRun(at: at, result: r.status == .success ? .pass : .fail, duration: TimeSpan(seconds: max(1, seconds)), restored: r.verifiedBytes)
            case .prune:
                continue
            }
        }
    }
}
