"""``getFeature.py IMAGES --fname_precalc out.npz``: images -> feature file (.npz, written atomically).

IMAGES is a folder (searched recursively), a .zip, a .npy/.npz of uint8 images or a text file
listing image paths. The original script's --k, --hubsK, --toy, --featureLoc and --loop_times did
nothing for feature extraction and are gone (k and hubsK are options of the metric script).
"""
from __future__ import annotations

import argparse
import logging
import shutil

from features.outputs import OutputFiles

from features.cli import (OneLineParser, add_extraction_options, add_run_options, check_device, extraction_kwargs,
                          positive_int, run_main, setup_logging)

log = logging.getLogger("getFeature")
PROG = "getFeature.py"


def build_parser(prog: str = PROG) -> OneLineParser:
    p = OneLineParser(prog=prog, description="Extract features (default: VGG16 fc2 after ReLU) of a set of images.")
    p.add_argument("path", metavar="IMAGES", help="folder, .zip, .npy/.npz of uint8 images, or .txt list of paths")
    p.add_argument("--fname_precalc", "--fname-precalc", "-o", dest="fname_precalc", required=True, metavar="OUT.npz",
                   help="output feature file (.npz: feature, paths, meta)")
    p.add_argument("--num_samples", "--num-samples", dest="num_samples", type=positive_int, default=None,
                   help="a seeded random subset of this many images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --num_samples subset and of vgg16_random")
    add_extraction_options(p)
    p.add_argument("--no_resume", "--no-resume", dest="resume", action="store_false",
                   help="ignore and replace checkpoints of an interrupted run (OUT.npz.partial/)")
    p.add_argument("--checkpoint_every", "--checkpoint-every", dest="checkpoint_every", type=positive_int,
                   default=4096, help="images between two resumable checkpoints")
    p.add_argument("--compress", action="store_true", help="write a compressed .npz")
    p.add_argument("--knn_k", "--knn-k", dest="knn_k", type=k_list, default=None, metavar="K[,K...]",
                   help="also store the features' exact k-NN summary for these k (e.g. 3,5: the metric command's "
                        "--k and --dc_k), which the metric command then reuses instead of recomputing the real set's")
    add_run_options(p)
    return p


def k_list(text: str) -> tuple:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected k values like 3,5, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(f"k values must be >= 1, got {text!r}")
    return ks


def main(argv=None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    setup_logging(args.verbosity)
    return run_main(prog, lambda: _run(args), interrupted=f"{args.fname_precalc} was not written; "
                    "run the same command again to resume from the last checkpoint")


def extract_path(path, **kwargs):
    """:func:`features.extract.extract_path`, imported on first use: it loads torch, which --help and a
    usage error never need."""
    from features.extract import extract_path as extract

    return extract(path, **kwargs)


def _run(args) -> None:
    from features.store import save_features

    if not args.fname_precalc.lower().endswith(".npz"):
        raise ValueError(f"--fname_precalc {args.fname_precalc}: the output must end in .npz")
    check_device(args.device)
    outputs = OutputFiles(inputs={"IMAGES": args.path, "--weights": args.weights})
    out = outputs.add(args.fname_precalc, "--fname_precalc")
    partial = out.path.with_name(out.path.name + ".partial")
    if not args.resume:
        shutil.rmtree(partial, ignore_errors=True)
    result, meta = extract_path(args.path, num_samples=args.num_samples, seed=args.seed,
                                backbone_seed=args.seed, progress=args.progress, checkpoint_dir=partial,
                                shard_size=args.checkpoint_every,
                                **extraction_kwargs(args))
    extra = None
    if args.knn_k:  # the k-NN summary of these features, as the metric command would compute it
        from . import nearest_neighbors, summary

        k_max = max(args.knn_k)
        if result.features.shape[0] < k_max + 1:
            raise ValueError(f"--knn_k {k_max}: needs at least {k_max + 1} images, got {result.features.shape[0]}")
        graph = nearest_neighbors(result.features, k_max, exact_ks=args.knn_k, device=args.device,
                                  progress=args.progress)
        extra = summary.summary_arrays(graph, summary.SummaryKey.of(result.features, k_max, args.knn_k))
        meta["knn_summary_k"] = list(args.knn_k)
    with outputs, out.open() as handle:
        save_features(handle, result.features, paths=result.paths, meta=meta, compress=args.compress, extra=extra)
    shutil.rmtree(partial, ignore_errors=True)
    if result.skipped:
        log.warning("%d undecodable image(s) skipped (listed in meta['skipped'])", len(result.skipped))
    log.info("wrote %s: %d x %d features (%s)", out.requested, *result.features.shape, meta["backbone"])
