"""``improved_precision_recall_hubness.py REAL FAKE``: every metric of FAKE against REAL in one run.

stdout: ``precision:`` and ``recall:`` (eP&R, as the original script printed) then one
``name: value`` line per further figure. Progress bars and logs: stderr. ``--json``,
``--per_sample`` and ``--plot`` are checked before any work and written together
(:class:`features.outputs.OutputFiles`) before anything is printed, so a stdout that fails or whose
reader leaves (``| head -1``) cannot lose them.
"""
from __future__ import annotations

import argparse
import logging
import platform
import threading
import time

import numpy as np
import torch

import hubness
from features.cli import (OneLineParser, add_extraction_options, add_run_options, check_device, extraction_kwargs,
                          positive_int, print_results, run_main, setup_logging, write_json)
from features.images import is_image_input
from features.outputs import OutputFiles
from features.store import FeatureFile, load_features, random_subset

from ._checks import as_feature_matrix
from .report import PLOT_METRICS, summary_lines, write_per_sample_csv, write_plot

log = logging.getLogger("improved_precision_recall_hubness")
PROG = "improved_precision_recall_hubness.py"


def metric_list(text: str) -> str:
    """argparse type of ``--metrics``: an unknown name is a usage error (exit 2)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in hubness.METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric {unknown[0]!r}" if unknown else "no metric given")
    return ",".join(names)


def build_parser(prog: str = PROG) -> OneLineParser:
    p = OneLineParser(prog=prog, description=(
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
    p.add_argument("--metrics", default=",".join(hubness.METRICS), type=metric_list,
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
    """(FeatureFile with validated float32 features, row indices in the input) for a feature file or
    for images (extracted first). Errors name the file."""
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
    features = as_feature_matrix(data.features, f"{path} ({what})")
    return FeatureFile(features, data.paths, data.meta, data.source, data.key), indices


def main(argv=None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    setup_logging(args.verbosity)
    return run_main(prog, lambda: _run(args))


def _load_kernels() -> None:
    try:
        log.debug("fused kernels loaded in %.2f s", hubness.kernels.load())
    except Exception as exc:  # noqa: BLE001 - the first tile loads them again and reports what fails
        log.debug("loading the fused kernels in the background failed: %s", exc)


def _run(args) -> None:
    t_start = time.perf_counter()
    metrics, k, dc_k, hubs_k, budget, device = hubness.check_options(
        metrics=args.metrics, k=args.k, dc_k=args.dc_k, hubs_k=args.hubs_k, memory_budget=args.memory_budget * 2**20,
        device=check_device(args.device))
    if args.plot and not set(metrics) & set(PLOT_METRICS):
        raise ValueError(f"--plot {args.plot}: needs at least one of the metrics {', '.join(PLOT_METRICS)}")
    outputs = OutputFiles(inputs={"REAL": args.path_real, "FAKE": args.path_fake, "--weights": args.weights})
    planned = {option: outputs.add(getattr(args, option), f"--{option}")
               for option in ("json", "per_sample", "plot") if getattr(args, option)}

    loader = None
    if hubness.kernels.enabled(device) and not any(map(is_image_input, (args.path_real, args.path_fake))):
        # load the compiled kernels (~0.3 s) while the feature files are read; not beside image
        # extraction, whose DataLoader workers fork (a fork during an import can deadlock the child)
        loader = threading.Thread(target=_load_kernels, name="hubness-kernel-load")
        loader.start()
    try:
        _evaluate_and_report(args, t_start, metrics, k, dc_k, hubs_k, budget, device, outputs, planned)
    except KeyboardInterrupt:
        # no join: a Ctrl-C that lands inside numba's compiler (the first tile loads the kernels
        # too) can leave the loader waiting for ever; the scripts end with os._exit (cli/launch.py)
        raise
    except BaseException:
        if loader is not None:
            loader.join()
        raise
    if loader is not None:
        loader.join()  # never leave native compiler code running at interpreter exit


def _evaluate_and_report(args, t_start, metrics, k, dc_k, hubs_k, budget, device, outputs, planned) -> None:
    real, _ = _load(args.path_real, "real", args, args.seed)
    fake, fake_idx = _load(args.path_fake, "fake", args, args.seed + 1)
    if real.features.shape[1] != fake.features.shape[1]:
        raise ValueError(f"{args.path_fake} (fake): {fake.features.shape[1]}-dimensional features, but "
                         f"{args.path_real} (real) has {real.features.shape[1]}: different dimensions, "
                         "REAL and FAKE must come from the same feature extractor")
    if args.num_samples is not None:
        log.info("random subsets of %d samples (seed %d for real, %d for fake)", args.num_samples, args.seed,
                 args.seed + 1)
    t_loaded = time.perf_counter()

    try:
        evaluation = hubness.evaluate(real=real.features, fake=fake.features, metrics=metrics, k=k, dc_k=dc_k,
                                      hubs_k=hubs_k, device=device, memory_budget=budget, progress=args.progress)
    except ValueError as exc:  # "fake has 3 samples; k=3 needs at least 4 ...": name the file
        data = {"real": real, "fake": fake}.get(str(exc).split(" ", 1)[0])
        if data is None:
            raise
        raise ValueError(f"{data.source}: {exc}") from None
    seconds = time.perf_counter() - t_start

    with outputs:  # every file written, then all put in place together, or none
        if "json" in planned:
            payload = evaluation.to_dict()
            payload["params"].update(seed=args.seed, num_samples=args.num_samples)
            payload["inputs"] = {name: {"path": data.source, "key": data.key, "meta": data.meta}
                                 for name, data in (("real", real), ("fake", fake))}
            payload["versions"] = {"toolkit": hubness.__version__, "torch": torch.__version__,
                                   "numpy": np.__version__, "python": platform.python_version()}
            payload["timings"]["load"] = t_loaded - t_start
            payload["seconds"] = seconds
            with planned["json"].open("w", encoding="utf-8") as handle:
                write_json(handle, hubness.json_safe(payload))
        if "per_sample" in planned:
            with planned["per_sample"].open("w", newline="", encoding="utf-8") as handle:
                write_per_sample_csv(handle, evaluation, fake_idx, fake.paths)
        if "plot" in planned:
            with planned["plot"].open() as handle:
                write_plot(handle, evaluation)
    print_results(summary_lines(evaluation, seconds))
