import CEL
import DRFacts
import DRInventory
import Foundation

/// What the store remembers of repositories and storage apart from runs: the snapshots each
/// repository was seen to hold, and measurements (Object Lock, capacity, free space).
extension EvidenceStore {
    /// Compares what a repository lists with what the evidence saw it hold: records the new
    /// snapshots, and returns those seen before, never forgotten by a prune, and now gone.
    public func reconcileSnapshots(repository: String, storage: String, listed: Set<String>) throws(EvidenceError) -> [(snapshot: String, firstSeen: String)] {
        try write { tx throws(EvidenceError) in
            var vanished: [(String, String)] = []
            for row in try tx.rows("SELECT snapshot, first_seen FROM repository_snapshots WHERE repository = ? AND forgotten_at IS NULL", [.text(repository)]) {
                let id = try row.text("snapshot")
                if !listed.contains(id) { vanished.append((id, try row.text("first_seen"))) }
            }
            let now = Self.iso(Date())
            for id in listed.sorted() {
                try tx.execute("INSERT INTO repository_snapshots (repository, storage, snapshot, first_seen) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                               [.text(repository), .text(storage), .text(id), .text(now)])
            }
            for (id, _) in vanished {
                try Self.append(tx, "snapshot.vanished", ["repository": repository, "storage": storage, "snapshot": id])
            }
            return vanished
        }
    }

    /// Records that drplan itself removed these snapshots (prune, repair), so that their
    /// absence is expected.
    public func forgetSnapshots(repository: String, _ ids: [String]) throws(EvidenceError) {
        try write { tx throws(EvidenceError) in
            for id in ids {
                try tx.execute("UPDATE repository_snapshots SET forgotten_at = ? WHERE repository = ? AND snapshot = ?", [.text(Self.iso(Date())), .text(repository), .text(id)])
            }
            if !ids.isEmpty { try Self.append(tx, "snapshots.forgotten", ["repository": repository, "snapshots": ids.sorted().joined(separator: " "), "count": String(ids.count)]) }
        }
    }

    /// Records one measurement of a storage (`kind`: `object_lock` or `capacity`); an Object
    /// Lock check is also audited.
    public func recordStorageCheck(storage: String, kind: String, ok: Bool, detail: String, run: String?, at: Date = Date(),
                                   bytes: Int64? = nil, objects: Int? = nil) throws(EvidenceError) {
        try write { tx throws(EvidenceError) in
            try tx.execute("INSERT INTO storage_checks (storage, kind, at, ok, detail, run_id, bytes, objects) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [.text(storage), .text(kind), .text(Self.iso(at)), .int(ok ? 1 : 0), .text(detail), Self.opt(run),
                            bytes.map(SQLValue.int) ?? .null, objects.map { .int(Int64($0)) } ?? .null])
            if kind == "object_lock" { try Self.append(tx, "storage.\(kind).\(ok ? "verified" : "failed")", ["storage": storage, "detail": detail, "run": run ?? ""]) }
        }
    }

    /// Records a filesystem measurement (kind `filesystem`): free bytes in `bytes`, total
    /// bytes in `objects`, so that stores written before it need no migration to be read.
    public func recordFilesystem(storage: String, _ space: FilesystemSpace.Space, run: String?, at: Date = Date()) throws(EvidenceError) {
        try recordStorageCheck(storage: storage, kind: "filesystem", ok: true, detail: "", run: run, at: at, bytes: space.free, objects: Int(space.total))
    }

    /// Storage checks, oldest first, up to an instant.
    public struct StorageCheck: Sendable {
        public var storage: String, kind: String, at: Date, ok: Bool, detail: String
        public var bytes: Int64?, objects: Int64?
    }

    public func storageChecks(until: Date? = nil) throws(EvidenceError) -> [StorageCheck] {
        try read { tx throws(EvidenceError) in try Self.storageChecks(tx, until: until) }
    }

    static func storageChecks(_ tx: any EvidenceSQL, until: Date?) throws(EvidenceError) -> [StorageCheck] {
        var out: [StorageCheck] = []
        for row in try tx.rows("SELECT storage, kind, at, ok, detail, bytes, objects FROM storage_checks WHERE at <= ? ORDER BY seq", [.text(iso(until ?? .distantFuture))]) {
            guard let at = date(try row.text("at")) else { continue }
            out.append(StorageCheck(storage: try row.text("storage"), kind: try row.text("kind"), at: at, ok: try row.int("ok") != 0, detail: try row.text("detail"),
                                    bytes: try row.optionalInt("bytes"), objects: try row.optionalInt("objects")))
        }
        return out
    }

    /// Everything the facts measure from this store: runs and storage checks, up to `until`.
    /// `runs`: the store's runs when the caller has read them already (an export measures
    /// the start and the end of a period from one read).
    public func measured(until: Date? = nil, runs read: [RunRecord]? = nil) throws(EvidenceError) -> MeasuredEvidence {
        var m: MeasuredEvidence
        if let read {
            let runs = read.filter { r in until.map { r.startedAt <= $0 } ?? true }
            m = MeasuredEvidence(runs: runs)
            m.store = MeasuredEvidence.Store(chainStarted: try chainStart().map(Timestamp.init), oldestRun: runs.first.map { Timestamp($0.startedAt) }, runs: runs.count)
        } else {
            m = try summarized(until: until)
        }
        try addStorageChecks(&m, until: until)
        return m
    }

    /// What the store measured of storage itself, added to the runs' evidence.
    func addStorageChecks(_ m: inout MeasuredEvidence, until: Date?) throws(EvidenceError) {
        for c in try storageChecks(until: until) {
            switch c.kind {
            case "object_lock": m.recordLockCheck(storage: c.storage, MeasuredEvidence.LockCheck(at: Timestamp(c.at), ok: c.ok, detail: c.detail))
            case "capacity":
                if let b = c.bytes, let o = c.objects {
                    m.capacity[c.storage] = .init(at: Timestamp(c.at), bytes: b, objects: o)
                    m.sizeHistory[c.storage, default: []].append(.init(at: Timestamp(c.at), bytes: b))
                }
            case "filesystem": if let free = c.bytes, let total = c.objects { m.filesystems[c.storage] = .init(at: Timestamp(c.at), free: free, total: total) }
            default: continue
            }
        }
    }

    /// The facts' evidence without reading every run: only the runs the facts can use (per
    /// job, target, asset and restore test, the latest run of each outcome, and per storage
    /// the latest restore test large enough to measure a rate), and the per-host and store
    /// totals as aggregates, all from one snapshot. The same `MeasuredEvidence` as reading
    /// every run (EvidenceConformanceTests compares them), at the cost of a few rows per job
    /// instead of every run the fleet ever recorded.
    func summarized(until: Date?) throws(EvidenceError) -> MeasuredEvidence {
        try read { tx throws(EvidenceError) in try summary(tx, until: until).0 }
    }

    /// The summary inside a read, with the rows of the runs it used and the totals (for a
    /// verification mark).
    func summary(_ tx: any EvidenceSQL, until: Date?) throws(EvidenceError) -> (MeasuredEvidence, [SQLRow], Tally) {
        let (latest, tally) = try summaryRows(tx, until: until)
        return (try measured(latest, tally, tx), latest, tally)
    }

    /// The totals the facts read besides the latest runs: per host and for the store, as
    /// stored text (a verification mark keeps them, and adds the runs recorded since).
    struct Tally: Codable, Sendable, Equatable {
        var hostRuns: [String: Int] = [:]
        var hostLast: [String: String] = [:]
        var runs = 0
        var oldest: String?

        mutating func add(host: String, started: String) {
            hostRuns[host, default: 0] += 1
            if hostLast[host].map({ started > $0 }) ?? true { hostLast[host] = started }
            runs += 1
            if oldest.map({ started < $0 }) ?? true { oldest = started }
        }
    }

    func summaryRows(_ tx: any EvidenceSQL, until: Date?) throws(EvidenceError) -> ([SQLRow], Tally) {
        let bound: [SQLValue] = [.text(Self.iso(until ?? .distantFuture))]
        let latestRows = try tx.rows("""
            SELECT * FROM runs WHERE id IN (
              SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY kind, job, storage, asset, restore_test, status
                                                           ORDER BY COALESCE(finished_at, started_at) DESC, id DESC) AS n
                              FROM runs WHERE started_at <= ?) AS t WHERE n = 1
              UNION
              SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY storage ORDER BY COALESCE(finished_at, started_at) DESC, id DESC) AS n
                              FROM runs WHERE started_at <= ? AND kind = 'restore_test' AND status = 'success' AND verified_bytes >= ?) AS r WHERE n = 1)
            ORDER BY started_at, id
            """, bound + bound + [.int(MeasuredEvidence.minimumRateSample)])
        var tally = Tally()
        for row in try tx.rows("SELECT host, MAX(started_at) AS last, COUNT(*) AS n FROM runs WHERE started_at <= ? GROUP BY host", bound) {
            let host = try row.text("host")
            tally.hostRuns[host] = Int(try row.int("n"))
            if let last = try row.optionalText("last") { tally.hostLast[host] = last }
        }
        let totals = try tx.row("SELECT COUNT(*) AS n, MIN(started_at) AS oldest FROM runs WHERE started_at <= ?", bound)
        tally.runs = Int(try totals?.int("n") ?? 0)
        tally.oldest = try totals?.optionalText("oldest")
        return (latestRows, tally)
    }

    /// The facts' evidence from the latest runs and the totals.
    func measured(_ latestRows: [SQLRow], _ tally: Tally, _ tx: any EvidenceSQL) throws(EvidenceError) -> MeasuredEvidence {
        let latest = try latestRows.map { row throws(EvidenceError) in try record(row) }
        var m = MeasuredEvidence(runs: latest)
        m.hostLastRun = [:]; m.hostRuns = tally.hostRuns
        for (host, last) in tally.hostLast { if let d = Self.date(last) { m.hostLastRun[host] = Timestamp(d) } }
        let chain = try tx.row("SELECT at FROM audit ORDER BY seq LIMIT 1")?.text("at")
        m.store = MeasuredEvidence.Store(chainStarted: Self.date(chain).map(Timestamp.init),
                                         oldestRun: Self.date(tally.oldest).map(Timestamp.init), runs: tally.runs)
        return m
    }

    /// The latest runs as the summary's query chooses them, from candidate rows in memory:
    /// per (kind, job, storage, asset, restore test, status) the latest to end (else start),
    /// ties to the greater id; and per storage the latest restore test large enough to
    /// measure a rate. Ordered by start, then id.
    static func latest(of rows: [SQLRow]) throws(EvidenceError) -> [SQLRow] {
        func key(_ r: SQLRow) throws(EvidenceError) -> (String, String) {
            let end = try r.optionalText("finished_at"), start = try r.text("started_at")
            return (end ?? start, try r.text("id"))
        }
        func later(_ a: SQLRow, _ b: SQLRow) throws(EvidenceError) -> Bool { let (x, y) = (try key(a), try key(b)); return x.0 != y.0 ? x.0 > y.0 : x.1 > y.1 }
        var groups: [[String?]: SQLRow] = [:], rates: [String?: SQLRow] = [:]
        for r in rows {
            let g = [try r.optionalText("kind"), try r.optionalText("job"), try r.optionalText("storage"), try r.optionalText("asset"),
                     try r.optionalText("restore_test"), try r.optionalText("status")]
            if let best = groups[g] { if try later(r, best) { groups[g] = r } } else { groups[g] = r }
            if try r.text("kind") == "restore_test", try r.text("status") == "success", try r.int("verified_bytes") >= MeasuredEvidence.minimumRateSample {
                let storage = try r.optionalText("storage")
                if let best = rates[storage] { if try later(r, best) { rates[storage] = r } } else { rates[storage] = r }
            }
        }
        var chosen: [String: SQLRow] = [:]
        for r in Array(groups.values) + Array(rates.values) { chosen[try r.text("id")] = r }
        var keyed: [(String, String, SQLRow)] = []
        for r in chosen.values { keyed.append((try r.text("started_at"), try r.text("id"), r)) }
        return keyed.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }.map(\.2)
    }
}
