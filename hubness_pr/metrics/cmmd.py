"""CMMD (Jayasumana et al., CVPR 2024): MMD^2 of the Gaussian kernel ``exp(-|x - y|^2 / (2 sigma^2))``,
sigma = 10, scaled by 1000, exact over the full sets (tiled kernel sums,
:mod:`hubness_pr.engine.kernel_sums`; docs/definitions.md, "CMMD"). ``value`` is the estimator of the
reference code (google-research ``cmmd/distance.py``: the biased, minimum-variance V-statistic, every
k(x, x) = 1 included), so that it equals published CMMDs; ``unbiased`` the U-statistic.
"""
from __future__ import annotations

from dataclasses import dataclass

from hubness_pr.metrics.registry import Metric, Passes, register

CMMD_SCALE = 1000.0


@dataclass(frozen=True)
class CMMD:
    """CMMD as the reference code computes it (``value``) and its unbiased form (``unbiased``), x 1000."""

    value: float
    unbiased: float


def _finish(p: Passes) -> CMMD:
    sums = p.kernel["gauss"]
    return CMMD(value=CMMD_SCALE * sums.biased(1.0), unbiased=CMMD_SCALE * sums.unbiased())


register(Metric("cmmd", _finish, kernels=lambda o: ("gauss",), default=False, order=82,
                doc="CMMD: Gaussian-kernel MMD (sigma 10) x 1000, on CLIP embeddings"))
