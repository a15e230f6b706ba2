#!/usr/bin/env python3
"""Reliability trials for drplan's own engine (and restic, through drplan's restic engine, for
comparison): kill -9 during backup and prune, single-byte flips, truncations and deletions in
the repository, concurrent runs, and a full disk. Prints a table; writes it into
docs/reliability.md unless --no-write.

usage: bench/reliability.py [--drplan .build/debug/drplan] [--engines builtin,restic]
                            [--backup-kills 50] [--prune-kills 20] [--flips 100]
                            [--truncations 20] [--deletions 20] [--concurrency 5]
                            [--seed 1] [--json FILE] [--no-write] [--s3]
       bench/reliability.py --from-json builtin.json restic.json   # one table from split runs

Every trial works on real files in a scratch folder, through the `drplan` command line as a
user's cron job would run it, and checks the outcome itself:
- kill -9 (of the whole process group, so restic dies too) at points spread over a measured
  uninterrupted run, the very end included. Afterwards every snapshot restores bit-exact (its
  content is known from when it was taken), the next run succeeds, `evidence verify` passes
  and no run is left `running`. Counted: snapshots lost, repositories left unusable, manual
  steps (anything but running drplan again).
- damage: one file of a pristine repository copy is flipped (one byte), truncated or deleted,
  chosen at random among packs/data, index, snapshots, config and keys. Counted: whether
  `check-repository --read-data` fails, whether its output names the damaged file, whether
  every file not depending on the damage still restores, and any restore that yields wrong
  bytes without saying so.
- concurrency: two jobs' first backups into new repositories; backup and prune (whichever
  locks first runs, the other must be refused naming the holder); backup and restore-test;
  two backups of the same job. Counted: corrupt repositories, lost snapshots, failed runs
  (with what they said, in the JSON), and refusals without a clear message.
- --s3: the same trials with the target a bucket on an S3 server (the one .ci/s3.sh starts:
  DRPLAN_S3_ENDPOINT, DRPLAN_S3_BUCKET and its access key), builtin engine only. The damage is
  done through the S3 API (boto3, which moto installs): the object is read, changed and put
  back, or deleted, as a faulty provider or an attacker with the bucket's key could. Each lab
  gets a prefix of its own, and its objects are deleted afterwards. The disk-full trial does
  not apply and is skipped.
- disk full: the target on a small tmpfs (needs root to mount; skipped with the reason
  otherwise). Counted: whether the error says the disk is full, whether earlier snapshots stay
  intact, and whether the next run succeeds once there is room.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASS = "reliability-passphrase-not-secret"

INVENTORY = """drplan: 1
organization: Reliability
sites: [{{ id: office, kind: office }}, {{ id: home, kind: home }}]
storage:
  - {{ id: drive, kind: removable, site: home, path: target, create: true }}
assets:
  - {{ id: docs, kind: file-store, site: office, source: {{ path: data }} }}
  - {{ id: mail, kind: file-store, site: office, source: {{ path: mail }} }}
jobs:
  - {{ id: docs-nightly, assets: [docs], schedule: "0 1 * * *", engine: {engine}, targets: [drive], retention: {{ keep_last: 2 }}, encryption: {{ at_rest: true, passphrase: "file:pw.txt" }} }}
  - {{ id: mail-nightly, assets: [mail], schedule: "0 1 * * *", engine: {engine}, targets: [drive], retention: {{ keep_last: 2 }}, encryption: {{ at_rest: true, passphrase: "file:pw.txt" }} }}
restore_tests:
  - {{ id: docs-full, job: docs-nightly, scope: full }}
"""


S3_STORAGE = ('{{ id: drive, kind: cloud-object, site: home, url: "s3://{bucket}/{prefix}", endpoint: "{endpoint}", create: true, '
              'credentials: {{ access_key_id: "env:DRPLAN_S3_ACCESS_KEY_ID", secret_access_key: "env:DRPLAN_S3_SECRET_ACCESS_KEY" }} }}')


class LocalRepo:
    """The repository's files on disk, as the damage trials see them."""

    def __init__(self, lab):
        self.lab = lab
        self.root = lab.path("target", "drplan-repository" if lab.engine == "builtin" else "drplan-restic")

    def names(self):
        """Every non-empty file's path relative to the repository, locks left out."""
        out = []
        for d, _, fs in os.walk(self.root):
            if os.path.basename(d) == "locks":
                continue
            for f in fs:
                p = os.path.join(d, f)
                if os.path.getsize(p) > 0:
                    out.append(os.path.relpath(p, self.root))
        return sorted(out)

    def copy_from(self, pristine):
        """Makes this lab's repository a copy of `pristine`'s."""
        shutil.rmtree(self.lab.path("target"))
        shutil.copytree(pristine.path("target"), self.lab.path("target"), symlinks=True)

    def read(self, name):
        with open(os.path.join(self.root, name), "rb") as f:
            return f.read()

    def write(self, name, data):
        with open(os.path.join(self.root, name), "r+b") as f:
            f.write(data)
            f.truncate()

    def delete(self, name):
        os.remove(os.path.join(self.root, name))

    def remove_all(self):
        pass


class S3Repo:
    """The repository's objects under the lab's prefix in the S3 bucket, through boto3."""

    def __init__(self, prefix):
        from engines import s3_client
        self.bucket, self.prefix = os.environ["DRPLAN_S3_BUCKET"], prefix
        self.client = s3_client()

    def keys(self):
        out, token = [], None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.prefix + "/"}
            if token:
                kw["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kw)
            out += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def names(self):
        names = [k[len(self.prefix) + 1:] for k, size in self.keys() if size > 0]
        return sorted(n for n in names if not n.startswith("locks/"))

    def copy_from(self, pristine):
        """Makes this lab's repository a copy of `pristine`'s (server-side copies)."""
        other = pristine.repo
        for key, _ in other.keys():
            name = key[len(other.prefix) + 1:]
            if not name.startswith("locks/"):
                self.client.copy_object(Bucket=self.bucket, Key=self.prefix + "/" + name,
                                        CopySource={"Bucket": other.bucket, "Key": key})

    def read(self, name):
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + "/" + name)["Body"].read()

    def write(self, name, data):
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + "/" + name, Body=data)

    def delete(self, name):
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + "/" + name)

    def remove_all(self):
        keys = [k for k, _ in self.keys()]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})


class Lab:
    """A scratch inventory: a source tree, one target, drplan driven through its CLI."""

    s3 = False   # set by --s3: every lab's target is a prefix of the S3 server's bucket

    def __init__(self, base, drplan, engine, rng, size_mb=24):
        self.dir = tempfile.mkdtemp(prefix="drplan-rel-", dir=base)
        self.drplan, self.engine, self.rng = drplan, engine, rng
        os.makedirs(self.path("target"))
        with open(self.path("pw.txt"), "w") as f:
            f.write(PASS + "\n")
        inventory = INVENTORY.format(engine=engine)
        if Lab.s3:
            prefix = "reliability-" + os.path.basename(self.dir).replace("_", "-").lower()
            local = "{ id: drive, kind: removable, site: home, path: target, create: true }"
            inventory = inventory.replace(local, S3_STORAGE.format(bucket=os.environ["DRPLAN_S3_BUCKET"], prefix=prefix,
                                                                   endpoint=os.environ["DRPLAN_S3_ENDPOINT"]))
            self.repo = S3Repo(prefix)
        else:
            self.repo = LocalRepo(self)
        with open(self.path("drplan.yaml"), "w") as f:
            f.write(inventory)
        self.write_tree("data", files=60, total=size_mb << 20)
        self.write_tree("mail", files=20, total=2 << 20)
        self.expected = {}   # snapshot id -> {relative path: sha256} of the tree it holds

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write_tree(self, name, files, total):
        root = self.path(name)
        os.makedirs(root, exist_ok=True)
        for i in range(files):
            sub = os.path.join(root, f"d{i % 7}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"f{i}.bin"), "wb") as f:
                f.write(self.rng.randbytes(max(1, total // files + self.rng.randint(-1000, 1000))))

    def mutate(self, name="data", share=0.3):
        root = self.path(name)
        for d, _, fs in os.walk(root):
            for f in fs:
                if self.rng.random() < share:
                    with open(os.path.join(d, f), "wb") as out:
                        out.write(self.rng.randbytes(self.rng.randint(100_000, 600_000)))

    @staticmethod
    def digest(root):
        out = {}
        for d, _, fs in os.walk(root):
            for f in fs:
                p = os.path.join(d, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
        return out

    def run(self, *args, timeout=600):
        return subprocess.run([self.drplan, *args, "-i", self.path("drplan.yaml")], cwd=self.dir,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, *args):
        return subprocess.Popen([self.drplan, *args, "-i", self.path("drplan.yaml")], cwd=self.dir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def snapshots(self, job="docs-nightly"):
        r = self.run("snapshots", job, "--format", "json")
        if r.returncode != 0:
            return None
        return [s["id"] for s in json.loads(r.stdout)["snapshots"]]

    def backup(self, job="docs-nightly"):
        """A backup that must succeed; records what its new snapshot holds."""
        before = set(self.snapshots(job) or [])
        tree = self.digest(self.path("data" if job == "docs-nightly" else "mail"))
        r = self.run("backup", job)
        if r.returncode != 0:
            raise SystemExit(f"backup failed:\n{r.stderr}")
        for s in set(self.snapshots(job) or []) - before:
            self.expected[s] = tree
        return r

    def restores(self, snapshot, job="docs-nightly"):
        """(restored exactly, reported damage, silently wrong files) for one snapshot."""
        out = self.path("restore-" + snapshot[:8] + "-" + str(self.rng.random())[2:8])
        r = self.run("restore", job, "--snapshot", snapshot, "--target", out)
        got = self.digest(out) if os.path.isdir(out) else {}
        shutil.rmtree(out, ignore_errors=True)
        want = self.expected.get(snapshot, {})
        reported = r.returncode != 0
        wrong = [p for p, h in got.items() if want.get(p) != h]
        return (r.returncode == 0 and got == want, reported, wrong, r.stderr)

    def evidence_ok(self):
        v = self.run("evidence", "verify")
        h = self.run("history", "--format", "json")
        running = [x for x in json.loads(h.stdout or '{"runs": []}')["runs"] if x["status"] == "running"]
        return v.returncode == 0 and not running

    def cleanup(self):
        self.repo.remove_all()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed_run(lab, *args):
    t = time.monotonic()
    r = lab.run(*args)
    return time.monotonic() - t, r


def kill_trials(base, drplan, engine, n, what, rng):
    """kill -9 at n points spread over a measured run of `what` (backup or prune)."""
    lost = unusable = manual = next_failed = evidence_bad = 0
    lab = Lab(base, drplan, engine, rng)
    try:
        lab.backup()
        lab.backup("mail-nightly")
        if what == "prune":
            for _ in range(3):
                lab.mutate()
                lab.backup()
        lab.mutate()
        duration, r = timed_run(lab, what, "docs-nightly") if what == "backup" else (None, None)
        if what == "backup":
            # The measuring run made a snapshot too; record it.
            for s in set(lab.snapshots() or []) - set(lab.expected):
                lab.expected[s] = lab.digest(lab.path("data"))
        else:
            probe = Lab(base, drplan, engine, random.Random(1))
            probe.backup()
            for _ in range(3):
                probe.mutate()
                probe.backup()
            duration, _ = timed_run(probe, "prune", "docs-nightly")
            probe.cleanup()
        for i in range(n):
            if what == "backup":
                lab.mutate(share=0.2)
                tree = lab.digest(lab.path("data"))
            before = set(lab.snapshots() or [])
            delay = duration * 1.15 * (i + 0.5) / n
            p = lab.start(what, "docs-nightly")
            time.sleep(delay)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            after = lab.snapshots()
            if after is None:
                unusable += 1
                after = []
            if what == "backup":
                for s in set(after) - before:
                    lab.expected[s] = tree
            # Every snapshot that should be there restores bit-exact. A prune may remove the
            # ones its retention forgets; a backup never removes any.
            expected_present = before if what == "backup" else set(after)
            missing = expected_present - set(after)
            lost += len(missing)
            for s in after:
                if s in lab.expected:
                    ok, _, wrong, _ = lab.restores(s)
                    if not ok:
                        lost += 1
            nxt = lab.run(what, "docs-nightly")
            if nxt.returncode != 0:
                next_failed += 1
                if "unlock" in nxt.stderr or "repair" in nxt.stderr:
                    manual += 1
            elif what == "backup":
                for s in set(lab.snapshots() or []) - set(lab.expected):
                    lab.expected[s] = lab.digest(lab.path("data"))
            if what == "prune":
                for s in list(lab.expected):
                    if s not in set(lab.snapshots() or []):
                        del lab.expected[s]
                lab.mutate()
                lab.backup()
            if not lab.evidence_ok():
                evidence_bad += 1
        return {"trials": n, "snapshots_lost": lost, "unusable": unusable, "manual_steps": manual,
                "next_run_failed": next_failed, "evidence_inconsistent": evidence_bad}
    finally:
        lab.cleanup()


def damage_trials(base, drplan, engine, kinds, rng):
    """One damaged file per trial, on a copy of a pristine repository."""
    pristine = Lab(base, drplan, engine, rng, size_mb=8)
    results = []
    try:
        pristine.backup()
        pristine.mutate()
        pristine.backup()
        pristine.backup("mail-nightly")
        files = pristine.repo.names()
        for kind in kinds:
            lab = Lab(base, drplan, engine, rng, size_mb=1)
            lab.repo.copy_from(pristine)
            # The evidence too: it remembers which snapshots the repository holds.
            shutil.copytree(pristine.path(".drplan"), lab.path(".drplan"))
            for sub in ("data", "mail"):
                shutil.rmtree(lab.path(sub))
                shutil.copytree(pristine.path(sub), lab.path(sub))
            lab.expected = dict(pristine.expected)
            rel = rng.choice(files)
            if kind == "delete":
                lab.repo.delete(rel)
            else:
                data = bytearray(lab.repo.read(rel))
                if kind == "flip":
                    at = rng.randrange(len(data))
                    data[at] ^= 1 << rng.randrange(8)
                else:
                    del data[rng.randrange(len(data)):]
                lab.repo.write(rel, bytes(data))
            check = lab.run("check-repository", "--read-data")
            text = check.stdout + check.stderr
            name = os.path.basename(rel)
            named = name[:12] in text or name[:8] in text or (name == "config" and "config" in text)
            wrong_silent = 0
            undamaged_fail = 0
            for job in ("docs-nightly", "mail-nightly"):
                for s in pristine.snapshots(job) or []:
                    ok, reported, wrong, err = lab.restores(s, job)
                    if wrong and not reported:
                        wrong_silent += 1
                    # Files the restore did not flag must be right; an unflagged wrong file is silent damage.
                    if not ok and not reported:
                        undamaged_fail += 1
            results.append({"kind": kind, "file": rel.split("/")[0], "detected": check.returncode != 0, "named": named,
                             "silent_wrong": wrong_silent, "undamaged_failed": undamaged_fail})
            lab.cleanup()
        return results
    finally:
        pristine.cleanup()


def concurrency_trials(base, drplan, engine, n, rng):
    bad = unclear = 0
    cases = 0
    failures = []   # what went wrong, for the JSON: the case and the tail of each message

    def failed(case, *texts):
        nonlocal bad
        bad += 1
        failures.append({"case": case, "stderr": [t[-600:] for t in texts if t]})

    def check_repo(lab):
        r = lab.run("check-repository", "--read-data")
        return "" if r.returncode == 0 else "check-repository: " + r.stdout + r.stderr

    for _ in range(n):
        # Two jobs' first backups into a new repository.
        lab = Lab(base, drplan, engine, rng, size_mb=16)
        a, b = lab.start("backup", "docs-nightly"), lab.start("backup", "mail-nightly")
        ea, eb = a.communicate()[1], b.communicate()[1]
        cases += 1
        problem = check_repo(lab)
        if a.returncode != 0 or b.returncode != 0 or problem:
            failed("two first backups", ea if a.returncode else "", eb if b.returncode else "", problem)
        # Backup and prune.
        lab.mutate()
        p1, p2 = lab.start("backup", "docs-nightly"), lab.start("prune", "mail-nightly")
        e1, e2 = p1.communicate()[1], p2.communicate()[1]
        cases += 1
        problem = check_repo(lab)
        # Whichever takes the lock first runs; the other is refused, naming the holder (the
        # default without --retry-lock). Locally the backup wins the race, on S3 either may.
        refused = [e for p, e in ((p1, e1), (p2, e2)) if p.returncode != 0]
        if len(refused) > 1 or problem:
            failed("backup and prune", *refused, problem)
        unclear += sum(1 for e in refused if "locked by" not in e)
        # Backup and restore-test.
        lab.mutate()
        p1, p2 = lab.start("backup", "docs-nightly"), lab.start("restore-test")
        e1, e2 = p1.communicate()[1], p2.communicate()[1]
        cases += 1
        if p1.returncode != 0 or p2.returncode != 0:
            failed("backup and restore-test", e1 if p1.returncode else "", e2 if p2.returncode else "")
        # Two backups of the same job.
        lab.mutate()
        p1, p2 = lab.start("backup", "docs-nightly"), lab.start("backup", "docs-nightly")
        e1, e2 = p1.communicate()[1], p2.communicate()[1]
        cases += 1
        codes = sorted([p1.returncode, p2.returncode])
        problem = check_repo(lab)
        test = lab.run("restore-test")
        if codes not in ([0, 0], [0, 3]) or problem or test.returncode != 0:
            failed("two backups of one job", e1 if p1.returncode else "", e2 if p2.returncode else "", problem,
                   "restore-test: " + test.stderr if test.returncode else "")
        if 3 in codes and "already running" not in (e1 + e2):
            unclear += 1
        lab.cleanup()
    return {"cases": cases, "corrupt_or_failed": bad, "unclear_refusals": unclear, "failures": failures}


def disk_full_trial(base, drplan, engine, rng):
    lab = Lab(base, drplan, engine, rng, size_mb=4)
    mount = lab.path("target")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", mount], capture_output=True, text=True)
        if r.returncode != 0:
            return {"skipped": f"cannot mount a tmpfs ({r.stderr.strip() or 'needs root'})"}
        lab.backup()
        first = lab.snapshots()
        lab.write_tree("data/more", files=10, total=20 << 20)
        full = lab.run("backup", "docs-nightly")
        says_full = full.returncode != 0 and "disk is full" in full.stderr
        intact = all(lab.restores(s)[0] for s in first)
        shutil.rmtree(lab.path("data", "more"))
        nxt = lab.run("backup", "docs-nightly")
        return {"clear_error": says_full, "earlier_intact": intact, "next_succeeds": nxt.returncode == 0}
    finally:
        subprocess.run(["umount", mount], capture_output=True)
        lab.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drplan", default=os.path.join(ROOT, ".build/debug/drplan"))
    ap.add_argument("--engines", default="builtin,restic")
    ap.add_argument("--backup-kills", type=int, default=50)
    ap.add_argument("--prune-kills", type=int, default=20)
    ap.add_argument("--flips", type=int, default=100)
    ap.add_argument("--truncations", type=int, default=20)
    ap.add_argument("--deletions", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=5)
    ap.add_argument("--no-disk-full", action="store_true")
    ap.add_argument("--s3", action="store_true", help="the target is a bucket on the S3 server of DRPLAN_S3_* (builtin engine)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=tempfile.gettempdir())
    ap.add_argument("--json")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="render (and write) the table from earlier runs' --json files instead of running trials; "
                         "engines are merged in the order given, so a long run can be split per engine")
    args = ap.parse_args()
    if args.from_json:
        report, notes = {}, []
        for path in args.from_json:
            with open(path) as f:
                data = json.load(f)
            report.update(data.get("engines", data))
            notes.append(data.get("args", ""))
        table = render(report, args, notes)
        print(table)
        if not args.no_write:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from benchdoc import write_section
            write_section("reliability-s3" if args.s3 else "reliability", table, doc="docs/reliability.md")
        return
    if not os.access(args.drplan, os.X_OK):
        sys.exit(f"{args.drplan} is not built: run 'swift build' first")
    if args.s3:
        missing = [v for v in ("DRPLAN_S3_ENDPOINT", "DRPLAN_S3_BUCKET", "DRPLAN_S3_ACCESS_KEY_ID", "DRPLAN_S3_SECRET_ACCESS_KEY") if v not in os.environ]
        if missing:
            sys.exit(f"--s3 needs an S3 server: {', '.join(missing)} not set (eval \"$(bash .ci/s3.sh start /tmp/drplan-s3)\")")
        if args.engines != "builtin":
            sys.exit("--s3 trials drplan's builtin engine only: give --engines builtin")
        Lab.s3 = True
    report = {}
    for engine in args.engines.split(","):
        if engine == "restic" and shutil.which("restic") is None:
            report[engine] = {"skipped": "restic is not installed"}
            continue
        rng = random.Random(args.seed)
        t0 = time.monotonic()
        kinds = ["flip"] * args.flips + ["truncate"] * args.truncations + ["delete"] * args.deletions
        e = {
            "backup_kills": kill_trials(args.work, args.drplan, engine, args.backup_kills, "backup", rng) if args.backup_kills else None,
            "prune_kills": kill_trials(args.work, args.drplan, engine, args.prune_kills, "prune", rng) if args.prune_kills else None,
            "damage": damage_trials(args.work, args.drplan, engine, kinds, rng) if kinds else [],
            "concurrency": concurrency_trials(args.work, args.drplan, engine, args.concurrency, rng) if args.concurrency else None,
            "disk_full": None if args.no_disk_full else {"skipped": "not applicable to S3"} if args.s3 else disk_full_trial(args.work, args.drplan, engine, rng),
        }
        e["seconds"] = round(time.monotonic() - t0, 1)
        report[engine] = e
    where = "an S3 bucket (moto on loopback)" if args.s3 else "a local folder"
    trials = (f"{', '.join(report)} to {where}: {args.backup_kills} kills in backup, {args.prune_kills} in prune, {args.flips} flips, "
              f"{args.truncations} truncations, {args.deletions} deletions, {args.concurrency} concurrency rounds, seed {args.seed}")
    table = render(report, args, [trials])
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"engines": report, "args": trials}, f, indent=2)
    if not args.no_write:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from benchdoc import write_section
        write_section("reliability-s3" if args.s3 else "reliability", table, doc="docs/reliability.md")


def render(report, args, trials):
    lines = [f"{time.strftime('%Y-%m-%d')}, drplan {os.path.relpath(args.drplan, ROOT) if args.drplan.startswith(ROOT) else args.drplan}. Trials: " + "; ".join(trials) + ".", "",
             "| trial | target | " + " | ".join(report) + " |", "|---|---|" + "---|" * len(report)]

    def cell(engine, f):
        e = report[engine]
        if "skipped" in e:
            return "skipped: " + e["skipped"]
        try:
            return f(e)
        except (TypeError, KeyError):
            return "-"

    def damage(kind, key):
        def f(e):
            rows = [d for d in e["damage"] if d["kind"] == kind]
            return f"{sum(1 for d in rows if d[key])}/{len(rows)}" if rows else "-"
        return f

    rows = [
        ("kill -9 in backup: snapshots lost", "0", lambda e: f"{e['backup_kills']['snapshots_lost']} of {e['backup_kills']['trials']} kills"),
        ("kill -9 in backup: repositories unusable / manual steps", "0 / 0", lambda e: f"{e['backup_kills']['unusable']} / {e['backup_kills']['manual_steps']}"),
        ("kill -9 in backup: next backup failed / evidence inconsistent", "0 / 0", lambda e: f"{e['backup_kills']['next_run_failed']} / {e['backup_kills']['evidence_inconsistent']}"),
        ("kill -9 in prune: snapshots lost", "0", lambda e: f"{e['prune_kills']['snapshots_lost']} of {e['prune_kills']['trials']} kills"),
        ("kill -9 in prune: unusable / manual / next prune failed", "0 / 0 / 0", lambda e: f"{e['prune_kills']['unusable']} / {e['prune_kills']['manual_steps']} / {e['prune_kills']['next_run_failed']}"),
        ("byte flips detected by check --read-data", "100%", damage("flip", "detected")),
        ("byte flips: damaged file named", "100%", damage("flip", "named")),
        ("truncations detected / named", "100%", lambda e: damage("truncate", "detected")(e) + " / " + damage("truncate", "named")(e)),
        ("deletions detected / named", "100%", lambda e: damage("delete", "detected")(e) + " / " + damage("delete", "named")(e)),
        ("restores yielding wrong bytes silently", "0", lambda e: str(sum(d["silent_wrong"] for d in e["damage"]))),
        ("undamaged files failing to restore, unreported", "0", lambda e: str(sum(d["undamaged_failed"] for d in e["damage"]))),
        ("concurrency: corrupt or failed / unclear refusals", "0 / 0", lambda e: f"{e['concurrency']['corrupt_or_failed']} / {e['concurrency']['unclear_refusals']} of {e['concurrency']['cases']} cases"),
        ("disk full: clear error / earlier intact / next succeeds", "yes / yes / yes", lambda e: "skipped: " + e["disk_full"]["skipped"] if "skipped" in e["disk_full"] else " / ".join("yes" if e["disk_full"][k] else "NO" for k in ("clear_error", "earlier_intact", "next_succeeds"))),
        ("wall time of the trials", "", lambda e: f"{e['seconds']} s"),
    ]
    for name, target, f in rows:
        lines.append(f"| {name} | {target} | " + " | ".join(cell(engine, f) for engine in report) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
