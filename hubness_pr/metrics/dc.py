"""Density and coverage (Naeem et al., ICML 2020): real balls at ``dc_k``, membership ``d < r``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hubness_pr.metrics.registry import Metric, Passes, mean, register


@dataclass(frozen=True)
class DensityCoverage:
    """Density and coverage, membership ``<``, real radii only."""

    density: float
    coverage: float
    k: int


def _cross(p: Passes) -> tuple[set, dict]:
    return {"dens", "covered"}, {"r_dc": p.real_graph.sq_radii(p.options.dc_k)}


def _finish(p: Passes) -> DensityCoverage:
    dc_k = p.options.dc_k
    density = float(p.cross["dens"].sum(dtype=np.float64) / (dc_k * p.n_fake))
    return DensityCoverage(density=density, coverage=mean(p.cross["covered"]), k=dc_k)


register(Metric("dc", _finish, real_radii=("dc_k",), cross=_cross, order=30, doc="density and coverage"))
