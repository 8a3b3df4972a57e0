"""Squared Euclidean distances, tiled: the one numerical kernel under every metric.

Numerics (docs/numerics.md):

* A tile of squared distances is ``|a|^2 + |b|^2 - 2 a.b`` with one float32 GEMM, clamped at 0,
  on the rows the pass's screen frame gives (:mod:`hubness_pr.engine.frame`: centred and scaled by a power of
  two where that helps). Squared norms are accumulated in float64 and rounded to float32. On CUDA,
  TF32 is switched off for these products (:func:`exact_matmul`); float16 is never used.
* The GEMM formula is a *screen*. Its error is below ``screen_eps(dim) * (|a|^2 + |b|^2)`` plus the
  frame's absolute term. Every decision that a float32 rounding error could flip, a distance within
  that band of a threshold or of zero, is re-decided with the exact float64 distance of the two
  original float32 vectors (:func:`exact_sq_dist`, the same function that computes the radii, with
  the same bits on every route) and compared in float64. So duplicates have distance exactly 0, a
  distance that ties a radius ties it on every route, and decisions equal a float64 brute force.
* Tiles are row blocks x column strips (:func:`tile_grid`), both sizes set by one memory budget
  (:func:`tile_side`, :func:`strip_width`); no N x M matrix.
"""
from __future__ import annotations

import ctypes
import math
import warnings

import numpy as np
import torch

from hubness_pr.engine.devices import exact_matmul, resolve_device  # noqa: F401 - part of this module's interface

from hubness_pr.engine import kernels
from hubness_pr.engine.mapped import MappedRows, mapped_file

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of working memory for distance tiles
_MIN_TILE = 16
_MAX_TILE = 8192
# bytes per tile element: the torch route holds the float32 tile, one float32 temporary and ~4
# boolean masks; the fused CPU kernels (hubness_pr.engine.kernels) only the float32 Gram tile
_BYTES_PER_TILE_ELEMENT = 12
_BYTES_PER_FUSED_ELEMENT = 4


def release_memory() -> None:
    """Give the heap memory freed by a pass back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Without it the tiles and sorts of a pass stay in the C heap as free blocks and add up
    to the next pass's peak (measured: ~120 MiB on a 150,000-row k-NN pass)."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


def as_tensor(array, dev: torch.device):
    """``array`` (numpy or torch, float32 (n, dim)) as a float32 tensor on ``dev``, sharing its memory
    on the CPU. A read-only memory-mapped file stays read-only: nothing writes into the features
    (torch warns about such arrays; the warning is not for us). A memory-mapped file of any numeric
    dtype (:func:`hubness_pr.engine.inputs.as_feature_matrix` lets it through unconverted) becomes a
    :class:`hubness_pr.engine.mapped.MappedRows` on the CPU, whose rows the passes read and convert block by
    block; on a GPU it is uploaded block by block."""
    if isinstance(array, MappedRows) or mapped_file(array) is not None:
        rows = array if isinstance(array, MappedRows) else MappedRows(array)
        if dev.type == "cpu":
            return rows
        out = torch.empty(rows.shape, dtype=torch.float32, device=dev)
        for part in row_chunks(out):
            out[part] = rows[part].to(dev)
        return out
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(array).to(dev, torch.float32).contiguous()


def tile_side(dim: int, memory_budget: int) -> int:
    """Row-block height T: the side of a square T x T tile that fits ``memory_budget`` bytes with
    its temporaries (12 bytes an element) and two gathered T x dim operand blocks; clipped to
    [16, 8192] (GEMMs stop getting faster well before 8192). :func:`strip_width` then widens the
    tiles as far as the budget allows.
    """
    # 12 T^2 + 8 dim T - budget = 0
    a, b = _BYTES_PER_TILE_ELEMENT, 8.0 * dim
    side = int((-b + math.sqrt(b * b + 4 * a * memory_budget)) / (2 * a))
    return max(_MIN_TILE, min(_MAX_TILE, side))


def screen_eps(dim: int) -> float:
    """Relative width of the float32 screening band, in units of |a|^2 + |b|^2.

    The GEMM screen's error was measured at most ~15 * 2**-24 * (|a|^2 + |b|^2) for dim <= 16384
    (tests/test_kernels.py checks a quarter of the band on both CPU GEMMs); the band allows
    64 + 2 sqrt(dim) units of 2**-24 for it (4-13x the measured error), plus 8 units for the
    rounding of centred screen rows to float32 (:mod:`hubness_pr.engine.frame`, at most 4 units).
    """
    return (72.0 + 2.0 * math.sqrt(dim)) * 2.0**-24


def row_chunks(x: torch.Tensor):
    """Row slices of ``x`` whose float64 copies are cache-sized on the CPU (2 MiB), large on a GPU."""
    chunk_bytes = 2 * 2**20 if x.device.type == "cpu" else 256 * 2**20
    step = max(1, chunk_bytes // (8 * max(1, x.shape[1])))
    for start in range(0, x.shape[0], step):
        yield slice(start, start + step)


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared row norms of ``x`` (n, dim), accumulated in float64, returned as float32 (n,)."""
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for rows in row_chunks(x):
        block = x[rows].to(torch.float64)
        out[rows] = (block * block).sum(dim=1)
    return out


def gram_tile(a: torch.Tensor, b: torch.Tensor, onednn: bool = False) -> torch.Tensor:
    """The float32 product ``a @ b.T`` of two row blocks (p, dim) and (q, dim): (p, q), IEEE float32.

    On the CPU, with ``onednn`` (the run's probe, :attr:`hubness_pr.engine.context.RunContext.onednn`: the
    private op is there and computes an IEEE float32 product), oneDNN's float32 inner-product
    primitive (through torch), which picks its kernels by instruction set (AVX-512 where present) and
    measured 1.8x numpy's OpenBLAS and 2.1x torch's MKL ``matmul`` on AMD Zen 5 (they take AVX2 paths
    there); without, numpy's BLAS. On CUDA it is one cuBLAS GEMM (TF32 off, :func:`exact_matmul`).
    """
    if a.device.type != "cpu":
        return a @ b.T
    if onednn:
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    out = torch.empty((a.shape[0], b.shape[0]), dtype=torch.float32)
    np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
    return out


def onednn_gemm_works() -> bool:
    """Whether torch's private oneDNN inner product is there and computes an IEEE float32 product
    (checked against float64 on a small case; a run probes it once, :class:`hubness_pr.engine.context.RunContext`)."""
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.rand(37, 300, generator=gen), torch.rand(23, 300, generator=gen)
        with torch.inference_mode():
            got = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        want = a.double() @ b.double().T
        return bool(got.dtype == torch.float32 and got.shape == want.shape
                    and float(((got.double() - want).abs() / want).max()) < 300 * 2.0**-24)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def sq_dist_tile(a: torch.Tensor, b: torch.Tensor, na: torch.Tensor, nb: torch.Tensor,
                 onednn: bool = False) -> torch.Tensor:
    """Float32 screen of squared distances between rows of ``a`` (p, dim) and ``b`` (q, dim): (p, q).

    ``(-2 a.b + |a|^2) + |b|^2`` clamped at 0, from :func:`gram_tile`'s product; errors inside
    :func:`screen_eps`. (The fused CPU kernels form the same expression per element.)
    """
    if a.device.type == "cpu":
        return sq_dist_from_gram(gram_tile(a, b, onednn), na, nb)
    d2 = torch.addmm(na[:, None], a, b.T, beta=1.0, alpha=-2.0)
    d2.add_(nb[None, :]).clamp_(min=0.0)
    return d2


def sq_dist_from_gram(g: torch.Tensor, na: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """The screen of :func:`sq_dist_tile` from a product ``g`` of :func:`gram_tile`, in place:
    ``(-2 g + |a|^2) + |b|^2`` clamped at 0 (on the CPU the same bits as :func:`sq_dist_tile`)."""
    return g.mul_(-2.0).add_(na[:, None]).add_(nb[None, :]).clamp_(min=0.0)


def exact_sq_dist(x: torch.Tensor, i: torch.Tensor, y: torch.Tensor, j: torch.Tensor,
                  chunk_bytes: int | None = None, fused: bool = False, pool=None) -> torch.Tensor:
    """Exact squared distances of the pairs ``(x[i[t]], y[j[t]])``: float64 (len(i),).

    Every radius and every near-boundary decision goes through this one function, and its result
    does not depend on the route, the device or the batch: the float64 squares ``(x - y)**2`` are
    added as a fixed binary tree (:func:`tree_sum`), on the CPU kernels
    (:func:`hubness_pr.engine.kernels.exact_pairs`) as in torch. So equal pairs give equal bits everywhere and
    a distance that ties a radius ties it on every route. The pairs are gathered in chunks whose
    float64 temporaries (4 of chunk x dim) fit ``chunk_bytes`` (default 8 MiB on the CPU,
    256 MiB on a GPU). ``fused``: the route the run chose (:meth:`hubness_pr.engine.context.RunContext.fused`;
    CPU only), in the threads of ``pool`` (the run's, :attr:`hubness_pr.engine.context.RunContext.pool`).
    """
    if fused:
        return kernels.exact_pairs(x, i, y, j, pool)
    out = torch.empty(i.shape[0], dtype=torch.float64, device=x.device)
    if chunk_bytes is None:
        chunk_bytes = 8 * 2**20 if x.device.type == "cpu" else 256 * 2**20
    chunk = max(16, chunk_bytes // (4 * 8 * max(1, x.shape[1])))
    for start in range(0, i.shape[0], chunk):
        diff = x[i[start:start + chunk]].to(torch.float64) - y[j[start:start + chunk]].to(torch.float64)
        out[start:start + chunk] = tree_sum(diff * diff)
    return out


def tree_sum(v: torch.Tensor) -> torch.Tensor:
    """Row sums of ``v`` (c, n) in a fixed order: zero-pad to a power of two p, then add the halves,
    ``v[:, :h] + v[:, h:]`` for h = p/2, p/4, ..., 1. Elementwise float64 adds only, so the bits
    are the same on every device and batch size (and as :func:`hubness_pr.engine.kernels.exact_pairs`)."""
    p = 1 << max(0, (v.shape[1] - 1).bit_length())
    if p > v.shape[1]:
        v = torch.cat([v, v.new_zeros((v.shape[0], p - v.shape[1]))], dim=1)
    while v.shape[1] > 1:
        h = v.shape[1] // 2
        v = v[:, :h] + v[:, h:]
    return v[:, 0]


def blocks(stop: int, side: int, start: int = 0):
    """Yield ``slice`` objects covering range(start, stop) in as few near-equal parts as fit ``side``."""
    n = stop - start
    if n <= 0:
        return
    parts = -(-n // max(1, side))
    bounds = [start + n * t // parts for t in range(parts + 1)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        yield slice(lo, hi)


def strip_width(rows: int, dim: int, memory_budget: int, fused: bool) -> int:
    """Columns a tile of ``rows`` rows may have: its elements (12 bytes each on the torch route, 4 with
    the fused kernels) and both operand blocks (4 dim bytes a row) fit ``memory_budget``; at least
    ``rows``. Wide tiles mean few, large GEMMs and few kernel calls."""
    per_element = _BYTES_PER_FUSED_ELEMENT if fused else _BYTES_PER_TILE_ELEMENT
    return max(rows, (memory_budget - 4 * dim * rows) // (per_element * rows + 4 * dim))


def tile_grid(n_rows: int, n_cols: int, side: int, width: int, upper: bool = False) -> list:
    """``(rows, cols)`` slice pairs of a tiled pass: row blocks of at most ``side``, each one's columns
    in strips of at most ``width``. ``upper`` (a set against itself): columns start at the row
    block's own start, so every pair is in exactly one tile, both orders inside diagonal squares."""
    return [(rows, cols) for rows in blocks(n_rows, side)
            for cols in blocks(n_cols, width, start=rows.start if upper else 0)]
