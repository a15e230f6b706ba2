import CEL
import Foundation

extension BuiltinRepository {
    // MARK: repair

    /// Rebuilds the index from the packs' own trailers (restic's `repair index`): one new index
    /// file names every object of every pack whose trailer authenticates, except copies found
    /// damaged; then the old index files are removed. Returns what it did, one line each.
    /// Call under an exclusive lock.
    public func repairIndex() throws(RepositoryError) -> [String] {
        var lines: [String] = []
        let old = try indexFiles()
        var packs: [PackContents] = []
        var objects = 0
        let bad = indexLock.withLock { quarantined }
        for pack in try packNames() {
            do {
                var contents = try readTrailer(pack)
                let before = contents.blobs.count
                contents.blobs.removeAll { bad.contains($0.id + "." + pack) }
                if contents.blobs.count < before { lines.append("pack \(pack.prefix(12)): \(before - contents.blobs.count) damaged object(s) left out of the index") }
                objects += contents.blobs.count
                packs.append(contents)
            } catch where error.kind == .corrupt || error.kind == .missing {
                lines.append("pack \(pack.prefix(12)) has no readable trailer (\(error.message)); its objects cannot be indexed, and prune will remove it")
            }
        }
        _ = try writeIndex(packs)
        for name in old { try storage.delete("index/" + name) }
        try storage.syncDirectories(["index"])
        // The markers of left-out copies have done their work: the index no longer names them.
        do { for m in try storage.list("damaged") { try storage.delete("damaged/" + m) } } catch where error.kind == .missing {}
        try loadIndex()
        lines.append("index rebuilt from \(packs.count) pack(s): \(objects) object(s); \(old.count) old index file(s) replaced")
        return lines
    }

    /// Rewrites every snapshot that uses lost or damaged data (restic's `repair snapshots
    /// --forget`): the files whose data is gone are removed from a copy of the snapshot, which
    /// is written under a new id with the tag `repaired`, and the original is removed.
    /// Returns one line per snapshot changed, naming the files removed. Call under an
    /// exclusive lock, after `repairIndex` if the index was damaged.
    public func repairSnapshots(dryRun: Bool = false) throws(RepositoryError) -> [String] {
        try loadIndex()
        let packs = Set(try packNames())
        var sizes: [String: Int64] = [:]
        func usable(_ id: String) throws(RepositoryError) -> Bool {
            guard let loc = location(id) else {
                return try storage.info(objectPath(id)) != nil
            }
            guard packs.contains(loc.pack), !isQuarantined(id, loc) else { return false }
            if sizes[loc.pack] == nil { sizes[loc.pack] = try storage.info(packPath(loc.pack))?.size ?? -1 }
            return (sizes[loc.pack] ?? -1) >= Int64(loc.offset) + Int64(loc.length)
        }
        var lines: [String] = []
        for name in try snapshotNames() {
            let s: Snapshot
            do { s = try snapshot(name) } catch {
                lines.append("snapshot \(name.prefix(8)) cannot be read (\(error.message)); it is left as it is: restore it from another copy, or delete snapshots/\(name) by hand")
                continue
            }
            var removed: [String] = []
            var kept: [ManifestEntry] = []
            for e in s.entries {
                var intact = true
                if e.kind == .file { for c in e.chunks ?? [] where try !usable(c) { intact = false; break } }
                if !intact {
                    removed.append(e.path)
                } else {
                    kept.append(e)
                }
            }
            guard !removed.isEmpty else { continue }
            let listed = removed.prefix(10).map { RunMessages.quoted($0) }.joined(separator: ", ") + (removed.count > 10 ? " and \(removed.count - 10) more" : "")
            if dryRun {
                lines.append("snapshot \(name.prefix(8)) would lose \(removed.count) damaged file(s): \(listed)")
                continue
            }
            var repaired = s
            repaired.id = JSONWriter.hex(Self.randomBytes(16))
            repaired.entries = kept
            if !repaired.tags.contains("repaired") { repaired.tags.append("repaired") }
            try writeSnapshot(repaired)
            try storage.delete("snapshots/" + name)
            lines.append("snapshot \(name.prefix(8)) rewritten as \(repaired.id.prefix(8)) without \(removed.count) damaged file(s): \(listed)")
        }
        if lines.isEmpty { lines.append("every snapshot's data is present; nothing to repair") }
        return lines
    }
}
