import CEL
import Crypto
import _CryptoExtras
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a repository operation failed. `permanent` errors will fail again on retry (wrong
/// passphrase, corrupt data, unsafe paths); the others (I/O) may not.
public struct RepositoryError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable { case notARepository, alreadyExists, wrongPassphrase, passphraseRequired, corrupt, unsafePath, targetNotEmpty, missingTool, io }
    public var kind: Kind
    public var message: String
    public var permanent: Bool { kind != .io }
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }
}

/// One entry of a snapshot: a file, a directory or a symlink, relative to the source root.
public struct ManifestEntry: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case file, dir, symlink }
    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var mtime: Int64
    public var mtimeNanos: Int32
    public var size: Int64
    /// SHA-256 of the plaintext, for verification after restore.
    public var sha256: String?
    public var chunks: [String]?
    public var target: String?
    /// Change time (ns since the epoch) and inode when backed up: with size and mtime, how the
    /// next backup knows a file is unchanged without reading it.
    public var ctime: Int64?
    public var inode: UInt64?
}

public struct Snapshot: Codable, Sendable {
    public var id: String
    public var time: Int64
    /// Sub-second part of `time`, so two snapshots in one second still have an order
    /// (absent in repositories written before it existed).
    public var timeNanos: Int32?
    public var host: String
    public var tags: [String]
    public var paths: [String]
    public var entries: [ManifestEntry]
}

public struct BackupSummary: Sendable {
    public var snapshot: String
    public var files: Int
    public var bytesRead: Int64
    /// Bytes of new objects stored (after deduplication, including encryption overhead).
    public var bytesWritten: Int64
    public var newObjects: Int
    /// Files not read again because the parent snapshot already had them, unchanged.
    public var filesReused: Int = 0
}

public struct RestoreReport: Sendable {
    public var files = 0
    public var bytes: Int64 = 0
    /// Files that could not be restored intact, with the reason (missing, corrupt or truncated object, checksum mismatch).
    public var damaged: [String: String] = [:]
}

/// drplan's own backup repository (docs/repository-format.md): content-addressed,
/// deduplicated, optionally encrypted with AES-256-GCM under a scrypt-derived key, every
/// object authenticated, every write crash-safe.
public final class BuiltinRepository: @unchecked Sendable {
    public let root: URL
    let encKey: SymmetricKey?
    let idKey: SymmetricKey?
    public static let chunkSize = 1 << 20
    /// The format this code writes. Version 1 stored each object as its own file under
    /// `data/`; version 2 packs them (docs/repository-format.md). Version 1 repositories are
    /// read as they are and upgraded by their next backup, their loose objects kept.
    public static let formatVersion = 2
    /// A pack is closed once it holds this many bytes. Fewer, larger files: creating one
    /// inode per 1 MiB chunk was a third of a version-1 backup's time.
    var packTarget: UInt32 = 16 << 20
    private var config: Config
    private let indexLock = NSLock()
    /// Every indexed object's location, loaded from `index/` when the repository is opened.
    private var blobIndex: [String: BlobLocation] = [:]

    struct Config: Codable {
        var version: Int
        var encryption: String
        var kdf: KDFParams?
        var keyCheck: String?
        struct KDFParams: Codable { var name: String; var n: Int; var r: Int; var p: Int; var salt: String }
    }

    private init(root: URL, encKey: SymmetricKey?, idKey: SymmetricKey?, config: Config) {
        self.root = root
        self.encKey = encKey
        self.idKey = idKey
        self.config = config
    }

    // MARK: create and open

    /// Creates a repository in `root` (which may exist but must not hold one). With a
    /// passphrase, everything stored is encrypted; the passphrase itself is never stored.
    public static func initialize(at root: URL, passphrase: String?, kdfRounds: Int = 1 << 15) throws(RepositoryError) -> BuiltinRepository {
        let configURL = root.appendingPathComponent("config")
        if FileManager.default.fileExists(atPath: configURL.path) { throw RepositoryError(.alreadyExists, "a repository already exists at \(root.path)") }
        for dir in ["packs", "index", "snapshots"] {
            try Self.io { try FileManager.default.createDirectory(at: root.appendingPathComponent(dir), withIntermediateDirectories: true) }
        }
        var config = Config(version: formatVersion, encryption: "none", kdf: nil, keyCheck: nil)
        var repo = BuiltinRepository(root: root, encKey: nil, idKey: nil, config: config)
        if let passphrase {
            let salt = randomBytes(32)
            let params = Config.KDFParams(name: "scrypt", n: kdfRounds, r: 8, p: 1, salt: Data(salt).base64EncodedString())
            let (enc, id) = try deriveKeys(passphrase, params)
            config = Config(version: formatVersion, encryption: "aes-256-gcm", kdf: params, keyCheck: nil)
            repo = BuiltinRepository(root: root, encKey: enc, idKey: id, config: config)
            config.keyCheck = try repo.seal(Array("drplan-repository".utf8), aad: Array("config".utf8)).base64EncodedString()
            repo.config = config
        }
        let data = try Self.io { try JSONEncoder().encode(config) }
        try atomicWrite(data, to: configURL)
        return repo
    }

    /// Opens a repository; a wrong passphrase is a permanent error, checked before anything is read.
    public static func open(at root: URL, passphrase: String?) throws(RepositoryError) -> BuiltinRepository {
        guard let data = FileManager.default.contents(atPath: root.appendingPathComponent("config").path),
              let config = try? JSONDecoder().decode(Config.self, from: data)
        else { throw RepositoryError(.notARepository, "\(root.path) holds no drplan repository (no readable 'config'); run a backup to create one") }
        guard (1...formatVersion).contains(config.version) else {
            throw RepositoryError(.notARepository, "the repository at \(root.path) has format version \(config.version), newer than this drplan reads (\(formatVersion)); upgrade drplan")
        }
        guard config.encryption == "aes-256-gcm", let params = config.kdf, let check = config.keyCheck.flatMap({ Data(base64Encoded: $0) }) else {
            let repo = BuiltinRepository(root: root, encKey: nil, idKey: nil, config: config)
            try repo.loadIndex()
            return repo
        }
        guard let passphrase else { throw RepositoryError(.passphraseRequired, "the repository at \(root.path) is encrypted; give the job's passphrase secret (encryption.passphrase)") }
        let (enc, id) = try deriveKeys(passphrase, params)
        let repo = BuiltinRepository(root: root, encKey: enc, idKey: id, config: config)
        guard (try? repo.open(check, aad: Array("config".utf8))) == Array("drplan-repository".utf8) else {
            throw RepositoryError(.wrongPassphrase, "wrong passphrase for the repository at \(root.path); nothing was read or written")
        }
        try repo.loadIndex()
        return repo
    }

    /// The format version in the repository's `config`.
    public var version: Int { config.version }

    /// A version-1 repository becomes version 2 before its first pack is written, so an older
    /// drplan refuses it rather than reporting the packed objects as missing.
    func upgradeFormat() throws(RepositoryError) {
        guard config.version < Self.formatVersion else { return }
        for dir in ["packs", "index"] {
            try Self.io { try FileManager.default.createDirectory(at: root.appendingPathComponent(dir), withIntermediateDirectories: true) }
        }
        var upgraded = config
        upgraded.version = Self.formatVersion
        let data = try Self.io { try JSONEncoder().encode(upgraded) }
        try Self.atomicWrite(data, to: root.appendingPathComponent("config"))
        config = upgraded
    }

    static func deriveKeys(_ passphrase: String, _ p: Config.KDFParams) throws(RepositoryError) -> (SymmetricKey, SymmetricKey) {
        guard let salt = Data(base64Encoded: p.salt), p.name == "scrypt" else { throw RepositoryError(.corrupt, "the repository's key parameters are damaged") }
        do {
            let key = try KDF.Scrypt.deriveKey(from: Array(passphrase.utf8), salt: salt, outputByteCount: 64, rounds: p.n, blockSize: p.r, parallelism: p.p)
            let bytes = key.withUnsafeBytes { Array($0) }
            return (SymmetricKey(data: bytes[0..<32]), SymmetricKey(data: bytes[32..<64]))
        } catch {
            throw RepositoryError(.io, "key derivation failed: \(error)")
        }
    }

    // MARK: objects

    /// Keyed with the repository's id key when encrypted, so ids reveal nothing about content.
    func objectId(_ plaintext: some DataProtocol) -> String {
        if let idKey { return JSONWriter.hex(HMAC<SHA256>.authenticationCode(for: plaintext, using: idKey)) }
        return JSONWriter.hex(SHA256.hash(data: plaintext))
    }

    /// Where a version-1 repository kept an object, as a file of its own.
    func objectURL(_ id: String) -> URL {
        root.appendingPathComponent("data").appendingPathComponent(String(id.prefix(2))).appendingPathComponent(id)
    }

    func packURL(_ pack: String) -> URL {
        root.appendingPathComponent("packs").appendingPathComponent(String(pack.prefix(2))).appendingPathComponent(pack)
    }

    /// Where an object is stored, or nil when no index names it.
    public func location(_ id: String) -> BlobLocation? { indexLock.withLock { blobIndex[id] } }

    /// Reads every index file. A damaged one is an error: the objects it names would
    /// otherwise look missing and be stored again, or their files reported as lost.
    func loadIndex() throws(RepositoryError) {
        let dir = root.appendingPathComponent("index").path
        var index: [String: BlobLocation] = [:]
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where PackCodec.isId(name) {
            for pack in try readIndexFile(name) {
                for b in pack.blobs { index[b.id] = BlobLocation(pack: pack.pack, offset: b.offset, length: b.length) }
            }
        }
        indexLock.withLock { blobIndex = index }
    }

    func readIndexFile(_ name: String) throws(RepositoryError) -> [PackContents] {
        let path = root.appendingPathComponent("index").appendingPathComponent(name).path
        guard let stored = FileManager.default.contents(atPath: path) else { throw RepositoryError(.io, "cannot read the index file \(path)") }
        guard let plain = try? open(stored, aad: Array(("index:" + name).utf8)), let packs = PackCodec.decode(plain) else {
            throw RepositoryError(.corrupt, "the index file \(path) is damaged (it fails authentication or cannot be decoded); restore the repository's 'index' folder from a copy of the repository")
        }
        return packs
    }

    /// Written atomically, after the packs it names are durable.
    func writeIndex(_ packs: [PackContents]) throws(RepositoryError) -> String {
        let name = JSONWriter.hex(Self.randomBytes(32))
        let sealed = try seal(PackCodec.encode(packs), aad: Array(("index:" + name).utf8))
        try Self.atomicWrite(sealed, to: root.appendingPathComponent("index").appendingPathComponent(name))
        indexLock.withLock {
            for p in packs { for b in p.blobs { blobIndex[b.id] = BlobLocation(pack: p.pack, offset: b.offset, length: b.length) } }
        }
        return name
    }

    func seal(_ plaintext: [UInt8], aad: [UInt8]) throws(RepositoryError) -> Data {
        guard let encKey else { return Data(plaintext) }
        do { return try AES.GCM.seal(plaintext, using: encKey, authenticating: aad).combined ?? Data() } catch {
            throw RepositoryError(.io, "encryption failed: \(error)")
        }
    }

    func open(_ stored: some DataProtocol, aad: [UInt8]) throws(RepositoryError) -> [UInt8] {
        guard let encKey else { return [UInt8](stored) }
        do {
            let box = try AES.GCM.SealedBox(combined: stored)
            return [UInt8](try AES.GCM.open(box, using: encKey, authenticating: aad))
        } catch {
            throw RepositoryError(.corrupt, "object failed authentication")
        }
    }

    /// Reads and authenticates an object: a flipped bit, a truncation or a missing file is an error.
    /// Encrypted, AES-GCM's tag covers the ciphertext and the id (as associated data), which
    /// only the key's holder can produce, so the id's HMAC is not computed again: that was a
    /// third of a restore's hashing. Unencrypted, recomputing the id is the only check.
    func get(_ id: String) throws(RepositoryError) -> [UInt8] {
        try authenticate(try stored(id), id: id)
    }

    /// The plaintext of an object's stored bytes, once they prove to be that object.
    func authenticate(_ sealed: [UInt8], id: String) throws(RepositoryError) -> [UInt8] {
        let plain = try open(sealed, aad: Array(id.utf8))
        guard encKey != nil || objectId(plain) == id else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) does not match its id (corrupt or truncated)") }
        return plain
    }

    /// An object's stored (sealed) bytes, from its pack or, in a version-1 repository, its own file.
    func stored(_ id: String) throws(RepositoryError) -> [UInt8] {
        guard let loc = location(id) else {
            guard let loose = FileManager.default.contents(atPath: objectURL(id).path) else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) is missing") }
            return [UInt8](loose)
        }
        // A stored object is at most a chunk plus the nonce and tag; a larger length is a
        // damaged (unencrypted, so unauthenticated) index, not an allocation to attempt.
        guard Int(loc.length) <= Self.chunkSize + 64 else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) has an impossible length in the index; the index is damaged") }
        let fd = Glibc.open(packURL(loc.pack).path, O_RDONLY)
        guard fd >= 0 else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) is missing: its pack \(loc.pack.prefix(12)) cannot be read (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var complete = true
        // Not zero-filled first: every byte is read into, or the object is refused.
        let bytes = [UInt8](unsafeUninitializedCapacity: Int(loc.length)) { buffer, count in
            var done = 0
            while done < buffer.count, let base = buffer.baseAddress {
                let n = pread(fd, base + done, buffer.count - done, off_t(loc.offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
            complete = done == buffer.count
            count = done
        }
        guard complete else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) is truncated: its pack \(loc.pack.prefix(12)) ends early") }
        return bytes
    }

    // MARK: backup

    /// Backs up `paths` (directories or files) into a new snapshot. The snapshot becomes
    /// visible only after every object it needs is durable.
    ///
    /// - A file whose size, mtime, ctime and inode match the latest snapshot with the same tags
    ///   and paths (the parent), and whose objects are all present, is not read again: its
    ///   chunks are reused, as restic does. Changing a file always changes its ctime.
    /// - Files are read, hashed and encrypted on every core, largest first so the big ones
    ///   overlap; the manifest keeps walk order whatever the order of work.
    /// - New objects go into packs (one open per worker); finished packs are fsynced in the
    ///   background while hashing goes on. Once all are durable, an index file names them,
    ///   then the snapshot is written. So no index names data a crash could lose; a crash
    ///   leaves only packs no index names, which prune removes.
    public func backup(paths: [String], exclude: [String] = [], tags: [String] = [], host: String = ProcessInfo.processInfo.hostName,
                       progress: ProgressSink? = nil) throws(RepositoryError) -> BackupSummary {
        var entries: [ManifestEntry] = []
        var files: [(index: Int, full: String)] = []
        for base in paths {
            let root = URL(fileURLWithPath: base).path
            var rootStat = stat()
            guard lstat(root, &rootStat) == 0 else { throw RepositoryError(.io, "cannot read \(root): \(String(cString: strerror(errno)))") }
            var stack: [(rel: String, st: stat)] = [("", rootStat)]
            while let (rel, st) = stack.popLast() {
                let full = rel.isEmpty ? root : root + "/" + rel
                if !rel.isEmpty, Self.excluded(rel, exclude) { continue }
                let mode = UInt32(st.st_mode) & 0o7777
                let type = st.st_mode & S_IFMT
                var entry = ManifestEntry(path: rel, kind: .file, mode: mode, mtime: Int64(st.st_mtim.tv_sec), mtimeNanos: Int32(st.st_mtim.tv_nsec), size: 0)
                if type == S_IFDIR {
                    entry.kind = .dir
                    for (name, childStat) in try Self.children(of: full).reversed() { stack.append((rel.isEmpty ? name : rel + "/" + name, childStat)) }
                } else if type == S_IFLNK {
                    entry.kind = .symlink
                    entry.target = try? FileManager.default.destinationOfSymbolicLink(atPath: full)
                } else if type == S_IFREG {
                    entry.size = Int64(st.st_size)
                    entry.ctime = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
                    entry.inode = UInt64(st.st_ino)
                    files.append((entries.count, full))
                } else {
                    continue   // sockets, devices, fifos are not backed up
                }
                entries.append(entry)
            }
        }
        try upgradeFormat()
        let present = storedObjects()
        let parent = latestSnapshot(tags: tags, paths: paths)
        let known = Dictionary((parent?.entries ?? []).filter { $0.kind == .file }.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var toRead: [(index: Int, full: String)] = []
        var reused: Int64 = 0
        for f in files {
            let e = entries[f.index]
            if let p = known[e.path], p.size == e.size, p.mtime == e.mtime, p.mtimeNanos == e.mtimeNanos, p.ctime != nil, p.ctime == e.ctime,
               p.inode == e.inode, let chunks = p.chunks, let digest = p.sha256, chunks.allSatisfy({ present.contains($0, in: self) }) {
                entries[f.index].chunks = chunks
                entries[f.index].sha256 = digest
                reused += e.size
            } else {
                toRead.append(f)
            }
        }
        toRead.sort { entries[$0.index].size > entries[$1.index].size }
        let totalBytes = files.reduce(Int64(0)) { $0 + entries[$1.index].size }
        let work = BackupWork(total: RunProgress(files: Int64(files.count - toRead.count), bytes: reused, totalFiles: Int64(files.count), totalBytes: totalBytes),
                              progress: progress, present: present)
        let snapshotEntries = entries, queue = toRead
        // Each worker has its own read buffer (allocating and zeroing 1 MiB per file was 3% of
        // a backup) and its own open pack, closed when full and when the worker runs out of files.
        work.forEach(queue.count, local: { BackupWorker() }, { (worker: inout BackupWorker, i: Int) throws(RepositoryError) in
            work.finish(index: queue[i].index, try self.storeFile(queue[i].full, worker: worker, work: work))
        }, done: { (worker: inout BackupWorker) throws(RepositoryError) in
            try self.finishPack(worker, work: work)
        })
        var final = snapshotEntries
        let result = work.results()
        if let error = result.error {
            work.discardPending()
            throw error
        }
        for (index, stored) in result.stored {
            final[index].chunks = stored.chunks
            final[index].size = stored.size   // what was read is what is recorded
            final[index].sha256 = stored.sha256
        }
        try commitPending(work)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let snapshot = Snapshot(id: JSONWriter.hex(Self.randomBytes(16)), time: Int64(now.tv_sec), timeNanos: Int32(now.tv_nsec), host: host, tags: tags, paths: paths, entries: final)
        try writeSnapshot(snapshot)
        let read = result.stored.reduce(Int64(0)) { $0 + $1.value.size } + reused
        return BackupSummary(snapshot: snapshot.id, files: files.count, bytesRead: read, bytesWritten: result.written, newObjects: result.newObjects,
                             filesReused: files.count - toRead.count)
    }

    /// The newest snapshot with exactly these tags and paths, whose unchanged files a backup
    /// need not read again; nil when there is none or it cannot be read.
    func latestSnapshot(tags: [String], paths: [String]) -> Snapshot? {
        guard let all = try? snapshotHeaders(), let latest = all.last(where: { $0.tags == tags && $0.paths == paths }) else { return nil }
        return try? snapshot(latest.id)
    }

    /// The objects a backup may take as stored: indexed in a pack that is there, or (version 1)
    /// a file of their own. A lost pack makes its objects be stored again rather than trusted.
    struct StoredObjects: Sendable {
        var index: [String: BlobLocation]
        var packs: Set<String>
        var hasLooseObjects: Bool

        func contains(_ id: String, in repository: BuiltinRepository) -> Bool {
            if let loc = index[id] { return packs.contains(loc.pack) }
            guard hasLooseObjects else { return false }
            var st = stat()
            return stat(repository.objectURL(id).path, &st) == 0 && st.st_size > 0
        }
    }

    func storedObjects() -> StoredObjects {
        let index = indexLock.withLock { blobIndex }
        var st = stat()
        let packs = Set(index.values.map(\.pack)).filter { stat(packURL($0).path, &st) == 0 }
        return StoredObjects(index: index, packs: packs, hasLooseObjects: stat(root.appendingPathComponent("data").path, &st) == 0)
    }

    /// A directory's entries with their `lstat`, sorted by name (`fstatat` on the open
    /// directory, not a path lookup per file). An unreadable directory is an error, not an
    /// empty one: skipping it would make a snapshot silently incomplete. An entry removed
    /// while the walk runs is left out.
    static func children(of dir: String) throws(RepositoryError) -> [(name: String, st: stat)] {
        guard let d = opendir(dir) else { throw RepositoryError(.io, "cannot read the directory \(dir): \(String(cString: strerror(errno))); check its permissions or exclude it") }
        defer { closedir(d) }
        let fd = dirfd(d)
        var out: [(name: String, st: stat)] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name == "." || name == ".." { continue }
            var st = stat()
            guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT { continue }
                throw RepositoryError(.io, "cannot read \(dir)/\(name): \(String(cString: strerror(errno)))")
            }
            out.append((name, st))
        }
        return out.sorted { $0.name < $1.name }
    }

    static func excluded(_ rel: String, _ patterns: [String]) -> Bool {
        // Most assets exclude nothing; bridging every path to NSString was 6% of an incremental.
        if patterns.isEmpty { return false }
        let name = (rel as NSString).lastPathComponent
        return patterns.contains { fnmatch($0, rel, 0) == 0 || fnmatch($0, name, 0) == 0 }
    }

    struct StoredFile: Sendable { var chunks: [String]; var size: Int64; var sha256: String }

    /// Reads a file in fixed-size chunks, storing each new one; what was read is what is recorded.
    func storeFile(_ path: String, worker: BackupWorker, work: BackupWork) throws(RepositoryError) -> StoredFile {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot open \(path) for reading: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var chunks: [String] = [], size: Int64 = 0
        var digest = SHA256()
        while true {
            var filled = 0
            while filled < Self.chunkSize {
                let n = worker.buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, Self.chunkSize - filled) }
                if n < 0 { if errno == EINTR { continue }; throw RepositoryError(.io, "cannot read \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            let chunk = filled == Self.chunkSize ? worker.buffer : Array(worker.buffer[0..<filled])
            digest.update(data: chunk)
            chunks.append(try putPending(chunk, worker: worker, work: work))
            size += Int64(filled)
            work.advance(bytes: Int64(filled))
            if filled < Self.chunkSize { break }
        }
        return StoredFile(chunks: chunks, size: size, sha256: JSONWriter.hex(digest.finalize()))
    }

    /// Appends an object to the worker's pack unless it is stored or this backup already has it.
    func putPending(_ plaintext: [UInt8], worker: BackupWorker, work: BackupWork) throws(RepositoryError) -> String {
        let id = objectId(plaintext)
        if work.present.contains(id, in: self) || !work.claim(id) { return id }
        let sealed = try seal(plaintext, aad: Array(id.utf8))
        let pack = try worker.openPack(in: self, work: work)
        try pack.append(id, sealed)
        work.wrote(bytes: sealed.count)
        if pack.size >= packTarget { try finishPack(worker, work: work) }
        return id
    }

    /// Closes the worker's pack, if it has one, with its sealed trailer, and hands it to the
    /// flusher, so the worker goes on hashing while the pack reaches the disk.
    func finishPack(_ worker: BackupWorker, work: BackupWork) throws(RepositoryError) {
        guard let pack = worker.pack else { return }
        worker.pack = nil
        let trailer = try seal(PackCodec.encode([PackContents(pack: pack.id, blobs: pack.blobs)]), aad: Array(("pack:" + pack.id).utf8))
        work.packDone(try pack.finish(trailer: [UInt8](trailer)))
        work.flusher.flush(pack)
    }

    /// Waits until every new pack is durable, makes their directory entries durable, then
    /// writes the index that names their objects, before any snapshot may name them.
    func commitPending(_ work: BackupWork) throws(RepositoryError) {
        try work.flusher.drain()
        let packs = work.finishedPacks()
        guard !packs.isEmpty else { return }
        try syncPackDirectories(packs)
        _ = try writeIndex(packs)
    }

    /// Makes the directory entries of new packs durable: each pack's fan-out directory, and
    /// `packs/` itself, which may have gained fan-out directories.
    func syncPackDirectories(_ packs: [PackContents]) throws(RepositoryError) {
        for dir in Set(packs.map { packURL($0.pack).deletingLastPathComponent().path }).sorted() + [root.appendingPathComponent("packs").path] {
            try Self.fsyncDirectory(dir)
        }
    }

    /// Written last, atomically: a snapshot exists only once every object it names is durable.
    /// `"DRS2"`, u32 length of the sealed header, the sealed header (JSON), the sealed entries
    /// (binary): listing snapshots reads only the small header.
    func writeSnapshot(_ s: Snapshot) throws(RepositoryError) {
        let header = SnapshotHeader(id: s.id, time: s.time, timeNanos: s.timeNanos, host: s.host, tags: s.tags, paths: s.paths)
        let json = try Self.io { try JSONEncoder().encode(header) }
        let sealedHeader = try seal([UInt8](json), aad: Array(("snapshot-header:" + s.id).utf8))
        var out = ByteWriter(bytes: SnapshotCodec.magic)
        out.u32(UInt32(sealedHeader.count))
        out.bytes += sealedHeader
        out.bytes += try seal(SnapshotCodec.encode(s.entries), aad: Array(("snapshot:" + s.id).utf8))
        try Self.atomicWrite(Data(out.bytes), to: root.appendingPathComponent("snapshots").appendingPathComponent(s.id))
    }

    // MARK: snapshots

    /// Every snapshot, whole, oldest first; each file is read once.
    public func snapshots() throws(RepositoryError) -> [Snapshot] {
        var out: [Snapshot] = []
        for n in snapshotNames() { out.append(try snapshot(n)) }
        return out.sorted { ($0.time, $0.timeNanos ?? 0, $0.id) < ($1.time, $1.timeNanos ?? 0, $1.id) }
    }

    func snapshotNames() -> [String] {
        let dir = root.appendingPathComponent("snapshots").path
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }
    }

    public func snapshot(_ id: String) throws(RepositoryError) -> Snapshot {
        let bytes = try snapshotFile(id)
        if let (header, rest) = try? decodeHeader(id, bytes), let plain = try? open(rest, aad: Array(("snapshot:" + id).utf8)),
           let entries = SnapshotCodec.decode(plain) {
            return Snapshot(id: header.id, time: header.time, timeNanos: header.timeNanos, host: header.host, tags: header.tags, paths: header.paths, entries: entries)
        }
        return try decodeVersion1(id, bytes, as: Snapshot.self)
    }

    /// A snapshot without its entries: what listing and choosing a parent need.
    public struct SnapshotHeader: Codable, Sendable {
        public var id: String
        public var time: Int64
        public var timeNanos: Int32?
        public var host: String
        public var tags: [String]
        public var paths: [String]
    }

    /// Every snapshot's header, oldest first, by `(time, timeNanos, id)`.
    public func snapshotHeaders() throws(RepositoryError) -> [SnapshotHeader] {
        var out: [SnapshotHeader] = []
        for n in snapshotNames() { out.append(try snapshotHeader(n)) }
        return out.sorted { ($0.time, $0.timeNanos ?? 0, $0.id) < ($1.time, $1.timeNanos ?? 0, $1.id) }
    }

    /// Reads only the start of a version-2 snapshot file; a version-1 file is decoded whole.
    func snapshotHeader(_ id: String) throws(RepositoryError) -> SnapshotHeader {
        guard id.allSatisfy(\.isHexDigit), let h = FileHandle(forReadingAtPath: root.appendingPathComponent("snapshots").appendingPathComponent(id).path) else {
            throw RepositoryError(.corrupt, "snapshot \(id) does not exist")
        }
        defer { try? h.close() }
        var prefix = ByteReader(Array((try? h.read(upToCount: 8)) ?? Data()))
        if prefix.take(4).map(Array.init) == SnapshotCodec.magic, let length = prefix.u32(), let sealed = try? h.read(upToCount: Int(length)),
           let header = try? decodeHeader(id, prefix.bytes + Array(sealed)).header {
            return header
        }
        return try decodeVersion1(id, try snapshotFile(id), as: SnapshotHeader.self)
    }

    func snapshotFile(_ id: String) throws(RepositoryError) -> [UInt8] {
        guard id.allSatisfy(\.isHexDigit), let stored = FileManager.default.contents(atPath: root.appendingPathComponent("snapshots").appendingPathComponent(id).path) else {
            throw RepositoryError(.corrupt, "snapshot \(id) does not exist")
        }
        return [UInt8](stored)
    }

    /// The header of a version-2 snapshot file, and the sealed entries after it.
    func decodeHeader(_ id: String, _ bytes: [UInt8]) throws(RepositoryError) -> (header: SnapshotHeader, rest: ArraySlice<UInt8>) {
        var r = ByteReader(bytes)
        guard r.take(4).map(Array.init) == SnapshotCodec.magic, let length = r.u32(), let sealed = r.take(Int(length)),
              let header = try? JSONDecoder().decode(SnapshotHeader.self, from: Data(try open(sealed, aad: Array(("snapshot-header:" + id).utf8)))),
              header.id == id
        else { throw RepositoryError(.corrupt, "snapshot \(id) cannot be read") }
        return (header, bytes[r.at...])
    }

    /// Version 1 sealed the whole snapshot as one JSON document. A version-2 file whose parts
    /// fail is also tried this way, so a version-1 nonce that happens to begin "DRS2" still reads.
    func decodeVersion1<T: Decodable>(_ id: String, _ stored: [UInt8], as: T.Type) throws(RepositoryError) -> T {
        let plain = try open(stored, aad: Array(("snapshot:" + id).utf8))
        guard let s = try? JSONDecoder().decode(T.self, from: Data(plain)) else { throw RepositoryError(.corrupt, "snapshot \(id) cannot be read") }
        return s
    }

    // MARK: check

    /// The repository's own consistency, beyond what a restore read: every object of every
    /// snapshot is indexed in a pack that exists and is long enough (or, in a version-1
    /// repository, is a file of its own). Reads no object data; restores authenticate what
    /// they read. Returns the problems, one per damaged pack or missing object, at most 20.
    public func check() throws(RepositoryError) -> [String] {
        var problems: [String] = []
        var packSizes: [String: Int64] = [:]
        var reported = Set<String>()
        var checked = Set<String>()
        func packSize(_ pack: String) -> Int64 {
            if let known = packSizes[pack] { return known }
            var st = stat()
            let size = stat(packURL(pack).path, &st) == 0 ? Int64(st.st_size) : -1
            packSizes[pack] = size
            return size
        }
        for snapshot in try snapshots() {
            for e in snapshot.entries where e.kind == .file {
                for c in e.chunks ?? [] where checked.insert(c).inserted {
                    if let loc = location(c) {
                        let size = packSize(loc.pack)
                        guard size < Int64(loc.offset) + Int64(loc.length), reported.insert(loc.pack).inserted else { continue }
                        problems.append(size < 0
                            ? "pack \(loc.pack.prefix(12)) is missing; it holds data of '\(e.path)' in snapshot \(snapshot.id.prefix(8))"
                            : "pack \(loc.pack.prefix(12)) is truncated; it holds data of '\(e.path)' in snapshot \(snapshot.id.prefix(8))")
                    } else {
                        var st = stat()
                        if stat(objectURL(c).path, &st) != 0 || st.st_size == 0 {
                            problems.append("object \(c.prefix(12)) of '\(e.path)' in snapshot \(snapshot.id.prefix(8)) is missing from the index")
                        }
                    }
                    if problems.count >= 20 { return problems }
                }
            }
        }
        return problems
    }

    // MARK: restore

    /// Restores a snapshot into `target` (absent or empty). Refuses paths that would escape the
    /// target (`..`, absolute paths) and never writes through a symlink found in the target.
    /// Every restored file is checked against the manifest's SHA-256; damage is reported per file.
    public func restore(_ snapshotId: String, to target: URL, force: Bool = false, only: ((ManifestEntry) -> Bool)? = nil,
                        progress: ProgressSink? = nil) throws(RepositoryError) -> RestoreReport {
        let s = try snapshot(snapshotId)
        for e in s.entries where !e.path.isEmpty {
            let parts = e.path.split(separator: "/", omittingEmptySubsequences: false)
            if e.path.hasPrefix("/") || parts.contains("..") || parts.contains("") || parts.contains(".") {
                throw RepositoryError(.unsafePath, "snapshot \(snapshotId) names '\(e.path)', which would be written outside the target; refusing to restore it")
            }
        }
        let fm = FileManager.default
        if fm.fileExists(atPath: target.path) {
            if !force, !((try? fm.contentsOfDirectory(atPath: target.path))?.isEmpty ?? false) {
                throw RepositoryError(.targetNotEmpty, "\(target.path) is not empty; restore into an empty or new directory")
            }
        } else {
            try Self.io { try fm.createDirectory(at: target, withIntermediateDirectories: true) }
        }
        let selected = s.entries.filter { $0.path.isEmpty || (only?($0) ?? true) }
        // Directories and links first, in path order, so every file's parent exists; then the
        // files on every core, largest first.
        var files: [ManifestEntry] = []
        for e in selected.sorted(by: { $0.path < $1.path }) where !e.path.isEmpty {
            let dest = target.path + "/" + e.path
            try Self.refuseSymlinkAncestors(of: e.path, in: target.path)
            try Self.makeParents(e.path, in: target.path)
            switch e.kind {
            case .dir:
                if mkdir(dest, 0o700) != 0 && errno != EEXIST { throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))") }
            case .symlink:
                if symlink(e.target ?? "", dest) != 0 { throw RepositoryError(.io, "cannot create symlink \(dest): \(String(cString: strerror(errno)))") }
            case .file:
                files.append(e)
            }
        }
        files.sort { $0.size > $1.size }
        let totalBytes = files.reduce(Int64(0)) { $0 + $1.size }
        let work = RestoreWork(total: RunProgress(totalFiles: Int64(files.count), totalBytes: totalBytes), progress: progress)
        let queue = files, targetPath = target.path
        work.forEach(queue.count, local: {}) { (_: inout Void, i: Int) throws(RepositoryError) in
            try self.restoreFile(queue[i], into: targetPath, work: work)
        }
        if let error = work.error { throw error }
        let report = work.report
        // Directories last, deepest first, so their mtimes survive the files written into them.
        for e in selected.filter({ $0.kind == .dir }).sorted(by: { $0.path > $1.path }) {
            let dest = e.path.isEmpty ? target.path : target.path + "/" + e.path
            chmod(dest, mode_t(e.mode))
            var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos)), timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos))]
            utimensat(AT_FDCWD, dest, &times, AT_SYMLINK_NOFOLLOW)
        }
        return report
    }

    /// Writes one file, created exclusively and never through a link, checking every chunk's
    /// authentication and the whole file's SHA-256; damage is recorded, not thrown.
    func restoreFile(_ e: ManifestEntry, into target: String, work: RestoreWork) throws(RepositoryError) {
        let dest = target + "/" + e.path
        let fd = Glibc.open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))") }
        var digest = SHA256()
        var problem: String? = nil
        var written: Int64 = 0
        for id in e.chunks ?? [] {
            do throws(RepositoryError) {
                let bytes = try get(id)
                digest.update(data: bytes)
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n != bytes.count { problem = "write failed"; break }
                written += Int64(n)
                work.advance(bytes: Int64(n))
            } catch {
                problem = error.message
                break
            }
        }
        if problem == nil, JSONWriter.hex(digest.finalize()) != e.sha256 { problem = "content does not match the snapshot's SHA-256" }
        fchmod(fd, mode_t(e.mode))
        var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos)), timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos))]
        futimens(fd, &times)
        close(fd)
        work.finish(e.path, bytes: written, problem: problem)
    }

    /// Every existing component between the target and the entry must be a real directory.
    static func refuseSymlinkAncestors(of rel: String, in target: String) throws(RepositoryError) {
        var path = target
        for part in rel.split(separator: "/") {
            path += "/" + part
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK {
                throw RepositoryError(.unsafePath, "\(path) is a symlink inside the restore target; refusing to write through it")
            }
        }
    }

    static func makeParents(_ rel: String, in target: String) throws(RepositoryError) {
        var path = target
        for part in rel.split(separator: "/").dropLast() {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw RepositoryError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
        }
    }

    // MARK: helpers

    /// Temporary name, write, fsync, rename, fsync the directory: readers see all or nothing.
    static func atomicWrite(_ data: Data, to url: URL) throws(RepositoryError) {
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/.tmp-" + JSONWriter.hex(randomBytes(8))
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let n = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let ok = n == data.count && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, url.path) == 0 else {
            unlink(tmp)
            throw RepositoryError(.io, "cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
        try fsyncDirectory(dir)
    }

    /// Makes a directory's entries (files created, renamed or removed in it) durable.
    static func fsyncDirectory(_ dir: String) throws(RepositoryError) {
        let fd = Glibc.open(dir, O_RDONLY | O_DIRECTORY)
        // EINVAL: a filesystem that cannot fsync a directory (some FUSE and network ones).
        guard fd >= 0, fsync(fd) == 0 || errno == EINVAL else {
            let failure = errno
            if fd >= 0 { close(fd) }
            throw RepositoryError(.io, "cannot flush the directory \(dir) to disk: \(String(cString: strerror(failure)))")
        }
        close(fd)
    }

    static func io<T>(_ body: () throws -> T) throws(RepositoryError) -> T {
        do { return try body() } catch { throw RepositoryError(.io, "\(error.localizedDescription)") }
    }

    static func randomBytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}

/// Work over a list of files on every core, shared by backup and restore: hands out items,
/// keeps the first error (after which no new item starts), and counts progress.
class FileWork: @unchecked Sendable {
    let lock = NSLock()
    fileprivate var nextIndex = 0
    fileprivate var firstError: RepositoryError?
    private var current: RunProgress
    private let progress: ProgressSink?

    init(total: RunProgress, progress: ProgressSink?) {
        current = total
        self.progress = progress
    }

    func locked<T>(_ body: () -> T) -> T { lock.lock(); defer { lock.unlock() }; return body() }

    var error: RepositoryError? { locked { firstError } }

    /// Calls `body` for items `0..<count` on every core; each worker has its own `local`
    /// state (a read buffer, say). An error is recorded and stops the handing out of items.
    /// `done` runs once per worker after its last item (to close what it has open).
    func forEach<Local>(_ count: Int, local: @Sendable () -> Local, _ body: @Sendable (inout Local, Int) throws(RepositoryError) -> Void,
                        done: @Sendable (inout Local) throws(RepositoryError) -> Void = { _ in }) {
        let workers = min(max(1, ProcessInfo.processInfo.activeProcessorCount), max(1, count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            var state = local()
            while let i = next(count) {
                do throws(RepositoryError) { try body(&state, i) } catch { record(error) }
            }
            do throws(RepositoryError) { try done(&state) } catch { record(error) }
        }
    }

    private func record(_ error: RepositoryError) { locked { if firstError == nil { firstError = error } } }

    private func next(_ count: Int) -> Int? {
        locked {
            guard firstError == nil, nextIndex < count else { return nil }
            defer { nextIndex += 1 }
            return nextIndex
        }
    }

    func advance(bytes: Int64) {
        let p = locked { () -> RunProgress in current.bytes += bytes; return current }
        progress?(p)
    }

    /// Counts a finished file; `record` runs under the same lock, for the caller's results.
    func fileDone(_ record: () -> Void) {
        let p = locked { () -> RunProgress in
            record()
            current.files += 1
            return current
        }
        progress?(p)
    }
}

/// One restore's results.
final class RestoreWork: FileWork, @unchecked Sendable {
    private var _report = RestoreReport()

    var report: RestoreReport { locked { _report } }

    func finish(_ path: String, bytes: Int64, problem: String?) {
        fileDone {
            if let problem { _report.damaged[path] = problem } else { _report.files += 1; _report.bytes += bytes }
        }
    }
}

/// glibc's `sync_file_range(2)`, which the Glibc module does not export (it sits behind
/// _GNU_SOURCE): starts writeback of a file's dirty pages without waiting for it. A hint
/// only; durability comes from `fsync`.
@_silgen_name("sync_file_range")
func linuxSyncFileRange(_ fd: Int32, _ offset: Int64, _ nbytes: Int64, _ flags: UInt32) -> Int32

/// One backup worker's state: its read buffer and the pack it is filling.
final class BackupWorker {
    var buffer = [UInt8](repeating: 0, count: BuiltinRepository.chunkSize)
    var pack: PackWriter?

    /// The pack being filled, or a new one.
    func openPack(in repository: BuiltinRepository, work: BackupWork) throws(RepositoryError) -> PackWriter {
        if let pack { return pack }
        let new = try PackWriter(in: repository, created: work.created)
        pack = new
        return new
    }
}

/// One backup's results, and which objects it has written (so two workers never write the
/// same chunk).
final class BackupWork: FileWork, @unchecked Sendable {
    let present: BuiltinRepository.StoredObjects
    let flusher = PackFlusher()
    private var stored: [Int: BuiltinRepository.StoredFile] = [:]
    private var claimed = Set<String>()
    private var packFiles: [String] = []
    private var packs: [PackContents] = []
    private var written: Int64 = 0

    init(total: RunProgress, progress: ProgressSink?, present: BuiltinRepository.StoredObjects) {
        self.present = present
        super.init(total: total, progress: progress)
    }

    /// True for the first caller with `id`: that one writes it.
    func claim(_ id: String) -> Bool { locked { claimed.insert(id).inserted } }

    /// A pack file this backup created, removed again if the backup fails.
    func created(_ path: String) { locked { packFiles.append(path) } }

    func wrote(bytes: Int) { locked { written += Int64(bytes) } }

    func packDone(_ pack: PackContents) { locked { packs.append(pack) } }

    func finish(index: Int, _ file: BuiltinRepository.StoredFile) {
        fileDone { stored[index] = file }
    }

    func finishedPacks() -> [PackContents] { locked { packs } }

    /// After a failure: the packs written are removed, leaving the repository as it was.
    func discardPending() {
        try? flusher.drain()
        for p in locked({ packFiles }) { unlink(p) }
    }

    func results() -> (stored: [Int: BuiltinRepository.StoredFile], written: Int64, newObjects: Int, error: RepositoryError?) {
        locked { (stored, written, packs.reduce(0) { $0 + $1.blobs.count }, firstError) }
    }
}
