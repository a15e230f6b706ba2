import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A value bound into or read from the evidence database. Integers and text are what the
/// schema stores; a run's digest depends on the stored types, so both databases must give
/// back exactly these.
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob(Data)
}

/// One result row, by column name.
public struct SQLRow: Sendable {
    public var values: [String: SQLValue]
    public init(_ values: [String: SQLValue]) { self.values = values }

    public subscript(_ column: String) -> SQLValue { values[column] ?? .null }

    /// A text column that must be set; a NULL or a number where text belongs is a damaged
    /// store, and says so instead of reading as "".
    public func text(_ column: String) throws(EvidenceError) -> String {
        guard case .text(let s) = self[column] else { throw Self.damaged(column, self[column]) }
        return s
    }

    public func optionalText(_ column: String) throws(EvidenceError) -> String? {
        switch self[column] {
        case .null: return nil
        case .text(let s): return s
        case let v: throw Self.damaged(column, v)
        }
    }

    public func int(_ column: String) throws(EvidenceError) -> Int64 {
        guard case .int(let i) = self[column] else { throw Self.damaged(column, self[column]) }
        return i
    }

    public func optionalInt(_ column: String) throws(EvidenceError) -> Int64? {
        switch self[column] {
        case .null: return nil
        case .int(let i): return i
        case let v: throw Self.damaged(column, v)
        }
    }

    static func damaged(_ column: String, _ v: SQLValue) -> EvidenceError {
        EvidenceError(kind: .unreadable, message: "the evidence store holds \(v) in column \(column), where it should not: the store was changed outside drplan")
    }
}

/// Statements inside one transaction (or one consistent read) of the evidence database.
/// `?` marks each bound argument, in order, in every dialect.
public protocol EvidenceSQL {
    /// Runs a statement that returns no rows.
    func execute(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError)
    /// Runs a query and returns every row; a failure part way is an error, never a short result.
    func rows(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError) -> [SQLRow]
}

extension EvidenceSQL {
    public func execute(_ sql: String) throws(EvidenceError) { try execute(sql, []) }
    public func rows(_ sql: String) throws(EvidenceError) -> [SQLRow] { try rows(sql, []) }
    public func row(_ sql: String, _ arguments: [SQLValue] = []) throws(EvidenceError) -> SQLRow? { try rows(sql, arguments).first }
}

/// Where evidence is kept: the narrow interface under the one `EvidenceStore` that records
/// runs, locks and the audit chain. SQLite (a file beside the inventory) and PostgreSQL (one
/// store for a fleet) implement it; `Tests/DRRunsTests/EvidenceConformanceTests.swift` runs
/// the same suite over both.
///
/// The contract:
/// - `write` runs its body in one transaction, committed only when the body returns, rolled
///   back when it throws. Writers of one store, in any process on any host, are serialized:
///   the audit chain's head is read and extended inside `write`, and two writers that both
///   read the same head would fork the chain.
/// - `read` gives the body one consistent snapshot, so that a chain and the runs bound to it
///   are judged as of one instant while others write. It never writes, migrates or creates.
/// - Both throw `EvidenceError` naming the store (never a password) and what failed.
/// - Checkpoints are kept apart from the chain they anchor (a file beside SQLite, an
///   INSERT-only table on PostgreSQL); `appendCheckpoint` is durable when it returns.
public protocol EvidenceDatabase: AnyObject, Sendable {
    /// The store as it may be printed: a path, or a URL without its password.
    var location: String { get }
    /// Where checkpoints are kept, as it may be printed.
    var checkpointLocation: String { get }
    /// The SQL dialect the schema is written in.
    var dialect: SQLDialect { get }
    /// Whether reads see a copy upgraded in memory (an older store read by a newer drplan):
    /// its schema, triggers included, is not the stored one's.
    var readsUpgradedCopy: Bool { get }
    func write<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T
    func read<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T
    func checkpoints() throws(EvidenceError) -> [Checkpoint]
    func appendCheckpoint(_ checkpoint: Checkpoint) throws(EvidenceError)
    /// Applies the migrations not yet applied (only commands that record call this).
    func migrate() throws(EvidenceError)
}

public enum SQLDialect: Sendable { case sqlite, postgresql }

/// The host this drplan records as: `backup --host NAME`, else `DRPLAN_HOST`, else the
/// machine's hostname. Runs, job locks and interrupted-run detection are per host: a host
/// asks only after its own processes, so one name must mean one machine.
public enum ThisHost {
    private static let box = LockedBox<String?>(nil)
    public static var name: String {
        box.withLock { current in
            if let c = current { return c }
            let env = ProcessInfo.processInfo.environment["DRPLAN_HOST"].flatMap { $0.isEmpty ? nil : $0 }
            let n = env ?? ProcessInfo.processInfo.hostName
            current = n
            return n
        }
    }
    /// Sets the identity before anything is recorded (the CLI's `--host`).
    public static func use(_ name: String) { box.withLock { $0 = name } }
}
