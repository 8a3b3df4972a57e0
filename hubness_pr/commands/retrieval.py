"""``retrieval.py``: train a hash network with HyP² loss, or evaluate a checkpoint (``--test``).

Mirrors the original command line (``--dataset --backbone --hash_bit --beta --batch_size --epochs
--rate --seed --retrieve --cuda --no_save --test``) and adds ``--output`` and the options of the
toolkit (see README.md, "Multi-label retrieval"). Results on stdout (``map: ...``), progress and
logs on stderr, files in the output folder, one line on stderr and a non-zero exit for bad input.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from hubness_pr.errors import InputError
from hubness_pr.commands.cli import (OneLineParser, add_run_options, check_device, nonnegative_int, positive_int, print_results,
                        run_main, setup_logging)
from hubness_pr.io.outputs import OutputFiles, check_output_path, write_json

from hubness_pr.hyp2 import __version__
from hubness_pr.hyp2.checkpoint import check_compatible, load_checkpoint, load_network_state, save_checkpoint
from hubness_pr.hyp2.datasets import load_dataset
from hubness_pr.hyp2.mosaic import parse_counts
from hubness_pr.hyp2.networks import build_network, network_names
from hubness_pr.hyp2.ranking import DEFAULT_MEMORY_MIB
from hubness_pr.hyp2.report import plot_history, plot_topn, write_codes, write_log
from hubness_pr.hyp2.train import TrainConfig, evaluate, train
from hubness_pr.hyp2.zeta import MAX_BITS, lookup

log = logging.getLogger("hyp2")
DATASETS = ("voc2007", "voc2012", "flickr", "nuswide", "mosaic", "features")
MAX_SEED = 2**32 - 1
# At --test these come from the checkpoint; one given on the command line must agree with it.
STORED = ("dataset", "backbone", "hash_bit", "beta", "epochs", "rate", "lr", "seed", "val_size", "num_query",
          "num_train", "mosaic_source", "mosaic_counts", "eval_every")
PLACES = ("data", "split", "features", "labels", "flickr_order")  # where the data lie: from the checkpoint unless given
EVALUATION = ("retrieve", "batch_size")           # from the checkpoint unless given (then the given one is used)
FILES = {"checkpoint": "checkpoint.pt", "metrics": "metrics.json", "log": "train_log.jsonl",
         "topn": "topn_precision.png", "history": "map_per_epoch.png", "codes": "codes.npz"}


def _bounded(kind, low, high=None, strict: bool = False):
    """argparse type: a finite ``kind`` (int or float) from ``low`` (above it when ``strict``) to ``high``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        fits = np.isfinite(value) and (value > low if strict else value >= low) and (high is None or value <= high)
        if not fits:
            bound = f"{low} to {high}" if high is not None else f"{'>' if strict else '>='} {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


def _counts(text: str) -> str:
    try:
        return ",".join(map(str, parse_counts(text).values()))
    except InputError:
        raise argparse.ArgumentTypeError(f"expected four positive integers train,val,database,query, "
                                         f"got {text!r}") from None


def build_parser(prog: str = "retrieval.py") -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description="HyP² loss: multi-label image retrieval with hash codes.")
    p.add_argument("--dataset", choices=DATASETS, default="voc2007", help="dataset (README: one command each)")
    p.add_argument("--backbone", default=None, choices=network_names(), metavar="NAME",
                   help=f"hash network: {', '.join(network_names())} (default googlenet; mlp for --dataset features)")
    p.add_argument("--hash_bit", type=_bounded(int, 1, MAX_BITS), default=48,
                   help=f"K, bits of the hash code (1 to {MAX_BITS})")
    p.add_argument("--beta", type=_bounded(float, 0), default=0.5, help="weight of the pair term (0: proxy loss only)")
    p.add_argument("--batch_size", type=positive_int, default=100, help="images per training step")
    p.add_argument("--epochs", type=positive_int, default=100, help="training epochs")
    p.add_argument("--rate", type=_bounded(float, 0, strict=True), default=0.02, help="learning rate of the proxies")
    p.add_argument("--lr", type=_bounded(float, 0, strict=True), default=None,
                   help="learning rate of the network (default: googlenet 0.02, alexnet 0.01, resnet 0.01, "
                        "pixels/mlp 0.02, backbones of features/ 0.01)")
    p.add_argument("--seed", type=_bounded(int, 0, MAX_SEED), default=0,
                   help="seeds initialisation, order, flips, dropout, splits")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="output folder (checkpoint, metrics.json, log, figures); default "
                        "result/DATASET-BACKBONE-Kbit, with --test --checkpoint FILE: FILE's folder")
    p.add_argument("--test", action="store_true",
                   help="only evaluate a checkpoint; dataset, backbone, bits and the other options of the "
                        "training come from it (options given must agree)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="the checkpoint to write (training) or to evaluate (--test); default OUTPUT/checkpoint.pt")
    p.add_argument("--retrieve", type=nonnegative_int, default=0,
                   help="R of mAP@R (0: as published; mosaic 1000; features: the database size)")
    p.add_argument("--cuda", type=nonnegative_int, default=None, metavar="N", help="same as --device cuda:N")
    p.add_argument("--no_save", action="store_true", help="write no file (the original's option)")
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="DIR", help="dataset folder (default: data for VOC, data/flickr25k, "
                                                 "data/nus_wide)")
    g.add_argument("--split", metavar="FILE", help="split file (JSON): flickr (written once when missing; "
                                                   "default DATA/hyp2_split.json) and features (required)")
    g.add_argument("--flickr_order", metavar="FILE",
                   help="flickr: write the split from this image order (the original HyP²'s flickr.txt: a JSON "
                        "list of indices into img.txt; or one index or name a line): queries first, then train, "
                        "the rest database")
    g.add_argument("--features", metavar="FILE", help="--dataset features: a feature file of getFeature.py")
    g.add_argument("--labels", metavar="FILE", help="--dataset features: lines 'path l_1 ... l_C' (0/1)")
    g.add_argument("--val_size", type=positive_int, default=None,
                   help="validation items carved from train (default 10 %%, at most 1000)")
    g.add_argument("--num_query", type=positive_int, default=1000, help="flickr: queries of a new split")
    g.add_argument("--num_train", type=positive_int, default=4000, help="flickr: training images of a new split")
    g.add_argument("--mosaic_source", choices=("digits", "fashion"), default="digits",
                   help="mosaic items: scikit-learn digits or Fashion-MNIST (Debian dataset-fashion-mnist)")
    g.add_argument("--mosaic_counts", metavar="T,V,D,Q", default=None, type=_counts,
                   help="mosaic images of train, val, database, queries (default 4000,500,2000,500)")
    g = p.add_argument_group("run")
    g.add_argument("--weights", metavar="FILE", help="pretrained weights of the backbone (torchvision state dict)")
    g.add_argument("--allow_download", action="store_true", help="let torchvision download ImageNet weights")
    g.add_argument("--eval_every", type=positive_int, default=5, help="validate every N epochs (and after the last)")
    g.add_argument("--num_workers", type=nonnegative_int, default=None,
                   help="image decoding processes (default: 0 for mosaic, CPUs up to 8 otherwise)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: 1 for pixels and mlp, whose layers are too small to share, "
                        "torch's default otherwise)")
    g.add_argument("--memory_budget", type=_bounded(float, 0, strict=True), default=DEFAULT_MEMORY_MIB, metavar="MiB",
                   help="working memory of the ranking tiles")
    add_run_options(p)
    return p


def topn_grid(n_database: int) -> list[int]:
    """N of the Top-N precision curve: 100 to 1,000 by 100 (as the paper's figures), fewer when the database is small."""
    if n_database >= 1000:
        return list(range(100, 1001, 100))
    return sorted({max(1, round(n_database * i / 10)) for i in range(1, 11)})


def _backbone(args) -> str:
    if args.dataset == "features":
        if args.backbone not in (None, "mlp"):
            raise InputError(f"--dataset features trains the hash head on the feature vectors: --backbone mlp "
                             f"(or none), not {args.backbone}")
        return "mlp"
    if args.backbone == "mlp":
        raise InputError("--backbone mlp needs --dataset features (feature vectors, not images)")
    return args.backbone or "googlenet"


def given_options(argv, prog: str = "retrieval.py") -> set:
    """The options named on the command line ``argv`` (not those left at their defaults)."""
    quiet = build_parser(prog)
    for action in quiet._actions:  # an option left out then sets nothing
        action.default = argparse.SUPPRESS
    return set(vars(quiet.parse_args(argv)))


def _same(key: str, a, b) -> bool:
    if key == "mosaic_counts":
        return parse_counts(a) == parse_counts(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _shown(value) -> str:
    if value is None:
        return "its default"
    if isinstance(value, float) and float(f"{value:g}") == value:
        return f"{value:g}"  # 0 and 0.5, not 0.0 and 0.50
    return str(value)


def apply_checkpoint_options(args, given: set, payload: dict, path) -> None:
    """--test: the dataset, backbone, bits and training options stored in the checkpoint become ``args``'s;
    ValueError (one line, naming the option, its stored and given values) where a given option disagrees.
    ``PLACES`` and ``EVALUATION`` options given are used as given (a data path that differs is said)."""
    config = payload["config"]
    stored = {key: config[key] for key in STORED + PLACES + EVALUATION if key in config}
    stored.update({key: payload[key] for key in ("dataset", "backbone", "hash_bit", "beta", "seed", "lr")})
    for key in STORED:
        if key not in stored:  # a checkpoint of an earlier version without it
            continue
        if key in given and not _same(key, getattr(args, key), stored[key]):
            raise InputError(f"--{key} {_shown(getattr(args, key))}: the checkpoint {path} was trained with "
                             f"--{key} {_shown(stored[key])}; "
                             f"with --test, leave the option out or give the checkpoint's value")
        setattr(args, key, stored[key])
    for key in PLACES + EVALUATION:
        if key not in given:
            setattr(args, key, stored.get(key, getattr(args, key)))
        elif key in PLACES and stored.get(key) is not None and getattr(args, key) != stored[key]:
            log.warning("--%s %s: the checkpoint was trained with --%s %s", key, getattr(args, key), key, stored[key])


def default_output(args, backbone: str) -> str:
    """result/DATASET-BACKBONE-Kbit (two trainings of another kind never share a folder); with --test
    and --checkpoint FILE, FILE's folder."""
    if args.test and args.checkpoint:
        return str(Path(args.checkpoint).parent)
    return str(Path("result") / f"{args.dataset}-{backbone}-{args.hash_bit}bit")


def _plan_outputs(args, files: dict, ckpt_path: Path) -> tuple[OutputFiles | None, dict]:
    """The final files of the run, checked before any work (writable, none of them an input)."""
    if args.no_save:
        return None, {}
    Path(args.output).mkdir(parents=True, exist_ok=True)
    inputs = {"--weights": args.weights, "--features": args.features, "--labels": args.labels, "--split": args.split,
              "--flickr_order": args.flickr_order}
    if args.test:
        inputs["--checkpoint"] = ckpt_path
    outputs = OutputFiles(inputs=inputs)
    planned = {key: outputs.add(files[key], f"--output {FILES[key]}")
               for key in ("metrics", "topn", "history") + (("codes",) if args.test else ())}
    if not args.test:  # written while training, each atomically, not with the final files
        check_output_path(ckpt_path, "--checkpoint" if args.checkpoint else f"--output {FILES['checkpoint']}")
        check_output_path(files["log"], f"--output {FILES['log']}")
    return outputs, planned


def _train(args, network, data, zeta, config, summary: dict, files: dict, ckpt_path: Path, feature_dim):
    """Train; the best checkpoint so far and the log are on disk after each evaluation / epoch."""
    if network.name == "mlp":  # standardise with the training features' statistics (kept in the checkpoint)
        x = data.train.features.astype(np.float64)
        network.module.mean.copy_(torch.from_numpy(x.mean(axis=0)).float())
        network.module.std.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-6)).float())
    meta = {"config": vars(args), "network_meta": network.meta, "data_meta": data.meta, "feature_dim": feature_dim,
            "lr": args.lr if args.lr is not None else network.lr}

    def checkpoint(best, history):
        if not args.no_save:
            save_checkpoint(ckpt_path, {**summary, **meta, "network": best.state, "proxies": best.proxies,
                                        "epoch": best.best_epoch, "val_map": best.val_map, "history": history})

    def epoch_log(history):
        if not args.no_save:
            write_log(files["log"], history)

    log.info("%s: %s; zeta %.4f (K %d, k %d, d %d); %s on %s", args.dataset,
             ", ".join(f"{k[2:]} {v}" for k, v in data.sizes().items()), zeta.value, zeta.bits, zeta.k,
             zeta.min_distance, network.name, config.device)
    result = train(network, data, zeta.value, config, progress=args.progress, on_best=checkpoint, on_epoch=epoch_log)
    checkpoint(result, result.history)  # the best weights again, with the whole log
    network.module.load_state_dict(result.state)
    return {"history": result.history, "best_epoch": result.best_epoch, "val_map": result.val_map, "lr": meta["lr"]}


def run(args, given: set = frozenset()) -> dict:
    """The run of ``args``; ``given``: the options named on the command line (--test checks them)."""
    if args.output is None:
        args.output = default_output(args, _backbone(args))
    files = {key: Path(args.output) / name for key, name in FILES.items()}
    ckpt_path = Path(args.checkpoint) if args.checkpoint else files["checkpoint"]
    if args.test:
        payload = load_checkpoint(ckpt_path)
        apply_checkpoint_options(args, given, payload, ckpt_path)
    backbone = _backbone(args)
    device = check_device(f"cuda:{args.cuda}" if args.cuda is not None else args.device)
    if args.threads or (backbone in ("pixels", "mlp") and device.type == "cpu"):
        torch.set_num_threads(args.threads or 1)  # this process is the command's own
    started = time.perf_counter()
    data = load_dataset(args.dataset, data=args.data, split=args.split, features=args.features, labels=args.labels,
                        seed=args.seed, val_size=args.val_size, retrieve=args.retrieve,
                        mosaic_source=args.mosaic_source, mosaic_counts=args.mosaic_counts,
                        num_query=args.num_query, num_train=args.num_train, flickr_order=args.flickr_order)
    zeta = lookup(args.hash_bit, data.num_classes)
    feature_dim = data.train.features.shape[1] if data.kind == "features" else None
    if args.test:
        check_compatible(payload, ckpt_path, backbone=backbone, hash_bit=args.hash_bit,
                         num_classes=data.num_classes, feature_dim=feature_dim)
    outputs, planned = _plan_outputs(args, files, ckpt_path)
    num_workers = args.num_workers if args.num_workers is not None else (
        0 if args.dataset in ("mosaic", "features") else min(8, os.cpu_count() or 1))
    network = build_network(backbone, args.hash_bit, weights=args.weights, pretrained=not args.test,
                            allow_download=args.allow_download, seed=args.seed, feature_dim=feature_dim)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, rate=args.rate, lr=args.lr, beta=args.beta,
                         seed=args.seed, eval_every=args.eval_every, num_workers=num_workers, device=str(device),
                         memory_mib=args.memory_budget)
    summary = {"dataset": args.dataset, "backbone": backbone, "hash_bit": args.hash_bit, "beta": args.beta,
               "zeta": zeta.value, "min_distance": zeta.min_distance, "code_dimension": zeta.k,
               "num_classes": data.num_classes, "seed": args.seed, "classes": data.classes, **data.sizes()}
    training = {"epochs": args.epochs, "batch_size": args.batch_size, "rate": args.rate}
    if args.test:  # the figures of how the checkpoint was trained are the checkpoint's, not this command's
        load_network_state(network.module, payload["network"], ckpt_path)
        trained = {key: payload[key] for key in ("history", "lr")}
        trained.update(best_epoch=payload["epoch"], val_map=payload["val_map"])
        summary.update(beta=payload["beta"], seed=payload["seed"])
        training = {key: payload["config"][key] for key in training}
    else:
        trained = _train(args, network, data, zeta, config, summary, files, ckpt_path, feature_dim)
    train_seconds = None if args.test else time.perf_counter() - started
    eval_started = time.perf_counter()
    scores, q_codes, db_codes = evaluate(network, data.query, data.database, data.R, topn=topn_grid(len(data.database)),
                                         device=device, batch_size=args.batch_size, num_workers=num_workers,
                                         memory_mib=args.memory_budget, progress=args.progress)
    metrics = {**scores.to_dict(), "val_map": trained["val_map"],
               "val_R": next((e["val_R"] for e in trained["history"] if "val_R" in e), None),
               "best_epoch": trained["best_epoch"], **summary, "mode": "test" if args.test else "train",
               "checkpoint": str(ckpt_path), "lr_network": trained["lr"], **training, "device": str(device),
               "train_seconds": train_seconds,
               "eval_seconds": time.perf_counter() - eval_started, "torch_version": torch.__version__,
               "hyp2_version": __version__}
    if outputs is not None:
        title = f"{args.dataset}, {backbone}, {args.hash_bit} bits, beta {summary['beta']:g}"
        with outputs:  # every final file written, then all put in place together, or none
            with planned["metrics"].open("w", encoding="utf-8") as handle:
                write_json(handle, metrics)
            with planned["topn"].open() as handle:
                plot_topn(handle, scores.precision_at, title)
            with planned["history"].open() as handle:
                plot_history(handle, trained["history"], title)
            if args.test:
                with planned["codes"].open() as handle:
                    write_codes(handle, q_codes, db_codes, data.query.labels, data.database.labels)
    return metrics


def main(argv=None, prog: str = "retrieval.py") -> int:
    args = build_parser(prog).parse_args(argv)
    given = given_options(argv, prog)
    setup_logging(args.verbosity)

    def body():
        threads = torch.get_num_threads()
        try:
            metrics = run(args, given)
        finally:  # main() may run inside another program (the tests, a benchmark)
            torch.set_num_threads(threads)
        print_results([f"map: {metrics['map']:.6f}", f"val_map: {metrics['val_map']:.6f}"])

    return run_main(prog, body, interrupted="the output folder keeps the best checkpoint and the log so far")
