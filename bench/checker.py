#!/usr/bin/env python3
"""Checker benchmark: `drplan check` (JSON to /dev/null), `drplan facts` and `drplan plan` on
generated inventories of 5k, 20k and 80k assets, each against the time PyYAML's libyaml loader
(CSafeLoader) takes just to load the same file, measured in the same run. Run by hand.

usage: bench/checker.py [--sizes 5000,20000,80000] [--chain 100000] [--drplan .build/release/drplan] [--no-write]

`--chain N` measures instead what dependencies cost: the same generated inventory of N
assets with no dependencies and with all N in one chain (`gen_inventory.py --deps none|chain`),
each through `facts`, `check` and `plan --scenario site:site-0 --scenario ransomware --parallel 8`
(a lost site, and ransomware with eight restores at a time).

Wall time and peak RSS come from GNU time (`/usr/bin/time`). Writes the table between the
checker markers in docs/benchmarks.md unless --no-write.
"""
import argparse
import os
import subprocess
import sys
import time

from benchdoc import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(args):
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = [l for l in out.stderr.splitlines() if l.startswith("TIME ")]
    # check exits 1 when it finds problems, which generated inventories have.
    if out.returncode not in (0, 1) or not line:
        sys.exit(f"failed ({out.returncode}): {' '.join(args)}\n{out.stderr[-2000:]}")
    _, wall, rss = line[-1].split()
    return float(wall), int(rss) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,20000,80000")
    ap.add_argument("--drplan", default=os.path.join(ROOT, ".build/release/drplan"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--chain", type=int, default=None)
    a = ap.parse_args()
    if a.chain:
        return chain(a)
    try:
        import yaml
        yaml.CSafeLoader
    except (ImportError, AttributeError):
        sys.exit("PyYAML with libyaml is missing: apt-get install python3-yaml (or pip install pyyaml)")
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        path = f"/tmp/drplan-bench-inv-{n}.yaml"
        if not os.path.exists(path):
            subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_inventory.py"), "--assets", str(n), "--jobs", str(n * 13 // 10), "-o", path], check=True)
        mb = os.path.getsize(path) / 1e6
        load = timed([sys.executable, "-c", f"import yaml; yaml.load(open('{path}'), Loader=yaml.CSafeLoader)"])
        check = timed([a.drplan, "check", "-i", path, "--now", "2026-11-22", "--format", "json", "-o", "/dev/null"])
        facts = timed([a.drplan, "facts", "-i", path, "--now", "2026-11-22", "-o", "/dev/null"])
        plan = timed([a.drplan, "plan", "-i", path, "--now", "2026-11-22", "-o", "/dev/null"])
        rows.append((n, mb, load, check, facts, plan))
        print(f"{n:>6} assets ({mb:.1f} MB): libyaml {load[0]:.1f} s, check {check[0]:.1f} s / {check[1]:.0f} MB, "
              f"facts {facts[0]:.1f} s / {facts[1]:.0f} MB, plan {plan[0]:.1f} s / {plan[1]:.0f} MB", flush=True)
    lines = [f"Run on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, release build; one run each. "
             "Inventories from `bench/gen_inventory.py --assets N --jobs 1.3N`.", "",
             "| assets | file | libyaml load | `check` JSON | × libyaml | RSS | `facts` | RSS | `plan` | RSS |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, mb, load, check, facts, plan in rows:
        lines.append(f"| {n:,} | {mb:.1f} MB | {load[0]:.1f} s | {check[0]:.1f} s | {check[0] / load[0]:.2f}× | {check[1]:,.0f} MB | "
                     f"{facts[0]:.1f} s | {facts[1]:,.0f} MB | {plan[0]:.1f} s | {plan[1]:,.0f} MB |")
    if len(rows) > 1:
        (n0, _, _, c0, _, _), (n1, _, _, c1, _, _) = rows[0], rows[-1]
        lines += ["", f"Growth of `check` from {n0:,} to {n1:,} assets ({n1 / n0:.0f}× the input): {c1[0] / c0[0]:.1f}× the time, "
                  f"{c1[1] / c0[1]:.1f}× the memory."]
    publish(a, "checker", lines)


def publish(a, section, lines):
    """Prints the table, and writes it into docs/benchmarks.md unless --no-write."""
    table = "\n".join(lines)
    print("\n" + table)
    if not a.no_write:
        write_section(section, table)


def chain(a):
    n = a.chain
    rows = []
    for deps in ["none", "chain"]:
        path = f"/tmp/drplan-bench-inv-{n}-{deps}.yaml"
        if not os.path.exists(path):
            subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_inventory.py"), "--assets", str(n), "--deps", deps, "-o", path], check=True)
        facts = timed([a.drplan, "facts", "-i", path, "--now", "2026-11-22", "-o", "/dev/null"])
        check = timed([a.drplan, "check", "-i", path, "--now", "2026-11-22", "--format", "json", "-o", "/dev/null"])
        plan = timed([a.drplan, "plan", "-i", path, "--now", "2026-11-22", "--scenario", "site:site-0", "--scenario", "ransomware", "--parallel", "8", "-o", "/dev/null"])
        rows.append((deps, facts, check, plan))
        print(f"{n:>6} assets, dependencies {deps}: facts {facts[0]:.1f} s / {facts[1]:.0f} MB, check {check[0]:.1f} s / {check[1]:.0f} MB, "
              f"plan {plan[0]:.1f} s / {plan[1]:.0f} MB", flush=True)
    lines = [f"Run on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, release build; one run each. "
             f"`bench/gen_inventory.py --assets {n} --deps none|chain`: the same inventory without dependencies and as one chain.", "",
             "| dependencies | `facts` | RSS | `check` JSON | RSS | `plan` (site, ransomware, 8 at a time) | RSS |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for deps, facts, check, plan in rows:
        label = "none" if deps == "none" else f"one chain of {n:,}"
        lines.append(f"| {label} | {facts[0]:.1f} s | {facts[1]:,.0f} MB | {check[0]:.1f} s | {check[1]:,.0f} MB | {plan[0]:.1f} s | {plan[1]:,.0f} MB |")
    (_, f0, c0, p0), (_, f1, c1, p1) = rows
    lines += ["", f"The chain costs {f1[0] / f0[0]:.2f}× the time of no dependencies for `facts`, {c1[0] / c0[0]:.2f}× for `check` "
              f"and {p1[0] / p0[0]:.2f}× for `plan`."]
    publish(a, "checker-chain", lines)


if __name__ == "__main__":
    main()
