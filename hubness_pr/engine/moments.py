"""Means and covariances of a feature set, accumulated block by block in float64 (FD, FD-infinity).

Rows are read in blocks of float32 features (a float64 copy of one block at a time, sized from the
run's memory budget; never of the whole set), shifted by a fixed centre ``c`` (the float64 mean of
the first rows, the same on every rank) and summed as ``s1 = sum(x - c)`` and
``s2 = sum((x - c)(x - c)^T)`` in float64. Then ``mean = c + s1 / n`` and
``cov = (s2 - s1 s1^T / n) / (n - 1)`` (ddof 1, as ``numpy.cov``); the shift keeps the
subtraction from cancelling when the features' mean is large against their spread. Under torchrun
each rank sums a share of the blocks (``group.share``) and the per-rank sums are added
(``group.combine("sum", ...)``): the moments equal one process's to float64 rounding.

:func:`prefix_moments` gives the moments of the first ``s`` rows of a (seeded) row order for
several sizes ``s`` in one pass over the set (FD-infinity's subsets, nested prefixes of one
permutation). :func:`trace_sqrt_product` is ``Tr (S1 S2)^(1/2)`` by symmetric eigendecompositions.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from hubness_pr.engine.distances import blocks

_CENTRE_ROWS = 1024


@dataclass(frozen=True, eq=False)
class Moments:
    """The mean (float64 (dim,)) and the covariance (float64 (dim, dim), ddof 1) of ``n`` rows."""

    n: int
    mean: np.ndarray
    cov: np.ndarray

    @cached_property
    def root(self) -> np.ndarray:
        """The covariance's symmetric square root (:func:`psd_sqrt`), computed once: the real set's
        serves every generated set (FD pays one ``eigvalsh`` a run), and is stored with its moments."""
        return psd_sqrt(self.cov)


def _block_rows(dim: int, memory_budget: int) -> int:
    # a float32 block, its float64 copy and the float64 (dim, dim) product's operand: ~12 dim bytes a row
    return max(16, min(65536, memory_budget // (12 * max(1, dim))))


def moment_rows(dim: int, memory_budget: int) -> int:
    """Rows a block of the moment pass holds: with the group's world, what fixes the bits of
    :func:`set_moments` (the order in which the blocks' sums are added)."""
    return _block_rows(dim, memory_budget)


def prefix_moments(x, ctx, sizes, order: np.ndarray | None = None):
    """Yield the :class:`Moments` of the first ``s`` rows of ``x`` (in ``order``, a permutation of
    the row indices; None: the stored order) for each ``s`` of ``sizes`` (increasing, each >= 2),
    in one pass over the rows. ``x``: a float32 tensor or :class:`hubness_pr.engine.mapped.MappedRows`;
    ``ctx``: the :class:`hubness_pr.engine.context.RunContext` (device, memory budget, group)."""
    n, dim = x.shape
    dev, group = ctx.device, ctx.group
    sizes = [int(s) for s in sizes]
    if not sizes or sizes[0] < 2 or sizes[-1] > n or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"moment sizes must increase within [2, {n}]; got {sizes}")
    index = None if order is None else torch.as_tensor(np.asarray(order, dtype=np.int64))

    def rows(part: slice) -> torch.Tensor:
        block = x[part] if index is None else x[index[part]]
        return block.to(dev, torch.float64)

    with torch.inference_mode():
        centre = rows(slice(0, min(sizes[-1], _CENTRE_ROWS))).mean(dim=0)
        s1 = torch.zeros(dim, dtype=torch.float64, device=dev)
        s2 = torch.zeros((dim, dim), dtype=torch.float64, device=dev)
        step, done = _block_rows(dim, ctx.memory_budget), 0
        for size in sizes:
            parts = list(blocks(size, step, start=done))
            l1, l2 = torch.zeros_like(s1), torch.zeros_like(s2)
            for t in group.share(len(parts)):
                r = rows(parts[t]) - centre
                l1 += r.sum(dim=0)
                l2.addmm_(r.T, r)
            s1 += group.combine("sum", l1)
            s2 += group.combine("sum", l2)
            done = size
            cov = (s2 - torch.outer(s1, s1) / size) / (size - 1)
            cov = (cov + cov.T) / 2  # symmetric to the last bit
            yield Moments(n=size, mean=(centre + s1 / size).cpu().numpy(), cov=cov.cpu().numpy())


def set_moments(x, ctx) -> Moments:
    """The mean and covariance of every row of ``x`` (see :func:`prefix_moments`)."""
    return next(iter(prefix_moments(x, ctx, [x.shape[0]])))


def _clip(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with the rounding-level ones (below ``dim * 2^-52 * max |w|``, the
    backward error of a symmetric eigensolver; negative ones included) set to 0: on singular
    covariances (N < dim) their square roots would add noise of order 1e-8 of the scale each."""
    floor = w.size * np.finfo(np.float64).eps * (np.abs(w).max() if w.size else 0.0)
    return np.where(w > floor, w, 0.0)


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix by ``eigh`` (torch's,
    float64: LAPACK's divide and conquer; numpy's eigvalsh measured 3-4x slower at 2048), the
    eigenvalues below rounding level (negative ones included) set to 0."""
    w, v = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(cov, dtype=np.float64)))
    w, v = w.numpy(), v.numpy()
    root = (v * np.sqrt(_clip(w))) @ v.T
    return (root + root.T) / 2  # symmetric to the last bit


def trace_sqrt_product(sqrt1: np.ndarray, cov2: np.ndarray) -> float:
    """``Tr (S1 S2)^(1/2)`` from ``sqrt1 = S1^(1/2)`` (:func:`psd_sqrt`): the eigenvalues of
    ``S1 S2`` are those of the symmetric ``S1^(1/2) S2 S1^(1/2)``, so the trace is the sum of the
    square roots of that matrix's eigenvalues (``eigvalsh``; below rounding level: 0). Defined for singular
    covariances (N < dim), where scipy's iterative ``sqrtm`` may fail or turn complex."""
    m = sqrt1 @ cov2 @ sqrt1
    w = torch.linalg.eigvalsh(torch.from_numpy((m + m.T) / 2)).numpy()
    return float(np.sqrt(_clip(w)).sum())


def frechet_distance(m1: Moments, m2: Moments) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` in float64, from ``m1``'s square root
    (:attr:`Moments.root`, computed once) and one ``eigvalsh`` (:func:`trace_sqrt_product`)."""
    diff = m1.mean - m2.mean
    return float(diff @ diff + np.trace(m1.cov) + np.trace(m2.cov) - 2.0 * trace_sqrt_product(m1.root, m2.cov))
