/// The commented starter inventory `drplan init` writes. A test loads it, so it always validates.
public enum StarterInventory {
    public static let fileName = "drplan.yaml"

    public static let text = """
        # drplan inventory (format version 1). Reference: docs/inventory.md
        # Check it with:   drplan validate
        # See the facts:   drplan facts
        drplan: 1
        organization: Example Ltd

        # Optional: which frameworks the reports map to, and the defaults the rules use.
        policy:
          frameworks: [gdpr, iso27001]
          fail_on: high               # drplan check fails on findings at or above this severity
          restore_test_every: 90d     # how often each restore test must run
          min_recovery_window: 35d    # how far back high-tier assets must be recoverable
          capacity_threshold: 80%
          retention:
            pii: { max: 10y }         # personal data may not be kept longer than this

        # Places: a site without a region is its own region.
        sites:
          - { id: office, kind: office, region: home-city }
          - { id: cloud-eu, kind: cloud-region, region: eu-west }

        # Where copies are kept. Media follows from kind (nas → disk, cloud-object → object…).
        storage:
          - id: office-nas
            kind: nas
            site: office
            capacity: 8TB
            used: 2TB
            encryption: { at_rest: true }
            access: { network_isolated: true }
          - id: cloud-bucket
            kind: cloud-object
            site: cloud-eu
            immutable: true           # object lock: ransomware cannot delete it
            encryption: { at_rest: true, in_transit: true }

        # What must be recoverable, and how fast (rpo: data you may lose; rto: time to restore).
        assets:
          - id: file-share
            kind: file-store
            name: Shared documents
            site: office
            tier: high
            owner: office-manager
            size: 500GB
            data_classes: [pii]
            rpo: 24h
            rto: 8h
            source: { path: /srv/share }

        # How copies are made. Schedules are cron (UTC), @daily-style macros, 'every 4h' or 'continuous'.
        jobs:
          - id: share-nightly
            assets: [file-share]
            type: incremental
            schedule: "0 1 * * *"
            targets: [office-nas, cloud-bucket]
            retention: { keep_daily: 14, keep_weekly: 8, keep_monthly: 12 }
            encryption: { at_rest: true, in_transit: true, passphrase: "env:DRPLAN_PASSPHRASE" }
            monitoring: { alert_on_failure: ["mailto:it@example.com"] }

        # Proof that restores work.
        restore_tests:
          - id: share-quarterly
            job: share-nightly
            scope: full
            every: 90d

        """
}
