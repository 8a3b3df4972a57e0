#!/usr/bin/env python3
"""Fixed memory of the compiled CPU kernels (numba): resident and anonymous memory of a fresh process
before and after they load, and after a first fused call.

Each repeat is a fresh interpreter that reads its own /proc/self/status (VmRSS, RssAnon, VmHWM) at
four points: after ``import torch, hubness`` and the metric command's modules; after
``hubness_pr.engine.kernels.load()`` (numba's import and the kernels from its disk cache, compiled first if the
cache is empty: the warm-up run fills it); after a first fused evaluation of 2,000 x 2,000 x 64
features (``HUBNESS_KERNELS=fused``: the thread pool and the tiles); and, for comparison, the same
evaluation on the torch route in another fresh process. The README's memory bound adds the kernels'
figure measured here to the command's own.

Usage (from the repository root):  python -m bench.kernel_memory [--repeat 3] [--out bench/results/kernel_memory.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys
def status():
    out = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024  # MiB
    return out
route = sys.argv[1]
points = {}
import numpy as np, torch
import hubness_pr
from hubness_pr.commands import metrics as command
from hubness_pr.engine import kernels  # noqa: F401 - what the metric command imports
points["imported"] = status()
x = np.abs(np.random.default_rng(0).normal(size=(2000, 64))).astype(np.float32)
y = np.abs(np.random.default_rng(1).normal(size=(2000, 64))).astype(np.float32)
if route == "fused":
    kernels.load()
    points["kernels_loaded"] = status()
hubness_pr.evaluate(real=x, fake=y)
points["first_evaluation"] = status()
print(json.dumps(points))
"""


def run(route: str) -> dict:
    env = {**os.environ, "HUBNESS_KERNELS": route}  # cwd HERE: ``python -c`` imports hubness_pr from there
    proc = subprocess.run([sys.executable, "-c", CHILD, route], capture_output=True, text=True, env=env,
                          timeout=600, check=True, cwd=HERE)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "bench" / "results" / "kernel_memory.json"))
    args = parser.parse_args()
    run("fused")  # warm-up: numba's disk cache filled, file pages cached
    runs = {"fused": [], "torch": []}
    for _ in range(args.repeat):  # rounds: a change of load on a shared machine hits both alike
        for route in runs:
            runs[route].append(run(route))

    def median(route, point, key):
        return statistics.median(r[point][key] for r in runs[route])

    summary = {}
    for key in ("VmRSS", "RssAnon", "VmHWM"):
        imported = median("fused", "imported", key)
        summary[key] = {
            "imported_mib": imported,
            "kernels_loaded_mib": median("fused", "kernels_loaded", key),
            "fused_first_evaluation_mib": median("fused", "first_evaluation", key),
            "torch_first_evaluation_mib": median("torch", "first_evaluation", key),
            "kernels_load_adds_mib": median("fused", "kernels_loaded", key) - imported,
            "fused_over_torch_route_mib": (median("fused", "first_evaluation", key)
                                           - median("torch", "first_evaluation", key)),
        }
    result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "repeat": args.repeat, "median": summary, "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for key, values in summary.items():
        print(key, " ".join(f"{k}={v:.0f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
