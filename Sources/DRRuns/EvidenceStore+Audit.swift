import CEL
import Crypto
import DRInventory
import Foundation

/// The audit log: append-only, each entry holding the hash of the one before, runs bound to it
/// by their rows' digests, and (with a signing key) anchored by signed checkpoints.
extension EvidenceStore {
    // MARK: audit log

    public static func chainHash(prev: String, at: String, event: String, detail: String) -> String {
        let text = [prev, at, event, detail].joined(separator: "\n")
        return JSONWriter.hex(SHA256.hash(data: Data(text.utf8)))
    }

    /// Appends an audit entry, chained to the previous one.
    public func audit(_ event: String, _ detail: [String: String]) throws(EvidenceError) {
        try write { tx throws(EvidenceError) in try Self.append(tx, event, detail) }
    }

    /// Appends inside a write transaction, which serializes every writer of the store: the
    /// head read here is still the head when the entry is inserted.
    static func append(_ tx: any EvidenceSQL, _ event: String, _ detail: [String: String]) throws(EvidenceError) {
        let prev = try tx.row("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")?.text("hash") ?? String(repeating: "0", count: 64)
        let at = iso(Date())
        let clean = Dictionary(uniqueKeysWithValues: detail.map { ($0.key, Redaction.value($0.value, key: $0.key)) })
        let json: String
        do { json = String(decoding: try JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys]), as: UTF8.self) } catch {
            throw EvidenceError(kind: .unreadable, message: "cannot encode the audit entry \(event): \(error)")
        }
        try tx.execute("INSERT INTO audit (at, event, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                       [.text(at), .text(event), .text(json), .text(prev), .text(chainHash(prev: prev, at: at, event: event, detail: json))])
    }

    /// Recomputes the chain. Returns the problems found: an edited entry breaks its own hash, a
    /// deleted one breaks the next entry's link and leaves a gap in the sequence.
    public func verifyAudit() throws(EvidenceError) -> [String] {
        AuditEntry.chainProblems(try audit(fromSeq: 0), from: Self.genesis)
    }

    /// Where a whole log starts: entry 1, linked to a hash of zeros.
    static let genesis: (seq: Int64, prev: String) = (1, String(repeating: "0", count: 64))

    /// The columns of a run that are evidence (all but `alert_pending`, bookkeeping for alerts).
    static let runColumns = ["id", "kind", "job", "restore_test", "asset", "engine", "storage", "host", "pid", "started_at", "finished_at", "status",
                             "bytes_read", "bytes_written", "files", "snapshot", "verified_files", "verified_bytes", "error", "output"]

    /// SHA-256 of a run row's canonical JSON (its evidence columns, sorted, nulls kept): what
    /// each run's audit entries hold, so that a row changed, backdated or added outside drplan
    /// no longer matches the log.
    static func rowDigest(_ tx: any EvidenceSQL, _ id: String) throws(EvidenceError) -> String {
        guard let row = try tx.row("SELECT \(runColumns.joined(separator: ", ")) FROM runs WHERE id = ?", [.text(id)]) else {
            throw EvidenceError(kind: .unreadable, message: "run \(id) vanished while it was being recorded")
        }
        return rowDigest(row)
    }

    static func rowDigest(_ row: SQLRow) -> String { runDigest(canonicalRun(row)) }

    /// SHA-256 of a run's canonical fields as compact JSON: what a bundle's verifier
    /// recomputes from runs.json.
    public static func runDigest(_ fields: [(String, Value)]) -> String {
        JSONWriter.hex(SHA256.hash(data: Data(JSONWriter(pretty: false).string(.object(fields)).utf8)))
    }

    /// A run row's evidence columns, sorted by name, with their stored types.
    static func canonicalRun(_ row: SQLRow) -> [(String, Value)] {
        runColumns.sorted().map { c in
            switch row[c] {
            case .null: return (c, .null)
            case .int(let i): return (c, .int(i))
            case .double(let d): return (c, .double(d))
            case .text(let t): return (c, .string(t))
            case .blob(let b): return (c, .string(b.base64EncodedString()))
            }
        }
    }

    /// The runs started in a period, as their canonical rows (exactly what the log's digests
    /// cover), oldest first.
    public func runRows(from: Date, to: Date) throws(EvidenceError) -> [[(String, Value)]] {
        try read { tx throws(EvidenceError) in
            try tx.rows("SELECT \(Self.runColumns.joined(separator: ", ")) FROM runs WHERE started_at >= ? AND started_at <= ? ORDER BY started_at, id",
                        [.text(Self.iso(from)), .text(Self.iso(to))]).map(Self.canonicalRun)
        }
    }

    /// One audit entry as stored.
    public struct AuditEntry: Sendable, Equatable {
        public var seq: Int64, at: String, event: String, detail: String, prevHash: String, hash: String
        public init(seq: Int64, at: String, event: String, detail: String, prevHash: String, hash: String) {
            self.seq = seq; self.at = at; self.event = event; self.detail = detail; self.prevHash = prevHash; self.hash = hash
        }
        /// Whether the entry's hash is what its fields hash to.
        public var isIntact: Bool { EvidenceStore.chainHash(prev: prevHash, at: at, event: event, detail: detail) == hash }

        /// The problems of a run of entries, oldest first: a gap in the sequence, an entry that
        /// does not link to the one before, an entry that does not hash to its hash. `from`:
        /// the sequence number and previous hash the first entry must have (the genesis, for a
        /// whole log); nil for an extract, whose first link is taken as given. The store and a
        /// bundle's chain extract are judged by this one function.
        public static func chainProblems(_ entries: [AuditEntry], from start: (seq: Int64, prev: String)?, prefix: String = "") -> [String] {
            var problems: [String] = []
            var expected = start
            for e in entries {
                if let (seq, prev) = expected {
                    if e.seq != seq { problems.append("\(prefix)entries \(seq)…\(e.seq - 1) are missing") }
                    if e.prevHash != prev { problems.append("\(prefix)entry \(e.seq) does not follow the entry before it (an entry was deleted or edited)") }
                }
                if !e.isIntact { problems.append("\(prefix)entry \(e.seq) (\(e.event)) was edited after it was written") }
                expected = (e.seq + 1, e.hash)
            }
            return problems
        }
    }

    /// Entries from `seq` on, oldest first.
    public func audit(fromSeq seq: Int64) throws(EvidenceError) -> [AuditEntry] {
        try read { tx throws(EvidenceError) in try Self.audit(tx, fromSeq: seq) }
    }

    /// Entries from `seq` on, oldest first; at most `limit` of them (nil: all).
    static func audit(_ tx: any EvidenceSQL, fromSeq seq: Int64, limit: Int? = nil) throws(EvidenceError) -> [AuditEntry] {
        try tx.rows("SELECT seq, at, event, detail, prev_hash, hash FROM audit WHERE seq >= ? ORDER BY seq" + (limit.map { " LIMIT \($0)" } ?? ""), [.int(seq)])
            .map { r throws(EvidenceError) in try Self.entry(r) }
    }

    /// The sequence number of the first entry written at or after `date` (nil: none).
    public func firstSeq(atOrAfter date: Date) throws(EvidenceError) -> Int64? {
        try read { tx throws(EvidenceError) in try tx.row("SELECT MIN(seq) AS s FROM audit WHERE at >= ?", [.text(Self.iso(date))])?.optionalInt("s") }
    }

    /// The last entry written at or before `date` (nil: none).
    public func head(atOrBefore date: Date) throws(EvidenceError) -> (seq: Int64, hash: String)? {
        try read { tx throws(EvidenceError) in
            guard let row = try tx.row("SELECT seq, hash FROM audit WHERE at <= ? ORDER BY seq DESC LIMIT 1", [.text(Self.iso(date))]) else { return nil }
            return (try row.int("seq"), try row.text("hash"))
        }
    }

    /// When the log's first entry was written (nil: an empty log), for evidence retention.
    public func chainStart() throws(EvidenceError) -> Date? {
        try read { tx throws(EvidenceError) in Self.date(try tx.row("SELECT at FROM audit ORDER BY seq LIMIT 1")?.text("at")) }
    }

    /// The last audit entry's sequence number and hash (0 and zeros for an empty log): what
    /// `evidence verify` prints so that someone can write it down, and later see that the log
    /// still reaches it.
    public func auditHead() throws(EvidenceError) -> (seq: Int64, hash: String) {
        try read { tx throws(EvidenceError) in
            guard let row = try tx.row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1") else { return (0, String(repeating: "0", count: 64)) }
            return (try row.int("seq"), try row.text("hash"))
        }
    }

    /// Audit entries in a period, oldest first, with their hashes, for evidence bundles.
    public func auditEntries(from: Date, to: Date) throws(EvidenceError) -> [[String: String]] {
        try read { tx throws(EvidenceError) in
            try tx.rows("SELECT seq, at, event, detail, prev_hash, hash FROM audit WHERE at >= ? AND at <= ? ORDER BY seq",
                        [.text(Self.iso(from)), .text(Self.iso(to))]).map { row throws(EvidenceError) in
                ["seq": String(try row.int("seq")), "at": try row.text("at"), "event": try row.text("event"), "detail": try row.text("detail"),
                 "prev_hash": try row.text("prev_hash"), "hash": try row.text("hash")]
            }
        }
    }


    // MARK: anchors

    /// The checkpoint file beside this store.
    public var checkpointPath: String { db.checkpointLocation }

    /// The store's checkpoints, wherever it keeps them.
    public func checkpoints() throws(EvidenceError) -> [Checkpoint] { try db.checkpoints() }

    /// Sets the key that signs checkpoints from now on, and records in the log when it differs
    /// from the key last in use (configured, changed or removed): an auditor sees when signing
    /// began, which key took over, and when it stopped.
    public func useSigningKey(_ key: Curve25519.Signing.PrivateKey?) throws(EvidenceError) {
        signer = key
        let current = key.map { EvidenceKeys.keyId($0.publicKey) }
        let last: String? = try read { tx throws(EvidenceError) in
            guard let detail = try tx.row("SELECT detail FROM audit WHERE event LIKE 'evidence.key.%' ORDER BY seq DESC LIMIT 1")?.text("detail") else { return nil }
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(detail.utf8))) as? [String: String] else {
                throw EvidenceError(kind: .tampered, message: "the audit log's last evidence.key entry is not a JSON object: the log was edited")
            }
            return obj["key"].flatMap { $0.isEmpty ? nil : $0 }
        }
        guard current != last else { return }
        switch (last, current) {
        case (nil, let k?): try audit("evidence.key.configured", ["key": k])
        case (let old?, let k?): try audit("evidence.key.changed", ["key": k, "previous": old])
        case (let old?, nil): try audit("evidence.key.removed", ["key": "", "previous": old])
        case (nil, nil): return
        }
        try checkpoint()
    }

    /// With a signing key, appends a signed checkpoint of the current head to the file beside
    /// the store. A checkpoint that cannot be written fails the command: evidence meant to be
    /// anchored and silently not anchored is what this is for.
    public func checkpoint() throws(EvidenceError) {
        guard let signer, !isReadOnly, path != ":memory:" else { return }
        let head = try auditHead()
        guard head.seq > 0 else { return }
        if let last = try db.checkpoints().last, last.seq == head.seq, last.head == head.hash { return }
        try db.appendCheckpoint(try Checkpoints.sign(seq: head.seq, head: head.hash, at: Date(), with: signer))
    }
}
