#!/usr/bin/env python3
"""Start-up of the commands, as a shell loop over checkpoints sees it: wall time and peak RSS of
fresh processes, each the median of --repeat runs (after one warm-up run of each, not counted), as a
ratio to a bare ``python -c "import torch"``.

Cases: ``import torch``; ``improved_precision_recall_hubness.py --help``; the metric command on two
tiny feature files (50 x 8 ``.npy``), also with ``HUBNESS_KERNELS=torch`` (no numba kernels: what
their load costs); ``getFeature.py --help``. The runs go round by round (one of
each case, then the next round), so that a change in the load of a shared machine hits every case
alike. ``--root DIR`` (repeatable) measures the scripts of other checkouts instead of this one, in
the same rounds and with this interpreter, e.g. ``git archive COMMIT | tar -x -C /tmp/COMMIT`` for
a before/after comparison (each labelled by its folder's name).

Usage (from the repository root):  python -m bench.bench_startup [--repeat 3] [--root DIR ...] [--out bench/results/startup.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import cpu_name

HERE = Path(__file__).resolve().parent.parent


NO_NUMBA = {"HUBNESS_KERNELS": "torch"}


def cases(root: Path, data: Path) -> dict:
    """case -> (arguments of the interpreter, extra environment)"""
    metric = [str(root / "improved_precision_recall_hubness.py")]
    files = [str(data / "real.npy"), str(data / "fake.npy")]
    return {
        "metric --help": (metric + ["--help"], {}),
        "metric on 2 feature files (50 x 8)": (metric + files, {}),
        "  the same, HUBNESS_KERNELS=torch": (metric + files, NO_NUMBA),
        "getFeature.py --help": ([str(root / "getFeature.py"), "--help"], {}),
    }


def measure(argv: list, cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one fresh process; its output is discarded, a failure stops the bench."""
    env = {**{k: v for k, v in os.environ.items() if k != "HUBNESS_KERNELS"}, **env}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_startup: {' '.join(argv)} exited with {proc.returncode}: {proc.stderr.read()[-400:]!r}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def machine() -> dict:
    import torch
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="counted runs of each case (the median is reported)")
    p.add_argument("--root", action="append", default=[], type=Path,
                   help="a checkout whose scripts to measure instead of this one (repeatable)")
    p.add_argument("--out", type=Path, default=HERE / "bench" / "results" / "startup.json")
    args = p.parse_args()
    roots = {r.name: r.resolve() for r in args.root} if args.root else {"this checkout": HERE}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        rng = np.random.default_rng(0)
        for name in ("real", "fake"):
            np.save(data / f"{name}.npy", rng.normal(size=(50, 8)).astype(np.float32))
        plan = {("bare", "python -c 'import torch'"): (["-c", "import torch"], HERE, {})}
        for label, root in roots.items():
            plan.update({(label, case): (argv, root, env) for case, (argv, env) in cases(root, data).items()})
        runs = {key: [] for key in plan}
        load_before = os.getloadavg()
        for round_ in range(args.repeat + 1):  # round 0 warms caches (files, compiled kernels) and is not counted
            for key, (argv, cwd, env) in plan.items():
                result = measure(argv, cwd, env)
                if round_:
                    runs[key].append(result)
        load_after = os.getloadavg()
    base_wall = statistics.median(w for w, _ in runs[("bare", "python -c 'import torch'")])
    base_rss = statistics.median(m for _, m in runs[("bare", "python -c 'import torch'")])
    table = []
    for (label, case), values in runs.items():
        wall, rss = statistics.median(w for w, _ in values), statistics.median(m for _, m in values)
        table.append({"checkout": label, "case": case, "wall_s": round(wall, 3), "peak_rss_mib": round(rss, 1),
                      "wall_ratio": round(wall / base_wall, 2), "rss_ratio": round(rss / base_rss, 2),
                      "runs": [{"wall_s": round(w, 3), "peak_rss_mib": round(m, 1)} for w, m in values]})
    print(f"{machine()['cpu']}, {os.cpu_count()} cores, load average {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          f"median of {args.repeat}")
    print(f"{'checkout':<28} {'case':<38} {'wall s':>7} {'x torch':>8} {'RSS MiB':>8} {'x torch':>8}")
    for row in table:
        print(f"{row['checkout'][-28:]:<28} {row['case']:<38} {row['wall_s']:>7.2f} {row['wall_ratio']:>8.2f} "
              f"{row['peak_rss_mib']:>8.0f} {row['rss_ratio']:>8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "repeat": args.repeat, "date": time.strftime("%Y-%m-%d"),
                                    "load_average_before_after": [load_before, load_after],
                                    "checkouts": {k: str(v) for k, v in roots.items()}, "results": table},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
