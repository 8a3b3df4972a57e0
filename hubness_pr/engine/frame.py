"""What the float32 screen sees: the features, centred and scaled by a power of two where that helps.

Distances do not change when every sample is moved by the same vector, and a power-of-two scaling
changes none of their ratios. The float32 GEMM screen, however, errs in proportion to the squared
norms it is given (:func:`hubness_pr.engine.distances.screen_eps`): features with a large common offset
(``10 + 0.01 N(0, 1)``) or a collapsed set far from the origin give distances far below that error,
and features near 2^-120 or 2^60 underflow or overflow float32 products. So each pass screens
``(x - centre) * 2**exponent`` (:class:`ScreenFrame`, made block by block), chosen by :func:`choose_frame`:

* the centre is the mean of the rows the pass compares, used when it shrinks the largest squared
  norm at least 4-fold (ordinary ReLU features gain less than 2-fold and are screened as they are,
  untouched);
* the exponent brings the largest squared norm near 1 when it lies outside [2^-40, 2^40].

Every exact distance is still the float64 distance of the *original* float32 vectors
(:func:`hubness_pr.engine.distances.exact_sq_dist`); in frame units it is multiplied by ``4**exponent``, which
is exact in float64 for any pair of finite float32 vectors, so comparisons in the frame are the
comparisons of the original distances. The screen's extra error from rounding the centred rows to
float32 is at most ``4 * 2**-24 * (|a|^2 + |b|^2)`` (included in the screening band), and products
that underflow float32 are covered by an absolute term (:meth:`ScreenFrame.abs_tol`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hubness_pr.engine.distances import row_chunks, sq_norms

_CENTRE_GAIN = 4.0          # centre when the largest squared norm shrinks at least this much
_SAFE_LOG2 = 40             # squared norms in [2^-40, 2^40] are screened unscaled


@dataclass(frozen=True)
class ScreenFrame:
    """The screen rows are ``(x - centre) * 2**exponent`` (float32); ``centre`` float64 (dim,) or None."""

    exponent: int = 0
    centre: torch.Tensor | None = None

    @property
    def identity(self) -> bool:
        return self.centre is None and self.exponent == 0

    @property
    def sq_scale(self) -> float:
        """Squared distances in frame units are ``4**exponent`` times the original ones (exact)."""
        return math.ldexp(1.0, 2 * self.exponent)

    def abs_tol(self, dim: int) -> float:
        """Absolute error bound of a screened squared distance from float32 underflow (or
        flush-to-zero) in the GEMM: every coordinate in the frame is below 2^20 in magnitude."""
        return (dim + 2) * 2.0**-100

    def transform(self, block: torch.Tensor) -> torch.Tensor:
        """``(block - centre) * 2**exponent`` of float32 rows, computed in float64, as float32."""
        out = block.to(torch.float64)
        if self.centre is not None:
            out -= self.centre
        out *= math.ldexp(1.0, self.exponent)
        return out.to(torch.float32)

    def screen(self, x: torch.Tensor) -> tuple[torch.Tensor | ScreenRows, torch.Tensor]:
        """The rows the screen multiplies and their squared norms (float64-accumulated, float32):
        ``x`` itself for the identity frame, else a :class:`ScreenRows` view that transforms each
        block when a pass takes it (no copy of the set: memory stays the budget's)."""
        if self.identity:
            return x, sq_norms(x)
        norms = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
        for rows in row_chunks(x):
            f = self.transform(x[rows]).to(torch.float64)
            norms[rows] = (f * f).sum(dim=1)
        return ScreenRows(x, self), norms


class ScreenRows:
    """The rows of ``x`` in a screen frame, made block by block as the passes take them (a slice or a
    sorted index tensor): ``rows[a:b]`` is ``frame.transform(x[a:b])``."""

    def __init__(self, x: torch.Tensor, frame: ScreenFrame):
        self.x, self.frame = x, frame
        self.shape, self.device, self.dtype = x.shape, x.device, torch.float32

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, rows) -> torch.Tensor:
        return self.frame.transform(self.x[rows])


@dataclass(frozen=True)
class SetStats:
    """One read of a feature set (float64 accumulation): row sum, size and squared row norms."""

    total: torch.Tensor      # float64 (dim,)
    count: int
    sq_norms: torch.Tensor   # float64 (n,)

    @classmethod
    def of(cls, x: torch.Tensor) -> SetStats:
        total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        norms = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        for rows in row_chunks(x):
            block = x[rows].to(torch.float64)
            total += block.sum(dim=0)
            norms[rows] = (block * block).sum(dim=1)
        return cls(total=total, count=x.shape[0], sq_norms=norms)


def choose_frame(sets, stats) -> ScreenFrame:
    """The frame for a pass over ``sets`` (one set for a k-NN pass, real and fake for the cross
    pass), from their :class:`SetStats`; see the module docstring for the rule."""
    count = sum(s.count for s in stats)
    centre = sum(s.total for s in stats) / max(1, count)
    cc = float(centre @ centre)
    raw_max = max(float(s.sq_norms.max()) for s in stats)
    # the mean squared norm after centring is mean|x|^2 - |c|^2, and the largest is at least that:
    # where even the mean is above raw_max / 4, centring cannot gain 4-fold (ordinary features)
    centred_mean = sum(float(s.sq_norms.sum()) for s in stats) / max(1, count) - cc
    use_centre = False
    if centred_mean * _CENTRE_GAIN <= raw_max:
        # largest squared norm after centring, |x|^2 - 2 x.c + |c|^2 (precise enough for the choice)
        centred_max = 0.0
        for x, s in zip(sets, stats):
            for rows in row_chunks(x):
                xc = x[rows].to(torch.float64) @ centre
                centred_max = max(centred_max, float((s.sq_norms[rows] - 2.0 * xc).max()) + cc)
        use_centre = max(centred_max, 0.0) * _CENTRE_GAIN <= raw_max
    top = max(centred_max, 0.0) if use_centre else raw_max
    exponent = 0
    if top > 0 and not 2.0**-_SAFE_LOG2 <= top <= 2.0**_SAFE_LOG2:
        exponent = -round(math.log2(top) / 2)
    return ScreenFrame(exponent=exponent, centre=centre if use_centre else None)


def screen_rows(x: torch.Tensor, stats: SetStats, frame: ScreenFrame) -> tuple[torch.Tensor | ScreenRows, torch.Tensor]:
    """:meth:`ScreenFrame.screen` of ``x``, reusing the norms of ``stats`` for the identity frame."""
    if frame.identity:
        return x, stats.sq_norms.to(torch.float32)
    return frame.screen(x)

