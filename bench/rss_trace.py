#!/usr/bin/python3
"""Runs a command and prints its resident set size over time: one line each
time VmRSS has moved by more than --step MiB since the last line, with the
high-water mark (VmHWM) so far, read from /proc/PID/status every 50 ms. Shows
where a peak comes from (loading, an update, a checkpoint) rather than only
its size. The command's own output goes to --out.

    /usr/bin/python3 bench/rss_trace.py --out /tmp/ppo.out -- \\
        build/rlhf-train ppo --init DIR --reward-model DIR ...
"""
import argparse
import subprocess
import sys
import time


def status_mib(pid):
    """(VmRSS, VmHWM) in MiB, or None once the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in fields or "VmHWM" not in fields:
        return None
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--step", type=int, default=150, help="MiB of change between lines")
    ap.add_argument("--out", default="/dev/null", help="where the command's output goes")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        sys.exit("rss_trace: no command given")
    with open(a.out, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        t0, last, hwm = time.time(), 0, 0
        while p.poll() is None:
            s = status_mib(p.pid)
            if s is None:
                break
            rss, hwm = s
            if abs(rss - last) > a.step:
                print(f"{time.time() - t0:7.1f} s  rss {rss} MiB  hwm {hwm} MiB", flush=True)
                last = rss
            time.sleep(0.05)
        rc = p.wait()
    print(f"exit {rc}; peak (VmHWM) {hwm} MiB")
    sys.exit(rc)


if __name__ == "__main__":
    main()
