#!/usr/bin/python3
"""100 simulated annotators against rlhfd beside a training job, on loopback.

Each annotator has its own annotator token, granted the project (so every
request passes the per-project access check, server/project_access.h), and
loops for --duration seconds on one keep-alive connection:
GET /v1/projects/{id}/comparisons/next, then POST the ranking of what it
was handed (a full order of the k = 4 candidates, a different one per
annotator and comparison), and every 10th turn GET /v1/projects (the list
filtered by its grants). Closed loop, no think time: each annotator is
far faster than a person, so this is a stress test of the annotation path,
not a model of a team. A ppo-control job (started through the API,
cancelled at the end) trains throughout; its steps are counted.

Reports per request kind: count, errors (any status but 200, or a failed
connection), p50/p90/p99/max latency (client side, from send to the whole
reply), and the rankings the database holds against those acknowledged.

    bench/bench_annotators.py [--annotators N] [--duration S] [--overlap N]
                              [--http-threads N] [--rlhfd PATH] [--markdown]
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from bench_server import api, seed_comparisons, start, start_training_job, stop_daemon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")


class Conn:
    """One keep-alive HTTP/1.1 connection (rlhfd answers with Content-Length)."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode() if body is not None else b""
        head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Length: %d\r\n%s\r\n" % (
                    method, path, self.token, len(data),
                    "Content-Type: application/json\r\n" if body is not None else ""))
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, payload

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def percentile(sorted_ms, q):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q / 100))]


async def annotator(i, port, token, project, deadline, stats):
    conn = Conn(port, token)
    turn = 0

    async def timed(kind, method, path, body=None):
        t0 = time.perf_counter()
        try:
            status, payload = await conn.request(method, path, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            conn.close()
            stats[kind]["errors"].append(repr(e))
            return None, None
        stats[kind]["ms"].append((time.perf_counter() - t0) * 1e3)
        if status != 200:
            stats[kind]["errors"].append("%d %s" % (status, payload[:120]))
        return status, payload

    while time.monotonic() < deadline:
        turn += 1
        if turn % 10 == 0:
            await timed("list projects", "GET", "/v1/projects")
        status, payload = await timed("next", "GET",
                                      "/v1/projects/%d/comparisons/next" % project)
        if status != 200:
            continue
        c = json.loads(payload)
        ids = [cand["id"] for cand in c["candidates"]]
        shift = (i + c["id"]) % len(ids)
        order = [[x] for x in ids[shift:] + ids[:shift]]
        await timed("ranking", "POST", "/v1/comparisons/%d/rankings" % c["id"],
                    {"order": order})
    conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--annotators", type=int, default=100)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--overlap", type=int, default=3)
    ap.add_argument("--http-threads", type=int, default=4)
    ap.add_argument("--rlhfd", default=os.path.join(BUILD, "rlhfd"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    load_at_start = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="rlhfd-annotators-")
    db = os.path.join(tmp, "bench.db")
    admin = subprocess.run([args.rlhfd, "--db", db, "--create-token", "root", "--role", "admin"],
                           capture_output=True, text=True, check=True).stdout.strip()
    server, port = start([args.rlhfd, "--db", db, "--listen", "127.0.0.1:0", "--workers", "1",
                          "--http-threads", str(args.http_threads), "--write-rate", "0",
                          "--max-connections-per-ip", str(args.annotators + 16)])
    job = None
    try:
        project = api(port, "POST", "/v1/projects", admin,
                      {"name": "load", "k": 4, "overlap": args.overlap})["id"]
        tokens = []
        for i in range(args.annotators):
            t = api(port, "POST", "/v1/tokens", admin,
                    {"name": "annotator-%d" % i, "role": "annotator"})
            api(port, "POST", "/v1/projects/%d/members" % project, admin, {"token_id": t["id"]})
            tokens.append(t["token"])
        seed_comparisons(db, project, 2000 * args.duration)
        job = start_training_job(port, admin)
        steps_before = sqlite3.connect(db, timeout=30).execute(
            "SELECT count(DISTINCT step) FROM metrics WHERE job_id = ?", (job,)).fetchone()[0]
        stats = {k: {"ms": [], "errors": []} for k in ("next", "ranking", "list projects")}

        async def run():
            end = time.monotonic() + args.duration
            await asyncio.gather(*(annotator(i, port, tok, project, end, stats)
                                   for i, tok in enumerate(tokens)))

        t0 = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - t0
        c = sqlite3.connect(db, timeout=30)
        stored = c.execute("SELECT count(*) FROM rankings").fetchone()[0]
        steps_after = c.execute("SELECT count(DISTINCT step) FROM metrics WHERE job_id = ?",
                                (job,)).fetchone()[0]
        c.close()
        status = api(port, "GET", "/v1/jobs/%d" % job, admin)["status"]
    finally:
        stop_daemon(server, port, admin, job)
        shutil.rmtree(tmp, ignore_errors=True)

    print("| request | count | per s | errors | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    all_ms, all_errors = [], 0
    for kind, s in stats.items():
        ms = sorted(s["ms"])
        all_ms += ms
        all_errors += len(s["errors"])
        print("| %s | %d | %.0f | %d | %.1f | %.1f | %.1f | %.1f |" % (
            kind, len(ms), len(ms) / elapsed, len(s["errors"]), percentile(ms, 50),
            percentile(ms, 90), percentile(ms, 99), ms[-1] if ms else float("nan")))
    all_ms.sort()
    print("| all | %d | %.0f | %d | %.1f | %.1f | %.1f | %.1f |" % (
        len(all_ms), len(all_ms) / elapsed, all_errors, percentile(all_ms, 50),
        percentile(all_ms, 90), percentile(all_ms, 99), all_ms[-1] if all_ms else float("nan")))
    print()
    acknowledged = len(stats["ranking"]["ms"]) - len(stats["ranking"]["errors"])
    print("rankings: %d acknowledged, %d in the database" % (acknowledged, stored))
    for kind, s in stats.items():
        for e in sorted(set(s["errors"]))[:5]:
            print("error (%s): %s" % (kind, e))
    print("training job (ppo-control, id %d): %s, %d metric steps written during the %.0f s "
          "(%d before)" % (job, status, steps_after - steps_before, elapsed, steps_before))
    print("%d annotators, one connection each, %.0f s, overlap %d, k 4, http threads %d, "
          "loopback, %d cores" % (args.annotators, elapsed, args.overlap, args.http_threads,
                                  os.cpu_count()))
    if args.markdown:
        print("load average (1/5/15 min) %s at the start, %s at the end; git %s" % (
            "/".join("%.1f" % x for x in load_at_start),
            "/".join("%.1f" % x for x in os.getloadavg()), rev))
        print("command: /usr/bin/python3 bench/bench_annotators.py %s" % " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
