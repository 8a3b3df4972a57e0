"""Clipped density and clipped coverage (Salvy, Talbot & Thirion 2025, "Enhanced generative model
evaluation with clipped density and coverage"; reference code nicolassalvy/ClippedDensityCoverage,
``metrics/Clipped_Density_Coverage.py``), with K = ``dc_k`` (5, the reference's default).

* **Clipped density.** Real radii r_i at K, clipped at their median: ``r~_i = min(r_i, median(r))``
  (numpy's median of the distances). A fake's score is ``min(1, #{i: d(x_i, y) <= r~_i} / K)``
  (reduction ``clip_dens``); their mean is divided by the same mean over the reals, each real scored
  against the other reals' clipped balls from its K-NN list (``#{i != j: j among the K nearest of i,
  d(x_i, x_j) <= r~_i}``, exact distances), and clipped at 1 (the reference's default).
* **Clipped coverage.** Each real's share of its K nearest fakes inside its unclipped ball,
  ``min(K, #{j: d(x_i, y_j) < r_i}) / K`` (reduction ``cover_count``), averaged over the reals (y),
  then mapped through the reference's analytic map ``g(y) = #{m in 0..M: f(m) < y} / (M + 1)``,
  ``f(m)`` the expected value of y when m of the M fakes follow the real distribution
  (:func:`coverage_map`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hubness_pr.engine.distances import exact_sq_dist
from hubness_pr.metrics.registry import Metric, Passes, register


@dataclass(frozen=True)
class ClippedDensityCoverage:
    """Clipped density (at most 1) and clipped coverage (in [0, 1]); ``coverage_unmapped`` is the mean
    share before the analytic map, ``density_unclipped`` the density before the clip at 1."""

    density: float
    coverage: float
    density_unclipped: float
    coverage_unmapped: float
    k: int


def clipped_sq_radii(sq_radii: np.ndarray) -> np.ndarray:
    """Squared radii clipped at the median of the radii (float64; the median's square rounded once)."""
    radii = np.sqrt(sq_radii)
    med = np.median(radii)
    return np.where(radii <= med, sq_radii, med * med)


def _log_factorials(n: int) -> np.ndarray:
    """``log(m!)`` for m = 0..n (a cumulative sum of logs, float64)."""
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1)))))


def coverage_map(m: int, k: int, n_real: int, n_fake: int, log_fact: np.ndarray | None = None) -> float:
    """f(m): the expected mean share of a real's K nearest fakes inside its K-NN ball when m of the
    ``n_fake`` fakes follow the real distribution (0 for m < K):
    ``(1/K) sum_{j=0..m} min(j, K) C(m, j) B(K + j, N + m - K - j) / B(K, N - K)``, in logs."""
    if m < k:
        return 0.0
    lf = _log_factorials(n_real + n_fake) if log_fact is None else log_fact
    j = np.arange(m + 1)
    with np.errstate(divide="ignore"):  # log(0) at j = 0
        log_min = np.log(np.minimum(j, k))
    log_binomial = lf[m] - lf[j] - lf[m - j]
    log_beta = lf[k + j - 1] + lf[n_real + m - k - j - 1] - lf[n_real + m - 1]
    log_den = lf[k - 1] + lf[n_real - k - 1] - lf[n_real - 1]
    terms = log_min + log_binomial + log_beta - log_den
    return float(np.exp(np.logaddexp.reduce(terms)) / k)


def coverage_mapped(y: float, k: int, n_real: int, n_fake: int) -> float:
    """``g(y) = #{m in 0..M: f(m) < y} / (M + 1)`` as the reference's ``searchsorted`` finds it on the
    whole table of f: the same bisection, with f formed only where the bisection reads it (O(M log M)
    instead of the table's O(M^2))."""
    lf = _log_factorials(n_real + n_fake)
    lo, hi = 0, n_fake + 1
    while lo < hi:  # numpy's binary search (side="left")
        mid = lo + ((hi - lo) >> 1)
        if coverage_map(mid, k, n_real, n_fake, lf) < y:
            lo = mid + 1
        else:
            hi = mid
    return lo / (n_fake + 1)


def real_self_counts(real_x, graph, k: int, clipped_sq: np.ndarray, fused: bool = False, pool=None) -> np.ndarray:
    """For each real j, the other reals whose clipped ball holds it among their K nearest:
    ``#{i: j in knn_K(i), d(x_i, x_j) <= r~_i}`` (int64 (N,)), exact distances where clipped (the
    same bits on either route: ``fused``, the run's CPU route, in the threads of ``pool``)."""
    n = graph.n
    idx = graph.indices[:, :k]
    inside = np.ones(idx.shape, dtype=bool)  # an unclipped ball holds its K nearest
    rows = np.flatnonzero(clipped_sq < graph.sq_radii(k))
    if rows.size:
        i = np.repeat(rows, k)
        j = idx[rows].reshape(-1)
        dev = real_x.device  # a tensor or file rows (MappedRows); the exact distances' bits on any route
        d2 = exact_sq_dist(real_x, torch.as_tensor(i, device=dev), real_x, torch.as_tensor(j, device=dev),
                           fused=fused, pool=pool).cpu().numpy()
        inside[rows] = (d2 <= clipped_sq[i]).reshape(rows.size, k)
    return np.bincount(idx[inside], minlength=n).astype(np.int64)


def _cross(p: Passes) -> tuple[set, dict]:
    sq = p.real_graph.sq_radii(p.options.dc_k)
    return {"clip_dens", "cover_count"}, {"r_clip": clipped_sq_radii(sq), "r_dc": sq}


def _finish(p: Passes) -> ClippedDensityCoverage:
    k, graph = p.options.dc_k, p.real_graph
    fidelity = np.mean(np.clip(p.cross["clip_dens"] / k, 0, 1))
    ideal = real_self_counts(p.real_x, graph, k, clipped_sq_radii(graph.sq_radii(k)), p.fused,
                             p.ctx.pool if p.fused else None)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = float(fidelity / np.mean(np.clip(ideal / k, 0, 1)))
    share = float(np.mean(np.minimum(p.cross["cover_count"], k) / k))
    return ClippedDensityCoverage(density=min(density, 1.0), coverage=coverage_mapped(share, k, p.n_real, p.n_fake),
                                  density_unclipped=density, coverage_unmapped=share, k=k)


register(Metric("cdc", _finish, real_radii=("dc_k",), cross=_cross, default=False, order=74,
                doc="clipped density and clipped coverage"))
