#!/usr/bin/env python3
"""Benchmark: what FD and exact full-set KID add to the k-NN metrics, and torch-fidelity on the same features.

Each contender runs in its own child process (so its peak RSS is its own), on the same real-looking
float32 features (``bench.gpu_check.realistic``: real seed 1, fake seed 2 with 2 of 20 clusters dropped):

* ``baseline``        load the two arrays and nothing else (memory reference)
* ``knn``             (a) hubness_pr.evaluate(metrics=DEFAULT_METRICS): every k-NN metric
* ``knn_fd_kid``      (b) the same plus ``fd,kid`` (FD and the exact full-set KID with its variance)
* ``fd_kid``          (c) ``fd,kid`` alone
* ``knn_warm``        (a') as (a) against a real set seen before: its k-NN graph given (what the real-set
                      cache holds), computed in the untimed setup
* ``knn_fd_kid_warm`` (b') as (b) with the real k-NN graph and the real set's stored moments, covariance
                      square root and real x real kernel sums given (``evaluate(real_knn=, real_stats=)``)
* ``torch_fidelity``  (d) torch-fidelity's FID + KID + PRC from the same arrays, through the functions its
                      ``calculate_metrics`` calls on extracted features (``metric_fid.fid_features_to_statistics``
                      and ``fid_statistics_to_metric``, ``metric_kid.kid_features_to_metric`` with its default
                      100 subsets of 1,000, ``metric_prc.prc_features_to_metric`` with its default neighbourhood
                      3 and full distance matrices), float32 tensors as its extractors give them, generated
                      set first as its convention is
* ``fd_floor``        not a contender: this machine's floor for FD's float64 work, measured in its own
                      process. Its float64 GEMM rate (best of 3 ``(dim, N) x (N, dim)`` products, torch),
                      and the fastest steady ``eigvalsh`` of a (dim, dim) covariance (best of 3 after a
                      first call, torch on one thread and on all, numpy). The floor of a real set seen
                      before counts M dim^2 flops for the fake covariance (a symmetric rank-k update:
                      half a product) and dim^3 for ``F^T S F`` (a triangular product; the lower half
                      of the second one is less again) at that rate, plus that ``eigvalsh``; from
                      scratch it adds N dim^2 for the real covariance and dim^3 / 3 for its Cholesky
                      factor. No implementation of the same float64 FD can take less on this machine,
                      so ``(a) + floor`` against (a) bounds what the goal can reach here

The toolkit's contenders load its compiled kernels in the untimed setup (as in bench.bench_metrics);
imports are timed apart. The goal checked: (b) / (a) < 1.25, i.e. FD and exact KID add under 25 %
to the k-NN metrics (and (b') / (a') for a real set seen before). FD is compared between (b), (c) and
torch-fidelity (relative difference printed); the exact KID against a float64 brute force computed
after the contenders (chunked numpy, untimed).

Usage (from the repository root):
    python -m bench.bench_fd_kid --n 5000 --dim 2048 [--repeat 1] [--skip torch_fidelity,skip_float64] [--json out.json]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTENDERS = ("baseline", "knn", "knn_fd_kid", "fd_kid", "knn_warm", "knn_fd_kid_warm", "torch_fidelity",
              "fd_floor")
OURS = ("knn", "knn_fd_kid", "fd_kid", "knn_warm", "knn_fd_kid_warm")
GOAL = 1.25  # (b) / (a): FD and exact KID add under 25 % to the k-NN metrics
TF_KID_SUBSETS, TF_KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults (torch_fidelity/defaults.py)


def _best(f, times: int = 3) -> float:
    """The shortest of ``times`` timed calls of ``f``."""
    best = float("inf")
    for _ in range(times):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def fd_floor(n: int, m: int, dim: int) -> dict:
    """This machine's float64 GEMM rate and fastest steady ``eigvalsh`` at ``dim``, and from them the
    least time FD's float64 work can take for ``n`` reals and ``m`` fakes (module docstring)."""
    import torch
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((n, dim)))
    gemm = _best(lambda: x.T @ x)
    rate = 2.0 * n * dim * dim / gemm  # flop/s
    cov = (x.T @ x / n).numpy()
    cov_t = torch.from_numpy(cov)
    threads = torch.get_num_threads()

    def torch_eig(k):
        torch.set_num_threads(k)
        try:
            torch.linalg.eigvalsh(cov_t)  # its first call in a process is slower: not the steady time
            return _best(lambda: torch.linalg.eigvalsh(cov_t))
        finally:
            torch.set_num_threads(threads)

    np.linalg.eigvalsh(cov)
    eig = {"torch_1_thread": torch_eig(1), f"torch_{threads}_threads": torch_eig(threads),
           "numpy": _best(lambda: np.linalg.eigvalsh(cov))}
    warm = (m * dim**2 + dim**3) / rate + min(eig.values())
    cold = warm + (n * dim**2 + dim**3 / 3) / rate
    return {"gemm_gflops": rate / 1e9, "eigvalsh_seconds": eig, "floor_warm_seconds": warm,
            "floor_cold_seconds": cold}


def worker(name: str, real_path: str, fake_path: str, budget_mib: int, kid_subset_size: int) -> dict:
    from bench.common import peak_rss_mib, reset_peak_rss
    peak_reset = reset_peak_rss()
    real, fake = np.load(real_path), np.load(fake_path)
    result = {}
    t = time.perf_counter()
    given = {}
    if name in OURS:
        import hubness_pr
        import hubness_pr.metrics.evaluation  # noqa: F401 - the package imports lazily: load torch and the engine here
        from bench.common import ALL_METRICS
        result["kernel_load_seconds"] = hubness_pr.engine.kernels.load()
        if name.endswith("_warm"):  # what a real set seen before brings: untimed
            k_max, exact = hubness_pr.real_knn_needs(ALL_METRICS)
            given["real_knn"] = hubness_pr.nearest_neighbors(real, k_max, exact_ks=exact, device="cpu",
                                                             memory_budget=budget_mib * 2**20, progress=False)
            if "fd" in name:
                stats = hubness_pr.evaluate(real=real, fake=fake[:16], metrics=("fd", "kid"), device="cpu",
                                            memory_budget=budget_mib * 2**20, progress=False).real_stats
                stats.moments.factor  # noqa: B018 - computed once, as the cache stores it
                given["real_stats"] = stats
    elif name == "fd_floor":
        (n, dim), m = real.shape, fake.shape[0]
    elif name == "torch_fidelity":
        import torch
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
        from torch_fidelity.metric_kid import kid_features_to_metric
        from torch_fidelity.metric_prc import prc_features_to_metric
    result["setup_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    if name in OURS:
        from bench.common import values
        with_fd_kid = ALL_METRICS + ("fd", "kid")
        metrics = {"knn": ALL_METRICS, "knn_fd_kid": with_fd_kid, "fd_kid": ("fd", "kid"), "knn_warm": ALL_METRICS,
                   "knn_fd_kid_warm": with_fd_kid}[name]
        ev = hubness_pr.evaluate(real=real, fake=fake, metrics=metrics, device="cpu",
                                 memory_budget=budget_mib * 2**20, progress=False, **given)
        result["seconds"] = time.perf_counter() - t
        result["values"] = values(ev)
        if ev.fd is not None:
            result["values"]["fd"] = ev.fd.value
            result["values"]["kid"] = {"value": ev.kid.value, "std": ev.kid.std, "subsets": 0}
        result["timings"] = ev.timings
    elif name == "torch_fidelity":
        gen, ref = torch.from_numpy(fake), torch.from_numpy(real)  # its convention: input1 generated, input2 real
        parts = {}
        s = time.perf_counter()
        fid = fid_statistics_to_metric(fid_features_to_statistics(ref), fid_features_to_statistics(gen),
                                       verbose=False)["frechet_inception_distance"]
        parts["fid"] = time.perf_counter() - s
        s = time.perf_counter()
        kid = kid_features_to_metric(gen, ref, kid_subsets=TF_KID_SUBSETS, kid_subset_size=kid_subset_size,
                                     verbose=False)
        parts["kid"] = time.perf_counter() - s
        s = time.perf_counter()
        prc = prc_features_to_metric(gen, ref, verbose=False)
        parts["prc"] = time.perf_counter() - s
        result["seconds"] = time.perf_counter() - t
        result["timings"] = parts
        result["values"] = {"fd": fid, "kid": {"value": kid["kernel_inception_distance_mean"],
                                                "std": kid["kernel_inception_distance_std"],
                                                "subsets": TF_KID_SUBSETS, "subset_size": kid_subset_size},
                            "prc": {k: float(v) for k, v in prc.items()}}
    elif name == "fd_floor":
        result["floor"] = fd_floor(n, m, dim)
        result["seconds"] = time.perf_counter() - t
    else:
        result["seconds"] = time.perf_counter() - t
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_rss_reset"] = peak_reset
    result["features_mib"] = (real.nbytes + fake.nbytes) / 2**20
    return result


def float64_kid(real_path: Path, fake_path: Path, rows: int = 2048) -> float:
    """The unbiased MMD^2 of KID's cubic kernel over the full sets in float64 (numpy, row blocks)."""
    x, y = (np.load(p).astype(np.float64) for p in (real_path, fake_path))
    d = x.shape[1]

    def total(a, b, same):
        s = 0.0
        for i in range(0, len(a), rows):
            k = (a[i:i + rows] @ b.T / d + 1.0) ** 3
            if same:
                k[np.arange(k.shape[0]), np.arange(i, i + k.shape[0])] = 0.0
            s += float(k.sum())
        return s

    n, m = len(x), len(y)
    return total(x, x, True) / (n * (n - 1)) + total(y, y, True) / (m * (m - 1)) - 2.0 * total(x, y, False) / (n * m)


def run_child(name: str, real: Path, fake: Path, budget: int, kid_subset_size: int) -> dict:
    """One run of contender ``name`` in a fresh process (:func:`bench.common.run_child`)."""
    from bench.common import run_child as child
    return child("bench.bench_fd_kid", ["--worker", name, "--real", real, "--fake", fake, "--memory_budget", budget,
                                        "--kid_subset_size", kid_subset_size])


def summarize(results: dict) -> dict:
    """The goal's ratio, the FD agreement and the KID values side by side."""
    a, b, c, d = (results.get(x, {}) for x in ("knn", "knn_fd_kid", "fd_kid", "torch_fidelity"))
    aw, bw = results.get("knn_warm", {}), results.get("knn_fd_kid_warm", {})
    out = {"goal_ratio": GOAL}
    if "seconds" in a and "seconds" in b:
        out["b_over_a"] = b["seconds"] / a["seconds"]
        out["goal_met"] = out["b_over_a"] < GOAL
    if "seconds" in aw and "seconds" in bw:
        out["warm_b_over_a"] = bw["seconds"] / aw["seconds"]
        out["warm_goal_met"] = out["warm_b_over_a"] < GOAL
    if "seconds" in a and "seconds" in c:
        out["c_over_a"] = c["seconds"] / a["seconds"]
    if "seconds" in b and "seconds" in d:
        out["d_over_b"] = d["seconds"] / b["seconds"]
    floor = results.get("fd_floor", {}).get("floor")
    if floor is not None:  # the least (b) / (a) and (b') / (a') any float64 FD could give on this machine
        out["floor"] = floor
        if "seconds" in a:
            out["floor_b_over_a"] = (a["seconds"] + floor["floor_cold_seconds"]) / a["seconds"]
        if "seconds" in aw:
            out["floor_warm_b_over_a"] = (aw["seconds"] + floor["floor_warm_seconds"]) / aw["seconds"]
    fds = {name: r["values"]["fd"] for name, r in results.items() if "fd" in r.get("values", {})}
    out["fd"] = fds
    if "knn_fd_kid" in fds:
        ref = fds["knn_fd_kid"]
        out["fd_rel_diff"] = {name: abs(v - ref) / abs(ref) for name, v in fds.items() if name != "knn_fd_kid"}
    out["kid"] = {name: r["values"]["kid"] for name, r in results.items() if "kid" in r.get("values", {})}
    return out


def main(argv=None) -> int:
    from bench.common import contender_parser
    p = contender_parser(__doc__.splitlines()[0], CONTENDERS, n=5000, dim=2048, skip_example="torch_fidelity")
    p.add_argument("--kid_subset_size", type=int, default=TF_KID_SUBSET_SIZE,
                   help="torch-fidelity's KID subset size (its default 1000; capped at the smaller set)")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.real, args.fake, args.memory_budget, args.kid_subset_size)))
        return 0

    m = args.m or args.n
    kid_subset_size = min(args.kid_subset_size, args.n, m)
    import torch
    import torch_fidelity

    import hubness_pr
    from bench.common import ALL_METRICS, REALISTIC, cpu_model, realistic_pair, run_contenders, skipped, write_text
    info = {"n": args.n, "m": m, "dim": args.dim, "features": REALISTIC,
            "memory_budget_mib": args.memory_budget, "knn_metrics": list(ALL_METRICS),
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_fidelity": torch_fidelity.__version__, "hubness_pr": getattr(hubness_pr, "__version__", "?"),
            "threads": torch.get_num_threads(), "repeat": args.repeat,
            "tf_kid_subsets": TF_KID_SUBSETS, "tf_kid_subset_size": kid_subset_size,
            "load_average_before": os.getloadavg()}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = realistic_pair(args.n, m, args.dim, Path(tmp))
        results = run_contenders(args, CONTENDERS,
                                 lambda name: run_child(name, real, fake, args.memory_budget, kid_subset_size))
        info["load_average_after"] = os.getloadavg()
        summary = summarize(results)
        if "skip_float64" not in skipped(args) and summary["kid"]:
            print("float64 brute-force KID (untimed) ...", file=sys.stderr, flush=True)
            ref = float64_kid(real, fake)
            summary["kid_float64"] = ref
            summary["kid_rel_diff_float64"] = {name: abs(v["value"] - ref) / abs(ref)
                                               for name, v in summary["kid"].items() if not v["subsets"]}

    print(f"\n{args.n} real x {m} fake x {args.dim}-d float32 (realistic), {info['cpu']}, {info['cores']} cores, "
          f"torch {info['torch']}, torch-fidelity {info['torch_fidelity']}, median of {args.repeat} run(s)")
    print(f"{'contender':<15} {'seconds':>9} {'setup s':>8} {'peak RSS MiB':>13}")
    for name, r in results.items():
        if name == "fd_floor" and "error" not in r:
            continue  # not a contender: its line follows the ratios
        if "error" in r:
            print(f"{name:<15} failed: {r['error']}")
            continue
        print(f"{name:<15} {r['seconds']:>9.2f} {r['setup_seconds']:>8.2f} {r['peak_rss_mib']:>13.0f}")
    if "b_over_a" in summary:
        print(f"(b) k-NN + fd,kid / (a) k-NN alone: {summary['b_over_a']:.3f}x; goal < {GOAL}: "
              f"{'met' if summary['goal_met'] else 'NOT met'}")
    if "warm_b_over_a" in summary:
        print(f"(b') / (a'), real set seen before: {summary['warm_b_over_a']:.3f}x; goal < {GOAL}: "
              f"{'met' if summary['warm_goal_met'] else 'NOT met'}")
    if "floor" in summary:
        f = summary["floor"]
        eig = ", ".join(f"{k} {v:.3f} s" for k, v in f["eigvalsh_seconds"].items())
        print(f"FD's floor here: float64 GEMM {f['gemm_gflops']:.0f} GFLOP/s, steady eigvalsh {eig}; "
              f"least FD {f['floor_cold_seconds']:.3f} s from scratch, {f['floor_warm_seconds']:.3f} s for a real "
              f"set seen before: (b) / (a) >= {summary.get('floor_b_over_a', float('nan')):.3f}x, "
              f"(b') / (a') >= {summary.get('floor_warm_b_over_a', float('nan')):.3f}x")
    if "d_over_b" in summary:
        print(f"torch-fidelity FID+KID+PRC / (b): {summary['d_over_b']:.2f}x")
    for name, v in summary["fd"].items():
        print(f"FD {name:<15} {v:.10g}  rel diff to (b): {summary.get('fd_rel_diff', {}).get(name, 0.0):.2e}")
    for name, v in summary["kid"].items():
        how = f"mean, std of {v['subsets']} subsets of {v['subset_size']}" if v["subsets"] else "exact full sets, std of the estimate"
        print(f"KID {name:<14} {v['value']:.6g} +- {v['std']:.3g} ({how})")
    for name, v in summary.get("kid_rel_diff_float64", {}).items():
        print(f"KID {name:<14} rel diff to the float64 brute force {summary['kid_float64']:.10g}: {v:.2e}")
    if args.json:
        write_text(args.json, json.dumps({"info": info, "results": results, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
