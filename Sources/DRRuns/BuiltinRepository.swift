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

    struct Config: Codable {
        var version: Int
        var encryption: String
        var kdf: KDFParams?
        var keyCheck: String?
        struct KDFParams: Codable { var name: String; var n: Int; var r: Int; var p: Int; var salt: String }
    }

    private init(root: URL, encKey: SymmetricKey?, idKey: SymmetricKey?) {
        self.root = root
        self.encKey = encKey
        self.idKey = idKey
    }

    // MARK: create and open

    /// Creates a repository in `root` (which may exist but must not hold one). With a
    /// passphrase, everything stored is encrypted; the passphrase itself is never stored.
    public static func initialize(at root: URL, passphrase: String?, kdfRounds: Int = 1 << 15) throws(RepositoryError) -> BuiltinRepository {
        let configURL = root.appendingPathComponent("config")
        if FileManager.default.fileExists(atPath: configURL.path) { throw RepositoryError(.alreadyExists, "a repository already exists at \(root.path)") }
        try Self.io { try FileManager.default.createDirectory(at: root.appendingPathComponent("data"), withIntermediateDirectories: true) }
        try Self.io { try FileManager.default.createDirectory(at: root.appendingPathComponent("snapshots"), withIntermediateDirectories: true) }
        var config = Config(version: 1, encryption: "none", kdf: nil, keyCheck: nil)
        var repo = BuiltinRepository(root: root, encKey: nil, idKey: nil)
        if let passphrase {
            let salt = randomBytes(32)
            let params = Config.KDFParams(name: "scrypt", n: kdfRounds, r: 8, p: 1, salt: Data(salt).base64EncodedString())
            let (enc, id) = try deriveKeys(passphrase, params)
            repo = BuiltinRepository(root: root, encKey: enc, idKey: id)
            config = Config(version: 1, encryption: "aes-256-gcm", kdf: params,
                            keyCheck: try repo.seal(Array("drplan-repository".utf8), aad: Array("config".utf8)).base64EncodedString())
        }
        let data = try Self.io { try JSONEncoder().encode(config) }
        try atomicWrite(data, to: configURL)
        return repo
    }

    /// Opens a repository; a wrong passphrase is a permanent error, checked before anything is read.
    public static func open(at root: URL, passphrase: String?) throws(RepositoryError) -> BuiltinRepository {
        guard let data = FileManager.default.contents(atPath: root.appendingPathComponent("config").path),
              let config = try? JSONDecoder().decode(Config.self, from: data), config.version == 1
        else { throw RepositoryError(.notARepository, "\(root.path) holds no drplan repository (no readable 'config'); run a backup to create one") }
        guard config.encryption == "aes-256-gcm", let params = config.kdf, let check = config.keyCheck.flatMap({ Data(base64Encoded: $0) }) else {
            return BuiltinRepository(root: root, encKey: nil, idKey: nil)
        }
        guard let passphrase else { throw RepositoryError(.passphraseRequired, "the repository at \(root.path) is encrypted; give the job's passphrase secret (encryption.passphrase)") }
        let (enc, id) = try deriveKeys(passphrase, params)
        let repo = BuiltinRepository(root: root, encKey: enc, idKey: id)
        guard (try? repo.open(check, aad: Array("config".utf8))) == Array("drplan-repository".utf8) else {
            throw RepositoryError(.wrongPassphrase, "wrong passphrase for the repository at \(root.path); nothing was read or written")
        }
        return repo
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

    func objectURL(_ id: String) -> URL {
        root.appendingPathComponent("data").appendingPathComponent(String(id.prefix(2))).appendingPathComponent(id)
    }

    func seal(_ plaintext: [UInt8], aad: [UInt8]) throws(RepositoryError) -> Data {
        guard let encKey else { return Data(plaintext) }
        do { return try AES.GCM.seal(plaintext, using: encKey, authenticating: aad).combined ?? Data() } catch {
            throw RepositoryError(.io, "encryption failed: \(error)")
        }
    }

    func open(_ stored: Data, aad: [UInt8]) throws(RepositoryError) -> [UInt8] {
        guard let encKey else { return [UInt8](stored) }
        do {
            let box = try AES.GCM.SealedBox(combined: stored)
            return [UInt8](try AES.GCM.open(box, using: encKey, authenticating: aad))
        } catch {
            throw RepositoryError(.corrupt, "object failed authentication")
        }
    }

    /// Reads and authenticates an object: a flipped bit, a truncation or a missing file is an error.
    func get(_ id: String) throws(RepositoryError) -> [UInt8] {
        guard let stored = FileManager.default.contents(atPath: objectURL(id).path) else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) is missing") }
        let plain = try open(stored, aad: Array(id.utf8))
        guard objectId(plain) == id else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) does not match its id (corrupt or truncated)") }
        return plain
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
    /// - New objects are written under temporary names without a flush each; one `syncfs` makes
    ///   them durable, then they are renamed into place, so an object's final name never points
    ///   at data a crash could lose. A crash leaves only temporary files, which prune removes.
    public func backup(paths: [String], exclude: [String] = [], tags: [String] = [], host: String = ProcessInfo.processInfo.hostName,
                       progress: ProgressSink? = nil) throws(RepositoryError) -> BackupSummary {
        var entries: [ManifestEntry] = []
        var files: [(index: Int, full: String)] = []
        for base in paths {
            let baseURL = URL(fileURLWithPath: base)
            var stack: [String] = [""]
            while let rel = stack.popLast() {
                let full = rel.isEmpty ? baseURL.path : baseURL.path + "/" + rel
                var st = stat()
                guard lstat(full, &st) == 0 else { throw RepositoryError(.io, "cannot read \(full): \(String(cString: strerror(errno)))") }
                if !rel.isEmpty, Self.excluded(rel, exclude) { continue }
                let mode = UInt32(st.st_mode) & 0o7777
                let type = st.st_mode & S_IFMT
                var entry = ManifestEntry(path: rel, kind: .file, mode: mode, mtime: Int64(st.st_mtim.tv_sec), mtimeNanos: Int32(st.st_mtim.tv_nsec), size: 0)
                if type == S_IFDIR {
                    entry.kind = .dir
                    let children = (try? FileManager.default.contentsOfDirectory(atPath: full)) ?? []
                    for c in children.sorted().reversed() { stack.append(rel.isEmpty ? c : rel + "/" + c) }
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
        let parent = latestSnapshot(tags: tags, paths: paths)
        let known = Dictionary((parent?.entries ?? []).filter { $0.kind == .file }.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var toRead: [(index: Int, full: String)] = []
        var reused: Int64 = 0
        for f in files {
            let e = entries[f.index]
            if let p = known[e.path], p.size == e.size, p.mtime == e.mtime, p.mtimeNanos == e.mtimeNanos, p.ctime != nil, p.ctime == e.ctime,
               p.inode == e.inode, let chunks = p.chunks, let digest = p.sha256, chunks.allSatisfy(objectExists) {
                entries[f.index].chunks = chunks
                entries[f.index].sha256 = digest
                reused += e.size
            } else {
                toRead.append(f)
            }
        }
        toRead.sort { entries[$0.index].size > entries[$1.index].size }
        let totalBytes = files.reduce(Int64(0)) { $0 + entries[$1.index].size }
        let work = BackupWork(total: RunProgress(files: Int64(files.count - toRead.count), bytes: reused, totalFiles: Int64(files.count), totalBytes: totalBytes), progress: progress)
        let snapshotEntries = entries, queue = toRead
        // One read buffer per worker: allocating (and zeroing) 1 MiB per file was 3% of a backup.
        work.forEach(queue.count, local: { [UInt8](repeating: 0, count: Self.chunkSize) }) { (buffer: inout [UInt8], i: Int) throws(RepositoryError) in
            work.finish(index: queue[i].index, try self.storeFile(queue[i].full, buffer: &buffer, work: work))
        }
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

    func objectExists(_ id: String) -> Bool {
        var st = stat()
        return stat(objectURL(id).path, &st) == 0 && st.st_size > 0
    }

    static func excluded(_ rel: String, _ patterns: [String]) -> Bool {
        let name = (rel as NSString).lastPathComponent
        return patterns.contains { fnmatch($0, rel, 0) == 0 || fnmatch($0, name, 0) == 0 }
    }

    struct StoredFile: Sendable { var chunks: [String]; var size: Int64; var sha256: String }

    /// Reads a file in fixed-size chunks, storing each new one; what was read is what is recorded.
    func storeFile(_ path: String, buffer: inout [UInt8], work: BackupWork) throws(RepositoryError) -> StoredFile {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot open \(path) for reading: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var chunks: [String] = [], size: Int64 = 0
        var digest = SHA256()
        while true {
            var filled = 0
            while filled < Self.chunkSize {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, Self.chunkSize - filled) }
                if n < 0 { if errno == EINTR { continue }; throw RepositoryError(.io, "cannot read \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            let chunk = filled == Self.chunkSize ? buffer : Array(buffer[0..<filled])
            digest.update(data: chunk)
            chunks.append(try putPending(chunk, work: work))
            size += Int64(filled)
            work.advance(bytes: Int64(filled))
            if filled < Self.chunkSize { break }
        }
        return StoredFile(chunks: chunks, size: size, sha256: JSONWriter.hex(digest.finalize()))
    }

    /// Stores an object under a temporary name unless it exists or this backup already has it.
    func putPending(_ plaintext: [UInt8], work: BackupWork) throws(RepositoryError) -> String {
        let id = objectId(plaintext)
        if objectExists(id) || !work.claim(id) { return id }
        let sealed = try seal(plaintext, aad: Array(id.utf8))
        let dir = objectURL(id).deletingLastPathComponent().path
        if !work.knownDirectory(dir) {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST { throw RepositoryError(.io, "cannot create \(dir): \(String(cString: strerror(errno)))") }
        }
        let tmp = dir + "/.tmp-" + id
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let n = sealed.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        // Start writing it back now, without waiting: the final syncfs then finds most of the
        // data already on disk instead of flushing the whole backup after the reading is done.
        _ = linuxSyncFileRange(fd, 0, 0, 2 /* SYNC_FILE_RANGE_WRITE */)
        close(fd)
        guard n == sealed.count else {
            unlink(tmp)
            throw RepositoryError(.io, "cannot write \(tmp): \(n < 0 ? String(cString: strerror(errno)) : "short write (disk full?)")")
        }
        work.pending(id: id, tmp: tmp, bytes: sealed.count)
        return id
    }

    /// Makes every pending object durable with one `syncfs`, then gives each its final name
    /// and flushes the renames, before any snapshot may name them.
    func commitPending(_ work: BackupWork) throws(RepositoryError) {
        let pending = work.pendingObjects()
        guard !pending.isEmpty else { return }
        try syncRepository()
        for (id, tmp) in pending where rename(tmp, objectURL(id).path) != 0 {
            throw RepositoryError(.io, "cannot store object \(id.prefix(12)): \(String(cString: strerror(errno)))")
        }
        try syncRepository()
    }

    func syncRepository() throws(RepositoryError) {
        let fd = Glibc.open(root.path, O_RDONLY)
        guard fd >= 0, linuxSyncfs(fd) == 0 else {
            if fd >= 0 { close(fd) }
            throw RepositoryError(.io, "cannot flush the repository at \(root.path) to disk: \(String(cString: strerror(errno)))")
        }
        close(fd)
    }

    /// Written last, atomically: a snapshot exists only once every object it names is durable.
    func writeSnapshot(_ s: Snapshot) throws(RepositoryError) {
        let json = try Self.io { try JSONEncoder().encode(s) }
        let sealed = try seal([UInt8](json), aad: Array(("snapshot:" + s.id).utf8))
        try Self.atomicWrite(sealed, to: root.appendingPathComponent("snapshots").appendingPathComponent(s.id))
    }

    // MARK: snapshots

    public func snapshots() throws(RepositoryError) -> [Snapshot] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("snapshots").path)) ?? []
        var out: [Snapshot] = []
        for n in names where !n.hasPrefix(".") { out.append(try snapshot(n)) }
        return out.sorted { ($0.time, $0.timeNanos ?? 0, $0.id) < ($1.time, $1.timeNanos ?? 0, $1.id) }
    }

    public func snapshot(_ id: String) throws(RepositoryError) -> Snapshot {
        try decodeSnapshot(id, as: Snapshot.self)
    }

    /// A snapshot without its entries: what listing and choosing a parent need. Decoding every
    /// entry of every snapshot made each backup slower as history grew.
    public struct SnapshotHeader: Decodable, Sendable {
        public var id: String
        public var time: Int64
        public var timeNanos: Int32?
        public var tags: [String]
        public var paths: [String]
    }

    /// Every snapshot's header, oldest first.
    public func snapshotHeaders() throws(RepositoryError) -> [SnapshotHeader] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("snapshots").path)) ?? []
        var out: [SnapshotHeader] = []
        for n in names where !n.hasPrefix(".") { out.append(try decodeSnapshot(n, as: SnapshotHeader.self)) }
        return out.sorted { ($0.time, $0.timeNanos ?? 0, $0.id) < ($1.time, $1.timeNanos ?? 0, $1.id) }
    }

    func decodeSnapshot<T: Decodable>(_ id: String, as: T.Type) throws(RepositoryError) -> T {
        guard id.allSatisfy({ $0.isHexDigit }), let stored = FileManager.default.contents(atPath: root.appendingPathComponent("snapshots").appendingPathComponent(id).path) else {
            throw RepositoryError(.corrupt, "snapshot \(id) does not exist")
        }
        let plain = try open(stored, aad: Array(("snapshot:" + id).utf8))
        guard let s = try? JSONDecoder().decode(T.self, from: Data(plain)) else { throw RepositoryError(.corrupt, "snapshot \(id) cannot be read") }
        return s
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
        let dfd = Glibc.open(dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
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
    func forEach<Local>(_ count: Int, local: @Sendable () -> Local, _ body: @Sendable (inout Local, Int) throws(RepositoryError) -> Void) {
        let workers = min(max(1, ProcessInfo.processInfo.activeProcessorCount), max(1, count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            var state = local()
            while let i = next(count) {
                do throws(RepositoryError) { try body(&state, i) } catch {
                    locked { if firstError == nil { firstError = error } }
                }
            }
        }
    }

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

/// glibc's `syncfs(2)`, which the Glibc module does not export (it sits behind _GNU_SOURCE):
/// flushes the one filesystem that holds the repository.
@_silgen_name("syncfs")
func linuxSyncfs(_ fd: Int32) -> Int32

/// glibc's `sync_file_range(2)`, also behind _GNU_SOURCE: starts writeback of a file's dirty
/// pages without waiting for it. A hint only; durability still comes from `syncfs`.
@_silgen_name("sync_file_range")
func linuxSyncFileRange(_ fd: Int32, _ offset: Int64, _ nbytes: Int64, _ flags: UInt32) -> Int32

/// One backup's results, and which objects it has written (so two workers never write the
/// same chunk).
final class BackupWork: FileWork, @unchecked Sendable {
    private var stored: [Int: BuiltinRepository.StoredFile] = [:]
    private var claimed = Set<String>()
    private var pending: [(id: String, tmp: String)] = []
    private var directories = Set<String>()
    private var written: Int64 = 0

    /// True for the first caller with `id`: that one writes it.
    func claim(_ id: String) -> Bool { locked { claimed.insert(id).inserted } }

    func knownDirectory(_ dir: String) -> Bool { locked { !directories.insert(dir).inserted } }

    func pending(id: String, tmp: String, bytes: Int) {
        locked {
            pending.append((id, tmp))
            written += Int64(bytes)
        }
    }

    func finish(index: Int, _ file: BuiltinRepository.StoredFile) {
        fileDone { stored[index] = file }
    }

    func pendingObjects() -> [(id: String, tmp: String)] { locked { pending } }

    /// After a failure: the temporary objects are removed, leaving the repository as it was.
    func discardPending() { for p in pendingObjects() { unlink(p.tmp) } }

    func results() -> (stored: [Int: BuiltinRepository.StoredFile], written: Int64, newObjects: Int, error: RepositoryError?) {
        locked { (stored, written, pending.count, firstError) }
    }
}
