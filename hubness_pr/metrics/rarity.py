"""Rarity score (Han et al., ICLR 2023): ``min{r_i : d(y, x_i) < r_i}`` over the real balls that hold
a fake; NaN (undefined) outside every real ball (the reference code writes 0 there)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hubness_pr.metrics.registry import Metric, Passes, register


@dataclass(frozen=True)
class RarityScores:
    """Rarity score of every fake sample, float64 (M,), input order; NaN outside every real ball."""

    scores: np.ndarray = field(repr=False)
    k: int

    def defined(self) -> np.ndarray:
        """Where the sample lies inside some real ball (its score is a number)."""
        return ~np.isnan(self.scores)


def scores_of(rarity_sq: np.ndarray, k: int) -> RarityScores:
    """Rarity scores from the pass's squared values (+inf, outside every ball: NaN)."""
    rarity = np.sqrt(rarity_sq)
    rarity[~np.isfinite(rarity)] = np.nan
    return RarityScores(scores=rarity, k=k)


def _cross(p: Passes) -> tuple[set, dict]:
    return {"rarity"}, {"r_pr": p.real_graph.sq_radii(p.options.k)}


register(Metric("rarity", lambda p: scores_of(p.cross["rarity"], p.options.k), real_radii=("k",), cross=_cross,
                order=50, doc="rarity scores"))
