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
}

public struct Snapshot: Codable, Sendable {
    public var id: String
    public var time: Int64
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

    /// Stores an object unless it is already there; returns the bytes written (0 when deduplicated).
    func put(_ plaintext: [UInt8]) throws(RepositoryError) -> (id: String, written: Int) {
        let id = objectId(plaintext)
        let url = objectURL(id)
        if FileManager.default.fileExists(atPath: url.path) { return (id, 0) }
        let sealed = try seal(plaintext, aad: Array(id.utf8))
        try Self.io { try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true) }
        try Self.atomicWrite(sealed, to: url)
        return (id, sealed.count)
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
    public func backup(paths: [String], exclude: [String] = [], tags: [String] = [], host: String = ProcessInfo.processInfo.hostName) throws(RepositoryError) -> BackupSummary {
        var entries: [ManifestEntry] = []
        var read: Int64 = 0, written: Int64 = 0, newObjects = 0
        for base in paths {
            let baseURL = URL(fileURLWithPath: base)
            var stack: [String] = [""]
            while let rel = stack.popLast() {
                let full = rel.isEmpty ? baseURL.path : baseURL.path + "/" + rel
                var st = stat()
                guard lstat(full, &st) == 0 else { throw RepositoryError(.io, "cannot read \(full): \(String(cString: strerror(errno)))") }
                let name = rel.isEmpty ? "" : rel
                if !rel.isEmpty, Self.excluded(rel, exclude) { continue }
                let mode = UInt32(st.st_mode) & 0o7777
                let type = st.st_mode & S_IFMT
                var entry = ManifestEntry(path: name, kind: .file, mode: mode, mtime: Int64(st.st_mtim.tv_sec), mtimeNanos: Int32(st.st_mtim.tv_nsec), size: 0)
                if type == S_IFDIR {
                    entry.kind = .dir
                    let children = (try? FileManager.default.contentsOfDirectory(atPath: full)) ?? []
                    for c in children.sorted().reversed() { stack.append(rel.isEmpty ? c : rel + "/" + c) }
                } else if type == S_IFLNK {
                    entry.kind = .symlink
                    entry.target = try? FileManager.default.destinationOfSymbolicLink(atPath: full)
                } else if type == S_IFREG {
                    let (chunks, size, digest, w, n) = try storeFile(full)
                    entry.chunks = chunks; entry.size = size; entry.sha256 = digest
                    read += size; written += Int64(w); newObjects += n
                } else {
                    continue   // sockets, devices, fifos are not backed up
                }
                entries.append(entry)
            }
        }
        let snapshot = Snapshot(id: JSONWriter.hex(Self.randomBytes(16)), time: Int64(Date().timeIntervalSince1970), host: host, tags: tags, paths: paths, entries: entries)
        try writeSnapshot(snapshot)
        return BackupSummary(snapshot: snapshot.id, files: entries.filter { $0.kind == .file }.count, bytesRead: read, bytesWritten: written, newObjects: newObjects)
    }

    static func excluded(_ rel: String, _ patterns: [String]) -> Bool {
        let name = (rel as NSString).lastPathComponent
        return patterns.contains { fnmatch($0, rel, 0) == 0 || fnmatch($0, name, 0) == 0 }
    }

    /// Reads a file in fixed-size chunks, storing each new one; what was read is what is recorded.
    func storeFile(_ path: String) throws(RepositoryError) -> (chunks: [String], size: Int64, sha256: String, written: Int, new: Int) {
        guard let h = FileHandle(forReadingAtPath: path) else { throw RepositoryError(.io, "cannot open \(path) for reading") }
        defer { try? h.close() }
        var chunks: [String] = [], size: Int64 = 0, written = 0, new = 0
        var digest = SHA256()
        while true {
            let data: Data
            do { data = try h.read(upToCount: Self.chunkSize) ?? Data() } catch { throw RepositoryError(.io, "cannot read \(path): \(error)") }
            if data.isEmpty { break }
            digest.update(data: data)
            let (id, w) = try put([UInt8](data))
            chunks.append(id); size += Int64(data.count); written += w; if w > 0 { new += 1 }
        }
        return (chunks, size, JSONWriter.hex(digest.finalize()), written, new)
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
        return out.sorted { ($0.time, $0.id) < ($1.time, $1.id) }
    }

    public func snapshot(_ id: String) throws(RepositoryError) -> Snapshot {
        guard id.allSatisfy({ $0.isHexDigit }), let stored = FileManager.default.contents(atPath: root.appendingPathComponent("snapshots").appendingPathComponent(id).path) else {
            throw RepositoryError(.corrupt, "snapshot \(id) does not exist")
        }
        let plain = try open(stored, aad: Array(("snapshot:" + id).utf8))
        guard let s = try? JSONDecoder().decode(Snapshot.self, from: Data(plain)) else { throw RepositoryError(.corrupt, "snapshot \(id) cannot be read") }
        return s
    }

    // MARK: restore

    /// Restores a snapshot into `target` (absent or empty). Refuses paths that would escape the
    /// target (`..`, absolute paths) and never writes through a symlink found in the target.
    /// Every restored file is checked against the manifest's SHA-256; damage is reported per file.
    public func restore(_ snapshotId: String, to target: URL, force: Bool = false, only: ((ManifestEntry) -> Bool)? = nil) throws(RepositoryError) -> RestoreReport {
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
        var report = RestoreReport()
        let selected = s.entries.filter { $0.path.isEmpty || (only?($0) ?? true) }
        for e in selected.sorted(by: { $0.path < $1.path }) where !e.path.isEmpty {
            let dest = target.path + "/" + e.path
            try Self.refuseSymlinkAncestors(of: e.path, in: target.path)
            switch e.kind {
            case .dir:
                try Self.makeParents(e.path, in: target.path)
                if mkdir(dest, 0o700) != 0 && errno != EEXIST { throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))") }
            case .symlink:
                try Self.makeParents(e.path, in: target.path)
                if symlink(e.target ?? "", dest) != 0 { throw RepositoryError(.io, "cannot create symlink \(dest): \(String(cString: strerror(errno)))") }
            case .file:
                try Self.makeParents(e.path, in: target.path)
                let fd = Glibc.open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
                guard fd >= 0 else { throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))") }
                var digest = SHA256()
                var problem: String? = nil
                for id in e.chunks ?? [] {
                    do {
                        let bytes = try get(id)
                        digest.update(data: bytes)
                        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                        if n != bytes.count { problem = "write failed"; break }
                        report.bytes += Int64(n)
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
                if let problem { report.damaged[e.path] = problem } else { report.files += 1 }
            }
        }
        // Directories last, deepest first, so their mtimes survive the files written into them.
        for e in selected.filter({ $0.kind == .dir }).sorted(by: { $0.path > $1.path }) {
            let dest = e.path.isEmpty ? target.path : target.path + "/" + e.path
            chmod(dest, mode_t(e.mode))
            var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos)), timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos))]
            utimensat(AT_FDCWD, dest, &times, AT_SYMLINK_NOFOLLOW)
        }
        return report
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
