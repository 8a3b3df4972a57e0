"""The metric registry: each metric declares what the engine must compute for it and how its result
is formed from the passes; :func:`hubness_pr.metrics.evaluate` plans the passes from these declarations.

A metric is one :class:`Metric`, given to :func:`register` in its own module of this package
(``pr.py``, ``dc.py``, ...); a name registered twice is refused. A cross metric reads reductions of
:data:`hubness_pr.engine.reductions.TABLE` (docs/architecture.md, "Adding a cross metric").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# the radii a metric may read, by the option that sizes them
RADII = ("k", "dc_k", "cover_k", "ppr_k", "one")  # one: the 1-NN distance (AuthPct)


@dataclass(frozen=True)
class Options:
    """The options of one evaluation (validated): the neighbourhood sizes ``k``, ``dc_k``, ``hubs_k``,
    PR-Cover's ``prcover_c`` (its balls hold ``cover_k = prcover_c * k`` neighbours), P-precision and
    P-recall's ``ppr_a`` and ``ppr_k`` (the radius R = a * mean k-NN radius at ``ppr_k``), FD-infinity's
    seed and number of subset sizes (``fd_inf_seed``, ``fd_inf_points``; 0 points: not computed),
    and KID's subsets (``kid_subsets`` of ``kid_subset_size`` samples drawn with ``kid_seed``;
    0 subsets: KID exactly over the full sets); the memorisation metrics' ``copy_ratio`` (a fake with
    d1 / d2 below it counts as a likely copy), C_T's held-out real features ``real_test`` (float32
    (n_test, dim) or None) and its k-means seed ``ct_seed``; the peer preset ``protocol`` (a name of
    :data:`hubness_pr.metrics.protocols.PRESETS` or None), its subsets' seed ``protocol_seed`` and its
    neighbourhood size ``protocol_k`` (None: the peer's default)."""

    k: int = 3
    dc_k: int = 5
    hubs_k: int = 3
    prcover_c: int = 3
    ppr_a: float = 1.2
    ppr_k: int = 4
    fd_inf_seed: int = 0
    fd_inf_points: int = 0
    kid_subsets: int = 0
    kid_subset_size: int = 1000
    kid_seed: int = 2020
    copy_ratio: float = 0.5
    real_test: Any = None
    ct_seed: int = 0
    protocol: str | None = None
    protocol_seed: int = 0
    protocol_k: int | None = None

    @property
    def one(self) -> int:
        """The 1-NN radius's size (AuthPct reads each real's nearest other real)."""
        return 1

    @property
    def cover_k(self) -> int:
        return self.prcover_c * self.k

    def size(self, radius: str) -> int:
        """The neighbourhood size of a radius name of :data:`RADII`."""
        return getattr(self, radius)


@dataclass
class Passes:
    """What the engine's passes computed, handed to each metric: the k-NN graphs
    (:class:`hubness_pr.engine.knn.NeighborGraph`, None where not run), the k-occurrence at k and
    the hub masks where some metric reads them, and the real x fake pass's per-sample results
    (``cross``: :class:`hubness_pr.engine.cross.CrossResult`, read as ``cross["in_real"]``), the
    means and covariances of each set where a metric reads them (``moments["real"]``,
    :class:`hubness_pr.engine.moments.Moments`), the exact kernel sums (``kernel["poly3"]``,
    :class:`hubness_pr.engine.kernel_sums.KernelSums`), and the run's context and feature tensors
    (``ctx``, ``real_x``, ``fake_x``) for a metric that reads further subsets (FD-infinity, KID's
    subsets)."""

    options: Options
    n_real: int
    n_fake: int
    real_graph: Any = None
    fake_graph: Any = None
    real_occurrence: np.ndarray | None = None
    fake_occurrence: np.ndarray | None = None
    real_hubs: np.ndarray | None = None
    fake_hubs: np.ndarray | None = None
    hub_only: bool = False   # the cross pass ran on real hubs x fake hubs only (eP&R alone)
    cross: Any = None
    moments: dict | None = None
    kernel: dict | None = None
    real_kernel: dict | None = None  # the real x real part of ``kernel`` (RealKernelSums), given or computed
    ctx: Any = None
    real_x: Any = None
    fake_x: Any = None
    fused: bool = False  # the run's CPU route: exact distances a metric forms itself may use the fused kernels
    nearest: Any = None  # each fake's two nearest reals (hubness_pr.engine.nearest.NearestReals), where read


def _nothing(p: Passes) -> tuple[set, dict]:
    return set(), {}


@dataclass(frozen=True)
class Metric:
    """One metric's declaration.

    ``real_radii`` / ``fake_radii``: the radii (names of :data:`RADII`) it reads in each set, exact;
    ``hubs``: it reads the k-occurrence and the hub masks; ``cross``: the reductions of
    :data:`hubness_pr.engine.reductions.TABLE` it reads and the squared radii (threshold name ->
    vector) they compare with, from the k-NN passes (None: no real x fake pass); ``full_cross``:
    every real x fake pair (False: real hubs x fake hubs are enough, eP&R); ``finish``: its result
    (a frozen dataclass) from the passes; ``per_sample``: the :class:`~hubness_pr.metrics.Evaluation`
    fields of per-sample arrays it fills; ``moments``: it reads the mean and covariance of each
    set (:mod:`hubness_pr.engine.moments`); ``kernels``: the kernels (names of
    :data:`hubness_pr.engine.kernel_sums.KERNELS`) whose exact sums over the full sets it reads, a
    function of the options (an empty tuple: none); ``params``: the entries it adds to the run's
    ``params`` (a function of the options); ``default``: computed when no metric list is given;
    ``order``: its place among the metrics (reports, JSON); ``nearest``: it reads each fake's two
    nearest reals (:mod:`hubness_pr.engine.nearest`: riding a full real x fake pass, else
    :func:`~hubness_pr.engine.nearest.nearest_two`; ``passes.nearest``).
    """

    name: str
    finish: Callable[[Passes], Any]
    real_radii: tuple = ()
    fake_radii: tuple = ()
    hubs: bool = False
    cross: Callable[[Passes], tuple[set, dict]] | None = None
    full_cross: bool = True
    per_sample: Callable[[Passes], dict] | None = None
    moments: bool = False
    kernels: Callable[[Options], tuple] | None = None
    params: Callable[[Options], dict] | None = None
    default: bool = True
    order: int = 100   # place in METRICS, the report and the JSON (eP&R first)
    doc: str = ""
    nearest: bool = False


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the registry; a name already there is refused."""
    if metric.name in REGISTRY:
        raise ValueError(f"metric {metric.name!r} is registered twice")
    unknown = set(metric.real_radii + metric.fake_radii) - set(RADII)
    if unknown:
        raise ValueError(f"metric {metric.name!r} reads unknown radii {sorted(unknown)}")
    REGISTRY[metric.name] = metric
    return metric


def mean(flags: np.ndarray) -> float:
    """The mean of a per-sample vector (NaN for an empty one)."""
    return float(np.mean(flags, dtype=np.float64)) if flags.size else float("nan")


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of a per-sample vector: its sample standard deviation (ddof 1)
    over sqrt(n), in float64; for 0/1 flags the binomial ``sqrt(p (1 - p) / (n - 1))``. NaN for fewer
    than two values. Conditional on everything the values were computed from (docs/definitions.md,
    "Standard errors"). The values are sorted first, so that the result does not depend on their order."""
    n = values.size
    if n < 2:
        return float("nan")
    return float(np.std(np.sort(values.astype(np.float64, copy=False), axis=None), ddof=1) / np.sqrt(n))
