import Foundation

/// The pg_dump engine's two halves (runs.md): `pg_dump -Fc` of a live database with its
/// per-table row counts, stored through the builtin repository; and the check of a restored
/// dump: `pg_restore` into a scratch database on the same server, row counts compared, the
/// scratch database dropped whatever happened.
///
/// The password comes from the asset's secret ref through `PGPASSWORD`, or from the usual PG
/// environment (`~/.pgpass`, `PGPASSWORD`); it is never put on a command line.
public enum PostgresBackup {
    public static let fileName = "database.dump"
    public static let countsName = RowCounts.fileName

    /// The client tools, found on PATH (Debian package `postgresql-client`).
    struct Tools {
        let pgDump: String, pgRestore: String, psql: String
        init() throws(RepositoryError) {
            pgDump = try ExternalTool.locate("pg_dump", package: "postgresql-client")
            pgRestore = try ExternalTool.locate("pg_restore", package: "postgresql-client")
            psql = try ExternalTool.locate("psql", package: "postgresql-client")
        }
    }

    static func environment(_ password: String?) -> [String: String?] {
        guard let password else { return [:] }
        return ["PGPASSWORD": password]
    }

    /// The DSN without its password, and the password: any local user can read a command line
    /// in `ps`, so the password goes to the tools through `PGPASSWORD` instead. Handles a URI's
    /// userinfo (`postgresql://u:PW@host/db`), its `password=` query parameter, and the
    /// `password=` of a keyword string (quoted or not).
    public static func split(_ dsn: String) -> (dsn: String, password: String?) {
        if let scheme = dsn.range(of: "://") {
            var rest = String(dsn[scheme.upperBound...])
            var password: String? = nil
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            if let at = rest[..<authorityEnd].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
                password = String(rest[rest.index(after: colon)..<at]).removingPercentEncoding
                rest.removeSubrange(colon..<at)
            }
            if let q = rest.firstIndex(of: "?") {
                var kept: [Substring] = []
                for param in rest[rest.index(after: q)...].split(separator: "&") {
                    if param.lowercased().hasPrefix("password=") {
                        password = String(param.dropFirst("password=".count)).removingPercentEncoding
                    } else {
                        kept.append(param)
                    }
                }
                rest = String(rest[..<q]) + (kept.isEmpty ? "" : "?" + kept.joined(separator: "&"))
            }
            return (String(dsn[..<scheme.upperBound]) + rest, password)
        }
        // keyword=value pairs; a value may be single-quoted with \' and \\ escapes.
        var out: [String] = [], password: String? = nil
        var i = dsn.startIndex
        while i < dsn.endIndex {
            while i < dsn.endIndex, dsn[i] == " " { i = dsn.index(after: i) }
            guard i < dsn.endIndex else { break }
            let start = i
            while i < dsn.endIndex, dsn[i] != "=", dsn[i] != " " { i = dsn.index(after: i) }
            let key = dsn[start..<i].trimmingCharacters(in: .whitespaces)
            while i < dsn.endIndex, dsn[i] == " " || dsn[i] == "=" { i = dsn.index(after: i) }
            var value = ""
            if i < dsn.endIndex, dsn[i] == "'" {
                i = dsn.index(after: i)
                while i < dsn.endIndex, dsn[i] != "'" {
                    if dsn[i] == "\\", dsn.index(after: i) < dsn.endIndex { i = dsn.index(after: i) }
                    value.append(dsn[i]); i = dsn.index(after: i)
                }
                if i < dsn.endIndex { i = dsn.index(after: i) }
            } else {
                while i < dsn.endIndex, dsn[i] != " " { value.append(dsn[i]); i = dsn.index(after: i) }
            }
            if key.lowercased() == "password" { password = value } else { out.append(String(dsn[start..<i])) }
        }
        return (out.joined(separator: " "), password)
    }

    /// Dumps `dsn` into `dir` (`database.dump`) and records its row counts beside it.
    public static func dump(dsn given: String, password secret: String?, into dir: URL) throws(RepositoryError) -> [String: Int64] {
        let (dsn, inline) = split(given)
        let password = secret ?? inline
        let tools = try Tools()
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw RepositoryError(.io, "cannot create \(dir.path): \(error.localizedDescription)")
        }
        let file = dir.appendingPathComponent(fileName).path
        let r = try ExternalTool.run(tools.pgDump, ["--format=custom", "--file=\(file)", "--dbname=\(dsn)"], environment: environment(password))
        guard r.status == 0 else { throw classify("pg_dump", r) }
        let counts = try rowCounts(dsn: dsn, password: password, psql: tools.psql)
        try RowCounts.write(counts, into: dir)
        return counts
    }

    /// Authentication failures and unknown databases will fail again; the rest may not.
    static func classify(_ tool: String, _ r: ExternalTool.Result) -> RepositoryError {
        let permanent = r.stderr.contains("password authentication failed") || r.stderr.contains("does not exist")
            || r.stderr.contains("no password supplied") || r.stderr.contains("invalid connection option") || r.stderr.contains("invalid URI")
        return RepositoryError(permanent ? .passphraseRequired : .io, RunMessages.postgresFailed(tool, status: r.status, r.stderr))
    }

    /// Exact row counts of every user table, by `schema.table`, in one query.
    static func rowCounts(dsn: String, password: String?, psql: String) throws(RepositoryError) -> [String: Int64] {
        let sql = """
            SELECT table_schema || '.' || table_name,
                   (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text
            FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1
            """
        let r = try ExternalTool.run(psql, ["--no-psqlrc", "--tuples-only", "--no-align", "--field-separator=\t", "-v", "ON_ERROR_STOP=1", "--dbname=\(dsn)", "-c", sql],
                                     environment: environment(password))
        guard r.status == 0 else { throw classify("psql", r) }
        var out: [String: Int64] = [:]
        for line in r.stdout.split(separator: "\n") {
            let parts = line.split(separator: "\t", omittingEmptySubsequences: false)
            if parts.count == 2, let n = Int64(parts[1]) { out[String(parts[0])] = n }
        }
        return out
    }

    /// `dsn` pointing at database `name` instead: a URI's path is replaced, a keyword string
    /// gets a later `dbname=` (libpq lets the last one win).
    static func dsn(_ dsn: String, database name: String) -> String {
        if let scheme = dsn.range(of: "://") {
            let rest = dsn[scheme.upperBound...]
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
            let query = rest[authorityEnd...].firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
            return String(dsn[..<authorityEnd]) + "/" + name + query
        }
        return dsn + " dbname=" + name
    }

    /// Restores the dump in `dir` into a new scratch database on the server of `dsn`, compares
    /// row counts with those recorded at backup time, and drops the scratch database. Returns
    /// the problems found, empty when the restore checks out.
    public static func verify(restoredIn dir: URL, dsn given: String, password secret: String?, scratch: String) throws(RepositoryError) -> [String] {
        let (dsn, inline) = split(given)
        let password = secret ?? inline
        let tools = try Tools()
        guard let expected = RowCounts.recorded(in: dir) else { return [RowCounts.missing] }
        let env = environment(password)
        let quoted = "\"" + scratch.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        let create = try ExternalTool.run(tools.psql, ["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--dbname=\(dsn)", "-c", "CREATE DATABASE \(quoted)"], environment: env)
        guard create.status == 0 else { throw classify("psql (CREATE DATABASE)", create) }
        defer {
            _ = try? ExternalTool.run(tools.psql, ["--no-psqlrc", "--dbname=\(dsn)", "-c", "DROP DATABASE IF EXISTS \(quoted)"], environment: env)
        }
        let target = Self.dsn(dsn, database: scratch)
        let restore = try ExternalTool.run(tools.pgRestore, ["--no-owner", "--no-privileges", "--exit-on-error", "--dbname=\(target)", dir.appendingPathComponent(fileName).path],
                                           environment: env)
        guard restore.status == 0 else { return [RunMessages.postgresFailed("pg_restore", status: restore.status, restore.stderr)] }
        let counts = try rowCounts(dsn: target, password: password, psql: tools.psql)
        return RowCounts.mismatches(expected: expected, actual: counts, describe: RunMessages.rowCountMismatch)
    }
}
