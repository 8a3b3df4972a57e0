"""``improved_precision_recall_hubness.py REAL FAKE``: every metric of FAKE against REAL in one run.

stdout: ``precision:`` and ``recall:`` (eP&R, as the original script printed) then one
``name: value`` line per further figure. Progress bars and logs: stderr. ``--json``,
``--per_sample`` and ``--plot`` files are written atomically.
"""
from __future__ import annotations

import logging
import platform
import sys
import threading
import time

import numpy as np
import torch

import hubness
from features.images import is_image_input
from features.store import FeatureFile, check_output_path, load_features, random_subset

from .common import (OneLineParser, add_extraction_options, add_run_options, extraction_kwargs, positive_int,
                     run_main, setup_logging, write_json)
from .report import summary_lines, write_per_sample_csv, write_plot

log = logging.getLogger("improved_precision_recall_hubness")
PROG = "improved_precision_recall_hubness.py"


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description=(
        "Precision & recall with hubness-aware sampling (eP&R), exact improved P&R, density & coverage, "
        "realism and rarity scores and hubness statistics of FAKE features against REAL features."))
    p.add_argument("path_real", metavar="REAL", help="real features: .npz (key 'feature', 'features', 'reps' "
                   "or 'arr_0') or .npy of shape (n, dim); or images (folder, .zip, uint8 array, .txt list), "
                   "whose features are extracted first (see the extraction options)")
    p.add_argument("path_fake", metavar="FAKE", help="generated features or images, as REAL")
    p.add_argument("--k", type=positive_int, default=3,
                   help="neighbourhood size of P&R, eP&R, realism, rarity and k-occurrence")
    p.add_argument("--dc_k", "--dc-k", dest="dc_k", type=positive_int, default=5,
                   help="neighbourhood size of density and coverage")
    p.add_argument("--hubsK", "--hubs_k", "--hubs-k", dest="hubs_k", type=positive_int, default=3,
                   help="hub threshold t: a hub has k-occurrence >= t")
    p.add_argument("--metrics", default=",".join(hubness.METRICS),
                   help=f"comma list drawn from {','.join(hubness.METRICS)}")
    p.add_argument("--json", metavar="PATH", help="write every result and the parameters as JSON")
    p.add_argument("--per_sample", "--per-sample", dest="per_sample", metavar="PATH",
                   help="write one CSV row per fake sample (input order)")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the per-sample score distributions")
    p.add_argument("--num_samples", "--num-samples", dest="num_samples", type=positive_int, default=None,
                   help="use a seeded random subset of this many samples of each set (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --num_samples subset")
    p.add_argument("--memory_budget", "--memory-budget", dest="memory_budget", type=positive_int,
                   default=hubness.DEFAULT_MEMORY_BUDGET // 2**20,
                   help="MiB of working memory for distance tiles")
    add_run_options(p)
    add_extraction_options(p)
    return p


def _load(path: str, what: str, args, seed: int):
    """(FeatureFile, row indices in the input) for a feature file or for images (extracted first)."""
    if is_image_input(path):
        from features.extract import extract_path
        log.info("%s: %s holds images; extracting %s features", what, path, args.backbone)
        result, meta = extract_path(path, num_samples=args.num_samples, seed=seed, progress=args.progress,
                                    **extraction_kwargs(args))
        data = FeatureFile(features=result.features, paths=result.paths, meta=meta, source=path, key="(images)")
        return data, np.arange(result.features.shape[0])
    data = load_features(path)
    log.info("%s: %s, %s, key '%s'", what, path, "x".join(map(str, data.features.shape)), data.key)
    indices = np.arange(data.features.shape[0]) if data.features.ndim else np.arange(0)
    if args.num_samples is not None and data.features.ndim == 2:
        indices = random_subset(data.features.shape[0], args.num_samples, seed, path)
        data = data.subset(indices)
    return data, indices


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbosity)
    return run_main(PROG, lambda: _run(args))


def _load_kernels() -> None:
    try:
        log.debug("fused kernels loaded in %.2f s", hubness.kernels.load())
    except Exception as exc:  # noqa: BLE001 - the first tile loads them again and reports what fails
        log.debug("loading the fused kernels in the background failed: %s", exc)


def _run(args) -> None:
    t_start = time.perf_counter()
    budget = args.memory_budget * 2**20
    metrics, k, dc_k, hubs_k, budget, device = hubness.check_options(
        metrics=args.metrics, k=args.k, dc_k=args.dc_k, hubs_k=args.hubs_k, memory_budget=budget,
        device=args.device)
    for option in ("json", "per_sample", "plot"):
        if getattr(args, option):
            check_output_path(getattr(args, option), f"--{option}")

    loader = None
    if hubness.kernels.enabled(device) and not any(map(is_image_input, (args.path_real, args.path_fake))):
        # load the compiled kernels (~0.3 s) while the feature files are read; not beside image
        # extraction, whose DataLoader workers fork (a fork during an import can deadlock the child)
        loader = threading.Thread(target=_load_kernels, name="hubness-kernel-load")
        loader.start()
    try:
        _evaluate_and_report(args, t_start, metrics, k, dc_k, hubs_k, budget, device)
    finally:
        if loader is not None:
            loader.join()  # never leave native compiler code running at interpreter exit


def _evaluate_and_report(args, t_start, metrics, k, dc_k, hubs_k, budget, device) -> None:
    real, _ = _load(args.path_real, "real", args, args.seed)
    fake, fake_idx = _load(args.path_fake, "fake", args, args.seed + 1)
    if args.num_samples is not None:
        log.info("random subsets of %d samples (seed %d for real, %d for fake)", args.num_samples, args.seed,
                 args.seed + 1)
    t_loaded = time.perf_counter()

    evaluation = hubness.evaluate(real=real.features, fake=fake.features, metrics=metrics, k=k, dc_k=dc_k,
                                  hubs_k=hubs_k, device=device, memory_budget=budget, progress=args.progress)
    seconds = time.perf_counter() - t_start
    for line in summary_lines(evaluation, seconds):
        print(line)
    sys.stdout.flush()

    if args.json:
        payload = evaluation.to_dict()
        payload["params"].update(seed=args.seed, num_samples=args.num_samples)
        payload["inputs"] = {name: {"path": data.source, "key": data.key, "meta": data.meta}
                             for name, data in (("real", real), ("fake", fake))}
        payload["versions"] = {"toolkit": hubness.__version__, "torch": torch.__version__,
                               "numpy": np.__version__, "python": platform.python_version()}
        payload["timings"]["load"] = t_loaded - t_start
        payload["seconds"] = seconds
        write_json(args.json, hubness.json_safe(payload))
    if args.per_sample:
        write_per_sample_csv(args.per_sample, evaluation, fake_idx, fake.paths)
    if args.plot:
        write_plot(args.plot, evaluation)
