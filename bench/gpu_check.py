#!/usr/bin/env python3
"""The GPU check: the CUDA route (torch code on a GPU) tested and timed in one command.

1. ``pytest -m cuda``: the test suite's CUDA tests (tests/test_cuda.py: the oracle on ordinary data
   and on every hard case, the k-NN on ties and duplicates).
2. CPU vs CUDA on every hard case of hubness_pr.engine.hard_cases (collapse, offsets, 2^-120..2^60 scales,
   ties, duplicates, a distance one rounding from a radius): every decision, the k-occurrence of both
   sets, rarity and realism.
3. CPU vs CUDA on 20,000 x 2,048 real-looking features (sparse non-negative, clustered, a generator
   that drops modes), the same comparisons, with both times.
4. Every metric and the bare GEMM floor timed on CUDA at 5k, 50k and 70k x 4096 (FFHQ scale), with
   the peak GPU memory; at 50k also with a 4 GiB tile budget.
5. Scale: a 200,000 x 2,048 real set against 10,000 generated samples with and without its k-NN graph
   computed once (identical results), the largest N = M that fits the time (200,000 x 2,048), and a
   note on several GPUs (torchrun; measured only where the machine has them).
6. The several-process route on this device: a one-process NCCL group (Gloo on the CPU) driven
   through every collective of :mod:`hubness_pr.engine.distributed` equals the plain run; getFeature.py on
   the device writes a streamed ``.npy`` equal to its ``.npz``.

Results: ``OUT/gpu_check.json`` (``--out``, default bench/results) and a summary on stdout; exit status
1 if any comparison differs or a CUDA test fails. Nothing is downloaded. About 4-6 minutes on one H100.
``--toy`` runs the same steps at toy sizes on any device (the test suite runs it on the CPU, with the
fused CPU kernels against the torch route as the two "devices"), so the script cannot break unnoticed.

Usage (from the repository root):  python -m bench.gpu_check [--out DIR] [--toy] [--device cuda] [--no-pytest]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import hubness_pr
from bench.common import ALL_METRICS, VALUE_METRICS, values

ROOT = Path(__file__).resolve().parent.parent


def realistic(n: int, dim: int, seed: int, drop: int = 0) -> np.ndarray:
    """Real-looking features: a clustered 64-d latent through a random layer and a ReLU (about 3/4
    zeros, skewed, per-feature scales), as VGG fc2 features are. ``drop`` clusters are left out (a
    generator that drops modes)."""
    rng = np.random.default_rng(1000)  # the same latent model for every set
    centres = rng.standard_normal((20, 64)) * 1.5
    weights = rng.standard_normal((64, dim)) / 8
    scales = np.exp(rng.standard_normal(dim) * 0.5)
    rng = np.random.default_rng(seed)
    which = rng.integers(drop, 20, n)
    z = centres[which] + 0.6 * rng.standard_normal((n, 64))
    return (np.maximum(z @ weights - 0.7, 0) * scales).astype(np.float32)


def compare(a, b) -> dict:
    """Which results of two Evaluations differ: decisions exactly; realism to 1e-5 relative (it is
    exact unless two reals give a fake ratios within the float32 screen's error of each other, where
    the routes may pick either: hubness_pr/engine/cross.py)."""
    out = {}
    da, db = (hubness_pr.json_safe(hubness_pr.to_dict(e)) for e in (a, b))
    for name in VALUE_METRICS:
        out[name] = da[name] == db[name]
    out["fake_k_occurrence"] = bool(np.array_equal(a.fake_k_occurrence, b.fake_k_occurrence))
    out["hubness_real"] = a.hubness_real == b.hubness_real
    out["in_real_manifold"] = bool(np.array_equal(a.fake_in_real_manifold, b.fake_in_real_manifold))
    out["rarity"] = bool(np.array_equal(a.rarity.scores, b.rarity.scores, equal_nan=True))
    ra, rb = a.realism.scores, b.realism.scores
    both = np.isfinite(ra) & np.isfinite(rb)
    rel = float(np.max(np.abs(ra[both] - rb[both]) / np.maximum(rb[both], 1e-300), initial=0.0))
    out["realism"] = bool(np.array_equal(np.isfinite(ra), np.isfinite(rb)) and rel <= 1e-5)
    out["realism_max_rel_diff"] = rel
    return out


def step_pytest(timeout: int) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail = (proc.stdout + proc.stderr).strip().splitlines()
        return {"returncode": proc.returncode, "summary": tail[-1] if tail else "", "tail": tail[-30:],
                "seconds": time.perf_counter() - t}
    except subprocess.TimeoutExpired:
        return {"returncode": -1, "summary": f"timed out after {timeout} s", "seconds": timeout}


def run(device_a: str, device_b: str, real, fake, **options):
    """Evaluate on both devices (``cpu/torch`` selects the CPU's torch route); return both and times."""
    results, seconds = [], []
    for device in (device_a, device_b):
        route = device.split("/")
        # the CPU reference is the fused kernels whatever the size; "cpu/torch" the torch route
        t = time.perf_counter()
        results.append(hubness_pr.evaluate(real=real, fake=fake, device=route[0], progress=False,
                                        route="torch" if route[-1] == "torch" else "fused", **options))
        seconds.append(time.perf_counter() - t)
    return results, seconds


def step_hard_cases(device_a: str, device_b: str) -> dict:
    from hubness_pr.engine import hard_cases
    out = {}
    for name, (real, fake, options) in hard_cases.all_cases().items():
        (a, b), _ = run(device_a, device_b, real, fake, **options)
        out[name] = compare(a, b)
    return out


def step_realistic(device_a: str, device_b: str, n: int, dim: int) -> dict:
    real, fake = realistic(n, dim, seed=1), realistic(n, dim, seed=2, drop=4)
    (a, b), seconds = run(device_a, device_b, real, fake)
    result = compare(a, b)
    result.update(n=n, dim=dim, seconds={device_a: seconds[0], device_b: seconds[1]},
                  values=values(b),
                  diagnostics={device_a: a.diagnostics, device_b: b.diagnostics})
    return result


class Gpu:
    """Synchronisation and peak memory of the device under test (no-ops and NaN off CUDA)."""

    def __init__(self, device: str):
        import torch
        self.torch, self.cuda = torch, device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def peak_reset(self) -> None:
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak(self) -> float:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else float("nan")


def step_timing(device: str, sizes, dim: int, budgets_mib, repeat: int, rows: list, save, deadline: float) -> None:
    import torch

    from bench.bench_metrics import gemm_floor
    gpu = Gpu(device)
    sync, peak_reset, peak = gpu.sync, gpu.peak_reset, gpu.peak
    # warm-up (CUDA context, cuBLAS handles, kernels) at a small size, not timed
    warm = realistic(600, dim, seed=3)
    hubness_pr.evaluate(real=warm, fake=warm[::-1].copy(), device=device, progress=False)
    for n in sizes:
        if time.perf_counter() > deadline:
            rows.append({"n": n, "skipped": "time limit reached"})
            print(f"  {n}: skipped (time limit)", flush=True)
            continue
        gen = torch.Generator().manual_seed(n)
        real = torch.relu(torch.randn((n, dim), generator=gen)).numpy()
        fake = torch.relu(torch.randn((n, dim), generator=gen) * 1.02 + 0.02).numpy()
        for budget in budgets_mib.get(n, budgets_mib["default"]):
            times, floor_times = [], []
            for _ in range(repeat if n <= 10_000 else 1):
                peak_reset()
                t = time.perf_counter()
                ev = hubness_pr.evaluate(real=real, fake=fake, device=device, memory_budget=budget * 2**20,
                                      progress=False)
                sync()
                times.append(time.perf_counter() - t)
                peak_all = peak()
                peak_reset()
                t = time.perf_counter()
                floor = gemm_floor(real, fake, budget, device=device)
                sync()
                floor_times.append(time.perf_counter() - t)
                peak_floor = peak()
            peak_reset()
            t = time.perf_counter()
            epr = hubness_pr.evaluate(real=real, fake=fake, metrics="epr", device=device, memory_budget=budget * 2**20,
                                   progress=False)
            sync()
            epr_seconds = time.perf_counter() - t
            rows.append({"n": n, "dim": dim, "memory_budget_mib": budget, "seconds": float(np.median(times)),
                         "seconds_all": times, "floor_seconds": float(np.median(floor_times)),
                         "epr_seconds": epr_seconds, "peak_gpu_mib": peak_all, "peak_gpu_mib_floor": peak_floor,
                         "timings": ev.timings, "diagnostics": ev.diagnostics, "tiles": floor["tiles"],
                         "values": values(ev),
                         "epr_alone": hubness_pr.to_dict(epr)["epr"]})
            print(f"  {n} x {n} x {dim}, budget {budget} MiB: all metrics {rows[-1]['seconds']:.2f} s, "
                  f"floor {rows[-1]['floor_seconds']:.2f} s, eP&R alone {epr_seconds:.2f} s, "
                  f"peak GPU {peak_all:.0f} MiB", flush=True)
            save()
        del real, fake


def step_scale(device: str, cached: tuple, largest: tuple, deadline: float) -> dict:
    """The real set computed once (its k-NN graph passed to evaluate: identical results, and the time
    without the real set's pass), the largest N = M that fits the time, and the GPUs there are."""
    import torch
    gpu = Gpu(device)
    cuda, sync = gpu.cuda, gpu.sync
    out = {"gpus": torch.cuda.device_count() if cuda else 0,
           "several_gpus": "not measured: this machine has one GPU" if cuda and torch.cuda.device_count() < 2 else
                           "torchrun --nproc_per_node=G improved_precision_recall_hubness.py ... (see README)"}
    n_real, n_fake, dim = cached
    gen = torch.Generator().manual_seed(11)
    real = torch.relu(torch.randn((n_real, dim), generator=gen)).numpy()
    fake = torch.relu(torch.randn((n_fake, dim), generator=gen) * 1.02 + 0.02).numpy()
    k_max, ks = hubness_pr.real_knn_needs(ALL_METRICS, 3, 5)
    t = time.perf_counter()
    full = hubness_pr.evaluate(real=real, fake=fake, device=device, progress=False)
    sync()
    t_full = time.perf_counter() - t
    t = time.perf_counter()
    graph = hubness_pr.nearest_neighbors(real, k_max, exact_ks=ks, device=device, progress=False)
    sync()
    t_graph = time.perf_counter() - t
    t = time.perf_counter()
    reused = hubness_pr.evaluate(real=real, fake=fake, device=device, real_knn=graph, progress=False)
    sync()
    t_reused = time.perf_counter() - t
    same = compare(full, reused)
    out["cached"] = {"n_real": n_real, "n_fake": n_fake, "dim": dim, "all_metrics_seconds": t_full,
                     "real_graph_seconds": t_graph, "with_cached_real_seconds": t_reused,
                     "speedup": t_full / t_reused, "identical": all(v is not False for v in same.values())}
    print(f"  cached real set {n_real} x {dim} vs {n_fake}: {t_full:.2f} s -> {t_reused:.2f} s "
          f"({t_full / t_reused:.1f}x), identical {out['cached']['identical']}", flush=True)
    del real, fake, graph
    out["largest"] = []
    for n, dim in largest:
        if time.perf_counter() > deadline:
            out["largest"].append({"n": n, "dim": dim, "skipped": "time limit reached"})
            continue
        gen = torch.Generator().manual_seed(n)
        real = torch.relu(torch.randn((n, dim), generator=gen)).numpy()
        fake = torch.relu(torch.randn((n, dim), generator=gen) * 1.02 + 0.02).numpy()
        gpu.peak_reset()
        t = time.perf_counter()
        ev = hubness_pr.evaluate(real=real, fake=fake, device=device, memory_budget=4096 * 2**20, progress=False)
        sync()
        row = {"n": n, "dim": dim, "seconds": time.perf_counter() - t, "memory_budget_mib": 4096,
               "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
               "values": values(ev)}
        out["largest"].append(row)
        print(f"  {n} x {n} x {dim}, all metrics: {row['seconds']:.1f} s", flush=True)
        del real, fake
    return out


def step_processes(device: str, n: int, dim: int, images: int, workdir: Path) -> dict:
    """The torch.distributed code on this device: a process group of one (NCCL on CUDA, Gloo on the
    CPU) whose Group is made to act as several (every gather and combine runs), against the plain run;
    and getFeature.py on the device, .npy (streamed from shards) against .npz, and against the same
    images' features extracted on the CPU (full float32 on both: equal up to float32 rounding)."""
    import socket

    import torch
    from PIL import Image

    from hubness_pr import load_features
    from hubness_pr.engine import distributed
    from hubness_pr.commands.features import main as extract_main

    class Acting(distributed.Group):  # world 1, yet every collective runs
        @property
        def active(self) -> bool:
            return True

    cuda = device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen = torch.Generator().manual_seed(5)
    real = torch.relu(torch.randn((n, dim), generator=gen)).numpy()
    fake = torch.relu(torch.randn((n, dim), generator=gen) * 1.05).numpy()
    out = {"backend": backend}
    torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        group = Acting(rank=0, world=1, backend=backend)
        t = time.perf_counter()
        acted = hubness_pr.evaluate(real=real, fake=fake, device=device, memory_budget=64 * 2**20,
                                 group=group, progress=False)
        out["group_seconds"] = time.perf_counter() - t
    finally:
        torch.distributed.destroy_process_group()
    plain = hubness_pr.evaluate(real=real, fake=fake, device=device, memory_budget=64 * 2**20, progress=False)
    out["group_vs_plain"] = compare(plain, acted)
    folder = workdir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    for i in range(images):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    def options(on: str) -> list:
        return ["--backbone", "vgg16_random", "--num_workers", "0", "--device", on,
                "--checkpoint_every", str(max(1, images // 3))]

    codes = [extract_main([str(folder), "-o", str(workdir / name), *options(device)]) for name in ("f.npz", "f.npy")]
    codes.append(extract_main([str(folder), "-o", str(workdir / "c.npz"), *options("cpu")]))  # the same on the CPU
    whole, streamed = load_features(workdir / "f.npz"), load_features(workdir / "f.npy")
    on_cpu = load_features(workdir / "c.npz").features
    scale = float(np.abs(on_cpu).max()) or 1.0
    out["extraction"] = {"images": images, "exit_codes": codes,
                         "npy_equals_npz": bool(np.array_equal(np.asarray(streamed.features), whole.features)
                                                and list(streamed.paths) == list(whole.paths)),
                         # full float32 on both (TF32 off): float32 rounding, not TF32's ~1e-3
                         "max_rel_diff_vs_cpu": float(np.abs(whole.features - on_cpu).max()) / scale}
    return out


def machine(device: str) -> dict:
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "toolkit": hubness_pr.__version__, "device": device, "cpu_count": os.cpu_count()}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_mib=props.total_memory // 2**20, cuda=torch.version.cuda,
                    multiprocessors=props.multi_processor_count)
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for gpu_check.json")
    p.add_argument("--device", default="cuda", help="the device under test (compared with the CPU)")
    p.add_argument("--toy", action="store_true", help="toy sizes (seconds, any device)")
    p.add_argument("--no-pytest", dest="pytest", action="store_false", help="skip step 1")
    p.add_argument("--time_limit", type=float, default=400,
                   help="seconds after which no further size is timed (the sizes left are listed as skipped)")
    args = p.parse_args(argv)

    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --toy --device cpu for the CPU-sized run)", file=sys.stderr)
        return 2
    # the CPU reference is the fused CPU route; on a CPU-only run the other "device" is the torch route
    other = args.device if args.device.startswith("cuda") else "cpu/torch"
    if args.toy:
        real_n, real_dim, sizes, dim, budgets, repeat = 600, 64, (300, 800), 128, {"default": (1, 8)}, 1
        cached, largest = (2_000, 300, 32), ((1_000, 32),)
        processes = (700, 48, 7)
    else:
        real_n, real_dim, sizes, dim, repeat = 20_000, 2048, (5_000, 50_000, 70_000), 4096, 3
        budgets = {"default": (256,), 50_000: (256, 4096)}
        cached, largest = (200_000, 10_000, 2048), ((200_000, 2048),)
        processes = (30_000, 512, 200)
    report = {"machine": machine(args.device), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("gpu_check_toy.json" if args.toy else "gpu_check.json")
    t0 = time.perf_counter()

    def save():  # after every step, so that a run cut short keeps what it measured
        report["seconds"] = time.perf_counter() - t0
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
        os.replace(tmp, path)

    print(f"gpu_check on {report['machine']}", flush=True)
    ok = True
    if args.pytest:
        print("1. pytest -m cuda ...", flush=True)
        report["pytest"] = step_pytest(timeout=300)
        print("  " + report["pytest"]["summary"], flush=True)
        ok &= report["pytest"]["returncode"] == 0
        save()
    print(f"2. hard cases, cpu vs {other} ...", flush=True)
    report["hard_cases"] = step_hard_cases("cpu", other)
    for name, result in report["hard_cases"].items():
        bad = [key for key, v in result.items() if v is False]
        ok &= not bad
        print(f"  {name:<20} {'equal' if not bad else 'DIFFERS: ' + ', '.join(bad)}", flush=True)
    save()
    print(f"3. {real_n} x {real_dim} real-looking features, cpu vs {other} ...", flush=True)
    report["realistic"] = step_realistic("cpu", other, real_n, real_dim)
    bad = [key for key, v in report["realistic"].items() if v is False]
    ok &= not bad
    print(f"  {'equal' if not bad else 'DIFFERS: ' + ', '.join(bad)}; seconds {report['realistic']['seconds']}",
          flush=True)
    save()
    device = other.split("/")[0]
    print(f"4. timing on {device} ...", flush=True)
    report["timing"] = []
    step_timing(device, sizes, dim, budgets, repeat, report["timing"], save, deadline=t0 + args.time_limit)
    save()
    print(f"5. scale on {device}: the real set once, the largest set ...", flush=True)
    report["scale"] = step_scale(device, cached, largest, deadline=t0 + args.time_limit)
    ok &= report["scale"]["cached"]["identical"]
    save()
    print(f"6. several processes' code and extraction on {device} ...", flush=True)
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        report["processes"] = step_processes(device, *processes, Path(work))
    bad = [key for key, v in report["processes"]["group_vs_plain"].items() if v is False]
    extraction = report["processes"]["extraction"]
    close = extraction["max_rel_diff_vs_cpu"] <= 1e-4
    ok &= not bad and extraction["npy_equals_npz"] and extraction["exit_codes"] == [0, 0, 0] and close
    print(f"  {report['processes']['backend']} group {'equal' if not bad else 'DIFFERS: ' + ', '.join(bad)}; "
          f"getFeature .npy {'equals' if extraction['npy_equals_npz'] else 'DIFFERS from'} .npz "
          f"(exit codes {extraction['exit_codes']}); features {extraction['max_rel_diff_vs_cpu']:.1e} from the "
          f"CPU's (relative, {'ok' if close else 'ABOVE'} 1e-4)", flush=True)
    report["ok"] = bool(ok)
    save()
    print(f"{'OK' if ok else 'FAILED'} in {report['seconds']:.0f} s; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
