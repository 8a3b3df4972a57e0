"""Density and coverage (Naeem et al., ICML 2020): real balls at ``dc_k``, membership ``d < r``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hubness_pr.metrics.registry import Metric, Passes, mean, register, standard_error


@dataclass(frozen=True)
class DensityCoverage:
    """Density and coverage, membership ``<``, real radii only, each with the standard error of its
    mean (``density_se`` of the per-fake counts over k, given the real set; ``coverage_se`` over the
    reals, given the generated set)."""

    density: float
    density_se: float
    coverage: float
    coverage_se: float
    k: int


def _cross(p: Passes) -> tuple[set, dict]:
    return {"dens", "covered"}, {"r_dc": p.real_graph.sq_radii(p.options.dc_k)}


def _finish(p: Passes) -> DensityCoverage:
    dc_k = p.options.dc_k
    density = float(p.cross["dens"].sum(dtype=np.float64) / (dc_k * p.n_fake))
    covered = p.cross["covered"]
    return DensityCoverage(density=density, density_se=standard_error(p.cross["dens"] / dc_k), coverage=mean(covered),
                           coverage_se=standard_error(covered), k=dc_k)


register(Metric("dc", _finish, real_radii=("dc_k",), cross=_cross, order=30, doc="density and coverage",
                per_sample=lambda p: {"fake_density": p.cross["dens"] / p.options.dc_k,
                                      "real_covered": p.cross["covered"]}))
