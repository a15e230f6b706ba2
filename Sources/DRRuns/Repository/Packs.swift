import CEL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a stored object (a sealed chunk) lives: its pack, and its byte range there.
public struct BlobLocation: Sendable, Equatable {
    public var pack: String
    public var offset: UInt32
    public var length: UInt32
}

/// The blobs of one pack, as an index file and a pack's trailer list them.
struct PackContents: Sendable, Equatable {
    var pack: String
    var blobs: [(id: String, offset: UInt32, length: UInt32)]

    static func == (a: PackContents, b: PackContents) -> Bool {
        a.pack == b.pack && a.blobs.elementsEqual(b.blobs) { $0.id == $1.id && $0.offset == $1.offset && $0.length == $1.length }
    }
}

/// The binary layout of index files and pack trailers (docs/repository-format.md). Binary,
/// not JSON: an index names every object of the repository and is read by every backup, so
/// decoding it must cost milliseconds, not a JSON parse of tens of thousands of records.
///
/// Index: `"DRIX"`, u32 count of packs, then per pack its 32-byte id, u32 count of blobs, and
/// per blob its 32-byte id, u32 offset, u32 length. A pack trailer is the same with one pack.
/// Integers are little-endian.
enum PackCodec {
    static let magic = Array("DRIX".utf8)

    static func encode(_ packs: [PackContents]) -> [UInt8] {
        var out = ByteWriter(bytes: magic)
        out.bytes.reserveCapacity(8 + packs.reduce(0) { $0 + 36 + $1.blobs.count * 40 })
        out.u32(UInt32(packs.count))
        for p in packs {
            out.id(p.pack)
            out.u32(UInt32(p.blobs.count))
            for b in p.blobs {
                out.id(b.id)
                out.u32(b.offset)
                out.u32(b.length)
            }
        }
        return out.bytes
    }

    /// nil when the bytes are not a well-formed index (truncated, wrong magic, trailing bytes).
    static func decode(_ bytes: [UInt8]) -> [PackContents]? {
        var r = ByteReader(bytes)
        guard r.take(4).map(Array.init) == magic, let packCount = r.u32() else { return nil }
        var out: [PackContents] = []
        for _ in 0..<packCount {
            guard let pack = r.id(), let blobCount = r.u32(), Int(blobCount) * 40 <= r.remaining else { return nil }
            var blobs: [(id: String, offset: UInt32, length: UInt32)] = []
            blobs.reserveCapacity(Int(blobCount))
            for _ in 0..<blobCount {
                guard let id = r.id(), let offset = r.u32(), let length = r.u32() else { return nil }
                blobs.append((id, offset, length))
            }
            out.append(PackContents(pack: pack, blobs: blobs))
        }
        return r.remaining == 0 ? out : nil
    }

    static func isId(_ s: String) -> Bool { s.utf8.count == 64 && s.allSatisfy(\.isHexDigit) }
}

/// One worker's pack being filled during a backup: sealed blobs appended through the
/// storage's writer, then a sealed trailer listing them, so a pack can be checked (and an
/// index rebuilt) from the pack alone. `sync` commits it, and must return before any index
/// names the pack.
final class PackWriter: @unchecked Sendable {   // one owner at a time: its worker, then the flusher
    let id: String
    let path: String
    private let writer: any StorageWriter
    private(set) var size: UInt32 = 0
    private(set) var blobs: [(id: String, offset: UInt32, length: UInt32)] = []

    init(in repository: BuiltinRepository, created: (PackWriter) -> Void) throws(RepositoryError) {
        id = JSONWriter.hex(BuiltinRepository.randomBytes(32))
        path = repository.packPath(id)
        writer = try repository.storage.writer(path)
        created(self)
    }

    /// Makes the pack's contents durable and visible. Its directory entry is made durable
    /// by the caller, once per directory.
    func sync() throws(RepositoryError) { try writer.commit() }

    /// Removes what was written (a failed backup leaves nothing behind).
    func abort() { writer.abort() }

    func append(_ id: String, _ sealed: some ContiguousBytes) throws(RepositoryError) {
        let length = try write(sealed)
        blobs.append((id, size, UInt32(length)))
        size += UInt32(length)
    }

    /// Writes the trailer (sealed listing, then its length as a little-endian u32).
    func finish(trailer: [UInt8]) throws(RepositoryError) -> PackContents {
        var tail = ByteWriter(bytes: trailer)
        tail.u32(UInt32(trailer.count))
        _ = try write(tail.bytes)
        return PackContents(pack: id, blobs: blobs)
    }

    private func write(_ bytes: some ContiguousBytes) throws(RepositoryError) -> Int {
        let writer = self.writer
        let result: Result<Int, RepositoryError> = bytes.withUnsafeBytes { buf in
            do throws(RepositoryError) { try writer.append(buf); return .success(buf.count) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// Flushes finished packs to disk, in the background and one at a time, while the workers go
/// on hashing: waiting for each pack's `fsync` in the worker left a core idle for a third of
/// a first backup. Only this backup's files are waited for (a `syncfs` would also wait for
/// every other writer on the filesystem).
final class PackFlusher: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [PackWriter] = []
    private var busy = 0
    private var failure: RepositoryError?
    private let parallel: Int
    private let pending: Int
    private var started = 0

    /// `parallel` commits at once, each on a thread of its own: 1 on a local disk (its
    /// fsyncs contend), more on S3 (each is an upload waiting on the network). At most
    /// `parallel + 2` packs wait: a worker that would exceed that waits, so a slow target
    /// bounds memory instead of queueing every pack of a backup.
    init(parallel: Int = 1) {
        self.parallel = max(1, parallel)
        pending = self.parallel + 2
    }

    func flush(_ pack: PackWriter) {
        condition.lock()
        while queue.count + busy >= pending { condition.wait() }
        queue.append(pack)
        if started < parallel {
            started += 1
            let t = Thread { [self] in run() }
            t.start()
        }
        condition.broadcast()
        condition.unlock()
    }

    /// A committer: takes packs until the queue stays empty, then ends.
    private func run() {
        condition.lock()
        while true {
            guard !queue.isEmpty else { break }
            let pack = queue.removeFirst()
            busy += 1
            condition.unlock()
            var error: RepositoryError?
            do throws(RepositoryError) { try pack.sync() } catch let e { error = e }
            condition.lock()
            busy -= 1
            if let error, failure == nil { failure = error }
            condition.broadcast()
        }
        started -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Returns once every pack handed over is durable, or throws the first flush failure.
    func drain() throws(RepositoryError) {
        condition.lock()
        while !queue.isEmpty || busy > 0 || started > 0 { condition.wait() }
        let failure = self.failure
        condition.unlock()
        if let failure { throw failure }
    }
}
