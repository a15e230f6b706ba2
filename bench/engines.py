#!/usr/bin/env python3
"""Side-by-side engine benchmark: drplan's builtin engine, restic, borg and tar|zstd, each with
encryption on, on the same generated tree, in one run. Run by hand, never in CI.

usage: bench/engines.py [--work /tmp/drplan-bench] [--runs 3] [--drplan .build/release/drplan]
                        [--no-write] [--tools NAME,…] [--s3]

--s3 adds drplan's builtin engine and restic writing to the same S3 server (moto on loopback:
start it with `eval "$(bash .ci/s3.sh start /tmp/drplan-s3)"`, which sets DRPLAN_S3_*), each
into a prefix of its own. --tools keeps only the tools whose name contains one of the words
(e.g. `--tools drplan,restic`).

For each tool and run: a first backup into a fresh repository, an incremental backup after
`gen_tree.py --mutate`, a full restore with verification, and the repository size. Wall time,
MB/s (source bytes / wall time) and peak RSS come from GNU time; each cell is the median of the
runs with [min–max]. Also measured: sha256sum over the tree (one core's hashing limit) and a
plain tar read (the I/O floor). The page cache is warm for everyone (the tree fits in memory).

Writes the tables between the engine markers in docs/benchmarks.md unless --no-write.
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from benchdoc import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASS = "bench-passphrase-not-secret"


def cpu_seconds(pid):
    """User plus system CPU seconds of process `pid` so far (None when there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def timed(cmd, cwd=None, env=None, server=None):
    """Runs `cmd` (a shell string) under GNU time; returns (wall s, peak RSS MB, CPU %, server CPU s),
    the last being the CPU time process `server` spent meanwhile (None without one)."""
    full_env = dict(os.environ, **(env or {}))
    before = cpu_seconds(server) if server else None
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M %P", "bash", "-o", "pipefail", "-c", cmd],
                         cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = [l for l in out.stderr.splitlines() if l.startswith("TIME ")]
    if out.returncode != 0 or not line:
        sys.exit(f"failed ({out.returncode}): {cmd}\n{out.stderr[-2000:]}")
    _, wall, rss, cpu = line[-1].split()
    after = cpu_seconds(server) if server else None
    spent = after - before if before is not None and after is not None else None
    return float(wall), int(rss) / 1024, int(cpu.rstrip("%") or 0), spent


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0])


def tree_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


class Tool:
    """One backup tool: its commands for a repository directory `repo`."""
    def __init__(self, name, init, first, incremental, restore, env=None, size=None, server=None):
        self.name, self.init, self.first, self.incremental, self.restore, self.env = name, init, first, incremental, restore, env or {}
        self.size = size   # run -> repository bytes, where the repository is not a local folder
        self.server = server   # pid of the server it talks to, whose CPU time is measured too


def s3_tools(work, tree, drplan):
    e = os.environ
    endpoint, bucket = e["DRPLAN_S3_ENDPOINT"], e["DRPLAN_S3_BUCKET"]
    s3env = {"AWS_ACCESS_KEY_ID": e["DRPLAN_S3_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": e["DRPLAN_S3_SECRET_ACCESS_KEY"], "RESTIC_PASSWORD": PASS}
    inv = os.path.join(work, "drplan-s3-{run}.yaml")
    stamp = str(int(time.time()))
    restic_repo = f"s3:{endpoint}/{bucket}/bench-restic-{stamp}-{{run}}"
    server = e.get("DRPLAN_S3_SERVER_PID")   # set by .ci/s3.sh: the server's CPU is measured too
    return [
        Tool("drplan builtin → S3",
             init="true",
             first=f"{drplan} backup -q -i {inv} --evidence {work}/ev-s3-{{run}}.sqlite",
             incremental=f"{drplan} backup -q -i {inv} --evidence {work}/ev-s3-{{run}}.sqlite",
             restore=f"{drplan} restore-test -q -i {inv} --evidence {work}/ev-s3-{{run}}.sqlite full",
             env=s3env, size=lambda r: s3_size(bucket, f"bench-drplan-{stamp}-{r}/"), server=server),
        Tool("restic → S3",
             init=f"restic -r {restic_repo} init",
             first=f"cd {tree} && restic -r {restic_repo} backup --quiet .",
             incremental=f"cd {tree} && restic -r {restic_repo} backup --quiet .",
             restore=f"restic -r {restic_repo} restore latest --target {{out}} --verify",
             env=s3env, size=lambda r: s3_size(bucket, f"bench-restic-{stamp}-{r}/"), server=server),
    ], stamp


def s3_client():
    """A boto3 client for the S3 server in DRPLAN_S3_* (what `.ci/s3.sh start` prints)."""
    import boto3
    e = os.environ
    return boto3.client("s3", endpoint_url=e["DRPLAN_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=e["DRPLAN_S3_ACCESS_KEY_ID"], aws_secret_access_key=e["DRPLAN_S3_SECRET_ACCESS_KEY"])


def s3_size(bucket, prefix):
    s3 = s3_client()
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def write_s3_inventory(path, tree, stamp, run):
    e = os.environ
    with open(path, "w") as f:
        f.write(f"""drplan: 1
sites: [{{ id: office, kind: office }}, {{ id: cloud, kind: cloud-region }}]
storage:
  - {{ id: bucket, kind: cloud-object, site: cloud, url: "s3://{e['DRPLAN_S3_BUCKET']}/bench-drplan-{stamp}-{run}", endpoint: "{e['DRPLAN_S3_ENDPOINT']}", create: true, encryption: {{ at_rest: true }} }}
assets: [{{ id: tree, kind: file-store, site: office, source: {{ path: {tree} }} }}]
jobs:
  - {{ id: tree-nightly, assets: [tree], schedule: "0 1 * * *", targets: [bucket], encryption: {{ at_rest: true, passphrase: "env:BENCH_PASS" }} }}
restore_tests: [{{ id: full, job: tree-nightly, scope: full }}]
""")


def tools(work, tree, drplan):
    inv = os.path.join(work, "drplan-{run}.yaml")
    return [
        Tool("drplan builtin",
             init="true",
             first=f"{drplan} backup -q -i {inv} --evidence {work}/ev-{{run}}.sqlite",
             incremental=f"{drplan} backup -q -i {inv} --evidence {work}/ev-{{run}}.sqlite",
             restore=f"{drplan} restore-test -q -i {inv} --evidence {work}/ev-{{run}}.sqlite full"),
        Tool("restic " + subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split()[1],
             init="restic -r {repo} init",
             first=f"cd {tree} && restic -r {{repo}} backup --quiet .",
             incremental=f"cd {tree} && restic -r {{repo}} backup --quiet .",
             restore="restic -r {repo} restore latest --target {out} --verify",
             env={"RESTIC_PASSWORD": PASS}),
        Tool("borg " + subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.split()[1],
             init="borg init --encryption=repokey-blake2 {repo}",
             first=f"cd {tree} && borg create {{repo}}::first .",
             incremental=f"cd {tree} && borg create {{repo}}::second .",
             restore="mkdir -p {out} && cd {out} && borg extract {repo}::second && borg check --verify-data {repo}",
             env={"BORG_PASSPHRASE": PASS, "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}),
        Tool("tar \\| zstd -T0 \\| openssl aes-256-ctr",
             init="mkdir -p {repo}",
             first=f"tar --listed-incremental={{repo}}/snar -cf - -C {tree} . | zstd -q -T0 -3 | openssl enc -aes-256-ctr -pbkdf2 -pass env:BENCH_PASS > {{repo}}/0.tar.zst.enc",
             incremental=f"cp {{repo}}/snar {{repo}}/snar1 && tar --listed-incremental={{repo}}/snar1 -cf - -C {tree} . | zstd -q -T0 -3 | openssl enc -aes-256-ctr -pbkdf2 -pass env:BENCH_PASS > {{repo}}/1.tar.zst.enc",
             # zstd checks each frame's checksum while decompressing: the verification.
             restore="mkdir -p {out} && for a in 0 1; do openssl enc -d -aes-256-ctr -pbkdf2 -pass env:BENCH_PASS < {repo}/$a.tar.zst.enc | zstd -q -d | tar --listed-incremental=/dev/null -xf - -C {out}; done",
             env={"BENCH_PASS": PASS}),
    ]


def write_inventory(path, tree, repo):
    os.makedirs(repo, exist_ok=True)   # the "mounted drive": drplan never creates a missing one
    with open(path, "w") as f:
        f.write(f"""drplan: 1
sites: [{{ id: office, kind: office }}]
storage: [{{ id: disk, kind: disk, site: office, path: {repo}, create: true, encryption: {{ at_rest: true }} }}]
assets: [{{ id: tree, kind: file-store, site: office, source: {{ path: {tree} }} }}]
jobs:
  - {{ id: tree-nightly, assets: [tree], schedule: "0 1 * * *", targets: [disk], encryption: {{ at_rest: true, passphrase: "env:BENCH_PASS" }} }}
restore_tests: [{{ id: full, job: tree-nightly, scope: full }}]
""")


def cell(values, fmt):
    med = statistics.median(values)
    return fmt(med) + (f" [{fmt(min(values))}–{fmt(max(values))}]" if len(values) > 1 else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/drplan-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--drplan", default=os.path.join(ROOT, ".build/release/drplan"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--tools", default="", help="comma-separated words; keep the tools whose name contains one")
    ap.add_argument("--s3", action="store_true", help="also drplan and restic to the S3 server in DRPLAN_S3_* (a table of their own)")
    a = ap.parse_args()
    for tool in ["restic", "borg", "zstd", "openssl", "sha256sum"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install restic borgbackup zstd openssl coreutils")
    drplan = os.path.abspath(a.drplan)
    shutil.rmtree(a.work, ignore_errors=True)
    tree = os.path.join(a.work, "tree")
    print("generating the tree…", flush=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_tree.py"), tree], check=True)
    size0 = tree_bytes(tree)
    env = {"BENCH_PASS": PASS}
    ts = tools(a.work, tree, drplan)
    stamp = None
    if a.s3:
        if "DRPLAN_S3_ENDPOINT" not in os.environ:
            sys.exit('--s3 needs an S3 server: eval "$(bash .ci/s3.sh start /tmp/drplan-s3)"')
        extra, stamp = s3_tools(a.work, tree, drplan)
        ts += extra
    if a.tools:
        words = [w.strip() for w in a.tools.split(",") if w.strip()]
        ts = [t for t in ts if any(w in t.name for w in words)]
    results = {t.name: {"first": [], "incremental": [], "restore": [], "size": []} for t in ts}

    floors = {}
    floors["sha256sum (one core)"] = timed(f"find {tree} -type f -print0 | xargs -0 sha256sum > /dev/null")
    floors["tar read (I/O floor)"] = timed(f"tar cf - -C {tree} . | cat > /dev/null")

    def repo(t, r):
        return os.path.join(a.work, f"repo-{ts.index(t)}-{r}")

    for r in range(a.runs):
        write_inventory(os.path.join(a.work, f"drplan-{r}.yaml"), tree, os.path.join(a.work, f"repo-0-{r}"))
        if stamp:
            write_s3_inventory(os.path.join(a.work, f"drplan-s3-{r}.yaml"), tree, stamp, r)
        for t in ts:
            subprocess.run(t.init.format(repo=repo(t, r), run=r), shell=True, check=True, env={**os.environ, **t.env, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            w, m, c, sv = timed(t.first.format(repo=repo(t, r), run=r), env={**t.env, **env}, server=t.server)
            results[t.name]["first"].append((w, m, c, sv))
            print(f"first       {t.name:40} run {r + 1}: {w:6.1f} s {m:7.0f} MB {c:4d}% CPU" + (f", server {sv:.1f} s CPU" if sv is not None else ""), flush=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_tree.py"), tree, "--mutate"], check=True)
    size1 = tree_bytes(tree)
    for r in range(a.runs):
        for t in ts:
            w, m, c, sv = timed(t.incremental.format(repo=repo(t, r), run=r), env={**t.env, **env}, server=t.server)
            results[t.name]["incremental"].append((w, m, c, sv))
            results[t.name]["size"].append(t.size(r) if t.size else du(repo(t, r)))
            print(f"incremental {t.name:40} run {r + 1}: {w:6.1f} s {m:7.0f} MB {c:4d}% CPU" + (f", server {sv:.1f} s CPU" if sv is not None else ""), flush=True)
    for r in range(a.runs):
        for t in ts:
            out = os.path.join(a.work, "restored")
            shutil.rmtree(out, ignore_errors=True)
            w, m, c, sv = timed(t.restore.format(repo=repo(t, r), out=out, run=r), env={**t.env, **env}, server=t.server)
            results[t.name]["restore"].append((w, m, c, sv))
            print(f"restore     {t.name:40} run {r + 1}: {w:6.1f} s {m:7.0f} MB {c:4d}% CPU" + (f", server {sv:.1f} s CPU" if sv is not None else ""), flush=True)
            shutil.rmtree(out, ignore_errors=True)

    mb = lambda b: b / 1e6
    header = (f"Run on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores, {platform.platform()}, "
              f"tree {mb(size0):,.0f} MB before and {mb(size1):,.0f} MB after `--mutate`; {a.runs} runs, median [min–max]. "
              f"MB/s is source bytes over wall time (for the incremental too, so it shows how little is re-read).")

    def table(group, what, floors_too):
        lines = [header, "",
                 "| tool | first backup | MB/s | incremental | restore + verify | MB/s | peak RSS (first / incr / restore) | CPU % (first) | repository | × input |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t in group:
            R = results[t.name]
            f = [x[0] for x in R["first"]]; i = [x[0] for x in R["incremental"]]; s = [x[0] for x in R["restore"]]
            rss = "/".join(f"{statistics.median([x[1] for x in R[k]]):.0f}" for k in ["first", "incremental", "restore"]) + " MB"
            size = statistics.median(R["size"])
            lines.append(f"| {t.name} | {cell(f, lambda v: f'{v:.1f} s')} | {mb(size0) / statistics.median(f):.0f} | {cell(i, lambda v: f'{v:.1f} s')} | "
                         f"{cell(s, lambda v: f'{v:.1f} s')} | {mb(size1) / statistics.median(s):.0f} | {rss} | "
                         f"{statistics.median([x[2] for x in R['first']]):.0f} | {mb(size):,.0f} MB | {100 * size / size1:.0f}% |")
        served = [t for t in group if all(x[3] is not None for k in ["first", "restore"] for x in results[t.name][k])]
        if served:
            # Client and server share the machine's cores: their CPU seconds together, over
            # the cores, are a floor no client can beat (the server's share is not the client's
            # to save).
            cores = os.cpu_count() or 1
            lines += ["", f"| tool | step | wall | client CPU | server CPU | floor: (client + server CPU) / {cores} cores |", "|---|---|---:|---:|---:|---:|"]
            for t in served:
                for k in ["first", "restore"]:
                    R = results[t.name][k]
                    wall = statistics.median([x[0] for x in R]); client = statistics.median([x[0] * x[2] / 100 for x in R])
                    server = statistics.median([x[3] for x in R])
                    lines.append(f"| {t.name} | {'first backup' if k == 'first' else 'restore + verify'} | {wall:.1f} s | {client:.1f} s | {server:.1f} s | {(client + server) / cores:.1f} s |")
        if floors_too:
            lines += ["", "| yardstick | wall | MB/s | CPU % |", "|---|---:|---:|---:|"]
            for k, (w, m, c, _) in floors.items():
                lines.append(f"| {k} | {w:.1f} s | {mb(size0) / w:.0f} | {c} |")
        base = next((results[t.name] for t in group if t.name.startswith("drplan")), None)
        rest = next((results[t.name] for t in group if t.name.startswith("restic")), None)
        if base and rest:
            ratio = lambda k: statistics.median([x[0] for x in rest[k]]) / statistics.median([x[0] for x in base[k]])
            lines += ["", f"drplan builtin against restic, {what}: first backup {ratio('first'):.1f}× faster, "
                      f"incremental {ratio('incremental'):.1f}×, verified restore {ratio('restore'):.1f}×; repository "
                      f"{statistics.median(base['size']) / statistics.median(rest['size']):.2f}× restic's; "
                      f"peak RSS {statistics.median([x[1] for x in base['first']]):.0f} MB against {statistics.median([x[1] for x in rest['first']]):.0f} MB (first backup)."]
        return "\n".join(lines)

    local = [t for t in ts if "S3" not in t.name]
    remote = [t for t in ts if "S3" in t.name]
    for group, section, what in [(local, "engines", "same run"), (remote, "engines-s3", "to the same S3 server")]:
        if not group:
            continue
        text = table(group, what, group is local)
        print("\n" + text)
        if not a.no_write:
            write_section(section, text)


if __name__ == "__main__":
    main()
