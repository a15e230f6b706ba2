import CEL
import Crypto
import DRFacts
import Foundation

/// Everything `evidence verify` checks of a store, computed once and shared by every command
/// that judges from measured evidence.
public struct StoreVerification: Sendable {
    public enum State: String, Sendable {
        /// The chain, the runs and signed checkpoints all agree (signatures checked when a key was given).
        case verifiedSigned = "verified and signed"
        /// The chain, the runs and the checkpoints agree, but no public key was at hand to
        /// check the checkpoints' signatures: not claimed as signed.
        case verifiedSignaturesUnchecked = "verified; checkpoint signatures not checked (no key here)"
        /// The chain and the runs agree; nothing signed anchors them.
        case verifiedUnsigned = "verified and unsigned"
        case unverified
    }
    public var problems: [String]
    /// What the reader should know that is not a problem (a mark that no longer holds, when
    /// the whole log was read anyway).
    public var notes: [String] = []
    /// Runs recorded before runs were bound to the log.
    public var unbound: Int
    public var head: (seq: Int64, hash: String)
    public var checkpoints: [Checkpoint]
    /// Entries written after the last checkpoint.
    public var unanchored: Int64
    /// Whether the checkpoints' signatures were checked (a public key was available).
    public var signaturesChecked: Bool
    /// The first entry read this time: 1 when the whole log was read.
    public var readFrom: Int64 = 1
    /// When this machine last read the entries before `readFrom` in full (nil: read now).
    public var fullAt: String?
    /// Where the next verification of this store may start; nil when problems were found.
    public var mark: VerificationMark?
    /// The runs named by the entries read since a mark, and those of them started since.
    var runsRead: Set<String> = []
    var runsStarted: Set<String> = []

    public var state: State {
        if !problems.isEmpty { return .unverified }
        if checkpoints.isEmpty { return .verifiedUnsigned }
        return signaturesChecked ? .verifiedSigned : .verifiedSignaturesUnchecked
    }

    /// "entry 42, sha256 ab12…": the head as anyone can write it down.
    public var headLine: String { "head: entry \(head.seq), sha256 \(head.hash)" }

    /// How much of the log this verification read.
    public var scopeLine: String {
        guard let fullAt, readFrom > 1 else { return "entries 1…\(head.seq) and every run read" }
        let since = readFrom > head.seq ? "no entry written since entry \(head.seq)" : "entries \(readFrom)…\(head.seq) and the runs they name"
        return "\(since), and the runs the facts use, read now; entries 1…\(readFrom - 1) as verified in full on this machine at \(fullAt)"
    }
}

/// The head a verification of one store reached, kept in drplan's cache on the machine that
/// verified it (`VerificationMarks`), so that the next `check` reads only what was written
/// since. A log rewritten or cut short behind it no longer reaches `hash` at `seq`, which is
/// itself a finding: the mark is a witness as well as a shortcut.
public struct VerificationMark: Codable, Sendable, Equatable {
    /// The store, as printed.
    public var store: String
    public var seq: Int64
    public var hash: String
    /// Runs recorded before runs were bound to the log, up to `seq`.
    public var unbound: Int
    /// How many checkpoints there were, the SHA-256 of their lines, and the key their
    /// signatures were checked with (nil: not checked).
    public var checkpoints: Int
    public var checkpointsSHA256: String
    public var key: String?
    /// When the whole log was last read, and when this mark was written.
    public var fullAt: String
    public var at: String
    /// The runs the facts used at `seq` (the latest of each outcome per job, target, asset
    /// and test), by id, with their rows' digests: a run edited out of the facts' view since
    /// (a failure turned into a success) no longer matches.
    public var latest: [String: String] = [:]
    /// `closedRunsChecksum` over the runs not running at `seq`; nil when the store's
    /// triggers kept ended runs final (then none is needed).
    public var closed: Int64?
    /// The runs running at `seq`, and the per-host and store totals: with `latest`, what
    /// the facts' summary is computed from, adding the runs named since.
    var running: [String] = []
    var tally = EvidenceStore.Tally()
}

extension EvidenceStore {
    static let runEvents = "('run.started', 'run.finished', 'run.interrupted')"
    static let pageSize = 5000
    /// The run an audit entry names, as the `audit_run` index (schema v7) computes it.
    var auditRunExpression: String {
        db.dialect == .sqlite ? "(CASE WHEN json_valid(detail) THEN json_extract(detail, '$.run') END)" : "(detail::jsonb ->> 'run')"
    }

    /// A checksum over every run that has ended (XOR of each row's hash, so that the runs
    /// ended since a mark can be taken out again): a run edited in place since the mark,
    /// anywhere in the table, no longer adds up.
    var closedRunsChecksum: String {
        let columns = Self.runColumns.joined(separator: ", ")
        return db.dialect == .sqlite ? "drplan_xor(drplan_row_hash(\(columns)))" : "bit_xor(hashtextextended(ROW(\(columns))::text, 0))"
    }

    func closedChecksum(_ tx: any EvidenceSQL, ids: [String]? = nil) throws(EvidenceError) -> Int64 {
        guard let ids else {
            return try tx.row("SELECT \(closedRunsChecksum) AS x FROM runs WHERE status <> 'running'")?.optionalInt("x") ?? 0
        }
        var x: Int64 = 0
        for chunk in Self.chunks(ids) {
            x ^= try tx.row("SELECT \(closedRunsChecksum) AS x FROM runs WHERE status <> 'running' AND id IN (\(Self.marks(chunk.count)))",
                            chunk.map(SQLValue.text))?.optionalInt("x") ?? 0
        }
        return x
    }

    /// The whole chain, every run against it, and the checkpoints (their signatures too when
    /// `key` is given). `previous`: this machine's mark for the store; one that no longer
    /// holds is reported in `notes`.
    public func verification(key: Curve25519.Signing.PublicKey?, previous: VerificationMark? = nil) throws(EvidenceError) -> StoreVerification {
        let cps = try db.checkpoints()
        var v = try read { tx throws(EvidenceError) in try judged(tx, key: key, checkpoints: cps, after: nil).0 }
        if let previous, let broken = try read({ tx throws(EvidenceError) in try Self.markProblem(tx, previous) }) {
            v.notes.append(broken + "; the whole log was read now" + (v.problems.isEmpty ? " and verifies" : ""))
        }
        return v
    }

    /// What `check` and the reports read: the store verified from `mark` (the whole of it when
    /// there is none, when it no longer holds, or when the runs table's size says rows were
    /// added or removed outside drplan), every run the facts use checked against its entry,
    /// and the facts' evidence, all in one snapshot.
    public func verifiedEvidence(key: Curve25519.Signing.PublicKey?, after mark: VerificationMark?) throws(EvidenceError) -> (StoreVerification, MeasuredEvidence) {
        let cps = try db.checkpoints()
        var (v, m) = try read { tx throws(EvidenceError) in try judged(tx, key: key, checkpoints: cps, after: mark) }
        try addStorageChecks(&m, until: nil)
        return (v, m)
    }

    func judged(_ tx: any EvidenceSQL, key: Curve25519.Signing.PublicKey?, checkpoints cps: [Checkpoint], after mark: VerificationMark?) throws(EvidenceError)
        -> (StoreVerification, MeasuredEvidence) {
        var v: StoreVerification
        if let mark, let broken = try Self.markProblem(tx, mark) {
            v = try verify(tx, key: key, checkpoints: cps, after: nil)
            v.problems.insert(broken + "; run 'drplan evidence verify' to read the whole log again", at: 0)
            v.mark = nil
        } else {
            v = try verify(tx, key: key, checkpoints: cps, after: mark)
        }
        let (m, latest, tally): (MeasuredEvidence, [SQLRow], Tally)
        if let mark, v.readFrom > 1 {
            (m, latest, tally) = try summary(tx, from: mark, named: v.runsRead, started: v.runsStarted)
            let problems = try verifyLatest(tx, latest, after: v.readFrom - 1, head: v.head.seq)
                + verifyUnchanged(tx, mark.latest, except: v.runsRead, current: latest)
            if !problems.isEmpty { v.problems += problems; v.mark = nil }
        } else {
            (m, latest, tally) = try summary(tx, until: nil)
        }
        if v.mark != nil {
            var digests: [String: String] = [:]
            for row in latest { digests[try row.text("id")] = Self.rowDigest(row) }
            v.mark?.latest = digests
            v.mark?.tally = tally
            v.mark?.running = try tx.rows("SELECT id FROM runs WHERE status = 'running' ORDER BY id").map { r throws(EvidenceError) in try r.text("id") }
        }
        return (v, m)
    }

    /// The summary from a mark: the latest runs chosen among those the facts used then, those
    /// running then, and those named since (a run that has ended is final, so no other can
    /// have become the latest of anything); the totals are the mark's plus the runs started since.
    func summary(_ tx: any EvidenceSQL, from mark: VerificationMark, named: Set<String>, started: Set<String>) throws(EvidenceError)
        -> (MeasuredEvidence, [SQLRow], Tally) {
        let rows = try Self.runs(tx, ids: Set(mark.latest.keys).union(mark.running).union(named).sorted(), columns: "*")
        var tally = mark.tally
        for r in rows where started.contains(try r.text("id")) { tally.add(host: try r.text("host"), started: try r.text("started_at")) }
        let latest = try Self.latest(of: rows)
        return (try measured(latest, tally, tx), latest, tally)
    }

    /// Whether the triggers that keep ended runs final are in place as this drplan writes
    /// them (not dropped, disabled or replaced): then a run recorded before a mark is what it
    /// was, and no checksum of every run is needed.
    func finalRunsEnforced(_ tx: any EvidenceSQL) throws(EvidenceError) -> Bool {
        if db.readsUpgradedCopy { return false }
        func flat(_ s: String) -> String { s.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        switch db.dialect {
        case .sqlite:
            var found: [String: String] = [:]
            for r in try tx.rows("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'runs'") {
                found[try r.text("name")] = flat(try r.optionalText("sql") ?? "")
            }
            return EvidenceSchema.sqliteRunTriggers.allSatisfy { found[$0.name] == flat($0.sql) }
        case .postgresql:
            var found: [String: (enabled: String, source: String)] = [:]
            for r in try tx.rows("""
                SELECT t.tgname::text AS name, t.tgenabled::text AS enabled, p.proname::text AS function, p.prosrc AS source
                FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = 'runs'::regclass AND NOT t.tgisinternal
                """) {
                found[try r.text("name")] = (try r.text("enabled"), try r.text("function") + ":" + flat(try r.text("source")))
            }
            return found["runs_final"].map { $0.enabled == "O" && $0.source == "drplan_runs_final:" + flat(EvidenceSchema.runsFinalBody) } == true
                && found["runs_no_truncate"]?.enabled == "O"
        }
    }

    /// The runs the facts used at the mark, not named by any entry since: each must still be
    /// there, unchanged.
    func verifyUnchanged(_ tx: any EvidenceSQL, _ latest: [String: String], except read: Set<String>, current: [SQLRow]) throws(EvidenceError) -> [String] {
        var rows: [String: SQLRow] = [:]
        for row in current { rows[try row.text("id")] = row }
        let wanted = latest.keys.filter { !read.contains($0) }.sorted()
        for row in try Self.runs(tx, ids: wanted.filter { rows[$0] == nil }) { rows[try row.text("id")] = row }
        var problems: [String] = []
        for id in wanted {
            guard let digest = latest[id] else { continue }
            guard let row = rows[id] else { problems.append(Self.deleted(id)); continue }
            if let p = try Self.differs(row, digest) { problems.append(p) }
        }
        return problems
    }

    /// Why `mark` no longer holds for this log (nil: it does).
    static func markProblem(_ tx: any EvidenceSQL, _ mark: VerificationMark) throws(EvidenceError) -> String? {
        let head = try tx.row("SELECT MAX(seq) AS s FROM audit")?.optionalInt("s") ?? 0
        guard let at = try tx.row("SELECT hash FROM audit WHERE seq = ?", [.int(mark.seq)])?.text("hash") else {
            return "this machine verified the log up to entry \(mark.seq) at \(mark.at), and it now ends at entry \(head): entries were removed"
        }
        guard at != mark.hash else { return nil }
        return "entry \(mark.seq) had sha256 \(mark.hash) when this machine verified the log at \(mark.at), and now has \(at): the log was rewritten or replaced since"
    }

    /// The chain from entry 1, or from after `mark`, read a page at a time; the runs its
    /// entries name; and the checkpoints.
    func verify(_ tx: any EvidenceSQL, key: Curve25519.Signing.PublicKey?, checkpoints cps: [Checkpoint], after given: VerificationMark?) throws(EvidenceError) -> StoreVerification {
        var mark = given
        if mark != nil {
            // Every run has one run.started entry written with it: a difference means rows
            // were added or removed outside drplan, which only reading every run can name.
            let runs = try tx.row("SELECT COUNT(*) AS n FROM runs")?.int("n") ?? 0
            let started = try tx.row("SELECT COUNT(*) AS n FROM audit WHERE event = 'run.started'")?.int("n") ?? 0
            if runs != started { mark = nil }
        }
        let start: (seq: Int64, prev: String) = mark.map { ($0.seq + 1, $0.hash) } ?? Self.genesis
        let anchorSeqs = Set(cps.map(\.seq))
        var hashes: [Int64: String] = [:]
        var problems: [String] = []
        var last: [String: String?] = [:]   // run → digest of its last entry (nil: an entry without one)
        var ended = Set<String>(), started = Set<String>()   // runs that ended, and started, after the mark
        var expected = start
        var head = (seq: start.seq - 1, hash: start.prev)
        while true {
            let page = try Self.audit(tx, fromSeq: head.seq + 1, limit: Self.pageSize)
            problems += AuditEntry.chainProblems(page, from: expected)
            for e in page {
                if anchorSeqs.contains(e.seq) { hashes[e.seq] = e.hash }
                guard e.event == "run.started" || e.event == "run.finished" || e.event == "run.interrupted" else { continue }
                guard let obj = Self.runDetail(e), let run = obj["run"] else { problems.append(Self.unnamed(e)); continue }
                last[run] = .some(obj["row_sha256"])
                if mark != nil { if e.event == "run.started" { started.insert(run) } else { ended.insert(run) } }
            }
            guard let end = page.last else { break }
            head = (end.seq, end.hash)
            expected = (end.seq + 1, end.hash)
            if page.count < Self.pageSize { break }
        }
        let runsRead = mark == nil ? Set<String>() : Set(last.keys)
        let enforced = try finalRunsEnforced(tx)
        let closed: Int64? = enforced ? nil : try closedChecksum(tx)
        if let given = mark, let closed {
            // The runs ended since the mark taken out, the rest must add up to what they were:
            // otherwise a run was changed outside drplan (or ended twice), and only reading
            // every run can say which.
            guard let was = given.closed, closed ^ (try closedChecksum(tx, ids: ended.sorted())) == was else {
                return try verify(tx, key: key, checkpoints: cps, after: nil)
            }
        }
        // A mark past the head is caught by markProblem; here the head is at least the mark.
        var unbound = mark?.unbound ?? 0
        let runs = mark == nil ? try verifyAllRuns(tx, &last) : try verifyRuns(tx, &last)
        problems += runs.problems
        unbound += runs.unbound
        problems += last.keys.sorted().map(Self.deleted)

        // Checkpoints: all against the chain (hashes before the start read by sequence
        // number), signatures only of those this machine has not checked with this key.
        let earlier = anchorSeqs.filter { $0 < start.seq }.sorted()
        for chunk in Self.chunks(earlier) {
            for row in try tx.rows("SELECT seq, hash FROM audit WHERE seq IN (\(Self.marks(chunk.count)))", chunk.map(SQLValue.int)) {
                hashes[try row.int("seq")] = try row.text("hash")
            }
        }
        let keyId = key.map(EvidenceKeys.keyId)
        var checked = 0
        if let mark, mark.key != nil, mark.key == keyId, mark.checkpoints <= cps.count, Self.digest(cps.prefix(mark.checkpoints)) == mark.checkpointsSHA256 {
            checked = mark.checkpoints
        }
        problems += Checkpoints.problems(cps, headSeq: head.seq, key: key, signaturesFrom: checked) { hashes[$0] }
        if key != nil && cps.isEmpty {
            problems.append("there is no signed checkpoint in \(checkpointPath): nothing anchors this log (was the file deleted, or is no signing_key configured?)")
        }
        let now = Self.iso(Date())
        let next = problems.isEmpty ? VerificationMark(store: path, seq: head.seq, hash: head.hash, unbound: unbound, checkpoints: cps.count,
                                                       checkpointsSHA256: Self.digest(cps[...]), key: keyId, fullAt: mark?.fullAt ?? now, at: now, closed: closed) : nil
        return StoreVerification(problems: problems, unbound: unbound, head: head, checkpoints: cps,
                                 unanchored: max(0, head.seq - (cps.map(\.seq).max() ?? 0)), signaturesChecked: key != nil,
                                 readFrom: start.seq, fullAt: mark?.fullAt, mark: next, runsRead: runsRead, runsStarted: started)
    }

    /// Every run, a page at a time, against the digest of its last entry; the runs matched
    /// are taken out of `last`, so that what remains was deleted.
    func verifyAllRuns(_ tx: any EvidenceSQL, _ last: inout [String: String?]) throws(EvidenceError) -> (problems: [String], unbound: Int) {
        var result: (problems: [String], unbound: Int) = ([], 0), after = ""
        let columns = Self.runColumns.joined(separator: ", ")
        while true {
            let page = try tx.rows("SELECT \(columns) FROM runs WHERE id > ? ORDER BY id LIMIT \(Self.pageSize)", [.text(after)])
            for row in page { try Self.judge(row, &last, &result) }
            guard page.count == Self.pageSize, let end = page.last else { break }
            after = try end.text("id")
        }
        return result
    }

    /// The runs the entries read named, against their digests; found runs leave `last`.
    func verifyRuns(_ tx: any EvidenceSQL, _ last: inout [String: String?]) throws(EvidenceError) -> (problems: [String], unbound: Int) {
        var result: (problems: [String], unbound: Int) = ([], 0)
        for row in try Self.runs(tx, ids: last.keys.sorted()) { try Self.judge(row, &last, &result) }
        return result
    }

    /// One run against the digest of its last entry, taken out of `last`.
    static func judge(_ row: SQLRow, _ last: inout [String: String?], _ result: inout (problems: [String], unbound: Int)) throws(EvidenceError) {
        let id = try row.text("id")
        switch last.removeValue(forKey: id) {
        case nil: result.problems.append(added(id))
        case .some(nil): result.unbound += 1
        case .some(.some(let digest)): if let p = try differs(row, digest) { result.problems.append(p) }
        }
    }

    /// Runs by id (`columns`: the evidence columns, or `*`), a bounded list at a time.
    static func runs(_ tx: any EvidenceSQL, ids: [String], columns: String = runColumns.joined(separator: ", ")) throws(EvidenceError) -> [SQLRow] {
        var rows: [SQLRow] = []
        for chunk in chunks(ids) {
            rows += try tx.rows("SELECT \(columns) FROM runs WHERE id IN (\(marks(chunk.count)))", chunk.map(SQLValue.text))
        }
        return rows
    }

    /// The runs the facts use that were recorded before `mark`, each against its last entry:
    /// the entry must hash to its hash and be followed by the entry after it, and the row
    /// must match the entry's digest. An edit of a run the facts read is found without
    /// reading the whole log; one of a run they do not read, by `evidence verify`.
    func verifyLatest(_ tx: any EvidenceSQL, _ rows: [SQLRow], after mark: Int64, head: Int64) throws(EvidenceError) -> [String] {
        var problems: [String] = []
        var byId: [String: SQLRow] = [:]
        for row in rows { byId[try row.text("id")] = row }
        var entries: [String: AuditEntry] = [:]
        for chunk in Self.chunks(byId.keys.sorted()) {
            let found = try tx.rows("""
                SELECT seq, at, event, detail, prev_hash, hash, \(auditRunExpression) AS run FROM audit
                WHERE \(auditRunExpression) IN (\(Self.marks(chunk.count))) AND event IN \(Self.runEvents) ORDER BY seq
                """, chunk.map(SQLValue.text))
            for r in found { entries[try r.text("run")] = try Self.entry(r) }
        }
        let following = entries.values.map { $0.seq + 1 }.filter { $0 <= head }.sorted()
        var prevOf: [Int64: String] = [:]
        for chunk in Self.chunks(following) {
            for r in try tx.rows("SELECT seq, prev_hash FROM audit WHERE seq IN (\(Self.marks(chunk.count)))", chunk.map(SQLValue.int)) {
                prevOf[try r.int("seq")] = try r.text("prev_hash")
            }
        }
        for id in byId.keys.sorted() {
            guard let row = byId[id] else { continue }
            guard let e = entries[id] else { problems.append(Self.added(id)); continue }
            if e.seq > mark { continue }   // read with the chain's new entries
            if !e.isIntact { problems.append("entry \(e.seq) (\(e.event)) was edited after it was written") }
            if e.seq < head, prevOf[e.seq + 1] != e.hash { problems.append("entry \(e.seq + 1) does not follow the entry before it (an entry was deleted or edited)") }
            guard let obj = Self.runDetail(e) else { problems.append(Self.unnamed(e)); continue }
            guard let digest = obj["row_sha256"] else { continue }   // recorded before runs were bound
            if let p = try Self.differs(row, digest) { problems.append(p) }
        }
        return problems
    }

    /// A run entry's detail; nil when it is not a JSON object of strings, which every caller
    /// reports as a problem (`unnamed`): drplan writes none such.
    static func runDetail(_ e: AuditEntry) -> [String: String]? {
        (try? JSONSerialization.jsonObject(with: Data(e.detail.utf8))) as? [String: String]
    }

    static func unnamed(_ e: AuditEntry) -> String { "audit entry \(e.seq) does not name its run" }
    static func added(_ id: String) -> String { "run \(id) has no entry in the audit log: it was added outside drplan" }
    static func deleted(_ id: String) -> String { "run \(id) is in the audit log but not among the runs: it was deleted" }

    static func differs(_ row: SQLRow, _ digest: String) throws(EvidenceError) -> String? {
        guard rowDigest(row) != digest else { return nil }
        return "run \(try row.text("id")) (now \(try row.text("status")), started \(try row.text("started_at"))) differs from what drplan recorded: it was changed after it was written"
    }

    static func entry(_ r: SQLRow) throws(EvidenceError) -> AuditEntry {
        AuditEntry(seq: try r.int("seq"), at: try r.text("at"), event: try r.text("event"), detail: try r.text("detail"),
                   prevHash: try r.text("prev_hash"), hash: try r.text("hash"))
    }

    static func digest(_ cps: ArraySlice<Checkpoint>) -> String {
        JSONWriter.hex(SHA256.hash(data: Data(cps.map { $0.json + "\n" }.joined().utf8)))
    }

    /// Bound lists small enough for any server's limit on arguments.
    static func chunks<T>(_ items: [T]) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: 500).map { items[$0..<min($0 + 500, items.count)] }
    }

    static func marks(_ n: Int) -> String { Array(repeating: "?", count: n).joined(separator: ", ") }
}
