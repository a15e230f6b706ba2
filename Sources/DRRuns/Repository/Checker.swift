import CEL
import Foundation

/// How much of the data `check-repository` reads and authenticates, beyond the structure.
public enum ReadDataSelection: Sendable, Equatable {
    case none
    case all
    /// A random share of the packs, in percent.
    case percent(Double)
    /// Part `n` of `m` (1-based), as restic's `--read-data-subset n/m`: checking parts 1…m on
    /// successive runs reads every pack once.
    case part(Int, of: Int)

    /// `5%`, `1/12`, or `all`.
    public static func parse(_ s: String) -> ReadDataSelection? {
        if s == "all" { return .all }
        if s.hasSuffix("%"), let p = Double(s.dropLast()), p > 0, p <= 100 { return .percent(p) }
        let parts = s.split(separator: "/")
        if parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]), m > 0, (1...m).contains(n) { return .part(n, of: m) }
        return nil
    }
}

/// What `check-repository` found.
public struct RepositoryCheckReport: Sendable {
    /// One line per problem, naming the damaged or missing object, pack, index or snapshot
    /// and the files and snapshots that depend on it.
    public var problems: [String] = []
    /// Things worth knowing that are not damage (packs left by an interrupted backup).
    public var notes: [String] = []
    public var snapshots = 0
    public var packs = 0
    public var packsRead = 0
    public var objectsRead = 0
    public var bytesRead: Int64 = 0
}

extension BuiltinRepository {
    // MARK: check

    /// The structure only, as a list of problems (the restore test's follow-up check).
    public func check() throws(RepositoryError) -> [String] {
        try check(readData: .none).problems
    }

    /// Checks the repository: `config` (opened), every index file, every snapshot, and that
    /// every object a snapshot names is indexed in a pack that exists and is long enough. With
    /// `readData`, also reads the chosen packs whole and authenticates every object in them and
    /// their trailers. Damaged or missing objects are quarantined, so the next backup stores
    /// them afresh. Listing failures throw: a check never reports "no problems" from a
    /// listing it could not make.
    public func check(readData: ReadDataSelection, seed: UInt64 = UInt64(Date().timeIntervalSince1970)) throws(RepositoryError) -> RepositoryCheckReport {
        var report = RepositoryCheckReport()
        // Snapshots first, then the index and the packs: a backup writes its packs, then its
        // index, then its snapshot, so every snapshot read here has its index and packs in the
        // listings that follow. In the other order a backup finishing between the two made its
        // new snapshot's objects look unindexed, and check quarantined healthy objects.
        var snapshots: [Snapshot] = []
        for name in try snapshotNames() {
            do { snapshots.append(try snapshot(name)) } catch {
                report.problems.append("snapshot \(name) cannot be read: \(error.message); restore it from another copy, or remove it with 'drplan prune' once its data is no longer needed")
            }
        }
        try loadIndex()
        for p in indexProblems { report.problems.append(p + " (bypassed: its packs were read from their own trailers)") }
        let packs = Set(try packNames())
        report.packs = packs.count
        var packSizes: [String: Int64] = [:]
        func packSize(_ pack: String) throws(RepositoryError) -> Int64 {
            if let known = packSizes[pack] { return known }
            let size = packs.contains(pack) ? (try storage.info(packPath(pack))?.size ?? -1) : -1
            packSizes[pack] = size
            return size
        }
        // Which files of which snapshots use each object, to name them in the problems.
        var users: [String: [String]] = [:]
        report.snapshots = snapshots.count
        for s in snapshots {
            for e in s.entries where e.kind == .file {
                for c in e.chunks ?? [] { users[c, default: []].append("'\(e.path)' in snapshot \(s.id.prefix(8))") }
            }
        }
        func using(_ id: String) -> String {
            let u = users[id] ?? []
            guard !u.isEmpty else { return "no snapshot uses it" }
            return "used by " + u.prefix(5).joined(separator: ", ") + (u.count > 5 ? " and \(u.count - 5) more" : "")
        }
        var reportedPacks = Set<String>()
        for id in users.keys.sorted() {
            guard let loc = location(id) else {
                if (try storage.info(objectPath(id))).map({ $0.size > 0 }) ?? false { continue }
                report.problems.append("object \(id.prefix(12)) is in no index: \(using(id)); run 'drplan repair index', then 'drplan repair snapshots' if it stays missing")
                continue
            }
            let size = try packSize(loc.pack)
            if size < Int64(loc.offset) + Int64(loc.length) {
                quarantine(id, pack: loc.pack)
                if reportedPacks.insert(loc.pack).inserted {
                    let what = size < 0 ? "is missing" : "is truncated (\(size) bytes)"
                    report.problems.append("pack \(loc.pack.prefix(12)) \(what); its object \(id.prefix(12)) is \(using(id))")
                } else {
                    report.problems.append("object \(id.prefix(12)) in pack \(loc.pack.prefix(12)) is lost: \(using(id))")
                }
            } else if isQuarantined(id, loc) {
                report.problems.append("object \(id.prefix(12)) in pack \(loc.pack.prefix(12)) was found damaged earlier and not stored again since: \(using(id)); the next backup of that data stores it afresh, or run 'drplan repair snapshots'")
            }
        }
        // Packs no index names: an interrupted backup's leftovers, which prune removes.
        let indexed = Set(indexLock.withLock { blobIndex.values.map(\.pack) })
        let unindexed = packs.subtracting(indexed)
        if !unindexed.isEmpty { report.notes.append("\(unindexed.count) pack(s) are named by no index (left by an interrupted backup); 'drplan prune' removes them") }
        if let s3 = storage as? S3Storage {
            let left = try s3.unfinishedUploads()
            if !left.isEmpty { report.notes.append("\(left.count) multipart upload(s) were never completed (left by an interrupted backup; their parts are billed): 'drplan prune' aborts them") }
        }

        let chosen = Self.select(indexed.intersection(packs).sorted(), readData, seed: seed)
        var byPack: [String: [(id: String, loc: BlobLocation)]] = [:]
        for (id, loc) in indexLock.withLock({ blobIndex }) where chosen.contains(loc.pack) { byPack[loc.pack, default: []].append((id, loc)) }
        for pack in chosen.sorted() {
            let bytes: [UInt8]
            do { bytes = try storage.read(packPath(pack)) } catch where error.kind != .io {
                report.problems.append("pack \(pack.prefix(12)) cannot be read: \(error.message)")
                continue
            }
            report.packsRead += 1
            report.bytesRead += Int64(bytes.count)
            do { _ = try readTrailer(pack) } catch {
                report.problems.append("pack \(pack.prefix(12)) has a damaged trailer (\(error.message)); 'drplan repair index' cannot rebuild its entries from it")
            }
            for (id, loc) in byPack[pack] ?? [] {
                report.objectsRead += 1
                let end = Int(loc.offset) + Int(loc.length)
                do throws(RepositoryError) {
                    guard end <= bytes.count else { throw RepositoryError(.corrupt, "truncated") }
                    _ = try authenticate(Array(bytes[Int(loc.offset)..<end]), id: id)
                } catch {
                    quarantine(id, pack: pack)
                    report.problems.append("object \(id.prefix(12)) in pack \(pack.prefix(12)) is damaged (\(error.message)): \(using(id))")
                }
            }
        }
        return report
    }

    /// The packs a read-data check reads.
    static func select(_ packs: [String], _ selection: ReadDataSelection, seed: UInt64) -> Set<String> {
        switch selection {
        case .none: return []
        case .all: return Set(packs)
        case .part(let n, let m): return Set(packs.enumerated().filter { $0.offset % m == n - 1 }.map(\.element))
        case .percent(let p):
            let count = min(packs.count, Int((Double(packs.count) * p / 100).rounded(.up)))
            return Set(packs.sorted { (Runner.stableHash($0, seed), $0) < (Runner.stableHash($1, seed), $1) }.prefix(count))
        }
    }
}
