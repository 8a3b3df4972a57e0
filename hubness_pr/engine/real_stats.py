"""What FD, KID and CMMD read from the real set alone: its :class:`~hubness_pr.engine.moments.Moments`
and the real x real part of each kernel's exact sums (:class:`~hubness_pr.engine.kernel_sums.RealKernelSums`).
Computed once, they serve every generated set against the same real set (``evaluate(real_stats=...)``,
stored by :mod:`hubness_pr.io.summary`), with the same bits as a recomputation under the same
:func:`layout` (block rows, tiles, processes: the order in which float64 sums are added)."""
from __future__ import annotations

from dataclasses import dataclass, field

from hubness_pr.engine.kernel_sums import kernel_layout
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


def layout(n: int, dim: int, memory_budget: int, world: int, device_type: str) -> dict:
    """What, beside the features, fixes the bits of the real set's moments and kernel sums: the moment
    pass's block rows, the real x real grid's tile side and strip width, the number of processes
    and the device type (CPU and CUDA GEMMs round differently)."""
    side, width = kernel_layout(n, dim, memory_budget)
    return {"moment_rows": moment_rows(dim, memory_budget), "tile_side": side, "strip_width": width,
            "world": int(world), "device": str(device_type)}
