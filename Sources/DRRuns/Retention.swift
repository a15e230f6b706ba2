import CEL
import DRInventory
import Foundation

/// restic's `forget --keep-*` semantics: a snapshot is kept when any rule keeps it.
/// - keep_last N: the N newest snapshots;
/// - keep_hourly/daily/weekly/monthly/yearly N: the newest snapshot in each of the N most
///   recent hours/days/ISO weeks/months/years that have a snapshot (UTC);
/// - keep_within D: every snapshot taken within D of the *newest* snapshot, so a backup that
///   stopped running never lets pruning delete everything.
public enum Retention {
    /// `snapshots` come oldest first, as engines list them; that order breaks ties between
    /// snapshots taken within one second.
    public static func keep(_ snapshots: [(id: String, time: Int64)], policy r: JobRetention) -> Set<String> {
        let sorted = snapshots.enumerated().sorted { ($0.element.time, $0.offset) > ($1.element.time, $1.offset) }.map(\.element)
        guard let newest = sorted.first else { return [] }
        var keep = Set<String>()
        if let n = r.keepLast { for s in sorted.prefix(n) { keep.insert(s.id) } }
        if let w = r.keepWithin { for s in sorted where newest.time - s.time <= w.seconds { keep.insert(s.id) } }
        let rules: [(Int?, (Int64) -> String)] = [
            (r.keepHourly, { bucket($0, "hour") }), (r.keepDaily, { bucket($0, "day") }), (r.keepWeekly, { bucket($0, "week") }),
            (r.keepMonthly, { bucket($0, "month") }), (r.keepYearly, { bucket($0, "year") }),
        ]
        for (count, key) in rules {
            guard var left = count, left > 0 else { continue }
            var last: String? = nil
            for s in sorted {
                let k = key(s.time)
                if k == last { continue }
                last = k
                keep.insert(s.id)
                left -= 1
                if left == 0 { break }
            }
        }
        return keep
    }

    static func bucket(_ t: Int64, _ unit: String) -> String {
        let day = Civil.floorDiv(Int(t), 86_400)
        let (y, m, d) = Civil.date(days: day)
        switch unit {
        case "hour": return "\(y)-\(m)-\(d)-\((Int(t) - day * 86_400) / 3600)"
        case "day": return "\(y)-\(m)-\(d)"
        case "week":
            let isoWeekday = (Civil.weekday(days: day) + 6) % 7 + 1
            let thursday = day - isoWeekday + 4
            let isoYear = Civil.date(days: thursday).year
            return "\(isoYear)-W\((thursday - Civil.days(year: isoYear, month: 1, day: 1)) / 7 + 1)"
        case "month": return "\(y)-\(m)"
        default: return "\(y)"
        }
    }
}

extension BuiltinRepository {
    /// Removes snapshots (their manifests only; objects go in `collectGarbage`).
    public func forget(_ ids: Set<String>) throws(RepositoryError) {
        for id in ids where id.allSatisfy(\.isHexDigit) {
            let url = root.appendingPathComponent("snapshots").appendingPathComponent(id)
            if unlink(url.path) != 0 && errno != ENOENT { throw RepositoryError(.io, "cannot remove snapshot \(id): \(String(cString: strerror(errno)))") }
        }
    }

    /// Deletes objects no snapshot references. Objects younger than `grace` are spared: a
    /// backup running at the same time may have stored them but not yet written its snapshot.
    ///
    /// A pack whose objects are all unreferenced is deleted; a pack with some still in use is
    /// rewritten with only those (each authenticated on the way). Crash-safe by ordering: the
    /// new packs are made durable, then one new index naming every kept object is written, then
    /// the old index files are removed, and only then the packs nothing names any more.
    public func collectGarbage(grace: TimeInterval = 3600) throws(RepositoryError) -> (objects: Int, bytes: Int64) {
        var referenced = Set<String>()
        for s in try snapshots() { for e in s.entries { for c in e.chunks ?? [] { referenced.insert(c) } } }
        let cutoff = Date().addingTimeInterval(-grace)
        let fm = FileManager.default
        func young(_ path: String) -> Bool {
            ((try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date).map { $0 > cutoff } ?? true
        }
        func size(_ path: String) -> Int64 { ((try? fm.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0 }
        var removed = 0, bytes: Int64 = 0

        // Packs, by what the index files say they hold.
        let indexDir = root.appendingPathComponent("index").path
        let indexFiles = ((try? fm.contentsOfDirectory(atPath: indexDir)) ?? []).filter(PackCodec.isId)
        var contents: [String: PackContents] = [:]
        for name in indexFiles { for p in try readIndexFile(name) { contents[p.pack] = p } }
        var keep: [PackContents] = [], rewrite: [PackContents] = [], drop: [String] = [], written: [String] = []
        for pack in contents.values.sorted(by: { $0.pack < $1.pack }) {
            let live = pack.blobs.filter { referenced.contains($0.id) }
            if live.count == pack.blobs.count || young(packURL(pack.pack).path) { keep.append(pack) }
            else if live.isEmpty { drop.append(pack.pack) }
            else { rewrite.append(pack) }
        }
        if !drop.isEmpty || !rewrite.isEmpty {
            let kept = Set(keep.flatMap { $0.blobs.map(\.id) })
            let work = BackupWork(total: RunProgress(), progress: nil, present: StoredObjects(index: [:], packs: [], hasLooseObjects: false))
            let worker = BackupWorker()
            do throws(RepositoryError) {
                var copied = Set<String>()
                for pack in rewrite {
                    for b in pack.blobs where referenced.contains(b.id) && !kept.contains(b.id) && copied.insert(b.id).inserted {
                        let sealed = try stored(b.id)
                        _ = try authenticate(sealed, id: b.id)   // before it is copied
                        let writer = try worker.openPack(in: self, work: work)
                        try writer.append(b.id, sealed)
                        if writer.size >= packTarget { try finishPack(worker, work: work) }
                    }
                }
                try finishPack(worker, work: work)
                try work.flusher.drain()
                try syncPackDirectories(work.finishedPacks())
                _ = try writeIndex(keep + work.finishedPacks())
            } catch {
                work.discardPending()
                throw error
            }
            for name in indexFiles where unlink(indexDir + "/" + name) != 0 && errno != ENOENT {
                throw RepositoryError(.io, "cannot remove the index file \(name): \(String(cString: strerror(errno)))")
            }
            // The old index files must be gone for good before the packs they name are.
            try Self.fsyncDirectory(indexDir)
            for pack in rewrite.map(\.pack) + drop {
                let path = packURL(pack).path
                let freed = size(path)
                if unlink(path) == 0 { bytes += freed }
            }
            written = work.finishedPacks().map(\.pack)
            removed = rewrite.reduce(0) { n, p in n + p.blobs.count(where: { !referenced.contains($0.id) }) } + drop.reduce(0) { $0 + (contents[$1]?.blobs.count ?? 0) }
            bytes -= written.reduce(Int64(0)) { $0 + size(packURL($1).path) }
            try loadIndex()
        }

        // What an interrupted backup leaves: packs no index names, temporary index and snapshot files.
        let indexed = Set(contents.keys).union(written)
        let packsDir = root.appendingPathComponent("packs").path
        for dir in (try? fm.contentsOfDirectory(atPath: packsDir)) ?? [] {
            for name in (try? fm.contentsOfDirectory(atPath: packsDir + "/" + dir)) ?? [] where !indexed.contains(name) {
                let path = packsDir + "/" + dir + "/" + name
                let freed = size(path)
                if !young(path), unlink(path) == 0 { bytes += freed }
            }
        }
        for sub in ["index", "snapshots"] {
            let dir = root.appendingPathComponent(sub).path
            for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(".tmp-") && !young(dir + "/" + name) { unlink(dir + "/" + name) }
        }

        // A version-1 repository's loose objects, one file each.
        let data = root.appendingPathComponent("data").path
        for dir in (try? fm.contentsOfDirectory(atPath: data)) ?? [] {
            // Leftover temporary objects (".tmp-…") are what an interrupted backup leaves; no snapshot names them.
            for name in (try? fm.contentsOfDirectory(atPath: data + "/" + dir)) ?? [] where !referenced.contains(name) {
                let path = data + "/" + dir + "/" + name
                if young(path) { continue }
                let freed = size(path)
                if unlink(path) == 0 { removed += 1; bytes += freed }
            }
        }
        return (removed, bytes)
    }
}
