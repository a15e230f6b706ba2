import CEL
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a restore may treat its target.
public struct RestoreOptions: Sendable {
    /// Restore into a non-empty directory, replacing the files and links the snapshot names
    /// (never a directory, and never anything the snapshot does not name).
    public var force = false
    /// Keep setuid, setgid and sticky bits as stored; masked by default, because a snapshot is
    /// data from elsewhere and a crafted one could plant a setuid binary.
    public var keepSpecialModes = false
    /// Accept a target that is, or lies under, a symlink.
    public var follow = false
    public init(force: Bool = false, keepSpecialModes: Bool = false, follow: Bool = false) {
        self.force = force; self.keepSpecialModes = keepSpecialModes; self.follow = follow
    }
}

extension BuiltinRepository {
    // MARK: restore

    /// Restores a snapshot into `target` (absent or empty unless `force`). Trusts nothing in
    /// the snapshot: entries with a NUL, `..`, an absolute path, a negative size or a size that
    /// disagrees with their chunks are refused before anything is written; setuid, setgid and
    /// sticky bits are masked unless asked for; the target root's own mode is never changed;
    /// nothing is written through a symlink. Every restored file is checked against the
    /// manifest's SHA-256; damage is reported per file.
    public func restore(_ snapshotId: String, to target: URL, force: Bool = false, only: ((ManifestEntry) -> Bool)? = nil,
                        progress: ProgressSink? = nil) throws(RepositoryError) -> RestoreReport {
        try restore(snapshotId, to: target, options: RestoreOptions(force: force), only: only, progress: progress)
    }

    public func restore(_ snapshotId: String, to target: URL, options: RestoreOptions, only: ((ManifestEntry) -> Bool)? = nil,
                        progress: ProgressSink? = nil) throws(RepositoryError) -> RestoreReport {
        let s = try snapshot(snapshotId)
        // The snapshot may be newer than the index read when the repository was opened (a
        // backup finished meanwhile): read the index again so its objects are found.
        try loadIndex()
        for e in s.entries { try Self.validate(e, in: snapshotId) }
        try Self.checkTarget(target.path, follow: options.follow)
        let fm = FileManager.default
        var st = stat()
        if lstat(target.path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR || options.follow else { throw RepositoryError(.unsafePath, "\(target.path) exists and is not a directory; restore into a directory") }
            let items: [String]
            do { items = try fm.contentsOfDirectory(atPath: target.path) } catch { throw RepositoryError(.io, "cannot read \(target.path): \(error.localizedDescription)") }
            if !options.force, !items.isEmpty {
                throw RepositoryError(.targetNotEmpty, "\(target.path) is not empty; restore into an empty or new directory, or pass --force")
            }
        } else {
            try Self.io { try fm.createDirectory(at: target, withIntermediateDirectories: true) }
        }
        let selected = s.entries.filter { $0.path.isEmpty || (only?($0) ?? true) }
        let modeMask: UInt32 = options.keepSpecialModes ? 0o7777 : 0o777
        // Directories and links first, in path order, so every file's parent exists; then the
        // files on every core, largest first.
        var files: [ManifestEntry] = []
        for e in selected.sorted(by: { $0.path < $1.path }) where !e.path.isEmpty {
            let dest = target.path + "/" + e.path
            try Self.refuseSymlinkAncestors(of: e.path, in: target.path)
            try Self.makeParents(e.path, in: target.path)
            switch e.kind {
            case .dir:
                if fsLstat(dest, &st) == 0 {
                    guard st.st_mode & S_IFMT == S_IFDIR else {
                        guard options.force else { throw RepositoryError(.io, "cannot create \(dest): something else is there") }
                        try Self.removeForReplacement(dest)
                        if fsMkdir(dest, 0o700) != 0 { throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))") }
                        continue
                    }
                } else if fsMkdir(dest, 0o700) != 0 {
                    throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))")
                }
            case .symlink:
                if options.force { try Self.removeForReplacement(dest) }
                if fsSymlink(e.target ?? "", dest) != 0 { throw RepositoryError(.io, "cannot create symlink \(dest): \(String(cString: strerror(errno)))") }
            case .file:
                if options.force { try Self.removeForReplacement(dest) }
                files.append(e)
            }
        }
        let remote = storage.isRemote
        if remote {
            // In pack order, so that neighbouring files share the pack just fetched.
            let key = { (e: ManifestEntry) -> (String, UInt32) in
                guard let first = e.chunks?.first, let loc = self.location(first) else { return ("", 0) }
                return (loc.pack, loc.offset)
            }
            files.sort { key($0) < key($1) }
        } else {
            files.sort { $0.size > $1.size }
        }
        let totalBytes = files.reduce(Int64(0)) { $0 + $1.size }
        // On S3 each read is a round trip: more in flight, and whole packs fetched once.
        let workers = remote ? 8 : nil
        var packs: PackCache? = nil
        if remote {
            // How often each pack will be read, so the cache lets a pack go the moment its last
            // object is served and keeps the ones still wanted: fetched once, not twice.
            var uses: [String: Int] = [:]
            for e in files { for id in e.chunks ?? [] { if let loc = location(id) { uses[loc.pack, default: 0] += 1 } } }
            packs = PackCache(capacity: 10, uses: uses)
        }
        let work = RestoreWork(total: RunProgress(totalFiles: Int64(files.count), totalBytes: totalBytes), progress: progress,
                               packs: packs)
        let queue = files, targetPath = target.path
        work.forEach(queue.count, workers: workers, local: {}) { (_: inout Void, i: Int) throws(RepositoryError) in
            try self.restoreFile(queue[i], into: targetPath, modeMask: modeMask, work: work)
        }
        if let error = work.error { throw error }
        let report = work.report
        // Directories last, deepest first, so their mtimes survive the files written into them.
        // The target root keeps its own mode and times: it is the user's folder, not the snapshot's.
        for e in selected.filter({ $0.kind == .dir && !$0.path.isEmpty }).sorted(by: { $0.path > $1.path }) {
            let dest = target.path + "/" + e.path
            _ = fsChmod(dest, mode_t(e.mode & modeMask))
            var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos)), timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos))]
            _ = fsUtimens(dest, &times)
        }
        return report
    }

    /// Refuses an entry a well-formed snapshot never holds.
    static func validate(_ e: ManifestEntry, in snapshot: String) throws(RepositoryError) {
        func refuse(_ why: String) -> RepositoryError {
            RepositoryError(.unsafePath, "snapshot \(snapshot.prefix(8)) holds an entry \(RunMessages.quoted(e.path)) that \(why); refusing to restore it (the snapshot is damaged or crafted)")
        }
        if e.path.utf8.contains(0) || (e.target?.utf8.contains(0) ?? false) { throw refuse("contains a NUL byte") }
        if e.path.isEmpty { guard e.kind == .dir else { throw refuse("is the root but not a directory") }; return }
        let parts = e.path.split(separator: "/", omittingEmptySubsequences: false)
        if e.path.hasPrefix("/") || parts.contains("..") || parts.contains("") || parts.contains(".") { throw refuse("would be written outside the target") }
        guard e.kind == .file else { return }
        if e.size < 0 { throw refuse("has a negative size") }
        let chunks = Int64(e.chunks?.count ?? 0)
        let expected = (e.size + Int64(chunkSize) - 1) / Int64(chunkSize)
        if chunks != expected { throw refuse("has a size (\(e.size) bytes) that disagrees with its \(chunks) chunk(s)") }
        if e.sha256 == nil { throw refuse("has no checksum") }
    }

    /// The target and every directory above it must be real directories (or absent), unless
    /// `follow`: a symlink there could send the restore anywhere the link points.
    static func checkTarget(_ target: String, follow: Bool) throws(RepositoryError) {
        guard !follow else { return }
        let absolute = target.hasPrefix("/") ? target : FileManager.default.currentDirectoryPath + "/" + target
        var path = ""
        for part in absolute.split(separator: "/") {
            path += "/" + part
            var st = stat()
            guard lstat(path, &st) == 0 else { return }   // the rest does not exist yet
            if st.st_mode & S_IFMT == S_IFLNK {
                throw RepositoryError(.unsafePath, "the restore target \(target) is or lies under a symlink (\(path)); give the real path, or pass --follow to restore through it")
            }
        }
    }

    /// With --force: removes a file or link the snapshot is about to put back; never a directory.
    static func removeForReplacement(_ path: String) throws(RepositoryError) {
        var st = stat()
        guard fsLstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR { throw RepositoryError(.io, "cannot restore \(path): a directory is in the way; move it aside") }
        if fsUnlink(path) != 0 { throw RepositoryError(.io, "cannot replace \(path): \(String(cString: strerror(errno)))") }
    }

    /// Writes one file, created exclusively and never through a link, checking every chunk's
    /// authentication and the whole file's SHA-256; damage is recorded, not thrown. A chunk of
    /// zeros becomes a hole, so sparse files stay sparse.
    func restoreFile(_ e: ManifestEntry, into target: String, modeMask: UInt32, work: RestoreWork) throws(RepositoryError) {
        let dest = target + "/" + e.path
        let fd = fsOpen(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot create \(dest): \(String(cString: strerror(errno)))") }
        var digest = SHA256()
        var problem: String? = nil
        var written: Int64 = 0
        for id in e.chunks ?? [] {
            do throws(RepositoryError) {
                let bytes = try get(id, packs: work.packs)
                digest.update(data: bytes)
                if bytes.allSatisfy({ $0 == 0 }) {
                    if lseek(fd, off_t(bytes.count), SEEK_CUR) < 0 { problem = "seek failed: \(String(cString: strerror(errno)))"; break }
                } else {
                    var done = 0
                    while done < bytes.count {
                        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress.map { $0 + done }, $0.count - done) }
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { problem = "write failed: \(String(cString: strerror(n < 0 ? errno : ENOSPC)))"; break }
                        done += n
                    }
                    if problem != nil { break }
                }
                written += Int64(bytes.count)
                work.advance(bytes: Int64(bytes.count))
            } catch {
                problem = error.message
                break
            }
        }
        // A trailing hole needs the length set explicitly.
        if problem == nil, ftruncate(fd, off_t(written)) != 0 { problem = "cannot set the length: \(String(cString: strerror(errno)))" }
        if problem == nil, JSONWriter.hex(digest.finalize()) != e.sha256 { problem = "content does not match the snapshot's SHA-256" }
        fchmod(fd, mode_t(e.mode & modeMask))
        var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos)), timespec(tv_sec: Int(e.mtime), tv_nsec: Int(e.mtimeNanos))]
        futimens(fd, &times)
        close(fd)
        work.finish(e.path, bytes: written, problem: problem)
    }

    /// Every existing component between the target and the entry's parent must be a real directory.
    static func refuseSymlinkAncestors(of rel: String, in target: String) throws(RepositoryError) {
        var path = target
        for part in rel.split(separator: "/").dropLast() {
            path += "/" + part
            var st = stat()
            if fsLstat(path, &st) == 0, st.st_mode & S_IFMT != S_IFDIR {
                throw RepositoryError(.unsafePath, "\(path) is a symlink or file inside the restore target; refusing to write through it")
            }
        }
    }

    static func makeParents(_ rel: String, in target: String) throws(RepositoryError) {
        var path = target
        for part in rel.split(separator: "/").dropLast() {
            path += "/" + part
            if fsMkdir(path, 0o700) != 0 && errno != EEXIST { throw RepositoryError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
        }
    }
}

/// One restore's results.
final class RestoreWork: FileWork, @unchecked Sendable {
    private var _report = RestoreReport()
    let packs: PackCache?

    init(total: RunProgress, progress: ProgressSink?, packs: PackCache? = nil) {
        self.packs = packs
        super.init(total: total, progress: progress)
    }

    var report: RestoreReport { locked { _report } }

    func finish(_ path: String, bytes: Int64, problem: String?) {
        fileDone {
            if let problem { _report.damaged[path] = problem } else { _report.files += 1; _report.bytes += bytes }
        }
    }
}

/// Whole packs fetched for a restore from remote storage, shared by its workers: one GET of a
/// 16 MiB pack serves every object in it, where a GET per object made restoring 20,000 small
/// files a matter of minutes. A pack two workers want is fetched once. Each pack is dropped
/// as soon as the last read the restore planned from it is served; only when more packs than
/// `capacity` are still wanted does the least recently used go, to be fetched again later.
final class PackCache: @unchecked Sendable {
    private let capacity: Int
    private let lock = NSLock()
    private var packs: [String: [UInt8]] = [:]
    private var order: [String] = []
    private var loading: [String: DispatchGroup] = [:]
    /// Reads still to come, per pack; a pack not named here is kept as if always wanted.
    private var remaining: [String: Int]
    private var fetched = 0
    /// Packs fetched, counting a pack fetched twice twice.
    var fetches: Int { lock.withLock { fetched } }

    init(capacity: Int, uses: [String: Int] = [:]) { self.capacity = capacity; self.remaining = uses }

    /// Counts one read from `id`; drops the pack once no read from it is left. Under `lock`.
    private func served(_ id: String) {
        guard let left = remaining[id] else { return }
        if left > 1 { remaining[id] = left - 1; return }
        remaining[id] = 0
        packs[id] = nil
        if let i = order.firstIndex(of: id) { order.remove(at: i) }
    }

    /// The pack's bytes, from the cache or from `load`.
    func pack(_ id: String, load: () throws(RepositoryError) -> [UInt8]) throws(RepositoryError) -> [UInt8] {
        while true {
            lock.lock()
            if let bytes = packs[id] {
                // Least recently used goes first: a pack a long file is still reading stays.
                if let i = order.firstIndex(of: id) { order.remove(at: i); order.append(id) }
                served(id)
                lock.unlock()
                return bytes
            }
            if let wait = loading[id] {
                lock.unlock()
                wait.wait()
                continue   // served from the cache now, or the loader failed: try it ourselves, and get its error
            }
            let g = DispatchGroup()
            g.enter()
            loading[id] = g
            fetched += 1
            lock.unlock()
            let result: Result<[UInt8], RepositoryError>
            do { result = .success(try load()) } catch { result = .failure(error) }
            lock.lock()
            loading[id] = nil
            if case .success(let bytes) = result {
                packs[id] = bytes
                order.append(id)
                served(id)
                while order.count > capacity { packs[order.removeFirst()] = nil }
            }
            lock.unlock()
            g.leave()
            return try result.get()
        }
    }
}
