"""``evaluate``: the metrics asked for, planned into the engine's passes (docs/definitions.md).

Each metric is declared in its own module of this package (:mod:`hubness_pr.metrics.registry`):
the radii it reads in each set, whether it reads the hubs, and the reductions of the real x fake
pass it needs. :func:`evaluate` plans from those declarations: one exact k-NN pass inside each set
that some metric needs (to the largest neighbourhood asked), then one tiled real x fake pass that
feeds every requested cross metric from the same tiles; each metric then forms its result. The
single-metric functions (:func:`precision_recall`, :func:`density_coverage`, ...) call it with one
metric, so there is exactly one implementation of each definition.

Conventions (tested in tests/test_metrics_reference.py):

* radii: distance to the k-th nearest neighbour within the same set, self excluded by index;
* precision / recall / eP&R: membership ``d <= r`` (Kynkaanniemi et al. 2019, official code);
* density / coverage / rarity: membership ``d < r`` (Naeem et al. 2020 ``prdc``; Han et al. 2023);
* realism: ``max_i rt_i / d(y, x_i)`` with ``rt_i = r_i`` if ``r_i <= median(r)`` else 0 -- the
  paper's plain ratio (the official code reports its square). A fake at distance 0 from a kept real
  sample scores +inf; such scores count as undefined in the summary;
* rarity: ``min{r_i : d(y, x_i) < r_i}``, NaN (undefined) outside every real ball (the reference
  code writes 0 there);
* eP&R: fraction of fake hubs inside some real hub ball (radius from the full real set), and the
  fraction of real hubs inside some fake hub ball; hubs are samples with k-occurrence >= hubs_k;
* PR-Cover (Cheema & Urner 2023): k' = C k; cover-precision is the fraction of fakes whose own-set
  k'-NN ball holds at least k reals, cover-recall the fraction of reals whose real k'-NN ball holds at
  least k fakes (membership ``d <= r``);
* P-precision / P-recall (Park & Kim 2023): ``1 - prod (1 - max(0, 1 - d / R))`` averaged over the
  fakes (R from the reals) and over the reals (R from the fakes), ``R = ppr_a * mean k-NN radius`` at
  ``ppr_k`` (:mod:`hubness_pr.metrics.pprecision`);
* memorisation (``auth``): each fake's nearest and second-nearest real, exact
  (:mod:`hubness_pr.engine.nearest`); AuthPct (authentic: d1 > the nearest real's own 1-NN distance)
  and the d1/d2 ratio (:mod:`hubness_pr.metrics.auth`); C_T (``ct``) with a held-out real set, as
  dgm-eval (:mod:`hubness_pr.metrics.ct`);
* clipped density / coverage (Salvy et al. 2025): real radii at dc_k clipped at their median,
  membership ``d <= r~``; coverage ``d < r`` through the reference's analytic map
  (:mod:`hubness_pr.metrics.clipped`).
"""
from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from hubness_pr.errors import InputError
from hubness_pr.engine.ann import KNN_METHODS, HnswOptions
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.cross import CrossInputs, cross_pass
from hubness_pr.engine.distances import DEFAULT_MEMORY_BUDGET, as_tensor, resolve_device
from hubness_pr.engine.distributed import SINGLE, Group
from hubness_pr.engine.frame import SetStats
from hubness_pr.engine.inputs import as_feature_matrix, check_int
from hubness_pr.validation import check_positive_float
from hubness_pr.engine.kernel_sums import KernelPlan, finish, plan_grids
from hubness_pr.engine.knn import NeighborGraph, nearest_neighbors
from hubness_pr.engine.moments import set_moments
from hubness_pr.engine.nearest import NearestGrid, nearest_two
from hubness_pr.engine.real_stats import RealStats, real_route
from hubness_pr.metrics.dc import DensityCoverage
from hubness_pr.metrics.epr import EfficientPrecisionRecall
from hubness_pr.metrics.expected import expected_values
from hubness_pr.metrics.hubness import HubnessStats, SetsHubness, hubness_stats  # noqa: F401
from hubness_pr.metrics.pr import PrecisionRecall
from hubness_pr.metrics.prcover import PrecisionRecallCover  # noqa: F401
from hubness_pr.metrics.rarity import RarityScores, scores_of
from hubness_pr.metrics.realism import RealismScores
from hubness_pr.metrics import epr
from hubness_pr.metrics.registry import REGISTRY, Metric, Options, Passes


def _load_metrics() -> None:
    """Import every metric module of this package: each registers its metric (a new metric is a new
    module here, nothing else to list)."""
    package = importlib.import_module("hubness_pr.metrics")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("evaluation", "registry"):
            importlib.import_module(f"hubness_pr.metrics.{info.name}")


_load_metrics()
METRICS = tuple(sorted(REGISTRY, key=lambda name: REGISTRY[name].order))  # every metric, in report order
DEFAULT_METRICS = tuple(name for name in METRICS if REGISTRY[name].default)  # what a run computes unless told


@dataclass(frozen=True)
class Evaluation:
    """Everything one run computed. ``results`` maps each computed metric's name to its result (a
    frozen dataclass of its module); ``evaluation.pr``, ``evaluation.dc``, ... read it (None: not
    computed), ``hubness_real`` / ``hubness_fake`` the two sides of the hubness statistics.

    Per-sample arrays follow the input order of the fake set (M,):
    ``fake_in_real_manifold`` (bool, precision membership), ``fake_k_occurrence`` (int64, within the
    fake set), ``fake_is_hub`` (bool); realism and rarity scores are in their own results.
    ``real_k_occurrence`` (int64 (N,)) is the k-occurrence within the real set, input order;
    ``real_in_fake_manifold`` (bool (N,), recall membership: some generated k-NN ball holds the real
    sample; False: a real sample no generated sample covers).
    eP&R's per-hub decisions: ``fake_in_real_hub_balls`` (bool (M,): a fake hub inside some real hub
    ball) and ``real_in_fake_hub_balls`` (bool (N,)), meaningful at the hubs only (False elsewhere),
    so that other averages over the hubs can be formed (e.g. weighted by 1 / k-occurrence).
    The per-sample values of the other means: ``fake_density`` (float64 (M,): the real balls holding each fake, over dc_k; density
    is their mean) and ``real_covered`` (bool (N,), coverage). ``expected``: the metrics' expected
    values when both sets come from one distribution, at these N, M and k (metric name -> values;
    :mod:`hubness_pr.metrics.expected`), where ``evaluate(expected=True)``.
    Presentation (JSON, printed lines) is :mod:`hubness_pr.reports.results`'.
    """

    n_real: int
    n_fake: int
    dim: int
    params: dict
    results: dict = field(default_factory=dict, repr=False)
    fake_in_real_manifold: np.ndarray | None = field(default=None, repr=False)
    real_in_fake_manifold: np.ndarray | None = field(default=None, repr=False)
    fake_k_occurrence: np.ndarray | None = field(default=None, repr=False)
    real_k_occurrence: np.ndarray | None = field(default=None, repr=False)
    fake_is_hub: np.ndarray | None = field(default=None, repr=False)
    fake_in_real_hub_balls: np.ndarray | None = field(default=None, repr=False)
    real_in_fake_hub_balls: np.ndarray | None = field(default=None, repr=False)
    fake_density: np.ndarray | None = field(default=None, repr=False)
    real_covered: np.ndarray | None = field(default=None, repr=False)
    expected: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)      # seconds per phase
    diagnostics: dict = field(default_factory=dict)  # refined_pairs, cross_tile_side, knn_fallback_rows, route
    # the real set's moments and real x real kernel sums the run read (given or computed; None: no
    # FD, exact KID or CMMD), to store for the next generated set (evaluate(real_stats=...))
    real_stats: RealStats | None = field(default=None, repr=False)

    def __getattr__(self, name: str):
        if name in REGISTRY:
            return self.__dict__.get("results", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def hubness_real(self) -> HubnessStats | None:
        h = self.results.get("hubness")
        return None if h is None else h.real

    @property
    def hubness_fake(self) -> HubnessStats | None:
        h = self.results.get("hubness")
        return None if h is None else h.fake


@dataclass(frozen=True)
class Plan:
    """The passes a set of metrics needs: the exact radii of each set, the hubs, the cross pass."""

    metrics: tuple          # the Metric declarations, in METRICS order
    options: Options
    real_ks: tuple          # sorted neighbourhood sizes whose real radii are read (exact)
    fake_ks: tuple
    occurrence: tuple       # sides whose k-occurrence at k is formed ("real", "fake")
    hubs: bool
    cross: bool
    hub_only: bool          # the cross pass may run on real hubs x fake hubs only
    moments: bool = False   # the means and covariances of both sets (FD)
    kernels: tuple = ()     # kernels whose exact sums over the full sets are read (KID, CMMD)
    nearest: bool = False   # each fake's two nearest reals (hubness_pr.engine.nearest)

    @classmethod
    def of(cls, names, options: Options) -> Plan:
        chosen = tuple(REGISTRY[n] for n in names)

        def sizes(side):
            return tuple(sorted({options.size(r) for m in chosen for r in getattr(m, side)}))

        occurrence = tuple(side for side in ("real", "fake") if any("k" in getattr(m, f"{side}_radii") for m in chosen))
        crossing = [m for m in chosen if m.cross is not None]
        kernels = tuple(sorted({name for m in chosen if m.kernels is not None for name in m.kernels(options)}))
        return cls(metrics=chosen, options=options, real_ks=sizes("real_radii"), fake_ks=sizes("fake_radii"),
                   occurrence=occurrence, hubs=any(m.hubs for m in chosen), cross=bool(crossing),
                   hub_only=bool(crossing) and not any(m.full_cross for m in crossing),
                   moments=any(m.moments for m in chosen), kernels=kernels,
                   nearest=any(m.nearest for m in chosen))

    def kernel_pairs(self, n_real: int, n_fake: int) -> float:
        """Pairs of the kernel sums' own passes where no k-NN pass runs: what chooses their route."""
        return n_fake**2 / 2 + n_real * n_fake

    def pairs(self, n_real: int, n_fake: int, real_given: bool) -> float:
        """Distance pairs of the run's passes: with the dimension, what chooses the CPU route. The
        nearest reals ride a full cross pass; only without one (none, or hubs only) do they add a pass."""
        own_nearest = self.nearest and (not self.cross or self.hub_only)
        return ((n_real**2 / 2 if self.real_ks and not real_given else 0) + (n_fake**2 / 2 if self.fake_ks else 0)
                + (n_real * n_fake if self.cross else 0) + (n_real * n_fake if own_nearest else 0))


def _check_metrics(metrics) -> tuple:
    if metrics is None or not isinstance(metrics, (str, list, tuple, set, frozenset)):
        raise TypeError(f"The 'metrics' parameter of evaluate must be a list or a comma string drawn from "
                        f"{', '.join(METRICS)}. Got {metrics!r} instead.")
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in REGISTRY]
    if unknown or not metrics:
        raise ValueError(
            f"The 'metrics' parameter of evaluate must be a non-empty list drawn from "
            f"{', '.join(METRICS)}. Got {', '.join(map(repr, unknown)) or 'nothing'} instead."
        )
    return tuple(sorted(set(metrics), key=lambda name: REGISTRY[name].order))  # the registry's order


class CheckedOptions(NamedTuple):
    """The options of :func:`evaluate`, validated and normalised (by name, or unpacked in this order)."""

    metrics: tuple
    k: int
    dc_k: int
    hubs_k: int
    memory_budget: int
    device: torch.device


def check_options(*, metrics=DEFAULT_METRICS, k=3, dc_k=5, hubs_k=3, memory_budget=DEFAULT_MEMORY_BUDGET,
                  device="auto") -> CheckedOptions:
    """Validate the options of :func:`evaluate` before any heavy work; returns them normalised."""
    return CheckedOptions(_check_metrics(metrics), check_int(k, "k", "evaluate", 1),
                          check_int(dc_k, "dc_k", "evaluate", 1), check_int(hubs_k, "hubs_k", "evaluate", 1),
                          check_int(memory_budget, "memory_budget", "evaluate", 2**20), resolve_device(device))


def _check_size(n: int, k: int, name: str, why: str) -> None:
    if n < k + 1:
        raise InputError(
            f"{name} has {n} samples; {why} needs at least {k + 1} (the k-th neighbour of every sample must exist)",
            role=name)


def real_knn_needs(metrics=DEFAULT_METRICS, k: int = 3, dc_k: int = 5, prcover_c: int = 3,
                   ppr_k: int = 4) -> tuple[int, tuple]:
    """``(k_max, exact_ks)`` of the real set's k-NN graph that :func:`evaluate` needs for ``metrics``
    (``(0, ())``: none), so that a caller can look for a stored summary (:mod:`hubness_pr.io.summary`)."""
    plan = Plan.of(_check_metrics(metrics), Options(k=k, dc_k=dc_k, prcover_c=prcover_c, ppr_k=ppr_k))
    return max(plan.real_ks, default=0), plan.real_ks


def real_stats_needs(metrics=DEFAULT_METRICS, kid_subsets: int = 0) -> tuple[bool, tuple]:
    """``(moments, kernels)`` :func:`evaluate` reads from the real set alone for ``metrics`` (FD: the
    moments; exact KID, CMMD: their kernels' real x real sums; KID over subsets: nothing), so that a
    caller can look for stored ones (:class:`hubness_pr.engine.real_stats.RealStats`)."""
    plan = Plan.of(_check_metrics(metrics), Options(kid_subsets=kid_subsets))
    return plan.moments, plan.kernels


def evaluate(*, real, fake, metrics=DEFAULT_METRICS, k: int = 3, dc_k: int = 5, hubs_k: int = 3, device="auto",
             memory_budget: int = DEFAULT_MEMORY_BUDGET, real_knn: NeighborGraph | None = None,
             real_stats: RealStats | None = None,
             progress: bool | None = None, group: Group = SINGLE, knn: str = "exact",
             hnsw: HnswOptions | None = None, hubs: tuple | None = None, prcover_c: int = 3,
             ppr_a: float = 1.2, ppr_k: int = 4, route: str | None = None, ctx: RunContext | None = None, fd_inf_seed: int = 0,
             fd_inf_points: int = 0, kid_subsets: int = 0, kid_subset_size: int = 1000,
             kid_seed: int = 2020, expected: bool = False, copy_ratio: float = 0.5, real_test=None,
             ct_seed: int = 0, protocol: str | None = None, protocol_seed: int = 0,
             protocol_k: int | None = None) -> Evaluation:
    """Compute the requested metrics of ``fake`` against ``real`` in one pass.

    Args:
        real: real features, array-like (N, dim), any real numeric dtype (converted to float32).
        fake: generated features (M, dim).
        metrics: names drawn from :data:`METRICS` (list or comma string; default :data:`DEFAULT_METRICS`:
            all but 'prcover', 'ppr', 'cdc', 'fd', 'kid', 'cmmd', 'auth' and 'ct').
        k: neighbourhood size of P&R, eP&R, realism, rarity, PR-Cover and k-occurrence (default 3).
        dc_k: neighbourhood size of density and coverage (default 5).
        hubs_k: hub threshold t: a hub has k-occurrence >= t (default 3).
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        memory_budget: bytes of working memory for distance tiles (the only tiling knob).
        real_knn: the real set's k-NN graph computed earlier (:func:`real_knn_needs` says which; a
            stored summary, :mod:`hubness_pr.io.summary`); its pass is then skipped. Results are identical.
        real_stats: the real set's moments and real x real kernel sums computed earlier
            (:class:`hubness_pr.engine.real_stats.RealStats`, ``Evaluation.real_stats`` of a run on
            the same real features; :func:`real_stats_needs` says which are read): FD, exact KID
            and CMMD then do no real-only pass; what it lacks is computed. Results are identical to
            a recomputation under the same layout (:func:`hubness_pr.engine.real_stats.layout`).
        progress: tqdm bars on stderr (None: only when stderr is a terminal).
        group: the processes sharing the work (:mod:`hubness_pr.engine.distributed`, torchrun); every rank
            gets the whole result, equal to one process's.
        knn: 'exact' (default) or 'hnsw': eP&R's hubs chosen from the k-occurrence of an approximate
            k-NN graph (:mod:`hubness_pr.engine.ann`, faiss HNSW with ``hnsw`` options); the hubs' radii and
            the hub cross pass stay exact. Only ``metrics=('epr',)``: the other metrics need every
            exact neighbour. ``params['knn']`` holds the method, options and the index's measured
            quality.
        hubs: (real hub mask, fake hub mask) given instead of selected (metrics ('epr',) only):
            the exact steps after selection, for comparing selections.
        prcover_c: PR-Cover's C: its balls are the k' = C k nearest neighbours (default 3).
        ppr_a, ppr_k: P-precision and P-recall's radius R = ppr_a * the mean ppr_k-NN radius of each
            set (defaults 1.2 and 4, the reference's).
        route: the CPU route, 'auto' (default: the fused kernels from a size on), 'fused' or 'torch'.
        ctx: a :class:`hubness_pr.engine.context.RunContext` to run in (its thread pool reused); it then
            replaces ``device``, ``memory_budget``, ``progress``, ``group`` and ``route``.
        fd_inf_seed, fd_inf_points: FD-infinity's permutation seed and number of subset sizes
            (default 0 and 15 as Chong & Forsyth; 0 points: ``fd.infinity`` is NaN).
        kid_subsets, kid_subset_size, kid_seed: KID over ``kid_subsets`` seeded subsets of
            ``kid_subset_size`` samples (torch-fidelity's draws; its defaults are 100, 1000, 2020);
            0 subsets (default): exact over the full sets.
        expected: also form the expected values of P&R and density/coverage when both sets come from
            one distribution, at these N, M and k (``Evaluation.expected``; how: ``params['expected']``;
            :mod:`hubness_pr.metrics.expected`: P&R's is a simulation, cached in the process).
        copy_ratio: 'auth': a fake whose nearest / second-nearest real distance ratio is below it counts
            as a likely copy (default 0.5; :mod:`hubness_pr.metrics.auth`).
        real_test: 'ct': held-out real features (n_test, dim), not the ``real`` set (C_T of Meehan et
            al., :mod:`hubness_pr.metrics.ct`); ``ct_seed``: the seed of its PCA and k-means.
        protocol: a peer tool whose precision/recall (density/coverage) to reproduce in its own
            arithmetic: 'prdc', 'dgm_eval', 'torch_fidelity' or 'sg2ada' (:mod:`hubness_pr.metrics.protocols`;
            adds the metric 'protocol'); ``protocol_seed``: the seed of dgm-eval's subsets; ``protocol_k``:
            its neighbourhood size (None: the peer's default, 5 for prdc and dgm-eval, 3 for the others).

    Returns:
        :class:`Evaluation`; results do not depend on ``memory_budget``, the device or the number of
        processes beyond float ties.
    """
    t_start = time.perf_counter()
    if ctx is None:
        names, _, _, _, memory_budget, dev = check_options(metrics=metrics, k=k, dc_k=dc_k, hubs_k=hubs_k,
                                                           memory_budget=memory_budget, device=device)
        with RunContext(device=dev, memory_budget=memory_budget, route=route, group=group, progress=progress) as own:
            return evaluate(real=real, fake=fake, metrics=names, k=k, dc_k=dc_k, hubs_k=hubs_k, real_knn=real_knn,
                            real_stats=real_stats,
                            knn=knn, hnsw=hnsw, hubs=hubs, prcover_c=prcover_c, ppr_a=ppr_a, ppr_k=ppr_k, ctx=own, fd_inf_seed=fd_inf_seed,
                            fd_inf_points=fd_inf_points, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                            kid_seed=kid_seed, expected=expected, copy_ratio=copy_ratio, real_test=real_test,
                            ct_seed=ct_seed, protocol=protocol, protocol_seed=protocol_seed,
                            protocol_k=protocol_k)
    names, k, dc_k, hubs_k, _, _ = check_options(metrics=metrics, k=k, dc_k=dc_k, hubs_k=hubs_k,
                                                 memory_budget=ctx.memory_budget, device=ctx.device)
    options = Options(k=k, dc_k=dc_k, hubs_k=hubs_k, prcover_c=check_int(prcover_c, "prcover_c", "evaluate", 1),
                      ppr_a=check_positive_float(ppr_a, "ppr_a", "evaluate"),
                      ppr_k=check_int(ppr_k, "ppr_k", "evaluate", 1),
                      fd_inf_seed=check_int(fd_inf_seed, "fd_inf_seed", "evaluate", 0),
                      fd_inf_points=check_int(fd_inf_points, "fd_inf_points", "evaluate", 0),
                      kid_subsets=check_int(kid_subsets, "kid_subsets", "evaluate", 0),
                      kid_subset_size=check_int(kid_subset_size, "kid_subset_size", "evaluate", 2),
                      kid_seed=check_int(kid_seed, "kid_seed", "evaluate", 0),
                      copy_ratio=check_positive_float(copy_ratio, "copy_ratio", "evaluate"),
                      real_test=None if real_test is None else as_feature_matrix(real_test, "real_test"),
                      ct_seed=check_int(ct_seed, "ct_seed", "evaluate", 0),
                      protocol=_check_protocol(protocol, names),
                      protocol_seed=check_int(protocol_seed, "protocol_seed", "evaluate", 0),
                      protocol_k=None if protocol_k is None else check_int(protocol_k, "protocol_k", "evaluate", 1))
    names = with_protocol(names, options.protocol)
    real, fake = as_feature_matrix(real, "real"), as_feature_matrix(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"real and fake features have different dimensions: {real.shape[1]} vs {fake.shape[1]}",
                         role="fake")
    (n_real, dim), n_fake = real.shape, fake.shape[0]
    if "ct" in names and options.real_test is None:
        raise InputError("the metric 'ct' needs held-out real features: evaluate(real_test=...) "
                         "(the metric command's --real_test FILE)", option="real_test")
    if options.real_test is not None and options.real_test.shape[1] != dim:
        raise InputError(f"real and held-out real (real_test) features have different dimensions: "
                         f"{dim} vs {options.real_test.shape[1]}", role="real_test")
    params = {"k": k, "dc_k": dc_k, "hubsK": hubs_k, "metrics": list(names), "device": str(ctx.device),
              "memory_budget": ctx.memory_budget, "processes": ctx.group.world, "backend": ctx.group.backend}
    if "prcover" in names:
        params["prcover_c"] = options.prcover_c
    for name in names:
        if REGISTRY[name].params is not None:
            params.update(REGISTRY[name].params(options))
    if knn != "exact" or hubs is not None:  # hubs chosen approximately or given: eP&R alone
        _check_hub_selection(names, knn, real_knn)
        _check_size(n_real, k, "real", f"k={k}")
        _check_size(n_fake, k, "fake", f"k={k}")
        sel = epr.hub_selected(real, fake, options, ctx, knn, hnsw or HnswOptions(), hubs)
        del params["dc_k"]
        params["knn"] = sel.knn_report
        return Evaluation(n_real=n_real, n_fake=n_fake, dim=dim, params=params, results={"epr": sel.epr},
                          fake_k_occurrence=sel.occurrence.get("fake"), real_k_occurrence=sel.occurrence.get("real"),
                          fake_is_hub=sel.masks[1], timings={**sel.timings, "total": time.perf_counter() - t_start},
                          diagnostics=sel.diagnostics, **sel.per_sample)
    plan = Plan.of(names, options)
    timings, diagnostics = {}, {}
    if real_stats is not None and (not isinstance(real_stats, RealStats) or real_stats.n != n_real
                                   or real_stats.dim != dim):
        raise ValueError(f"The 'real_stats' parameter of evaluate must be the RealStats of the real set "
                         f"({n_real} x {dim}). Got {real_stats!r}.")
    passes = _run_passes(plan, real, fake, real_knn, ctx, timings, diagnostics, real_stats)
    per_sample = {}
    for m in plan.metrics:
        if m.per_sample is not None:
            per_sample.update(m.per_sample(passes))
    results = {}
    for m in plan.metrics:
        t = time.perf_counter()
        results[m.name] = m.finish(passes)
        if m.moments or m.kernels is not None:  # FD's eigendecompositions and FD-infinity, KID's subsets
            timings[m.name] = time.perf_counter() - t
    expected_of = {}
    if expected:
        t = time.perf_counter()
        expected_of, params["expected"] = expected_values(names, n_real, n_fake, k=k, dc_k=dc_k,
                                                             evaluate=evaluate, ctx=ctx)
        timings["expected"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    occ_fake = passes.fake_occurrence
    stats = None
    if plan.moments or plan.kernels:
        stats = RealStats(n=n_real, dim=dim, moments=passes.moments["real"] if plan.moments else None,
                          kernels=dict(passes.real_kernel or {}))
    return Evaluation(n_real=n_real, n_fake=n_fake, dim=dim, params=params, results=results, timings=timings,
                      expected=expected_of, real_stats=stats, diagnostics=diagnostics, fake_k_occurrence=occ_fake,
                      real_k_occurrence=passes.real_occurrence,
                      fake_is_hub=None if occ_fake is None else occ_fake >= hubs_k, **per_sample)


def with_protocol(names: tuple, protocol: str | None) -> tuple:
    """The checked metric names (:func:`check_options`), with 'protocol' among them where a preset is
    named (its metric is then asked for), in :data:`METRICS` order."""
    if protocol is None or "protocol" in names:
        return names
    return tuple(name for name in METRICS if name in names or name == "protocol")


def _check_protocol(protocol, names) -> str | None:
    """The peer preset's name, checked (None where none is asked for)."""
    from hubness_pr.metrics.protocols import PRESETS
    if protocol is None:
        if "protocol" in names:
            raise InputError(f"the metric 'protocol' needs a preset: protocol= one of {', '.join(PRESETS)} "
                             "(the metric command's --protocol NAME)", option="protocol")
        return None
    if protocol not in PRESETS:
        raise InputError(f"unknown protocol {protocol!r}: choose one of {', '.join(PRESETS)}", option="protocol")
    return protocol


def _run_passes(plan: Plan, real: np.ndarray, fake: np.ndarray, real_knn, ctx: RunContext, timings: dict,
                diagnostics: dict, real_stats: RealStats | None = None) -> Passes:
    """The k-NN pass of each set the plan reads (the real one skipped when ``real_knn`` is given),
    the k-occurrence and hubs, and one real x fake pass with every reduction the metrics read."""
    o = plan.options
    (n_real, dim), n_fake = real.shape, fake.shape[0]
    if plan.real_ks:
        _check_size(n_real, plan.real_ks[-1], "real", f"k={plan.real_ks[-1]}")
    if plan.fake_ks:
        _check_size(n_fake, plan.fake_ks[-1], "fake", f"k={plan.fake_ks[-1]}")
    if plan.moments or plan.kernels:
        _check_size(n_real, 1, "real", "FD, KID and CMMD")
        _check_size(n_fake, 1, "fake", "FD, KID and CMMD")
    xr, xf = as_tensor(real, ctx.device), as_tensor(fake, ctx.device)
    p = Passes(options=o, n_real=n_real, n_fake=n_fake, hub_only=plan.hub_only, ctx=ctx, real_x=xr, fake_x=xf)
    if plan.moments:
        t = time.perf_counter()
        given = real_stats.moments if real_stats is not None else None
        p.moments = {"real": given if given is not None else set_moments(xr, ctx), "fake": set_moments(xf, ctx)}
        timings["moments"] = time.perf_counter() - t
    grids = _kernel_plan(plan, n_real, n_fake, dim, ctx, real_stats)
    if not plan.real_ks:  # moment and kernel metrics only: no k-NN or cross pass
        if grids is not None:
            _finish_kernels(p, grids, xr, xf, ctx, ctx.fused(plan.kernel_pairs(n_real, n_fake), dim), timings)
        return p
    with torch.inference_mode():
        stats_r, stats_f = SetStats.of(xr), SetStats.of(xf)  # one read of each set, shared by every pass
    # the CPU route, chosen once for the whole run: the fused kernels pay off beyond small sets
    fused = ctx.fused(plan.pairs(n_real, n_fake, real_knn is not None), dim)
    p.fused = fused
    # the kernel sums ride along the passes that form their tiles (the real x real grid only on the
    # route its stored form is keyed by: hubness_pr.engine.real_stats.real_route)
    ride = dict(grids.grids) if grids is not None else {}
    if fused != real_route(ctx, n_real, dim):
        ride.pop("xx", None)
    t = time.perf_counter()
    if real_knn is None:
        p.real_graph = nearest_neighbors(xr, plan.real_ks[-1], stats=stats_r, exact_ks=plan.real_ks,
                                         desc="k-NN real", fused=fused, ctx=ctx, sums=ride.get("xx"))
    else:
        p.real_graph = _check_real_knn(real_knn, n_real, plan.real_ks[-1], plan.real_ks)
    timings["knn_real"] = time.perf_counter() - t
    if plan.fake_ks:
        t = time.perf_counter()
        # every column up to k exact where the k-occurrence is read (its lists), and the other radii
        exact = tuple(sorted(set(plan.fake_ks) | (set(range(1, o.k + 1)) if "fake" in plan.occurrence else set())))
        p.fake_graph = nearest_neighbors(xf, plan.fake_ks[-1], stats=stats_f, exact_ks=exact, desc="k-NN fake",
                                         fused=fused, ctx=ctx, sums=ride.get("yy"))
        timings["knn_fake"] = time.perf_counter() - t
    if "real" in plan.occurrence:
        p.real_occurrence = p.real_graph.k_occurrence(o.k)
    if "fake" in plan.occurrence:
        p.fake_occurrence = p.fake_graph.k_occurrence(o.k)
    if plan.hubs:
        p.real_hubs, p.fake_hubs = p.real_occurrence >= o.hubs_k, p.fake_occurrence >= o.hubs_k
    if plan.cross:
        want, sq = set(), {}
        for m in plan.metrics:
            if m.cross is not None:
                names, radii = m.cross(p)
                want |= names
                sq.update(radii)
        rows, cols = (np.flatnonzero(p.real_hubs), np.flatnonzero(p.fake_hubs)) if plan.hub_only else (None, None)
        # each fake's two nearest reals ride a full pass (its tiles' screens), timed with it
        near = NearestGrid(n_real, n_fake, xr.device) if plan.nearest and not plan.hub_only else None
        t = time.perf_counter()
        p.cross = cross_pass(xr, xf, CrossInputs(want=frozenset(want), sq_radii=sq), ctx, real_stats=stats_r,
                             fake_stats=stats_f, real_rows=rows, fake_cols=cols, fused=fused,
                             sums=None if plan.hub_only else ride.get("xy"), nearest=near)
        if near is not None:
            p.nearest = near.result(ctx.group)
        timings["cross"] = time.perf_counter() - t
        diagnostics.update(refined_pairs=p.cross.refined, cross_tile_side=p.cross.tile_side)
    if plan.nearest and p.nearest is None:  # no full cross pass: the same tiles for it (and KID's, CMMD's
        t = time.perf_counter()              # real x fake sums, which no pass has filled then)
        xy = ride.get("xy")
        p.nearest = nearest_two(xr, xf, ctx, fused=fused, real_stats=stats_r, fake_stats=stats_f,
                                sums=xy if xy is not None and not xy.bound else None)
        timings["nearest"] = time.perf_counter() - t
    if plan.nearest:
        diagnostics["nearest_refined_pairs"] = p.nearest.refined
    if grids is not None:
        _finish_kernels(p, grids, xr, xf, ctx, fused, timings)
    diagnostics["route"] = "fused CPU kernels" if fused else "torch"
    diagnostics["knn_fallback_rows"] = p.real_graph.fallback_rows + (p.fake_graph.fallback_rows if p.fake_graph else 0)
    return p


def _kernel_plan(plan: Plan, n_real: int, n_fake: int, dim: int, ctx: RunContext,
                 real_stats: RealStats | None) -> KernelPlan | None:
    """The kernel grids the run fills (None: no exact KID or CMMD); the real x real one only where
    the stored real sums (``real_stats``) do not hold every kernel."""
    if not plan.kernels:
        return None
    given = real_stats.kernels if real_stats is not None else {}
    real = {name: given[name] for name in plan.kernels} if all(name in given for name in plan.kernels) else None
    return plan_grids(n_real, n_fake, dim, plan.kernels, ctx.device, real)


def _finish_kernels(p: Passes, grids: KernelPlan, xr, xf, ctx: RunContext, fused: bool, timings: dict) -> None:
    """The grids no pass filled, each by its own pass (the real x real one on its stored route), and
    the kernel sums the metrics read."""
    t = time.perf_counter()
    p.kernel, p.real_kernel = finish(grids, xr, xf, ctx, fused, real_fused=real_route(ctx, xr.shape[0], xr.shape[1]))
    timings["kernel_sums"] = time.perf_counter() - t


def _check_hub_selection(names: tuple, knn: str, real_knn) -> None:
    if knn not in KNN_METHODS:
        raise ValueError(f"The 'knn' parameter of evaluate must be one of {', '.join(KNN_METHODS)}. Got {knn!r}.")
    if set(names) != {"epr"}:
        raise ValueError("approximate or given hub selection (knn='hnsw', hubs=...) computes eP&R only: "
                         "use metrics=('epr',); exact P&R, density/coverage, realism, rarity and hubness "
                         "statistics need every exact neighbour")
    if real_knn is not None:
        raise ValueError("real_knn is the exact graph: it cannot be combined with knn='hnsw' or hubs=...")


def _check_real_knn(graph, n: int, k_max: int, exact_ks: tuple) -> NeighborGraph:
    if not isinstance(graph, NeighborGraph):
        raise TypeError(f"The 'real_knn' parameter of evaluate must be a NeighborGraph. Got {type(graph).__name__}.")
    if graph.n != n or graph.k_max < k_max or not set(exact_ks) <= set(graph.exact_ks):
        raise ValueError(f"The 'real_knn' parameter of evaluate does not fit: a graph of {graph.n} samples, k_max "
                         f"{graph.k_max}, exact k {graph.exact_ks}; needed {n} samples, k_max {k_max}, exact k "
                         f"{tuple(exact_ks)}")
    return graph


def precision_recall(*, real, fake, k: int = 3, **options) -> PrecisionRecall:
    """Improved precision and recall of ``fake`` (M, dim) against ``real`` (N, dim); see :func:`evaluate`."""
    return evaluate(real=real, fake=fake, metrics=("pr",), k=k, **options).pr


def density_coverage(*, real, fake, k: int = 5, **options) -> DensityCoverage:
    """Density and coverage with neighbourhood size ``k`` (default 5); see :func:`evaluate`."""
    return evaluate(real=real, fake=fake, metrics=("dc",), dc_k=k, **options).dc


def efficient_precision_recall(*, real, fake, k: int = 3, hubs_k: int = 3, **options) -> EfficientPrecisionRecall:
    """eP&R: hub-only precision and recall (real hubs x fake hubs only); see :func:`evaluate`."""
    return evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=hubs_k, **options).epr


def realism_scores(*, real, fake, k: int = 3, **options) -> RealismScores:
    """Realism score of every fake sample; see :func:`evaluate`."""
    return evaluate(real=real, fake=fake, metrics=("realism",), k=k, **options).realism


def rarity_scores(*, real, fake, k: int = 3, **options) -> RarityScores:
    """Rarity score of every fake sample (NaN outside the real manifold); see :func:`evaluate`."""
    return evaluate(real=real, fake=fake, metrics=("rarity",), k=k, **options).rarity


def real_rarity_scores(*, real, k: int = 3, device="auto", memory_budget: int = DEFAULT_MEMORY_BUDGET,
                       progress: bool | None = None, group: Group = SINGLE, route: str | None = None,
                       ctx: RunContext | None = None) -> RarityScores:
    """Rarity score of every *real* sample against the balls of the other real samples (its own ball
    left out): ``min{r_i : d(x_j, x_i) < r_i, i != j}``, NaN where no other ball holds it. The
    reference distribution for the fakes' rarity scores (Han et al. 2023). One k-NN pass and one
    real x real pass (each pair's distance is screened twice: about the cost of a second real set).
    ``route`` and ``ctx`` as in :func:`evaluate`.
    """
    k = check_int(k, "k", "real_rarity_scores", 1)
    if ctx is None:
        memory_budget = check_int(memory_budget, "memory_budget", "real_rarity_scores", 2**20)
        with RunContext(device=resolve_device(device), memory_budget=memory_budget, route=route, group=group,
                        progress=progress) as own:
            return real_rarity_scores(real=real, k=k, ctx=own)
    dev = ctx.device
    x = as_feature_matrix(real, "real")
    _check_size(x.shape[0], k, "real", f"k={k}")
    xr = as_tensor(x, dev)
    with torch.inference_mode():
        stats = SetStats.of(xr)
    g = nearest_neighbors(xr, k, stats=stats, exact_ks=(k,), desc="k-NN real", ctx=ctx)
    res = cross_pass(xr, xr, CrossInputs(want=frozenset({"rarity"}), sq_radii={"r_pr": g.sq_radii(k)}), ctx,
                     real_stats=stats, fake_stats=stats, same_set=True)
    return scores_of(res["rarity"], k)


