"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019): a fake counts for precision
when some real k-NN ball holds it, a real for recall when some fake ball holds it (``d <= r``)."""
from __future__ import annotations

from dataclasses import dataclass

from hubness_pr.metrics.registry import Metric, Passes, mean, register, standard_error


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall, membership ``<=``, each with the standard error of its mean
    (``precision_se`` over the fakes given the real set, ``recall_se`` over the reals given the
    generated set: :func:`~hubness_pr.metrics.registry.standard_error`)."""

    precision: float
    precision_se: float
    recall: float
    recall_se: float
    k: int


def _cross(p: Passes) -> tuple[set, dict]:
    k = p.options.k
    return {"in_real", "in_fake"}, {"r_pr": p.real_graph.sq_radii(k), "s_pr": p.fake_graph.sq_radii(k)}


def _finish(p: Passes) -> PrecisionRecall:
    fake_in, real_in = p.cross["in_real"], p.cross["in_fake"]
    return PrecisionRecall(precision=mean(fake_in), precision_se=standard_error(fake_in), recall=mean(real_in),
                           recall_se=standard_error(real_in), k=p.options.k)


register(Metric("pr", _finish, real_radii=("k",), fake_radii=("k",), cross=_cross,
                per_sample=lambda p: {"fake_in_real_manifold": p.cross["in_real"],
                                      "real_in_fake_manifold": p.cross["in_fake"]},
                order=20, doc="improved precision and recall"))
