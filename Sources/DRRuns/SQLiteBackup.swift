import Foundation
import GRDB

/// The sqlite engine's two halves (runs.md): a consistent copy through SQLite's online backup
/// API while the database may be in use, stored through the builtin repository with its table
/// row counts; and the check of a restored copy: `PRAGMA integrity_check` and equal counts.
public enum SQLiteBackup {
    public static let fileName = "database.sqlite"
    public static let countsName = RowCounts.fileName

    /// Copies `database` into `dir` and records its row counts beside it.
    public static func dump(database: String, into dir: URL) throws(RepositoryError) -> [String: Int64] {
        guard FileManager.default.fileExists(atPath: database) else { throw RepositoryError(.io, "the SQLite database \(database) does not exist") }
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var config = Configuration()
            config.readonly = true
            let source = try DatabaseQueue(path: database, configuration: config)
            let copy = try DatabaseQueue(path: dir.appendingPathComponent(fileName).path)
            try source.backup(to: copy)
            let counts = try rowCounts(copy)
            try RowCounts.write(counts, into: dir)
            try copy.close()
            try source.close()
            return counts
        } catch let e as RepositoryError {
            throw e
        } catch {
            throw RepositoryError(.io, "cannot back up the SQLite database \(database): \(error)")
        }
    }

    static func rowCounts(_ db: DatabaseQueue) throws -> [String: Int64] {
        try db.read { db in
            var out: [String: Int64] = [:]
            for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name") {
                out[table] = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(table.replacingOccurrences(of: "\"", with: "\"\""))\"") ?? 0
            }
            return out
        }
    }

    /// Problems with a restored copy in `dir`: integrity or row counts; empty when it checks out.
    public static func verify(restoredIn dir: URL) -> [String] {
        let path = dir.appendingPathComponent(fileName).path
        guard let expected = RowCounts.recorded(in: dir) else { return [RowCounts.missing] }
        do {
            var config = Configuration()
            config.readonly = true
            let db = try DatabaseQueue(path: path, configuration: config)
            defer { try? db.close() }
            let integrity = try db.read { try String.fetchAll($0, sql: "PRAGMA integrity_check") }
            if integrity != ["ok"] { return ["PRAGMA integrity_check: " + integrity.prefix(5).joined(separator: "; ")] }
            let counts = try rowCounts(db)
            return RowCounts.mismatches(expected: expected, actual: counts) { t, restored, recorded in
                "table \(t) has \(restored.map(String.init) ?? "no") rows, the backup recorded \(recorded)"
            }
        } catch {
            return ["the restored database cannot be opened: \(error)"]
        }
    }
}
