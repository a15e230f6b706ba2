import Foundation
import DRInventory

/// A `postgresql://` evidence URL, parsed as libpq reads one, with the password kept apart
/// so that the URL can be printed. Missing parts come from the usual PG environment
/// (`PGUSER`, `PGHOST`, `PGPORT`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`).
public struct PostgresLocation: Sendable, Equatable {
    public enum SSLMode: String, Sendable { case disable, allow, prefer, require, verifyCA = "verify-ca", verifyFull = "verify-full" }
    public var user: String
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode: SSLMode
    /// `sslrootcert=`: a CA file that replaces the system store for `verify-ca`/`verify-full`.
    public var rootCert: String?
    /// A password written in the URL itself (accepted, never printed; a secret ref is better).
    var urlPassword: String?
    /// Whether the URL itself carries a password.
    public var hasURLPassword: Bool { urlPassword != nil }

    public static func isURL(_ s: String) -> Bool { s.hasPrefix("postgresql://") || s.hasPrefix("postgres://") }

    /// A store location as it may be printed: a path as it is, a URL without its password
    /// (one that does not parse, with its secrets masked).
    public static func display(of location: String) -> String {
        guard isURL(location) else { return location }
        do { return try parse(location).display } catch { return Redaction.text(location) }
    }

    /// The URL without a password: what messages, evidence and reports show.
    public var display: String {
        var s = "postgresql://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)"
        if sslMode != .prefer { s += "?sslmode=\(sslMode.rawValue)" }
        return s
    }

    public static func parse(_ text: String, environment env: [String: String] = ProcessInfo.processInfo.environment) throws(EvidenceError) -> PostgresLocation {
        func bad(_ why: String) -> EvidenceError {
            EvidenceError(kind: .unreadable, message: "the evidence URL \(Redaction.text(text)) is not usable: \(why); write it as postgresql://USER@HOST:PORT/DATABASE?sslmode=require")
        }
        guard let comps = URLComponents(string: text), let scheme = comps.scheme, ["postgresql", "postgres"].contains(scheme) else {
            throw bad("it is not a postgresql:// URL")
        }
        var query: [String: String] = [:]
        for item in comps.queryItems ?? [] { query[item.name] = item.value ?? "" }
        for key in query.keys where !["sslmode", "sslrootcert", "host", "port", "user", "dbname", "application_name", "connect_timeout"].contains(key) {
            throw bad("the parameter '\(key)' is not one drplan understands (sslmode, sslrootcert, host, port, user, dbname)")
        }
        let user = comps.user.flatMap { $0.removingPercentEncoding } ?? query["user"] ?? env["PGUSER"] ?? env["USER"] ?? ""
        guard !user.isEmpty else { throw bad("it names no user") }
        let host = (comps.host.flatMap { $0.isEmpty ? nil : $0 }) ?? query["host"] ?? env["PGHOST"] ?? "localhost"
        let portText = comps.port.map(String.init) ?? query["port"] ?? env["PGPORT"] ?? "5432"
        guard let port = Int(portText), (1...65535).contains(port) else { throw bad("the port '\(portText)' is not a number from 1 to 65535") }
        var db = comps.path.hasPrefix("/") ? String(comps.path.dropFirst()) : comps.path
        db = db.removingPercentEncoding ?? db
        if db.isEmpty { db = query["dbname"] ?? env["PGDATABASE"] ?? user }
        let modeText = query["sslmode"] ?? env["PGSSLMODE"] ?? "prefer"
        guard let mode = SSLMode(rawValue: modeText) else { throw bad("sslmode '\(modeText)' is not one of disable, allow, prefer, require, verify-ca, verify-full") }
        return PostgresLocation(user: user, host: host, port: port, database: db, sslMode: mode,
                                rootCert: query["sslrootcert"] ?? env["PGSSLROOTCERT"], urlPassword: comps.password?.removingPercentEncoding)
    }

    /// The password, in the order libpq and drplan's other secrets use: the inventory's
    /// `evidence.password` ref (resolved by the caller), the URL, `PGPASSWORD`, then the
    /// password file (`PGPASSFILE`, else `~/.pgpass`). nil: none (trust or peer auth).
    func password(explicit: String?, environment env: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let explicit { return explicit }
        if let p = urlPassword { return p }
        if let p = env["PGPASSWORD"], !p.isEmpty { return p }
        let file = env["PGPASSFILE"] ?? expandTilde("~/.pgpass")
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return Self.pgpass(String(decoding: data, as: UTF8.self), host: host, port: port, database: database, user: user)
    }

    /// The first matching line of a password file: `host:port:database:user:password`, `*`
    /// matching anything, `\:` and `\\` escaped, `#` starting a comment.
    static func pgpass(_ text: String, host: String, port: Int, database: String, user: String) -> String? {
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : String(raw)
            if line.hasPrefix("#") { continue }
            var fields: [String] = [], current = "", escaped = false
            for ch in line {
                if escaped { current.append(ch); escaped = false } else if ch == "\\" { escaped = true } else if ch == ":" && fields.count < 4 {
                    fields.append(current); current = ""
                } else { current.append(ch) }
            }
            fields.append(current)
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }
}
