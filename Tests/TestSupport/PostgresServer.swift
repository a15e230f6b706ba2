import Foundation

/// The throwaway PostgreSQL server `.ci/postgres.sh` starts (DRPLAN_PG_DSN and
/// DRPLAN_PG_PASSWORD), driven with the real `psql`. nil when there is none: callers skip,
/// and fail under DRPLAN_REQUIRE_INTEGRATION=1.
public struct PostgresServer: Sendable {
    /// postgresql://USER@HOST:PORT/postgres, without a password.
    public let dsn: String
    public let password: String
    public let psql: String

    public init(dsn: String, password: String, psql: String) { self.dsn = dsn; self.password = password; self.psql = psql }

    public static func fromEnvironment() -> PostgresServer? {
        let env = ProcessInfo.processInfo.environment
        guard let dsn = env["DRPLAN_PG_DSN"], let password = env["DRPLAN_PG_PASSWORD"] else { return nil }
        for dir in (env["PATH"] ?? "/usr/bin").split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/psql") {
            return PostgresServer(dsn: dsn, password: password, psql: "\(dir)/psql")
        }
        return nil
    }

    /// The server's URL with another database.
    public func url(database: String) -> String {
        guard let slash = dsn.range(of: "/", options: .backwards) else { return dsn }
        return String(dsn[..<slash.upperBound]) + database
    }

    /// Runs SQL on `database` (default: the DSN's); throws with psql's message when it fails.
    @discardableResult
    public func sql(_ text: String, database: String? = nil) throws -> String {
        let r = try Tools.run(executable: psql, ["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "--dbname=\(database.map(url) ?? dsn)", "-c", text], env: ["PGPASSWORD": password])
        guard r.status == 0 else { throw CocoaError(.featureUnsupported, userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A new, empty database; its URL (without a password).
    public func freshDatabase(_ prefix: String = "drplan_t") throws -> String {
        let name = prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        try sql("CREATE DATABASE \(name)")
        return url(database: name)
    }
}
