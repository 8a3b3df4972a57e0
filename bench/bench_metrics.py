#!/usr/bin/env python3
"""Benchmark: this toolkit vs the prdc package vs the bare GEMM floor, in one run, same data.

Each contender runs in its own child process (so peak memory is its own), on the same random
ReLU-Gaussian features (real: relu(N(0, 1)), fake: relu(N(0.02, 1.02^2)), float32):

* ``baseline``  load the two arrays and nothing else (memory reference)
* ``torch``     the same plus ``import torch, hubness`` (the libraries' own resident memory)
* ``toolkit``   hubness_pr.evaluate, every metric of hubness_pr.DEFAULT_METRICS (eP&R, P&R, density and
                coverage, realism, rarity, hubness),
                after ``hubness_pr.engine.kernels.load()`` in the untimed setup (as ``import torch`` is)
* ``cold``      the same without that load: the first call in a fresh process pays it (~0.3 s)
* ``epr``       hubness_pr.evaluate(metrics='epr'): the hub-only pass (kernels loaded in setup)
* ``prdc``      prdc.compute_prdc(real, fake, nearest_k=5): its four numbers
* ``floor``     the bare float32 GEMMs the toolkit's passes need (upper triangle of real x real and of
                fake x fake, all of real x fake), same tiles and same GEMM call, no reductions

Setup (imports, the toolkit's kernel load) is timed apart and printed; the ratios use the timed call.

Usage (from the repository root):  python -m bench.bench_metrics --n 5000 --dim 4096 [--repeat 3] [--skip prdc] [--json results.json]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTENDERS = ("baseline", "torch", "toolkit", "cold", "epr", "prdc", "floor")


def make_data(n: int, m: int, dim: int, folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    real, fake = folder / "real.npy", folder / "fake.npy"
    np.save(real, np.maximum(rng.standard_normal((n, dim), dtype=np.float32), 0))
    np.save(fake, np.maximum(rng.standard_normal((m, dim), dtype=np.float32) * 1.02 + 0.02, 0))
    return real, fake


def worker(name: str, real_path: str, fake_path: str, budget_mib: int) -> dict:
    from bench.common import peak_rss_mib, reset_peak_rss
    peak_reset = reset_peak_rss()
    real, fake = np.load(real_path), np.load(fake_path)
    result = {}
    # setup is timed apart (torch's import alone takes seconds); each contender imports what it uses
    t = time.perf_counter()
    if name in ("torch", "toolkit", "cold", "epr", "floor"):
        import hubness_pr
        import hubness_pr.metrics.evaluation  # noqa: F401 - the package imports lazily: load torch and the engine here
        if name in ("toolkit", "epr"):
            result["kernel_load_seconds"] = hubness_pr.engine.kernels.load()
    elif name == "prdc":
        import prdc
    result["setup_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    if name in ("toolkit", "cold", "epr"):
        from bench.common import ALL_METRICS, values  # imported here: the baseline imports nothing more
        metrics = ("epr",) if name == "epr" else ALL_METRICS
        ev = hubness_pr.evaluate(real=real, fake=fake, metrics=metrics, device="cpu",
                                 memory_budget=budget_mib * 2**20, progress=False)
        result["values"] = values(ev)
        result["timings"] = ev.timings
    elif name == "prdc":
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            values = prdc.compute_prdc(real, fake, nearest_k=5)
        result["values"] = {key: float(v) for key, v in values.items()}
    elif name == "floor":
        result["values"] = gemm_floor(real, fake, budget_mib)
    result["seconds"] = time.perf_counter() - t
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_rss_reset"] = peak_reset
    result["features_mib"] = (real.nbytes + fake.nbytes) / 2**20
    return result


def gemm_floor(real, fake, budget_mib: int, device: str = "cpu") -> dict:
    """The bare float32 GEMMs of the toolkit's passes on ``device`` (same tiles, same GEMM call, no
    reductions): upper triangles of real x real and fake x fake, all of real x fake. ``real`` and
    ``fake`` are numpy arrays or tensors (n, dim)."""
    import torch

    from hubness_pr import RunContext
    from hubness_pr.engine.distances import exact_matmul, gram_tile, strip_width, tile_grid, tile_side
    from hubness_pr.engine.knn import knn_tile_side
    budget, dim = budget_mib * 2**20, real.shape[1]
    dev = torch.device(device)
    ctx = RunContext(device=dev)
    fused, onednn = ctx.fused(), ctx.onednn
    xr, xf = (torch.as_tensor(v).to(dev, torch.float32) for v in (real, fake))
    sides = (knn_tile_side(len(real), dim, budget), knn_tile_side(len(fake), dim, budget), tile_side(dim, budget))
    products = tiles = 0
    with torch.inference_mode(), exact_matmul():
        for x, y, upper, side in ((xr, xr, True, sides[0]), (xf, xf, True, sides[1]), (xr, xf, False, sides[2])):
            for r, c in tile_grid(len(x), len(y), side, strip_width(side, dim, budget, fused), upper):
                products += gram_tile(x[r], y[c], onednn).numel()  # the GEMM of the toolkit's tiles
                tiles += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    return {"row_block_sides": sides, "tiles": tiles, "distance_products": products}


def run_child(name: str, real: Path, fake: Path, budget: int) -> dict:
    """One run of contender ``name`` in a fresh process (:func:`bench.common.run_child`)."""
    from bench import common
    return common.run_child("bench.bench_metrics", ["--worker", name, "--real", real, "--fake", fake,
                                                    "--memory_budget", budget])


def main() -> int:
    from bench.common import contender_parser
    p = contender_parser(__doc__.splitlines()[0], CONTENDERS, n=5000, dim=4096, skip_example="prdc")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.real, args.fake, args.memory_budget)))
        return 0

    m = args.m or args.n
    import torch

    from bench.common import cpu_model, ratio, run_contenders
    from hubness_pr.engine.distances import onednn_gemm_works
    info = {"n": args.n, "m": m, "dim": args.dim, "memory_budget_mib": args.memory_budget,
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_gemm": "oneDNN" if onednn_gemm_works() else "numpy BLAS",
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(auto)")}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = make_data(args.n, m, args.dim, Path(tmp))
        results = run_contenders(args, CONTENDERS, lambda name: run_child(name, real, fake, args.memory_budget))

    base = results.get("baseline", {}).get("peak_rss_mib")
    print(f"\n{args.n} real x {m} fake x {args.dim}-d float32, {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"CPU GEMM {info['cpu_gemm']}, OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}, median of {args.repeat} run(s)")
    print(f"{'contender':<10} {'seconds':>9} {'setup s':>8} {'peak RSS MiB':>13} {'over baseline':>14}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<10} failed: {r['error']}")
            continue
        over = r["peak_rss_mib"] - base if base else float("nan")
        print(f"{name:<10} {r['seconds']:>9.2f} {r['setup_seconds']:>8.2f} {r['peak_rss_mib']:>13.0f} {over:>14.0f}")
    tk, pr, fl, ep, cold = (results.get(x, {}) for x in ("toolkit", "prdc", "floor", "epr", "cold"))
    for label, a, b in (("prdc (4 metrics) / toolkit (all metrics) time ratio", pr, tk),
                        ("prdc / toolkit first call in a fresh process (kernel load included)", pr, cold),
                        ("toolkit / GEMM floor time ratio", tk, fl),
                        ("toolkit (all) / eP&R alone time ratio", tk, ep)):
        if ratio(a, b):
            print(f"{label}: {ratio(a, b)}")
    if "values" in tk and "values" in pr:
        print(f"check: prdc density {pr['values']['density']:.6f} coverage {pr['values']['coverage']:.6f}; "
              f"toolkit {tk['values']['dc']['density']:.6f} {tk['values']['dc']['coverage']:.6f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
