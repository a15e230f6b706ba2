import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRRuns

/// The rsync engine against the real `rsync` binary.
@Suite("rsync engine")
struct RsyncTests {
    @Test("mirror, verify against the source, detect a damaged mirror, follow deletions")
    func mirror() throws {
        guard (try? RsyncEngine.locate()) != nil else {
            _ = Tools.skip("rsync engine test", because: "rsync is not installed (apt-get install rsync)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("target")
        try dir.write("data/a.txt", "alpha")
        try dir.write("data/sub/b.txt", "bravo")
        try dir.write("data/skip.tmp", "scratch")
        let inv = try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", """
            drplan: 1
            sites: [{ id: s, kind: office }]
            storage: [{ id: nas, kind: nas, site: s, path: target, create: true }]
            assets: [{ id: files, kind: file-store, site: s, source: { path: data, exclude: ["*.tmp"] } }]
            jobs: [{ id: sync, assets: [files], type: mirror, engine: rsync, schedule: "@hourly", targets: [nas] }]
            restore_tests: [{ id: check, job: sync, scope: full }]
            """)])
        let runner = Runner(inventory: inv, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let first = try runner.backup(jobs: [])
        #expect(first.map(\.status) == [.success] && first[0].files == 2)
        let mirror = dir.path + "/target/drplan-rsync/sync/files"
        #expect(try String(contentsOfFile: mirror + "/sub/b.txt", encoding: .utf8) == "bravo")
        #expect(!FileManager.default.fileExists(atPath: mirror + "/skip.tmp"))
        #expect(try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false).map(\.0.status) == [.success])
        // A damaged mirror fails the test, naming the file.
        try "tampered".write(toFile: mirror + "/a.txt", atomically: true, encoding: .utf8)
        let failed = try runner.restoreTest(tests: ["check"], sample: nil, seed: 1, keep: false)[0].0
        #expect(failed.status == .failed && failed.error?.contains("files/a.txt") == true)
        // --delete: a file removed at the source leaves the mirror at the next backup.
        try FileManager.default.removeItem(atPath: dir.path + "/data/sub/b.txt")
        _ = try runner.backup(jobs: ["sync"])
        #expect(!FileManager.default.fileExists(atPath: mirror + "/sub/b.txt"))
        #expect(try String(contentsOfFile: mirror + "/a.txt", encoding: .utf8) == "alpha")
        // A restore from the mirror.
        let engine = try RsyncEngine(root: URL(fileURLWithPath: dir.path + "/target/drplan-rsync/sync"))
        let r = try engine.restore(snapshot: "mirror-files", to: URL(fileURLWithPath: dir.path + "/out"), force: false, select: nil)
        #expect(r.damaged.isEmpty && r.files == 1)
    }
}
