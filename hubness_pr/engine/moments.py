"""Means and covariances of a feature set, accumulated block by block in float64 (FD, FD-infinity).

Rows are read in blocks of float32 features (a float64 copy of one block at a time, sized from the
run's memory budget; never of the whole set), shifted by a fixed centre ``c`` (the float64 mean of
the first rows, the same on every rank) and summed as ``s1 = sum(x - c)`` and
``s2 = sum((x - c)(x - c)^T)`` in float64 (its lower block triangle only, column blocks of
``_GRAM_COLUMNS``: 9/16 of a full product's work at dim 2048, then mirrored). Then ``mean = c + s1 / n`` and
``cov = (s2 - s1 s1^T / n) / (n - 1)`` (ddof 1, as ``numpy.cov``); the shift keeps the
subtraction from cancelling when the features' mean is large against their spread. Under torchrun
each rank sums a share of the blocks (``group.share``) and the per-rank sums are added
(``group.combine("sum", ...)``): the moments equal one process's to float64 rounding.

:func:`prefix_moments` gives the moments of the first ``s`` rows of a (seeded) row order for
several sizes ``s`` in one pass over the set (FD-infinity's subsets, nested prefixes of one
permutation). :func:`psd_factor` is a factor ``F`` of a covariance (``F F^T = S``: Cholesky where the
covariance is clearly positive definite, else from ``eigh``) and :func:`trace_sqrt_product` is
``Tr (S1 S2)^(1/2)`` from it by one symmetric eigenvalue problem.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from hubness_pr.engine.distances import blocks

_CENTRE_ROWS = 1024
_GRAM_COLUMNS = 256
# Cholesky is used where every pivot^2 exceeds this fraction of the largest variance (far above the
# rounding level dim * 2^-52 of an eigensolver's backward error); below it, the eigen route and its clip
_PIVOT_FLOOR = 1e-10


@dataclass(frozen=True, eq=False)
class Moments:
    """The mean (float64 (dim,)) and the covariance (float64 (dim, dim), ddof 1) of ``n`` rows."""

    n: int
    mean: np.ndarray
    cov: np.ndarray

    @cached_property
    def factor(self) -> np.ndarray:
        """A factor ``F`` of the covariance (``F F^T = cov``; :func:`psd_factor`), computed once: the
        real set's serves every generated set (FD pays one ``eigvalsh`` a run), and is stored with its
        moments."""
        return psd_factor(self.cov)

    @classmethod
    def with_factor(cls, n: int, mean: np.ndarray, cov: np.ndarray, factor: np.ndarray) -> "Moments":
        """Moments whose covariance factor is known already (stored with them): :attr:`factor` returns
        ``factor`` instead of computing it."""
        moments = cls(n=n, mean=mean, cov=cov)
        moments.__dict__["factor"] = factor  # what functools.cached_property would have stored
        return moments


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
        return block.to(dev, torch.float64, copy=True)  # a copy even of float64 input: centred in place

    with torch.inference_mode():
        centre = rows(slice(0, min(sizes[-1], _CENTRE_ROWS))).mean(dim=0)
        s1 = torch.zeros(dim, dtype=torch.float64, device=dev)
        s2 = torch.zeros((dim, dim), dtype=torch.float64, device=dev)
        step, done = _block_rows(dim, ctx.memory_budget), 0
        for size in sizes:
            parts = list(blocks(size, step, start=done))
            l1, l2 = torch.zeros_like(s1), torch.zeros_like(s2)
            for t in group.share(len(parts)):
                r = rows(parts[t])
                r -= centre  # in place: one float64 copy of the block, not two
                l1 += r.sum(dim=0)
                _add_lower_gram(l2, r)
            s1 += group.combine("sum", l1)
            s2 += group.combine("sum", l2)
            done = size
            # (s2 - s1 s1^T / size) / (size - 1) in one pass, then its lower triangle mirrored (symmetric
            # to the last bit): three passes over (dim, dim) where there were six (0.07 s at dim 2048)
            cov = torch.addr(s2, s1, s1, beta=1.0 / (size - 1), alpha=-1.0 / (size * (size - 1))).tril_()
            cov += torch.triu(cov.T, 1)
            yield Moments(n=size, mean=(centre + s1 / size).cpu().numpy(), cov=cov.cpu().numpy())


def _add_lower_gram(acc: torch.Tensor, r: torch.Tensor) -> None:
    """Add ``r^T r`` to the lower block triangle of ``acc`` (column blocks of ``_GRAM_COLUMNS``; the
    diagonal blocks whole, the part above them left as it is): a symmetric rank-k update by GEMMs."""
    dim = r.shape[1]
    for j in range(0, dim, _GRAM_COLUMNS):
        acc[j:, j:j + _GRAM_COLUMNS].addmm_(r[:, j:].T, r[:, j:j + _GRAM_COLUMNS])


def set_moments(x, ctx) -> Moments:
    """The mean and covariance of every row of ``x`` (see :func:`prefix_moments`)."""
    return next(iter(prefix_moments(x, ctx, [x.shape[0]])))


def _clip(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with the rounding-level ones (below ``dim * 2^-52 * max |w|``, the
    backward error of a symmetric eigensolver; negative ones included) set to 0: on singular
    covariances (N < dim) their square roots would add noise of order 1e-8 of the scale each."""
    floor = w.size * np.finfo(np.float64).eps * (np.abs(w).max() if w.size else 0.0)
    return np.where(w > floor, w, 0.0)


def psd_factor(cov: np.ndarray) -> np.ndarray:
    """A factor ``F`` (dim, dim) with ``F F^T = cov`` of a symmetric positive semi-definite matrix.
    Where the matrix is clearly positive definite (Cholesky succeeds with every pivot^2 above
    ``_PIVOT_FLOOR`` of the largest variance) its lower Cholesky factor (float64, torch's: 0.05 s at
    dim 2048 on 2 cores, numpy's 0.1 s, an ``eigh`` 0.5 s); otherwise (singular: N <= dim, constant
    features) ``V diag(sqrt(w))`` from ``eigh`` (torch's, float64: LAPACK's divide and conquer), the
    eigenvalues below rounding level (negative ones included) set to 0. Both are backward stable:
    ``F F^T`` is ``cov`` to float64 rounding."""
    cov = torch.from_numpy(np.ascontiguousarray(cov, dtype=np.float64))
    if cov.numel():
        low, info = torch.linalg.cholesky_ex(cov)
        pivots = torch.diagonal(low)
        if int(info) == 0 and float(pivots.min() ** 2) > _PIVOT_FLOOR * float(torch.diagonal(cov).max()):
            return low.numpy()
    w, v = torch.linalg.eigh(cov)
    return v.numpy() * np.sqrt(_clip(w.numpy()))


@contextmanager
def _one_thread():
    """torch on one thread inside: its (MKL) ``eigvalsh`` of dim 2048 takes 0.28 s so, every call;
    on two threads 0.24 s but 0.5-0.9 s on its first call in a process, and FD calls it once a run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _lower_sandwich(f: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The lower triangle of ``F^T S F`` (float64; the part above the diagonal is not meaningful).
    For a lower triangular ``F`` (a Cholesky factor) by column blocks that skip its zeros: ``P = S F``
    then the lower block triangle of ``F^T P``, about 0.6 of the two full products' work."""
    dim, g = s.shape[0], _GRAM_COLUMNS
    if not bool(torch.triu(f, 1).any()):  # triangular: skip the zero blocks
        p = torch.empty_like(s)
        for j in range(0, dim, g):
            torch.mm(s[:, j:], f[j:, j:j + g], out=p[:, j:j + g])
        m = torch.zeros_like(s)
        for i in range(0, dim, g):
            m[i:i + g, :i + g] = f[i:, i:i + g].T @ p[i:, :i + g]
        return m
    return f.T @ s @ f


def trace_sqrt_product(factor1: np.ndarray, cov2: np.ndarray) -> float:
    """``Tr (S1 S2)^(1/2)`` from a factor ``F`` of ``S1`` (``F F^T = S1``; :func:`psd_factor`): the
    eigenvalues of ``S1 S2`` are those of the symmetric ``F^T S2 F``, so the trace is the sum of the
    square roots of that matrix's eigenvalues (``eigvalsh`` of its lower triangle; below rounding
    level: 0). Defined for singular covariances (N < dim), where scipy's iterative ``sqrtm`` may fail
    or turn complex."""
    f = torch.from_numpy(np.ascontiguousarray(factor1, dtype=np.float64))
    s = torch.from_numpy(np.ascontiguousarray(cov2, dtype=np.float64))
    m = _lower_sandwich(f, s)
    with _one_thread():
        w = torch.linalg.eigvalsh(m, UPLO="L")
    return float(np.sqrt(_clip(w.numpy())).sum())


def frechet_distance(m1: Moments, m2: Moments) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` in float64, from ``m1``'s covariance factor
    (:attr:`Moments.factor`, computed once) and one ``eigvalsh`` (:func:`trace_sqrt_product`)."""
    diff = m1.mean - m2.mean
    return float(diff @ diff + np.trace(m1.cov) + np.trace(m2.cov)
                 - 2.0 * trace_sqrt_product(m1.factor, m2.cov))
