import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// The evidence database in one SQLite file (GRDB, WAL): the default, beside the inventory.
/// Checkpoints go to a file beside it, so that they are backed up and moved with it.
final class SQLiteEvidence: EvidenceDatabase, @unchecked Sendable {
    let db: any DatabaseWriter
    let path: String
    var location: String { path }
    var checkpointLocation: String { Checkpoints.path(forStore: path) }
    var dialect: SQLDialect { .sqlite }
    let readsUpgradedCopy: Bool
    private let persistent: Bool

    private init(path: String, db: any DatabaseWriter, persistent: Bool, upgraded: Bool = false) {
        self.path = path; self.db = db; self.persistent = persistent; self.readsUpgradedCopy = upgraded
    }

    /// An empty store in memory, migrated, for commands that must not create a file.
    static func memory() throws(EvidenceError) -> SQLiteEvidence {
        do {
            let q = try DatabaseQueue(configuration: Self.configuration())
            try migrator.migrate(q)
            return SQLiteEvidence(path: ":memory:", db: q, persistent: false)
        } catch {
            throw EvidenceError(kind: .unreadable, message: "cannot open an in-memory evidence store: \(error)")
        }
    }

    /// Opens the file for reading only. A store an older drplan wrote is upgraded in a copy
    /// in memory (SQLite's backup API); the file is upgraded by the next command that records.
    static func reading(_ path: String) throws(EvidenceError) -> SQLiteEvidence {
        guard FileManager.default.fileExists(atPath: path) else {
            throw EvidenceError(kind: .unreadable, message: "no evidence store at \(path)")
        }
        do {
            var config = Self.configuration()
            config.readonly = true
            config.busyMode = .timeout(30)
            let file = try DatabaseQueue(path: path, configuration: config)
            if try file.read({ try migrator.hasCompletedMigrations($0) }) { return SQLiteEvidence(path: path, db: file, persistent: false) }
            let copy = try DatabaseQueue(configuration: Self.configuration())
            try file.backup(to: copy)
            try migrator.migrate(copy)
            return SQLiteEvidence(path: path, db: copy, persistent: false, upgraded: true)
        } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be read: \(error); check the path and its permissions, or pass another with --evidence")
        }
    }

    /// Opens (creating when `create`) the file for recording and migrates it.
    static func open(_ path: String, create: Bool) throws(EvidenceError) -> SQLiteEvidence {
        do {
            if !create && !FileManager.default.fileExists(atPath: path) {
                throw EvidenceError(kind: .unreadable, message: "no evidence store at \(path)")
            }
            // A bare file name ("evidence.sqlite") has no directory to create: it is the current one.
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            // Two processes opening a new store at once would both run the first migration
            // ("table runs already exists"): opening and migrating is serialized by an flock on
            // the store's directory (not on the database file, whose fcntl locks SQLite owns).
            let dirFd = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
            if dirFd >= 0 { flock(dirFd, LOCK_EX) }
            defer { if dirFd >= 0 { flock(dirFd, LOCK_UN); close(dirFd) } }
            // Concurrent drplan processes wait for each other's short write transactions
            // instead of failing with SQLite's raw "database is locked".
            var config = Self.configuration()
            config.busyMode = .timeout(30)
            let pool = try DatabasePool(path: path, configuration: config)
            try migrator.migrate(pool)
            return SQLiteEvidence(path: path, db: pool, persistent: true)
        } catch let e as EvidenceError {
            throw e
        } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be opened: \(error); check the path and its permissions, or pass another with --evidence")
        }
    }

    /// Every connection gets the functions behind `EvidenceStore.closedRunsChecksum`.
    static func configuration() -> Configuration {
        var config = Configuration()
        config.prepareDatabase { db in
            db.add(function: rowHash)
            db.add(function: DatabaseFunction("drplan_xor", argumentCount: 1, pure: true, aggregate: XorAggregate.self))
        }
        return config
    }

    /// FNV-1a (64 bits) over each value's type and bytes: a checksum of a run's row, cheap
    /// enough to take over every run of a store (not a defence against a deliberate forgery,
    /// which the full verification's SHA-256 digests are).
    static let rowHash = DatabaseFunction("drplan_row_hash", argumentCount: EvidenceStore.runColumns.count, pure: true) { values in
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: some Sequence<UInt8>) { for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 } }
        for v in values {
            switch v.storage {
            case .null: mix([0])
            case .int64(let i): mix([1]); mix(withUnsafeBytes(of: i.littleEndian, Array.init))
            case .double(let d): mix([2]); mix(withUnsafeBytes(of: d.bitPattern.littleEndian, Array.init))
            case .string(let s): mix([3]); mix(s.utf8); mix([0xff])
            case .blob(let b): mix([4]); mix(b); mix([0xff])
            }
        }
        return Int64(bitPattern: h)
    }

    struct XorAggregate: DatabaseAggregate {
        var value: Int64 = 0
        init() {}
        mutating func step(_ values: [DatabaseValue]) throws { if let i = Int64.fromDatabaseValue(values[0]) { value ^= i } }
        func finalize() throws -> (any DatabaseValueConvertible)? { value }
    }

    func migrate() throws(EvidenceError) {
        do { try Self.migrator.migrate(db) } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be upgraded: \(error)")
        }
    }

    func write<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T {
        do { return try db.write { db in try Self.typed { () throws(EvidenceError) in try body(Statements(db: db)) } } } catch let e as EvidenceError { throw e } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be written: \(error)")
        }
    }

    func read<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T {
        do { return try db.read { db in try Self.typed { () throws(EvidenceError) in try body(Statements(db: db)) } } } catch let e as EvidenceError { throw e } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(path) cannot be read: \(error)")
        }
    }

    private static func typed<T>(_ body: () throws(EvidenceError) -> T) throws -> T { try body() }

    func checkpoints() throws(EvidenceError) -> [Checkpoint] { try Checkpoints.read(checkpointLocation) }

    func appendCheckpoint(_ checkpoint: Checkpoint) throws(EvidenceError) {
        guard persistent else { return }
        try Checkpoints.append(checkpoint, to: checkpointLocation)
    }

    struct Statements: EvidenceSQL {
        let db: Database
        func execute(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError) {
            do { try db.execute(sql: sql, arguments: StatementArguments(arguments.map(Self.value))) } catch {
                throw EvidenceError(kind: .unreadable, message: "the evidence store refused a statement: \(error)")
            }
        }
        func rows(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError) -> [SQLRow] {
            do {
                return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments.map(Self.value))).map { row in
                    var values: [String: SQLValue] = [:]
                    for (name, v) in row {
                        switch v.storage {
                        case .null: values[name] = .null
                        case .int64(let i): values[name] = .int(i)
                        case .double(let d): values[name] = .double(d)
                        case .string(let s): values[name] = .text(s)
                        case .blob(let b): values[name] = .blob(b)
                        }
                    }
                    return SQLRow(values)
                }
            } catch {
                throw EvidenceError(kind: .unreadable, message: "the evidence store cannot be read: \(error)")
            }
        }
        static func value(_ v: SQLValue) -> DatabaseValue {
            switch v {
            case .null: return .null
            case .int(let i): return i.databaseValue
            case .double(let d): return d.databaseValue
            case .text(let s): return s.databaseValue
            case .blob(let b): return b.databaseValue
            }
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        for (version, sql) in EvidenceSchema.migrations(.sqlite) {
            m.registerMigration(version) { db in try db.execute(sql: sql) }
        }
        return m
    }
}
