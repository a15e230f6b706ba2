import DRInventory
import Foundation
import GRDB
import Testing
import TestSupport
@testable import DRRuns

@Suite("sqlite engine")
struct SQLiteEngineTests {
    @Test("online backup of a database in use, restore test with integrity check and row counts")
    func backupAndTest() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.makeDirectory("target")
        let app = try DatabasePool(path: dir.path + "/app.db")   // WAL, as an application would run it
        try app.write { db in
            try db.execute(sql: "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL)")
            for i in 0..<10 { try db.execute(sql: "INSERT INTO customers (name) VALUES (?)", arguments: ["c\(i)"]) }
            for i in 0..<250 { try db.execute(sql: "INSERT INTO orders (amount) VALUES (?)", arguments: [Double(i)]) }
        }
        let inv = try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", """
            drplan: 1
            sites: [{ id: s, kind: office }]
            storage: [{ id: disk, kind: disk, site: s, path: target, create: true }]
            assets: [{ id: ledger, kind: database, site: s, source: { sqlite: app.db } }]
            jobs: [{ id: db-nightly, assets: [ledger], engine: sqlite, schedule: "@daily", targets: [disk] }]
            restore_tests: [{ id: db-test, job: db-nightly, scope: sample }]
            """)])
        let runner = Runner(inventory: inv, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let backup = try runner.backup(jobs: [])   // while `app` holds the database open
        #expect(backup.map(\.status) == [.success], "\(backup.first?.error ?? "")")
        let test = try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: true)
        #expect(test.map(\.0.status) == [.success], "\(test.first?.0.error ?? "")")
        let restored = try #require(test.first?.1).appending("/ledger")
        #expect(SQLiteBackup.verify(restoredIn: URL(fileURLWithPath: restored)).isEmpty)
        // Edited row counts are caught…
        try #"{"customers": 10, "orders": 999}"#.write(toFile: restored + "/" + SQLiteBackup.countsName, atomically: true, encoding: .utf8)
        #expect(SQLiteBackup.verify(restoredIn: URL(fileURLWithPath: restored)) == ["table orders has 250 rows, the backup recorded 999"])
        // …and so is a damaged database file.
        let handle = try #require(FileHandle(forUpdatingAtPath: restored + "/" + SQLiteBackup.fileName))
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: Data(repeating: 0xAB, count: 4096))
        try handle.close()
        #expect(!SQLiteBackup.verify(restoredIn: URL(fileURLWithPath: restored)).isEmpty)
        try? FileManager.default.removeItem(atPath: try #require(test.first?.1))
    }
}
