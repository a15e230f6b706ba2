import CEL
import Foundation

/// Reading snapshots: listing, ids by prefix, headers without entries, and version-1 files.
extension BuiltinRepository {
    // MARK: snapshots

    /// Every snapshot, whole, oldest first; each file is read once. Any unreadable snapshot
    /// fails the call: what a listing leaves out, prune would treat as unreferenced.
    public func snapshots() throws(RepositoryError) -> [Snapshot] {
        var out: [Snapshot] = []
        for n in try snapshotNames() { out.append(try snapshot(n)) }
        return out.sorted { ($0.time, $0.timeNanos ?? 0, $0.id) < ($1.time, $1.timeNanos ?? 0, $1.id) }
    }

    /// The ids in `snapshots/`; throws when the folder cannot be listed.
    public func snapshotNames() throws(RepositoryError) -> [String] {
        do { return try storage.list("snapshots").filter { $0.allSatisfy(\.isHexDigit) } } catch where error.kind == .missing {
            throw RepositoryError(.corrupt, "the repository at \(storage.location) has no 'snapshots' folder; it is damaged or not a drplan repository")
        }
    }

    /// The snapshot whose id is `prefix` or starts with it (8 characters or more, and unique).
    public func resolveSnapshot(_ prefix: String) throws(RepositoryError) -> String {
        let names = try snapshotNames()
        if names.contains(prefix) { return prefix }
        guard prefix.count >= 8 else { throw RepositoryError(.config, "snapshot id '\(prefix)' is too short; give at least 8 characters") }
        let matches = names.filter { $0.hasPrefix(prefix.lowercased()) }
        guard matches.count == 1, let only = matches.first else {
            throw RepositoryError(matches.isEmpty ? .missing : .config, matches.isEmpty
                ? "no snapshot '\(prefix)' in the repository at \(storage.location); 'drplan snapshots' lists them"
                : "snapshot id '\(prefix)' is ambiguous: it starts \(matches.count) snapshots; give more characters")
        }
        return only
    }

    public func snapshot(_ id: String) throws(RepositoryError) -> Snapshot {
        let bytes = try snapshotFile(id)
        // Not a version-2 file (no header, or entries that do not open): try version 1.
        guard let (header, rest) = try? decodeHeader(id, bytes), let sealed = try? open(rest, aad: Array(("snapshot:" + id).utf8)) else {
            return try decodeVersion1(id, bytes, as: Snapshot.self)
        }
        // A version-2 file whose entries opened: what fails now is damage, and says which.
        let plain: [UInt8]
        do { plain = framesObjects ? try ObjectCodec.unframe(sealed, limit: Self.snapshotLimit) : sealed } catch {
            throw RepositoryError(.corrupt, "snapshot \(id) cannot be read (\(error.message))")
        }
        guard let entries = SnapshotCodec.decode(plain) else {
            // Unencrypted, opening proves nothing: the file may still be version 1.
            if encKey == nil { return try decodeVersion1(id, bytes, as: Snapshot.self) }
            throw RepositoryError(.corrupt, "snapshot \(id) cannot be read: its entries are not well-formed (damaged)")
        }
        return Snapshot(id: header.id, time: header.time, timeNanos: header.timeNanos, host: header.host, tags: header.tags, paths: header.paths, entries: entries)
    }

    /// The most a snapshot's entries may expand to (about ten million files).
    static let snapshotLimit = 1 << 30

    /// A snapshot without its entries: what listing and choosing a parent need.
    public struct SnapshotHeader: Codable, Sendable {
        public var id: String
        public var time: Int64
        public var timeNanos: Int32?
        public var host: String
        public var tags: [String]
        public var paths: [String]
        /// Bytes of file data (absent in snapshots written before it was recorded).
        public var size: Int64? = nil
    }

    /// Every snapshot's header, oldest first, by `(time, timeNanos, id)`.
    public func snapshotHeaders() throws(RepositoryError) -> [SnapshotHeader] {
        var out: [SnapshotHeader] = []
        for n in try snapshotNames() { out.append(try snapshotHeader(n)) }
        return out.sorted { ($0.time, $0.timeNanos ?? 0, $0.id) < ($1.time, $1.timeNanos ?? 0, $1.id) }
    }

    /// Reads only the start of a version-2 snapshot file; a version-1 file is decoded whole.
    func snapshotHeader(_ id: String) throws(RepositoryError) -> SnapshotHeader {
        let path = "snapshots/" + id
        guard id.allSatisfy(\.isHexDigit), let info = try storage.info(path) else { throw RepositoryError(.missing, "snapshot \(id) does not exist") }
        if info.size >= 8 {
            var prefix = ByteReader(try storage.readRange(path, offset: 0, length: 8))
            if prefix.take(4).map(Array.init) == SnapshotCodec.magic, let length = prefix.u32(), Int64(length) + 8 <= info.size,
               let header = try? decodeHeader(id, prefix.bytes + (try storage.readRange(path, offset: 8, length: Int(length)))).header {
                return header
            }
        }
        return try decodeVersion1(id, try snapshotFile(id), as: SnapshotHeader.self)
    }

    func snapshotFile(_ id: String) throws(RepositoryError) -> [UInt8] {
        guard id.allSatisfy(\.isHexDigit) else { throw RepositoryError(.missing, "snapshot \(id) does not exist") }
        do { return try storage.read("snapshots/" + id) } catch where error.kind == .missing {
            throw RepositoryError(.missing, "snapshot \(id) does not exist")
        }
    }

    /// The header of a version-2 snapshot file, and the sealed entries after it.
    func decodeHeader(_ id: String, _ bytes: [UInt8]) throws(RepositoryError) -> (header: SnapshotHeader, rest: ArraySlice<UInt8>) {
        var r = ByteReader(bytes)
        guard r.take(4).map(Array.init) == SnapshotCodec.magic, let length = r.u32(), let sealed = r.take(Int(length)),
              let header = try? JSONDecoder().decode(SnapshotHeader.self, from: Data(try open(sealed, aad: Array(("snapshot-header:" + id).utf8)))),
              header.id == id
        else { throw RepositoryError(.corrupt, "snapshot \(id) cannot be read (damaged)") }
        return (header, bytes[r.at...])
    }

    /// Version 1 sealed the whole snapshot as one JSON document. A version-2 file whose parts
    /// fail is also tried this way, so a version-1 nonce that happens to begin "DRS2" still reads.
    func decodeVersion1<T: Decodable>(_ id: String, _ stored: [UInt8], as: T.Type) throws(RepositoryError) -> T {
        guard let plain = try? open(stored, aad: Array(("snapshot:" + id).utf8)), let s = try? JSONDecoder().decode(T.self, from: Data(plain)) else {
            throw RepositoryError(.corrupt, "snapshot \(id) cannot be read (damaged: it fails authentication or cannot be decoded)")
        }
        return s
    }
}

extension BuiltinRepository {
    /// What the repository occupies: bytes and files (S3: objects), lock files included.
    /// On S3 one listing; on disk every file of the repository's folders.
    public func usage() throws(RepositoryError) -> (bytes: Int64, objects: Int) {
        if let s3 = storage as? S3Storage { return try s3.usage() }
        var bytes: Int64 = 0, objects = 0
        func add(_ path: String) throws(RepositoryError) {
            if let i = try storage.info(path) { bytes += i.size; objects += 1 }
        }
        try add("config")
        for dir in ["index", "snapshots", "locks", "damaged"] {
            let names: [String]
            do { names = try storage.list(dir) } catch where error.kind == .missing { continue }
            for n in names { try add(dir + "/" + n) }
        }
        for p in try packNames() { try add(packPath(p)) }
        var loose: [String] = []
        do { loose = try storage.list("data") } catch where error.kind == .missing {}
        for d in loose { for n in try storage.list("data/" + d) { try add("data/\(d)/\(n)") } }
        return (bytes, objects)
    }
}
