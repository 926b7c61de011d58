#!/usr/bin/env python3
"""Bytes on disk per MB uploaded to a dataset (issue 13: a 62 MB upload took
270 MB in the dataset table and 287 MB of WAL).

Generates an upload of about --mb MB per variant (sft rows of fortune-like
text, TRL preference pairs, OpenAI chat preference rows, K-wise rankings;
"-1k" and "-mixed" variants with longer texts; deterministic from --seed), starts rlhfd on loopback with a fresh database,
creates a dataset per format and uploads it with POST /v1/datasets/{id}/upload,
then reads the page bytes of every table and index from SQLite's dbstat
(after the daemon has stopped, so the WAL is checkpointed into the file) and
the file sizes (database, and the WAL while the daemon still runs).

    bench/bench_dataset_storage.py [--mb 20] [--rlhfd build/rlhfd] [--markdown]

Standard library only. Prints one table row per format: MB uploaded, the
dataset tables' MB (dataset_rows and its indexes), their ratio to the
upload, the database file after the upload and the largest WAL seen.
"""

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")

WORDS = ("the a of to and in is you that it he was for on are as with his they I at be this "
         "have from or one had by word but not what all were we when your can said there use "
         "an each which she do how their if will up other about out many then them these so "
         "some her would make like him into time has look two more write go see number no way "
         "could people my than first water been call who oil its now find long down day did "
         "get come made may part fortune cookie wisdom patience tomorrow friend journey love "
         "money happiness surprise adventure laughter").split()


def sentence(rng, lo, hi):
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice((".", "!", "?", "..."))


# Sentences per generated text, by variant: fortunes (1-4 sentences, ~150
# bytes), ~1.1 KB texts (the worst case of a WITHOUT ROWID table on 4 KB
# pages: each row spills ~600 bytes into an overflow page of its own), and a
# 0.6-6 KB mix.
LENGTHS = {"": (1, 4), "1k": (16, 22), "mixed": (10, 100)}


def row(rng, variant):
    fmt, _, size = variant.partition("-")
    lo, hi = LENGTHS[size]

    def text(r):
        return " ".join(sentence(r, 4, 18) for _ in range(r.randint(lo, hi)))

    if fmt == "sft":
        return {"prompt": "Tell me a fortune about " + rng.choice(WORDS) + ".",
                "response": text(rng)}
    prompt = "Which fortune is better? " + sentence(rng, 3, 10)
    if fmt == "preference":
        return {"prompt": prompt, "chosen": text(rng), "rejected": text(rng)}
    if fmt == "openai":
        return {"input": {"messages": [{"role": "system", "content": "You tell fortunes."},
                                       {"role": "user", "content": prompt}]},
                "preferred_output": [{"role": "assistant", "content": text(rng)}],
                "non_preferred_output": [{"role": "assistant", "content": text(rng)}]}
    k = rng.randint(2, 4)
    return {"prompt": prompt, "responses": [text(rng) for _ in range(k)],
            "ranks": list(range(k))}


def generate(path, fmt, mb, seed):
    rng = random.Random(seed)
    size = 0
    rows = 0
    with open(path, "w") as f:
        while size < mb * 1e6:
            line = json.dumps(row(rng, fmt)) + "\n"
            f.write(line)
            size += len(line.encode())
            rows += 1
    return size, rows


def start(argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"http://127\.0\.0\.1:(\d+)", p.stdout.readline())
    if not m:
        p.kill()
        sys.exit("cannot start %s" % argv[0])
    return p, int(m.group(1))


def api(port, method, path, token, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                 method=method)
    req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def table_bytes(db, names):
    """Page bytes of the tables and indexes in names (dbstat)."""
    con = sqlite3.connect(db)
    try:
        got = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    finally:
        con.close()
    return sum(v for k, v in got.items() if k in names)


def dataset_objects(db):
    con = sqlite3.connect(db)
    try:
        return {n for (n,) in con.execute(
            "SELECT name FROM sqlite_schema WHERE tbl_name = 'dataset_rows' "
            "OR name LIKE 'sqlite_autoindex_dataset_rows%'")}
    finally:
        con.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--formats", default="sft,sft-1k,sft-mixed,preference,preference-1k,openai,kwise")
    ap.add_argument("--rlhfd", default=os.path.join(BUILD, "rlhfd"))
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rlhfd-dsbench-")
    rows_out = []
    try:
        for fmt in args.formats.split(","):
            db = os.path.join(tmp, fmt + ".db")
            upload = os.path.join(tmp, fmt + ".jsonl")
            size, n = generate(upload, fmt, args.mb, args.seed)
            admin = subprocess.run([args.rlhfd, "--db", db, "--create-token", "root", "--role",
                                    "admin"], capture_output=True, text=True,
                                   check=True).stdout.strip()
            server, port = start([args.rlhfd, "--db", db, "--listen", "127.0.0.1:0",
                                  "--workers", "1"])
            try:
                kind = "sft" if fmt.startswith("sft") else "preference"
                ds = api(port, "POST", "/v1/datasets", admin, {"name": fmt, "format": kind})
                with open(upload, "rb") as f:
                    got = api(port, "POST", "/v1/datasets/%d/upload" % ds["id"], admin,
                              raw=f.read())
                assert got["n_rows"] == n, got
                wal = db + "-wal"
                wal_bytes = os.path.getsize(wal) if os.path.exists(wal) else 0
            finally:
                server.terminate()
                server.wait()
            stored = table_bytes(db, dataset_objects(db))
            rows_out.append((fmt, n, size, stored, os.path.getsize(db), wal_bytes))
    finally:
        shutil.rmtree(tmp)
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    if args.markdown:
        cpu = re.search(r"^model name\s*:\s*(.*)$", open("/proc/cpuinfo").read(), re.M)
        print("`bench/bench_dataset_storage.py --mb %g` at %s (rlhfd %s); %s, %d cores, "
              "SQLite %s, page size 4096\n"
              % (args.mb, rev, os.path.relpath(args.rlhfd, ROOT), cpu.group(1) if cpu else "?",
                 os.cpu_count(), sqlite3.sqlite_version))
    print("| format | rows | upload MB | dataset_rows MB | ratio | db file MB | WAL MB after "
          "upload |")
    print("|---|---|---|---|---|---|---|")
    for fmt, n, size, stored, dbfile, wal in rows_out:
        print("| %s | %d | %.1f | %.1f | %.2f | %.1f | %.1f |"
              % (fmt, n, size / 1e6, stored / 1e6, stored / size, dbfile / 1e6, wal / 1e6))


if __name__ == "__main__":
    main()
