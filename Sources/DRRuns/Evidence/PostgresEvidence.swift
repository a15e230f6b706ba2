import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// The evidence database on a PostgreSQL server (postgres-nio): one store for a fleet.
///
/// drplan's store code is synchronous; this drives postgres-nio's EventLoopFuture API and
/// waits on it from the caller's thread (never an event-loop thread). One connection per
/// process, used by one statement at a time.
///
/// Writers are serialized by a transaction-scoped advisory lock taken first in every write
/// transaction, so the audit chain's head is read and extended by one writer at a time on
/// every host. Reads run in `REPEATABLE READ READ ONLY` transactions: one snapshot each.
final class PostgresEvidence: EvidenceDatabase, @unchecked Sendable {
    let target: PostgresLocation
    var location: String { target.display }
    var checkpointLocation: String { target.display + " (table checkpoints)" }
    var dialect: SQLDialect { .postgresql }
    private let connection: PostgresConnection
    private let lock = NSRecursiveLock()
    private let logger = Logger(label: "drplan.evidence")
    /// Advisory lock keys: one for the chain's writers, one for migrations.
    static let writeLock: Int64 = 0x6472_706C_616E_0001
    static let migrateLock: Int64 = 0x6472_706C_616E_0002

    private init(target: PostgresLocation, connection: PostgresConnection) {
        self.target = target; self.connection = connection
    }

    /// Closed and waited for: postgres-nio requires a connection to be closed before it goes.
    /// A close that fails has nothing left to lose (every write was committed or rolled back).
    deinit {
        let closing: EventLoopFuture<Void> = connection.close()
        _ = Result { try closing.wait() }
    }

    /// Readers never migrate a PostgreSQL store (an older schema is refused).
    var readsUpgradedCopy: Bool { false }

    /// Connects. `password`: the inventory's `evidence.password`, resolved.
    static func connect(_ target: PostgresLocation, password explicit: String?) throws(EvidenceError) -> PostgresEvidence {
        // TLS checks a certificate against a host name (SNI); an address cannot be checked
        // that way here, and verify-full must not quietly become verify-ca.
        var address = in6_addr()
        if target.sslMode == .verifyFull, inet_pton(AF_INET, target.host, &address) == 1 || inet_pton(AF_INET6, target.host, &address) == 1 {
            throw EvidenceError(kind: .unreadable, message: "sslmode=verify-full checks the server's certificate against its host name, and \(target.display) names an address; "
                                + "connect by the DNS name the certificate holds, or use sslmode=verify-ca to check the certificate's CA only")
        }
        let tls: PostgresConnection.Configuration.TLS
        do {
            switch target.sslMode {
            case .disable: tls = .disable
            case .allow, .prefer, .require:
                // libpq's require: encrypted, the certificate not checked (verify-full checks it).
                var c = TLSConfiguration.makeClientConfiguration()
                c.certificateVerification = .none
                let ctx = try NIOSSLContext(configuration: c)
                tls = target.sslMode == .require ? .require(ctx) : .prefer(ctx)
            case .verifyCA, .verifyFull:
                var c = TLSConfiguration.makeClientConfiguration()
                c.certificateVerification = target.sslMode == .verifyFull ? .fullVerification : .noHostnameVerification
                if let root = target.rootCert { c.trustRoots = .file(expandTilde(root)) } else { c.trustRoots = .default }
                tls = .require(try NIOSSLContext(configuration: c))
            }
        } catch {
            throw EvidenceError(kind: .unreadable, message: "cannot set up TLS for the evidence store \(target.display): \(error)")
        }
        var config = PostgresConnection.Configuration(host: target.host, port: target.port, username: target.user,
                                                      password: target.password(explicit: explicit), database: target.database, tls: tls)
        config.options.connectTimeout = .seconds(10)
        if target.sslMode == .verifyFull { config.options.tlsServerName = target.host }
        do {
            let conn = try bounded(PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.next(), configuration: config, id: 1,
                                                              logger: Logger(label: "drplan.evidence")), seconds: 30)
            return PostgresEvidence(target: target, connection: conn)
        } catch {
            let why = error is Timeout ? "no answer within 30 s; is the server running and reachable at that host and port?" : Self.describe(error)
            throw EvidenceError(kind: .unreadable, message: "cannot connect to the evidence store \(target.display): \(why)")
        }
    }

    /// What went wrong, without the generic text postgres-nio gives every error (and without
    /// anything the server echoes of a query's bound values).
    static func describe(_ error: any Error) -> String {
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo {
            let state = info[.sqlState] ?? ""
            let message = info[.message] ?? "the server refused the request"
            switch state {
            case "28P01", "28000":
                return "\(message) (SQLSTATE \(state)); set the password with evidence.password (env: or file:), PGPASSWORD or ~/.pgpass"
            case "3D000": return "\(message) (SQLSTATE \(state)); create the database first (createdb), or name another in the URL"
            case "42501": return "\(message) (SQLSTATE \(state)); the role lacks a privilege it needs (docs/fleets.md lists the grants)"
            default: return state.isEmpty ? message : "\(message) (SQLSTATE \(state))"
            }
        }
        switch e.code {
        case .connectionError:
            let why = e.underlying.map { "\($0)" } ?? "no connection"
            if why.contains("CERTIFICATE_VERIFY_FAILED") || why.contains("handshakeFailed") {
                return "the server's TLS certificate was not accepted (\(why)): it is not signed by a CA in the system store, or does not name this host; "
                    + "set sslrootcert=PATH to the CA that signed it, or connect by the name the certificate holds"
            }
            return "\(why); is the server running and reachable at that host and port?"
        case .serverClosedConnection, .uncleanShutdown: return "the server closed the connection (did it stop or restart?); nothing more was written"
        case .sslUnsupported: return "the server does not offer TLS, and sslmode requires it"
        case .authMechanismRequiresPassword:
            return "the server asks for a password and none was found; set evidence.password (env: or file:), PGPASSWORD or ~/.pgpass"
        case .failedToAddSSLHandler: return "TLS failed: \(e.underlying.map { "\($0)" } ?? "")"
        default:
            if let u = e.underlying { return "\(e.code): \(u)" }
            return "\(e.code)"
        }
    }

    // MARK: transactions

    func write<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T {
        try transaction("BEGIN ISOLATION LEVEL READ COMMITTED", serialize: true, body)
    }

    func read<T>(_ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T {
        try transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", serialize: false, body)
    }

    private func transaction<T>(_ begin: String, serialize: Bool, _ body: (any EvidenceSQL) throws(EvidenceError) -> T) throws(EvidenceError) -> T {
        lock.lock(); defer { lock.unlock() }
        let s = Statements(owner: self)
        let outer = inRead
        inRead = !serialize
        defer { inRead = outer }
        try s.execute(begin)
        do {
            if serialize { try s.execute("SELECT pg_advisory_xact_lock(?)", [.int(Self.writeLock)]) }
            let result = try body(s)
            try s.execute("COMMIT")
            return result
        } catch {
            // A rollback that fails leaves nothing committed either: the connection is gone.
            _ = Result { () throws(EvidenceError) in try s.execute("ROLLBACK") }
            throw error
        }
    }

    /// One statement, `?` rewritten to `$n`, waited for.
    fileprivate func run(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError) -> [SQLRow] {
        var binds = PostgresBindings(capacity: arguments.count)
        for a in arguments {
            switch a {
            case .null: binds.appendNull()
            case .int(let i): binds.append(i)
            case .double(let d): binds.append(d)
            case .text(let t): binds.append(t)
            case .blob(let b): binds.append(ByteBuffer(bytes: b))
            }
        }
        let query = PostgresQuery(unsafeSQL: Self.numbered(sql), binds: binds)
        if broken { throw EvidenceError(kind: .unreadable, message: "the evidence store \(target.display) stopped answering earlier in this command; nothing more was written") }
        let result: PostgresQueryResult
        let limit = inRead ? Self.readTimeout : Self.statementTimeout
        do { result = try Self.bounded(connection.query(query, logger: logger), seconds: limit) } catch {
            if error is Timeout {
                broken = true
                let closing: EventLoopFuture<Void> = connection.close()
                closing.whenComplete { _ in }
                throw EvidenceError(kind: .unreadable, message: "the evidence store \(target.display) did not answer within \(limit) s (did the server stop, or the network to it?); nothing more was written")
            }
            throw EvidenceError(kind: .unreadable, message: "the evidence store \(target.display) failed: \(Self.describe(error))")
        }
        var out: [SQLRow] = []
        for row in result.rows {
            var values: [String: SQLValue] = [:]
            for cell in row {
                values[cell.columnName] = try Self.value(cell)
            }
            out.append(SQLRow(values))
        }
        return out
    }

    /// How long one statement may take, waiting for the chain's lock included. A server that
    /// dies can leave a query unanswered instead of failed: without a bound, the command
    /// would hang with its run half-recorded.
    static let statementTimeout: Int64 = 30
    /// Reads may return a whole fleet's chain (millions of rows): bounded, but generously.
    static let readTimeout: Int64 = 900
    private var inRead = false
    private var broken = false
    struct Timeout: Error {}
    /// Touched only on one event loop's thread.
    final class CompletedFlag: @unchecked Sendable { var done = false }

    /// Waits for `future`, failing with `Timeout` after `seconds`. Both completions run on the
    /// future's event loop, so exactly one of them completes the promise.
    static func bounded<T: Sendable>(_ future: EventLoopFuture<T>, seconds: Int64) throws -> T {
        let loop = future.eventLoop
        let promise = loop.makePromise(of: T.self)
        let once = CompletedFlag()
        let timer = loop.scheduleTask(in: .seconds(seconds)) {
            if !once.done { once.done = true; promise.fail(Timeout()) }
        }
        future.whenComplete { result in
            timer.cancel()
            if !once.done { once.done = true; promise.completeWith(result) }
        }
        return try promise.futureResult.wait()
    }

    static func value(_ cell: PostgresCell) throws(EvidenceError) -> SQLValue {
        guard cell.bytes != nil else { return .null }
        do {
            switch cell.dataType {
            case .int8, .int4, .int2: return .int(try cell.decode(Int64.self))
            case .float8, .float4, .numeric: return .double(try cell.decode(Double.self))
            case .bool: return .int(try cell.decode(Bool.self) ? 1 : 0)
            case .bytea: return .blob(Data(try cell.decode(ByteBuffer.self).readableBytesView))
            default: return .text(try cell.decode(String.self))
            }
        } catch {
            throw EvidenceError(kind: .unreadable, message: "the evidence store holds a value drplan cannot read in column \(cell.columnName) (type \(cell.dataType))")
        }
    }

    /// `?` placeholders as PostgreSQL's `$1…$n`, leaving quoted text and `$$` bodies alone.
    static func numbered(_ sql: String) -> String {
        var out = "", n = 0, inQuote = false, inDollar = false
        var chars = Array(sql)[...]
        while let c = chars.popFirst() {
            if !inQuote, c == "$", chars.first == "$" { inDollar.toggle(); out += "$$"; chars.removeFirst(); continue }
            if !inDollar, c == "'" { inQuote.toggle() }
            if c == "?", !inQuote, !inDollar { n += 1; out += "$\(n)" } else { out.append(c) }
        }
        return out
    }

    struct Statements: EvidenceSQL {
        let owner: PostgresEvidence
        func execute(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError) { _ = try owner.run(sql, arguments) }
        func rows(_ sql: String, _ arguments: [SQLValue]) throws(EvidenceError) -> [SQLRow] { try owner.run(sql, arguments) }
    }

    // MARK: schema

    /// The versions applied (nil: no drplan schema in this database).
    func appliedVersions() throws(EvidenceError) -> Set<String>? {
        try read { tx throws(EvidenceError) in
            guard let r = try tx.row("SELECT to_regclass('drplan_migrations')::text AS t"), (try r.optionalText("t")) != nil else { return nil }
            return Set(try tx.rows("SELECT version FROM drplan_migrations").map { row throws(EvidenceError) in try row.text("version") })
        }
    }

    /// Whether the schema is current; a reader refuses a store with missing migrations
    /// rather than apply them (reading never changes evidence).
    func schemaState() throws(EvidenceError) -> (exists: Bool, missing: [String]) {
        guard let applied = try appliedVersions() else { return (false, []) }
        return (true, EvidenceSchema.migrations(.postgresql).map(\.0).filter { !applied.contains($0) })
    }

    func migrate() throws(EvidenceError) {
        lock.lock(); defer { lock.unlock() }
        let all = EvidenceSchema.migrations(.postgresql)
        // An up-to-date store needs no DDL: the role hosts record with (docs/fleets.md) may
        // not create anything, and must not need to.
        if let applied = try appliedVersions(), all.allSatisfy({ applied.contains($0.0) }) { return }
        let s = Statements(owner: self)
        // Session-level: two hosts upgrading at once take turns.
        try s.execute("SELECT pg_advisory_lock(?)", [.int(Self.migrateLock)])
        defer { _ = Result { () throws(EvidenceError) in try s.execute("SELECT pg_advisory_unlock(?)", [.int(Self.migrateLock)]) } }
        do throws(EvidenceError) {
            if try appliedVersions() == nil {
                try write { tx throws(EvidenceError) in
                    try tx.execute("CREATE TABLE IF NOT EXISTS drplan_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                }
            }
            let applied = try appliedVersions() ?? []
            for (version, sql) in all where !applied.contains(version) {
                try write { tx throws(EvidenceError) in
                    // Multi-statement DDL goes through the simple protocol (no bound values).
                    for statement in Self.statements(sql) { try tx.execute(statement) }
                    try tx.execute("INSERT INTO drplan_migrations (version, applied_at) VALUES (?, ?)", [.text(version), .text(EvidenceStore.iso(Date()))])
                }
            }
        } catch {
            throw EvidenceError(kind: error.kind, message: "\(error.message); the store's schema could not be brought up to date: run 'drplan evidence migrate' as the role that owns it (docs/fleets.md)")
        }
    }

    /// A migration's statements, split on `;` outside `$$` bodies.
    static func statements(_ sql: String) -> [String] {
        var out: [String] = [], current = "", inDollar = false
        var chars = Array(sql)[...]
        while let c = chars.popFirst() {
            if c == "$", chars.first == "$" { inDollar.toggle(); current += "$$"; chars.removeFirst(); continue }
            if c == ";", !inDollar {
                let t = current.trimmingCharacters(in: .whitespacesAndNewlines)
                if !t.isEmpty { out.append(t) }
                current = ""
            } else { current.append(c) }
        }
        let t = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !t.isEmpty { out.append(t) }
        return out
    }

    // MARK: checkpoints

    func checkpoints() throws(EvidenceError) -> [Checkpoint] {
        try read { tx throws(EvidenceError) in
            try tx.rows("SELECT seq, head, at, host, key, signature FROM checkpoints ORDER BY written").map { r throws(EvidenceError) in
                Checkpoint(seq: try r.int("seq"), head: try r.text("head"), at: try r.text("at"), host: try r.text("host"), key: try r.text("key"), signature: try r.text("signature"))
            }
        }
    }

    func appendCheckpoint(_ c: Checkpoint) throws(EvidenceError) {
        try write { tx throws(EvidenceError) in
            try tx.execute("INSERT INTO checkpoints (seq, head, at, host, key, signature) VALUES (?, ?, ?, ?, ?, ?)",
                           [.int(c.seq), .text(c.head), .text(c.at), .text(c.host), .text(c.key), .text(c.signature)])
        }
    }
}
