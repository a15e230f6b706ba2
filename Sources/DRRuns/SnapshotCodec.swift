import Foundation

/// A snapshot's entries in binary (docs/repository-format.md). Every backup decodes its
/// parent's entries and encodes its own: with JSON that was a third of an incremental
/// backup of 20,000 files; this takes milliseconds.
///
/// Layout, integers little-endian: u32 count; per entry u8 kind (0 file, 1 dir, 2 symlink),
/// u8 flags (1 sha256, 2 chunks, 4 target, 8 ctime, 16 inode), u32 mode, i64 mtime,
/// u32 mtimeNanos, i64 size, string path; then, as flagged, 32-byte sha256, u32 count and
/// 32-byte ids of the chunks, string target, i64 ctime, u64 inode. A string is u32 length
/// and UTF-8 bytes.
enum SnapshotCodec {
    static let magic = Array("DRS2".utf8)

    static func encode(_ entries: [ManifestEntry]) -> [UInt8] {
        var w = ByteWriter()
        w.bytes.reserveCapacity(entries.count * 120)
        w.u32(UInt32(entries.count))
        for e in entries {
            w.u8(e.kind == .file ? 0 : e.kind == .dir ? 1 : 2)
            var flags: UInt8 = 0
            if e.sha256 != nil { flags |= 1 }
            if e.chunks != nil { flags |= 2 }
            if e.target != nil { flags |= 4 }
            if e.ctime != nil { flags |= 8 }
            if e.inode != nil { flags |= 16 }
            w.u8(flags)
            w.u32(e.mode)
            w.i64(e.mtime)
            w.u32(UInt32(bitPattern: e.mtimeNanos))
            w.i64(e.size)
            w.string(e.path)
            if let sha = e.sha256 { w.id(sha) }
            if let chunks = e.chunks {
                w.u32(UInt32(chunks.count))
                for c in chunks { w.id(c) }
            }
            if let t = e.target { w.string(t) }
            if let c = e.ctime { w.i64(c) }
            if let i = e.inode { w.u64(i) }
        }
        return w.bytes
    }

    /// The entries as a format-3 snapshot stores them: always offered to zstd whole, since
    /// they begin with the largest files' chunk ids, random bytes that would fool the
    /// codec's sample into storing the listing raw (2.7 MB per snapshot of the bench tree,
    /// where compressed it is 1.6 MB).
    static func framed(_ entries: [ManifestEntry]) -> [UInt8] {
        ObjectCodec.frame(encode(entries), with: CompressionContext(), probe: false)
    }

    /// nil when the bytes are not well-formed entries (truncated, unknown kind, trailing bytes).
    static func decode(_ bytes: [UInt8]) -> [ManifestEntry]? {
        var r = ByteReader(bytes)
        guard let count = r.u32(), Int(count) <= r.remaining / 26 else { return nil }
        var out: [ManifestEntry] = []
        out.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let k = r.u8(), k <= 2, let flags = r.u8(), let mode = r.u32(), let mtime = r.i64(), let nanos = r.u32(),
                  let size = r.i64(), let path = r.string() else { return nil }
            var e = ManifestEntry(path: path, kind: k == 0 ? .file : k == 1 ? .dir : .symlink, mode: mode, mtime: mtime,
                                  mtimeNanos: Int32(bitPattern: nanos), size: size)
            if flags & 1 != 0 { guard let sha = r.id() else { return nil }; e.sha256 = sha }
            if flags & 2 != 0 {
                guard let n = r.u32(), Int(n) <= r.remaining / 32 else { return nil }
                var chunks: [String] = []
                chunks.reserveCapacity(Int(n))
                for _ in 0..<n { guard let c = r.id() else { return nil }; chunks.append(c) }
                e.chunks = chunks
            }
            if flags & 4 != 0 { guard let t = r.string() else { return nil }; e.target = t }
            if flags & 8 != 0 { guard let c = r.i64() else { return nil }; e.ctime = c }
            if flags & 16 != 0 { guard let i = r.u64() else { return nil }; e.inode = i }
            out.append(e)
        }
        return r.remaining == 0 ? out : nil
    }
}

/// Entry points for the fuzz driver (Tests/Fuzz): the decoders of what a repository holds,
/// which read bytes an attacker with write access to the storage controls.
public enum RepositoryDecoders {
    /// Snapshot entries; nil when malformed.
    public static func snapshotEntries(_ bytes: [UInt8]) -> Int? { SnapshotCodec.decode(bytes)?.count }
    /// An index file or pack trailer; nil when malformed.
    public static func index(_ bytes: [UInt8]) -> Int? { PackCodec.decode(bytes)?.count }
    /// A framed (format 3) object, at most `limit` bytes once decompressed; nil when refused.
    public static func frame(_ bytes: [UInt8], limit: Int = 1 << 20) -> Int? {
        do { return try ObjectCodec.unframe(bytes, limit: limit).count } catch { return nil }
    }
}

extension RepositoryDecoders {
    /// Valid encodings, as seeds for the fuzzer's corpus (`drplan-fuzz seed DIR`).
    public static func samples() -> [String: [[UInt8]]] {
        let id = String(repeating: "ab", count: 32), other = String(repeating: "0f", count: 32)
        let entries = [
            ManifestEntry(path: "", kind: .dir, mode: 0o755, mtime: 1_700_000_000, mtimeNanos: 5, size: 0),
            ManifestEntry(path: "docs/a.txt", kind: .file, mode: 0o644, mtime: 1_700_000_000, mtimeNanos: 0, size: 11, sha256: other, chunks: [id]),
            ManifestEntry(path: "link", kind: .symlink, mode: 0o777, mtime: 0, mtimeNanos: 0, size: 0, target: "docs/a.txt"),
        ]
        let index = [PackContents(pack: other, blobs: [(id, 0, 40), (other, 40, 1_000)])]
        let ctx = CompressionContext()
        let text = Array(String(repeating: "backup restore snapshot ", count: 200).utf8)
        return [
            "snapshot": [SnapshotCodec.encode(entries), SnapshotCodec.encode([])],
            "index": [PackCodec.encode(index), PackCodec.encode([])],
            "frame": [ObjectCodec.frame(text, with: ctx), ObjectCodec.raw(Array("plain".utf8))],
        ]
    }
}
