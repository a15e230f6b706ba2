import CEL
import Foundation
import Testing
import TestSupport
@testable import DRRuns
#if canImport(Glibc)
import Glibc
#endif

/// A storage whose chosen operations fail, to prove that the repository fails closed: what it
/// cannot list or read it never treats as absent.
struct FailingStorage: RepositoryStorage {
    let inner: LocalStorage
    /// Paths (or directory names) whose listing or reading fails with an I/O error.
    var failList: Set<String> = []
    var failRead: Set<String> = []
    var location: String { inner.location }
    func list(_ dir: String) throws(RepositoryError) -> [String] {
        if failList.contains(dir) { throw RepositoryError(.io, "simulated listing failure of \(dir)") }
        return try inner.list(dir)
    }
    func info(_ path: String) throws(RepositoryError) -> StorageFileInfo? { try inner.info(path) }
    func read(_ path: String) throws(RepositoryError) -> [UInt8] {
        if failRead.contains(where: { path.hasPrefix($0) }) { throw RepositoryError(.io, "simulated read failure of \(path)") }
        return try inner.read(path)
    }
    func readRange(_ path: String, offset: Int64, length: Int) throws(RepositoryError) -> [UInt8] { try inner.readRange(path, offset: offset, length: length) }
    func write(_ path: String, _ bytes: [UInt8], exclusive: Bool) throws(RepositoryError) -> Bool { try inner.write(path, bytes, exclusive: exclusive) }
    func delete(_ path: String) throws(RepositoryError) { try inner.delete(path) }
    func writer(_ path: String) throws(RepositoryError) -> any StorageWriter { try inner.writer(path) }
    func syncDirectories(_ dirs: [String]) throws(RepositoryError) { try inner.syncDirectories(dirs) }
}

@Suite("Builtin repository: failing closed, healing, locks")
struct RepositoryTrustTests {
    /// Every regular file under `root`, relative to it.
    static func files(_ root: String) -> [String] {
        (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
            var st = stat()
            return lstat(root + "/" + $0, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        }.sorted()
    }

    /// A repository with one old snapshot (to forget) and one kept, whose data differ.
    static func twoSnapshots(_ dir: TempDir) throws -> (BuiltinRepository, old: String, kept: String) {
        let repo = try RepositoryTests.make(dir)
        try RepositoryTests.randomFile(dir.path + "/src/a.bin", bytes: 300_000)
        let old = try repo.backup(paths: [dir.path + "/src"], tags: ["j"]).snapshot
        try RepositoryTests.randomFile(dir.path + "/src/a.bin", bytes: 300_000)
        let kept = try repo.backup(paths: [dir.path + "/src"], tags: ["j"]).snapshot
        return (repo, old, kept)
    }

    @Test("prune deletes nothing when the snapshots or index listing fails, or a snapshot cannot be read")
    func pruneFailsClosed() throws {
        for failure in ["list snapshots", "list index", "read snapshot"] {
            let dir = try TempDir(); defer { dir.cleanup() }
            let (repo, _, kept) = try Self.twoSnapshots(dir)
            let before = Self.files(repo.root.path)
            var storage = FailingStorage(inner: LocalStorage(root: repo.root.path))
            switch failure {
            case "list snapshots": storage.failList = ["snapshots"]
            case "list index": storage.failList = ["index"]
            default: storage.failRead = ["snapshots/" + kept]
            }
            do {
                let failing = try BuiltinRepository.open(storage: failure == "list index" ? LocalStorage(root: repo.root.path) : storage, passphrase: RepositoryTests.passphrase)
                let wrapped = failure == "list index" ? BuiltinRepository(storage: storage, encKey: failing.encKey, idKey: failing.idKey, config: failing.config) : failing
                _ = try wrapped.collectGarbage(grace: 0)
                Issue.record("\(failure): prune went ahead")
            } catch {
                #expect(error.kind == .io || error.kind == .corrupt, "\(failure): \(error)")
            }
            #expect(Self.files(repo.root.path) == before, "\(failure): files changed")
            let r = try repo.restore(kept, to: URL(fileURLWithPath: dir.path + "/out"))
            #expect(r.damaged.isEmpty && r.files == 1)
        }
    }

    @Test("prune stops, naming the object and 'drplan repair', when a snapshot uses data no index names")
    func pruneUnindexed() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let (repo, _, _) = try Self.twoSnapshots(dir)
        for name in try repo.storage.list("index") { try repo.storage.delete("index/" + name) }
        let before = Self.files(repo.root.path)
        do { _ = try repo.planPrune(forget: [], grace: 0); Issue.record("planned a prune over unindexed data") } catch {
            #expect(error.message.contains("is in no index") && error.message.contains("drplan repair index") && error.message.contains("a.bin"), "\(error)")
        }
        #expect(Self.files(repo.root.path) == before)
        // repair index rebuilds it from the packs' trailers; then prune works and data restores.
        _ = try repo.repairIndex()
        let plan = try repo.planPrune(forget: [], grace: 0)
        #expect(plan.dropPacks.isEmpty && plan.unindexedPacks.isEmpty)
        #expect(try repo.check().isEmpty)
    }

    @Test("prune --dry-run changes nothing; the plan forgets, drops and rewrites; what is kept restores")
    func prunePlan() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let (repo, old, kept) = try Self.twoSnapshots(dir)
        let before = Self.files(repo.root.path)
        let plan = try repo.planPrune(forget: [old], grace: 0)
        #expect(plan.forget == [old] && plan.objectsRemoved > 0 && plan.summary.contains("forget 1 snapshot"))
        #expect(Self.files(repo.root.path) == before)
        _ = try repo.executePrune(plan)
        #expect(try repo.snapshotNames() == [kept])
        #expect(try repo.check(readData: .all).problems.isEmpty)
        #expect(try repo.restore(kept, to: URL(fileURLWithPath: dir.path + "/out")).damaged.isEmpty)
    }

    @Test("a deleted pack heals: the next backup stores the data again and the newest index entry wins")
    func lostPackHeals() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try RepositoryTests.randomFile(dir.path + "/src/a.bin", bytes: 2_500_000)
        let first = try repo.backup(paths: [dir.path + "/src"], tags: ["j"])
        let chunk = try #require(try repo.snapshot(first.snapshot).entries.first { $0.path == "a.bin" }?.chunks?.first)
        let lost = try #require(repo.location(chunk)).pack
        try FileManager.default.removeItem(at: repo.packURL(lost))
        // Make the old index clearly older, as it is in a real repository.
        for name in try repo.storage.list("index") { RepositoryTests.setTimes(repo.root.path + "/index/" + name, 1_600_000_000, 0) }
        let second = try repo.backup(paths: [dir.path + "/src"], tags: ["j"])
        #expect(second.bytesWritten > 0)
        // A fresh open merges both index files: the new entry must win.
        let reopened = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase)
        #expect(reopened.location(chunk)?.pack != lost)
        let r = try reopened.restore(second.snapshot, to: URL(fileURLWithPath: dir.path + "/out"))
        #expect(r.damaged.isEmpty && r.files == 1)
    }

    @Test("bit rot: check --read-data names the file, the damaged copy is never deduplicated again, and the next backup heals it")
    func bitRotHeals() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try RepositoryTests.randomFile(dir.path + "/src/photo.jpg", bytes: 500_000)
        let first = try repo.backup(paths: [dir.path + "/src"], tags: ["j"])
        #expect(try repo.check(readData: .all).problems.isEmpty)
        let chunk = try #require(try repo.snapshot(first.snapshot).entries.first { $0.path == "photo.jpg" }?.chunks?.first)
        let loc = try #require(repo.location(chunk))
        var pack = try Data(contentsOf: repo.packURL(loc.pack))
        pack[Int(loc.offset) + 40] ^= 0x01
        try pack.write(to: repo.packURL(loc.pack))
        // The structural check cannot see it; reading the data does, and names the file.
        #expect(try repo.check(readData: .none).problems.isEmpty)
        let found = try repo.check(readData: .all).problems
        #expect(found.contains { $0.contains("damaged") && $0.contains("photo.jpg") }, "\(found)")
        // A new process (a later cron run) knows it too: the backup stores the data afresh.
        let later = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase)
        let second = try later.backup(paths: [dir.path + "/src"], tags: ["j"])
        #expect(second.bytesWritten > 0 && second.newObjects >= 1)
        let r = try later.restore(second.snapshot, to: URL(fileURLWithPath: dir.path + "/out"))
        #expect(r.damaged.isEmpty && r.files == 1)
        // And prune then drops the damaged copy for good.
        _ = try later.collectGarbage(grace: 0)
        #expect(try later.check(readData: .all).problems.filter { !$0.contains(first.snapshot.prefix(8)) }.isEmpty)
    }

    @Test("a damaged index file is reported and bypassed through the pack trailers; it never blocks a restore")
    func damagedIndexBypassed() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try dir.write("src/a.txt", "alpha")
        let snap = try repo.backup(paths: [dir.path + "/src"]).snapshot
        let index = try #require(try repo.storage.list("index").first)
        try Data("garbage".utf8).write(to: repo.root.appendingPathComponent("index/" + index))
        let reopened = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase)
        #expect(reopened.indexProblems.count == 1 && reopened.indexProblems[0].contains(index))
        #expect(try reopened.restore(snap, to: URL(fileURLWithPath: dir.path + "/out")).damaged.isEmpty)
        #expect(try reopened.check().contains { $0.contains("damaged") && $0.contains("bypassed") })
        // prune refuses to work from a damaged index; repair index fixes it.
        #expect(throws: RepositoryError.self) { _ = try reopened.planPrune(forget: [], grace: 0) }
        _ = try reopened.repairIndex()
        #expect(try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase).indexProblems.isEmpty)
    }

    @Test("a deleted or damaged config is an error naming it; nothing ever writes a new config over existing data")
    func lostConfig() throws {
        for damage in ["delete", "garble"] {
            let dir = try TempDir(); defer { dir.cleanup() }
            let repo = try RepositoryTests.make(dir)
            try dir.write("src/a.txt", "alpha")
            _ = try repo.backup(paths: [dir.path + "/src"])
            let config = repo.root.path + "/config"
            if damage == "delete" { try FileManager.default.removeItem(atPath: config) } else { try Data("{".utf8).write(to: URL(fileURLWithPath: config)) }
            let before = Self.files(repo.root.path)
            do { _ = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase); Issue.record("opened without config") } catch {
                #expect(error.kind == .corrupt && error.message.contains("config"), "\(error)")
            }
            do { _ = try BuiltinRepository.create(storage: LocalStorage(root: repo.root.path), passphrase: RepositoryTests.passphrase); Issue.record("created over data") } catch {
                #expect(error.kind == .corrupt && error.message.contains("config"), "\(error)")
            }
            #expect(Self.files(repo.root.path) == before)
        }
    }

    @Test("every bit of the config flipped, one at a time, is refused, naming it (a renamed 'mac' key too)")
    func everyConfigFlip() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try dir.write("src/a.txt", "alpha")
        _ = try repo.backup(paths: [dir.path + "/src"])
        let path = repo.root.path + "/config"
        let pristine = try Data(contentsOf: URL(fileURLWithPath: path))
        var opened: [String] = []
        // Every bit of every byte, through the real open (the encoder's key order varies from
        // run to run, so every position must be covered, not a sample).
        for i in 0..<pristine.count {
            for bit in 0..<8 {
                var damaged = pristine
                damaged[i] ^= UInt8(1 << bit)
                try damaged.write(to: URL(fileURLWithPath: path))
                do { _ = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase); opened.append("byte \(i) bit \(bit)") } catch {
                    #expect(error.message.contains("config"), "byte \(i) bit \(bit): \(error)")
                }
            }
        }
        #expect(opened.isEmpty, "a damaged config opened: \(opened)")
        // And the bit flip the reliability trial found: the key "mac" renamed.
        let renamed = String(decoding: pristine, as: UTF8.self).replacingOccurrences(of: "\"mac\"", with: "\"mbc\"")
        try Data(renamed.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: RepositoryError.self) { _ = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase) }
        try pristine.write(to: URL(fileURLWithPath: path))
        _ = try BuiltinRepository.open(at: repo.root, passphrase: RepositoryTests.passphrase)
    }

    @Test("two processes creating a repository at once end with one valid repository")
    func atomicInit() throws {
        for _ in 0..<5 {
            let dir = try TempDir(); defer { dir.cleanup() }
            let root = dir.path + "/repo"
            mkdir(root, 0o700)
            let ids = LockedBox<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                if let (repo, _) = try? BuiltinRepository.create(storage: LocalStorage(root: root), passphrase: "pw", kdfRounds: 1 << 10) {
                    ids.withLock { $0.append(repo.id) }
                }
            }
            let all = ids.withLock { $0 }
            #expect(all.count == 4 && Set(all).count == 1)
            let repo = try BuiltinRepository.open(at: URL(fileURLWithPath: root), passphrase: "pw")
            try dir.write("src/a.txt", "alpha")
            #expect(try repo.backup(paths: [dir.path + "/src"]).files == 1)
        }
    }

    @Test("locks: an exclusive lock refuses others, naming its holder; shared locks coexist; stale ones are removed with a message")
    func locks() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        let prune = try repo.lock(exclusive: true, operation: "prune")
        do { _ = try repo.lock(exclusive: false, operation: "backup"); Issue.record("shared lock taken under an exclusive one") } catch {
            #expect(error.kind == .locked && error.message.contains("prune (exclusive) by pid \(getpid())"), "\(error)")
        }
        prune.release()
        let a = try repo.lock(exclusive: false, operation: "backup")
        let b = try repo.lock(exclusive: false, operation: "restore")
        #expect(throws: RepositoryError.self) { _ = try repo.lock(exclusive: true, operation: "prune") }
        a.release(); b.release()
        #expect(try repo.locks().isEmpty)
        // A lock left by a dead process of this host, and one not refreshed for an hour.
        var dead = try repo.lock(exclusive: true, operation: "prune")
        let deadName = dead.name
        dead = RepositoryLock(storage: repo.storage, name: "x", body: [])   // forget it without releasing
        let info = RepositoryLockInfo(exclusive: true, operation: "prune", host: ProcessInfo.processInfo.hostName, pid: 999_999, user: "root", started: "2026-01-01T00:00:00Z")
        try repo.storage.write("locks/" + deadName, [UInt8](try repo.seal([UInt8](try JSONEncoder().encode(info)), aad: Array(("lock:" + deadName).utf8))), exclusive: false)
        let messages = LockedBox<[String]>([])
        let old = try repo.lock(exclusive: false, operation: "backup", log: { m in messages.withLock { $0.append(m) } })
        RepositoryTests.setTimes(repo.root.path + "/locks/" + old.name, Int(Date().timeIntervalSince1970) - 3600, 0)
        let fresh = try repo.lock(exclusive: true, operation: "prune", log: { m in messages.withLock { $0.append(m) } })
        let said = messages.withLock { $0 }
        #expect(said.count == 2 && said.contains { $0.contains("999999") && $0.contains("no longer runs") } && said.contains { $0.contains("not refreshed") }, "\(said)")
        fresh.release()
        _ = dead
    }

    @Test("restores trust nothing: NUL, negative sizes and sizes that disagree with chunks are refused; setuid is masked; a symlinked target is refused")
    func craftedSnapshots() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try dir.write("src/tool", "#!/bin/sh\n")
        chmod(dir.path + "/src/tool", 0o4755)
        chmod(dir.path + "/src", 0o1777)
        let good = try repo.snapshot(try repo.backup(paths: [dir.path + "/src"]).snapshot)
        let file = try #require(good.entries.first { $0.path == "tool" })
        let mutations: [(inout ManifestEntry) -> Void] = [{ $0.path = "to\u{0}ol" }, { $0.size = -1 }, { $0.size = 5 << 20 }, { $0.target = "a\u{0}b"; $0.kind = .symlink }]
        for (i, mutate) in mutations.enumerated() {
            var bad = good
            bad.id = String(format: "%016x", 0xbad0 + i)
            var e = file
            mutate(&e)
            bad.entries = bad.entries.filter { $0.path != "tool" } + [e]
            try repo.writeSnapshot(bad)
            do throws(RepositoryError) { _ = try repo.restore(bad.id, to: URL(fileURLWithPath: dir.path + "/out-\(i)")); Issue.record("restored crafted entry \(i)") } catch {
                #expect(error.kind == .unsafePath, "\(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/out-\(i)/tool"))
        }
        // setuid and sticky bits are masked unless asked for; the target root keeps its mode.
        let out = dir.path + "/out"
        mkdir(out, 0o750)
        _ = try repo.restore(good.id, to: URL(fileURLWithPath: out))
        var st = stat()
        lstat(out + "/tool", &st)
        #expect(st.st_mode & 0o7777 == 0o755)
        lstat(out, &st)
        #expect(st.st_mode & 0o7777 == 0o750)
        let kept = dir.path + "/kept"
        _ = try repo.restore(good.id, to: URL(fileURLWithPath: kept), options: RestoreOptions(keepSpecialModes: true))
        lstat(kept + "/tool", &st)
        #expect(st.st_mode & 0o7777 == 0o4755)
        // A target that is, or lies under, a symlink is refused unless --follow.
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/link", withDestinationPath: dir.path + "/real")
        mkdir(dir.path + "/real", 0o700)
        do { _ = try repo.restore(good.id, to: URL(fileURLWithPath: dir.path + "/link/inner")); Issue.record("restored under a symlink") } catch {
            #expect(error.kind == .unsafePath && error.message.contains("--follow"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/real").isEmpty)
        _ = try repo.restore(good.id, to: URL(fileURLWithPath: dir.path + "/link/inner"), options: RestoreOptions(follow: true))
        #expect(FileManager.default.fileExists(atPath: dir.path + "/real/inner/tool"))
    }

    @Test("--force restores over an existing tree, including the symlinks drplan itself restored")
    func forceOverRestore() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try dir.write("src/docs/a.txt", "one")
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/src/docs/latest", withDestinationPath: "a.txt")
        let snap = try repo.backup(paths: [dir.path + "/src"]).snapshot
        let out = URL(fileURLWithPath: dir.path + "/out")
        _ = try repo.restore(snap, to: out)
        try "changed".write(toFile: out.path + "/docs/a.txt", atomically: true, encoding: .utf8)
        let again = try repo.restore(snap, to: out, force: true)
        #expect(again.damaged.isEmpty && again.files == 1)
        #expect(try String(contentsOfFile: out.path + "/docs/a.txt", encoding: .utf8) == "one")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: out.path + "/docs/latest") == "a.txt")
    }

    /// The raw names in a directory.
    static func rawNames(_ dir: String) -> Set<[UInt8]> {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out = Set<[UInt8]>()
        while let e = readdir(d) {
            let raw = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: UInt8.self, capacity: 256) { p in Array(UnsafeBufferPointer(start: p, count: strlen(UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self)))) } }
            if raw != [0x2E] && raw != [0x2E, 0x2E] { out.insert(raw) }
        }
        return out
    }

    @Test("names that are not valid UTF-8 are backed up and restored byte for byte, and so are private-use names")
    func rawNames() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        try dir.write("src/plain.txt", "plain")
        let names: [[UInt8]] = [[0x66, 0xFF, 0x6F], [0x6C, 0x61, 0x74, 0x69, 0x6E, 0x31, 0xE9], Array("pua-\u{F7A0}".utf8), [0xC3, 0x28, 0x2E, 0x62, 0x69, 0x6E]]
        for (i, n) in names.enumerated() {
            let path = Array((dir.path + "/src/").utf8) + n
            let fd = (path.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { Glibc.open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) }
            #expect(fd >= 0)
            _ = "content \(i)".withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        let s = try repo.backup(paths: [dir.path + "/src"])
        #expect(s.files == 5)
        let out = dir.path + "/out"
        let r = try repo.restore(s.snapshot, to: URL(fileURLWithPath: out))
        #expect(r.damaged.isEmpty && r.files == 5)
        #expect(Self.rawNames(out) == Self.rawNames(dir.path + "/src"))
        #expect(Self.rawNames(out).count == 5)
    }

    @Test("sparse files stay sparse; FIFOs and sockets are recorded as skipped")
    func sparseAndSpecial() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let repo = try RepositoryTests.make(dir)
        let src = dir.path + "/src"
        try dir.write("src/plain.txt", "x")
        let fd = open(src + "/disk.img", O_WRONLY | O_CREAT, 0o644)
        #expect(ftruncate(fd, 64 << 20) == 0)
        _ = "tail".withCString { pwrite(fd, $0, 4, off_t((64 << 20) - 4)) }
        close(fd)
        #expect(mkfifo(src + "/pipe", 0o644) == 0)
        let s = try repo.backup(paths: [src])
        #expect(s.skipped == ["pipe"] && s.files == 2)
        let out = dir.path + "/out"
        let r = try repo.restore(s.snapshot, to: URL(fileURLWithPath: out))
        #expect(r.damaged.isEmpty && r.files == 2)
        var st = stat()
        lstat(out + "/disk.img", &st)
        #expect(st.st_size == 64 << 20)
        #expect(st.st_blocks * 512 < 4 << 20, "restored fully allocated: \(st.st_blocks) blocks")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/disk.img")).suffix(4) == Data("tail".utf8))
    }
}
