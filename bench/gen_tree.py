#!/usr/bin/env python3
"""Seeded generator of a ~1 GB source tree for engine benchmarks.

usage: bench/gen_tree.py DIR [--seed 1] [--mutate]

About 20,000 small files of 1-64 KiB (half text, half random), 200 files of 1-8 MiB, and
4 large files of 100 MiB (two compressible, two random). --mutate rewrites about 2% of the
files and adds a few, for incremental-backup measurements.
"""
import argparse
import os
import random

WORDS = ("backup restore snapshot retention offsite immutable replica schedule recovery "
         "objective inventory storage policy evidence runbook tape vault disk cloud").split()


def text_bytes(rnd, n):
    out = []
    size = 0
    while size < n:
        w = rnd.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return (" ".join(out)[:n]).encode()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", action="store_true")
    a = ap.parse_args()
    rnd = random.Random(a.seed + (1000 if a.mutate else 0))
    small = [f"{a.dir}/small/{i // 500:03d}/f{i:05d}" for i in range(20000)]
    medium = [f"{a.dir}/medium/m{i:03d}.bin" for i in range(200)]
    large = [f"{a.dir}/large/l{i}.bin" for i in range(4)]
    if a.mutate:
        for p in rnd.sample(small, 400) + rnd.sample(medium, 4):
            size = os.path.getsize(p)
            write(p, os.urandom(size))
        for i in range(20):
            write(f"{a.dir}/small/new/n{rnd.randrange(10**9)}", os.urandom(rnd.randint(1024, 65536)))
        return
    for i, p in enumerate(small):
        n = rnd.randint(1024, 65536)
        write(p, text_bytes(rnd, n) if i % 2 == 0 else os.urandom(n))
    for p in medium:
        write(p, os.urandom(rnd.randint(1 << 20, 8 << 20)))
    for i, p in enumerate(large):
        write(p, text_bytes(rnd, 100 << 20) if i < 2 else os.urandom(100 << 20))


if __name__ == "__main__":
    main()
