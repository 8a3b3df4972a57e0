"""The metrics: pure functions, arrays in, frozen dataclasses out (docs/definitions.md).

:func:`evaluate` is the engine: one exact k-NN pass inside each set that is needed, then one tiled
real x fake pass that feeds every requested cross metric from the same tiles. The single-metric
functions (:func:`precision_recall`, :func:`density_coverage`, ...) call it with one metric, so
there is exactly one implementation of each definition.

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
  least k fakes (membership ``d <= r``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hubness_pr.errors import InputError
from hubness_pr.engine.inputs import as_feature_matrix, check_int
from hubness_pr.engine.ann import KNN_METHODS, HnswOptions
from hubness_pr.engine.cross import CrossInputs, cross_pass
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.distances import DEFAULT_MEMORY_BUDGET, as_tensor, resolve_device
from hubness_pr.engine.distributed import SINGLE, Group
from hubness_pr.engine.frame import SetStats
from hubness_pr.engine.knn import NeighborGraph, nearest_neighbors
from hubness_pr.metrics.hubness import HubnessStats, hubness_stats

METRICS = ("epr", "pr", "dc", "realism", "rarity", "hubness", "prcover")
DEFAULT_METRICS = ("epr", "pr", "dc", "realism", "rarity", "hubness")  # what a run computes unless told
_FULL_CROSS = ("pr", "dc", "realism", "rarity", "prcover")


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019), membership ``<=``."""

    precision: float
    recall: float
    k: int

    def to_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall}


@dataclass(frozen=True)
class DensityCoverage:
    """Density and coverage (Naeem et al. 2020), membership ``<``, real radii only."""

    density: float
    coverage: float
    k: int

    def to_dict(self) -> dict:
        return {"density": self.density, "coverage": self.coverage}


@dataclass(frozen=True)
class PrecisionRecallCover:
    """PR-Cover (Cheema & Urner, AISTATS 2023): with k' = C k, ``precision`` is the fraction of fakes
    whose k'-NN ball among the fakes holds at least k reals, ``recall`` the fraction of reals whose
    k'-NN ball among the reals holds at least k fakes; membership ``<=``."""

    precision: float
    recall: float
    k: int
    k_prime: int

    def to_dict(self) -> dict:
        return {"cover_precision": self.precision, "cover_recall": self.recall, "k": self.k, "k_prime": self.k_prime}


@dataclass(frozen=True)
class EfficientPrecisionRecall:
    """eP&R (Liang et al. 2024): P&R on hubs only, against hub balls of full-set radii.

    ``precision`` / ``recall`` are NaN when the set they average over has no hub.
    """

    precision: float
    recall: float
    real_hubs: int
    fake_hubs: int
    k: int
    hubs_k: int

    def to_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall,
                "real_hubs": self.real_hubs, "fake_hubs": self.fake_hubs}


def _summary(values: np.ndarray, defined: np.ndarray, count_name: str, fraction_name: str) -> dict:
    v = values[defined]
    n = int(defined.sum())
    stats = {count_name: n, fraction_name: n / values.size if values.size else float("nan")}
    if n:
        stats.update(mean=float(v.mean()), median=float(np.median(v)), std=float(v.std()),
                     min=float(v.min()), max=float(v.max()))
    else:
        stats.update(mean=float("nan"), median=float("nan"), std=float("nan"),
                     min=float("nan"), max=float("nan"))
    return stats


@dataclass(frozen=True)
class RealismScores:
    """Realism score of every fake sample, float64 (M,), input order; +inf on a kept real sample.

    ``real_index`` (int64 (M,)): the real sample that gives each fake its score (the argmax, ties by
    index); -1 where every ratio is 0.
    """

    scores: np.ndarray = field(repr=False)
    k: int
    real_index: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return _summary(self.scores, np.isfinite(self.scores), "defined", "fraction_defined")


@dataclass(frozen=True)
class RarityScores:
    """Rarity score of every fake sample, float64 (M,), input order; NaN outside every real ball."""

    scores: np.ndarray = field(repr=False)
    k: int

    def to_dict(self) -> dict:
        return _summary(self.scores, ~np.isnan(self.scores), "inside", "fraction_inside")


@dataclass(frozen=True)
class Evaluation:
    """Everything one run computed. Metrics not requested are ``None``.

    Per-sample arrays follow the input order of the fake set (M,):
    ``fake_in_real_manifold`` (bool, precision membership), ``fake_k_occurrence`` (int64, within the
    fake set), ``fake_is_hub`` (bool); realism and rarity scores are in their own results.
    ``real_k_occurrence`` (int64 (N,)) is the k-occurrence within the real set, input order.
    eP&R's per-hub decisions: ``fake_in_real_hub_balls`` (bool (M,): a fake hub inside some real hub
    ball) and ``real_in_fake_hub_balls`` (bool (N,)), meaningful at the hubs only (False elsewhere),
    so that other averages over the hubs can be formed (e.g. weighted by 1 / k-occurrence).
    """

    n_real: int
    n_fake: int
    dim: int
    params: dict
    pr: PrecisionRecall | None = None
    dc: DensityCoverage | None = None
    epr: EfficientPrecisionRecall | None = None
    realism: RealismScores | None = None
    rarity: RarityScores | None = None
    prcover: PrecisionRecallCover | None = None
    hubness_real: HubnessStats | None = None
    hubness_fake: HubnessStats | None = None
    fake_in_real_manifold: np.ndarray | None = field(default=None, repr=False)
    fake_k_occurrence: np.ndarray | None = field(default=None, repr=False)
    real_k_occurrence: np.ndarray | None = field(default=None, repr=False)
    fake_is_hub: np.ndarray | None = field(default=None, repr=False)
    fake_in_real_hub_balls: np.ndarray | None = field(default=None, repr=False)
    real_in_fake_hub_balls: np.ndarray | None = field(default=None, repr=False)
    timings: dict = field(default_factory=dict)      # seconds per phase
    diagnostics: dict = field(default_factory=dict)  # refined_pairs, cross_tile_side, knn_fallback_rows

    def to_dict(self) -> dict:
        """JSON-ready dict: n_real, n_fake, dim, params, then one block per computed metric."""
        out = {"n_real": self.n_real, "n_fake": self.n_fake, "dim": self.dim, "params": dict(self.params)}
        if self.epr is not None:
            out["epr"] = self.epr.to_dict()
            if self.pr is not None:
                out["epr"]["precision_minus_exact"] = self.epr.precision - self.pr.precision
                out["epr"]["recall_minus_exact"] = self.epr.recall - self.pr.recall
        for name in ("pr", "dc", "realism", "rarity", "prcover"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_dict()
        if self.hubness_real is not None:
            keep = ("skewness", "max", "hubs", "antihubs", "robin_hood", "gini")
            out["hubness"] = {side: {key: asdict(h)[key] for key in keep}
                              for side, h in (("real", self.hubness_real), ("fake", self.hubness_fake))}
        out["timings"] = dict(self.timings)
        out["diagnostics"] = dict(self.diagnostics)
        return out


def _check_metrics(metrics) -> tuple:
    if metrics is None or not isinstance(metrics, (str, list, tuple, set, frozenset)):
        raise TypeError(f"The 'metrics' parameter of evaluate must be a list or a comma string drawn from "
                        f"{', '.join(METRICS)}. Got {metrics!r} instead.")
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(
            f"The 'metrics' parameter of evaluate must be a non-empty list drawn from "
            f"{', '.join(METRICS)}. Got {', '.join(map(repr, unknown)) or 'nothing'} instead."
        )
    return tuple(m for m in METRICS if m in metrics)


def check_options(*, metrics=DEFAULT_METRICS, k=3, dc_k=5, hubs_k=3, memory_budget=DEFAULT_MEMORY_BUDGET,
                  device="auto"):
    """Validate the options of :func:`evaluate` before any heavy work; returns them normalised
    as ``(metrics, k, dc_k, hubs_k, memory_budget, torch.device)``."""
    return (_check_metrics(metrics), check_int(k, "k", "evaluate", 1), check_int(dc_k, "dc_k", "evaluate", 1),
            check_int(hubs_k, "hubs_k", "evaluate", 1), check_int(memory_budget, "memory_budget", "evaluate", 2**20),
            resolve_device(device))


def _check_size(n: int, k: int, name: str, why: str) -> None:
    if n < k + 1:
        raise InputError(
            f"{name} has {n} samples; {why} needs at least {k + 1} (the k-th neighbour of every sample must exist)",
            role=name)


def _mean(flags: np.ndarray) -> float:
    return float(np.mean(flags, dtype=np.float64)) if flags.size else float("nan")


def real_knn_needs(metrics=DEFAULT_METRICS, k: int = 3, dc_k: int = 5, prcover_c: int = 3) -> tuple[int, tuple]:
    """``(k_max, exact_ks)`` of the real set's k-NN graph that :func:`evaluate` needs for ``metrics``
    (``(0, ())``: none), so that a caller can look for a stored summary (:mod:`hubness_pr.io.summary`)."""
    ks = _real_ks(set(_check_metrics(metrics)), k, dc_k, prcover_c)
    return max(ks, default=0), tuple(sorted(set(ks)))


def _real_ks(want: set, k: int, dc_k: int, prcover_c: int) -> tuple:
    """The real radii the metrics ``want`` read: k, dc_k, C k (PR-Cover)."""
    return (((k,) if want & {"pr", "realism", "rarity", "epr", "hubness"} else ())
            + ((dc_k,) if "dc" in want else ()) + ((prcover_c * k,) if "prcover" in want else ()))


def evaluate(*, real, fake, metrics=DEFAULT_METRICS, k: int = 3, dc_k: int = 5, hubs_k: int = 3, device="auto",
             memory_budget: int = DEFAULT_MEMORY_BUDGET, real_knn: NeighborGraph | None = None,
             progress: bool | None = None, group: Group = SINGLE, knn: str = "exact",
             hnsw: HnswOptions | None = None, hubs: tuple | None = None, prcover_c: int = 3,
             route: str | None = None, ctx: RunContext | None = None) -> Evaluation:
    """Compute the requested metrics of ``fake`` against ``real`` in one pass.

    Args:
        real: real features, array-like (N, dim), any real numeric dtype (converted to float32).
        fake: generated features (M, dim).
        metrics: subset of ``('epr', 'pr', 'dc', 'realism', 'rarity', 'hubness', 'prcover')`` (list or comma
            string; default: all but 'prcover').
        k: neighbourhood size of P&R, eP&R, realism, rarity and k-occurrence (default 3).
        dc_k: neighbourhood size of density and coverage (default 5).
        hubs_k: hub threshold t: a hub has k-occurrence >= t (default 3).
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        memory_budget: bytes of working memory for distance tiles (the only tiling knob).
        real_knn: the real set's k-NN graph computed earlier (:func:`real_knn_needs` says which; a
            stored summary, :mod:`hubness_pr.io.summary`); its pass is then skipped. Results are identical.
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
        route: the CPU route, 'auto' (default: the fused kernels from a size on), 'fused' or 'torch'.
        ctx: a :class:`hubness_pr.engine.context.RunContext` to run in (its thread pool reused); it then
            replaces ``device``, ``memory_budget``, ``progress``, ``group`` and ``route``.

    Returns:
        :class:`Evaluation`; results do not depend on ``memory_budget``, the device or the number of
        processes beyond float ties.
    """
    t_start = time.perf_counter()
    if ctx is not None:
        device, memory_budget, progress, group = ctx.device, ctx.memory_budget, ctx.progress, ctx.group
    metrics, k, dc_k, hubs_k, memory_budget, dev = check_options(
        metrics=metrics, k=k, dc_k=dc_k, hubs_k=hubs_k, memory_budget=memory_budget, device=device)
    prcover_c = check_int(prcover_c, "prcover_c", "evaluate", 1)
    if ctx is None:
        with RunContext(device=dev, memory_budget=memory_budget, route=route, group=group, progress=progress) as own:
            return evaluate(real=real, fake=fake, metrics=metrics, k=k, dc_k=dc_k, hubs_k=hubs_k, real_knn=real_knn,
                            knn=knn, hnsw=hnsw, hubs=hubs, prcover_c=prcover_c, ctx=own)
    real = as_feature_matrix(real, "real")
    fake = as_feature_matrix(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features have different dimensions: {real.shape[1]} vs {fake.shape[1]}")
    n_real, n_fake, dim = real.shape[0], fake.shape[0], real.shape[1]

    want = set(metrics)
    if knn not in KNN_METHODS:
        raise ValueError(f"The 'knn' parameter of evaluate must be one of {', '.join(KNN_METHODS)}. Got {knn!r}.")
    if knn != "exact" or hubs is not None:  # hubs chosen approximately or given: eP&R alone
        if want != {"epr"}:
            raise ValueError("approximate or given hub selection (knn='hnsw', hubs=...) computes eP&R only: "
                             "use metrics=('epr',); exact P&R, density/coverage, realism, rarity and hubness "
                             "statistics need every exact neighbour")
        if real_knn is not None:
            raise ValueError("real_knn is the exact graph: it cannot be combined with knn='hnsw' or hubs=...")
        return _hub_selected_epr(real, fake, k, hubs_k, ctx, knn, hnsw or HnswOptions(), hubs, metrics, t_start)
    real_k = k if want & {"pr", "realism", "rarity", "epr", "hubness"} else 0
    real_ks = _real_ks(want, k, dc_k, prcover_c)  # radii the metrics read
    real_kmax = max(real_ks)
    fake_k = k if want & {"pr", "epr", "hubness"} else 0
    k_cover = prcover_c * k if "prcover" in want else 0
    fake_kmax = max(fake_k, k_cover)
    _check_size(n_real, real_kmax, "real", f"k={real_kmax}")
    if fake_kmax:
        _check_size(n_fake, fake_kmax, "fake", f"k={fake_kmax}")

    timings, diagnostics = {}, {}
    xr, xf = as_tensor(real, dev), as_tensor(fake, dev)
    with torch.inference_mode():
        stats_r, stats_f = SetStats.of(xr), SetStats.of(xf)  # one read of each set, shared by every pass
    # the CPU route, chosen once for the whole run: the fused kernels pay off beyond small sets
    work = ((n_real**2 / 2 if real_knn is None else 0) + (n_fake**2 / 2 if fake_kmax else 0) + n_real * n_fake) * dim
    fused = ctx.fused(work)
    t = time.perf_counter()
    if real_knn is None:
        g_real = nearest_neighbors(xr, real_kmax, stats=stats_r, exact_ks=real_ks, desc="k-NN real", fused=fused,
                                   ctx=ctx)
    else:
        g_real = _check_real_knn(real_knn, n_real, real_kmax, real_ks)
    timings["knn_real"] = time.perf_counter() - t
    g_fake = None
    if fake_kmax:
        t = time.perf_counter()
        # every column up to k exact (the k-occurrence's lists), and PR-Cover's radius
        fake_ks = tuple(range(1, fake_k + 1)) + ((k_cover,) if k_cover else ())
        g_fake = nearest_neighbors(xf, fake_kmax, stats=stats_f, exact_ks=fake_ks, desc="k-NN fake", fused=fused,
                                   ctx=ctx)
        timings["knn_fake"] = time.perf_counter() - t

    occ_real = g_real.k_occurrence(k) if real_k else None
    occ_fake = g_fake.k_occurrence(k) if fake_k else None
    hubs_real = occ_real >= hubs_k if "epr" in want else None
    hubs_fake = occ_fake >= hubs_k if "epr" in want else None
    # eP&R alone compares real hubs x fake hubs only; there its precision/recall flags are eP&R's
    hub_only = "epr" in want and not want & set(_FULL_CROSS)
    # each metric's reductions (hubness_pr.engine.reductions.TABLE) and the squared radii they read
    reductions, sq = set(), {}
    if real_k:
        sq["r_pr"] = g_real.sq_radii(k)
    if fake_k:
        sq["s_pr"] = g_fake.sq_radii(k)
    if "pr" in want or hub_only:
        reductions |= {"in_real", "in_fake"}
    if "rarity" in want:
        reductions.add("rarity")
    if "dc" in want:
        reductions |= {"dens", "covered"}
        sq["r_dc"] = g_real.sq_radii(dc_k)
    if "epr" in want and not hub_only:  # a ball that is not a hub's holds nothing
        reductions |= {"in_rhub", "in_fhub"}
        sq["r_hub"], sq["s_hub"] = np.where(hubs_real, sq["r_pr"], -1.0), np.where(hubs_fake, sq["s_pr"], -1.0)
    if "realism" in want:
        radii = g_real.radii(k)
        reductions.add("realism")
        sq["r_rt"] = np.where(radii <= np.median(radii), g_real.sq_radii(k), 0.0)
    if "prcover" in want:
        reductions |= {"cover_fake", "cover_real"}
        sq["r_cover"], sq["s_cover"] = g_real.sq_radii(k_cover), g_fake.sq_radii(k_cover)
    inputs = CrossInputs(want=frozenset(reductions), sq_radii=sq)
    rows = np.flatnonzero(hubs_real) if hub_only else None
    cols = np.flatnonzero(hubs_fake) if hub_only else None
    res = None
    if want - {"hubness"}:
        t = time.perf_counter()
        res = cross_pass(xr, xf, inputs, ctx, real_stats=stats_r, fake_stats=stats_f, real_rows=rows, fake_cols=cols,
                         fused=fused)
        timings["cross"] = time.perf_counter() - t
        diagnostics.update(refined_pairs=res.refined, cross_tile_side=res.tile_side)
    diagnostics["route"] = "fused CPU kernels" if fused else "torch"
    diagnostics["knn_fallback_rows"] = g_real.fallback_rows + (g_fake.fallback_rows if g_fake else 0)

    results = {}
    if "pr" in want:
        results["pr"] = PrecisionRecall(precision=_mean(res["in_real"]), recall=_mean(res["in_fake"]), k=k)
    if "dc" in want:
        density = float(res["dens"].sum(dtype=np.float64) / (dc_k * n_fake))
        coverage = _mean(res["covered"])
        results["dc"] = DensityCoverage(density=density, coverage=coverage, k=dc_k)
    if "epr" in want:
        in_rhub = res["in_real"] if hub_only else res["in_rhub"]
        in_fhub = res["in_fake"] if hub_only else res["in_fhub"]
        results["fake_in_real_hub_balls"] = in_rhub & hubs_fake
        results["real_in_fake_hub_balls"] = in_fhub & hubs_real
        results["epr"] = EfficientPrecisionRecall(
            precision=_mean(in_rhub[hubs_fake]), recall=_mean(in_fhub[hubs_real]),
            real_hubs=int(hubs_real.sum()), fake_hubs=int(hubs_fake.sum()), k=k, hubs_k=hubs_k)
    if "realism" in want:
        results["realism"] = RealismScores(scores=np.sqrt(res["realism"]), k=k, real_index=res["realism_index"])
    if "rarity" in want:
        rarity = np.sqrt(res["rarity"])
        rarity[~np.isfinite(rarity)] = np.nan
        results["rarity"] = RarityScores(scores=rarity, k=k)
    if "prcover" in want:  # at least k of the other set inside the own k' ball (count >= k' / C)
        results["prcover"] = PrecisionRecallCover(precision=_mean(res["cover_fake"] >= k),
                                                  recall=_mean(res["cover_real"] >= k), k=k, k_prime=k_cover)
    if "hubness" in want:
        results["hubness_real"] = hubness_stats(occ_real, k=k, hubs_k=hubs_k)
        results["hubness_fake"] = hubness_stats(occ_fake, k=k, hubs_k=hubs_k)
    timings["total"] = time.perf_counter() - t_start

    params = {"k": k, "dc_k": dc_k, "hubsK": hubs_k, "metrics": list(metrics), "device": str(dev),
              "memory_budget": memory_budget, "processes": group.world, "backend": group.backend}
    if "prcover" in want:
        params["prcover_c"] = prcover_c
    return Evaluation(
        n_real=n_real, n_fake=n_fake, dim=dim, params=params, timings=timings, diagnostics=diagnostics,
        fake_in_real_manifold=res["in_real"] if "pr" in want else None,
        fake_k_occurrence=occ_fake,
        real_k_occurrence=occ_real,
        fake_is_hub=(occ_fake >= hubs_k) if occ_fake is not None else None,
        **results,
    )


def _hub_selected_epr(real, fake, k, hubs_k, ctx: RunContext, knn, options, hubs, metrics, t_start) -> Evaluation:
    """eP&R with hubs chosen by an approximate k-NN graph (``knn='hnsw'``) or given (``hubs``); the
    hubs' radii (hubs x whole set) and the hub cross pass are the exact engine's."""
    from hubness_pr.engine.ann import hnsw_select, k_occurrence, quality
    from hubness_pr.engine.knn import neighbors_of

    n_real, n_fake, dim = real.shape[0], fake.shape[0], real.shape[1]
    _check_size(n_real, k, "real", f"k={k}")
    _check_size(n_fake, k, "fake", f"k={k}")
    timings, diagnostics = {}, {}
    dev, group = ctx.device, ctx.group
    xr, xf = as_tensor(real, dev), as_tensor(fake, dev)
    fused = ctx.fused((n_real * n_fake) * dim)
    occ = {}
    if hubs is None:
        knn_report = {"method": knn, **options.to_dict()}
        for side, x, n in (("real", real, n_real), ("fake", fake, n_fake)):
            spent = [0.0]

            def check(found, x=x, spent=spent):  # timed apart from the index
                t = time.perf_counter()
                out = quality(x, found, k, hubs_k, options, ctx=ctx, fused=fused)
                spent[0] += time.perf_counter() - t
                return out

            t = time.perf_counter()
            found, knn_report[side] = hnsw_select(x, k, options, check)
            timings[f"index_{side}"] = time.perf_counter() - t - spent[0]
            timings[f"check_{side}"] = spent[0]
            occ[side] = k_occurrence(found, n, k)
        masks = (occ["real"] >= hubs_k, occ["fake"] >= hubs_k)
        if group.active:  # every rank goes on with rank 0's hubs (whatever each rank's index found)
            occ["real"], occ["fake"], masks, knn_report = group.gather_objects(
                (occ["real"], occ["fake"], masks, knn_report))[0]
    else:
        knn_report = {"method": "given"}
        masks = tuple(np.asarray(h, dtype=bool).reshape(-1) for h in hubs)
        if masks[0].shape != (n_real,) or masks[1].shape != (n_fake,):
            raise ValueError(f"hubs must be two boolean masks of {n_real} and {n_fake} samples")
    radii = []
    for side, x, mask in (("real", xr, masks[0]), ("fake", xf, masks[1])):
        t = time.perf_counter()
        full = np.zeros(mask.shape[0], dtype=np.float64)  # read at hubs only
        full[mask] = neighbors_of(x, np.flatnonzero(mask), k, desc=f"hub radii {side}", fused=fused,
                                  ctx=ctx)[1][:, k - 1]
        radii.append(full)
        timings[f"hub_radii_{side}"] = time.perf_counter() - t
    rows, cols = np.flatnonzero(masks[0]), np.flatnonzero(masks[1])
    t = time.perf_counter()
    with torch.inference_mode():
        stats_r, stats_f = SetStats.of(xr), SetStats.of(xf)
    res = cross_pass(xr, xf, CrossInputs(want=frozenset({"in_real", "in_fake"}),
                                         sq_radii={"r_pr": radii[0], "s_pr": radii[1]}),
                     ctx, real_stats=stats_r, fake_stats=stats_f, real_rows=rows, fake_cols=cols, fused=fused)
    timings["cross"] = time.perf_counter() - t
    diagnostics.update(refined_pairs=res.refined, cross_tile_side=res.tile_side,
                       route="fused CPU kernels" if fused else "torch")
    epr = EfficientPrecisionRecall(precision=_mean(res["in_real"][masks[1]]), recall=_mean(res["in_fake"][masks[0]]),
                                   real_hubs=int(masks[0].sum()), fake_hubs=int(masks[1].sum()), k=k,
                                   hubs_k=hubs_k)
    timings["total"] = time.perf_counter() - t_start
    params = {"k": k, "hubsK": hubs_k, "metrics": list(metrics), "device": str(dev), "memory_budget": ctx.memory_budget,
              "processes": group.world, "backend": group.backend, "knn": knn_report}
    return Evaluation(n_real=n_real, n_fake=n_fake, dim=dim, params=params, timings=timings,
                      diagnostics=diagnostics, epr=epr, fake_k_occurrence=occ.get("fake"),
                      real_k_occurrence=occ.get("real"),
                      fake_is_hub=masks[1], fake_in_real_hub_balls=res["in_real"] & masks[1],
                      real_in_fake_hub_balls=res["in_fake"] & masks[0])


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
    rarity = np.sqrt(res["rarity"])
    rarity[~np.isfinite(rarity)] = np.nan
    return RarityScores(scores=rarity, k=k)


def json_safe(value):
    """Replace NaN/Inf by None, recursively, so the result is strict JSON."""
    if isinstance(value, dict):
        return {key: json_safe(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
