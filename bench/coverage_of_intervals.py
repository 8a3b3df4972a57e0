#!/usr/bin/env python3
"""Do the stated 95 % intervals cover at the nominal rate? Writes bench/results/coverage_of_intervals.json.

Two Gaussians in ``--dim`` dimensions: real N(0, I), generated N(0.3 e_1, 0.9^2 I) (shifted and
narrower: every metric away from its bound). At each size N = M (``--sizes``), ``--reps``
independent pairs of sets are drawn (seeded); each is evaluated once in full (P, R, D, C with their
conditional standard errors) and once in ``--splits`` S disjoint splits
(:func:`hubness_pr.evaluate_splits`: the mean over the splits and its standard error).

What an interval should cover is the metric's expected value at that size: k-NN metrics move with N
(P and R rise with N, coverage with M / N), so the value of one larger draw is another quantity, and
no interval of this size targets it. The expected value is estimated, for each pair, by the mean of
the **other** pairs' values (leave one out: independent of the pair itself, its own error sqrt(R - 1)
times smaller than one pair's spread). Three 95 % intervals:

* ``conditional``: the full value +- 1.96 conditional standard errors (``pr.precision_se``, ...),
  which leave out the radii's randomness (docs/definitions.md, "Standard errors");
* ``splits``: the mean over the splits +- t95 (Student's t, S - 1 degrees of freedom: the JSON's
  ``splits.t95``) times its standard error, covering the expected value at the split size N / S;
* ``splits_for_full``: the full value +- t95 splits' standard errors (the spread of S values at
  N / S, over sqrt(S), is about the spread of one value at N where the variance falls as 1 / N).

A rate passes when it is within 3 binomial standard errors of 0.95, ``3 sqrt(0.95 0.05 / R)``
(0.046 at R = 200): the tolerance of estimating a rate from R pairs.

Usage (from the repository root):  python -m bench.coverage_of_intervals [--toy] [--sizes 1000,3000,10000]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

import hubness_pr
from hubness_pr.engine.context import RunContext
from hubness_pr.metrics.splits import t_quantile_975

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("pr.precision", "pr.recall", "dc.density", "dc.coverage")
METHODS = ("conditional", "splits", "splits_for_full")
NOMINAL, Z = 0.95, 1.959964


def _value(evaluation, name: str) -> tuple[float, float]:
    block, field = name.split(".")
    result = getattr(evaluation, block)
    return getattr(result, field), getattr(result, f"{field}_se")


def draw(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real N(0, I) and generated N(0.3 e_1, 0.81 I), float32, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n, dim), dtype=np.float32)
    fake = 0.9 * rng.standard_normal((n, dim), dtype=np.float32)
    fake[:, 0] += 0.3
    return real, fake


def replicate(n: int, dim: int, splits: int, seed: int, ctx) -> dict:
    """One pair of sets: per metric the full value, its conditional SE, the splits' mean and SE."""
    real, fake = draw(n, dim, seed)
    full = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc", ctx=ctx)
    parts = hubness_pr.evaluate_splits(real=real, fake=fake, count=splits, seed=seed, metrics="pr,dc", ctx=ctx)
    out = {}
    for name in METRICS:
        value, se = _value(full, name)
        per_split = np.array([_value(e, name)[0] for e in parts.evaluations])
        out[name] = {"value": value, "se": se, "splits_mean": float(per_split.mean()),
                     "splits_se": float(per_split.std(ddof=1) / math.sqrt(splits))}
    return out


def coverage(reps: list[dict], splits: int) -> dict:
    """Per metric and method: the rate at which the interval covers the leave-one-out expected value."""
    r, t95 = len(reps), t_quantile_975(splits - 1)
    tolerance = 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / r)
    out = {}
    for name in METRICS:
        full = np.array([rep[name]["value"] for rep in reps])
        split = np.array([rep[name]["splits_mean"] for rep in reps])
        target_full = (full.sum() - full) / (r - 1)
        target_split = (split.sum() - split) / (r - 1)
        se = np.array([rep[name]["se"] for rep in reps])
        split_se = np.array([rep[name]["splits_se"] for rep in reps])
        hits = {"conditional": np.abs(full - target_full) <= Z * se,
                "splits": np.abs(split - target_split) <= t95 * split_se,
                "splits_for_full": np.abs(full - target_full) <= t95 * split_se}
        out[name] = {"mean": float(full.mean()), "sd_of_values": float(full.std(ddof=1)),
                     "mean_conditional_se": float(se.mean()), "mean_splits_se": float(split_se.mean()),
                     "splits_mean": float(split.mean()),
                     **{method: {"rate": float(h.mean()), "passes": bool(abs(h.mean() - NOMINAL) <= tolerance)}
                        for method, h in hits.items()}}
    return {"reps": r, "tolerance": tolerance, "metrics": out}


def table(report: dict) -> list[str]:
    lines = ["| N = M | metric | mean | sd of values | mean cond. SE | conditional | splits | splits SE for full |",
             "|---|---|---|---|---|---|---|---|"]
    for size in report["sizes"]:
        for name, m in size["coverage"]["metrics"].items():
            cells = [f"{m[method]['rate']:.3f}" + ("" if m[method]["passes"] else " (out)") for method in METHODS]
            lines.append(f"| {size['n']:,} | {name} | {m['mean']:.4f} | {m['sd_of_values']:.4f} | "
                         f"{m['mean_conditional_se']:.4f} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.coverage_of_intervals", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,3000,10000", help="comma list of N (= M)")
    p.add_argument("--reps", default="300,200,200", help="pairs of sets drawn at each size (comma list)")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--toy", action="store_true", help="N = 200, 60 pairs: seconds (the test suite's run)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "coverage_of_intervals.json"))
    args = p.parse_args(argv)
    sizes = [200] if args.toy else [int(s) for s in args.sizes.split(",")]
    reps = [60] if args.toy else [int(s) for s in args.reps.split(",")]
    if len(reps) != len(sizes):
        p.error("--reps needs one count per size")
    t_start = time.perf_counter()
    report = {"dim": args.dim, "splits": args.splits, "seed": args.seed, "nominal": NOMINAL,
              "real": "N(0, I)", "fake": "N(0.3 e_1, 0.81 I)", "machine": platform.processor() or platform.machine(),
              "sizes": []}
    with RunContext(progress=False, route="fused") as ctx:  # the fused kernels, loaded once for every run
        for n, r in zip(sizes, reps):
            t = time.perf_counter()
            runs = [replicate(n, args.dim, args.splits, args.seed * 1_000_003 + n * 1009 + i, ctx) for i in range(r)]
            report["sizes"].append({"n": n, "seconds": time.perf_counter() - t, "coverage": coverage(runs, args.splits)})
            print(f"N = {n}: {r} pairs in {time.perf_counter() - t:.0f} s", flush=True)
    report["seconds"] = time.perf_counter() - t_start
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(table(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
