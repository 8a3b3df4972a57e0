"""The command line: ``extract``, ``run`` and ``report`` (see the package's docstring)."""
from __future__ import annotations

import argparse
import sys

from bench.epr_study.config import BACKBONES, BLUR, DATASETS, NOISE, PIXEL_BACKBONES, ROOT
from bench.epr_study.prepare import cmd_extract
from bench.epr_study.report import cmd_report
from bench.epr_study.run import cmd_run


def int_list(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated by commas")
    return values


def float_pair(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected two positive numbers, weak,strong")
    return values


def name_list(choices: tuple):
    def parse(text: str) -> list:
        names = [v.strip() for v in str(text).split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return names
    return parse


def parser() -> argparse.ArgumentParser:
    study = sys.modules[__package__].__doc__  # the package's docstring: the study and its steps
    p = argparse.ArgumentParser(prog="python -m bench.epr_study", description=study.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="images, sets and features into a folder")
    e.add_argument("--out", required=True, help="folder for the features and manifest.json")
    e.add_argument("--dataset", choices=(*DATASETS, "all"), default="all")
    e.add_argument("--backbones", type=name_list(BACKBONES + PIXEL_BACKBONES), default=list(BACKBONES))
    e.add_argument("--device", default="auto")
    e.add_argument("--max_n", type=int, default=20000, help="size of the real set and of each generated set")
    e.add_argument("--batch_size", type=int, default=128)
    e.add_argument("--num_workers", type=int, default=None, help="decoding processes (default: the library's)")
    e.add_argument("--half", action="store_true", help="float16 inference (CUDA only)")
    e.add_argument("--fashion_dir", default=None, help="folder of Fashion-MNIST's idx .gz files")
    e.add_argument("--noise", type=float_pair, default=NOISE, help="sigmas (0..255) of noise_weak,noise_strong")
    e.add_argument("--blur", type=float_pair, default=BLUR, help="radii of blur_weak,blur_strong")
    e.add_argument("--progress", action="store_true", default=None, help="tqdm bars")
    e.add_argument("--toy", action="store_true", help="digits, N=80, efficientnet_lite0, no weak transforms")
    r = sub.add_parser("run", help="the metrics and the report")
    r.add_argument("--features", required=True, help="folder written by extract")
    r.add_argument("--sizes", type=int_list, default=(1000, 5000, 20000))
    r.add_argument("--ks", type=int_list, default=(3, 5, 10))
    r.add_argument("--out", default=str(ROOT / "docs"), help="folder of the report and its figures")
    r.add_argument("--json", default=None, help="raw numbers (default bench/results/epr_study[_toy].json)")
    r.add_argument("--knn", type=name_list(("exact", "hnsw")), default=["exact", "hnsw"])
    r.add_argument("--hnsw_max_n", type=int, default=5000,
                   help="approximate selection only at N up to this (0: every N); the timing table has it at "
                        "the largest N anyway")
    r.add_argument("--device", default="auto")
    r.add_argument("--toy", action="store_true", help="digits, N=80, k=3, t in {2, 3}")
    supplement = dict(action="append", default=[], metavar="JSON",
                      help="another run's JSON (e.g. approximate selection at a larger N, run elsewhere): its own "
                           "section in the report")
    r.add_argument("--supplement", **supplement)
    g = sub.add_parser("report", help="the report again from a run's JSON (and --supplement runs)")
    g.add_argument("--json", default=str(ROOT / "bench" / "results" / "epr_study.json"), help="the run's numbers")
    g.add_argument("--out", default=str(ROOT / "docs"), help="folder of the report and its figures")
    g.add_argument("--supplement", **supplement)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv[1:]
    return {"extract": cmd_extract, "run": cmd_run, "report": cmd_report}[args.command](args)

