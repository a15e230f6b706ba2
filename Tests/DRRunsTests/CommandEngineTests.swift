import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRRuns

@Suite("command engine")
struct CommandEngineTests {
    func inventory(_ dir: TempDir, verify: String) throws -> Inventory {
        try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", """
            drplan: 1
            sites: [{ id: s, kind: office }]
            storage: [{ id: disk, kind: disk, site: s, path: target, create: true }]
            assets: [{ id: app, kind: application, site: s }]
            jobs:
              - id: dump
                assets: [app]
                engine: command
                schedule: "@daily"
                targets: [disk]
                options:
                  backup: mkdir -p "$DRPLAN_STORAGE_PATH" && echo "state of $DRPLAN_ASSETS" > "$DRPLAN_STORAGE_PATH/dump.txt"
                  restore: cp "$DRPLAN_STORAGE_PATH/dump.txt" "$DRPLAN_RESTORE_TARGET/"
                  verify: \(verify)
            restore_tests: [{ id: t, job: dump, scope: full }]
            """)])
    }

    @Test("backup, restore and verify run as commands with the job's paths; a failing verify fails the test")
    func commands() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("target")
        let ok = try inventory(dir, verify: "grep -q 'state of app' \"$DRPLAN_RESTORE_TARGET/dump.txt\"")
        let runner = Runner(inventory: ok, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        #expect(try runner.backup(jobs: []).map(\.status) == [.success])
        #expect(try String(contentsOfFile: dir.path + "/target/dump.txt", encoding: .utf8) == "state of app\n")
        #expect(try runner.restoreTest(tests: ["t"], sample: nil, seed: 0, keep: false).map(\.0.status) == [.success])
        let bad = try inventory(dir, verify: "echo 'checksum mismatch' && exit 4")
        let failing = Runner(inventory: bad, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let run = try #require(try failing.restoreTest(tests: ["t"], sample: nil, seed: 0, keep: false).first?.0)
        #expect(run.status == .failed && run.error?.contains("exited with status 4") == true && run.error?.contains("checksum mismatch") == true)
    }
}
