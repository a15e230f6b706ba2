import Foundation
import Testing
import TestSupport
@testable import DRRuns
#if canImport(Glibc)
import Glibc
#endif

/// The engines that store directory trees, each driven through `BackupEngine` only.
enum EngineUnderTest: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case builtin, restic, rsync
    var testDescription: String { rawValue }
    /// Keeps a snapshot per backup (a mirror keeps only its current state).
    var keepsHistory: Bool { self != .rsync }
    /// Stores data encrypted and authenticated, so damage and wrong keys are detected on read.
    var authenticates: Bool { self != .rsync }
    var binary: (name: String, package: String)? {
        switch self {
        case .builtin: nil
        case .restic: ("restic", "restic")
        case .rsync: ("rsync", "rsync")
        }
    }
}

/// One conformance suite that every directory engine passes, as restic tests its backends:
/// backup, listing, restore, verification, pruning, and which errors are permanent. The
/// database engines (sqlite, pg_dump) store through the builtin repository and are tested on
/// top of it in their own suites.
@Suite("Engine conformance")
struct EngineConformanceTests {
    static let passphrase = "conformance passphrase"

    /// The engine over a fresh repository in `dir`, or nil (with the skip printed or, in CI,
    /// recorded as a failure) when its binary is missing.
    static func make(_ kind: EngineUnderTest, _ dir: TempDir, passphrase: String = passphrase) throws -> (any BackupEngine)? {
        if let tool = kind.binary, (try? ExternalTool.locate(tool.name, package: tool.package)) == nil {
            _ = Tools.skip("\(kind.rawValue) conformance", because: "\(tool.name) is not installed (apt-get install \(tool.package))") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        let repo = URL(fileURLWithPath: dir.path + "/repo")
        switch kind {
        case .builtin:
            let r = FileManager.default.fileExists(atPath: repo.path + "/config")
                ? try BuiltinRepository.open(at: repo, passphrase: passphrase)
                : try BuiltinRepository.initialize(at: repo, passphrase: passphrase, kdfRounds: 1 << 10)
            return BuiltinEngine(repository: r)
        case .restic:
            return try ResticEngine(repository: repo.path, password: .value(passphrase), create: true)
        case .rsync:
            return try RsyncEngine(root: repo.appendingPathComponent("job"))
        }
    }

    /// A small tree with the awkward cases: nested and empty directories, an empty file, a
    /// symlink, odd permissions, a Unicode name and 300 KB of random bytes.
    static func source(_ dir: TempDir) throws -> String {
        let root = dir.path + "/src"
        try dir.write("src/a.txt", "alpha\n")
        try dir.write("src/sub/deeper/b.txt", "bravo\n")
        try dir.write("src/empty.txt", "")
        try dir.write("src/Grüße ✓.txt", "unicode\n")
        try FileManager.default.createDirectory(atPath: root + "/empty-dir", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: "a.txt")
        try RepositoryTests.randomFile(root + "/big.bin", bytes: 300_000)
        chmod(root + "/a.txt", 0o640)
        for (i, f) in ["a.txt", "sub/deeper/b.txt", "empty.txt", "Grüße ✓.txt", "big.bin"].enumerated() {
            RepositoryTests.setTimes(root + "/" + f, 1_700_000_000 + i * 3600, 123_456_789)
        }
        return root
    }

    /// The tree as comparable text, without the root entry (a target directory's own metadata
    /// belongs to whoever made it).
    static func tree(_ root: String) throws -> [String: String] {
        var t = try RepositoryTests.describe(root)
        t[""] = nil
        // Directory mtimes change as entries are written into them; engines differ on whether
        // they restore them, which the builtin repository's own tests cover.
        for (k, v) in t where v.hasPrefix("dir ") { t[k] = String(v.split(separator: " ").prefix(2).joined(separator: " ")) }
        return t
    }

    @Test("a backup restores byte for byte: contents, permissions, mtimes, symlinks, empty files and directories", arguments: EngineUnderTest.allCases)
    func roundTrip(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let engine = try Self.make(kind, dir) else { return }
        let src = try Self.source(dir)
        let b = try engine.backup(paths: [src], exclude: [], tags: ["job", "files"])
        #expect(b.files == 5 && b.bytesRead == 300_000 + 6 + 6 + 8)
        let out = URL(fileURLWithPath: dir.path + "/out")
        let r = try engine.restore(snapshot: b.snapshot, to: out, force: false, select: nil)
        #expect(r.damaged.isEmpty && r.files == 5 && r.bytes == b.bytesRead)
        #expect(try Self.tree(out.path) == Self.tree(src))
    }

    @Test("snapshots are tagged and listed oldest first; unchanged data is stored once", arguments: EngineUnderTest.allCases)
    func snapshotsAndDedup(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let engine = try Self.make(kind, dir) else { return }
        let src = try Self.source(dir)
        let first = try engine.backup(paths: [src], exclude: [], tags: ["job", "files"])
        let second = try engine.backup(paths: [src], exclude: [], tags: ["job", "files"])
        #expect(first.bytesWritten >= 300_000)
        #expect(second.bytesWritten < first.bytesWritten / 20, "a second backup of unchanged data wrote \(second.bytesWritten) bytes")
        let listed = try engine.snapshots(tag: "job")
        #expect(listed.allSatisfy { $0.tags.contains("job") && $0.tags.contains("files") })
        #expect(listed.map(\.time) == listed.map(\.time).sorted())
        #expect(try engine.snapshots(tag: "another-job").isEmpty)
        if kind.keepsHistory {
            #expect(listed.count == 2 && Set(listed.map(\.id)).count == 2)
            #expect(listed.contains { second.snapshot.hasPrefix($0.id) || $0.id.hasPrefix(second.snapshot) })
        } else {
            #expect(listed.count == 1)
        }
    }

    @Test("a restore writes only into an empty target, and only the selected files", arguments: EngineUnderTest.allCases)
    func restoreTargets(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let engine = try Self.make(kind, dir) else { return }
        let b = try engine.backup(paths: [try Self.source(dir)], exclude: ["*.bin"], tags: ["job", "files"])
        #expect(b.files == 4)
        try dir.write("busy/keep.txt", "mine")
        #expect(throws: RepositoryError.self) { try engine.restore(snapshot: b.snapshot, to: URL(fileURLWithPath: dir.path + "/busy"), force: false, select: nil) }
        #expect(try String(contentsOfFile: dir.path + "/busy/keep.txt", encoding: .utf8) == "mine")
        do {
            _ = try engine.restore(snapshot: b.snapshot, to: URL(fileURLWithPath: dir.path + "/busy"), force: false, select: nil)
        } catch {
            #expect(error.kind == .targetNotEmpty && error.permanent)
        }
        let out = dir.path + "/some"
        let r = try engine.restore(snapshot: b.snapshot, to: URL(fileURLWithPath: out), force: false) { paths in
            #expect(Set(paths).isSuperset(of: ["a.txt", "sub/deeper/b.txt", "Grüße ✓.txt"]) && !paths.contains("big.bin"))
            return ["sub/deeper/b.txt", "Grüße ✓.txt"]
        }
        #expect(r.files == 2 && r.damaged.isEmpty)
        #expect(try String(contentsOfFile: out + "/sub/deeper/b.txt", encoding: .utf8) == "bravo\n")
        #expect(!FileManager.default.fileExists(atPath: out + "/a.txt"))
    }

    @Test("a flipped byte in the stored data fails the restore, naming the file", arguments: EngineUnderTest.allCases.filter(\.authenticates))
    func damageIsNamed(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let engine = try Self.make(kind, dir) else { return }
        let b = try engine.backup(paths: [try Self.source(dir)], exclude: [], tags: ["job", "files"])
        // The largest stored file (restic's pack, or the builtin pack big.bin went into first,
        // being the largest file) holds big.bin's data at offset 5000.
        let data = dir.path + (kind == .builtin ? "/repo/packs" : "/repo/data")
        let objects = (FileManager.default.enumerator(atPath: data)?.allObjects as? [String] ?? []).map { data + "/" + $0 }
        let largest = try #require(objects.max { (Self.size($0)) < (Self.size($1)) })
        chmod(largest, 0o600)
        let h = try #require(FileHandle(forUpdatingAtPath: largest))
        try h.seek(toOffset: 5000)
        let byte = try #require(try h.read(upToCount: 1)?.first)
        try h.seek(toOffset: 5000)
        try h.write(contentsOf: Data([byte ^ 0x01]))
        try h.close()
        let r = try engine.restore(snapshot: b.snapshot, to: URL(fileURLWithPath: dir.path + "/out"), force: false, select: nil)
        #expect(Array(r.damaged.keys) == ["big.bin"], "damaged: \(r.damaged)")
        #expect(r.files == 4)
    }

    static func size(_ path: String) -> Int64 {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG ? Int64(st.st_size) : -1
    }

    @Test("a wrong passphrase is a permanent error and restores nothing", arguments: EngineUnderTest.allCases.filter(\.authenticates))
    func wrongPassphrase(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let engine = try Self.make(kind, dir) else { return }
        let b = try engine.backup(paths: [try Self.source(dir)], exclude: [], tags: ["job", "files"])
        let out = URL(fileURLWithPath: dir.path + "/out")
        do {
            guard let wrong = try Self.make(kind, dir, passphrase: "not the passphrase") else { return }
            _ = try wrong.restore(snapshot: b.snapshot, to: out, force: false, select: nil)
            Issue.record("a restore with the wrong passphrase succeeded")
        } catch let e as RepositoryError {
            #expect(e.kind == .wrongPassphrase && e.permanent)
            #expect(e.message.contains("wrong passphrase") || e.message.contains("wrong password"))
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []).isEmpty)
    }

    /// An engine holding two snapshots of the source whose big file changed between them.
    static func twoBackups(_ kind: EngineUnderTest, _ dir: TempDir) throws -> (any BackupEngine, String, [EngineSnapshot])? {
        guard let engine = try Self.make(kind, dir) else { return nil }
        let src = try Self.source(dir)
        _ = try engine.backup(paths: [src], exclude: [], tags: ["job", "files"])
        try RepositoryTests.randomFile(src + "/big.bin", bytes: 200_000)
        _ = try engine.backup(paths: [src], exclude: [], tags: ["job", "files"])
        return (engine, src, try engine.snapshots(tag: "job"))
    }

    @Test("pruning forgets snapshots and keeps the rest restorable", arguments: EngineUnderTest.allCases.filter(\.keepsHistory))
    func prune(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let (engine, src, before) = try Self.twoBackups(kind, dir) else { return }
        #expect(before.count == 2)
        let summary = try engine.prune(forget: [before[0].id], grace: 0, dryRun: false)
        #expect(summary.contains("forgot 1 snapshot"))
        // Forgetting again is harmless.
        _ = try engine.prune(forget: [before[0].id], grace: 0, dryRun: false)
        let after = try engine.snapshots(tag: "job")
        #expect(after.map(\.id) == [before[1].id])
        let r = try engine.restore(snapshot: before[1].id, to: URL(fileURLWithPath: dir.path + "/out"), force: false, select: nil)
        #expect(r.damaged.isEmpty && r.files == 5)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/out/big.bin")) == Data(contentsOf: URL(fileURLWithPath: src + "/big.bin")))
    }

    @Test("prune --dry-run changes nothing; check finds nothing in a sound repository and reads the data when asked", arguments: EngineUnderTest.allCases.filter(\.keepsHistory))
    func pruneDryRunAndCheck(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let (engine, src, before) = try Self.twoBackups(kind, dir) else { return }
        let files = RepositoryTrustTests.files(dir.path + "/repo")
        let plan = try engine.prune(forget: [before[0].id], grace: 0, dryRun: true)
        #expect(plan.hasPrefix("would "), "\(plan)")
        #expect(try engine.snapshots(tag: "job").map(\.id) == before.map(\.id))
        #expect(RepositoryTrustTests.files(dir.path + "/repo").filter { !$0.hasPrefix("locks/") } == files.filter { !$0.hasPrefix("locks/") })
        #expect(try engine.check(readData: .none).problems.isEmpty)
        #expect(try engine.check(readData: .all).problems.isEmpty)
        #expect(try engine.check(readData: .part(1, of: 2)).problems.isEmpty)
    }

    @Test("check --read-data finds a flipped byte that a restore of other files would not read", arguments: EngineUnderTest.allCases.filter(\.authenticates))
    func checkReadsData(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let engine = try Self.make(kind, dir) else { return }
        let src = try Self.source(dir)
        _ = try engine.backup(paths: [src], exclude: [], tags: ["job", "files"])
        // The largest data file of the repository holds big.bin's data.
        let data = RepositoryTrustTests.files(dir.path + "/repo").filter { $0.hasPrefix("packs/") || $0.hasPrefix("data/") }
        let victim = try #require(data.max { RepositoryTests.fileSize(dir.path + "/repo/" + $0) < RepositoryTests.fileSize(dir.path + "/repo/" + $1) })
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/repo/" + victim))
        bytes[bytes.count / 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: dir.path + "/repo/" + victim))
        #expect(!(try engine.check(readData: .all).problems.isEmpty))
    }

    @Test("listing a repository that does not exist throws, and creates nothing", arguments: EngineUnderTest.allCases.filter { $0 != .rsync })
    func readsCreateNothing(_ kind: EngineUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        if let tool = kind.binary, (try? ExternalTool.locate(tool.name, package: tool.package)) == nil { return }
        let repo = dir.path + "/repo"
        switch kind {
        case .builtin:
            #expect(throws: RepositoryError.self) { _ = try BuiltinEngine.open(storage: LocalStorage(root: repo), passphrase: "x", create: false) }
        default:
            let engine = try ResticEngine(repository: repo, password: .value("x"))
            #expect(throws: RepositoryError.self) { _ = try engine.snapshots(tag: nil) }
            #expect(throws: RepositoryError.self) { _ = try engine.backup(paths: [dir.path], exclude: [], tags: ["j"]) }
        }
        #expect(!FileManager.default.fileExists(atPath: repo))
    }

    @Test("a missing binary is a permanent error naming the Debian package", arguments: EngineUnderTest.allCases.filter { $0.binary != nil })
    func missingBinary(_ kind: EngineUnderTest) throws {
        let tool = try #require(kind.binary)
        do {
            _ = try ExternalTool.locate(tool.name, package: tool.package, path: "/nonexistent:/also-not-here")
            Issue.record("found \(tool.name) where it cannot be")
        } catch {
            #expect(error.kind == .missingTool && error.permanent)
            #expect(error.message.contains("apt-get install \(tool.package)"))
        }
    }
}
