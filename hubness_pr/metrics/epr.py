"""eP&R (Liang et al., ICML 2024): precision and recall of the hubs only, against the hub balls of
full-set radii. A hub has k-occurrence >= ``hubs_k``; eP&R precision is the fraction of fake hubs
inside some real hub ball, recall the fraction of real hubs inside some fake hub ball (``d <= r``).

Alone, eP&R compares real hubs x fake hubs only (its pass is restricted to them); beside a metric
that needs every pair, its flags come from hub-masked balls in the same full pass. Its hubs can also
be chosen by an approximate k-NN graph or given (:func:`hub_selected`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from hubness_pr.engine.cross import CrossInputs, cross_pass
from hubness_pr.engine.distances import as_tensor
from hubness_pr.engine.frame import SetStats
from hubness_pr.metrics.registry import Metric, Options, Passes, mean, register, standard_error


@dataclass(frozen=True)
class EfficientPrecisionRecall:
    """eP&R: P&R on hubs only, against hub balls of full-set radii.

    ``precision`` / ``recall`` are NaN when the set they average over has no hub;
    ``precision_se`` / ``recall_se``: the binomial standard errors over the hubs, given the hubs
    and both sets' radii (docs/definitions.md, "Standard errors").
    """

    precision: float
    precision_se: float
    recall: float
    recall_se: float
    real_hubs: int
    fake_hubs: int
    k: int
    hubs_k: int


def _cross(p: Passes) -> tuple[set, dict]:
    k = p.options.k
    r, s = p.real_graph.sq_radii(k), p.fake_graph.sq_radii(k)
    if p.hub_only:  # the pass runs on real hubs x fake hubs: its P&R flags are eP&R's
        return {"in_real", "in_fake"}, {"r_pr": r, "s_pr": s}
    # in a full pass, a ball that is not a hub's holds nothing
    return {"in_rhub", "in_fhub"}, {"r_pr": r, "s_pr": s, "r_hub": np.where(p.real_hubs, r, -1.0),
                                    "s_hub": np.where(p.fake_hubs, s, -1.0)}


def _flags(p: Passes) -> tuple[np.ndarray, np.ndarray]:
    """(fake inside some real hub ball, real inside some fake hub ball), True at hubs only."""
    c = p.cross
    in_rhub, in_fhub = (c["in_real"], c["in_fake"]) if p.hub_only else (c["in_rhub"], c["in_fhub"])
    return in_rhub & p.fake_hubs, in_fhub & p.real_hubs


def _result(fake_in: np.ndarray, real_in: np.ndarray, real_hubs, fake_hubs, o: Options) -> EfficientPrecisionRecall:
    fake_in, real_in = fake_in[fake_hubs], real_in[real_hubs]
    return EfficientPrecisionRecall(precision=mean(fake_in), precision_se=standard_error(fake_in),
                                    recall=mean(real_in), recall_se=standard_error(real_in),
                                    real_hubs=int(real_hubs.sum()), fake_hubs=int(fake_hubs.sum()), k=o.k,
                                    hubs_k=o.hubs_k)


def _finish(p: Passes) -> EfficientPrecisionRecall:
    return _result(*_flags(p), p.real_hubs, p.fake_hubs, p.options)


def _per_sample(p: Passes) -> dict:
    fake_in, real_in = _flags(p)
    return {"fake_in_real_hub_balls": fake_in, "real_in_fake_hub_balls": real_in}


register(Metric("epr", _finish, real_radii=("k",), fake_radii=("k",), hubs=True, cross=_cross, full_cross=False,
                per_sample=_per_sample, order=10, doc="eP&R: precision and recall of the hubs"))


@dataclass
class HubSelected:
    """eP&R with hubs chosen approximately or given: the result and what the run reports with it."""

    epr: EfficientPrecisionRecall
    masks: tuple                       # (real hubs, fake hubs)
    occurrence: dict                   # side -> approximate k-occurrence (absent for given hubs)
    per_sample: dict
    knn_report: dict
    timings: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)


def hub_selected(real, fake, o: Options, ctx, knn: str, options, hubs) -> HubSelected:
    """eP&R with hubs chosen by an approximate k-NN graph (``knn='hnsw'``, faiss HNSW with
    ``options``) or given (``hubs``: two masks); the hubs' radii (hubs x whole set) and the hub
    cross pass are the exact engine's."""
    from hubness_pr.engine.ann import hnsw_select, k_occurrence, quality
    from hubness_pr.engine.knn import neighbors_of

    k, hubs_k = o.k, o.hubs_k
    n_real, n_fake, dim = real.shape[0], fake.shape[0], real.shape[1]
    timings = {}
    dev, group = ctx.device, ctx.group
    xr, xf = as_tensor(real, dev), as_tensor(fake, dev)
    fused = ctx.fused(n_real * n_fake, dim)
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
    t = time.perf_counter()
    with torch.inference_mode():
        stats_r, stats_f = SetStats.of(xr), SetStats.of(xf)
    res = cross_pass(xr, xf, CrossInputs(want=frozenset({"in_real", "in_fake"}),
                                         sq_radii={"r_pr": radii[0], "s_pr": radii[1]}),
                     ctx, real_stats=stats_r, fake_stats=stats_f, real_rows=np.flatnonzero(masks[0]),
                     fake_cols=np.flatnonzero(masks[1]), fused=fused)
    timings["cross"] = time.perf_counter() - t
    fake_in, real_in = res["in_real"] & masks[1], res["in_fake"] & masks[0]
    return HubSelected(epr=_result(fake_in, real_in, masks[0], masks[1], o), masks=masks, occurrence=occ,
                       per_sample={"fake_in_real_hub_balls": fake_in, "real_in_fake_hub_balls": real_in},
                       knn_report=knn_report, timings=timings,
                       diagnostics={"refined_pairs": res.refined, "cross_tile_side": res.tile_side,
                                    "route": "fused CPU kernels" if fused else "torch"})
