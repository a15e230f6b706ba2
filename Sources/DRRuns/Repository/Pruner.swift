import CEL
import Foundation

/// What a prune will do, computed before anything is changed (restic's prune: plan, validate,
/// then act). Printed by `prune --dry-run`.
public struct PrunePlan: Sendable {
    /// Snapshots to remove.
    public var forget: [String] = []
    /// Packs whose every object is unreferenced: deleted.
    public var dropPacks: [String] = []
    /// Packs holding both live and dead objects: their live objects are copied to new packs,
    /// then they are deleted.
    public var rewritePacks: [String] = []
    /// Packs named by no index and older than the grace period (an interrupted backup's).
    public var unindexedPacks: [String] = []
    /// Index entries of packs that no longer exist and hold nothing live: dropped from the index.
    public var vanishedPacks: [String] = []
    /// Version-1 loose objects no snapshot references.
    public var looseObjects: [String] = []
    public var objectsRemoved = 0
    public var objectsCopied = 0
    public var bytesFreed: Int64 = 0
    /// Files prune would have removed that the storage still holds under a retention lock
    /// (S3 Object Lock), with the date the lock ends: kept, and said so. A snapshot kept this
    /// way keeps everything it uses; an index file kept keeps the packs it names.
    public var locked: [(path: String, until: Date)] = []

    var kept: [PackContents] = []
    var rewrite: [PackContents] = []
    var indexFiles: [String] = []
    /// Index files that stay because they are locked (their packs stay too).
    var lockedIndexFiles = Set<String>()
    var referenced = Set<String>()
    var cutoff = Date.distantPast

    /// Whether executing the plan would change nothing.
    public var isEmpty: Bool {
        forget.isEmpty && dropPacks.isEmpty && rewritePacks.isEmpty && unindexedPacks.isEmpty && vanishedPacks.isEmpty && looseObjects.isEmpty
    }

    /// The plan in a few lines, for `--dry-run` and the run's output.
    public var summary: String {
        "forget \(forget.count) snapshot(s); delete \(dropPacks.count) pack(s), rewrite \(rewritePacks.count) (copying \(objectsCopied) live object(s)), remove \(unindexedPacks.count) unindexed pack(s) and \(looseObjects.count) loose object(s); \(objectsRemoved) object(s), about \(bytesFreed) bytes freed"
            + lockedSummary
    }

    var lockedSummary: String {
        guard let last = locked.map(\.until).max() else { return "" }
        let f = ISO8601DateFormatter()
        let snapshots = locked.filter { $0.path.hasPrefix("snapshots/") }.count
        return "; \(locked.count) file(s) kept because Object Lock still protects them" + (snapshots > 0 ? " (\(snapshots) snapshot(s) among them)" : "")
            + ", the last until \(f.string(from: last)): a prune after that removes them"
    }
}

extension BuiltinRepository {
    // MARK: prune

    /// Plans a prune: `forget` are the snapshots to remove, then everything no remaining
    /// snapshot references goes. Objects younger than `grace` are spared. Fails closed,
    /// before anything is changed, on any listing that fails, any index file or snapshot that
    /// cannot be read, and any object a remaining snapshot uses that no index names (the
    /// message says to run `drplan repair`): deciding what is garbage from incomplete
    /// knowledge would delete live data.
    public func planPrune(forget ids: Set<String>, grace: TimeInterval = 3600, now: Date = Date()) throws(RepositoryError) -> PrunePlan {
        var plan = PrunePlan()
        let names = try snapshotNames()
        // A snapshot still under a retention lock cannot be deleted: it stays, with all it uses.
        var forget = Set<String>()
        for name in names where ids.contains(name) {
            if let until = try storage.info("snapshots/" + name)?.retainUntil, until > now { plan.locked.append(("snapshots/" + name, until)) } else { forget.insert(name) }
        }
        let ids = forget
        plan.forget = names.filter { ids.contains($0) }
        for name in names where !ids.contains(name) {
            let s: Snapshot
            do { s = try snapshot(name) } catch {
                throw RepositoryError(.corrupt, "prune stopped before changing anything: snapshot \(name) cannot be read (\(error.message)), so what it uses is unknown; run 'drplan check-repository', and restore the snapshot from another copy or remove it by hand")
            }
            for e in s.entries { for c in e.chunks ?? [] { plan.referenced.insert(c) } }
        }
        plan.indexFiles = try indexFiles()
        var contents: [String: PackContents] = [:]
        // Where each live object is: the newest entry of the index files just read (not the
        // index loaded at open, which another process may have changed since).
        var index: [String: BlobLocation] = [:]
        for name in plan.indexFiles {
            let packs: [PackContents]
            do { packs = try readIndexFile(name) } catch {
                throw RepositoryError(.corrupt, "prune stopped before changing anything: \(error.message); run 'drplan repair index' first")
            }
            for p in packs {
                contents[p.pack] = p
                for b in p.blobs { index[b.id] = BlobLocation(pack: p.pack, offset: b.offset, length: b.length) }
            }
        }
        // Packs named by an index file that must stay (locked) stay too: deleting them would
        // leave that index naming packs that are gone.
        var lockedIndex: [(path: String, until: Date)] = []
        var pinned: [String: Date] = [:]   // pack → the end of the lock that keeps it
        for name in plan.indexFiles {
            guard let until = try storage.info("index/" + name)?.retainUntil, until > now else { continue }
            lockedIndex.append(("index/" + name, until))
            plan.lockedIndexFiles.insert(name)
            for p in try readIndexFile(name) { pinned[p.pack] = max(pinned[p.pack] ?? until, until) }
        }
        let existing = Set(try packNames())
        var info: [String: StorageFileInfo] = [:]
        for p in existing { if let i = try storage.info(packPath(p)) { info[p] = i } }
        for (p, i) in info { if let until = i.retainUntil, until > now { pinned[p] = max(pinned[p] ?? until, until) } }
        let cutoff = now.addingTimeInterval(-grace)
        plan.cutoff = cutoff
        func young(_ pack: String) -> Bool { info[pack].map { $0.modified > cutoff } ?? false }
        /// True (and noted) when a pack prune would remove is kept by a lock.
        func lockKeeps(_ pack: String) -> Bool {
            guard let until = pinned[pack] else { return false }
            plan.locked.append((packPath(pack), until))
            return true
        }

        var liveIn: [String: Set<String>] = [:]   // pack → live object ids stored there
        var looseV1 = Set<String>()
        for id in plan.referenced {
            if let loc = index[id], existing.contains(loc.pack) {
                liveIn[loc.pack, default: []].insert(id)
                continue
            }
            if (try storage.info(objectPath(id))) != nil { looseV1.insert(id); continue }
            let user = try firstUser(of: id, among: names.filter { !ids.contains($0) })
            throw RepositoryError(.corrupt, "prune stopped before changing anything: object \(id.prefix(12)), used by \(user), is in no index or its pack is missing; run 'drplan repair index' and then 'drplan repair snapshots'")
        }
        for pack in contents.values.sorted(by: { $0.pack < $1.pack }) {
            guard existing.contains(pack.pack) else { plan.vanishedPacks.append(pack.pack); continue }
            let live = liveIn[pack.pack] ?? []
            let dead = pack.blobs.filter { !live.contains($0.id) }
            if dead.isEmpty || young(pack.pack) || lockKeeps(pack.pack) { plan.kept.append(pack) }
            else if live.isEmpty {
                plan.dropPacks.append(pack.pack)
                plan.objectsRemoved += pack.blobs.count
                plan.bytesFreed += info[pack.pack]?.size ?? 0
            } else {
                plan.rewrite.append(pack)
                plan.rewritePacks.append(pack.pack)
                plan.objectsRemoved += dead.count
                plan.objectsCopied += pack.blobs.count - dead.count
                plan.bytesFreed += dead.reduce(Int64(0)) { $0 + Int64($1.length) }
            }
        }
        plan.unindexedPacks = existing.subtracting(contents.keys).filter { !young($0) && !lockKeeps($0) }.sorted()
        // Index files are replaced only when packs change; only then does a lock keep one.
        if !plan.dropPacks.isEmpty || !plan.rewritePacks.isEmpty || !plan.vanishedPacks.isEmpty { plan.locked += lockedIndex }
        plan.bytesFreed += plan.unindexedPacks.reduce(Int64(0)) { $0 + (info[$1]?.size ?? 0) }
        do {
            var dirs: [String] = []
            do { dirs = try storage.list("data") } catch where error.kind == .missing {}
            for dir in dirs {
                for name in try storage.list("data/" + dir) where !plan.referenced.contains(name) {
                    guard let i = try storage.info("data/\(dir)/\(name)"), i.modified <= cutoff else { continue }
                    plan.looseObjects.append(name)
                    plan.bytesFreed += i.size
                }
            }
            plan.objectsRemoved += plan.looseObjects.count
        }
        try validate(plan, liveIn: liveIn, loose: looseV1)
        return plan
    }

    /// The plan's own consistency, checked before it runs: every live object stays in a kept
    /// pack, is copied out of a rewritten one, or is a loose object that stays.
    func validate(_ plan: PrunePlan, liveIn: [String: Set<String>], loose: Set<String>) throws(RepositoryError) {
        let deleted = Set(plan.dropPacks + plan.unindexedPacks)
        for (pack, live) in liveIn where !live.isEmpty && deleted.contains(pack) {
            throw RepositoryError(.corrupt, "prune stopped before changing anything: its plan would delete pack \(pack.prefix(12)), which holds \(live.count) live object(s); this is a bug in drplan, please report it")
        }
        if !Set(plan.looseObjects).isDisjoint(with: loose) {
            throw RepositoryError(.corrupt, "prune stopped before changing anything: its plan would delete a loose object still in use; this is a bug in drplan, please report it")
        }
    }

    func firstUser(of id: String, among names: [String]) throws(RepositoryError) -> String {
        for n in names {
            let s = try snapshot(n)
            if let e = s.entries.first(where: { $0.chunks?.contains(id) ?? false }) { return "'\(e.path)' in snapshot \(n.prefix(8))" }
        }
        return "a snapshot"
    }

    /// Carries out a validated plan. Crash-safe by ordering: snapshots are removed; live objects
    /// of rewritten packs are copied (each authenticated on the way) into new packs, made
    /// durable; one new index naming every kept object is written; the old index files are
    /// removed; and only then the packs nothing names any more.
    public func executePrune(_ plan: PrunePlan) throws(RepositoryError) -> (objects: Int, bytes: Int64) {
        for id in plan.forget { try storage.delete("snapshots/" + id) }
        if !plan.forget.isEmpty { try storage.syncDirectories(["snapshots"]) }
        var bytes: Int64 = 0
        if !plan.dropPacks.isEmpty || !plan.rewritePacks.isEmpty || !plan.vanishedPacks.isEmpty {
            let work = BackupWork(total: RunProgress(), progress: nil, present: StoredObjects(index: [:], packs: [], quarantined: [], hasLooseObjects: false))
            let worker = BackupWorker()
            let kept = Set(plan.kept.flatMap { $0.blobs.map(\.id) })
            do throws(RepositoryError) {
                var copied = Set<String>()
                for pack in plan.rewrite {
                    for b in pack.blobs where plan.referenced.contains(b.id) && !kept.contains(b.id) && copied.insert(b.id).inserted {
                        let sealed = try storage.readRange(packPath(pack.pack), offset: Int64(b.offset), length: Int(b.length))
                        _ = try authenticate(sealed, id: b.id)   // before it is copied
                        let writer = try worker.openPack(in: self, work: work)
                        try writer.append(b.id, sealed)
                        if writer.size >= packTarget { try finishPack(worker, work: work) }
                    }
                }
                try finishPack(worker, work: work)
                try work.flusher.drain()
                if !work.finishedPacks().isEmpty { try syncPackDirectories(work.finishedPacks()) }
                _ = try writeIndex(plan.kept + work.finishedPacks())
            } catch {
                work.discardPending()
                throw RepositoryError(error.kind, "prune stopped; nothing was deleted but the snapshots it was to forget: \(error.message)")
            }
            for name in plan.indexFiles where !plan.lockedIndexFiles.contains(name) { try storage.delete("index/" + name) }
            // The old index files must be gone for good before the packs they name are.
            try storage.syncDirectories(["index"])
            for pack in plan.rewritePacks + plan.dropPacks {
                bytes += try storage.info(packPath(pack))?.size ?? 0
                try storage.delete(packPath(pack))
            }
            for p in work.finishedPacks() { bytes -= try storage.info(packPath(p.pack))?.size ?? 0 }
        }
        for pack in plan.unindexedPacks {
            bytes += try storage.info(packPath(pack))?.size ?? 0
            try storage.delete(packPath(pack))
        }
        for id in plan.looseObjects {
            bytes += try storage.info(objectPath(id))?.size ?? 0
            try storage.delete(objectPath(id))
        }
        // Multipart uploads an interrupted backup left: prune holds the exclusive lock, so no
        // backup is uploading now.
        if let s3 = storage as? S3Storage { _ = try s3.abortUnfinishedUploads() }
        // Temporary files an interrupted write left, and damage markers of packs now gone.
        if let local = storage as? LocalStorage { try local.removeTemporaryFiles(in: ["", "index", "snapshots", "locks"], olderThan: plan.cutoff) }
        let packs = Set(try packNames())
        do {
            for marker in try storage.list("damaged") {
                let pack = marker.split(separator: ".").last.map(String.init) ?? ""
                if !packs.contains(pack) { try storage.delete("damaged/" + marker) }
            }
        } catch where error.kind == .missing {}
        try loadIndex()
        return (plan.objectsRemoved, max(0, bytes))
    }

    /// Removes the snapshots `ids` and the data nothing else uses (plan, then execute).
    public func collectGarbage(grace: TimeInterval = 3600) throws(RepositoryError) -> (objects: Int, bytes: Int64) {
        try executePrune(try planPrune(forget: [], grace: grace))
    }

    /// Removes snapshots (their manifests only; objects go in `collectGarbage`).
    public func forget(_ ids: Set<String>) throws(RepositoryError) {
        for id in ids where id.allSatisfy(\.isHexDigit) { try storage.delete("snapshots/" + id) }
    }
}
