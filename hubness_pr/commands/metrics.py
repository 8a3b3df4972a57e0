"""``improved_precision_recall_hubness.py REAL FAKE``: every metric of FAKE against REAL in one run;
``... compare FILE.jsonl`` (or ``--compare FILE.jsonl``): the runs of a ``--log`` file as a table.

stdout: ``precision:`` and ``recall:`` (eP&R, as the original script printed) then one
``name: value`` line per further figure. Progress bars and logs: stderr. ``--json``,
``--per_sample``, ``--plot``, ``--report`` and the files of ``--gallery`` are checked before any work and written
together (:class:`hubness_pr.io.outputs.OutputFiles`) before anything is printed, so a stdout that fails
or whose reader leaves (``| head -1``) cannot lose them; ``--log`` is checked with them and its line
appended once they are in place (:mod:`hubness_pr.reports.runlog`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import argparse
import csv
import logging
import os
import sys
import time

import numpy as np

import hubness_pr
from hubness_pr.errors import CacheMiss, InputError
from hubness_pr.commands.cli import (OneLineParser, add_extraction_options, add_route_option, route_of, add_run_options, check_device, extraction_kwargs,
                          folder_path, int_at_least, nonnegative_int, output_path, positive_int, print_results,
                          run_main, setup_logging, unit_float)
from hubness_pr.extraction.images import is_image_input
from hubness_pr.io.outputs import OutputFiles
from hubness_pr.io.provenance import describe_differences, extractor_differences, extractor_of
from hubness_pr.io.store import FeatureFile, feature_digest, json_kind, load_features, random_subset, read_arrays

from hubness_pr.commands import torchrun
from hubness_pr.reports import runlog
from hubness_pr.reports.writers import RunReport, log_record, write_files
from hubness_pr.io import summary
from hubness_pr.engine.inputs import as_feature_matrix
from hubness_pr.engine.kernel_sums import KernelGrid, real_kernel_sums_of
from hubness_pr.engine.real_stats import RealStats, layout as real_layout, real_route
from hubness_pr.metrics.evaluation import with_protocol
from hubness_pr.metrics.protocols import PRESETS
from hubness_pr.reports.gallery import DEFAULT_N, Gallery
from hubness_pr.reports.html import write_compare_report
from hubness_pr.reports.results import (approximate_note, is_approximate, splits_block, summary_lines,
                                        write_compare_plot)

log = logging.getLogger("improved_precision_recall_hubness")
PROG = "improved_precision_recall_hubness.py"
SMALL_SET = 100  # samples a set below which a run warns (see _warn_if_small)


@dataclass
class LoadedSet:
    """One input of a run: its feature file (validated float32 features) and its rows in the input."""

    data: FeatureFile
    indices: np.ndarray

    def pair(self) -> tuple:
        """(data, indices), as the gallery takes them."""
        return self.data, self.indices


@dataclass
class StoredSummary:
    """The real set's stored k-NN summary as the run found it (hubness_pr/io/summary.py): ``graph``
    (None: computed by this run), its ``key`` (None: no exact graph is needed or cached), the
    ``status`` and ``path`` the JSON reports, and the ``cache`` that stores a computed graph."""

    status: str
    graph: object = None
    key: object = None
    path: str | None = None
    cache: object = None
    digest_seconds: float | None = None

    def report(self) -> dict:
        """The JSON's ``cache.real``."""
        return {"status": self.status, **({"path": self.path} if self.path is not None else {})}


@dataclass
class StoredStats:
    """The real set's stored moments and real x real kernel sums (FD, exact KID, CMMD) as the run
    found them: ``stats`` (:class:`hubness_pr.engine.real_stats.RealStats`; None: computed by this
    run), their ``key`` (None: none needed or cached), ``status`` and ``path`` for the JSON."""

    status: str
    stats: object = None
    key: object = None
    path: str | None = None
    cache: object = None

    def report(self) -> dict:
        """The JSON's ``cache.real_stats``."""
        return {"status": self.status, **({"path": self.path} if self.path is not None else {})}


@dataclass
class Prepared:
    """What :func:`_prepare` checked and loaded before the heavy work."""

    options: dict
    outputs: OutputFiles
    planned: dict
    real: LoadedSet
    fake: LoadedSet
    stored: StoredSummary
    gallery: Gallery | None = field(default=None)
    stats: StoredStats = field(default_factory=lambda: StoredStats(status="not needed"))


def metric_list(text: str) -> str:
    """argparse type of ``--metrics``: an unknown name is a usage error (exit 2)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in hubness_pr.METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric {unknown[0]!r}" if unknown else "no metric given")
    return ",".join(names)


def build_parser(prog: str = PROG) -> OneLineParser:
    p = OneLineParser(prog=prog, description=(
        "Precision & recall with hubness-aware sampling (eP&R), exact improved P&R, density & coverage, "
        "realism and rarity scores and hubness statistics of FAKE features against REAL features. The first two "
        "lines printed, 'precision:' and 'recall:' as the original script printed them, are eP&R (hubs only, an "
        "estimate); exact improved P&R follows as 'pr.precision:' and 'pr.recall:' (--json: pr)."),
        epilog=f"{prog} compare FILE.jsonl (or --compare FILE.jsonl) prints the runs of a --log file as a table, "
               f"one row per run (see {prog} compare --help).")
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
    p.add_argument("--metrics", default=None, type=metric_list,
                   help=f"comma list drawn from {','.join(hubness_pr.METRICS)} (default: "
                        f"{','.join(hubness_pr.DEFAULT_METRICS)}; with --knn hnsw: epr)")
    p.add_argument("--ppr_a", "--ppr-a", dest="ppr_a", type=positive_float, default=1.2, metavar="A",
                   help="P-precision and P-recall (--metrics ppr): the radius R is A times the mean k-NN radius "
                        "of each set (default 1.2, the reference's)")
    p.add_argument("--ppr_k", "--ppr-k", dest="ppr_k", type=positive_int, default=4,
                   help="P-precision and P-recall: the k of that mean k-NN radius (default 4, the reference's)")
    p.add_argument("--copy_ratio", "--copy-ratio", dest="copy_ratio", type=positive_float, default=0.5, metavar="Q",
                   help="memorisation (--metrics auth): a generated sample whose nearest real sample is closer than "
                        "Q times its second-nearest counts as a likely copy (default 0.5)")
    p.add_argument("--real_test", "--real-test", dest="real_test", metavar="FILE", default=None,
                   help="held-out real features (or images), not in REAL, for the data-copying statistic C_T "
                        "(--metrics ct; Meehan et al. 2020, as dgm-eval)")
    p.add_argument("--ct_seed", "--ct-seed", dest="ct_seed", type=nonnegative_int, default=0,
                   help="seed of C_T's PCA and k-means (dgm-eval leaves them unseeded)")
    p.add_argument("--protocol", default=None, choices=tuple(PRESETS),
                   help="also compute what a peer tool computes, in its own arithmetic and conventions (k, '<' or "
                        "'<=', float32 or float16 distances, subsets): prdc, dgm_eval, torch_fidelity or sg2ada "
                        "(StyleGAN2-ADA); printed as protocol.* (adds the metric 'protocol'; README, 'Protocol presets')")
    p.add_argument("--protocol_seed", "--protocol-seed", dest="protocol_seed", type=nonnegative_int, default=0,
                   help="seed of dgm-eval's subsets (--protocol dgm_eval: numpy's np.random.seed(S) before its draws)")
    p.add_argument("--protocol_k", "--protocol-k", dest="protocol_k", type=positive_int, default=None, metavar="K",
                   help="the preset's neighbourhood size (default: the peer's own, 5 for prdc and dgm_eval, 3 for "
                        "torch_fidelity and sg2ada)")
    p.add_argument("--kid_subsets", "--kid-subsets", dest="kid_subsets", type=nonnegative_int, default=0, metavar="S",
                   help="KID as the mean and std over S seeded subsets, drawn as torch-fidelity draws them (its "
                        "default: 100); 0 (default): KID exactly over the full sets")
    p.add_argument("--kid_subset_size", "--kid-subset-size", dest="kid_subset_size", type=int_at_least(2),
                   default=1000, metavar="B", help="samples of each KID subset (torch-fidelity's default: 1000)")
    p.add_argument("--kid_seed", "--kid-seed", dest="kid_seed", type=nonnegative_int, default=2020,
                   help="seed of the KID subsets (torch-fidelity's rng_seed, default 2020)")
    p.add_argument("--fd_inf_seed", "--fd-inf-seed", dest="fd_inf_seed", type=nonnegative_int, default=0,
                   help="seed of FD-infinity's permutation of the fake set")
    p.add_argument("--fd_inf_points", "--fd-inf-points", dest="fd_inf_points", type=nonnegative_int, default=0,
                   metavar="P", help="FD-infinity's number of fake subset sizes (15 as Chong & Forsyth; each "
                                     "costs an eigendecomposition, ~4 s at dim 2048 on 2 CPU cores; 0: off)")
    add_route_option(p)
    p.add_argument("--knn", choices=("exact", "hnsw"), default="exact",
                   help="how eP&R's hubs are chosen: exact k-occurrence (default), or the k-occurrence of an "
                        "approximate k-NN graph (faiss HNSW; eP&R only; hub radii and the hub cross pass stay "
                        "exact; needs the [ann] extra)")
    p.add_argument("--hnsw_m", "--hnsw-m", dest="hnsw_m", type=int_at_least(2), default=16, metavar="M",
                   help="HNSW links a sample (faiss M)")
    p.add_argument("--hnsw_ef", "--hnsw-ef", dest="hnsw_ef", type=positive_int, default=32, metavar="EF",
                   help="HNSW search list size (efSearch, at least k + 1)")
    p.add_argument("--hnsw_ef_construction", "--hnsw-ef-construction", dest="hnsw_ef_construction",
                   type=positive_int, default=40, metavar="EF", help="HNSW build list size (efConstruction)")
    p.add_argument("--hnsw_check", "--hnsw-check", dest="hnsw_check", type=nonnegative_int, default=1000,
                   metavar="N", help="queries (seeded by --seed) on which the index is measured against the exact "
                                     "engine: recall@k, k-occurrence agreement (0: no check)")
    p.add_argument("--hnsw_min_recall", "--hnsw-min-recall", dest="hnsw_min_recall", type=unit_float, default=0.9,
                   metavar="R", help="where the check's recall@k is below R, double efSearch and search again "
                                     "(up to --hnsw_max_ef; 0: off; off too with --hnsw_check 0)")
    p.add_argument("--hnsw_max_ef", "--hnsw-max-ef", dest="hnsw_max_ef", type=positive_int, default=512,
                   metavar="EF", help="largest efSearch that --hnsw_min_recall may raise to")
    p.add_argument("--json", metavar="PATH", type=output_path, help="write every result and the parameters as JSON")
    p.add_argument("--per_sample", "--per-sample", dest="per_sample", metavar="PATH", type=output_path,
                   help="write one CSV row per fake sample (input order)")
    p.add_argument("--plot", metavar="PATH", type=output_path,
                   help="write a PNG figure: rarity of both sets (the real set scored "
                   "against itself: one more real x real pass), realism, k-occurrence of both sets, metric bars")
    p.add_argument("--report", metavar="PATH", type=output_path,
                   help="write one self-contained HTML page (offline, no script): the metrics, the figure of "
                   "--plot, the contact sheets of --gallery and the real images no generated image covers, and "
                   "the run's provenance")
    p.add_argument("--gallery", metavar="DIR", type=folder_path,
                   help="write PNG contact sheets of the rarest, most typical, least and "
                   "most realistic, outside and hub images (with --metrics auth: the generated images closest to "
                   "a real image, beside it) (and gallery.csv) into DIR, created if missing")
    p.add_argument("--gallery_n", "--gallery-n", dest="gallery_n", type=Gallery.count, default=DEFAULT_N, metavar="N",
                   help="images a contact sheet, at most 1000 (a sheet is sized by the images it can show)")
    p.add_argument("--log", metavar="FILE.jsonl", type=output_path,
                   help="append one JSON line describing the run (inputs with "
                   "digests, parameters, versions, every metric, timings); compare runs with: %(prog)s compare FILE.jsonl")
    p.add_argument("--splits", type=int_at_least(2), default=None, metavar="S",
                   help="also evaluate S disjoint seeded subsets of each set (n // S samples each, drawn without "
                        "replacement; split i of REAL against split i of FAKE) and report each metric's mean over "
                        "them, its standard error (whole pipeline: radii included) and the split sizes")
    p.add_argument("--splits_seed", "--splits-seed", dest="splits_seed", type=nonnegative_int, default=0,
                   help="seed of the --splits subsets")
    p.add_argument("--no_expected", "--no-expected", dest="no_expected", action="store_true",
                   help="do not form the expected values of P&R and density/coverage for identical distributions "
                        "(formed for --json, --log and -v; P&R's is a simulation at the run's N, M and k: seconds "
                        "at 10,000 samples)")
    p.add_argument("--num_samples", "--num-samples", dest="num_samples", type=positive_int, default=None,
                   help="use a seeded random subset of this many samples of each set (default: all)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the --num_samples subset (and of --hnsw_check's queries)")
    p.add_argument("--memory_budget", "--memory-budget", dest="memory_budget", type=positive_int,
                   default=hubness_pr.DEFAULT_MEMORY_BUDGET // 2**20,
                   help="MiB of working memory for distance tiles")
    p.add_argument("--cache_dir", "--cache-dir", dest="cache_dir", metavar="DIR", default=None,
                   help="folder of the real sets' k-NN summaries, reused by later runs against the same real set "
                        "(default: $HUBNESS_CACHE, else $XDG_CACHE_HOME/hubness-pr, else ~/.cache/hubness-pr)")
    p.add_argument("--no_cache", "--no-cache", dest="no_cache", action="store_true",
                   help="neither read nor write k-NN summaries")
    p.add_argument("--allow_mismatched_features", "--allow-mismatched-features", dest="allow_mismatched_features",
                   action="store_true", help="compare REAL and FAKE although their files record different feature "
                   "extractors (backbone, weights, layer or preprocessing; refused by default)")
    add_run_options(p)
    add_extraction_options(p)
    return p


def _load(path: str, what: str, args, seed: int, backbones: dict) -> LoadedSet:
    """(FeatureFile with validated float32 features, row indices in the input) for a feature file or
    for images (extracted first; the backbone is built once, kept in ``backbones`` for the other set).
    Errors name the file."""
    if is_image_input(path):
        from hubness_pr.extraction.extract import extract_path
        log.info("%s: %s holds images; extracting %s features", what, path, args.backbone)
        result, meta = extract_path(path, num_samples=args.num_samples, seed=seed, progress=args.progress,
                                    backbones=backbones, **extraction_kwargs(args))
        data = FeatureFile(features=result.features, paths=result.paths, meta=meta, source=path, key="(images)")
        return LoadedSet(data, np.arange(result.features.shape[0]))
    data = load_features(path)
    log.info("%s: %s, %s, key '%s'", what, path, "x".join(map(str, data.features.shape)), data.key)
    indices = np.arange(data.features.shape[0]) if data.features.ndim else np.arange(0)
    if args.num_samples is not None and data.features.ndim == 2:
        indices = random_subset(data.features.shape[0], args.num_samples, seed, path)
        data = data.subset(indices)
    features = as_feature_matrix(data.features, what, file=path)
    return LoadedSet(replace(data, features=features), indices)


def build_compare_parser(prog: str = PROG) -> OneLineParser:
    p = OneLineParser(prog=f"{prog} compare", description=(
        "Print the runs of --log files as a table, one row per run: the generated set, the parameters that "
        "differ between runs, the metrics, which differences from the baseline run are beyond two standard errors "
        "(beyond_2se: paired tests for recall and coverage of runs on the same real features, else two-sample), "
        "seconds and time (UTC)."))
    p.add_argument("files", metavar="FILE.jsonl", nargs="*", help="run logs written with --log")
    p.add_argument("--compare", metavar="FILE.jsonl", action="append", default=[], help="a run log (the same)")
    p.add_argument("--columns", type=column_list, default=argparse.SUPPRESS, metavar="NAMES",
                   help="comma list of metric columns, named as the metric command prints them (default: those "
                        f"of {', '.join(runlog.DEFAULT_COLUMNS)} that some run has)")
    p.add_argument("--baseline", metavar="RUN", default=None,
                   help="the reference row of column beyond_2se: a run as the run column names it, or the file name "
                        "of its generated set (default: the first run)")
    p.add_argument("--details", action="store_true",
                   help="after the table, one line per run and metric: its difference from the baseline, the "
                        "standard error of the difference, the test (paired, splits or two-sample) and z")
    p.add_argument("--csv", metavar="PATH", type=output_path, help="write the table as CSV")
    p.add_argument("--plot", metavar="PATH", type=output_path,
                   help="write the metric columns as a PNG of bar charts, one per metric")
    p.add_argument("--report", metavar="PATH", type=output_path,
                   help="write one self-contained HTML page (offline, no script): the table (values with their "
                        "standard errors where the runs have them), bar charts with error bars, each run's inputs")
    p.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity", default=0,
                   help="log errors only")
    return p


def column_list(text: str) -> list:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no column given")
    return names


def is_compare(argv) -> bool:
    """``compare`` as the first word, or a ``--compare`` option: the comparison, not a metric run
    (a feature file named ``compare`` is given as ``./compare``)."""
    return argv[:1] == ["compare"] or any(a == "--compare" or a.startswith("--compare=") for a in argv)


def main(argv=None, prog: str = PROG) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_compare(argv):
        parser = build_compare_parser(prog)
        args = parser.parse_args(argv[1:] if argv[:1] == ["compare"] else argv)
        if not args.files and not args.compare:
            parser.error("give at least one run log (FILE.jsonl)")
        setup_logging(args.verbosity)
        return run_main(prog, lambda: _compare(args))
    args = build_parser(prog).parse_args(argv)
    args.argv = argv
    setup_logging(args.verbosity)
    return run_main(prog, lambda: _run(args))


def _run(args) -> None:
    t_start = time.perf_counter()
    # under torchrun: this rank's process group and device; rank 0 alone writes and prints
    group, device_spec = torchrun.from_environment(args.device)
    if group.rank > 0:
        torchrun.silence()
    try:
        prepared = torchrun.step(group, lambda: _prepare(args, device_spec, group))
        try:
            torchrun.step(group, lambda: _same_inputs_on_every_rank(args, group, prepared))
            _evaluate_and_report(args, t_start, group, prepared)
        except BaseException:
            if prepared.gallery is not None:
                prepared.gallery.abandon()
            raise
        finally:
            prepared.options["ctx"].close()  # the run's thread pool
    finally:
        hubness_pr.engine.distributed.shutdown(group)


def _prepare(args, device_spec: str, group) -> Prepared:
    """Everything checked before the heavy work: options, outputs (rank 0), the inputs, and the real
    set's stored k-NN summary. Bad input raises here, on every rank alike."""
    if args.knn == "hnsw":
        from hubness_pr.engine.ann import load_faiss
        if args.metrics is not None and set(args.metrics.split(",")) != {"epr"}:
            raise InputError("--knn hnsw chooses eP&R's hubs only: use --metrics epr (exact P&R, density and "
                             "coverage, realism, rarity and hubness statistics need every exact neighbour)")
        try:
            load_faiss()
        except ImportError as exc:  # faiss is not installed: load_faiss's line says how to install it
            raise InputError(str(exc)) from None
        args.metrics = "epr"
    metrics, k, dc_k, hubs_k, budget, device = hubness_pr.check_options(
        metrics=args.metrics or ",".join(hubness_pr.DEFAULT_METRICS), k=args.k, dc_k=args.dc_k, hubs_k=args.hubs_k,
        memory_budget=args.memory_budget * 2**20, device=check_device(device_spec))
    metrics = with_protocol(metrics, args.protocol)
    outputs = OutputFiles(inputs={"REAL": args.path_real, "FAKE": args.path_fake, "--weights": args.weights})
    planned, gallery = {}, None
    if group.rank == 0:
        planned = {option: outputs.add(getattr(args, option), f"--{option}")
                   for option in ("json", "per_sample", "plot", "report", "log") if getattr(args, option)}
        gallery = Gallery(args.gallery, metrics, args.gallery_n, outputs) if args.gallery else None  # may mkdir
    ctx = hubness_pr.RunContext(device=device, memory_budget=budget, route=route_of(args), group=group,
                             progress=args.progress)
    options = dict(metrics=metrics, k=k, dc_k=dc_k, hubs_k=hubs_k, ctx=ctx, kid_subsets=args.kid_subsets,
                   kid_subset_size=args.kid_subset_size, kid_seed=args.kid_seed, fd_inf_seed=args.fd_inf_seed,
                   fd_inf_points=args.fd_inf_points, ppr_a=args.ppr_a, ppr_k=args.ppr_k,
                   copy_ratio=args.copy_ratio, ct_seed=args.ct_seed, protocol=args.protocol,
                   protocol_seed=args.protocol_seed, protocol_k=args.protocol_k)
    if "protocol" in metrics and args.protocol is None:
        raise InputError(f"--metrics protocol needs a preset: --protocol {'|'.join(PRESETS)}",
                         option="--protocol")
    if "ct" in metrics and args.real_test is None:
        raise InputError("--metrics ct needs held-out real features: --real_test FILE", option="--real_test")
    try:
        backbones = {}  # built once where both inputs are images
        real_set = _load(args.path_real, "real", args, args.seed, backbones)
        fake_set = _load(args.path_fake, "fake", args, args.seed + 1, backbones)
        real, fake = real_set.data, fake_set.data
        if args.real_test is not None:  # C_T's held-out real set (subsampled as the others with --num_samples)
            test = _load(args.real_test, "real_test", args, args.seed + 2, backbones).data
            if test.features.shape[1] != real.features.shape[1]:
                raise InputError(f"{test.features.shape[1]}-dimensional features, but {args.path_real} (real) has "
                                 f"{real.features.shape[1]}", file=args.real_test, role="real_test")
            options["real_test"] = test.features
        _check_extractors(args, real, fake)
        if real.features.shape[1] != fake.features.shape[1]:
            raise InputError(f"{fake.features.shape[1]}-dimensional features, but {args.path_real} (real) has "
                             f"{real.features.shape[1]}: different dimensions, REAL and FAKE must come from the "
                             "same feature extractor", file=args.path_fake, role="fake")
        if group.rank == 0:
            _warn_if_small(real, fake, k, dc_k, metrics)
        _check_splits(args, real, fake, metrics, k, dc_k)
        if gallery is not None:
            gallery.check_sources(real, fake)
        if args.num_samples is not None:
            log.info("random subsets of %d samples (seed %d for real, %d for fake)", args.num_samples, args.seed,
                     args.seed + 1)
        stored = _stored_summary(args, real, metrics, k, dc_k, ctx)
        stats = _stored_stats(args, real, metrics, ctx, stored)
    except BaseException:
        if gallery is not None:
            gallery.abandon()
        raise
    return Prepared(options=options, outputs=outputs, planned=planned, real=real_set, fake=fake_set, stored=stored,
                    stats=stats,
                    gallery=gallery)


def _same_inputs_on_every_rank(args, group, prepared: Prepared) -> None:
    """Under torchrun every rank reads the inputs itself: check that all read the same features (a
    digest of each set) and took the same stored k-NN summary, before any pass. Different inputs
    (a file replaced between two ranks' reads, ranks started with other arguments) are an error on
    every rank; different stored summaries (a cache written between two ranks' looks) are dropped on
    every rank, and the real set's graph is computed by all of them."""
    if not group.active:
        return
    real, fake, stored = prepared.real.data, prepared.fake.data, prepared.stored
    graph = stored.graph
    mine = {"REAL": stored.key.digest if stored.key is not None else summary.content_digest(real.features),
            "FAKE": summary.content_digest(fake.features),
            "summary": None if graph is None else
            feature_digest(graph.indices) + feature_digest(graph.sq_distances),
            "stats": None if prepared.stats.stats is None else
            summary.stats_arrays(prepared.stats.stats, prepared.stats.key)["stats_checksum"].item()}
    everyone = group.gather_objects(mine)
    for name, path in (("REAL", args.path_real), ("FAKE", args.path_fake)):
        digests = [ranked[name] for ranked in everyone]
        other = next((rank for rank, digest in enumerate(digests) if digest != digests[0]), None)
        if other is not None:
            raise InputError(f"process {other} of {group.world} read other features than process 0 "
                             f"(sha256 {digests[other][:12]} vs {digests[0][:12]}): every process must read the same "
                             "inputs (was the file replaced while the run started?)", file=path, role=name)
    if len({ranked["summary"] for ranked in everyone}) > 1:
        log.warning("real: the processes found different stored k-NN summaries (a cache written meanwhile?); "
                    "none is used, every process computes the graph")
        stored.graph, stored.key, stored.status = None, None, "computed (the processes' stored summaries differed)"
    if len({ranked["stats"] for ranked in everyone}) > 1:
        log.warning("real: the processes found different stored real statistics (a cache written meanwhile?); "
                    "none is used, every process computes them")
        prepared.stats.stats, prepared.stats.key = None, None
        prepared.stats.status = "computed (the processes' stored statistics differed)"


def _check_extractors(args, real, fake) -> None:
    """REAL and FAKE must come from one feature extractor (hubness_pr/io/provenance.py): a difference in
    the recorded backbone, weights, layer or preprocessing is an error naming both files, unless
    ``--allow_mismatched_features``; unknown provenance (plain arrays) is allowed, with a note."""
    differences = extractor_differences(real.meta, fake.meta)
    if differences is None:
        unknown = [f"{data.source} ({what})" for what, data in (("real", real), ("fake", fake))
                   if extractor_of(data.meta) is None]
        log.info("%s: no recorded feature extractor; REAL and FAKE are assumed to come from the same one",
                 " and ".join(unknown))
        return
    if not differences:
        return
    text = (f"{args.path_real} (real) and {args.path_fake} (fake) come from different feature extractors: "
            f"{describe_differences(differences)}")
    if not args.allow_mismatched_features:
        raise InputError(f"{text}; their features are not comparable (--allow_mismatched_features compares "
                         "them anyway)")
    log.warning("%s; compared anyway (--allow_mismatched_features)", text)


def _warn_if_small(real, fake, k: int, dc_k: int, metrics) -> None:
    """One line on stderr where a set is small for the neighbourhood sizes: below 100 samples the
    sampling error of a fraction over the set can exceed 0.05 (0.5 / sqrt(n)), and with n < 20 k a
    sample's k-NN ball holds more than 5 % of its set, so the balls stop describing a manifold."""
    k_max = max([k] + ([dc_k] if "dc" in metrics else []))
    floor = max(SMALL_SET, 20 * k_max)
    sizes = {what: data.features.shape[0] for what, data in (("real", real), ("fake", fake))}
    small = [f"{what} {n}" for what, n in sizes.items() if n < floor]
    if small and min(sizes.values()) > k_max:  # (a set too small for k at all is the engine's error)
        log.warning("small sets for k=%d: %s samples (fewer than %d: metrics vary by more than 0.05 between "
                    "samples of the same distributions)", k_max, ", ".join(small), floor)


def positive_float(text: str) -> float:
    """argparse type of a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _stored_summary(args, real, metrics, k, dc_k, ctx, in_file: bool = True) -> StoredSummary:
    """Look for the real set's k-NN summary (inside its feature file unless ``in_file`` is False (a
    subset of the file's rows: --splits), then in the cache) (hubness_pr/io/summary.py)."""
    if args.knn != "exact":  # no exact graph of the real set is computed
        return StoredSummary(status=f"not used (--knn {args.knn})")
    k_max, ks = hubness_pr.real_knn_needs(metrics, k, dc_k, ppr_k=args.ppr_k)
    if not k_max or args.no_cache:
        return StoredSummary(status="off" if args.no_cache else "not needed")
    if real.features.shape[0] <= k_max:  # too small for the graph: evaluate's size check names the set
        return StoredSummary(status="not needed")
    t = time.perf_counter()
    key = summary.SummaryKey.of(real.features, k_max, ks)
    digest_seconds = time.perf_counter() - t
    try:  # arrays knn_* inside the feature file, read no larger than the key allows
        arrays = (read_arrays(real.source, summary.summary_shapes(key)) if in_file and real.key != "(images)"
                  else None)
        if arrays:
            graph = summary.graph_from_arrays(arrays, key, real.features, ctx=ctx)
            log.info("real: k-NN summary reused from %s", real.source)
            return StoredSummary(status="reused", graph=graph, key=key, path=real.source,
                                 digest_seconds=digest_seconds)
    except InputError as exc:
        log.warning("real: the k-NN summary inside %s is not used: %s", real.source, exc)
    cache = summary.SummaryCache(args.cache_dir or summary.SummaryCache.default_folder())
    found = StoredSummary(status="computed", key=key, cache=cache, path=str(cache.path(key)),
                          digest_seconds=digest_seconds)
    return _looked_up(found, "graph", lambda: cache.lookup(key, real.features, ctx=ctx))


def _stored_stats(args, real, metrics, ctx, stored: StoredSummary) -> StoredStats:
    """Look for the real set's moments and real x real kernel sums in the cache (beside its k-NN
    summary; hubness_pr/io/summary.py, :class:`~hubness_pr.io.summary.StatsKey`)."""
    moments, kernels = hubness_pr.real_stats_needs(metrics, args.kid_subsets)
    if not moments and not kernels:
        return StoredStats(status="not needed")
    if args.no_cache:
        return StoredStats(status="off")
    n, dim = real.features.shape
    if n < 2:  # evaluate's size check names the set
        return StoredStats(status="not needed")
    digest = stored.key.digest if stored.key is not None else summary.content_digest(real.features)
    layout = real_layout(n, dim, ctx.memory_budget, ctx.group.world, ctx.device.type, real_route(ctx, n, dim))
    key = summary.StatsKey.of(digest, n, dim, moments, kernels, layout)
    cache = summary.SummaryCache(args.cache_dir or summary.SummaryCache.default_folder())
    found = StoredStats(status="computed", key=key, cache=cache, path=str(cache.folder / key.file_name()))
    return _looked_up(found, "stats", lambda: cache.lookup_stats(key))


def _looked_up(found, field: str, lookup):
    """``found`` (a :class:`StoredSummary` or :class:`StoredStats` whose cache is ``found.cache``) after
    ``lookup()``, the cache's answer: its ``field`` (``graph`` or ``stats``) set where a stored one is
    valid, and its status: reused, or why it is computed (a first run, said at info level; a file
    not valid, said as a warning; a cache that refuses to keep it)."""
    try:
        answer = lookup()
    except CacheMiss as miss:  # the ordinary first run against this real set
        log.info("real: %s", miss)
        return found
    value = getattr(answer, field)
    (log.info if value is not None else log.warning)("real: %s", answer.message)
    setattr(found, field, value)
    refused = found.cache.refused
    found.status = ("reused" if value is not None else f"computed (not cached: {refused})" if refused else
                    "recomputed (the stored one was not valid)")
    return found


def _evaluate_and_report(args, t_start, group, prepared: Prepared) -> None:
    options, outputs, planned = prepared.options, prepared.outputs, prepared.planned
    stored, gallery = prepared.stored, prepared.gallery
    real, real_idx = prepared.real.pair()
    fake, fake_idx = prepared.fake.pair()
    metrics, k, dc_k = options["metrics"], options["k"], options["dc_k"]
    ctx = options["ctx"]
    t_loaded = time.perf_counter()
    hnsw = None
    if args.knn == "hnsw":
        hnsw = hubness_pr.HnswOptions(m=args.hnsw_m, ef_search=args.hnsw_ef, ef_construction=args.hnsw_ef_construction,
                                   sample=args.hnsw_check, seed=args.seed,
                                   min_recall=args.hnsw_min_recall if args.hnsw_check else 0.0,
                                   max_ef_search=args.hnsw_max_ef)
    real_stats, grid = prepared.stats.stats, None
    if stored.graph is None and stored.key is not None:
        # the real x real kernel sums (exact KID, CMMD) ride the real k-NN pass when not stored
        _, kernels = hubness_pr.real_stats_needs(metrics, args.kid_subsets)
        if kernels and (real_stats is None or not real_stats.covers(False, kernels)):
            n, dim = real.features.shape
            grid = KernelGrid("xx", kernels, n, n, dim, ctx.device)
    real_knn = _real_graph(stored, real.features, ctx, group, sums=grid)
    if grid is not None:
        real_stats = RealStats(n=grid.n_a, dim=grid.dim, kernels=real_kernel_sums_of(grid, ctx),
                               moments=real_stats.moments if real_stats is not None else None)
    try:
        evaluation = hubness_pr.evaluate(real=real.features, fake=fake.features, real_knn=real_knn, knn=args.knn,
                                      hnsw=hnsw, real_stats=real_stats, expected=_wants_expected(args, planned),
                                      **options)
    except InputError as exc:  # "fake has 3 samples; k=3 needs at least 4 ...": the set by its role, named by its file
        data = {"real": real, "fake": fake}.get(exc.role)
        if data is None or exc.file is not None:
            raise
        raise exc.located(file=data.source, show_role=False) from None  # (its message starts with the role)
    stats = prepared.stats
    if stats.stats is None and stats.key is not None and evaluation.real_stats is not None and group.rank == 0:
        log.info("real: %s", stats.cache.store_stats(stats.key, evaluation.real_stats))  # for later runs
    timings = dict(evaluation.timings, load=t_loaded - t_start)
    if real_knn is not None and stored.status != "reused":
        timings["knn_real"] = time.perf_counter() - t_loaded - evaluation.timings["total"]
    if hnsw is not None and group.rank == 0:
        log.warning("%s", approximate_note(evaluation))
    splits = None
    if args.splits:
        t = time.perf_counter()
        splits = splits_block(hubness_pr.evaluate_splits(
            real=real.features, fake=fake.features, count=args.splits, seed=args.splits_seed, knn=args.knn, hnsw=hnsw,
            real_knn_of=_split_graphs(args, real, metrics, k, dc_k, ctx, group), **options))
        timings["splits"] = time.perf_counter() - t
    real_rarity = None
    if planned.keys() & {"plot", "report"} and evaluation.rarity is not None:  # the figure's real rarity:
        t = time.perf_counter()  # one more real x real pass
        # rank 0 alone plots: this pass is its own, not the group's (the run's route and budget)
        real_rarity = hubness_pr.real_rarity_scores(real=real.features, k=k, device=ctx.device, route=ctx.route,
                                                 memory_budget=ctx.memory_budget, progress=ctx.progress).scores
        timings["real_rarity"] = time.perf_counter() - t
    seconds = time.perf_counter() - t_start
    if group.rank > 0:
        return

    title = (f"{os.path.basename(fake.source)} ({evaluation.n_fake} generated) vs "
             f"{os.path.basename(real.source)} ({evaluation.n_real} real), k={k}"
             + ("; hubs by approximate k-NN (HNSW)" if is_approximate(evaluation) else ""))
    run = RunReport(evaluation=evaluation, real=real, fake=fake, fake_indices=fake_idx, argv=args.argv,
                    timings=timings, seconds=seconds, extra_params={"seed": args.seed, "num_samples": args.num_samples},
                    cache={"real": stored.report(), "real_stats": prepared.stats.report()}, real_rarity=real_rarity,
                    title=title, real_indices=real_idx, gallery_n=args.gallery_n, splits=splits)
    note = ""
    if "log" in planned:  # appended as the commit's last step: if it cannot be, the other files are put back
        record = log_record(run)
        outputs.on_commit(lambda: runlog.append_line(planned["log"], record))
    with outputs:  # every file written, then all put in place together (the log's line last), or none
        write_files(planned, run)
        if gallery is not None:
            note = gallery.write(evaluation, {"real": prepared.real.pair(), "fake": prepared.fake.pair()}, title)
    if note:
        log.warning("%s", note)
    print_results(summary_lines(evaluation, seconds, expected=args.verbosity >= 1, splits=splits))


def _real_graph(stored: StoredSummary, features: np.ndarray, ctx, group, sums=None):
    """The real set's k-NN graph for ``evaluate``: the stored one, else computed here and stored for
    later runs (the cache's key), else None (no exact graph needed, or no cache: ``evaluate``
    computes it). ``sums``: a real x real kernel grid to fill from the pass (computed here only)."""
    if stored.graph is not None or stored.key is None:
        return stored.graph
    key = stored.key
    graph = hubness_pr.nearest_neighbors(features, key.k_max, exact_ks=key.exact_ks, desc="k-NN real", ctx=ctx,
                                         sums=sums)
    if group.rank == 0:
        log.info("real: %s", stored.cache.store(key, graph))
    return graph


def _split_graphs(args, real: FeatureFile, metrics, k, dc_k, ctx, group):
    """``real_knn_of`` of :func:`hubness_pr.evaluate_splits`: each real split's graph from the cache
    (computed and stored on a miss), as the full set's; None (each split computes its own) under
    torchrun, where ranks that found the cache in different states would run different passes."""
    if group.active:
        return None
    return lambda rows: _real_graph(_stored_summary(args, real.subset(rows), metrics, k, dc_k, ctx, in_file=False),
                                    real.features[rows], ctx, group)


def _check_splits(args, real, fake, metrics, k, dc_k) -> None:
    """Each --splits subset must hold more samples than the largest neighbourhood of the metrics."""
    if not args.splits:
        return
    k_max = max(k, hubness_pr.real_knn_needs(metrics, k, dc_k, ppr_k=args.ppr_k)[0])
    for what, data in (("real", real), ("generated", fake)):
        size = data.features.shape[0] // args.splits
        if size <= k_max:
            raise InputError(f"{data.features.shape[0]} {what} samples make splits of {size}; the metrics need at "
                             f"least {k_max + 1} samples a split (k={k_max})", option="--splits", value=args.splits)


def _wants_expected(args, planned: dict) -> bool:
    """Whether the run forms the identical-distribution expected values: where they are shown (the
    JSON, the log, ``-v``) and not turned off."""
    return not args.no_expected and (args.verbosity >= 1 or "json" in planned or "log" in planned)


def _compare(args) -> None:
    files = args.compare + args.files
    outputs = OutputFiles(inputs={f"FILE.jsonl {path}": path for path in files})
    planned = {option: outputs.add(getattr(args, option), f"--{option}")
               for option in ("csv", "plot", "report") if getattr(args, option)}
    runs = []
    for path in files:
        found, bad = runlog.read_runs(path)
        if bad:  # one bad line costs that line only
            shown = ", ".join(str(number) for number, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
            log.warning("%s: %d line(s) are not run records, skipped (line %s; line %d: %s)", path, len(bad),
                        shown, *bad[0])
        label = "" if len(files) == 1 else f"{os.path.basename(path)}:"
        runs += [(f"{label}{number}", record) for number, record in found]
    if not runs:
        raise InputError(f"{', '.join(files)}: no run records (write them with --log FILE.jsonl)")
    columns = getattr(args, "columns", None)
    if columns is not None:
        absent = [c for c in columns if all(runlog.lookup(r["metrics"], c) is None for _, r in runs)]
        if absent:
            raise InputError(f"--columns: no run has {absent[0]!r} (names as the metric command prints them, "
                             "e.g. pr.precision, hubness.fake.skewness)")
    base = runlog.baseline_index(runs, args.baseline)
    header, rows, metric_columns = runlog.comparison(runs, columns, base)
    if "plot" in planned:  # bars need numbers: a column of text or objects (--columns pr) cannot be drawn
        for column in metric_columns:
            j = header.index(column)
            label, value = next(((row[0], row[j]) for row in rows if row[j] is not None and (
                isinstance(row[j], bool) or not isinstance(row[j], (int, float)))), (None, None))
            if label is not None:
                raise InputError(f"--plot: column {column!r} of run {label} is {json_kind(value)}, not a number "
                                 "that can be drawn (choose numeric --columns)")
    with outputs:
        if "csv" in planned:
            with planned["csv"].open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows([["" if v is None else v for v in row] for row in rows])
        if "plot" in planned:
            with planned["plot"].open() as handle:
                write_compare_plot(handle, header, rows, metric_columns)
        if "report" in planned:
            with planned["report"].open("w", encoding="utf-8") as handle:
                write_compare_report(handle, runs, header, rows, metric_columns)
    lines = runlog.table_lines(header, rows)
    if args.details:
        lines += [""] + runlog.difference_lines(runs, runlog.significance(runs, metric_columns, base)[1], base)
    print_results(lines)
