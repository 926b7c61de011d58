#!/usr/bin/python3
"""kill -9 of rlhfd and of its training workers at random moments, with
writers running (issue 13). Loopback only; stops by itself.

    bench/chaos.py [--rounds 50] [--max-seconds 900] [--writers 8] [--seed 1]
                   [--job-steps 1280000] [--rlhfd build/rlhfd] [--keep]

What it does:

1. rlhfd on 127.0.0.1 with a fresh database in a temporary directory
   (--workers 1, --lease-ms 2000, --write-rate 0), an admin token
   (--create-token) and an annotator token and a project (k = 4) made through
   the API.
2. --writers threads, each in a loop: creates a comparison (admin,
   `Idempotency-Key: cmp-W-I`, prompt "chaos W I", 4 candidates) and ranks
   it (annotator, `Idempotency-Key: rank-W-I`). A connection error, a
   timeout or a 5xx is retried with the SAME key until a 2xx (or the end of
   the run); an answer counts as acknowledged only when it is a 2xx.
3. Training jobs one after another: ppo-control (CartPole-v1, seed = the
   job's number, --job-steps environment steps, checkpoint_interval 50
   updates, max_attempts 100) so a killed attempt resumes from its last
   checkpoint.
4. --rounds times, after a random 0.5..4 s: kill -9 of the daemon (then it
   is started again on the same database and port) or, when a job is
   running, of its worker (an rlhf-train process with this run's database on
   its command line: after a daemon kill an orphaned worker is no longer
   rlhfd's child), chosen at random. Stops early after --max-seconds.
   After a worker kill it reads the job's row from the database file until
   the job leaves the dead worker (another lease owner, or no longer
   claimed) and notes how long that took and whether it came before the
   dead worker's lease would have expired (rlhfd noticed the death, as its
   child's exit or, for an orphan, its lease owner's pid + start time).
5. The end: the writers stop, the daemon is killed -9 a last time and
   restarted clean, every job is waited for, and every killed job's
   configuration is run once more uninterrupted (the reference). Then the
   rankings are read back through GET /v1/projects/{id}/rankings.jsonl and
   the comparisons from the database file.

Prints: the worker kills (orphans among them) and how soon each was
noticed; acknowledged / lost (acknowledged but absent) / duplicated (one
idempotency key stored as two rows) for comparisons and rankings, and for
the jobs that were killed: how many succeeded, and how many ended with a
final checkpoint (sha256) and metric series (every step, every name but
the wall-clock timings optimize_s, rollout_s, sps, wall_s; as printed by the
API, 15 significant digits) equal to the uninterrupted reference ("resumed identical").
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
RETRYABLE = (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError)


class Daemon:
    """rlhfd on one database; start() again after a kill reuses the port."""

    def __init__(self, rlhfd, tmp, db, lease_ms):
        self.rlhfd, self.tmp, self.db, self.lease_ms = rlhfd, tmp, db, lease_ms
        self.port, self.proc, self.starts = 0, None, 0
        self.log = open(os.path.join(tmp, "rlhfd.log"), "ab")

    def start(self):
        out = os.path.join(self.tmp, "rlhfd.out")
        deadline = time.time() + 60
        while True:
            with open(out, "wb") as f:
                self.proc = subprocess.Popen(
                    [self.rlhfd, "--db", self.db, "--listen", "127.0.0.1:%d" % self.port,
                     "--workers", "1", "--lease-ms", str(self.lease_ms), "--write-rate", "0"],
                    stdout=f, stderr=self.log)
            while self.proc.poll() is None:
                m = re.search(r"http://127\.0\.0\.1:(\d+)", open(out).read())
                if m:
                    self.port = int(m.group(1))
                    self.starts += 1
                    return
                time.sleep(0.02)
            if time.time() > deadline:  # e.g. the port stayed taken
                sys.exit("chaos: rlhfd does not start again; see %s/rlhfd.log" % self.tmp)
            time.sleep(0.2)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def request(port, method, path, token, body=None, key=None, timeout=10):
    """One request: (status, parsed JSON or text). Raises on connection errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def call(daemon, method, path, token, body=None, key=None, stop=None, timeout=10):
    """Retries connection errors and 5xx (same key) until a final answer,
    or until stop is set (then None)."""
    while stop is None or not stop.is_set():
        try:
            status, reply = request(daemon.port, method, path, token, body, key, timeout)
            if status < 500:
                return status, reply
        except RETRYABLE:
            pass
        time.sleep(0.05)
    return None


class Writers:
    def __init__(self, daemon, n, admin, annotator, project):
        self.daemon, self.admin, self.annotator, self.project = daemon, admin, annotator, project
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked_cmp = {}  # prompt -> comparison id
        self.acked_rank = {}  # comparison id -> ranking id
        self.refused = []  # 4xx answers to a retried request (should not happen)
        self.threads = [threading.Thread(target=self.run, args=(w,), daemon=True)
                        for w in range(n)]
        for t in self.threads:
            t.start()

    def run(self, w):
        rng = random.Random(w)
        i = 0
        while not self.stop.is_set():
            prompt = "chaos %d %d" % (w, i)
            body = {"prompt": prompt,
                    "candidates": [{"text": "%s answer %d" % (prompt, j)} for j in range(4)]}
            got = call(self.daemon, "POST", "/v1/projects/%d/comparisons" % self.project,
                       self.admin, body, "cmp-%d-%d" % (w, i), self.stop)
            if got is None:
                return
            status, cmp = got
            if status != 200:
                with self.lock:
                    self.refused.append((prompt, status, cmp))
                i += 1
                continue
            with self.lock:
                self.acked_cmp[prompt] = cmp["id"]
            ids = [c["id"] for c in cmp["candidates"]]
            rng.shuffle(ids)
            got = call(self.daemon, "POST", "/v1/comparisons/%d/rankings" % cmp["id"],
                       self.annotator, {"order": [[c] for c in ids]}, "rank-%d-%d" % (w, i),
                       self.stop)
            if got is None:
                return
            status, rank = got
            with self.lock:
                if status == 200:
                    self.acked_rank[cmp["id"]] = rank["id"]
                else:
                    self.refused.append((prompt, status, rank))
            i += 1

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def worker_pids(db):
    """rlhf-train processes working on this database (children of rlhfd, or
    orphans of a killed one)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = open("/proc/%s/cmdline" % d, "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"rlhf-train") and db.encode() in argv:
            pids.append(int(d))
    return pids


def parent_pid(pid):
    """The parent of pid (field 4 of /proc/PID/stat), or 0 if it is gone."""
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[1])


def job_claim(db, job):
    """(status, lease_owner, lease_expires_ms) of the job, read from the file."""
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        return c.execute("SELECT status, lease_owner, lease_expires_ms FROM jobs WHERE id = ?",
                         (job,)).fetchone()
    finally:
        c.close()


def await_noticed(db, job, before, limit_s=30):
    """After the kill of the worker that held before (job_claim), waits until
    the job leaves it: (milliseconds after the kill, before its lease
    would have expired?), or None if it did not within limit_s."""
    t_kill = time.time()
    while time.time() - t_kill < limit_s:
        now = job_claim(db, job)
        if now[1] != before[1] or now[0] not in ("validating_files", "running"):
            t = time.time()
            return (t - t_kill) * 1000, t * 1000 < before[2]
        time.sleep(0.005)
    return None


def job_config(seed, steps):
    return {"type": "ppo-control", "max_attempts": 100,
            "hyperparameters": {"seed": seed, "total_steps": steps, "checkpoint_interval": 50}}


def wait_jobs(daemon, admin, ids, deadline):
    """Each job's final state, waiting until it has one (or the deadline)."""
    done = {}
    while len(done) < len(ids) and time.time() < deadline:
        for j in ids:
            if j not in done:
                got = call(daemon, "GET", "/v1/jobs/%d" % j, admin)
                if got[1]["status"] in ("succeeded", "failed", "cancelled"):
                    done[j] = got[1]
        time.sleep(0.2)
    return done


# Wall-clock measurements, which no two runs share.
TIMING_METRICS = ("optimize_s", "rollout_s", "sps", "wall_s")


def job_result(daemon, admin, job):
    """(final checkpoint sha256, {step: metrics but the timings}) of a
    finished job."""
    _, ckpts = call(daemon, "GET", "/v1/jobs/%d/checkpoints" % job, admin)
    final = [c["sha256"] for c in ckpts["data"] if c["kind"] == "final"]
    series, after = {}, 0
    while True:
        _, page = call(daemon, "GET", "/v1/jobs/%d/metrics?after_step=%d&limit=10000" %
                       (job, after), admin)
        for row in page["data"]:
            series[row["step"]] = {k: v for k, v in row["metrics"].items()
                                   if k not in TIMING_METRICS}
        if not page.get("has_more") or not page["data"]:
            break
        after = page["last_step"]
    return (final[0] if final else None), series


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=900,
                    help="stop killing after this long (the check at the end comes after)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--job-steps", type=int, default=1280000,
                    help="environment steps of each ppo-control job (512 per update)")
    ap.add_argument("--lease-ms", type=int, default=2000, help="rlhfd's --lease-ms")
    ap.add_argument("--rlhfd", default=os.path.join(BUILD, "rlhfd"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="rlhfd-chaos-")
    db = os.path.join(tmp, "chaos.db")
    admin = subprocess.run([args.rlhfd, "--db", db, "--create-token", "root", "--role", "admin"],
                           capture_output=True, text=True, check=True).stdout.strip()
    daemon = Daemon(args.rlhfd, tmp, db, args.lease_ms)
    daemon.start()
    writers = None
    try:
        _, tok = call(daemon, "POST", "/v1/tokens", admin, {"name": "ann", "role": "annotator"},
                      "tok")
        _, proj = call(daemon, "POST", "/v1/projects", admin, {"name": "chaos", "k": 4}, "proj")
        call(daemon, "POST", "/v1/projects/%d/members" % proj["id"], admin,
             {"token_id": tok["id"]})
        writers = Writers(daemon, args.writers, admin, tok["token"], proj["id"])

        jobs = []  # (id, seed)
        killed_jobs = {}  # job -> what was killed while it ran ("worker", "daemon")
        kills = {"daemon": 0, "worker": 0, "daemon (job running)": 0}
        notices = []  # (orphan?, ms after the kill or None, before the lease expired?)
        rounds = 0
        while rounds < args.rounds and time.time() - t0 < args.max_seconds:
            if not jobs or call(daemon, "GET", "/v1/jobs/%d" % jobs[-1][0], admin)[1]["status"] \
                    in ("succeeded", "failed", "cancelled"):
                seed = len(jobs) + 1
                _, job = call(daemon, "POST", "/v1/jobs", admin,
                              job_config(seed, args.job_steps), "job-%d" % seed)
                jobs.append((job["id"], seed))
            time.sleep(rng.uniform(0.5, 4.0))
            running = call(daemon, "GET", "/v1/jobs/%d" % jobs[-1][0], admin)[1]["status"] == \
                "running"
            pids = worker_pids(db)
            if pids and rng.random() < 0.5:
                what = "worker"
                before = job_claim(db, jobs[-1][0])
                orphan = any(parent_pid(p) != daemon.proc.pid for p in pids)
                for p in pids:
                    os.kill(p, signal.SIGKILL)
                killed_jobs.setdefault(jobs[-1][0], set()).add("worker")
                if before and before[0] in ("validating_files", "running") and before[2]:
                    got = await_noticed(db, jobs[-1][0], before)
                    notices.append((orphan,) + (got if got else (None, False)))
            else:
                what = "daemon (job running)" if running else "daemon"
                daemon.kill9()
                if running:
                    killed_jobs.setdefault(jobs[-1][0], set()).add("daemon")
                daemon.start()
            kills[what] += 1
            rounds += 1
            print("round %d: kill -9 %s; %d comparisons, %d rankings acknowledged so far" % (
                rounds, what, len(writers.acked_cmp), len(writers.acked_rank)), flush=True)
        chaos_s = time.time() - t0
        writers.finish()
        daemon.kill9()  # one more, right after the last writes
        daemon.start()
        ids = [j for j, _ in jobs]
        finals = wait_jobs(daemon, admin, ids, time.time() + 900)

        # References: each killed job's configuration once more, uninterrupted.
        refs = {}
        for j, seed in jobs:
            if j in killed_jobs:
                _, ref = call(daemon, "POST", "/v1/jobs", admin, job_config(seed, args.job_steps),
                              "ref-%d" % seed)
                refs[j] = ref["id"]
        ref_finals = wait_jobs(daemon, admin, list(refs.values()), time.time() + 1800)

        # Read everything back.
        status, text = request(daemon.port, "GET", "/v1/projects/%d/rankings.jsonl" % proj["id"],
                               admin, timeout=120)
        stored_rank = {}
        for line in (text if isinstance(text, str) else json.dumps(text)).splitlines():
            if line.strip():
                r = json.loads(line)
                stored_rank.setdefault(r["comparison_id"], []).append(r["ranking_id"])
        resumed = []
        for j in sorted(killed_jobs):
            job = finals.get(j)
            ref = ref_finals.get(refs[j])
            same = False
            if job and ref and job["status"] == ref["status"] == "succeeded":
                same = job_result(daemon, admin, j) == job_result(daemon, admin, refs[j])
            resumed.append((j, job["status"] if job else "unfinished", job and job["attempts"],
                            same, "+".join(sorted(killed_jobs[j]))))
    finally:
        if writers is not None:
            writers.finish()
        daemon.stop()
    c = sqlite3.connect(db)
    stored_cmp = {}
    for cid, prompt in c.execute("SELECT c.id, c.prompt FROM comparisons c"):
        stored_cmp.setdefault(prompt, []).append(cid)
    n_resumed = dict(c.execute("SELECT job_id, count(*) FROM job_events WHERE code = 'resumed' "
                               "GROUP BY job_id"))
    wal_bytes = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
    c.close()

    lost_cmp = [p for p, cid in writers.acked_cmp.items() if cid not in stored_cmp.get(p, [])]
    dup_cmp = [p for p, cids in stored_cmp.items() if len(cids) > 1]
    lost_rank = [c for c, rid in writers.acked_rank.items() if rid not in stored_rank.get(c, [])]
    dup_rank = [c for c, rids in stored_rank.items() if len(rids) > 1]
    n_same = sum(1 for r in resumed if r[3])
    n_ok = sum(1 for r in resumed if r[1] == "succeeded")
    print()
    print("chaos: %d rounds in %.0f s (kill -9: %d of the daemon with a job running, %d without; "
          "%d of a worker); rlhfd started %d times" % (
              rounds, chaos_s, kills["daemon (job running)"], kills["daemon"], kills["worker"],
              daemon.starts))
    noticed = sorted(n[1] for n in notices if n[1] is not None)
    print("worker kills with the job claimed: %d (%d orphans of a killed rlhfd); noticed before "
          "the lease expired: %d (orphans: %d of %d); after the kill: median %s ms, max %s ms "
          "(lease %d ms)" % (
              len(notices), sum(1 for n in notices if n[0]), sum(1 for n in notices if n[2]),
              sum(1 for n in notices if n[0] and n[2]), sum(1 for n in notices if n[0]),
              "%.0f" % noticed[len(noticed) // 2] if noticed else "-",
              "%.0f" % noticed[-1] if noticed else "-", args.lease_ms))
    print("comparisons: %d acknowledged, %d lost, %d duplicated" % (
        len(writers.acked_cmp), len(lost_cmp), len(dup_cmp)))
    print("rankings:    %d acknowledged, %d lost, %d duplicated; %d stored in all" % (
        len(writers.acked_rank), len(lost_rank), len(dup_rank),
        sum(len(v) for v in stored_rank.values())))
    print("refused on retry (4xx to a request already sent): %d" % len(writers.refused))
    for r in writers.refused[:5]:
        print("   %r" % (r,))
    print("jobs: %d run, %d killed at least once; of those %d succeeded, %d resumed identical "
          "to an uninterrupted reference (final checkpoint sha256 and every metric)" % (
              len(jobs), len(killed_jobs), n_ok, n_same))
    for j, status, attempts, same, what in resumed:
        print("   job %d (killed: %s): %s after %s attempts, %d resumed from a checkpoint, "
              "identical: %s" % (j, what, status, attempts, n_resumed.get(j, 0), same))
    print("WAL at the end: %d bytes" % wal_bytes)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    print("machine: %s, %d cores; command: bench/chaos.py %s" % (
        cpu, os.cpu_count(), " ".join(sys.argv[1:])))
    if args.keep:
        print("kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = lost_cmp or dup_cmp or lost_rank or dup_rank or n_same < len(killed_jobs)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
