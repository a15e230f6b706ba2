import Foundation
import Testing
import TestSupport
@testable import DRRuns

@Suite("Repository compression")
struct CompressionTests {
    static func packBytes(_ root: String) throws -> Int {
        var total = 0
        let packs = root + "/packs"
        for d in try FileManager.default.contentsOfDirectory(atPath: packs) {
            for f in try FileManager.default.contentsOfDirectory(atPath: packs + "/" + d) {
                total += try #require(try FileManager.default.attributesOfItem(atPath: packs + "/" + d + "/" + f)[.size] as? Int)
            }
        }
        return total
    }

    static func text(_ n: Int) -> String {
        let words = "backup restore snapshot retention offsite immutable replica schedule".split(separator: " ")
        var out = ""
        while out.utf8.count < n { out += words[Int.random(in: 0..<words.count)] + " " }
        return out
    }

    @Test("text is stored compressed, random data is stored as it is, and both restore byte for byte")
    func compressesWhatPays() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        #expect(repo.version == 3)
        let text = Self.text(3 << 20)
        _ = try dir.write("text/a.txt", text)
        let b1 = try repo.backup(paths: [dir.path + "/text"], tags: ["t"])
        let textStored = try Self.packBytes(dir.path + "/repo")
        #expect(textStored < text.utf8.count / 3, "3 MiB of words stored in \(textStored) bytes")

        let random = Data((0..<(3 << 20)).map { _ in UInt8.random(in: 0...255) })
        _ = try dir.write("random/r.bin", random)
        let b2 = try repo.backup(paths: [dir.path + "/random"], tags: ["r"])
        let randomStored = try Self.packBytes(dir.path + "/repo") - textStored
        // Raw plus a codec byte, the AES-GCM nonce and tag per 1 MiB object, and the trailer.
        #expect(randomStored >= random.count && randomStored < random.count + 4096)

        for (snapshot, file, expected) in [(b1.snapshot, "a.txt", Data(text.utf8)), (b2.snapshot, "r.bin", random)] {
            let out = URL(fileURLWithPath: dir.path + "/out-" + snapshot)
            #expect(try repo.restore(snapshot, to: out).damaged.isEmpty)
            #expect(try Data(contentsOf: out.appendingPathComponent(file)) == expected)
        }
        #expect(try repo.check(readData: .all).problems.isEmpty)
    }

    @Test("a snapshot's entries are compressed even when they begin with a large file's random chunk ids")
    func listingsCompressed() throws {
        func hex() -> String { (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }
        // As a backup sorts them: one 600 MiB file first (600 chunk ids, more than the codec's
        // 16 KiB sample), then 5,000 small files, as in the bench tree.
        var entries = [ManifestEntry(path: "large/l0.bin", kind: .file, mode: 0o100644, mtime: 1_700_000_000, mtimeNanos: 0, size: 600 << 20)]
        entries[0].sha256 = hex()
        entries[0].chunks = (0..<600).map { _ in hex() }
        for i in 0..<5000 {
            var e = ManifestEntry(path: "small/\(i / 500)/f\(i)", kind: .file, mode: 0o100644, mtime: 1_700_000_000 + Int64(i), mtimeNanos: Int32(i), size: Int64(1024 + i))
            e.sha256 = hex()
            e.chunks = [hex()]
            entries.append(e)
        }
        let raw = SnapshotCodec.encode(entries)
        #expect(ObjectCodec.frame(raw, with: CompressionContext()).first == ObjectCodec.none.rawValue, "the sample alone judges these incompressible")
        let framed = SnapshotCodec.framed(entries)
        #expect(framed.first == ObjectCodec.zstd.rawValue && framed.count < raw.count * 85 / 100, "\(framed.count) of \(raw.count) bytes")
        #expect(SnapshotCodec.decode(try ObjectCodec.unframe(framed, limit: raw.count)) == entries)
    }

    @Test("a version-2 repository (no codec bytes) stays version 2, and what it holds still restores")
    func versionTwoStillReads() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let root = dir.path + "/repo"
        #expect(mkdir(root, 0o700) == 0)
        let (repo, _) = try BuiltinRepository.create(storage: LocalStorage(root: root), passphrase: RepositoryTests.passphrase, kdfRounds: 1 << 10, version: 2)
        let text = Self.text(1 << 20)
        _ = try dir.write("src/a.txt", text)
        let b = try repo.backup(paths: [dir.path + "/src"], tags: ["t"])
        // Uncompressed: format 2 stores the chunk as it is.
        #expect(try Self.packBytes(root) > text.utf8.count)
        let reopened = try BuiltinRepository.open(at: URL(fileURLWithPath: root), passphrase: RepositoryTests.passphrase)
        #expect(reopened.version == 2)
        let out = URL(fileURLWithPath: dir.path + "/out")
        #expect(try reopened.restore(b.snapshot, to: out).damaged.isEmpty)
        #expect(try String(contentsOfFile: out.path + "/a.txt", encoding: .utf8) == text)
    }

    @Test("a snapshot whose entries carry a damaged frame is reported as that, not as an unreadable version-1 file")
    func damagedSnapshotFrame() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir, encrypted: false)
        _ = try dir.write("src/a.txt", Self.text(10_000))
        let id = try repo.backup(paths: [dir.path + "/src"]).snapshot
        let url = URL(fileURLWithPath: dir.path + "/repo/snapshots/" + id)
        var bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = Int(bytes[4]) | Int(bytes[5]) << 8 | Int(bytes[6]) << 16 | Int(bytes[7]) << 24
        bytes[8 + headerLength] = 7   // the entries' codec byte
        try Data(bytes).write(to: url)
        let e = try #require(throws: RepositoryError.self) { try repo.snapshot(id) }
        #expect(e.kind == .corrupt && e.message.contains("unknown codec 7"), "\(e.message)")
    }

    @Test("a frame that declares an impossible size, or an unknown codec, is damage, not an allocation")
    func hostileFrames() throws {
        let ctx = CompressionContext()
        let original = Array(Self.text(200_000).utf8)
        let framed = ObjectCodec.frame(original, with: ctx)
        #expect(framed.first == ObjectCodec.zstd.rawValue)
        #expect(throws: RepositoryError.self) { try ObjectCodec.unframe(framed, limit: 1000) }
        #expect(throws: RepositoryError.self) { try ObjectCodec.unframe([7, 1, 2, 3], limit: 1000) }
        #expect(throws: RepositoryError.self) { try ObjectCodec.unframe([1, 1, 2, 3], limit: 1000) }
        #expect(try ObjectCodec.unframe(framed, limit: 1 << 20) == original)
    }
}
