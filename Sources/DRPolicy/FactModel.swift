import CEL

/// The shape of the facts (docs/facts.md) as static types, so that policies are checked when
/// they are loaded: a misspelt field or a wrong comparison fails before any subject is evaluated.
/// A test walks real facts and keeps this schema and `FactDeriver` in agreement.
public enum FactModel {
    static let strings: CELType = .list(.string)
    static let labels: CELType = .map(.string, .string)

    public static let objects: [String: [String: CELType]] = [
        "site": ["id": .string, "kind": .string, "region": .string, "name": .string, "labels": labels, "assets": strings, "storage": strings,
                 "location": .object("location"), "provider": .string],
        "location": ["lat": .double, "lon": .double],
        "storage": [
            "id": .string, "kind": .string, "site": .string, "region": .string, "media": .string, "immutable": .bool, "air_gapped": .bool,
            "air_gap_holds": .bool, "rotation": .object("rotation"), "retrieval": .duration, "admins_overlap": strings, "provider": .string,
            "encryption": .object("storage_encryption"), "access": .object("access"), "capacity": .int, "used": .int, "restore_rate": .int,
            "path": .string, "url": .string, "credentials": .map(.string, .string), "name": .string, "labels": labels,
            "utilization": .double, "holds": strings, "object_lock": .object("object_lock"), "lock_days": .int, "lock_period": .duration,
            "immutable_verified": .bool, "lock_check": .object("lock_check"), "immutable_reason": .string, "immutable_declared": .bool,
            "restore_rate_source": .string, "repository_size": .int, "object_count": .int, "capacity_measured_at": .timestamp,
            "capacity_source": .string, "free_bytes": .int, "total_bytes": .int, "growth_per_day": .double, "days_until_full": .double,
        ],
        "object_lock": ["mode": .string, "days": .int],
        "lock_check": ["at": .timestamp, "ok": .bool, "detail": .string],
        "storage_encryption": ["at_rest": .bool, "in_transit": .bool, "passphrase": .string],
        "access": ["mfa_delete": .bool, "network_isolated": .bool, "admins": strings, "delete_requires": .string],
        "asset": [
            "id": .string, "kind": .string, "name": .string, "site": .string, "region": .string, "media": .string, "tier": .string,
            "owner": .string, "size": .int, "data_classes": strings, "rpo": .duration, "rto": .duration, "depends_on": strings,
            "retention": .object("retention_bounds"), "backup": .string, "reason": .string, "source": .map(.string, .dyn), "labels": labels,
            "protected": .bool, "jobs": strings, "copies": .list(.object("copy")), "copy_count": .int, "media_count": .int,
            "offsite_count": .int, "other_region_count": .int, "offsite_providers": strings, "admins": strings, "untested_copies": strings, "recovery_finish": .duration, "lost_in": strings, "immutable_count": .int, "rpo_achievable": .duration, "rto_estimate": .duration,
            "retention_effective": .duration, "retention_required_min": .duration, "retention_allowed_max": .duration,
            "last_success": .timestamp, "last_success_source": .string, "restore_tests": strings,
            "dependency_depth": .int, "slowest_dependency": .object("slowest_dependency"),
            "unproven_copies": .list(.object("copy")),
        ],
        "slowest_dependency": ["id": .string, "rto": .duration, "via": .string],
        "retention_bounds": ["min": .duration, "max": .duration],
        "copy": [
            "storage": .string, "site": .string, "region": .string, "media": .string, "offsite": .bool, "immutable": .bool,
            "air_gapped": .bool, "encrypted_at_rest": .bool, "versioned": .bool, "primary": .bool,
            "evidence": .string, "last_success": .timestamp, "immutable_declared": .bool, "immutable_verified": .bool, "lock_days": .int,
            "provider": .string,
        ],
        "target_evidence": [
            "storage": .string, "evidence": .string, "last_success": .timestamp, "window": .duration, "max_age": .duration, "overdue": .bool,
            "missed_runs": .int,
        ],
        "job": [
            "id": .string, "assets": strings, "type": .string, "schedule": .string, "timezone": .string, "lag": .duration, "engine": .string, "targets": strings,
            "retention": .object("job_retention"), "encryption": .object("job_encryption"), "monitoring": .object("monitoring"),
            "options": .map(.string, .dyn), "labels": labels, "max_gap": .duration, "min_gap": .duration,
            "beside_data": .list(.object("beside")), "escrow_site": .string, "escrow_on_target": .bool, "asset_sites": strings,
            "retention_effective": .duration, "versioned": .bool, "offsite_targets": strings, "last_success": .timestamp,
            "last_success_source": .string, "last_status": .string, "next_run": .timestamp,
            "target_evidence": .list(.object("target_evidence")),
        ],
        "job_retention": [
            "keep_within": .duration, "keep_last": .int, "keep_hourly": .int, "keep_daily": .int, "keep_weekly": .int,
            "keep_monthly": .int, "keep_yearly": .int,
        ],
        "job_encryption": ["at_rest": .bool, "in_transit": .bool, "key_storage": .string, "passphrase": .string, "key_escrow": .string],
        "monitoring": ["alert_on_failure": strings, "max_age": .duration, "failure_notifications": .int, "metrics_file": .string],
        "restore_test": [
            "id": .string, "job": .string, "asset": .string, "scope": .string, "every": .duration, "last_run": .timestamp,
            "result": .string, "duration": .duration, "restored": .int, "labels": labels, "assets": strings, "age": .duration,
            "full_equivalent": .duration, "last_run_source": .string, "corrective_actions": .list(.object("corrective_action")),
            "failure_followed_up": .bool, "overdue_actions": .int,
        ],
        "corrective_action": ["opened": .timestamp, "action": .string, "owner": .string, "due": .timestamp, "closed": .timestamp, "overdue": .bool],
        "waiver": [
            "rule": .string, "subject": .string, "reason": .string, "approved_by": .string, "expires": .timestamp, "labels": labels,
            "expired": .bool,
        ],
        "rotation": ["every": .duration, "offline": .bool],
        "beside": ["file": .string, "beside": .string, "place": .string],
        "document": ["id": .string, "path": .string, "key": .string, "literal": .bool],
        "plan": ["id": .string, "declared": .bool, "approved_by": .string, "approved_on": .timestamp, "review_every": .duration,
                 "contacts": .int, "out_of_band_contacts": .int, "emergency_mode": .string,
                 "state_assets": strings, "state_offsite": .bool],
        "evidence": ["id": .string, "chain_started": .timestamp, "oldest_run": .timestamp, "runs": .int, "first_run": .timestamp, "retention": .duration,
                     "hosts": .list(.object("host"))],
        "host": ["name": .string, "declared": .bool, "jobs": .list(.string), "last_run": .timestamp, "runs": .int, "max_age": .duration, "stopped_reporting": .bool],
        "policy": [
            "frameworks": strings, "fail_on": .string, "restore_test_every": .duration, "min_recovery_window": .duration,
            "capacity_threshold": .double, "evidence_retention": .duration, "min_site_distance": .double, "ransomware_dwell": .duration, "retention": .map(.string, .object("retention_bounds")), "restore_rates": .map(.string, .int),
        ],
        "inventory": [
            "organization": .string, "sites": .list(.object("site")), "storage": .list(.object("storage")),
            "assets": .list(.object("asset")), "jobs": .list(.object("job")), "restore_tests": .list(.object("restore_test")),
            "waivers": .list(.object("waiver")), "documents": .list(.object("document")), "by_id": .map(.string, .dyn),
        ],
    ]

    /// Fields drplan no longer derives, and what replaces them.
    public static let retired: [String: String] = [
        "asset.dependencies": "the transitive list was removed (it grows with the square of a chain's length); "
            + "use asset.depends_on for direct dependencies, asset.dependency_depth, or asset.slowest_dependency (docs/facts.md)",
    ]

    /// drplan's additions to CEL.
    public static let functions: [String: CELType] = ["quantity": .int, "rate": .int]

    /// Declarations for a rule about `subject`: the subject under its kind's name, plus
    /// `inventory`, `policy` and `now`.
    public static func declarations(subject: SubjectKind?, extra: [String: CELType] = [:]) -> Declarations {
        var vars: [String: CELType] = ["inventory": .object("inventory"), "policy": .object("policy"), "now": .timestamp]
        if let subject { vars[subject.rawValue] = .object(subject.rawValue) }
        vars.merge(extra) { _, new in new }
        return Declarations(variables: vars, objects: objects, functions: functions, retired: retired)
    }
}
