import CEL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a storage knows of one file: enough for prune's grace period and check's length test.
public struct StorageFileInfo: Sendable, Equatable {
    public var size: Int64
    public var modified: Date
    /// Until when the storage refuses to delete the file (S3 Object Lock); nil where the
    /// storage has no such lock. Prune never plans to delete a file before this.
    public var retainUntil: Date? = nil
    /// The lock's mode as the storage names it (S3: `COMPLIANCE` or `GOVERNANCE`).
    public var lockMode: String? = nil
}

/// A file being written in pieces (a pack): nothing is visible under its name until `commit`.
public protocol StorageWriter: AnyObject, Sendable {
    /// Bytes appended so far.
    var size: Int64 { get }
    /// Appends bytes; throws on any short or failed write.
    func append(_ bytes: UnsafeRawBufferPointer) throws(RepositoryError)
    /// Makes the contents durable and visible under the final name. After `commit` returns,
    /// a crash never loses the file.
    func commit() throws(RepositoryError)
    /// Gives up: removes whatever was written. Safe to call after a failed `commit`.
    func abort()
}

/// The narrow interface the repository is built on, as restic's backend is: a flat namespace
/// of files under a root, addressed by relative paths with `/` separators
/// (`config`, `index/<id>`, `packs/ab/<id>`, `snapshots/<id>`, `locks/<id>`).
///
/// Contract, held by every implementation and checked by the storage conformance tests:
/// - Every operation throws on failure; none returns an empty or partial result instead.
///   A listing that fails part way fails whole: prune and check decide what to delete and
///   what is damaged from listings, so a short one would delete live data.
/// - A file that does not exist is a `.missing` error from `read`, `readRange` and `list`, and
///   `nil` from `info`. Any other failure is `.io` (retryable) or `.corrupt`.
/// - `write` is atomic: readers see the old state or the whole new file, never part of it,
///   and once it returns the file survives a crash. With `exclusive`, it never replaces an
///   existing file and returns false when one is there (how a repository is created once).
/// - `delete` of a file that does not exist succeeds, so a retried prune is harmless.
/// - Nothing here creates a repository's root: a storage whose root is missing fails every
///   call with `.missing`, so an unplugged drive is never replaced by an empty folder.
public protocol RepositoryStorage: Sendable {
    /// Where the storage is, for messages; never holds a secret.
    var location: String { get }
    /// The names directly under `dir` (files and sub-directories), sorted; hidden names
    /// (temporary files) are left out.
    func list(_ dir: String) throws(RepositoryError) -> [String]
    /// Size, modification time and any retention lock, or nil when the file does not exist.
    func info(_ path: String) throws(RepositoryError) -> StorageFileInfo?
    func read(_ path: String) throws(RepositoryError) -> [UInt8]
    /// Exactly `length` bytes at `offset`; a file that ends early is `.corrupt`.
    func readRange(_ path: String, offset: Int64, length: Int) throws(RepositoryError) -> [UInt8]
    @discardableResult
    func write(_ path: String, _ bytes: [UInt8], exclusive: Bool) throws(RepositoryError) -> Bool
    func delete(_ path: String) throws(RepositoryError)
    /// Starts a file written in pieces; see `StorageWriter`.
    func writer(_ path: String) throws(RepositoryError) -> any StorageWriter
    /// Makes the creation of files in these directories durable (a no-op where `commit` already is).
    func syncDirectories(_ dirs: [String]) throws(RepositoryError)
    /// Whether every call is a network round trip (S3). The repository then keeps more
    /// requests in flight, uploads several packs at once and reads whole packs on restore,
    /// since latency, not bandwidth or CPU, is what bounds it.
    var isRemote: Bool { get }
}

extension RepositoryStorage {
    public var isRemote: Bool { false }
}

/// The repository's files on a local (or mounted) filesystem: temporary name, fsync, rename,
/// fsync of the directory.
public struct LocalStorage: RepositoryStorage {
    public let root: String
    public var location: String { root }

    public init(root: String) { self.root = root }

    func full(_ path: String) -> String { path.isEmpty ? root : root + "/" + path }

    static func errorText() -> String { String(cString: strerror(errno)) }

    /// `.missing` for ENOENT/ENOTDIR, `.io` for the rest.
    static func failure(_ what: String, _ path: String, errno code: Int32) -> RepositoryError {
        let why = String(cString: strerror(code))
        if code == ENOENT || code == ENOTDIR { return RepositoryError(.missing, "\(path) does not exist") }
        if code == ENOSPC || code == EDQUOT { return RepositoryError(.noSpace, "cannot \(what) \(path): the disk is full (\(why)); free space on the target and run again") }
        return RepositoryError(.io, "cannot \(what) \(path): \(why)")
    }

    public func list(_ dir: String) throws(RepositoryError) -> [String] {
        let path = full(dir)
        guard let d = opendir(path) else { throw Self.failure("list", path, errno: errno) }
        defer { closedir(d) }
        var names: [String] = []
        while true {
            errno = 0
            guard let e = readdir(d) else {
                // readdir returns nil both at the end and on error; only errno tells them apart.
                if errno != 0 { throw Self.failure("list", path, errno: errno) }
                break
            }
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        return names.sorted()
    }

    public func info(_ path: String) throws(RepositoryError) -> StorageFileInfo? {
        var st = stat()
        guard stat(full(path), &st) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw Self.failure("read", full(path), errno: errno)
        }
        let modified = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
        return StorageFileInfo(size: Int64(st.st_size), modified: modified)
    }

    public func read(_ path: String) throws(RepositoryError) -> [UInt8] {
        let p = full(path)
        let fd = open(p, O_RDONLY)
        guard fd >= 0 else { throw Self.failure("read", p, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Self.failure("read", p, errno: errno) }
        return try Self.readFully(fd, p, offset: 0, length: Int(st.st_size), exact: false)
    }

    public func readRange(_ path: String, offset: Int64, length: Int) throws(RepositoryError) -> [UInt8] {
        let p = full(path)
        let fd = open(p, O_RDONLY)
        guard fd >= 0 else { throw Self.failure("read", p, errno: errno) }
        defer { close(fd) }
        return try Self.readFully(fd, p, offset: offset, length: length, exact: true)
    }

    /// Not zero-filled first: every byte is read into, or the read fails.
    static func readFully(_ fd: Int32, _ path: String, offset: Int64, length: Int, exact: Bool) throws(RepositoryError) -> [UInt8] {
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: max(0, length)) { buffer, count in
            var done = 0
            while done < buffer.count, let base = buffer.baseAddress {
                let n = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
                if n < 0 { if errno == EINTR { continue }; failure = errno; break }
                if n == 0 { break }
                done += n
            }
            count = done
        }
        if failure != 0 { throw Self.failure("read", path, errno: failure) }
        if exact && bytes.count != length { throw RepositoryError(.corrupt, "\(path) ends early: \(bytes.count) of \(length) bytes at offset \(offset) could be read") }
        return bytes
    }

    /// Temporary name, write, fsync, then rename (or, exclusive, link, which fails on an
    /// existing name), then fsync the directory.
    @discardableResult
    public func write(_ path: String, _ bytes: [UInt8], exclusive: Bool) throws(RepositoryError) -> Bool {
        let dest = full(path)
        let dir = (dest as NSString).deletingLastPathComponent
        let tmp = dir + "/.tmp-" + JSONWriter.hex(BuiltinRepository.randomBytes(8))
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw Self.failure("write", dest, errno: errno) }
        var failure: Int32 = 0
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress.map { $0 + done }, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; failure = errno; return }
                if n == 0 { failure = ENOSPC; return }
                done += n
            }
        }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure != 0 { unlink(tmp); throw Self.failure("write", dest, errno: failure) }
        if exclusive {
            let linked = link(tmp, dest) == 0
            let code = errno
            unlink(tmp)
            if !linked {
                if code == EEXIST { return false }
                throw Self.failure("write", dest, errno: code)
            }
        } else if rename(tmp, dest) != 0 {
            let code = errno
            unlink(tmp)
            throw Self.failure("write", dest, errno: code)
        }
        try Self.fsyncDirectory(dir)
        return true
    }

    public func delete(_ path: String) throws(RepositoryError) {
        let p = full(path)
        if unlink(p) != 0 && errno != ENOENT { throw Self.failure("remove", p, errno: errno) }
    }

    /// Creates `dir` (and the sub-directories of it named in `path`) under an existing root.
    public func makeDirectory(_ dir: String) throws(RepositoryError) {
        var st = stat()
        guard stat(root, &st) == 0 else { throw Self.failure("use", root, errno: errno) }
        var path = root
        for part in dir.split(separator: "/") {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw Self.failure("create", path, errno: errno) }
        }
    }

    /// Removes the temporary files (`.tmp-…`) an interrupted write left in `dirs`, when older
    /// than `cutoff` (a younger one may belong to a write under way).
    public func removeTemporaryFiles(in dirs: [String], olderThan cutoff: Date) throws(RepositoryError) {
        for dir in dirs {
            let path = full(dir)
            guard let d = opendir(path) else {
                if errno == ENOENT { continue }
                throw Self.failure("list", path, errno: errno)
            }
            defer { closedir(d) }
            while let e = readdir(d) {
                let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
                guard name.hasPrefix(".tmp-"), let i = try info(dir.isEmpty ? name : dir + "/" + name), i.modified < cutoff else { continue }
                try delete(dir.isEmpty ? name : dir + "/" + name)
            }
        }
    }

    public func writer(_ path: String) throws(RepositoryError) -> any StorageWriter {
        let dest = full(path)
        try makeDirectory((path as NSString).deletingLastPathComponent)
        return try LocalWriter(path: dest)
    }

    public func syncDirectories(_ dirs: [String]) throws(RepositoryError) {
        for d in dirs { try Self.fsyncDirectory(full(d)) }
    }

    /// Makes a directory's entries (files created, renamed or removed in it) durable.
    static func fsyncDirectory(_ dir: String) throws(RepositoryError) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        // EINVAL: a filesystem that cannot fsync a directory (some FUSE and network ones).
        guard fd >= 0, fsync(fd) == 0 || errno == EINVAL else {
            let failure = errno
            if fd >= 0 { close(fd) }
            throw Self.failure("flush the directory", dir, errno: failure)
        }
        close(fd)
    }
}

/// A pack written straight to its final name, which is safe because no index names a pack
/// before its `commit` (fsync) returns; a crash leaves only an unindexed pack, which prune
/// removes after the grace period.
final class LocalWriter: StorageWriter, @unchecked Sendable {   // one owner at a time
    let path: String
    private var fd: Int32
    private(set) var size: Int64 = 0

    init(path: String) throws(RepositoryError) {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw LocalStorage.failure("write", path, errno: errno) }
    }

    deinit { if fd >= 0 { close(fd) } }

    func append(_ buf: UnsafeRawBufferPointer) throws(RepositoryError) {
        var done = 0
        while done < buf.count {
            let n = Glibc.write(fd, buf.baseAddress.map { $0 + done }, buf.count - done)
            if n < 0 { if errno == EINTR { continue }; throw LocalStorage.failure("write", path, errno: errno) }
            if n == 0 { throw LocalStorage.failure("write", path, errno: ENOSPC) }
            done += n
        }
        size += Int64(buf.count)
        // Start writeback now, so that the fsync in `commit` finds the data already on disk.
        if size % (4 << 20) < Int64(buf.count) { _ = linuxSyncFileRange(fd, 0, 0, 2 /* SYNC_FILE_RANGE_WRITE */) }
    }

    func commit() throws(RepositoryError) {
        guard fd >= 0 else { return }
        let ok = fsync(fd) == 0
        let failure = errno
        close(fd)
        fd = -1
        guard ok else { throw LocalStorage.failure("flush", path, errno: failure) }
    }

    func abort() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(path)
    }
}
