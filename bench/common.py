"""What the benchmarks share: the one table-cell formatter and Markdown table, the metric names (taken
from the library), the machine's description, result files written atomically, and the contenders'
child processes (each timed in a fresh process: its peak RSS reset, its result one JSON line).

Standard library and numpy at import; ``hubness_pr`` (lazy, so no torch) for the metric names.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

import hubness_pr

# every metric a default run computes (what "all metrics" means in the benchmarks), in report order
ALL_METRICS = hubness_pr.DEFAULT_METRICS
# the metrics whose JSON blocks are a few set-level values: the benchmarks record them with each
# timing and compare them exactly between routes (realism, rarity and hubness are per-sample scores
# and their statistics, compared apart where needed)
VALUE_METRICS = tuple(name for name in hubness_pr.METRICS if name in ("epr", "pr", "dc"))


def values(evaluation) -> dict:
    """The JSON blocks of :data:`VALUE_METRICS` that ``evaluation`` computed."""
    document = hubness_pr.to_dict(evaluation)
    return {name: document[name] for name in VALUE_METRICS if name in document}


def fmt(x, signed: bool = False, digits: int = 3) -> str:
    """A number as a table cell: ``digits`` decimals (a sign with ``signed``), ``n/a`` for None,
    NaN and infinities, and no ``-0.000``."""
    if x is None or not math.isfinite(x):
        return "n/a"
    x = 0.0 if abs(x) < 0.5 * 10.0 ** -digits else x
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def ratio(a: dict, b: dict, digits: int = 2) -> str:
    """``a["seconds"] / b["seconds"]`` as ``1.23x``; empty where either has no time (skipped, failed)."""
    return f"{fmt(a['seconds'] / b['seconds'], digits=digits)}x" if "seconds" in a and "seconds" in b else ""


def table(header: list, rows: list) -> str:
    """A Markdown table (a ``|`` inside a cell escaped), ending with a newline."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    """The CPU's model name, where /proc/cpuinfo tells."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_model() -> str:
    """CPU model name and vector width (GEMM speed depends on both), where /proc/cpuinfo tells."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{fields.get('model name', platform.machine())} ({vector})"


def write_text(path, text: str) -> None:
    """``text`` into ``path`` (its folder made), through a temporary file put in place at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with hubness_pr.atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


ROOT = Path(__file__).resolve().parent.parent


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0): a child inherits its parent's peak otherwise."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """This process's peak resident memory since the last :func:`reset_peak_rss`, MiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module: str, args: list) -> dict:
    """``python -m MODULE ARGS`` from the repository root (a benchmark's ``--worker`` mode): its last
    stdout line as JSON, or ``{"error": its last stderr line}``."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(runs: list) -> dict:
    """One contender's repeated child runs as one result: the first run's fields with the median
    seconds and setup seconds, every run's seconds and the largest peak RSS (a failed run: its error)."""
    ok = [r for r in runs if "error" not in r]
    if len(ok) < len(runs):
        return next(r for r in runs if "error" in r)
    return dict(ok[0], seconds=float(np.median([r["seconds"] for r in ok])), seconds_all=[r["seconds"] for r in ok],
                setup_seconds=float(np.median([r["setup_seconds"] for r in ok])),
                peak_rss_mib=max(r["peak_rss_mib"] for r in ok))


def skipped(args) -> set:
    """The contenders named by ``--skip`` (a comma list)."""
    return {s for s in args.skip.split(",") if s}


def run_contenders(args, contenders, run_one) -> dict:
    """Each of ``contenders`` not named by ``--skip``, ``--repeat`` times, in order, each run
    ``run_one(name)`` (a child process's result): the median run of each (:func:`median_run`)."""
    skip, results = skipped(args), {}
    for name in contenders:
        if name in skip:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = median_run([run_one(name) for _ in range(args.repeat)])
    return results


def contender_parser(description: str, contenders, n: int, dim: int, skip_example: str = "") -> argparse.ArgumentParser:
    """The options every contender benchmark takes: set sizes and dimension, the toolkit's tile budget,
    repeats, contenders to skip, the JSON file, and the hidden ones of a contender's child process
    (``--worker NAME --real FILE --fake FILE``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--n", type=int, default=n, help="real samples")
    p.add_argument("--m", type=int, default=None, help="fake samples (default: n)")
    p.add_argument("--dim", type=int, default=dim)
    p.add_argument("--memory_budget", type=int, default=256, help="MiB, the toolkit's tile budget (its default)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each contender; the median time is reported")
    p.add_argument("--skip", default="", help="comma list of contenders to skip" + (f", e.g. {skip_example}"
                                                                                 if skip_example else ""))
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", choices=contenders, help=argparse.SUPPRESS)
    p.add_argument("--real", help=argparse.SUPPRESS)
    p.add_argument("--fake", help=argparse.SUPPRESS)
    return p


REALISTIC = "bench.gpu_check.realistic (real seed 1, fake seed 2 drop 2)"


def realistic_pair(n: int, m: int, dim: int, folder: Path) -> tuple[Path, Path]:
    """``real.npy`` and ``fake.npy`` in ``folder``: :data:`REALISTIC` features (the fakes miss 2 of the
    20 clusters)."""
    from bench.gpu_check import realistic
    real, fake = folder / "real.npy", folder / "fake.npy"
    np.save(real, realistic(n, dim, seed=1))
    np.save(fake, realistic(m, dim, seed=2, drop=2))
    return real, fake
