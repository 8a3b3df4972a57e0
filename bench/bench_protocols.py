#!/usr/bin/env python3
"""Benchmark: each protocol preset (``--protocol``) against its peer's computation, on the same features.

Each contender runs in its own child process on the same real-looking float32 features
(``bench.gpu_check.realistic``: real seed 1, fake seed 2 with 2 of 20 clusters dropped), timed and its
peak resident memory read:

* ``ours_prdc`` / ``peer_prdc``                     prdc 0.2 ``compute_prdc(real, fake, nearest_k=5)``
* ``ours_dgm_eval`` / ``peer_dgm_eval``             dgm-eval's procedure written out, not dgm-eval's code
                                                    (tests/reference_dgm_eval_procedure.py): its seeded
                                                    subset draws, seed 0, then prdc 0.2 on the drawn rows
* ``ours_torch_fidelity`` / ``peer_torch_fidelity`` torch-fidelity's ``prc_features_to_metric``
* ``ours_sg2ada`` / ``peer_sg2ada``                 StyleGAN2-ADA's steps (tests/reference_sg2ada.py), float16

and the values of each pair are compared (they must be equal: tests/test_protocols.py holds them so).
The peers build whole N x N (or batch x N) matrices; the presets hold one tile.

Usage (from the repository root):
    python -m bench.bench_protocols --n 5000 --dim 2048 [--repeat 1] [--json out.json]
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PRESETS = ("prdc", "dgm_eval", "torch_fidelity", "sg2ada")
CONTENDERS = tuple(f"{side}_{name}" for name in PRESETS for side in ("ours", "peer"))


def _peer(name: str):
    """The peer's function of (real, fake) -> its values, imported (in the untimed setup): the registry
    package's where there is one, otherwise the peer's procedure written out in tests/."""
    import torch
    if name == "prdc":
        from prdc import compute_prdc
        return lambda real, fake: compute_prdc(real, fake, nearest_k=5)
    if name == "dgm_eval":
        from tests.reference_dgm_eval_procedure import subset_prdc
        return lambda real, fake: subset_prdc(real, fake, seed=0, nearest_k=5)
    if name == "torch_fidelity":
        from torch_fidelity.metric_prc import prc_features_to_metric
        return lambda real, fake: prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real),
                                                         prc_neighborhood=3, prc_batch_size=10000,
                                                         save_cpu_ram=False, verbose=False)
    from tests.reference_sg2ada import sg2ada_precision_recall
    return sg2ada_precision_recall


def worker(contender: str, real_path: str, fake_path: str) -> dict:
    from bench.common import peak_rss_mib, reset_peak_rss
    peak_reset = reset_peak_rss()
    side, name = contender.split("_", 1)
    real, fake = np.load(real_path), np.load(fake_path)
    t = time.perf_counter()
    import torch  # noqa: F401 - imported in the untimed setup by both sides
    if side == "ours":
        import hubness_pr
        import hubness_pr.metrics.evaluation  # noqa: F401 - the package imports lazily
        import hubness_pr.metrics.protocols  # noqa: F401
    else:
        peer = _peer(name)
    result = {"setup_seconds": time.perf_counter() - t}
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints its set sizes
        if side == "ours":
            r = hubness_pr.evaluate(real=real, fake=fake, metrics="protocol", protocol=name, device="cpu",
                                    progress=False).protocol
            values = {key: getattr(r, key) for key in ("precision", "recall", "density", "coverage", "f_score")
                      if getattr(r, key) is not None}
        else:
            values = {key: float(value) for key, value in peer(real, fake).items()}
    result["seconds"] = time.perf_counter() - t
    result["values"] = values
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_rss_reset"] = peak_reset
    return result


def main(argv=None) -> int:
    from bench.common import contender_parser
    p = contender_parser(__doc__.splitlines()[0], CONTENDERS, n=5000, dim=2048, skip_example="peer_prdc")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.real, args.fake)))
        return 0

    import torch

    from bench.common import REALISTIC, cpu_model, realistic_pair, run_child, run_contenders, write_text
    m = args.m or args.n
    info = {"n": args.n, "m": m, "dim": args.dim, "features": REALISTIC, "cpu": cpu_model(),
            "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "repeat": args.repeat, "load_average_before": os.getloadavg()}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = realistic_pair(args.n, m, args.dim, Path(tmp))
        results = run_contenders(args, CONTENDERS, lambda name: run_child(
            "bench.bench_protocols", ["--worker", name, "--real", real, "--fake", fake]))
    info["load_average_after"] = os.getloadavg()
    summary = {}
    print(f"\n{args.n} real x {m} fake x {args.dim}-d float32 (realistic), {info['cpu']}, {info['cores']} cores, "
          f"torch {info['torch']}, median of {args.repeat} run(s)")
    print(f"{'preset':<15} {'ours s':>8} {'peer s':>8} {'peer/ours':>9} {'ours MiB':>9} {'peer MiB':>9}  same values")
    for name in PRESETS:
        ours, peer = results.get(f"ours_{name}", {}), results.get(f"peer_{name}", {})
        if "seconds" not in ours or "seconds" not in peer:
            errors = "; ".join(r["error"] for r in (ours, peer) if "error" in r)
            print(f"{name:<15} not compared{': ' + errors if errors else ''}")
            continue
        same = ours["values"] == peer["values"]
        summary[name] = {"peer_over_ours_seconds": peer["seconds"] / ours["seconds"], "same_values": same}
        print(f"{name:<15} {ours['seconds']:>8.2f} {peer['seconds']:>8.2f} {peer['seconds'] / ours['seconds']:>8.2f}x "
              f"{ours['peak_rss_mib']:>9.0f} {peer['peak_rss_mib']:>9.0f}  {same}")
    if args.json:
        write_text(args.json, json.dumps({"info": info, "results": results, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
