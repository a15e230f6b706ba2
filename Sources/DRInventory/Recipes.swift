import Foundation

/// Complete inventories for common setups, written by `drplan init --recipe NAME`.
public enum Recipes {
    /// Recipe names, with one line each for `--help` and errors.
    public static let all: [(name: String, summary: String)] = [
        ("small-office", "an office laptop's documents to an external drive and an S3 bucket, encrypted, every night, restore-tested from both copies"),
    ]

    public static func text(_ name: String) -> String? {
        switch name {
        case "small-office": return smallOffice
        default: return nil
        }
    }

    static let smallOffice = """
        # Small office: the office laptop's documents, backed up every night, encrypted, to an
        # external drive kept at home and to an S3 bucket, with restore tests from both copies
        # (the data-loss guide's recipe; docs/recipes.md walks through it).
        #
        # Before the first backup:
        #   1. Plug in the drive and set 'path' below to its mount point. drplan never creates a
        #      missing mount point, so an unplugged drive fails the night's run loudly instead of
        #      filling the laptop's own disk.
        #   2. Create the bucket, and give drplan credentials that can write to it: export
        #      AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile in ~/.aws/credentials),
        #      or fill in 'credentials' below. For MinIO, B2, Wasabi or R2 add 'endpoint:'.
        #   3. Write a long random passphrase into passphrase.txt beside this file
        #      (chmod 600), and keep a second copy somewhere else: without it nobody can
        #      restore, and 'key_storage' below says where that copy is.
        # Then:
        #   drplan backup          # writes both copies; a copy it cannot write fails loudly
        #   drplan restore-test    # restores into scratch space and verifies every byte
        #   drplan check           # every finding, with how to fix it
        # and let the system run the backup every evening at 21:00 in 'timezone' below:
        #   drplan schedule --install   # a systemd timer (or --format cron / launchd)
        #   drplan schedule --list      # the next runs, in the office's time
        #
        # As written, 'drplan check' reports what this setup still lacks: no copy that ransomware
        # cannot delete (DR104; a bucket with Object Lock, or a drive rotated offline with
        # 'air_gapped: true' and 'rotation'), deletion protection on both copies (DR701), and,
        # until the first runs, no restore test (DR502) and no evidence of a backup.
        drplan: 1
        organization: Small Office
        timezone: Europe/London            # the office's zone: schedules below are its wall-clock times
        policy:
          frameworks: [gdpr, iso27001]
        sites:
          - { id: office, kind: office, region: town }
          - { id: home, kind: home, region: village }
          - { id: cloud, kind: cloud-region, region: eu-west-1 }
        storage:
          - id: external-drive
            kind: removable
            site: home
            path: /media/backup-drive      # the drive's mount point; it must exist
            create: true                   # the first backup creates drplan's repository on it
            encryption: { at_rest: true }
          - id: s3-bucket
            kind: cloud-object
            site: cloud
            url: s3://my-office-backups/laptop
            region: eu-west-1
            create: true
            encryption: { at_rest: true, in_transit: true }
            # credentials: { access_key_id: "env:BACKUP_KEY_ID", secret_access_key: "file:s3-secret.txt" }
        assets:
          - id: documents
            kind: file-store
            name: Office documents
            site: office
            tier: high
            owner: office-manager
            data_classes: [pii]
            rpo: 24h
            rto: 8h
            source: { path: ~/Documents, exclude: ["*.tmp", ".cache"] }
        jobs:
          - id: documents-nightly
            assets: [documents]
            type: incremental
            schedule: "0 21 * * *"        # 21:00 office time, when the laptop is on; a night it was off runs when it wakes
            targets: [external-drive, s3-bucket]
            retention: { keep_daily: 14, keep_weekly: 8, keep_monthly: 12 }
            encryption: { at_rest: true, in_transit: true, passphrase: "file:passphrase.txt" }
            monitoring: { alert_on_failure: ["file:alerts.log"] }
        restore_tests:
          - id: documents-restore
            job: documents-nightly
            scope: sample
            every: 30d
            targets: all                   # both copies, every time: the "0 errors" of 3-2-1-1-0

        """
}
