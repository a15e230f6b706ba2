import CEL
import Crypto
import _CryptoExtras
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// lseek's SEEK_DATA (Linux 3.1+), which the Glibc module does not export.
let seekData: Int32 = 3

extension BuiltinRepository {
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
        var skipped: [String] = []
        for base in paths {
            let root = URL(fileURLWithPath: base).path
            var rootStat = stat()
            guard fsLstat(root, &rootStat) == 0 else { throw RepositoryError(.io, "cannot read \(root): \(String(cString: strerror(errno)))") }
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
                    entry.target = try Self.linkTarget(full)
                } else if type == S_IFREG {
                    entry.size = Int64(st.st_size)
                    entry.ctime = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
                    entry.inode = UInt64(st.st_ino)
                    files.append((entries.count, full))
                } else {
                    // Sockets, devices and FIFOs hold no data a backup could copy; they are
                    // named in the summary, never dropped without a word.
                    skipped.append(rel.isEmpty ? root : rel)
                    continue
                }
                entries.append(entry)
            }
        }
        try upgradeFormat()
        let present = try storedObjects()
        let parent = try latestSnapshot(tags: tags, paths: paths)
        let known = Dictionary((parent?.entries ?? []).filter { $0.kind == .file }.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var toRead: [(index: Int, full: String)] = []
        var reused: Int64 = 0
        for f in files {
            let e = entries[f.index]
            var allPresent = true
            if let chunks = known[e.path]?.chunks { for c in chunks where try !present.contains(c, in: self) { allPresent = false; break } }
            if allPresent, let p = known[e.path], p.size == e.size, p.mtime == e.mtime, p.mtimeNanos == e.mtimeNanos, p.ctime != nil, p.ctime == e.ctime,
               p.inode == e.inode, let chunks = p.chunks, let digest = p.sha256 {
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
                              progress: progress, present: present, parallelCommits: storage.isRemote ? 4 : 1)
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
                             filesReused: files.count - toRead.count, skipped: skipped)
    }

    /// The newest snapshot with exactly these tags and paths, whose unchanged files a backup
    /// need not read again; nil when there is none. A damaged parent means reading every file
    /// again (check-repository reports the damage); a listing or read that fails for I/O
    /// reasons fails the backup.
    func latestSnapshot(tags: [String], paths: [String]) throws(RepositoryError) -> Snapshot? {
        guard let latest = try snapshotHeaders().last(where: { $0.tags == tags && $0.paths == paths }) else { return nil }
        do { return try snapshot(latest.id) } catch where error.category == .integrity { return nil }
    }

    /// A symlink's target, read as it is (not resolved).
    static func linkTarget(_ path: String) throws(RepositoryError) -> String {
        guard let bytes = fsReadlink(path) else { throw RepositoryError(.io, "cannot read the symlink \(RunMessages.quoted(path)): \(String(cString: strerror(errno)))") }
        return FSName.encode(bytes)
    }

    /// The objects a backup may take as stored: indexed in a pack that is there and not
    /// quarantined, or (version 1) a file of their own. A lost or damaged copy makes its
    /// objects be stored again rather than trusted, so the next backup heals it.
    struct StoredObjects: Sendable {
        var index: [String: BlobLocation]
        var packs: Set<String>
        var quarantined: Set<String>
        var hasLooseObjects: Bool

        func contains(_ id: String, in repository: BuiltinRepository) throws(RepositoryError) -> Bool {
            if let loc = index[id] { return packs.contains(loc.pack) && !quarantined.contains(id + "." + loc.pack) }
            guard hasLooseObjects else { return false }
            return try repository.storage.info(repository.objectPath(id)).map { $0.size > 0 } ?? false
        }
    }

    /// What is stored now: one listing of the packs, so a pack deleted since the index was
    /// written is seen. A failed listing fails the backup rather than trusting the index.
    func storedObjects() throws(RepositoryError) -> StoredObjects {
        let (index, bad) = indexLock.withLock { (blobIndex, quarantined) }
        let packs = Set(try packNames())
        var loose = false
        do { loose = !(try storage.list("data")).isEmpty } catch where error.kind == .missing {}
        return StoredObjects(index: index, packs: packs, quarantined: bad, hasLooseObjects: loose)
    }

    /// A directory's entries with their `lstat`, sorted by name (`fstatat` on the open
    /// directory, not a path lookup per file). An unreadable directory is an error, not an
    /// empty one: skipping it would make a snapshot silently incomplete. An entry removed
    /// while the walk runs is left out.
    static func children(of dir: String) throws(RepositoryError) -> [(name: String, st: stat)] {
        guard let d = fsOpendir(dir) else { throw RepositoryError(.io, "cannot read the directory \(dir): \(String(cString: strerror(errno))); check its permissions or exclude it") }
        defer { closedir(d) }
        let fd = dirfd(d)
        var out: [(name: String, st: stat)] = []
        while let e = readdir(d) {
            // The raw bytes of the name, whatever they are: a name that is not UTF-8 is kept.
            let raw = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: UInt8.self, capacity: 256) { p in Array(UnsafeBufferPointer(start: p, count: strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)))) } }
            if raw == [0x2E] || raw == [0x2E, 0x2E] { continue }
            let name = FSName.encode(raw)
            var st = stat()
            guard (raw.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer({ b in b.baseAddress.map { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) } ?? -1 }) == 0 else {
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
        let fd = fsOpen(path, O_RDONLY | O_NOFOLLOW)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot open \(path) for reading: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var chunks: [String] = [], size: Int64 = 0
        var digest = SHA256()
        var st = stat()
        let length = fstat(fd, &st) == 0 ? Int64(st.st_size) : 0
        while true {
            // A chunk that lies wholly in a hole (seekData finds no data in it) is zeros
            // without being read: a sparse disk image costs what its data costs, and the
            // restorer writes zero chunks back as holes.
            let want = min(Int64(Self.chunkSize), length - size)
            if want > 0 {
                let data = lseek(fd, off_t(size), seekData)
                let nextData = data >= 0 ? Int64(data) : (errno == ENXIO ? length : size)
                if nextData >= size + want {
                    let zeros = [UInt8](repeating: 0, count: Int(want))
                    digest.update(data: zeros)
                    chunks.append(try putPending(zeros, worker: worker, work: work))
                    size += want
                    work.advance(bytes: want)
                    if want < Int64(Self.chunkSize) && size >= length { break }
                    continue
                }
            }
            if lseek(fd, off_t(size), SEEK_SET) < 0 { throw RepositoryError(.io, "cannot read \(path): \(String(cString: strerror(errno)))") }
            var filled = 0
            while filled < Self.chunkSize {
                let n = worker.buffer.withUnsafeMutableBytes { buf in buf.baseAddress.map { Glibc.read(fd, $0 + filled, Self.chunkSize - filled) } ?? -1 }
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
        if try work.present.contains(id, in: self) || !work.claim(id) { return id }
        let sealed = try seal(framesObjects ? ObjectCodec.frame(plaintext, with: worker.compressor) : plaintext, aad: Array(id.utf8))
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
        try storage.syncDirectories(Set(packs.map { "packs/" + $0.pack.prefix(2) }).sorted() + ["packs"])
    }

    /// Written last, atomically: a snapshot exists only once every object it names is durable.
    /// `"DRS2"`, u32 length of the sealed header, the sealed header (JSON), the sealed entries
    /// (binary): listing snapshots reads only the small header.
    func writeSnapshot(_ s: Snapshot) throws(RepositoryError) {
        let size = s.entries.reduce(Int64(0)) { $0 + ($1.kind == .file ? $1.size : 0) }
        let header = SnapshotHeader(id: s.id, time: s.time, timeNanos: s.timeNanos, host: s.host, tags: s.tags, paths: s.paths, size: size)
        let json = try Self.io { try JSONEncoder().encode(header) }
        let sealedHeader = try seal([UInt8](json), aad: Array(("snapshot-header:" + s.id).utf8))
        var out = ByteWriter(bytes: SnapshotCodec.magic)
        out.u32(UInt32(sealedHeader.count))
        out.bytes += sealedHeader
        out.bytes += try seal(framesObjects ? SnapshotCodec.framed(s.entries) : SnapshotCodec.encode(s.entries), aad: Array(("snapshot:" + s.id).utf8))
        try storage.write("snapshots/" + s.id, out.bytes, exclusive: true)
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
    let compressor = CompressionContext()

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
    let flusher: PackFlusher
    private var stored: [Int: BuiltinRepository.StoredFile] = [:]
    private var claimed = Set<String>()
    private var packFiles: [PackWriter] = []
    private var packs: [PackContents] = []
    private var written: Int64 = 0

    init(total: RunProgress, progress: ProgressSink?, present: BuiltinRepository.StoredObjects, parallelCommits: Int = 1) {
        self.present = present
        flusher = PackFlusher(parallel: parallelCommits)
        super.init(total: total, progress: progress)
    }

    /// True for the first caller with `id`: that one writes it.
    func claim(_ id: String) -> Bool { locked { claimed.insert(id).inserted } }

    /// A pack this backup created, removed again if the backup fails.
    func created(_ pack: PackWriter) { locked { packFiles.append(pack) } }

    func wrote(bytes: Int) { locked { written += Int64(bytes) } }

    func packDone(_ pack: PackContents) { locked { packs.append(pack) } }

    func finish(index: Int, _ file: BuiltinRepository.StoredFile) {
        fileDone { stored[index] = file }
    }

    func finishedPacks() -> [PackContents] { locked { packs } }

    /// After a failure: the packs written are removed, leaving the repository as it was.
    func discardPending() {
        // Waits for flushes under way; their outcome no longer matters, the packs are removed
        // and the caller throws the error that stopped the backup.
        try? flusher.drain()
        for p in locked({ packFiles }) { p.abort() }
    }

    func results() -> (stored: [Int: BuiltinRepository.StoredFile], written: Int64, newObjects: Int, error: RepositoryError?) {
        locked { (stored, written, packs.reduce(0) { $0 + $1.blobs.count }, firstError) }
    }
}
