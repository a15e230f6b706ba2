import DRInventory
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a store backs up for one asset: paths on disk, either the asset's own or a staging
/// folder a source wrote (a database dump), removed again by `cleanup`.
struct StagedSource {
    var paths: [String]
    var exclude: [String]
    /// Whether the size check against the asset's declared size applies (a dump's size says
    /// little about the database's).
    var checkSize: Bool
    var cleanup: () -> Void = {}

    /// Bytes of regular files under `paths`, walking as the archiver does. An unreadable
    /// directory is an error: a source that cannot be measured cannot be judged empty.
    static func size(of paths: [String], exclude: [String]) throws(RepositoryError) -> Int64 {
        var total: Int64 = 0
        for root in paths {
            var st = stat()
            guard lstat(root, &st) == 0 else { throw RepositoryError(.missing, RunMessages.sourceMissing(root)) }
            var stack: [(String, stat)] = [("", st)]
            while let (rel, s) = stack.popLast() {
                if !rel.isEmpty, BuiltinRepository.excluded(rel, exclude) { continue }
                switch s.st_mode & S_IFMT {
                case S_IFREG: total += Int64(s.st_size)
                case S_IFDIR:
                    let full = rel.isEmpty ? root : root + "/" + rel
                    for (name, child) in try BuiltinRepository.children(of: full) { stack.append((rel.isEmpty ? name : rel + "/" + name, child)) }
                default: break
                }
            }
        }
        return total
    }
}

extension Runner {
    /// Stages `asset` for the store: its paths as they are, or a database dump in a private
    /// staging folder (0700, under `$TMPDIR`, removed on every path out).
    func stage(_ asset: Asset, for engine: Engine, job: Job, runId: String) throws(RepositoryError) -> StagedSource {
        switch (engine, asset.source) {
        case (.sqlite, .sqlite(let file)?):
            let dir = try Self.stagingDirectory("sqlite", runId, asset.id)
            do { _ = try SQLiteBackup.dump(database: resolve(file), into: dir) } catch { Self.remove(dir); throw error }
            return StagedSource(paths: [dir.path], exclude: [], checkSize: false, cleanup: { Self.remove(dir) })
        case (.pgDump, .postgres(let dsn, let ref)?):
            let dir = try Self.stagingDirectory("pgdump", runId, asset.id)
            do { _ = try PostgresBackup.dump(dsn: dsn, password: try secret(ref), into: dir) } catch { Self.remove(dir); throw error }
            return StagedSource(paths: [dir.path], exclude: [], checkSize: false, cleanup: { Self.remove(dir) })
        case (.builtin, .paths(let paths, let exclude)?), (.restic, .paths(let paths, let exclude)?), (.rsync, .paths(let paths, let exclude)?):
            let resolved = paths.map(resolve)
            for p in resolved {
                var st = stat()
                guard lstat(p, &st) == 0 else { throw RepositoryError(.missing, RunMessages.sourceMissing(p)) }
            }
            return StagedSource(paths: resolved, exclude: exclude, checkSize: true)
        case (.sqlite, _):
            throw RepositoryError(.config, "asset '\(asset.id)' has no 'source: {sqlite: FILE}' for the sqlite engine to read")
        case (.pgDump, _):
            throw RepositoryError(.config, RunMessages.notAPostgresSource(asset.id))
        default:
            throw RepositoryError(.config, "asset '\(asset.id)' has no 'source: {path: …}' for the \(engine.rawValue) engine to read")
        }
    }

    /// A new private folder for staged data: 0700, so a dump is never readable by other users
    /// while it waits to be encrypted.
    static func stagingDirectory(_ kind: String, _ runId: String, _ asset: String) throws(RepositoryError) -> URL {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? NSTemporaryDirectory()
        let dir = URL(fileURLWithPath: base).appendingPathComponent("drplan-\(kind)-\(runId.prefix(8))-\(asset)")
        let old = umask(0o077)
        defer { umask(old) }
        guard mkdir(dir.path, 0o700) == 0 else { throw RepositoryError(.io, "cannot create the staging folder \(dir.path): \(String(cString: strerror(errno)))") }
        return dir
    }

    static func remove(_ dir: URL) {
        do { try FileManager.default.removeItem(at: dir) } catch {
            FileHandle.standardError.write(Data("drplan: warning: cannot remove the staging folder \(dir.path): \(error.localizedDescription); remove it by hand\n".utf8))
        }
    }

    /// Checks what a restore of `asset` wrote into `dir` as its source demands: a database
    /// dump must load and hold the row counts recorded at backup time. Returns the problems.
    func verifyRestored(_ asset: String, engine: Engine, in dir: URL, runId: String) throws(RepositoryError) -> [String] {
        switch engine {
        case .sqlite:
            return SQLiteBackup.verify(restoredIn: dir)
        case .pgDump:
            let (dsn, password) = try postgresSource(asset)
            return try PostgresBackup.verify(restoredIn: dir, dsn: dsn, password: password, scratch: "drplan_restore_test_\(runId.prefix(8).lowercased())")
        default:
            return []
        }
    }

    /// A pg_dump asset's DSN and password, or the error saying it has no postgres source.
    func postgresSource(_ asset: String) throws(RepositoryError) -> (dsn: String, password: String?) {
        guard case .postgres(let dsn, let ref)? = inventory.assets.first(where: { $0.id == asset })?.source else {
            throw RepositoryError(.config, RunMessages.notAPostgresSource(asset))
        }
        return (dsn, try secret(ref))
    }
}
