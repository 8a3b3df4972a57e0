"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019): a fake counts for precision
when some real k-NN ball holds it, a real for recall when some fake ball holds it (``d <= r``)."""
from __future__ import annotations

from dataclasses import dataclass

from hubness_pr.metrics.registry import Metric, Passes, mean, register


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall, membership ``<=``."""

    precision: float
    recall: float
    k: int


def _cross(p: Passes) -> tuple[set, dict]:
    k = p.options.k
    return {"in_real", "in_fake"}, {"r_pr": p.real_graph.sq_radii(k), "s_pr": p.fake_graph.sq_radii(k)}


def _finish(p: Passes) -> PrecisionRecall:
    return PrecisionRecall(precision=mean(p.cross["in_real"]), recall=mean(p.cross["in_fake"]), k=p.options.k)


register(Metric("pr", _finish, real_radii=("k",), fake_radii=("k",), cross=_cross,
                per_sample=lambda p: {"fake_in_real_manifold": p.cross["in_real"],
                                      "real_in_fake_manifold": p.cross["in_fake"]},
                order=20, doc="improved precision and recall"))
