"""Realism score (Kynkaanniemi et al., NeurIPS 2019): ``max_i rt_i / d(y, x_i)`` over the real
samples with ``rt_i = r_i`` if ``r_i <= median(r)`` else 0 (the paper's plain ratio; the official
code reports its square). A fake at distance 0 from a kept real sample scores +inf."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hubness_pr.metrics.registry import Metric, Passes, register


@dataclass(frozen=True)
class RealismScores:
    """Realism score of every fake sample, float64 (M,), input order; +inf on a kept real sample.

    ``real_index`` (int64 (M,)): the real sample that gives each fake its score (the argmax, ties by
    index); -1 where every ratio is 0.
    """

    scores: np.ndarray = field(repr=False)
    k: int
    real_index: np.ndarray | None = field(default=None, repr=False)

    def defined(self) -> np.ndarray:
        """Where the score is a number (not +inf)."""
        return np.isfinite(self.scores)


def _cross(p: Passes) -> tuple[set, dict]:
    g, k = p.real_graph, p.options.k
    radii = g.radii(k)
    return {"realism"}, {"r_rt": np.where(radii <= np.median(radii), g.sq_radii(k), 0.0)}


def _finish(p: Passes) -> RealismScores:
    return RealismScores(scores=np.sqrt(p.cross["realism"]), k=p.options.k, real_index=p.cross["realism_index"])


register(Metric("realism", _finish, real_radii=("k",), cross=_cross, order=40, doc="realism scores"))
