#!/usr/bin/env python3
"""Approximate hub selection (--knn hnsw) against the exact engine, eP&R alone: time, eP&R
difference and the hub sets' agreement. Writes bench/ANN_RESULTS.md and bench/results/ann.json.

1. Index parameters, at --sweep_n x 512 (real-looking features: a clustered 64-d latent through a
   random layer and a ReLU, as bench/gpu_check.py makes them): for M x efSearch, the time to build
   and search the index, its true recall@k (against the exact graph), the Jaccard index of its hub
   set (k-occurrence >= t, t = k) with the exact one, and the recall the run's own check estimates on
   1,000 sampled queries. This is what the defaults (M 16, efSearch 32, efConstruction 40) rest on.
2. Sizes: N = M = --sizes x 512 (a generated set that drops 2 of 20 modes): eP&R alone with exact
   hub selection and with --knn hnsw at t = k and t = 2k: wall time of each, eP&R values, their
   differences, and the Jaccard index of the real and generated hub sets. The exact route's time
   is measured at t = k (at t = 2k its passes are the same but a smaller hub cross pass); its eP&R
   at t = 2k comes from the same exact graphs (evaluate(hubs=...), equal to the exact route: tested).

Everything runs in this process, one after the other, on all cores (faiss and torch threads).
The full run takes about 20 minutes on 2 cores; the test suite runs ``--toy``.

Usage (from the repository root):  python -m bench.bench_ann [--toy] [--sizes 20000,50000,200000] [--sweep_n 50000] [--merge] [--no_sweep]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import fmt, table, write_text
from bench.gpu_check import realistic

ROOT = Path(__file__).resolve().parent.parent


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def sweep(n: int, dim: int, k: int, grid, log) -> list:
    import hubness_pr
    from hubness_pr import HnswOptions
    from hubness_pr.engine.ann import hnsw_neighbors, k_occurrence, quality
    x = realistic(n, dim, 1)
    t = time.perf_counter()
    graph = hubness_pr.nearest_neighbors(x, k, progress=False)
    exact_seconds = time.perf_counter() - t
    exact_hubs = graph.k_occurrence(k) >= k
    rows = [{"m": None, "ef_search": None, "seconds": exact_seconds, "recall_at_k": 1.0, "hub_jaccard": 1.0,
             "note": "exact graph"}]
    log(f"sweep {n} x {dim}: exact graph {exact_seconds:.1f} s")
    for m, ef in grid:
        options = HnswOptions(m=m, ef_search=ef)
        t = time.perf_counter()
        found = hnsw_neighbors(x, k, options)
        seconds = time.perf_counter() - t
        truth = np.mean([len(set(a) & set(b)) for a, b in zip(found, graph.indices)]) / k
        t = time.perf_counter()
        check = quality(x, found, k, k, options)
        row = {"m": m, "ef_search": ef, "ef_construction": options.ef_construction, "seconds": seconds,
               "recall_at_k": float(truth), "hub_jaccard": jaccard(exact_hubs, k_occurrence(found, n, k) >= k),
               "check_recall_at_k": check["recall_at_k"], "check_seconds": time.perf_counter() - t}
        rows.append(row)
        log(f"  M {m:>2} efSearch {ef:>3}: {seconds:6.1f} s, recall {truth:.4f} (check {check['recall_at_k']:.4f}), "
            f"hub Jaccard {row['hub_jaccard']:.4f}")
    return rows


def sizes_run(sizes, dim: int, k: int, log) -> list:
    import hubness_pr
    rows = []
    for n in sizes:
        real, fake = realistic(n, dim, 1), realistic(n, dim, 2, drop=2)
        t = time.perf_counter()
        exact = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=k, progress=False)
        exact_seconds = time.perf_counter() - t
        occ_r, occ_f = exact.real_k_occurrence, exact.fake_k_occurrence
        log(f"{n} x {dim}: exact eP&R {exact_seconds:.1f} s")
        for t_hub in (k, 2 * k):
            ex = exact.epr if t_hub == k else hubness_pr.evaluate(
                real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t_hub, hubs=(occ_r >= t_hub, occ_f >= t_hub),
                progress=False).epr
            t = time.perf_counter()
            approx = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t_hub, knn="hnsw",
                                      progress=False)
            seconds = time.perf_counter() - t
            row = {"n": n, "dim": dim, "k": k, "t": t_hub, "exact_seconds": exact_seconds, "hnsw_seconds": seconds,
                   "speedup": exact_seconds / seconds,
                   "exact": {"precision": ex.precision, "recall": ex.recall, "real_hubs": ex.real_hubs,
                             "fake_hubs": ex.fake_hubs},
                   "hnsw": {"precision": approx.epr.precision, "recall": approx.epr.recall,
                            "real_hubs": approx.epr.real_hubs, "fake_hubs": approx.epr.fake_hubs},
                   "precision_diff": approx.epr.precision - ex.precision, "recall_diff": approx.epr.recall - ex.recall,
                   "real_hub_jaccard": jaccard(occ_r >= t_hub, approx.real_k_occurrence >= t_hub),
                   "fake_hub_jaccard": jaccard(occ_f >= t_hub, approx.fake_k_occurrence >= t_hub),
                   "hnsw_timings": approx.timings, "check": {s: approx.params["knn"][s] for s in ("real", "fake")}}
            rows.append(row)
            log(f"  t={t_hub}: hnsw {seconds:.1f} s ({row['speedup']:.2f}x), eP {ex.precision:.4f} -> "
                f"{approx.epr.precision:.4f}, eR {ex.recall:.4f} -> {approx.epr.recall:.4f}, hub Jaccard "
                f"{row['real_hub_jaccard']:.3f} / {row['fake_hub_jaccard']:.3f}")
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Approximate hub selection (`--knn hnsw`) against exact, eP&R alone", "",
             f"Measured {report['started']} with `python -m bench.bench_ann{' --toy' if report['toy'] else ''}` on "
             f"{m['cpu_count']} CPU cores ({m['processor']}), Python {m['python']}, torch {m['torch']}, "
             f"faiss {m['faiss']}. Features: real-looking {report['dim']}-d (clustered latent, ReLU); k = "
             f"{report['k']}." + (f" ({report['merged']}.)" if report.get("merged") else ""), "",
             f"## Index parameters ({report['sweep_n']} x {report['dim']}, hubs at t = k)", "",
             table(["M", "efSearch", "build + search", "recall@k (true)", "recall@k (run's check)", "hub-set Jaccard"],
                   [["exact graph", "", f"{fmt(r['seconds'], digits=1)} s", 1, "", 1] if r["m"] is None else
                    [r["m"], r["ef_search"], f"{fmt(r['seconds'], digits=1)} s", fmt(r["recall_at_k"], digits=4),
                     fmt(r["check_recall_at_k"], digits=4), fmt(r["hub_jaccard"], digits=4)]
                    for r in report["sweep"]]).rstrip("\n")]

    def pair(r, key):
        return f"{fmt(r['exact'][key], digits=4)} / {fmt(r['hnsw'][key], digits=4)}"

    lines += ["", "## eP&R alone: exact against HNSW hub selection (defaults)", "",
              table(["N = M", "t", "exact", "hnsw", "speed-up", "eP exact / hnsw", "eR exact / hnsw",
                     "hub Jaccard real / fake", "hub fraction real"],
                    [[f"{r['n']:,}", r["t"], f"{fmt(r['exact_seconds'], digits=1)} s",
                      f"{fmt(r['hnsw_seconds'], digits=1)} s", f"{fmt(r['speedup'], digits=2)}x", pair(r, "precision"),
                      pair(r, "recall"), f"{fmt(r['real_hub_jaccard'])} / {fmt(r['fake_hub_jaccard'])}",
                      fmt(r["exact"]["real_hubs"] / r["n"])] for r in report["sizes"]]).rstrip("\n")]
    lines += ["", "Where the time of the HNSW route goes (largest size, t = k): " + ", ".join(
        f"{name} {value:.1f} s" for name, value in next(
            (r["hnsw_timings"] for r in reversed(report["sizes"]) if r["t"] == report["k"]), {}).items()), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toy", action="store_true", help="toy sizes (seconds)")
    p.add_argument("--sizes", default="20000,50000,200000")
    p.add_argument("--sweep_n", type=int, default=50000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench"), help="folder of ANN_RESULTS.md and results/ann.json")
    p.add_argument("--merge", action="store_true",
                   help="keep the saved results of what this run does not measure: the sweep with --no_sweep, and "
                        "the sizes not in --sizes (rows of the sizes run are replaced)")
    p.add_argument("--no_sweep", action="store_true", help="skip the index parameter sweep")
    args = p.parse_args(argv)
    import faiss
    import torch
    sizes = [int(s) for s in args.sizes.split(",")]
    grid = [(m, ef) for m in (8, 16, 32) for ef in (16, 32, 64)]
    if args.toy:
        sizes, args.sweep_n, args.dim, grid = [1500], 1500, 32, [(8, 16), (16, 32)]
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    report = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "toy": args.toy, "dim": args.dim,
              "k": args.k, "sweep_n": args.sweep_n,
              "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "faiss": faiss.__version__}}
    out = Path(args.out)
    saved_path = out / "results" / ("ann_toy.json" if args.toy else "ann.json")
    saved = json.loads(saved_path.read_text()) if args.merge and saved_path.is_file() else {}
    report["sweep"] = saved.get("sweep", []) if args.no_sweep else sweep(args.sweep_n, args.dim, args.k, grid, log)
    if args.no_sweep:
        report["sweep_n"] = saved.get("sweep_n", args.sweep_n)
    rows = sizes_run(sizes, args.dim, args.k, log)
    kept = [r for r in saved.get("sizes", []) if r["n"] not in sizes]
    report["sizes"] = sorted(kept + rows, key=lambda r: (r["n"], r["t"]))
    if saved:
        report["merged"] = f"sizes {sizes} measured {report['started']}; the rest kept from {saved.get('started')}"
    write_text(out / "results" / ("ann_toy.json" if args.toy else "ann.json"), json.dumps(report, indent=2) + "\n")
    write_text(out / ("ANN_RESULTS_toy.md" if args.toy else "ANN_RESULTS.md"), markdown(report))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
