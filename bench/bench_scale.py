#!/usr/bin/env python3
"""Benchmark at scale, in one run: writes bench/RESULTS.md (and bench/results/scale.json).

1. Sizes: N = M = 5k, 10k, 20k, 50k x 4096 (random ReLU features): the toolkit with every metric,
   eP&R alone, prdc (its four metrics) while it fits in memory (three N x N float32 matrices), and the
   bare GEMM floor; wall time and peak RSS, each in its own process (bench.bench_metrics's workers).
2. The real set computed once: the metric command on a 200,000 x 2,048 real set against 10,000
   generated samples, first with an empty summary cache (it computes the real set's k-NN pass and
   stores it) then again (it reuses it); both JSONs must be identical but for timings and the cache
   status.
3. A set larger than the budget, memory-mapped: the metric command on a real .npy of --mmap_n x 512
   (default 300,000) against 10,000 generated samples, with its peak *anonymous* memory (sampled
   from /proc: what is not file cache) against the bound "tile budget + per-sample vectors".
4. Processes: the metric command on 20k x 4096, one process with 2 threads against torchrun with 2
   processes of 1 thread (Gloo).

Each command runs as a child process; its wall time is measured around it and its memory sampled
every 20 ms from /proc (summed over the process tree for torchrun). The large sizes take tens of
minutes on 2 cores and are not run in CI (the test suite runs ``--toy``).

Usage (from the repository root):  python -m bench.bench_scale [--toy] [--skip sizes,cache,mmap,procs] [--out bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import bench_metrics  # the per-contender child processes of the size table
from bench.common import ALL_METRICS, cpu_model, fmt, ratio, table, write_text

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = ROOT / "improved_precision_recall_hubness.py"
RAM_FOR_PRDC = 0.8  # prdc runs while its three N x N float32 matrices fit in this share of the RAM
# the run's per-sample vectors, bytes a sample (k = 3, dc_k = 5): norms (float64 + float32) 12, k-NN
# candidates (k_max + 16) x (float32 + int64) 252, the graph k_max x (int64 + float64) 80, radii in
# three float64 copies and their float32 and frame-unit copies 48, flags and counts 16
PER_SAMPLE_BYTES = 12 + 252 + 80 + 48 + 16


def _tree(pid: int) -> list:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    todo += [int(c) for c in handle.read().split()]
        except OSError:
            pass
    return out


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list, env: dict | None = None, cwd=None) -> dict:
    """Run ``cmd``; wall time, exit status and the peaks of its process tree's RSS and anonymous
    memory (sampled every 20 ms), in MiB."""
    peaks = {"rss": 0, "anon": 0}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            pids = _tree(proc.pid)
            peaks["rss"] = max(peaks["rss"], sum(_status_kib(p, "VmRSS") for p in pids))
            peaks["anon"] = max(peaks["anon"], sum(_status_kib(p, "RssAnon") for p in pids))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    if proc.returncode != 0:
        ours = [line for line in err.splitlines() if ": error:" in line]  # the command's own one-line error
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): "
                           f"{ours[0] if ours else err.strip()[-1500:]}")
    return {"seconds": seconds, "peak_rss_mib": peaks["rss"] / 1024, "peak_anon_mib": peaks["anon"] / 1024,
            "stdout": out}


def relu(rng, n, dim, scale=1.0, shift=0.0):
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        block = rng.standard_normal((min(8192, n - start), dim), dtype=np.float32)
        out[start:start + block.shape[0]] = np.maximum(block * scale + shift, 0)
    return out


def sizes_table(sizes, dim, repeat, budget_mib) -> list:
    rows = []
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            real, fake = bench_metrics.make_data(n, n, dim, Path(tmp))
            row = {"n": n, "dim": dim}
            for name in ("toolkit", "epr", "prdc", "floor"):
                if name == "prdc" and 3 * 4 * n * n > RAM_FOR_PRDC * ram:
                    row[name] = {"skipped": f"needs three {n} x {n} float32 matrices ({3 * 4 * n * n / 2**30:.0f} GiB)"}
                    continue
                runs = [bench_metrics.run_child(name, real, fake, budget_mib) for _ in range(repeat)]
                ok = [r for r in runs if "error" not in r]
                row[name] = ({"error": runs[0]["error"]} if not ok else
                             {"seconds": float(np.median([r["seconds"] for r in ok])),
                              "peak_rss_mib": max(r["peak_rss_mib"] for r in ok)})
                print(f"  {n} x {n} x {dim} {name}: {row[name]}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def cache_case(n_real, n_fake, dim, tmp: Path) -> dict:
    rng = np.random.default_rng(7)
    np.save(tmp / "real.npy", relu(rng, n_real, dim))
    np.save(tmp / "fake.npy", relu(rng, n_fake, dim, 1.02, 0.02))
    env = {"HUBNESS_CACHE": str(tmp / "cache")}
    runs = {}
    for name in ("cold", "warm"):
        runs[name] = measure([sys.executable, str(SCRIPT), "real.npy", "fake.npy", "--json", f"{name}.json",
                              "--no-progress"], env=env, cwd=tmp)
        runs[name]["json"] = json.loads((tmp / f"{name}.json").read_text())
        print(f"  cache {name}: {runs[name]['seconds']:.1f} s", file=sys.stderr, flush=True)

    def strip(document):
        return {key: v for key, v in document.items() if key not in ("timings", "seconds", "cache")}

    identical = strip(runs["cold"]["json"]) == strip(runs["warm"]["json"])
    return {"n_real": n_real, "n_fake": n_fake, "dim": dim, "identical_json": identical,
            "cold": {k: runs["cold"][k] for k in ("seconds", "peak_rss_mib", "peak_anon_mib")},
            "warm": {k: runs["warm"][k] for k in ("seconds", "peak_rss_mib", "peak_anon_mib")},
            "status": [runs[k]["json"]["cache"]["real"]["status"] for k in ("cold", "warm")],
            "speedup": runs["cold"]["seconds"] / runs["warm"]["seconds"],
            "timings_cold": runs["cold"]["json"]["timings"], "timings_warm": runs["warm"]["json"]["timings"]}


def mmap_case(n_real, n_fake, dim, budget_mib, tmp: Path) -> dict:
    rng = np.random.default_rng(8)
    np.save(tmp / "big_real.npy", relu(rng, n_real, dim))
    np.save(tmp / "big_fake.npy", relu(rng, n_fake, dim, 1.02, 0.02))
    np.save(tmp / "tiny.npy", relu(rng, 50, dim))
    # the command's own memory: the same command on a tiny input, with the fused kernels loaded as the
    # big run loads them (numba's compiler holds ~100 MiB)
    base = measure([sys.executable, str(SCRIPT), "tiny.npy", "tiny.npy", "--no_cache", "--no-progress"], cwd=tmp,
                   env={"HUBNESS_KERNELS": "fused"})
    run = measure([sys.executable, str(SCRIPT), "big_real.npy", "big_fake.npy", "--json", "big.json", "--no_cache",
                   "--no-progress", "--memory_budget", str(budget_mib)], cwd=tmp)
    per_sample = (n_real + n_fake) * PER_SAMPLE_BYTES
    print(f"  mmap {n_real} x {dim}: {run['seconds']:.1f} s, anon {run['peak_anon_mib']:.0f} MiB", file=sys.stderr)
    return {"n_real": n_real, "n_fake": n_fake, "dim": dim, "memory_budget_mib": budget_mib,
            "file_mib": (n_real + n_fake) * dim * 4 / 2**20, "seconds": run["seconds"],
            "peak_rss_mib": run["peak_rss_mib"], "peak_anon_mib": run["peak_anon_mib"],
            "imports_anon_mib": base["peak_anon_mib"], "per_sample_mib": per_sample / 2**20,
            "bound_mib": base["peak_anon_mib"] + budget_mib + per_sample / 2**20}


def processes_case(n, dim, tmp: Path) -> dict:
    rng = np.random.default_rng(9)
    np.save(tmp / "p_real.npy", relu(rng, n, dim))
    np.save(tmp / "p_fake.npy", relu(rng, n, dim, 1.02, 0.02))
    args = [str(SCRIPT), "p_real.npy", "p_fake.npy", "--no_cache", "--no-progress", "--device", "cpu"]
    one = measure([sys.executable, *args, "--json", "one.json"], env={"OMP_NUM_THREADS": "2"}, cwd=tmp)
    two = measure([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args,
                   "--json", "two.json"], env={"OMP_NUM_THREADS": "1"}, cwd=tmp)
    a, b = (json.loads((tmp / f).read_text()) for f in ("one.json", "two.json"))
    same = all(a[key] == b[key] for key in ALL_METRICS)
    one["compute"], two["compute"] = a["timings"]["total"], b["timings"]["total"]
    print(f"  processes: 1x2 threads {one['seconds']:.1f} s, 2x1 {two['seconds']:.1f} s", file=sys.stderr)
    keys = ("seconds", "compute", "peak_rss_mib")
    return {"n": n, "dim": dim, "one_process_two_threads": {k: one[k] for k in keys},
            "two_processes_one_thread": {k: two[k] for k in keys}, "same_results": same}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Benchmark results", "",
             f"Written by `python -m bench.bench_scale{' --toy' if report['toy'] else ''}` on {report['date']}: "
             f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']:.0f} GiB RAM, Python {m['python']}, torch {m['torch']}, "
             f"default tile budget 256 MiB. Times are wall clock of a fresh process (for the sizes, of the "
             "timed call in it); memory is peak RSS unless said. Raw numbers: `bench/results/scale.json`.", ""]
    if "sizes" in report:
        def timed(r):
            return r.get("skipped", r.get("error")) if "seconds" not in r else \
                f"{fmt(r['seconds'], digits=2)} s, {r['peak_rss_mib']:,.0f} MiB"

        body = [[f"{row['n']:,}", *(timed(row[name]) for name in ("toolkit", "epr", "prdc", "floor")),
                 ratio(row["toolkit"], row["floor"], 2), ratio(row["prdc"], row["toolkit"], 1)]
                for row in report["sizes"]]
        lines += ["## Sizes (N = M, 4096-d random ReLU features)", "",
                  table(["N = M", "all metrics", "eP&R alone", "prdc (P, R, D, C)", "GEMM floor", "all / floor",
                         "prdc / all"], body)]
    if "cache" in report:
        c = report["cache"]
        lines += [f"## The real set once: {c['n_real']:,} x {c['dim']:,} real, {c['n_fake']:,} generated", "",
                  "| metric command | wall time | peak RSS | cache |", "|---|---|---|---|",
                  f"| first run (empty cache: computes and stores the real summary) | {c['cold']['seconds']:.1f} s | "
                  f"{c['cold']['peak_rss_mib']:,.0f} MiB | {c['status'][0]} |",
                  f"| next run (reuses it) | {c['warm']['seconds']:.1f} s | {c['warm']['peak_rss_mib']:,.0f} MiB | "
                  f"{c['status'][1]} |", "",
                  f"Speed-up {c['speedup']:.1f}x; the two JSONs are {'identical' if c['identical_json'] else 'DIFFERENT'} "
                  "but for timings and the cache status.", ""]
    if "mmap" in report:
        r = report["mmap"]
        lines += [f"## A memory-mapped real set: {r['n_real']:,} x {r['dim']} ({r['file_mib']:,.0f} MiB of .npy) "
                  f"against {r['n_fake']:,}", "",
                  f"{r['seconds']:.1f} s; peak RSS {r['peak_rss_mib']:,.0f} MiB (file pages included), peak anonymous "
                  f"memory {r['peak_anon_mib']:,.0f} MiB against the bound {r['bound_mib']:,.0f} MiB = the command on a "
                  f"tiny input {r['imports_anon_mib']:,.0f} + tile budget {r['memory_budget_mib']} + per-sample vectors "
                  f"{r['per_sample_mib']:,.0f} MiB.", ""]
    if "processes" in report:
        r = report["processes"]
        one, two = r["one_process_two_threads"], r["two_processes_one_thread"]
        lines += [f"## Processes: {r['n']:,} x {r['n']:,} x {r['dim']}, every metric, CPU", "",
                  "| run | wall time | of which evaluate | peak RSS (all processes) |", "|---|---|---|---|",
                  f"| 1 process, 2 threads | {one['seconds']:.1f} s | {one['compute']:.1f} s | "
                  f"{one['peak_rss_mib']:,.0f} MiB |",
                  f"| torchrun, 2 processes of 1 thread (Gloo) | {two['seconds']:.1f} s | {two['compute']:.1f} s | "
                  f"{two['peak_rss_mib']:,.0f} MiB |",
                  "", f"Same results: {r['same_results']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toy", action="store_true", help="tiny sizes (seconds; the test suite runs this)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: sizes, cache, mmap, procs")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "scale.json"))
    p.add_argument("--mmap_n", type=int, default=300_000)
    p.add_argument("--sizes", default=None, help="comma list of N for the size table (default 5000,10000,20000,50000)")
    p.add_argument("--merge", action="store_true",
                   help="keep the parts of an earlier bench/results/scale.json that this run skips")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    import torch
    if args.toy:
        sizes, dim, cache_n, mmap_n, procs_n, budget = (300,), 64, (2000, 300, 32), 3000, 400, 4
    else:
        sizes, dim, cache_n, mmap_n, procs_n, budget = (5000, 10000, 20000, 50000), 4096, (200_000, 10_000, 2048), \
            args.mmap_n, 20_000, 256
    report = {"toy": args.toy, "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__,
                          "ram_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30}}
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
    if args.merge and Path(args.json).is_file():  # parts measured earlier, kept where this run skips them
        earlier = json.loads(Path(args.json).read_text())
        report.update({key: earlier[key] for key in ("sizes", "cache", "mmap", "processes")
                       if key in earlier and ({"sizes": "sizes", "cache": "cache", "mmap": "mmap",
                                               "processes": "procs"}[key] in skip or key == "sizes")})
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        if "sizes" not in skip:
            print("sizes ...", file=sys.stderr, flush=True)
            rows = sizes_table(sizes, dim, args.repeat, budget)
            if args.merge:  # rows of sizes not measured now are kept from the earlier run
                rows += [row for row in report.get("sizes", []) if row["n"] not in sizes]
            report["sizes"] = sorted(rows, key=lambda row: row["n"])
        if "cache" not in skip:
            print("the real set once ...", file=sys.stderr, flush=True)
            report["cache"] = cache_case(*cache_n, tmp)
        if "mmap" not in skip:
            print("memory-mapped ...", file=sys.stderr, flush=True)
            report["mmap"] = mmap_case(mmap_n, 10_000 if not args.toy else 300, 512 if not args.toy else 32, budget, tmp)
        if "procs" not in skip:
            print("processes ...", file=sys.stderr, flush=True)
            report["processes"] = processes_case(procs_n, dim, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = markdown(report)
    write_text(args.out, text + "\n")
    write_text(args.json, json.dumps(report, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
