"""What FD, KID and CMMD read from the real set alone: its :class:`~hubness_pr.engine.moments.Moments`
and the real x real part of each kernel's exact sums (:class:`~hubness_pr.engine.kernel_sums.RealKernelSums`).
Computed once, they serve every generated set against the same real set (``evaluate(real_stats=...)``,
stored by :mod:`hubness_pr.io.summary`), with the same bits as a recomputation under the same
:func:`layout` (block rows, tiles, processes: the order in which float64 sums are added)."""
from __future__ import annotations

from dataclasses import dataclass, field

from hubness_pr.engine.distances import strip_width
from hubness_pr.engine.knn import knn_tile_side
from hubness_pr.engine.moments import Moments, moment_rows


@dataclass(frozen=True, eq=False)
class RealStats:
    """The real set's ``moments`` (None: not computed) and ``kernels`` (kernel name ->
    :class:`~hubness_pr.engine.kernel_sums.RealKernelSums`) for ``n`` samples of ``dim`` features."""

    n: int
    dim: int
    moments: Moments | None = None
    kernels: dict = field(default_factory=dict)

    def covers(self, moments: bool, kernels) -> bool:
        """Whether it holds the moments (if asked) and every kernel of ``kernels``."""
        return (self.moments is not None or not moments) and set(kernels) <= set(self.kernels)


def real_route(ctx, n: int, dim: int) -> bool:
    """Whether the real x real kernel sums take the fused CPU kernels: the context's route for the
    size of that grid alone (the same whatever else the run computes, so a stored one is found)."""
    return ctx.fused(n * n / 2, dim)


def layout(n: int, dim: int, memory_budget: int, world: int, device_type: str, fused: bool) -> dict:
    """What, beside the features, fixes the bits of the real set's moments and kernel sums: the moment
    pass's block rows, the real x real grid's tiles (those of the real k-NN pass: row blocks and
    strip width), its route (``fused``: :func:`real_route`), the number of processes and the device
    type (CPU and CUDA GEMMs round differently)."""
    side = knn_tile_side(n, dim, memory_budget)
    return {"moment_rows": moment_rows(dim, memory_budget), "tile_side": side,
            "strip_width": strip_width(side, dim, memory_budget, fused), "route": "fused" if fused else "torch",
            "world": int(world), "device": str(device_type)}
