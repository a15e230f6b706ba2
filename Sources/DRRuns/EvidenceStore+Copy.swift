import Foundation

/// `drplan evidence copy`: a store moved to another database (SQLite → PostgreSQL for a
/// fleet, or back), row for row, so that the chain, its sequence numbers and every run's
/// digest are the same, and then verified where it landed.
extension EvidenceStore {
    public struct CopyResult: Sendable, Equatable {
        public var runs: Int, entries: Int64, checkpoints: Int, snapshots: Int, storageChecks: Int
        /// The destination's head after the copy (the source's head).
        public var head: String
    }

    /// Tables copied, each with its columns in order. Locks are not copied: they belong to
    /// processes of the source's hosts, and none may be running during a copy.
    static let copiedTables: [(table: String, columns: [String], order: String)] = [
        ("runs", runColumns + ["alert_pending"], "started_at, id"),
        ("audit", ["seq", "at", "event", "detail", "prev_hash", "hash"], "seq"),
        ("repository_snapshots", ["repository", "storage", "snapshot", "first_seen", "forgotten_at"], "repository, snapshot"),
        ("storage_checks", ["seq", "storage", "kind", "at", "ok", "detail", "run_id", "bytes", "objects"], "seq"),
    ]

    /// Copies `source` (opened for reading) into the store at `destination`, which must hold
    /// no evidence yet: nothing is merged, nothing replaced. The copy is one transaction (all
    /// or nothing), then verified against the source's chain: same head, no problem found.
    public static func copy(from source: EvidenceStore, to destination: String, password: String?) throws(EvidenceError) -> CopyResult {
        let sourceCheck = try source.verification(key: nil)
        guard sourceCheck.problems.isEmpty else {
            throw EvidenceError(kind: .tampered, message: "the evidence store \(source.path) fails verification (\(sourceCheck.problems.first ?? "")); nothing was copied. Investigate with 'drplan evidence verify'")
        }
        let target = try EvidenceStore(path: destination, password: password, host: source.host)
        let checkpoints = try source.checkpoints()
        var counts: [String: Int] = [:]
        try target.write { tx throws(EvidenceError) in
            for (table, _, _) in copiedTables {
                if let r = try tx.row("SELECT COUNT(*) AS n FROM \(table)"), try r.int("n") > 0 {
                    throw EvidenceError(kind: .unreadable, message: "the destination \(target.path) already holds evidence (table \(table) is not empty); copy into a new, empty store")
                }
            }
            // Read in one snapshot of the source, written in one transaction of the destination.
            let rows = try source.read { src throws(EvidenceError) in
                try copiedTables.map { t throws(EvidenceError) in try src.rows("SELECT \(t.columns.joined(separator: ", ")) FROM \(t.table) ORDER BY \(t.order)") }
            }
            for ((table, columns, _), list) in zip(copiedTables, rows) {
                let explicitIdentity = target.db.dialect == .postgresql && columns.first == "seq"
                let sql = "INSERT INTO \(table) (\(columns.joined(separator: ", ")))" + (explicitIdentity ? " OVERRIDING SYSTEM VALUE" : "")
                    + " VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"
                for row in list { try tx.execute(sql, columns.map { row[$0] }) }
                counts[table] = list.count
                // The next entry drplan writes follows the copied ones.
                if explicitIdentity, !list.isEmpty {
                    try tx.execute("SELECT setval(pg_get_serial_sequence('\(table)', 'seq'), (SELECT MAX(seq) FROM \(table)))")
                }
            }
        }
        for c in checkpoints { try target.db.appendCheckpoint(c) }
        let check = try target.verification(key: nil)
        guard check.problems.isEmpty, check.head == sourceCheck.head, check.checkpoints.count == checkpoints.count else {
            throw EvidenceError(kind: .tampered, message: "the copy in \(target.path) does not verify (\(check.problems.first ?? "head \(check.head.seq) differs from the source's \(sourceCheck.head.seq)")); do not use it")
        }
        return CopyResult(runs: counts["runs"] ?? 0, entries: check.head.seq, checkpoints: checkpoints.count,
                          snapshots: counts["repository_snapshots"] ?? 0, storageChecks: counts["storage_checks"] ?? 0, head: check.head.hash)
    }
}
