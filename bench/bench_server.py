#!/usr/bin/python3
"""rlhfd under load, on loopback, with wrk (make bench-server-deps).

What it measures, in one run:

1. Durable ranking submissions: wrk POSTs full k=4 rankings
   (`POST /v1/comparisons/{id}/rankings`, every request a different
   comparison, one annotator token) at 16 and 64 connections while a
   ppo-control training job (started through the API, cancelled at the end)
   writes its metrics beside them. Every 2xx answer is a ranking committed
   with synchronous=FULL (group commit: see docs/server.md). Reports
   requests/s and wrk's p50/p99 latency, and checks the database holds at
   least as many rankings as were acknowledged.
2. Metric reads: `GET /v1/jobs/{id}/metrics?names=loss&after_step=S&limit=100`
   on a 10,000-step series (4 metric names, seeded into the database),
   S random per request, at 64 connections.
3. The ceiling: bench/mhd_static.c, libmicrohttpd in the same mode and with
   the same thread count answering a static body, at 64 connections.
   Reads and ceiling are interleaved (ceiling, reads, ceiling, reads) and
   the ratio is of the means (of those two read rows only). More rows split
   the gap: rlhfd's `GET /healthz` (routing and reply, no token, no
   database), a metric read of one step (auth, the job, one row), and the
   same 100-step reads of a job that is still running while a writer
   thread of this script appends a step to it (the 4 names, one
   INSERT OR REPLACE transaction per step, as a worker writes them) every
   ~10 ms: rlhfd's cache of a running job's series is checked and extended
   on every read (server/read_cache.h), so this row pays for that.

The training job runs through every measurement, so reads and ceiling see
the same CPU competition. wrk is closed-loop (each connection waits for its
answer), so its latencies understate what an open-loop client would see
under overload; at the loads measured here no request was refused.

    bench/bench_server.py [--duration S] [--http-threads N] [--worker-nice N] [--rlhfd PATH]
                          [--markdown]

--worker-nice is passed to rlhfd (default: rlhfd's, 10; 0 runs the training
job at the daemon's own priority).

--rlhfd runs another build of the daemon (e.g. the commit before a change,
for a before/after pair of runs).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import openblas_core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")

WRITE_LUA = r"""
local first = tonumber(os.getenv("BENCH_FIRST_COMPARISON"))
local cand0 = tonumber(os.getenv("BENCH_FIRST_CANDIDATE"))
local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS"))
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
local n = 0
function setup(thread)
  thread:set("tid", n)
  n = n + 1
end
local counter = 0
function request()
  local i = tid + nthreads * counter
  counter = counter + 1
  local c = cand0 + 4 * i
  local body = string.format('{"order":[[%d],[%d],[%d],[%d]]}', c + 2, c, c + 3, c + 1)
  return wrk.format("POST", "/v1/comparisons/" .. (first + i) .. "/rankings",
                    {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body)
end
"""

# Pages of BENCH_LIMIT steps of "loss" at random offsets in [0, BENCH_MAX_AFTER].
READ_LUA = r"""
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
local job = os.getenv("BENCH_JOB")
local limit = os.getenv("BENCH_LIMIT")
local max_after = tonumber(os.getenv("BENCH_MAX_AFTER"))
local seed = tonumber(os.getenv("BENCH_SEED"))
local n = 0
function setup(thread)
  thread:set("tid", n)
  n = n + 1
end
function init(args)
  math.randomseed(seed + tid)
end
function request()
  local step = math.random(0, max_after)
  return wrk.format("GET", "/v1/jobs/" .. job .. "/metrics?names=loss&after_step=" .. step ..
                    "&limit=" .. limit, {["Authorization"] = auth})
end
"""
PAGE_100 = {"BENCH_LIMIT": "100", "BENCH_MAX_AFTER": "9900", "BENCH_SEED": "1234"}
PAGE_1 = {"BENCH_LIMIT": "1", "BENCH_MAX_AFTER": "9998", "BENCH_SEED": "4321"}

STATIC_LUA = ""

# The decomposition of a read: routing + reply only (GET /healthz: no token,
# no database), and a metric read of one step (READ_LUA with PAGE_1: auth,
# the job, one row).
HEALTHZ_LUA = r"""
function request()
  return wrk.format("GET", "/healthz")
end
"""


DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d " ..
    "p50=%d p90=%d p99=%d max=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def start(argv, env=None):
    """Starts a server that prints its URL on the first line of stdout."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                         text=True)
    line = p.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        sys.exit("cannot start %s: %r" % (argv[0], line))
    return p, int(m.group(1))


def api(port, method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def start_training_job(port, admin):
    """A ppo-control job long enough to outlast a benchmark (cancel it at
    the end), once it runs: its id."""
    job = api(port, "POST", "/v1/jobs", admin,
              {"type": "ppo-control", "hyperparameters": {"total_steps": 50000000}})["id"]
    deadline = time.time() + 60
    while api(port, "GET", "/v1/jobs/%d" % job, admin)["status"] != "running":
        if time.time() > deadline:
            sys.exit("the training job did not start")
        time.sleep(0.2)
    return job


def stop_daemon(server, port, admin, job):
    """Cancels job (if any; best effort) and stops rlhfd (SIGTERM, waited for)."""
    if job is not None:
        try:
            api(port, "POST", "/v1/jobs/%d/cancel" % job, admin)
        except Exception:
            pass
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


def wrk(port, script, connections, duration, env):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + DONE_LUA)
        path = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", "-c%d" % connections, "-d%ds" % duration, "--timeout", "10s",
             "-s", path, "http://127.0.0.1:%d" % port],
            env=dict(os.environ, BENCH_WRK_THREADS="2", **env), capture_output=True,
            text=True, check=True).stdout
    finally:
        os.unlink(path)
    m = re.search(r"^RESULT (.*)$", out, re.M)
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    errors = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "requests": r["requests"],
            "errors": errors, "p50_ms": r["p50"] / 1000, "p90_ms": r["p90"] / 1000,
            "p99_ms": r["p99"] / 1000, "max_ms": r["max"] / 1000}


def training_rate(db, job, run):
    """The training job's environment steps per second (its last metric
    step, read from the database) while run() runs."""
    def last_step():
        c = sqlite3.connect(db, timeout=30)
        step = c.execute("SELECT coalesce(max(step), 0) FROM metrics WHERE job_id = ?",
                         (job,)).fetchone()[0]
        c.close()
        return step
    before, t0 = last_step(), time.time()
    run()
    return (last_step() - before) / (time.time() - t0)


def fsync_probe(directory, n=100):
    """The disk's fdatasync latency right now (p50, p99 ms): 4 KB appended
    and synced n times in the benchmark's directory. Durable writes cannot
    beat it; on a shared VM it moves a lot between runs."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, i * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return times[n // 2], times[min(n - 1, (n * 99) // 100)]


def seed_comparisons(db, project, n):
    """n comparisons of 4 candidates; returns (first comparison id, first
    candidate id), with candidate ids consecutive per comparison."""
    c = sqlite3.connect(db, timeout=30)
    c.execute("BEGIN IMMEDIATE")
    first = (c.execute("SELECT coalesce(max(id), 0) FROM comparisons").fetchone()[0]) + 1
    cand = (c.execute("SELECT coalesce(max(id), 0) FROM candidates").fetchone()[0]) + 1
    now = int(time.time())
    c.executemany("INSERT INTO comparisons (id, project_id, prompt, created_at) VALUES (?,?,?,?)",
                  ((first + i, project, "prompt %d" % i, now) for i in range(n)))
    c.executemany("INSERT INTO candidates (id, comparison_id, position, text, source) "
                  "VALUES (?,?,?,?, 'provided')",
                  ((cand + 4 * i + j, first + i, j, "candidate %d of %d" % (j, i))
                   for i in range(n) for j in range(4)))
    c.execute("COMMIT")
    c.close()
    return first, cand


def seed_series(db, steps=10000, names=("loss", "reward", "kl", "entropy"), status="succeeded"):
    """A job (finished by default) with a steps-long series of each name;
    its id. A 'running' one has no worker and no lease: only LiveWriter
    writes to it."""
    c = sqlite3.connect(db, timeout=30)
    c.execute("BEGIN IMMEDIATE")
    cur = c.execute("INSERT INTO jobs (type, status, config, max_attempts, created_at) "
                    "VALUES ('ppo-control', ?, '{}', 1, ?)", (status, int(time.time())))
    job = cur.lastrowid
    rng = random.Random(0)
    c.executemany("INSERT INTO metrics (job_id, name, step, value) VALUES (?,?,?,?)",
                  ((job, n, s, rng.random()) for s in range(1, steps + 1) for n in names))
    c.execute("COMMIT")
    c.close()
    return job


class LiveWriter:
    """Appends the next step of job's series (every name, one transaction,
    like a worker's update) every interval seconds until stop()."""

    def __init__(self, db, job, first_step, names=("loss", "reward", "kl", "entropy"),
                 interval=0.01):
        self.db, self.job, self.step, self.names = db, job, first_step, names
        self.interval, self.steps = interval, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        c = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        rng = random.Random(1)
        while not self.stopping.wait(self.interval):
            c.execute("BEGIN IMMEDIATE")
            c.executemany("INSERT OR REPLACE INTO metrics (job_id, name, step, value) "
                          "VALUES (?,?,?,?)",
                          ((self.job, n, self.step, rng.random()) for n in self.names))
            c.execute("COMMIT")
            self.step += 1
            self.steps += 1
        c.close()

    def stop(self):
        self.stopping.set()
        self.thread.join()
        return self.steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--http-threads", type=int, default=4)
    ap.add_argument("--worker-nice", type=int, default=None)
    ap.add_argument("--rlhfd", default=os.path.join(BUILD, "rlhfd"))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--writes-only", action="store_true",
                    help="only the ranking-write runs (16 and 64 connections)")
    ap.add_argument("--connections", type=int, nargs="+", default=[16, 64],
                    help="connection counts of the ranking-write runs")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: make bench-server-deps")
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    load_at_start = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="rlhfd-bench-")
    db = os.path.join(tmp, "bench.db")
    rlhfd = args.rlhfd
    admin = subprocess.run([rlhfd, "--db", db, "--create-token", "root", "--role", "admin"],
                           capture_output=True, text=True, check=True).stdout.strip()
    threads = str(args.http_threads)
    nice = [] if args.worker_nice is None else ["--worker-nice", str(args.worker_nice)]
    server, port = start([rlhfd, "--db", db, "--listen", "127.0.0.1:0", "--workers", "1",
                          "--http-threads", threads, "--write-rate", "0", "--read-rate", "0",
                          # all of wrk's connections and the script's own
                          # come from 127.0.0.1
                          "--max-connections-per-ip", "1000"] + nice)
    static, static_port = start([os.path.join(BUILD, "mhd-static"), threads])
    job = None
    try:
        created = api(port, "POST", "/v1/tokens", admin,
                      {"name": "annotator", "role": "annotator"})
        annotator = created["token"]
        project = api(port, "POST", "/v1/projects", admin,
                      {"name": "bench", "k": 4, "overlap": 1})["id"]
        api(port, "POST", "/v1/projects/%d/members" % project, admin,
            {"token_id": created["id"]})
        series_job = seed_series(db)
        running_series_job = seed_series(db, status="running")
        job = start_training_job(port, admin)
        results = []
        quiet = training_rate(db, job, lambda: time.sleep(5))
        for conns in args.connections:
            first, cand = seed_comparisons(db, project, 20000 * args.duration)
            probe = fsync_probe(tmp)
            r = {}
            train = training_rate(db, job, lambda: r.update(wrk(
                port, WRITE_LUA, conns, args.duration,
                {"BENCH_FIRST_COMPARISON": str(first), "BENCH_FIRST_CANDIDATE": str(cand),
                 "BENCH_TOKEN": annotator})))
            c = sqlite3.connect(db, timeout=30)
            stored = c.execute("SELECT count(*) FROM rankings WHERE comparison_id >= ?",
                               (first,)).fetchone()[0]
            c.close()
            r.update(what="ranking writes", conns=conns, stored=stored, fsync=probe, train=train)
            results.append(r)
        if not args.writes_only:
            reads = []
            for rep in range(2):
                s = wrk(static_port, STATIC_LUA, 64, args.duration, {})
                s.update(what="static ceiling (mhd_static)", conns=64)
                m = wrk(port, READ_LUA, 64, args.duration,
                        dict(PAGE_100, BENCH_TOKEN=admin, BENCH_JOB=str(series_job)))
                m.update(what="metric reads (100 steps of 10,000)", conns=64)
                reads += [s, m]
            results += reads
            h = wrk(port, HEALTHZ_LUA, 64, args.duration, {})
            h.update(what="rlhfd GET /healthz (no token, no database)", conns=64)
            one = wrk(port, READ_LUA, 64, args.duration,
                      dict(PAGE_1, BENCH_TOKEN=admin, BENCH_JOB=str(series_job)))
            one.update(what="metric reads, 1 step", conns=64)
            writer = LiveWriter(db, running_series_job, 10001)
            try:
                live = wrk(port, READ_LUA, 64, args.duration,
                           dict(PAGE_100, BENCH_TOKEN=admin, BENCH_JOB=str(running_series_job)))
            finally:
                appended = writer.stop()
            live.update(what="metric reads (100 steps of 10,000), job running, a step appended "
                        "every 10 ms", conns=64, appended=appended)
            results += [h, one, live]
        prom = urllib.request.urlopen(urllib.request.Request(
            "http://127.0.0.1:%d/metrics" % port,
            headers={"Authorization": "Bearer " + admin})).read().decode()
        commits = int(re.search(r"^rlhfd_group_commits_total (\d+)", prom, re.M).group(1))
        writes = int(re.search(r"^rlhfd_group_commit_writes_total (\d+)", prom, re.M).group(1))
        checkpoints = int(re.search(r"^rlhfd_wal_checkpoints_total (\d+)", prom, re.M).group(1))
        steps = api(port, "GET", "/v1/jobs/%d/metrics?limit=1" % job, admin)
    finally:
        stop_daemon(server, port, admin, job)
        static.terminate()
        static.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    print("| what | connections | requests/s | p50 ms | p99 ms | errors | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        note = ""
        if "stored" in r:
            note = ("%d acknowledged, %d in the database; disk fdatasync p50 %.1f / p99 %.1f ms "
                    "just before; training %.0f steps/s (%.0f%% of its %.0f with no requests)" % (
                        r["requests"] - r["errors"], r["stored"], r["fsync"][0], r["fsync"][1],
                        r["train"], 100 * r["train"] / max(quiet, 1e-9), quiet))
        if "appended" in r:
            note = "%d steps appended during the run" % r["appended"]
        print("| %s | %d | %.0f | %.2f | %.2f | %d | %s |" % (
            r["what"], r["conns"], r["rps"], r["p50_ms"], r["p99_ms"], r["errors"], note))
    print()
    if not args.writes_only:
        static_rps = [r["rps"] for r in results if r["what"].startswith("static")]
        read_rps = [r["rps"] for r in results
                    if r["what"] == "metric reads (100 steps of 10,000)"]
        static_mean = sum(static_rps) / len(static_rps)
        live_rps = [r["rps"] for r in results if "job running" in r["what"]]
        print("metric reads / static ceiling: %.2f (means of 2 interleaved runs each)" % (
            sum(read_rps) / len(read_rps) / static_mean))
        print("metric reads of the running job / static ceiling (its mean): %.2f" % (
            live_rps[0] / static_mean))
    print("group commit: %d rankings in %d transactions (%.1f per commit); %d WAL checkpoints" % (
        writes, commits, writes / max(commits, 1), checkpoints))
    print("the training job (ppo-control, id %d) ran throughout (%s); %s" % (
        job, " ".join(nice) if nice else "rlhfd's default --worker-nice 10",
        "it had written metrics" if steps.get("data") else "it had written no metrics"))
    print("http threads %s, wrk -t2, %d s per run, loopback, %d cores" % (
        threads, args.duration, os.cpu_count()))
    if args.markdown:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                    if l.startswith("model name")), "?")
        version, core = openblas_core({})
        print("machine: %s, %d cores, OpenBLAS %s (kernels it detects by itself: %s; rlhf-train "
              "re-executes with faster ones where engine/blas_setup.h knows them); load average "
              "(1/5/15 min) %s at the start, %s at the end; git %s" % (
                  cpu, os.cpu_count(), version, core,
                  "/".join("%.1f" % x for x in load_at_start),
                  "/".join("%.1f" % x for x in os.getloadavg()), rev))
        print("command: /usr/bin/python3 bench/bench_server.py %s" % " ".join(sys.argv[1:]))
        if args.rlhfd != os.path.join(BUILD, "rlhfd"):
            print("rlhfd: %s" % args.rlhfd)


if __name__ == "__main__":
    main()
