import DRInventory
import Foundation

/// One snapshot of `drplan snapshots`, with where it is.
public struct ListedSnapshot: Sendable {
    public var job: String
    public var target: String
    public var snapshot: EngineSnapshot
}

extension Runner {
    // MARK: choosing a copy

    /// The targets drplan itself writes for `job`, or just `from` (which must be one of them).
    func readableTargets(_ job: Job, from: String?) throws(RepositoryError) -> [String] {
        let mine = job.targets.filter { job.engine(for: $0).map { !$0.runsUserCommands } ?? false }
        if let from {
            guard job.targets.contains(from) else {
                throw RepositoryError(.config, "job '\(job.id)' does not write to '\(from)'; its targets are \(job.targets.joined(separator: ", "))")
            }
            guard mine.contains(from) else { throw RepositoryError(.config, RunMessages.writtenOutside(job.id, from)) }
            return [from]
        }
        guard !mine.isEmpty else { throw RepositoryError(.config, "job '\(job.id)' has no target that drplan writes, so there is nothing drplan can restore") }
        return mine
    }

    // MARK: restore

    /// Restores a job's latest snapshot (or `snapshot`, an id or a unique prefix of 8 or more)
    /// for a real recovery: a single-asset job's files go straight into `target`, a job with
    /// several assets gets one folder per asset. Without `from`, each target is tried in
    /// order, so a lost first copy does not stop recovery from the second; the copy used is
    /// logged. `include` restores only those paths (and what lies under them).
    public func restore(job name: String, snapshot: String?, target: URL, from: String? = nil, include: [String] = [],
                        options: RestoreOptions = RestoreOptions()) throws(RepositoryError) -> [(asset: String, result: EngineRestore)] {
        guard let job = inventory.jobs.first(where: { $0.id == name }) else { throw RepositoryError(.config, "no job '\(name)'") }
        try BuiltinRepository.checkTarget(target.path, follow: options.follow)
        let fm = FileManager.default
        if !options.force, let items = try? fm.contentsOfDirectory(atPath: target.path), !items.isEmpty {
            throw RepositoryError(.targetNotEmpty, "\(target.path) is not empty; restore into an empty or new directory, or pass --force")
        }
        var failures: [String] = []
        for t in try readableTargets(job, from: from) {
            let engine: any BackupEngine
            var chosen: [(asset: String, id: String)] = []
            do throws(RepositoryError) {
                engine = try self.engine(for: job, target: t, purpose: .read)
                let all = try engine.snapshots(tag: job.id)
                for a in job.assets {
                    let snaps = all.filter { $0.tags.contains(a) }
                    let pick: EngineSnapshot?
                    if let snapshot { pick = snaps.first { $0.id == snapshot || (snapshot.count >= 8 && $0.id.hasPrefix(snapshot)) } } else { pick = snaps.last }
                    guard let pick else {
                        throw RepositoryError(.missing, snapshot.map { "snapshot \($0) of '\(a)' is not on '\(t)'" } ?? "there is no snapshot of '\(a)' on '\(t)'")
                    }
                    chosen.append((a, pick.id))
                }
            } catch {
                failures.append("\(t): \(error.message)")
                if from != nil { throw error }
                log("restore \(name): cannot use '\(t)' (\(error.message)); trying the next copy")
                continue
            }
            log("restore \(name): restoring from '\(t)'")
            var out: [(String, EngineRestore)] = []
            for (a, id) in chosen {
                let dest = job.assets.count == 1 ? target : target.appendingPathComponent(a)
                out.append((a, try engine.restore(snapshot: id, to: dest, options: RestoreOptions(force: true, keepSpecialModes: options.keepSpecialModes, follow: options.follow),
                                                  select: include.isEmpty ? nil : Self.includeSelector(include))))
            }
            do { try store.audit("restore", ["job": name, "storage": t, "target": target.path, "snapshot": chosen.map(\.id).joined(separator: ",")]) } catch {
                throw RepositoryError(.io, "the restore finished but could not be recorded in the audit log: \(error.message)")
            }
            return out
        }
        throw RepositoryError(.missing, "no copy of job '\(name)' could be restored: " + failures.joined(separator: "; "))
    }

    /// `--include PATH`: the path itself and everything under it.
    static func includeSelector(_ include: [String]) -> ([String]) -> Set<String> {
        let wanted = include.map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 }.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        return { paths in Set(paths.filter { p in wanted.contains { p == $0 || p.hasPrefix($0 + "/") } }) }
    }

    // MARK: listing

    /// Every snapshot of `jobs` (all when empty) on each target drplan writes, or on `from`.
    /// A target that cannot be listed is an error naming it, never an empty list.
    public func snapshots(jobs names: [String], from: String?) throws(RepositoryError) -> [ListedSnapshot] {
        let jobs = names.isEmpty ? inventory.jobs.filter { j in j.targets.contains { t in j.engine(for: t).map { !$0.runsUserCommands } ?? false } }
            : names.compactMap { n in inventory.jobs.first { $0.id == n } }
        var out: [ListedSnapshot] = []
        for job in jobs {
            let targets: [String]
            if let from { targets = job.targets.contains(from) ? [from] : [] } else { targets = try readableTargets(job, from: nil) }
            for t in targets {
                let engine = try engine(for: job, target: t, purpose: .read)
                for s in try engine.snapshots(tag: job.id) { out.append(ListedSnapshot(job: job.id, target: t, snapshot: s)) }
            }
        }
        return out
    }

    // MARK: maintenance

    /// `drplan check-repository`: each target of `jobs` (all when empty), or `from`.
    public func checkRepositories(jobs names: [String], from: String?, readData: ReadDataSelection) throws(RepositoryError) -> [(job: String, target: String, report: RepositoryCheckReport)] {
        var seen = Set<String>()
        var out: [(String, String, RepositoryCheckReport)] = []
        let jobs = names.isEmpty ? inventory.jobs : names.compactMap { n in inventory.jobs.first { $0.id == n } }
        for job in jobs {
            let targets: [String]
            do { targets = try readableTargets(job, from: from) } catch where !names.isEmpty || from != nil { throw error } catch { continue }
            for t in targets {
                // Jobs sharing one repository check it once.
                let key = "\(job.engine(for: t)?.rawValue ?? "")|\(t)"
                guard seen.insert(key).inserted || job.engine(for: t) == .rsync else { continue }
                let engine = try engine(for: job, target: t, purpose: .read)
                var report = try engine.check(readData: readData)
                report.problems += try vanishedSnapshots(engine, target: t)
                out.append((job.id, t, report))
            }
        }
        return out
    }

    /// The builtin repository on `storage` (for `repair`, `unlock`, `init-repository`).
    public func repository(on storageId: String, create: Bool = false) throws(RepositoryError) -> BuiltinRepository {
        let s = try storage(storageId)
        let users = inventory.jobs.filter { j in j.targets.contains(storageId) && [.builtin, .sqlite, .pgDump].contains(j.engine(for: storageId)) }
        guard let job = users.first else {
            throw RepositoryError(.config, "no job writes drplan's own repository on '\(storageId)' (its jobs use restic, rsync or a command, or none targets it)")
        }
        let passphraseRefs = Set(users.compactMap { ($0.encryption.passphrase ?? s.encryption.passphrase).map { "\($0)" } })
        if passphraseRefs.count > 1 {
            throw RepositoryError(.config, "the jobs writing to '\(storageId)' (\(users.map(\.id).joined(separator: ", "))) name different passphrases; one repository has one key, so give them the same 'encryption.passphrase'")
        }
        let passphrase = try secret(job.encryption.passphrase ?? s.encryption.passphrase)
        let storage = try repositoryStorage(s)
        if create {
            if let local = storage as? LocalStorage, mkdir(local.root, 0o700) != 0 && errno != EEXIST { throw LocalStorage.failure("create", local.root, errno: errno) }
            let (repo, created) = try BuiltinRepository.create(storage: storage, passphrase: passphrase)
            guard created else { throw RepositoryError(.alreadyExists, "storage '\(storageId)' already holds a drplan repository at \(storage.location); nothing was changed") }
            return repo
        }
        do { return try BuiltinRepository.open(storage: storage, passphrase: passphrase) } catch where error.kind == .notARepository {
            throw RepositoryError(.notARepository, RunMessages.noRepository(s.id, storage.location))
        }
    }

    /// Storage ids that hold drplan's own repository for some job.
    public var builtinStorages: [String] {
        var out: [String] = []
        for j in inventory.jobs { for t in j.targets where [.builtin, .sqlite, .pgDump].contains(j.engine(for: t)) && !out.contains(t) { out.append(t) } }
        return out
    }
}
