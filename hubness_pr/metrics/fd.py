"""Frechet distance (FD) and FD-infinity from the same features (docs/definitions.md, "FD").

FD = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of the two sets' means and covariances
(ddof 1), accumulated in float64 (:mod:`hubness_pr.engine.moments`), the trace of the square root
from a factor of the real covariance (Cholesky, or ``eigh`` where it is singular) and one
``eigvalsh``. FID is FD on FID-Inception pool3 features. FD-infinity (Chong & Forsyth, CVPR 2020): FD of the real set against the first N fakes of a seeded permutation for
``fd_inf_points`` sizes N, a least-squares line in 1/N, its value at 1/N = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hubness_pr.engine.moments import Moments, frechet_distance, prefix_moments
from hubness_pr.metrics.registry import Metric, Passes, register

FD_INF_SMALLEST = 5000  # the reference's smallest subset (FID_IS_infinity: np.linspace(5000, num_im, 15))


@dataclass(frozen=True)
class FrechetDistance:
    """FD of the full sets (``value``) and FD-infinity (``infinity``; NaN when not computed)."""

    value: float
    infinity: float | None  # None: not asked for (fd_inf_points 0)


def fd_inf_sizes(m: int, points: int) -> list:
    """The fake subset sizes of FD-infinity: ``linspace(5000, m, points)`` as the reference (int), or
    from ``m // 2`` where ``m < 10000``; distinct, at least 2 each."""
    low = FD_INF_SMALLEST if m >= 2 * FD_INF_SMALLEST else max(2, m // 2)
    return sorted({int(s) for s in np.linspace(low, m, points).astype(np.int64)})


def fd_infinity(real: Moments, fake_x, ctx, seed: int, points: int) -> float:
    """FD-infinity of ``fake_x`` (float32 tensor or mapped rows) against the real moments: FD at each
    size of :func:`fd_inf_sizes` on the first N rows of ``numpy.random.RandomState(seed).permutation``
    (nested subsets: one pass over the fakes), then the intercept of the least-squares line of FD on
    1/N. NaN with fewer than two sizes."""
    m = fake_x.shape[0]
    sizes = fd_inf_sizes(m, points) if points > 0 else []
    if len(sizes) < 2:
        return float("nan")
    order = np.random.RandomState(seed).permutation(m)
    fds = [frechet_distance(real, part) for part in prefix_moments(fake_x, ctx, sizes, order)]
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=np.float64), np.asarray(fds), 1)
    return float(intercept)


def _finish(p: Passes) -> FrechetDistance:
    real, fake = p.moments["real"], p.moments["fake"]
    o = p.options
    infinity = (fd_infinity(real, p.fake_x, p.ctx, o.fd_inf_seed, o.fd_inf_points) if o.fd_inf_points
                else None)  # not asked for: absent from the report
    return FrechetDistance(value=frechet_distance(real, fake), infinity=infinity)


register(Metric("fd", _finish, moments=True, default=False, order=80,
                params=lambda o: {"fd_inf_seed": o.fd_inf_seed, "fd_inf_points": o.fd_inf_points},
                doc="Frechet distance (FID on Inception pool3 features) and FD-infinity"))
