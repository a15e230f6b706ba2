import DRInventory
import Foundation

extension Runner {
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

    /// The targets one run of `test` restores from: `from` if given, else as the test's
    /// `targets` says. `rotate` picks the target whose last test is oldest (never tested
    /// first), so every copy is tested in turn.
    func testTargets(_ test: RestoreTest, _ job: Job, from: String?) throws(RepositoryError) -> [String] {
        let candidates = try readableTargets(job, from: from)
        if from != nil { return candidates }
        switch test.targets {
        case .all: return candidates
        case .only(let ids): return candidates.filter { ids.contains($0) }
        case .rotate:
            let last: [String: Date]
            do { last = try store.lastRuns(restoreTest: test.id) } catch { throw RepositoryError(.io, error.message) }
            let next = candidates.enumerated().min { a, b in
                ((last[a.element] ?? .distantPast), a.offset) < ((last[b.element] ?? .distantPast), b.offset)
            }
            return next.map { [$0.element] } ?? []
        }
    }

    /// Runs restore tests: restores the job's latest snapshot from each chosen target into
    /// scratch space, verifies every byte (and for databases, that the dump loads with the
    /// recorded row counts), records one result per test and target, and removes the scratch
    /// copy unless `keep`.
    /// With `due`, only tests whose last success is `every` old (or that never succeeded) run.
    public func restoreTest(tests names: [String], sample: Sample?, seed: UInt64, keep: Bool, from: String? = nil, due: Date? = nil) throws(EvidenceError) -> [(RunRecord, String?)] {
        let tests = names.isEmpty ? inventory.restoreTests : names.compactMap { n in inventory.restoreTests.first { $0.id == n } }
        try alertInterruptions()
        var out: [(RunRecord, String?)] = []
        for test in tests {
            if let now = due {
                let last = try store.runs(job: test.job).filter { $0.kind == .restoreTest && $0.restoreTest == test.id && $0.status == .success }.map(\.startedAt).max()
                if case .notDue(let next) = Due.state(every: test.interval(policy: inventory.policy), lastSuccess: last, now: now) {
                    log("restore-test \(test.id): not due (last success \(last.map(EvidenceStore.iso) ?? "never"), next due \(EvidenceStore.iso(next)))")
                    continue
                }
            }
            guard let job = inventory.jobs.first(where: { $0.id == test.job }) else { continue }
            let targets: [String?]
            if job.engine.runsUserCommands && job.targetEngines.isEmpty {
                targets = [job.targets.first]
            } else {
                do { targets = try testTargets(test, job, from: from) } catch {
                    var run = try store.begin(RunRecord(kind: .restoreTest, job: job.id, restoreTest: test.id, asset: test.asset, engine: job.engine.rawValue, storage: from))
                    run.status = .failed
                    run.error = error.message
                    try store.finish(run)
                    log("restore-test \(test.id): FAILED: \(error.message)")
                    out.append((run, nil))
                    continue
                }
            }
            for target in targets { out.append(try restoreTestOne(test, job, target: target, sample: sample, seed: seed, keep: keep)) }
        }
        return out
    }

    func restoreTestOne(_ test: RestoreTest, _ job: Job, target: String?, sample: Sample?, seed: UInt64, keep: Bool) throws(EvidenceError) -> (RunRecord, String?) {
        let kind = target.flatMap { job.engine(for: $0) } ?? job.engine
        var run = try store.begin(RunRecord(kind: .restoreTest, job: job.id, restoreTest: test.id, asset: test.asset, engine: kind.rawValue, storage: target))
        let interruption = RunInterruption.register(store: store, run: run)
        defer { RunInterruption.unregister(interruption) }
        let label = "restore-test \(test.id)" + (target.map { " ← \($0)" } ?? "")
        progress?(.started(label))
        let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("drplan-restore-test-\(test.id)-\(run.id.prefix(8))")
        let effective = sample ?? (test.scope == .sample ? .percent(10) : .all)
        do throws(RepositoryError) {
            if kind.runsUserCommands {
                try commandRestoreTest(job, scratch: scratch, run: &run)
            } else {
                guard let target else { throw RepositoryError(.config, "job '\(job.id)' has no target to restore from") }
                try restoreTestTarget(test, job, target: target, engine: kind, sample: effective, seed: seed, scratch: scratch, run: &run)
            }
        } catch {
            run.status = .failed
            run.error = error.message
            run.missingTool = error.kind == .missingTool
        }
        if !keep { try? FileManager.default.removeItem(at: scratch) }
        progress?(.done(label, status: run.status.rawValue, files: run.verifiedFiles, bytes: run.verifiedBytes))
        try store.finish(run)
        alert(run, job)
        let on = target.map { " from \($0)" } ?? ""
        log("restore-test \(test.id)\(on): \(run.status == .success ? "passed" : "FAILED: \(run.error ?? "")"), \(run.verifiedFiles) files and \(run.verifiedBytes) bytes verified" + (keep ? ", kept in \(scratch.path)" : ""))
        return (run, keep ? scratch.path : nil)
    }

    func commandRestoreTest(_ job: Job, scratch: URL, run: inout RunRecord) throws(RepositoryError) {
        guard let restore = CommandEngine.option(job, "restore"), let verify = CommandEngine.option(job, "verify") else {
            throw RepositoryError(.config, "job '\(job.id)' uses the command engine but lacks 'options.restore' or 'options.verify'")
        }
        do { try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true) } catch {
            throw RepositoryError(.io, "cannot create the scratch folder \(scratch.path): \(error.localizedDescription)")
        }
        let storage = job.targets.lazy.compactMap { t in self.inventory.storage.first { $0.id == t } }.first
        var env = commandEnvironment(job, storage)
        env["DRPLAN_RESTORE_TARGET"] = scratch.path
        let a = try CommandEngine.run(restore, cwd: baseDirectory, env: env, secretArgs: job.secretArgs)
        let b = try CommandEngine.run(verify, cwd: baseDirectory, env: env, secretArgs: job.secretArgs)
        run.output = String((a + b).suffix(EvidenceStore.outputLimit))
        run.status = .success
    }

    func restoreTestTarget(_ test: RestoreTest, _ job: Job, target: String, engine kind: Engine, sample: Sample, seed: UInt64, scratch: URL, run: inout RunRecord) throws(RepositoryError) {
        let engine = try engine(for: job, target: target, purpose: .read)
        let wanted = test.asset.map { [$0] } ?? job.assets
        do { try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true) } catch {
            throw RepositoryError(.io, "cannot create the scratch folder \(scratch.path): \(error.localizedDescription)")
        }
        var damaged: [String: String] = [:]
        // A snapshot that vanished would otherwise be replaced, silently, by the one before it.
        // One listing serves both: every snapshot for the evidence's record, this job's for the test.
        let listed = try engine.snapshots(tag: nil)
        let vanished = try vanishedSnapshots(engine, target: target, listed: listed)
        for (i, gone) in vanished.enumerated() { damaged["(vanished snapshot \(i + 1))"] = gone }
        let all = listed.filter { $0.tags.contains(job.id) }
        var used: [String] = []
        for a in wanted {
            guard let snap = all.filter({ $0.tags.contains(a) }).last else {
                if !vanished.isEmpty { throw RepositoryError(.missing, vanished.joined(separator: "; ")) }
                throw RepositoryError(.missing, "job '\(job.id)' has no snapshot of '\(a)' on '\(target)' yet; run 'drplan backup \(job.id)' first")
            }
            // A database snapshot is one dump: sampling it would test nothing.
            let select = kind.storesOneDump ? nil : Self.selector(sample, seed: seed)
            let dest = scratch.appendingPathComponent(a)
            let r = try engine.restore(snapshot: snap.id, to: dest, options: RestoreOptions(), select: select)
            run.verifiedFiles += Int64(r.files); run.verifiedBytes += r.bytes; run.files += Int64(r.files + r.damaged.count)
            for (p, why) in r.damaged { damaged["\(a)/\(p)"] = why }
            if r.damaged.isEmpty {
                let problems = try verifyRestored(a, engine: kind, in: dest, runId: run.id)
                let name = kind.dumpFileName ?? "dump"
                for (i, problem) in problems.enumerated() { damaged["\(a)/\(name)" + (i == 0 ? "" : " #\(i + 1)")] = problem }
            }
            // A mirror has no checksums of its own: what it holds is compared with the source.
            if !engine.keepsHistory, case .paths(let paths, let exclude)? = inventory.assets.first(where: { $0.id == a })?.source, paths.count == 1 {
                let (source, _, _) = try RsyncEngine.digests(resolve(paths[0]))
                let (copy, _, _) = try RsyncEngine.digests(dest.path)
                let chosen = select?(source.keys.sorted()) ?? Set(source.keys)
                for (p, d) in source where chosen.contains(p) && copy[p] != d && !BuiltinRepository.excluded(p, exclude) {
                    damaged["\(a)/\(p)"] = copy[p] == nil ? "missing from the mirror" : "differs from the source"
                }
            }
            used.append(snap.id)
        }
        run.snapshot = used.joined(separator: ",")
        // restic re-reads a share of its packs too (runs.md): the sample's share, or 10%.
        var percent = 10
        if case .percent(let p) = sample { percent = Int(p.rounded(.up)) }
        for (i, problem) in try engine.checkRepository(readDataPercent: percent).enumerated() {
            damaged["(repository check \(i + 1))"] = problem
        }
        if damaged.isEmpty {
            run.status = .success
        } else {
            run.status = .failed
            run.error = "\(damaged.count) file(s) could not be restored intact from '\(target)': " + damaged.keys.sorted().prefix(20).map { "\($0) (\(damaged[$0] ?? ""))" }.joined(separator: "; ")
        }
        run.output = "sample: \(sample), seed: \(seed), target: \(target)"
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
