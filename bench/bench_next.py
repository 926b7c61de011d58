#!/usr/bin/python3
"""How `GET /v1/projects/{id}/comparisons/next` scales with project size.

An annotator asks `next` before every ranking, so its cost is paid as often
as the ranking write. For projects of 1,000, 10,000 and 100,000 comparisons
(k = 4, seeded straight into the database), two annotators alternate
`next` + a full ranking of what they got, 40 times each size, over HTTP on
loopback against one rlhfd; the table gives the median and max latency of
`next` and the ratio of each median to the 1,000-comparison one measured in
the same run (1.0 means it does not grow with the project).

    bench/bench_next.py [--rlhfd PATH] [--markdown]

--rlhfd runs another build (e.g. the commit before a change).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_server as b  # noqa: E402  (start, api, seed_comparisons)

SIZES = (1000, 10000, 100000)


def measure(port, admin, tokens, db, size, calls=40):
    project = b.api(port, "POST", "/v1/projects", admin,
                    {"name": "p%d" % size, "k": 4, "overlap": 1})["id"]
    for token_id, _ in tokens:
        b.api(port, "POST", "/v1/projects/%d/members" % project, admin, {"token_id": token_id})
    b.seed_comparisons(db, project, size)
    times = []
    for i in range(calls):
        token = tokens[i % len(tokens)][1]
        t0 = time.perf_counter()
        c = b.api(port, "GET", "/v1/projects/%d/comparisons/next" % project, token)
        times.append(time.perf_counter() - t0)
        order = [[cand["id"]] for cand in c["candidates"]]
        b.api(port, "POST", "/v1/comparisons/%d/rankings" % c["id"], token, {"order": order})
    times.sort()
    return times[len(times) // 2] * 1e3, times[-1] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rlhfd", default=os.path.join(b.BUILD, "rlhfd"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rlhfd-next-")
    db = os.path.join(tmp, "bench.db")
    admin = subprocess.run([args.rlhfd, "--db", db, "--create-token", "root", "--role", "admin"],
                           capture_output=True, text=True, check=True).stdout.strip()
    server, port = b.start([args.rlhfd, "--db", db, "--listen", "127.0.0.1:0",
                            "--write-rate", "0"])
    try:
        tokens = [(t["id"], t["token"]) for t in (
            b.api(port, "POST", "/v1/tokens", admin,
                  {"name": "annotator%d" % i, "role": "annotator"}) for i in range(2))]
        rows = [(size,) + measure(port, admin, tokens, db, size) for size in SIZES]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    print("| comparisons in the project | next median ms | next max ms | median / 1,000's |")
    print("|---:|---:|---:|---:|")
    for size, med, mx in rows:
        print("| %d | %.2f | %.2f | %.2f |" % (size, med, mx, med / rows[0][1]))
    if args.markdown:
        rev = subprocess.run(["git", "-C", b.ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        print()
        print("loopback, one request at a time, load average %.1f at the end; git %s" % (
            os.getloadavg()[0], rev))
        print("command: /usr/bin/python3 bench/bench_next.py %s" % " ".join(sys.argv[1:]))
        if args.rlhfd != os.path.join(b.BUILD, "rlhfd"):
            print("rlhfd: %s" % args.rlhfd)


if __name__ == "__main__":
    main()
