"""Memorisation and authenticity of the generated samples, from each fake's two nearest reals.

For every fake ``y_j`` the exact search of :mod:`hubness_pr.engine.nearest` (riding the real x fake
pass, or :func:`hubness_pr.engine.nearest.nearest_two` where none runs) gives its nearest real ``x_a``
(distance d1) and second nearest (d2), ties by the lowest index. Then:

* **AuthPct** (Alaa et al., ICML 2022, "How faithful is your synthetic data?", as dgm-eval's
  ``metrics/authpct.py``): the fake is *authentic* when ``d1 > r1(x_a)``, ``r1`` the real sample's own
  distance to its nearest other real (self excluded by index; a duplicated real has ``r1 = 0``).
  ``authpct`` is the percentage of authentic fakes. Compared exactly (float64 squared distances);
  dgm-eval compares float32 ``torch.cdist`` values, so the two can differ only at near ties.
* **d1 / d2**: the ratio of the nearest and second-nearest real distances; a copy of a real sample
  (plus small noise) has d1 much smaller than d2, a sample of a fresh draw has d1 / d2 near 1 (in high
  dimension). ``0 / 0`` (a fake on two copies of one real) counts as 0: a copy. ``copy_count`` and
  ``copy_fraction``: the fakes with ``d1 / d2 < copy_ratio`` (default 0.5; docs/definitions.md says
  how it was chosen), with the quantiles of the ratio.

Per-sample arrays (input order of the fakes) stay in the result: ``nearest_real``,
``nearest_real_distance``, ``second_real``, ``second_real_distance``, ``ratio_d1_d2``, ``authentic``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hubness_pr.metrics.registry import Metric, Passes, mean, register, standard_error

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class Authenticity:
    """AuthPct and the d1/d2 copy statistics (module docstring); ``authpct`` and its standard error in
    percent, ``ratio_quantiles`` of d1/d2 (``q01`` ... ``q95``, numpy's linear quantiles)."""

    authpct: float
    authpct_se: float
    copy_count: int
    copy_fraction: float
    copy_fraction_se: float
    ratio_quantiles: dict
    nearest_real: np.ndarray = field(repr=False)
    nearest_real_distance: np.ndarray = field(repr=False)
    second_real: np.ndarray = field(repr=False)
    second_real_distance: np.ndarray = field(repr=False)
    ratio_d1_d2: np.ndarray = field(repr=False)
    authentic: np.ndarray = field(repr=False)


def ratio_of(sq_d1: np.ndarray, sq_d2: np.ndarray) -> np.ndarray:
    """d1 / d2 from exact squared distances (float64); 0 where d2 = 0 (then d1 = 0 too)."""
    d1, d2 = np.sqrt(sq_d1), np.sqrt(sq_d2)
    return np.divide(d1, d2, out=np.zeros_like(d1), where=d2 > 0)


def authenticity(nearest, real_sq_r1: np.ndarray, copy_ratio: float) -> Authenticity:
    """The result from the two nearest reals of each fake (:class:`hubness_pr.engine.nearest.NearestReals`)
    and the reals' exact squared 1-NN distances among themselves (self excluded)."""
    idx, sq = nearest.indices, nearest.sq_distances
    authentic = real_sq_r1[idx[:, 0]] < sq[:, 0] if idx.size else np.zeros(0, dtype=bool)
    ratio = ratio_of(sq[:, 0], sq[:, 1])
    copies = ratio < copy_ratio
    q = np.quantile(ratio, QUANTILES) if ratio.size else np.full(len(QUANTILES), np.nan)
    return Authenticity(authpct=100.0 * mean(authentic), authpct_se=100.0 * standard_error(authentic),
                        copy_count=int(copies.sum()), copy_fraction=mean(copies),
                        copy_fraction_se=standard_error(copies),
                        ratio_quantiles={f"q{round(100 * p):02d}": float(v) for p, v in zip(QUANTILES, q)},
                        nearest_real=idx[:, 0], nearest_real_distance=np.sqrt(sq[:, 0]),
                        second_real=idx[:, 1], second_real_distance=np.sqrt(sq[:, 1]), ratio_d1_d2=ratio,
                        authentic=authentic)


register(Metric("auth", lambda p: authenticity(p.nearest, p.real_graph.sq_radii(1), p.options.copy_ratio),
                real_radii=("one",), nearest=True, default=False, order=86,
                params=lambda o: {"copy_ratio": o.copy_ratio},
                doc="AuthPct and the d1/d2 copy statistics (memorisation)"))
