import CEL
import Crypto
import Foundation
import Testing
import TestSupport
@testable import DRRuns
#if canImport(Glibc)
import Glibc
#endif

@Suite("Builtin repository")
struct RepositoryTests {
    static let passphrase = "correct horse battery staple"
    /// Fast key derivation for tests; real repositories use 2^15 rounds.
    static func make(_ dir: TempDir, encrypted: Bool = true) throws -> BuiltinRepository {
        try BuiltinRepository.initialize(at: URL(fileURLWithPath: dir.path + "/repo"), passphrase: encrypted ? passphrase : nil, kdfRounds: 1 << 10)
    }

    static func setTimes(_ path: String, _ seconds: Int, _ nanos: Int) {
        var t = [timespec(tv_sec: seconds, tv_nsec: nanos), timespec(tv_sec: seconds, tv_nsec: nanos)]
        utimensat(AT_FDCWD, path, &t, AT_SYMLINK_NOFOLLOW)
    }

    /// Every entry of a tree: (type, mode, mtime, content or link target).
    static func describe(_ root: String) throws -> [String: String] {
        var out: [String: String] = [:]
        var stack = [""]
        while let rel = stack.popLast() {
            let full = rel.isEmpty ? root : root + "/" + rel
            var st = stat()
            guard lstat(full, &st) == 0 else { throw CocoaError(.fileReadNoSuchFile) }
            let mode = String(UInt32(st.st_mode) & 0o7777, radix: 8)
            let mtime = "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                out[rel] = "dir \(mode) \(mtime)"
                for c in try FileManager.default.contentsOfDirectory(atPath: full) { stack.append(rel.isEmpty ? c : rel + "/" + c) }
            case S_IFLNK:
                out[rel] = "link -> \(try FileManager.default.destinationOfSymbolicLink(atPath: full))"
            default:
                let data = try Data(contentsOf: URL(fileURLWithPath: full))
                out[rel] = "file \(mode) \(mtime) \(data.count) \(JSONWriter.hex(SHA256.hash(data: data)))"
            }
        }
        return out
    }

    static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        return lstat(path, &st) == 0 ? Int64(st.st_size) : -1
    }

    static func randomFile(_ path: String, bytes: Int) throws {
        let src = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: path, contents: nil)
        let out = try #require(FileHandle(forWritingAtPath: path))
        var left = bytes
        while left > 0 {
            let n = min(left, 4 << 20)
            out.write(try src.read(upToCount: n) ?? Data())
            left -= n
        }
        try out.close()
    }

    @Test("a round trip is byte for byte: symlinks, empty files and directories, permissions, mtimes, unicode, 100 MB")
    func roundTrip() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let src = dir.path + "/src"
        try dir.write("src/docs/report.txt", "quarterly numbers\n")
        try dir.write("src/docs/empty.txt", "")
        try dir.write("src/Ünïcödé 文件 ✓.txt", "unicode name\n")
        try dir.write("src/bin/run.sh", "#!/bin/sh\necho hi\n")
        try FileManager.default.createDirectory(atPath: src + "/empty-dir", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: src + "/docs/latest", withDestinationPath: "report.txt")
        try FileManager.default.createSymbolicLink(atPath: src + "/dangling", withDestinationPath: "/nonexistent/target")
        try Self.randomFile(src + "/big.bin", bytes: 100 << 20)
        chmod(src + "/bin/run.sh", 0o755); chmod(src + "/docs/report.txt", 0o600); chmod(src + "/bin", 0o750)
        Self.setTimes(src + "/docs/report.txt", 1_700_000_000, 123_456_789)
        Self.setTimes(src + "/empty-dir", 1_600_000_000, 0)
        Self.setTimes(src + "/docs", 1_650_000_000, 5)
        let repo = try Self.make(dir)
        let summary = try repo.backup(paths: [src], tags: ["job-a"])
        #expect(summary.files == 5 && summary.bytesRead > 100 << 20)
        let out = URL(fileURLWithPath: dir.path + "/restored")
        let report = try repo.restore(summary.snapshot, to: out)
        #expect(report.damaged.isEmpty && report.files == 5)
        var original = try Self.describe(src), restored = try Self.describe(out.path)
        // The target directory itself takes the source root's mode and mtime too.
        original[""] = nil; restored[""] = nil
        #expect(restored == original)
        #expect(try repo.snapshots().map(\.tags) == [["job-a"]])
    }

    @Test("a second backup after a 2% change writes a small fraction of the first")
    func incremental() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        for i in 0..<100 { try Self.randomFile(dir.path + "/src/f\(i).bin", bytes: 200_000) }
        let repo = try Self.make(dir)
        let first = try repo.backup(paths: [dir.path + "/src"])
        try Self.randomFile(dir.path + "/src/f7.bin", bytes: 200_000)
        try Self.randomFile(dir.path + "/src/f42.bin", bytes: 200_000)
        let second = try repo.backup(paths: [dir.path + "/src"])
        #expect(second.bytesRead == first.bytesRead)
        #expect(second.newObjects == 2)
        #expect(second.filesReused == 98)
        #expect(Double(second.bytesWritten) < 0.05 * Double(first.bytesWritten))
    }

    @Test("the parent shortcut: unchanged files are not read again, but a missing object or a changed file with its mtime put back is")
    func parentShortcut() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        for i in 0..<5 { try Self.randomFile(dir.path + "/src/f\(i).bin", bytes: 100_000) }
        let repo = try Self.make(dir)
        repo.packTarget = 1   // a pack per object, so one object can be lost alone
        let first = try repo.backup(paths: [dir.path + "/src"], tags: ["job", "a"])
        #expect(first.filesReused == 0)
        // Another job's snapshot is not a parent.
        #expect(try repo.backup(paths: [dir.path + "/src"], tags: ["other", "a"]).filesReused == 0)
        // Same size, same mtime, new content: only the ctime tells, and it does.
        var st = stat()
        lstat(dir.path + "/src/f1.bin", &st)
        try Self.randomFile(dir.path + "/src/f1.bin", bytes: 100_000)
        Self.setTimes(dir.path + "/src/f1.bin", st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
        // A lost object of an unchanged file is stored again rather than trusted.
        let snap = try repo.snapshot(first.snapshot)
        let f3 = try #require(snap.entries.first { $0.path == "f3.bin" }?.chunks?.first)
        try FileManager.default.removeItem(at: repo.packURL(try #require(repo.location(f3)).pack))
        let second = try repo.backup(paths: [dir.path + "/src"], tags: ["job", "a"])
        #expect(second.filesReused == 3 && second.newObjects == 2)
        let out = URL(fileURLWithPath: dir.path + "/out")
        let r = try repo.restore(second.snapshot, to: out)
        #expect(r.damaged.isEmpty && r.files == 5)
        for i in 0..<5 {
            #expect(try Data(contentsOf: out.appendingPathComponent("f\(i).bin")) == Data(contentsOf: URL(fileURLWithPath: dir.path + "/src/f\(i).bin")))
        }
    }

    @Test("a version-1 repository (an object per file) still restores, and its next backup upgrades it to packs")
    func versionOneUpgrade() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let root = URL(fileURLWithPath: dir.path + "/repo")
        let repo = try Self.make(dir)
        // Rebuild the repository as version 1 wrote it: config version 1, data/XX/ID, no packs.
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("config"))) as? [String: Any])
        config["version"] = 1
        config["mac"] = nil   // version 1 had neither a mac nor an id
        config["id"] = nil
        try JSONSerialization.data(withJSONObject: config).write(to: root.appendingPathComponent("config"))
        try FileManager.default.removeItem(at: root.appendingPathComponent("packs"))
        try FileManager.default.removeItem(at: root.appendingPathComponent("index"))
        let old = Data("written by version 1\n".utf8)
        let id = repo.objectId(old)
        try FileManager.default.createDirectory(at: repo.objectURL(id).deletingLastPathComponent(), withIntermediateDirectories: true)
        try repo.seal([UInt8](old), aad: Array(id.utf8)).write(to: repo.objectURL(id))
        let v1 = Snapshot(id: "0011223344556677", time: 1_700_000_000, timeNanos: nil, host: "h", tags: ["job"], paths: [dir.path + "/src"],
                          entries: [ManifestEntry(path: "", kind: .dir, mode: 0o755, mtime: 0, mtimeNanos: 0, size: 0),
                                    ManifestEntry(path: "old.txt", kind: .file, mode: 0o644, mtime: 0, mtimeNanos: 0, size: Int64(old.count),
                                                  sha256: JSONWriter.hex(SHA256.hash(data: old)), chunks: [id])])
        // Version 1 sealed the whole snapshot as one JSON document.
        try repo.seal([UInt8](try JSONEncoder().encode(v1)), aad: Array("snapshot:\(v1.id)".utf8))
            .write(to: root.appendingPathComponent("snapshots").appendingPathComponent(v1.id))

        let opened = try BuiltinRepository.open(at: root, passphrase: RepositoryTests.passphrase)
        #expect(opened.version == 1)
        try dir.write("src/old.txt", "written by version 1\n")
        try dir.write("src/new.txt", "written by version 2\n")
        let b = try opened.backup(paths: [dir.path + "/src"], tags: ["job"])
        #expect(opened.version == 2 && b.newObjects == 1)   // old.txt's object is the loose one, not stored again
        #expect(try BuiltinRepository.open(at: root, passphrase: RepositoryTests.passphrase).version == 2)
        for (snapshot, files) in [(v1.id, 1), (b.snapshot, 2)] {
            let r = try opened.restore(snapshot, to: URL(fileURLWithPath: dir.path + "/out-" + snapshot))
            #expect(r.damaged.isEmpty && r.files == files)
        }
        #expect(try opened.check().isEmpty)
        // Pruning the version-1 snapshot frees nothing the new one still uses.
        try opened.forget([v1.id])
        #expect(try opened.collectGarbage(grace: 0).objects == 0)
        #expect(try opened.restore(b.snapshot, to: URL(fileURLWithPath: dir.path + "/again")).damaged.isEmpty)
    }

    @Test("snapshot entries and index records survive their binary encoding; damaged bytes decode to nil, never a crash")
    func binaryRecords() throws {
        var rng = SplitMix(seed: 7)
        func hex() -> String { (0..<32).map { _ in String(format: "%02x", Int(rng.next() % 256)) }.joined() }
        var entries: [ManifestEntry] = [ManifestEntry(path: "", kind: .dir, mode: 0o755, mtime: -5, mtimeNanos: 999_999_999, size: 0)]
        for i in 0..<50 {
            entries.append(ManifestEntry(path: "dir/Grüße \(i).txt", kind: .file, mode: 0o640, mtime: 1_700_000_000 + Int64(i), mtimeNanos: Int32(i),
                                         size: Int64(i) << 33, sha256: hex(), chunks: (0..<(i % 4)).map { _ in hex() },
                                         target: nil, ctime: i % 2 == 0 ? Int64(i) * 1_000_000_007 : nil, inode: i % 3 == 0 ? UInt64.max - UInt64(i) : nil))
        }
        entries.append(ManifestEntry(path: "link", kind: .symlink, mode: 0o777, mtime: 0, mtimeNanos: 0, size: 0, target: "../ä/b"))
        let bytes = SnapshotCodec.encode(entries)
        #expect(SnapshotCodec.decode(bytes) == entries)
        let packs = [PackContents(pack: hex(), blobs: (0..<10).map { (hex(), UInt32($0) * 1000, UInt32.max - UInt32($0)) }), PackContents(pack: hex(), blobs: [])]
        let index = PackCodec.encode(packs)
        #expect(PackCodec.decode(index) == packs)
        // Every truncation, and a trailing byte, is refused.
        for cut in stride(from: 0, to: bytes.count, by: 37) { #expect(SnapshotCodec.decode(Array(bytes.prefix(cut))) == nil) }
        for cut in 0..<index.count { #expect(PackCodec.decode(Array(index.prefix(cut))) == nil) }
        #expect(SnapshotCodec.decode(bytes + [0]) == nil && PackCodec.decode(index + [0]) == nil)
    }

    @Test("a file that grows while it is backed up: what was read is what is recorded, and it verifies")
    func changingFile() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let path = dir.path + "/src/growing.log"
        try Self.randomFile(path, bytes: 4 << 20)
        try dir.write("src/other.txt", "steady")
        let repo = try Self.make(dir)
        let writer = Thread {
            guard let h = FileHandle(forWritingAtPath: path) else { return }
            _ = try? h.seekToEnd()
            for i in 0..<400 { h.write(Data(repeating: UInt8(i % 251), count: 64 << 10)) }
            try? h.close()
        }
        writer.start()
        let b = try repo.backup(paths: [dir.path + "/src"])
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        let entry = try #require(try repo.snapshot(b.snapshot).entries.first { $0.path == "growing.log" })
        #expect(entry.size >= 4 << 20)
        let out = URL(fileURLWithPath: dir.path + "/out")
        let r = try repo.restore(b.snapshot, to: out)
        #expect(r.damaged.isEmpty && r.files == 2)
        let restored = try Data(contentsOf: out.appendingPathComponent("growing.log"))
        let now = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(Int64(restored.count) == entry.size && now.prefix(restored.count) == restored)
    }

    @Test("no plaintext of the source appears in an encrypted repository")
    func noPlaintext() throws {
        let marker = Array("PLAINTEXT-MARKER-drplan-0123456789".utf8)
        for encrypted in [true, false] {
            let dir = try TempDir(); defer { dir.cleanup() }
            try dir.write("src/secret.txt", String(decoding: Array(repeating: marker, count: 1000).joined(), as: UTF8.self))
            let repo = try Self.make(dir, encrypted: encrypted)
            _ = try repo.backup(paths: [dir.path + "/src"])
            var found = false
            let files = FileManager.default.enumerator(atPath: dir.path + "/repo")?.allObjects as? [String] ?? []
            for f in files {
                guard let data = FileManager.default.contents(atPath: dir.path + "/repo/" + f) else { continue }
                if data.range(of: Data(marker)) != nil || data.range(of: Data("secret.txt".utf8)) != nil { found = true }
            }
            #expect(found == !encrypted, "encrypted: \(encrypted)")   // the unencrypted run proves the scan can find it
        }
    }

    @Test("a flipped byte, a truncated object and a deleted object each name the damaged file")
    func corruption() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        // Random content: it does not compress, so each object fills most of its pack.
        for name in ["a", "b", "c", "d"] { try Self.randomFile(dir.path + "/src/\(name).txt", bytes: 60_000) }
        let repo = try Self.make(dir)
        repo.packTarget = 1   // a pack per object, so each file's damage stays its own
        let snap = try repo.backup(paths: [dir.path + "/src"]).snapshot
        let entries = Dictionary(try repo.snapshot(snap).entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        func object(_ file: String) throws -> String {
            try #require(entries[file]?.chunks?.first.flatMap { repo.location($0) }.map { repo.packURL($0.pack).path })
        }
        var flipped = try Data(contentsOf: URL(fileURLWithPath: try object("a.txt")))
        flipped[flipped.count / 2] ^= 0x01
        try flipped.write(to: URL(fileURLWithPath: try object("a.txt")))
        let truncated = try Data(contentsOf: URL(fileURLWithPath: try object("b.txt")))
        try truncated.prefix(truncated.count / 2).write(to: URL(fileURLWithPath: try object("b.txt")))
        try FileManager.default.removeItem(atPath: try object("c.txt"))
        let report = try repo.restore(snap, to: URL(fileURLWithPath: dir.path + "/out"))
        #expect(Set(report.damaged.keys) == ["a.txt", "b.txt", "c.txt"])
        #expect(report.damaged["c.txt"]?.contains("missing") == true)
        #expect(report.damaged["b.txt"]?.contains("truncated") == true)
        #expect(report.files == 1)
        // The structural check finds the truncated and the missing pack without reading data,
        // and remembers the copy the restore found damaged.
        let problems = try repo.check()
        #expect(problems.count == 3 && problems.contains { $0.contains("missing") && $0.contains("c.txt") } && problems.contains { $0.contains("truncated") && $0.contains("b.txt") }
                && problems.contains { $0.contains("found damaged earlier") && $0.contains("a.txt") }, "\(problems)")
    }

    @Test("a malicious manifest with ../ or an absolute path is refused, and nothing is written")
    func maliciousManifest() throws {
        for path in ["../evil.txt", "/tmp/drplan-evil.txt", "a/../../evil.txt", "./x"] {
            let dir = try TempDir(); defer { dir.cleanup() }
            let repo = try Self.make(dir)
            try dir.write("src/x.txt", "x")
            let good = try repo.snapshot(try repo.backup(paths: [dir.path + "/src"]).snapshot)
            var bad = good
            bad.id = "00ff00ff00ff00ff"
            bad.entries.append(ManifestEntry(path: path, kind: .file, mode: 0o644, mtime: 0, mtimeNanos: 0, size: 1, sha256: nil, chunks: good.entries.first { $0.kind == .file }?.chunks, target: nil))
            try repo.writeSnapshot(bad)
            do {
                _ = try repo.restore(bad.id, to: URL(fileURLWithPath: dir.path + "/out/inner"))
                Issue.record("restored \(path)")
            } catch {
                #expect(error.kind == .unsafePath)
            }
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/out/evil.txt") && !FileManager.default.fileExists(atPath: dir.path + "/evil.txt"))
            #expect(!FileManager.default.fileExists(atPath: "/tmp/drplan-evil.txt"))
        }
    }

    @Test("a symlink planted in the target is never written through")
    func plantedSymlink() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("src/sub/file.txt", "payload")
        let repo = try Self.make(dir)
        let snap = try repo.backup(paths: [dir.path + "/src"]).snapshot
        try FileManager.default.createDirectory(atPath: dir.path + "/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.path + "/out", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/out/sub", withDestinationPath: dir.path + "/elsewhere")
        // With --force the planted link is replaced by the directory the snapshot names; the
        // restore never writes through it.
        _ = try repo.restore(snap, to: URL(fileURLWithPath: dir.path + "/out"), force: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/elsewhere").isEmpty)
        var st = stat()
        #expect(lstat(dir.path + "/out/sub", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR)
        #expect(try String(contentsOfFile: dir.path + "/out/sub/file.txt", encoding: .utf8) == "payload")
        // Without --force a non-empty target is refused outright.
        do { _ = try repo.restore(snap, to: URL(fileURLWithPath: dir.path + "/out")); Issue.record("restored into a non-empty target") } catch {
            #expect(error.kind == .targetNotEmpty)
        }
    }

    @Test("a wrong passphrase is a clear, permanent error before anything is read or written")
    func wrongPassphrase() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("src/x.txt", "x")
        _ = try Self.make(dir).backup(paths: [dir.path + "/src"])
        let url = URL(fileURLWithPath: dir.path + "/repo")
        do { _ = try BuiltinRepository.open(at: url, passphrase: "wrong"); Issue.record("opened with a wrong passphrase") } catch {
            #expect(error.kind == .wrongPassphrase && error.permanent && error.message.contains("wrong passphrase"))
        }
        do { _ = try BuiltinRepository.open(at: url, passphrase: nil); Issue.record("opened without a passphrase") } catch {
            #expect(error.kind == .passphraseRequired)
        }
        let repo = try BuiltinRepository.open(at: url, passphrase: Self.passphrase)
        #expect(try repo.snapshots().count == 1)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    }
}
