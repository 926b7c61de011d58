"""Helpers shared by the bench/ runners: which OpenBLAS kernels run, the
choice of OPENBLAS_CORETYPE for both sides, the machine line every result
carries, and number formatting. Standard library only (the runners import
torch only in the child processes they start).

Why OPENBLAS_CORETYPE: Debian's OpenBLAS 0.3.21 does not know this
machine's CPU and falls back to its SSE3 "Prescott" kernels; the runners set
SkylakeX (or Haswell) for both sides when the CPU has the instructions,
as engine/blas_setup.c does for our programs, and say so in the machine line.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_CORE_PROBE = (
    "import ctypes\n"
    "lib = ctypes.CDLL('libopenblas.so.0')\n"
    "lib.openblas_get_corename.restype = ctypes.c_char_p\n"
    "lib.openblas_get_config.restype = ctypes.c_char_p\n"
    "print(lib.openblas_get_config().decode())\n"
    "print(lib.openblas_get_corename().decode())\n")


def openblas_core(extra_env):
    """(version, core name) that libopenblas.so.0 picks in a fresh process
    with extra_env (the kernel choice is made when the library loads)."""
    try:
        out = subprocess.run([sys.executable, "-c", _CORE_PROBE], capture_output=True,
                             text=True, timeout=30, env=dict(os.environ, **extra_env))
        config, core = out.stdout.strip().splitlines()[-2:]
        version = re.search(r"OpenBLAS\s+(\S+)", config)
        return (version.group(1) if version else "?"), core
    except (OSError, subprocess.SubprocessError, ValueError):
        return "?", "?"


def choose_coretype(args):
    """Sets args.openblas_coretype_env ({} or {"OPENBLAS_CORETYPE": name})
    from args.openblas_coretype: a kernel name, 'none' (OpenBLAS's own
    choice) or 'auto' (SkylakeX/Haswell when OpenBLAS would use Prescott on
    a CPU with AVX-512/AVX2, unless the caller set OPENBLAS_CORETYPE)."""
    choice = args.openblas_coretype
    args.openblas_coretype_env = {}
    if choice == "none":
        return
    if choice != "auto":
        args.openblas_coretype_env = {"OPENBLAS_CORETYPE": choice}
        return
    if "OPENBLAS_CORETYPE" in os.environ:  # the caller chose already
        return
    _, detected = openblas_core({})
    if detected != "Prescott":
        return
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(),
                              re.M).group(1).split())
    except (OSError, AttributeError):
        return
    for needed, kernels in (({"avx512f", "avx512bw", "avx512dq", "avx512vl"}, "SkylakeX"),
                            ({"avx2", "fma"}, "Haswell")):
        if needed <= flags:
            args.openblas_coretype_env = {"OPENBLAS_CORETYPE": kernels}
            return


def machine_line(python, coretype_env, threads=None):
    """CPU, core count, OpenBLAS version and kernels (forced and detected),
    torch version (of the interpreter `python`), the threads description
    when given, and the git commit."""
    fields = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   timeout=10).stdout.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    version, detected = openblas_core({})
    blas = f"OpenBLAS {version} core {detected}"
    if coretype_env:
        _, forced = openblas_core(coretype_env)
        blas = (f"OpenBLAS {version} core {forced} (OPENBLAS_CORETYPE="
                f"{coretype_env['OPENBLAS_CORETYPE']}, both sides; "
                f"detected by itself: {detected})")
    try:
        torch_version = subprocess.run(
            [python, "-c", "import torch; print(torch.__version__)"],
            capture_output=True, text=True, timeout=120).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        torch_version = "?"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    parts = [f"{fields.get('Model name', 'unknown CPU')} (family {fields.get('CPU family', '?')} "
             f"model {fields.get('Model', '?')}), {fields.get('CPU(s)', os.cpu_count())} CPUs, "
             f"{blas}", f"torch {torch_version}"]
    if threads:
        parts.append(threads)
    parts.append(f"git {commit or '?'}")
    return "; ".join(parts)


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def med_range(values, spec, with_n=False):
    """'median (min–max)' of the non-None values, '—' if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    m = format(statistics.median(values), spec)
    if len(values) == 1 and not with_n:
        return m
    n = f", n={len(values)}" if with_n else ""
    return f"{m} ({format(min(values), spec)}–{format(max(values), spec)}{n})"


def run_logged(cmd, env, timeout, log_base):
    """Runs cmd with stdout/stderr to log_base.out/.err in its own process
    group (killed whole on timeout); returns (its JSON-line records, an
    error or None if it exited 0, its wall time in s)."""
    out_path, err_path = Path(f"{log_base}.out"), Path(f"{log_base}.err")
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            error = None if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the child started above
            proc.wait()
            error = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t0
    records = []
    for line in out_path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    if error:
        tail = err_path.read_text().strip()[-600:]
        error += f"; stderr: {tail}" if tail else ""
    return records, error, seconds


def mean_sd(values, spec=".2f"):
    """'mean ± sample sd' of the values that are not None ('—' if none)."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], spec)
    return f"{statistics.mean(values):{spec}} ± {statistics.stdev(values):{spec}}"
