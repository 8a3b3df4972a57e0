"""P-precision and P-recall (Park & Kim, ICCV 2023, "Probabilistic precision and recall towards
reliable evaluation of generative models"; reference code kdst-team/Probablistic_precision_recall,
``metric/pp_pr.py``).

With ``R_X = a * mean_i r_i`` (a = ``ppr_a``, 1.2; r_i the real k-NN radii at k = ``ppr_k``, 4, self
excluded) and the score of a pair ``f(d) = max(0, 1 - d / R)``:

    P-precision = (1/M) sum_j [1 - prod_i (1 - f(d(x_i, y_j)))]   (over fakes, real radius R_X)
    P-recall    = (1/N) sum_i [1 - prod_j (1 - f(d(x_i, y_j)))]   (over reals, fake radius R_Y)

Only pairs with ``d < R`` have ``1 - f = d / R < 1``; the product is formed as ``exp`` of the sum of
``log(d / R)`` over those pairs (reductions ``ppr_fake`` / ``ppr_real`` of
:data:`hubness_pr.engine.reductions.TABLE`, op ``logsum``), each term from the pair's exact float64
distance (every pair within R plus the screening band is re-measured), so each sample's value is
exact to float64 rounding of the sum (its order follows the tiles, threads and ranks). A fake on a
real sample (d = 0) scores 1, as in the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hubness_pr.metrics.registry import Metric, Passes, mean, register


@dataclass(frozen=True)
class ProbabilisticPrecisionRecall:
    """P-precision (over the fakes) and P-recall (over the reals); ``radius_real`` / ``radius_fake``
    are R_X and R_Y (a times the mean k-NN radius of each set, original units)."""

    precision: float
    recall: float
    radius_real: float
    radius_fake: float
    k: int


def radius(graph, k: int, a: float) -> float:
    """``a`` times the mean of the exact k-NN radii of one set (float64)."""
    return float(a * np.mean(graph.radii(k)))


def _cross(p: Passes) -> tuple[set, dict]:
    o = p.options
    r_x, r_y = radius(p.real_graph, o.ppr_k, o.ppr_a), radius(p.fake_graph, o.ppr_k, o.ppr_a)
    return {"ppr_fake", "ppr_real"}, {"r_ppr": np.full(p.n_real, r_x * r_x), "s_ppr": np.full(p.n_fake, r_y * r_y)}


def _finish(p: Passes) -> ProbabilisticPrecisionRecall:
    o = p.options
    # 1 - prod(1 - f) = 1 - exp(sum log(d / R)) = -expm1(sum); a sum of -inf (a pair at d = 0) gives 1
    return ProbabilisticPrecisionRecall(precision=mean(-np.expm1(p.cross["ppr_fake"])),
                                        recall=mean(-np.expm1(p.cross["ppr_real"])),
                                        radius_real=radius(p.real_graph, o.ppr_k, o.ppr_a),
                                        radius_fake=radius(p.fake_graph, o.ppr_k, o.ppr_a), k=o.ppr_k)


register(Metric("ppr", _finish, real_radii=("ppr_k",), fake_radii=("ppr_k",), cross=_cross, default=False,
                params=lambda o: {"ppr_a": o.ppr_a, "ppr_k": o.ppr_k}, order=72,
                doc="P-precision and P-recall"))
