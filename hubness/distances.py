"""Squared Euclidean distances, tiled: the one numerical kernel under every metric.

Numerics (DESIGN.md section 2):

* A tile of squared distances is ``|a|^2 + |b|^2 - 2 a.b`` with one float32 GEMM, clamped at 0.
  Squared norms are accumulated in float64 and rounded to float32. On CUDA, TF32 is switched off
  for these products (:func:`exact_matmul`); float16 is never used.
* The GEMM formula is a *screen*. Its error is below ``tol = screen_eps(dim) * (|a|^2 + |b|^2)``
  (measured at most ~15 * 2**-24 * (|a|^2+|b|^2) for dim <= 16384; the band is 4-13x wider).
  Every decision that a float32 rounding error could flip, a distance within ``tol`` of a
  threshold or of zero, is re-decided with the exact float64 distance of the two float32 vectors
  (:func:`exact_sq_dist`), the same function that computes the radii. So duplicates have distance
  exactly 0, a set compared with itself gives exactly the tie pattern of its radii, and results
  match a float64 brute force except for ties closer than float32 resolution.
* Tiles are square, their side set by one memory budget (:func:`tile_side`); no N x M matrix.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of working memory for distance tiles
_MIN_TILE = 16
_MAX_TILE = 8192
# bytes per tile element: the float32 tile, one float32 temporary and ~4 boolean masks
_BYTES_PER_TILE_ELEMENT = 12
_MAX_SQ_NORM = 1e37


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map ``'auto' | 'cpu' | 'cuda' | 'cuda:N'`` (or a torch.device) to a usable torch.device."""
    if isinstance(device, torch.device):
        spec = str(device)
    else:
        spec = "auto" if device is None else str(device)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} was requested but CUDA is not available here; use --device cpu")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
        return dev
    raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {spec!r} instead.")


@contextlib.contextmanager
def exact_matmul():
    """Run float32 matrix products in full IEEE float32 (no TF32 on CUDA, no bf16 on CPU)."""
    old_precision = torch.get_float32_matmul_precision()
    old_cuda_tf32 = torch.backends.cuda.matmul.allow_tf32
    old_cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_precision)
        torch.backends.cuda.matmul.allow_tf32 = old_cuda_tf32
        torch.backends.cudnn.allow_tf32 = old_cudnn_tf32


def tile_side(dim: int, memory_budget: int) -> int:
    """Side T of the square T x T distance tiles that fit ``memory_budget`` bytes.

    Counts the tile and its temporaries (12 bytes an element) and two gathered T x dim operand
    blocks; clipped to [16, 8192] (GEMMs stop getting faster well before 8192).
    """
    # 12 T^2 + 8 dim T - budget = 0
    a, b = _BYTES_PER_TILE_ELEMENT, 8.0 * dim
    side = int((-b + math.sqrt(b * b + 4 * a * memory_budget)) / (2 * a))
    return max(_MIN_TILE, min(_MAX_TILE, side))


def screen_eps(dim: int) -> float:
    """Relative width of the float32 screening band, in units of |a|^2 + |b|^2."""
    return (64.0 + 2.0 * math.sqrt(dim)) * 2.0**-24


def sq_norms(x: torch.Tensor, name: str = "features") -> torch.Tensor:
    """Squared row norms of ``x`` (n, dim), accumulated in float64, returned as float32 (n,)."""
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    # cache-sized chunks on the CPU (the float64 copy stays in cache); large ones on a GPU
    chunk_bytes = 2 * 2**20 if x.device.type == "cpu" else 256 * 2**20
    step = max(1, chunk_bytes // (8 * max(1, x.shape[1])))
    for start in range(0, x.shape[0], step):
        block = x[start:start + step].to(torch.float64)
        out[start:start + step] = (block * block).sum(dim=1)
    top = float(out.max()) if out.numel() else 0.0
    if not math.isfinite(top) or top > _MAX_SQ_NORM:
        raise ValueError(
            f"{name}: feature values are too large for float32 distances (squared norm {top:.3g}); "
            f"rescale the features"
        )
    return out


def sq_dist_tile(a: torch.Tensor, b: torch.Tensor, na: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """Float32 screen of squared distances between rows of ``a`` (p, dim) and ``b`` (q, dim): (p, q).

    On the CPU the product goes through numpy's BLAS (OpenBLAS in numpy's wheels), which with its
    AVX-512 kernels is about 2x faster than torch's MKL on AMD CPUs (see cli/blas.py); on CUDA it is
    one cuBLAS GEMM (TF32 off). Either way: float32 IEEE products, errors inside :func:`screen_eps`.
    """
    if a.device.type == "cpu":
        d2 = torch.empty((a.shape[0], b.shape[0]), dtype=torch.float32)
        np.matmul(a.numpy(), b.numpy().T, out=d2.numpy())
        d2.mul_(-2.0).add_(na[:, None]).add_(nb[None, :]).clamp_(min=0.0)
        return d2
    d2 = torch.addmm(na[:, None], a, b.T, beta=1.0, alpha=-2.0)
    d2.add_(nb[None, :]).clamp_(min=0.0)
    return d2


def exact_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact squared distances between paired rows: ``sum((a[i] - b[i])**2)`` in float64.

    ``a`` and ``b`` have the same shape (..., dim); the result has shape (...). Every radius and
    every near-boundary decision goes through this one function, so equal pairs give equal bits.
    """
    diff = a.to(torch.float64) - b.to(torch.float64)
    return (diff * diff).sum(dim=-1)


def refine_tile(d2: torch.Tensor, near: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                chunk_bytes: int = 8 * 2**20) -> int:
    """Overwrite the entries of tile ``d2`` flagged in ``near`` with exact distances (as float32).

    ``a`` and ``b`` are the row blocks the tile was computed from. Returns the number refined.
    Pairs go in chunks whose float64 temporaries (4 of chunk x dim) fit ``chunk_bytes``.
    """
    pairs = near.nonzero()
    count = pairs.shape[0]
    chunk = max(16, chunk_bytes // (4 * 8 * a.shape[1]))
    for start in range(0, count, chunk):
        i = pairs[start:start + chunk, 0]
        j = pairs[start:start + chunk, 1]
        d2[i, j] = exact_sq_dist(a[i], b[j]).to(torch.float32)
    return count


def blocks(n: int, side: int):
    """Yield ``slice`` objects covering range(n) in steps of ``side``."""
    for start in range(0, n, side):
        yield slice(start, min(n, start + side))
