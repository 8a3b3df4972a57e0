"""Kernel distance (KID, Binkowski et al., ICLR 2018): the unbiased MMD^2 of the cubic polynomial
kernel ``k(x, y) = (x.y / d + 1)^3`` (docs/definitions.md, "KID").

By default exact over the full sets (tiled kernel sums, :mod:`hubness_pr.engine.kernel_sums`) with
the standard deviation from Binkowski et al.'s variance estimate of the unbiased MMD^2 (equal set
sizes; for unequal ones the first-order term of the U-statistic's variance,
:meth:`~hubness_pr.engine.kernel_sums.KernelSums.first_order_variance`); with ``kid_subsets`` S > 0, the mean and the standard deviation (ddof 0) of
the MMD^2 of S seeded subsets of ``kid_subset_size`` samples, drawn as torch-fidelity draws them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hubness_pr.engine.kernel_sums import subset_mmd
from hubness_pr.metrics.registry import Metric, Options, Passes, register


@dataclass(frozen=True)
class KernelInceptionDistance:
    """KID (``value``) and its standard deviation (``std``): of the estimate (full sets) or over the subsets."""

    value: float
    std: float


def _finish(p: Passes) -> KernelInceptionDistance:
    o = p.options
    if o.kid_subsets:
        values = subset_mmd(p.real_x, p.fake_x, p.ctx, o.kid_subsets, o.kid_subset_size, o.kid_seed)
        return KernelInceptionDistance(value=float(np.mean(values)), std=float(np.std(values)))
    sums = p.kernel["poly3"]
    var = sums.variance()
    return KernelInceptionDistance(value=sums.unbiased(), std=math.sqrt(var) if var >= 0 else float("nan"))


def _params(o: Options) -> dict:
    if not o.kid_subsets:
        return {"kid_subsets": 0}
    return {"kid_subsets": o.kid_subsets, "kid_subset_size": o.kid_subset_size, "kid_seed": o.kid_seed}


register(Metric("kid", _finish, kernels=lambda o: () if o.kid_subsets else ("poly3",), params=_params,
                default=False, order=81, doc="kernel distance (KID on Inception pool3 features)"))
