#!/usr/bin/env python3
"""Seeded generator of large, realistic, valid drplan inventories.

usage: bench/gen_inventory.py --assets 20000 [--jobs 26000] [--seed 1] [--deps random|chain|none] -o /tmp/inv-20k.yaml

Sites, storage per site, assets with dependencies (acyclic: an asset only depends on
lower-numbered ones), jobs sharing a handful of schedules, restore tests, a few waivers.
`--deps chain` makes each asset depend on the one before it (one chain through the whole
inventory) and `--deps none` drops every dependency; everything else is the same for a seed,
so the two measure what dependencies alone cost.
"""
import argparse
import random

SCHEDULES = ["0 1 * * *", "*/15 * * * *", "0 */4 * * *", "30 2 * * 1-5", "0 3 * * sun", "@hourly", "every 6h", "continuous"]
KINDS = ["database", "file-store", "server", "vm", "endpoint", "application"]
TIERS = ["critical", "high", "medium", "low"]
STORAGE_KINDS = ["nas", "san", "tape", "cloud-object", "removable"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=20000)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deps", choices=["random", "chain", "none"], default="random")
    ap.add_argument("--timezones", action="store_true", help="an inventory zone, and a zone on a third of the jobs (docs/schedules.md)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    n_assets = a.assets
    n_jobs = a.jobs if a.jobs is not None else int(n_assets * 1.3)
    n_sites = max(4, n_assets // 500)
    # Its own generator, so that the rest of the inventory is the same with or without zones.
    zones = random.Random(a.seed + 1)
    out = ["drplan: 1", f"organization: Generated {n_assets}"] + (["timezone: Europe/London"] if a.timezones else []) + ["policy:", "  retention:", "    financial: { min: 7y }", "    pii: { max: 10y }", "sites:"]
    for s in range(n_sites):
        out.append(f"  - {{ id: site-{s}, kind: {rnd.choice(['datacenter', 'office', 'cloud-region', 'colo'])}, region: region-{s % 7} }}")
    out.append("storage:")
    storage = []
    for s in range(n_sites):
        for k in range(3):
            sid = f"st-{s}-{k}"
            kind = rnd.choice(STORAGE_KINDS)
            storage.append(sid)
            imm = "true" if rnd.random() < 0.3 else "false"
            out.append(f"  - {{ id: {sid}, kind: {kind}, site: site-{s}, immutable: {imm}, encryption: {{ at_rest: {str(rnd.random() < 0.7).lower()} }}, capacity: 100TB, used: {rnd.randint(10, 99)}TB }}")
    out.append("assets:")
    for i in range(n_assets):
        deps = sorted({f"asset-{rnd.randrange(i)}" for _ in range(rnd.randint(0, 2))}) if i > 10 else []
        if a.deps == "chain":
            deps = [f"asset-{i - 1}"] if i > 0 else []
        elif a.deps == "none":
            deps = []
        classes = rnd.choice(["[]", "[pii]", "[financial]", "[pii, financial]"])
        tier = rnd.choice(TIERS)
        out.append(f"  - id: asset-{i}")
        out.append(f"    kind: {rnd.choice(KINDS)}")
        out.append(f"    site: site-{rnd.randrange(n_sites)}")
        out.append(f"    tier: {tier}")
        if rnd.random() < 0.8:
            out.append(f"    owner: team-{rnd.randrange(40)}")
        out.append(f"    size: {rnd.randint(1, 5000)}GB")
        out.append(f"    data_classes: {classes}")
        if tier in ("critical", "high"):
            out.append(f"    rpo: {rnd.choice(['15m', '1h', '4h', '24h'])}")
            out.append(f"    rto: {rnd.choice(['30m', '1h', '4h', '8h', '24h'])}")
        if deps:
            out.append(f"    depends_on: [{', '.join(deps)}]")
    out.append("jobs:")
    for j in range(n_jobs):
        covered = [f"asset-{j % n_assets}"] + ([f"asset-{rnd.randrange(n_assets)}"] if rnd.random() < 0.2 else [])
        sched = rnd.choice(SCHEDULES)
        targets = sorted(set(rnd.sample(storage, rnd.randint(1, 3))))
        jtype = "replica" if sched == "continuous" else rnd.choice(["full", "incremental", "snapshot", "mirror"])
        out.append(f"  - id: job-{j}")
        out.append(f"    assets: [{', '.join(sorted(set(covered)))}]")
        out.append(f"    type: {jtype}")
        out.append(f'    schedule: "{sched}"')
        if a.timezones and zones.random() < 0.33:
            out.append(f"    timezone: {zones.choice(['America/New_York', 'Asia/Kolkata', 'Australia/Sydney', 'Europe/Berlin'])}")
        if sched == "continuous":
            out.append("    lag: 30s")
        out.append(f"    targets: [{', '.join(targets)}]")
        out.append(f"    retention: {{ keep_daily: {rnd.randint(7, 35)}, keep_monthly: {rnd.randint(0, 12)} }}")
        if rnd.random() < 0.8:
            out.append('    monitoring: { alert_on_failure: ["mailto:ops@example.com"] }')
        out.append(f"    last_success: 2026-11-{rnd.randint(10, 21):02d}T0{rnd.randint(0, 9)}:00:00Z")
        out.append(f"    last_status: {'failed' if rnd.random() < 0.05 else 'success'}")
    out.append("restore_tests:")
    for t in range(n_assets // 10):
        out.append(f"  - {{ id: test-{t}, job: job-{rnd.randrange(n_jobs)}, scope: {rnd.choice(['sample', 'full'])}, last_run: 2026-{rnd.randint(1, 11):02d}-01, result: {rnd.choice(['pass', 'pass', 'fail'])}, duration: {rnd.randint(5, 300)}m }}")
    out.append("waivers:")
    for w in range(20):
        out.append(f"  - {{ rule: DR702, subject: {rnd.choice(storage)}, reason: generated, approved_by: ciso, expires: 2027-0{rnd.randint(1, 9)}-01 }}")
    with open(a.output, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
