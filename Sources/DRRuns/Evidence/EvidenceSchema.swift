/// The evidence schema, one list of versioned migrations written once for both databases:
/// the same tables, columns and indexes. Integers are 64-bit and times are RFC 3339 text in
/// both, so that a run's canonical row, and so its digest in the audit chain, is the same
/// wherever it is stored (and `evidence copy` keeps the chain intact).
enum EvidenceSchema {
    /// (version, SQL) in order. A version, once released, never changes: a new one is added.
    static func migrations(_ d: SQLDialect) -> [(String, String)] {
        let serial = d == .sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        let int = d == .sqlite ? "INTEGER" : "BIGINT"
        let appendOnly: String
        switch d {
        case .sqlite:
            appendOnly = """
                CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                """
        case .postgresql:
            // The triggers stop even the owner; the grants (docs/fleets.md) stop the role
            // drplan records with from bypassing them by dropping the trigger.
            appendOnly = """
                CREATE FUNCTION drplan_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN RAISE EXCEPTION 'the % table is append-only', TG_TABLE_NAME; END $$;
                CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION drplan_append_only();
                CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION drplan_append_only();
                """
        }
        var list: [(String, String)] = [
            ("v1", """
                CREATE TABLE runs (
                  id TEXT PRIMARY KEY, kind TEXT NOT NULL, job TEXT, restore_test TEXT, engine TEXT NOT NULL, storage TEXT,
                  host TEXT NOT NULL, pid \(int) NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
                  bytes_read \(int) NOT NULL DEFAULT 0, bytes_written \(int) NOT NULL DEFAULT 0, files \(int) NOT NULL DEFAULT 0,
                  snapshot TEXT, verified_files \(int) NOT NULL DEFAULT 0, verified_bytes \(int) NOT NULL DEFAULT 0,
                  error TEXT, output TEXT);
                CREATE INDEX runs_job ON runs(job, started_at);
                CREATE TABLE locks (job TEXT PRIMARY KEY, run_id TEXT NOT NULL, host TEXT NOT NULL, pid \(int) NOT NULL, acquired_at TEXT NOT NULL);
                CREATE TABLE audit (seq \(serial), at TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL,
                  prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
                \(appendOnly)
                """),
            // Interrupted runs are found when the store is next opened, perhaps by a command
            // that sends no alerts; this remembers which still owe one (older rows count as alerted).
            ("v2", "ALTER TABLE runs ADD COLUMN alert_pending \(int) NOT NULL DEFAULT 0"),
            // Evidence per (job, asset, target): each copy is proven on its own.
            ("v3", """
                ALTER TABLE runs ADD COLUMN asset TEXT;
                CREATE INDEX runs_target ON runs(job, storage, started_at);
                """),
            // The snapshots each repository was seen to hold, so that one that disappears (deleted
            // by hand, lost with a file) is reported instead of silently replaced by an older one.
            ("v4", """
                CREATE TABLE repository_snapshots (repository TEXT NOT NULL, storage TEXT NOT NULL, snapshot TEXT NOT NULL,
                  first_seen TEXT NOT NULL, forgotten_at TEXT, PRIMARY KEY (repository, snapshot));
                """),
            // What drplan measured of a storage itself, apart from any run's data: whether its
            // Object Lock holds, and the repository's size and object count after each backup.
            ("v5", """
                CREATE TABLE storage_checks (seq \(serial), storage TEXT NOT NULL, kind TEXT NOT NULL,
                  at TEXT NOT NULL, ok \(int) NOT NULL, detail TEXT NOT NULL, run_id TEXT, bytes \(int), objects \(int));
                CREATE INDEX storage_checks_storage ON storage_checks(storage, at);
                """),
            // Fleets: job locks are leases a live holder renews (a crashed host's lock expires
            // after `EvidenceStore.leaseDuration`), and the queries behind check, history and
            // the host findings read by start time and by host.
            ("v6", """
                ALTER TABLE locks ADD COLUMN renewed_at TEXT;
                CREATE INDEX runs_started ON runs(started_at, id);
                CREATE INDEX runs_host ON runs(host, started_at);
                CREATE INDEX runs_status ON runs(status);
                CREATE INDEX audit_event ON audit(event);
                """),
            // check verifies the runs the facts use against their last entries without
            // reading the whole log: entries by the run they name.
            ("v7", d == .sqlite
                ? "CREATE INDEX audit_run ON audit((CASE WHEN json_valid(detail) THEN json_extract(detail, '$.run') END))"
                : "CREATE INDEX audit_run ON audit ((detail::jsonb ->> 'run'))"),
            // A run that has ended is final, and no run is deleted: drplan only inserts runs
            // and finishes running ones (alert bookkeeping aside). check relies on these
            // triggers, as they are written here, to read only what changed since its mark.
            ("v8", runsFinal(d)),
        ]
        if d == .postgresql {
            // Checkpoints live in the database on PostgreSQL (no file is beside a server), in a
            // table as append-only as the log: a checkpoint is only as good as its signature.
            list.append(("v6-pg-checkpoints", """
                CREATE TABLE checkpoints (seq BIGINT NOT NULL, head TEXT NOT NULL, at TEXT NOT NULL, host TEXT NOT NULL,
                  key TEXT NOT NULL, signature TEXT NOT NULL, written BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
                CREATE TRIGGER checkpoints_no_update BEFORE UPDATE OR DELETE ON checkpoints FOR EACH ROW EXECUTE FUNCTION drplan_append_only();
                CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION drplan_append_only();
                """))
        }
        return list
    }
}

extension EvidenceSchema {
    /// The evidence columns of a run, as `EvidenceStore.runColumns`.
    static let runColumns = EvidenceStore.runColumns

    /// The PostgreSQL trigger function's body, compared with `pg_proc.prosrc` by check.
    static var runsFinalBody: String {
        """

          BEGIN
            IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'runs are never deleted'; END IF;
            IF OLD.status <> 'running' AND ROW(\(runColumns.map { "NEW." + $0 }.joined(separator: ", ")))
                IS DISTINCT FROM ROW(\(runColumns.map { "OLD." + $0 }.joined(separator: ", "))) THEN
              RAISE EXCEPTION 'a run that has ended is final';
            END IF;
            RETURN NEW;
          END
        """
    }

    /// The SQLite triggers, compared with `sqlite_master.sql` by check.
    static var sqliteRunTriggers: [(name: String, sql: String)] {
        let changed = runColumns.map { "NEW.\($0) IS NOT OLD.\($0)" }.joined(separator: " OR ")
        return [
            ("runs_final", "CREATE TRIGGER runs_final BEFORE UPDATE ON runs WHEN OLD.status <> 'running' AND (\(changed)) BEGIN SELECT RAISE(ABORT, 'a run that has ended is final'); END"),
            ("runs_no_delete", "CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'runs are never deleted'); END"),
        ]
    }

    static func runsFinal(_ d: SQLDialect) -> String {
        switch d {
        case .sqlite: return sqliteRunTriggers.map { $0.sql + ";" }.joined(separator: "\n")
        case .postgresql:
            return """
                CREATE FUNCTION drplan_runs_final() RETURNS trigger LANGUAGE plpgsql AS $$\(runsFinalBody)$$;
                CREATE TRIGGER runs_final BEFORE UPDATE OR DELETE ON runs FOR EACH ROW EXECUTE FUNCTION drplan_runs_final();
                CREATE TRIGGER runs_no_truncate BEFORE TRUNCATE ON runs FOR EACH STATEMENT EXECUTE FUNCTION drplan_append_only();
                """
        }
    }
}

extension EvidenceStore {
    /// The schema versions this drplan writes (both databases share them).
    public static var schemaVersions: [String] { EvidenceSchema.migrations(.sqlite).map(\.0) }
}
