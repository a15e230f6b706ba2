#!/usr/bin/env python3
"""Fleet evidence store at scale (docs/fleets.md, docs/benchmarks.md#fleet-evidence-store).

Generates an inventory of HOSTS hosts and JOBS jobs, and a PostgreSQL evidence store holding
RUNS runs of them with a valid audit chain (every run bound to its entries by its row's
SHA-256, as drplan writes them), loaded with psql's \\copy. Then times the commands that read
it: check on a machine that has not verified the store before (it reads the whole log),
evidence verify (the whole log, always), check again (from the mark that verification left in
this machine's cache: only what was written since), and history, against the same check with
an empty store, and prints a table.

    bash .ci/postgres.sh start /tmp/bench-pg > /tmp/bench-pg.env; . /tmp/bench-pg.env
    python3 bench/fleet.py --drplan .build/release/drplan [--hosts 100 --jobs 2000 --runs 1000000]
"""
import argparse, csv, datetime, hashlib, json, os, re, statistics, subprocess, sys, tempfile, time, uuid

RUN_COLUMNS = ["id", "kind", "job", "restore_test", "asset", "engine", "storage", "host", "pid", "started_at", "finished_at", "status",
               "bytes_read", "bytes_written", "files", "snapshot", "verified_files", "verified_bytes", "error", "output"]


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def canonical(row):
    """A run row's digest, as EvidenceStore.rowDigest computes it: compact JSON of the
    evidence columns, sorted, nulls kept."""
    parts = []
    for c in sorted(RUN_COLUMNS):
        v = row[c]
        parts.append(json.dumps(c) + ":" + ("null" if v is None else (str(v) if isinstance(v, int) else json.dumps(v, ensure_ascii=False))))
    return hashlib.sha256(("{" + ",".join(parts) + "}").encode()).hexdigest()


def detail(d):
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def generate(args, work, now):
    hosts = ["host%03d" % i for i in range(args.hosts)]
    inv = ["drplan: 1", "organization: Fleet bench", "sites: [{ id: dc1, kind: datacenter, region: r1 }, { id: dc2, kind: datacenter, region: r2 }]",
           "storage:", "  - { id: nas, kind: nas, site: dc1, path: nas }", "  - { id: vault, kind: nas, site: dc2, path: vault }", "assets:"]
    for j in range(args.jobs):
        inv.append("  - { id: a%04d, kind: file-store, site: dc1, tier: high, rpo: 24h, host: %s, source: { path: data/a%04d } }" % (j, hosts[j % args.hosts], j))
    inv.append("jobs:")
    for j in range(args.jobs):
        inv.append('  - { id: j%04d, assets: [a%04d], schedule: "0 1 * * *", targets: [nas, vault], encryption: { at_rest: true, passphrase: "env:BENCH_PASS" } }' % (j, j))
    with open(os.path.join(work, "fleet.yaml"), "w") as f:
        f.write("\n".join(inv) + "\n")
    per_job = args.runs // args.jobs
    runs_csv = open(os.path.join(work, "runs.csv"), "w", newline="")
    audit_csv = open(os.path.join(work, "audit.csv"), "w", newline="")
    rw, aw = csv.writer(runs_csv), csv.writer(audit_csv)
    prev, seq = "0" * 64, 0
    # Day by day, oldest first, every job's run that day: the log's order is the runs' order.
    for day in range(per_job, 0, -1):
        base = (now - datetime.timedelta(days=day - 1)).replace(hour=1, minute=0, second=0, microsecond=0)
        if base > now:
            base -= datetime.timedelta(days=1)
        for j in range(args.jobs):
            started = base + datetime.timedelta(seconds=j % 600)
            finished = started + datetime.timedelta(seconds=30 + j % 90)
            target = "nas" if day % 2 == 0 else "vault"
            ok = (j * 7919 + day) % 100 != 0
            row = {"id": str(uuid.UUID(int=(day << 32) | j)), "kind": "backup", "job": "j%04d" % j, "restore_test": None, "asset": "a%04d" % j,
                   "engine": "builtin", "storage": target, "host": hosts[j % args.hosts], "pid": 1000 + j, "started_at": iso(started),
                   "finished_at": iso(finished), "status": "success" if ok else "failed", "bytes_read": 1_000_000 + j, "bytes_written": 10_000 + j,
                   "files": 100, "snapshot": ("%064x" % ((day << 32) | j))[:64] if ok else None, "verified_files": 0, "verified_bytes": 0,
                   "error": None if ok else "the target was full", "output": None}
            started_row = dict(row, finished_at=None, status="running", bytes_read=0, bytes_written=0, files=0, snapshot=None, error=None)
            for at, event, d in [(row["started_at"], "run.started", {"run": row["id"], "kind": "backup", "job": row["job"], "restore_test": "", "row_sha256": canonical(started_row)}),
                                 (row["finished_at"], "run.finished", {"run": row["id"], "status": row["status"], "snapshot": row["snapshot"] or "", "row_sha256": canonical(row)})]:
                seq += 1
                text = detail(d)
                h = hashlib.sha256("\n".join([prev, at, event, text]).encode()).hexdigest()
                aw.writerow([seq, at, event, text, prev, h])
                prev = h
            rw.writerow([("" if row[c] is None else row[c]) for c in RUN_COLUMNS] + [0])
    runs_csv.close(); audit_csv.close()
    return per_job * args.jobs, seq


def psql(url, password, sql):
    r = subprocess.run(["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-At", "--dbname=" + url, "-c", sql], env=dict(os.environ, PGPASSWORD=password),
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("psql failed: " + r.stderr)
    return r.stdout.strip()


READ = re.compile(r"verified and read in ([0-9.]+) s")


def timed(cmd, env, repeat):
    """Median, min and max wall time, peak RSS, and the evidence read's own time (from
    --verbose's line) when the command prints it."""
    times, rss, reads = [], 0, []
    for _ in range(repeat):
        t = time.monotonic()
        r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=env, capture_output=True, text=True)
        times.append(time.monotonic() - t)
        if r.returncode not in (0, 1):
            sys.exit("%s failed (%d): %s" % (" ".join(cmd[:3]), r.returncode, r.stderr[-2000:]))
        rss = max(rss, int(r.stderr.strip().split("\n")[-1]))
        reads += [float(m) for m in READ.findall(r.stderr)]
    return statistics.median(times), min(times), max(times), rss // 1024, (statistics.median(reads) if reads else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drplan", default=".build/release/drplan")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the generated databases and files (printed) for more timings")
    args = ap.parse_args()
    dsn, password = os.environ.get("DRPLAN_PG_DSN"), os.environ.get("DRPLAN_PG_PASSWORD")
    if not dsn or not password:
        sys.exit("start a server first: bash .ci/postgres.sh start /tmp/bench-pg > /tmp/bench-pg.env; . /tmp/bench-pg.env")
    drplan = os.path.abspath(args.drplan)
    work = tempfile.mkdtemp(prefix="drplan-fleet-")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    t = time.monotonic()
    runs, entries = generate(args, work, now)
    gen = time.monotonic() - t
    name = "fleet_bench_%d" % os.getpid()
    psql(dsn, password, "CREATE DATABASE %s" % name)
    psql(dsn, password, "CREATE DATABASE %s_empty" % name)
    url, empty = dsn.rsplit("/", 1)[0] + "/" + name, dsn.rsplit("/", 1)[0] + "/" + name + "_empty"
    env = dict(os.environ, PGPASSWORD=password, BENCH_PASS="x", NO_COLOR="1")
    for u in (url, empty):
        r = subprocess.run([drplan, "evidence", "migrate", "--evidence", u, "-i", work + "/fleet.yaml"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("migrate failed: " + r.stderr)
    t = time.monotonic()
    psql(url, password, "\\copy runs (%s, alert_pending) FROM '%s/runs.csv' WITH (FORMAT csv)" % (", ".join(RUN_COLUMNS), work))
    psql(url, password, "\\copy audit (seq, at, event, detail, prev_hash, hash) FROM '%s/audit.csv' WITH (FORMAT csv)" % work)
    psql(url, password, "SELECT setval(pg_get_serial_sequence('audit', 'seq'), (SELECT MAX(seq) FROM audit)); ANALYZE")
    load = time.monotonic() - t
    size = psql(url, password, "SELECT pg_size_pretty(pg_database_size(current_database()))")
    # The generated store must be one drplan accepts: the same digests, the same chain.
    r = subprocess.run([drplan, "evidence", "verify", "-i", work + "/fleet.yaml", "--evidence", url], env=dict(env, DRPLAN_CACHE_DIR=work + "/cache-generated"),
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("the generated store does not verify: " + (r.stdout + r.stderr)[-3000:])
    inv = ["-i", work + "/fleet.yaml"]
    env["DRPLAN_CACHE_DIR"] = work + "/cache"
    rows = [
        ("check, empty store (evaluation alone)", [drplan, "check", "--format", "json"] + inv + ["--evidence", empty], None),
        ("check, first on this machine (whole log read)", [drplan, "check", "--format", "json", "--full-verification", "--verbose"] + inv + ["--evidence", url], None),
        ("evidence verify (whole log)", [drplan, "evidence", "verify"] + inv + ["--evidence", url], None),
        ("check, from this machine's mark", [drplan, "check", "--format", "json", "--verbose"] + inv + ["--evidence", url], "mark"),
        ("history --since 1 day ago", [drplan, "history", "--format", "json", "--since", (now - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")] + inv + ["--evidence", url], None),
    ]
    print("store: %d hosts, %d jobs, %d runs, %d audit entries; %s in PostgreSQL; generated in %.0f s, loaded in %.0f s" % (args.hosts, args.jobs, runs, entries, size, gen, load))
    print("| command | median s | min–max s | peak RSS MiB | evidence verified and read, s |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    for label, cmd, needs in rows:
        if needs == "mark" and not os.listdir(work + "/cache/verified"):
            sys.exit("evidence verify left no mark in " + work + "/cache")
        med, lo, hi, rss, read = timed(cmd, env, args.repeat)
        results[label] = med
        print("| %s | %.2f | %.2f–%.2f | %d | %s |" % (label, med, lo, hi, rss, "%.2f" % read if read is not None else ""))
    print("reading the store's evidence adds %.2f s to check from the mark, %.2f s reading the whole log"
          % (results[rows[3][0]] - results[rows[0][0]], results[rows[1][0]] - results[rows[0][0]]))
    if args.keep:
        print("kept: %s, %s, %s (DRPLAN_CACHE_DIR=%s/cache)" % (url, empty, work, work))
        return
    psql(dsn, password, "DROP DATABASE %s" % name)
    psql(dsn, password, "DROP DATABASE %s_empty" % name)


if __name__ == "__main__":
    main()
