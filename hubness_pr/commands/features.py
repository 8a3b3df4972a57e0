"""``getFeature.py IMAGES --fname_precalc out.npz``: images -> feature file (.npz, written atomically).

IMAGES is a folder (searched recursively), a .zip, a .npy/.npz of uint8 images or a text file
listing image paths. The original script's --k, --hubsK, --toy, --featureLoc and --loop_times did
nothing for feature extraction and are gone (k and hubsK are options of the metric script).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import stat
import zipfile

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.io.outputs import OutputFiles

from hubness_pr.commands.cli import (OneLineParser, add_extraction_options, add_route_option, add_run_options, check_device, extraction_kwargs, route_of,
                          output_path, positive_int, run_main, setup_logging)

log = logging.getLogger("getFeature")
PROG = "getFeature.py"


def build_parser(prog: str = PROG) -> OneLineParser:
    p = OneLineParser(prog=prog, description="Extract features (default: VGG16 fc2 after ReLU) of a set of images.")
    p.add_argument("path", metavar="IMAGES", help="folder, .zip, .npy/.npz of uint8 images, or .txt list of paths")
    p.add_argument("--fname_precalc", "--fname-precalc", "-o", dest="fname_precalc", required=True, metavar="OUT.npz",
                   type=output_path,
                   help="output feature file: .npz (feature, paths, meta), or .npy (features written shard by shard, "
                        "never all in memory; paths and meta in OUT.npy.json beside it)")
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
    add_route_option(p)
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
    """:func:`hubness_pr.extraction.extract.extract_path`, imported on first use: it loads torch, which --help and a
    usage error never need."""
    from hubness_pr.extraction.extract import extract_path as extract

    return extract(path, **kwargs)


def _run(args) -> None:
    from hubness_pr.commands import torchrun
    from hubness_pr.engine import distributed

    suffix = args.fname_precalc.lower().rsplit(".", 1)[-1]
    if suffix not in ("npz", "npy"):
        raise InputError(option="--fname_precalc", file=args.fname_precalc,
                         message="the output must end in .npz or .npy")
    if suffix == "npy" and args.knn_k:
        raise InputError("--knn_k: a k-NN summary is stored inside .npz feature files only (a .npy output's "
                         "summary is cached by the metric command instead)")
    # under torchrun: each rank extracts its contiguous share of the images; rank 0 writes the file
    group, device = torchrun.from_environment(args.device)
    if group.rank > 0:
        torchrun.silence()
    try:
        _extract(args, suffix, group, device)
    finally:
        distributed.shutdown(group)


def _extract(args, suffix: str, group, device: str) -> None:
    from hubness_pr.commands import torchrun
    from hubness_pr.extraction.extract import shard_features
    from hubness_pr.io.store import save_features, sidecar_path, sidecar_text, write_npy_rows

    def prepare():
        check_device(device)
        outputs = OutputFiles(inputs={"IMAGES": args.path, "--weights": args.weights})
        out = outputs.add(args.fname_precalc, "--fname_precalc")
        side = outputs.add(sidecar_path(out.requested), "--fname_precalc (its .json)") if suffix == "npy" else None
        return outputs, out, side

    outputs, out, side = torchrun.step(group, prepare)
    partial = out.path.with_name(out.path.name + ".partial")
    if group.active:
        partial = partial / f"rank{group.rank}-of-{group.world}"
    if not args.resume:
        shutil.rmtree(partial, ignore_errors=True)
    # the features stay in the checkpoint shards when they are written out shard by shard (.npy) or
    # gathered from several ranks' shards
    keep = suffix == "npz" and not group.active
    kwargs = dict(extraction_kwargs(args, seed=args.seed), device=device)
    result, meta = torchrun.step(group, lambda: extract_path(
        args.path, num_samples=args.num_samples, seed=args.seed, progress=args.progress,
        checkpoint_dir=partial, shard_size=args.checkpoint_every, keep_features=keep,
        part=(group.rank, group.world) if group.active else None, **kwargs))
    shares = group.gather_objects((result.paths, result.skipped, [str(f) for f in result.shards]))
    if group.rank > 0:
        return
    paths = [name for share_paths, _, _ in shares for name in share_paths]
    skipped = [item for _, share_skipped, _ in shares for item in share_skipped]
    shards = [f for _, _, share_shards in shares for f in share_shards]
    if not paths:
        raise InputError(file=args.path, message="none of the images could be decoded")
    meta["skipped"] = [{"path": n, "reason": r} for n, r in skipped]
    meta["processes"] = group.world
    features = result.features if keep else None
    extra = None
    if args.knn_k:  # the k-NN summary of these features, as the metric command would compute it
        from hubness_pr import RunContext, nearest_neighbors
        from hubness_pr.io import summary

        if features is None:
            features = np.concatenate(list(shard_features(shards)))
        k_max = max(args.knn_k)
        if features.shape[0] < k_max + 1:
            raise InputError(option="--knn_k", value=k_max,
                             message=f"needs at least {k_max + 1} images, got {features.shape[0]}")
        with RunContext.build(device=device, route=route_of(args), progress=args.progress) as ctx:
            graph = nearest_neighbors(features, k_max, exact_ks=args.knn_k, ctx=ctx)
        extra = summary.summary_arrays(graph, summary.SummaryKey.of(features, k_max, args.knn_k))
        meta["knn_summary_k"] = list(args.knn_k)
    dim = result.dim
    _note_replacement(out.path, out.requested, suffix, len(paths), meta.get("backbone"))
    with outputs:
        if suffix == "npy":  # streamed: one checkpoint shard in memory at a time
            with out.open() as handle:
                write_npy_rows(handle, len(paths), dim, shard_features(shards))
            with side.open("w", encoding="utf-8") as handle:
                handle.write(sidecar_text(paths, meta, len(paths), dim))
        else:
            if features is None:
                features = np.concatenate(list(shard_features(shards)))
            with out.open() as handle:
                save_features(handle, features, paths=paths, meta=meta, compress=args.compress, extra=extra)
    shutil.rmtree(out.path.with_name(out.path.name + ".partial"), ignore_errors=True)
    if skipped:
        log.warning("%d undecodable image(s) skipped (listed in meta['skipped'])", len(skipped))
    log.info("wrote %s: %d x %d features (%s)", out.requested, len(paths), dim, meta["backbone"])


def existing_features(path, suffix: str) -> tuple[int, str | None] | None:
    """(image count, backbone or None) of the feature file already at ``path``, read from its headers
    and ``meta`` (a ``.npy``: its shape and ``OUT.npy.json``); None where there is no regular file or
    it is not a feature file this can read."""
    from hubness_pr.io.store import FEATURE_KEYS, npz_header, sidecar_path

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device or FIFO given as the output: never read
            return None
        if suffix == "npy":
            count = int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
            side = sidecar_path(path)
            meta = json.loads(side.read_text(encoding="utf-8")).get("meta", {}) if side.is_file() else {}
        else:
            with np.load(path, allow_pickle=False) as data:
                key = next(k for k in FEATURE_KEYS if k in data.files)
                count = int(npz_header(data, key, str(path))[0][0])
                meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    except (OSError, ValueError, RecursionError, EOFError, IndexError, StopIteration, AttributeError,
            zipfile.BadZipFile):
        return None
    backbone = meta.get("backbone") if isinstance(meta, dict) else None
    return count, backbone if isinstance(backbone, str) else None


def _note_replacement(path, name: str, suffix: str, count: int, backbone: str | None) -> None:
    """Warn (one line) before replacing a feature file of another image count or backbone: the
    features of the other set, or of another network, are about to be lost (-q silences it)."""
    old = existing_features(path, suffix)
    if old is None:
        return
    old_count, old_backbone = old
    if old_count != count or (old_backbone is not None and old_backbone != backbone):
        log.warning("%s: replacing features of %d images (%s) with features of %d images (%s)", name, old_count,
                    old_backbone or "backbone not recorded", count, backbone)
