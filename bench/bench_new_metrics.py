#!/usr/bin/env python3
"""Benchmark: what P-precision/P-recall (``ppr``) and clipped density/coverage (``cdc``) add to every
default metric, in the same passes.

Each contender runs in its own child process on the same real-looking float32 features
(``bench.gpu_check.realistic``: real seed 1, fake seed 2 with 2 of 20 clusters dropped), the fused
kernels loaded in the untimed setup:

* ``default``       hubness_pr.evaluate(metrics=DEFAULT_METRICS)
* ``default_ppr``   the same plus ``ppr``
* ``default_cdc``   the same plus ``cdc``
* ``default_both``  the same plus ``ppr,cdc``
* ``default_auth``  the same plus ``auth`` (AuthPct and copies: the two nearest reals of each fake)
* ``default_all_new`` the same plus ``ppr,cdc,auth``

The goal checked: default_all_new / default < 1.20 (the new k-NN metrics add under 20 % together;
C_T needs a held-out real set and is left out). P-P&R re-measures
every pair within its radius R = a * mean k-NN radius exactly (its ``refined_pairs`` are reported):
its cost follows how many pairs lie within R, which depends on the features.

Usage (from the repository root):
    python -m bench.bench_new_metrics --n 20000 --dim 2048 [--repeat 1] [--json out.json]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTENDERS = ("default", "default_ppr", "default_cdc", "default_both", "default_auth", "default_all_new")
EXTRA = {"default": (), "default_ppr": ("ppr",), "default_cdc": ("cdc",), "default_both": ("ppr", "cdc"),
         "default_auth": ("auth",), "default_all_new": ("ppr", "cdc", "auth")}
GOAL = 1.20


def worker(name: str, real_path: str, fake_path: str, budget_mib: int) -> dict:
    from bench.common import ALL_METRICS, peak_rss_mib, reset_peak_rss, values
    peak_reset = reset_peak_rss()
    real, fake = np.load(real_path), np.load(fake_path)
    t = time.perf_counter()
    import hubness_pr
    import hubness_pr.metrics.evaluation  # noqa: F401 - the package imports lazily: load torch and the engine here
    result = {"kernel_load_seconds": hubness_pr.engine.kernels.load(), "setup_seconds": time.perf_counter() - t}
    t = time.perf_counter()
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=ALL_METRICS + EXTRA[name], device="cpu",
                             memory_budget=budget_mib * 2**20, progress=False)
    result["seconds"] = time.perf_counter() - t
    result["values"] = values(ev)
    document = hubness_pr.json_safe(hubness_pr.to_dict(ev))
    for extra in EXTRA[name]:
        result["values"][extra] = document[extra]
    result["timings"] = ev.timings
    result["refined_pairs"] = ev.diagnostics.get("refined_pairs")
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_rss_reset"] = peak_reset
    return result


def summarize(results: dict) -> dict:
    base = results.get("default", {})
    out = {"goal_ratio": GOAL}
    for name in CONTENDERS[1:]:
        r = results.get(name, {})
        if "seconds" in base and "seconds" in r:
            out[f"{name}_over_default"] = r["seconds"] / base["seconds"]
    if "default_all_new_over_default" in out:
        out["goal_met"] = out["default_all_new_over_default"] < GOAL
    # adding metrics changes no value of the others
    out["same_default_values"] = all(results[n].get("values", {}).get(k) == v for n in CONTENDERS[1:] if n in results
                                     for k, v in base.get("values", {}).items())
    return out


def main(argv=None) -> int:
    from bench.common import contender_parser
    p = contender_parser(__doc__.splitlines()[0], CONTENDERS, n=20000, dim=2048)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.real, args.fake, args.memory_budget)))
        return 0

    import torch

    import hubness_pr
    from bench.common import ALL_METRICS, REALISTIC, cpu_model, realistic_pair, run_child, run_contenders, write_text
    m = args.m or args.n
    info = {"n": args.n, "m": m, "dim": args.dim, "features": REALISTIC,
            "memory_budget_mib": args.memory_budget, "default_metrics": list(ALL_METRICS), "cpu": cpu_model(),
            "cores": os.cpu_count(), "torch": torch.__version__, "hubness_pr": getattr(hubness_pr, "__version__", "?"),
            "threads": torch.get_num_threads(), "repeat": args.repeat, "load_average_before": os.getloadavg()}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = realistic_pair(args.n, m, args.dim, Path(tmp))
        results = run_contenders(args, CONTENDERS, lambda name: run_child(
            "bench.bench_new_metrics", ["--worker", name, "--real", real, "--fake", fake,
                                        "--memory_budget", args.memory_budget]))
    info["load_average_after"] = os.getloadavg()
    summary = summarize(results)
    print(f"\n{args.n} real x {m} fake x {args.dim}-d float32 (realistic), {info['cpu']}, {info['cores']} cores, "
          f"torch {info['torch']}, median of {args.repeat} run(s)")
    print(f"{'contender':<15} {'seconds':>9} {'cross s':>8} {'refined pairs':>14} {'peak RSS MiB':>13}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<15} failed: {r['error']}")
            continue
        print(f"{name:<15} {r['seconds']:>9.2f} {r['timings'].get('cross', float('nan')):>8.2f} "
              f"{r['refined_pairs']:>14} {r['peak_rss_mib']:>13.0f}")
    for name in CONTENDERS[1:]:
        if f"{name}_over_default" in summary:
            print(f"{name} / default: {summary[f'{name}_over_default']:.3f}x")
    if "goal_met" in summary:
        print(f"goal default_all_new / default < {GOAL}: {'met' if summary['goal_met'] else 'NOT met'}")
    if args.json:
        write_text(args.json, json.dumps({"info": info, "results": results, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
