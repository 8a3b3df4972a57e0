"""PR-Cover (Cheema & Urner, AISTATS 2023): with k' = C k (``prcover_c``, 3 as in the paper), a fake
counts for cover-precision when its k'-NN ball among the fakes holds at least k reals, a real for
cover-recall when its k'-NN ball among the reals holds at least k fakes (membership ``d <= r``)."""
from __future__ import annotations

from dataclasses import dataclass

from hubness_pr.metrics.registry import Metric, Passes, mean, register, standard_error


@dataclass(frozen=True)
class PrecisionRecallCover:
    """Cover-precision (over the fakes) and cover-recall (over the reals), k' = ``k_prime``, each with
    the binomial standard error of its mean given both sets' radii."""

    precision: float
    precision_se: float
    recall: float
    recall_se: float
    k: int
    k_prime: int


def _cross(p: Passes) -> tuple[set, dict]:
    kc = p.options.cover_k
    return {"cover_fake", "cover_real"}, {"r_cover": p.real_graph.sq_radii(kc), "s_cover": p.fake_graph.sq_radii(kc)}


def _finish(p: Passes) -> PrecisionRecallCover:
    k = p.options.k  # at least k of the other set inside the own k' ball (the reference's count >= k' / C)
    fake_in, real_in = p.cross["cover_fake"] >= k, p.cross["cover_real"] >= k
    return PrecisionRecallCover(precision=mean(fake_in), precision_se=standard_error(fake_in), recall=mean(real_in),
                                recall_se=standard_error(real_in), k=k, k_prime=p.options.cover_k)


register(Metric("prcover", _finish, real_radii=("cover_k",), fake_radii=("cover_k",), cross=_cross, default=False,
                order=70, doc="PR-Cover: cover-precision and cover-recall"))
