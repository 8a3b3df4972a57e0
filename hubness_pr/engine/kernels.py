"""Fused CPU tile kernels (numba): every per-element step of a distance tile in one sweep.

On the CPU the torch route reads a distance tile once per elementwise operation (form the distances,
one screening band per threshold, one comparison per reduction): about twenty sweeps over memory
per GEMM, which cost as much as the GEMM itself. These kernels read the Gram tile ``a . b^T`` once,
form ``|a|^2 + |b|^2 - 2 a.b`` per element, re-measure in float64 the few pairs inside the screening
band, and apply every reduction on the spot. Numerics are those of :mod:`hubness_pr.engine.distances` and
:mod:`hubness_pr.engine.cross`: the same float32 screen, the band ``screen_eps(dim) * (|a|^2 + |b|^2)`` plus
the frame's absolute term per pair, the exact float64 distance :func:`exact_pairs` wherever the
band says a rounding error could flip a decision, and float64 thresholds for those comparisons.

They run on the CPU only (CUDA keeps the torch route, whose sweeps run at GPU memory bandwidth), in
threads (``torch.get_num_threads()``; the kernels release the GIL). Compiled code is cached on disk
by numba (``cache=True``), so only the first run after an install pays the compile (seconds).

A run's route (:meth:`hubness_pr.engine.context.RunContext.fused`: ``route="torch"`` switches them off, and
small runs, :func:`small_work`, take the torch route so that they never import numba) and its thread
pool come from its :class:`hubness_pr.engine.context.RunContext`; the functions here take the pool. The cross
reductions are those of :data:`hubness_pr.engine.reductions.TABLE`, packed for one generic kernel. The jitted
code is in :mod:`hubness_pr.engine.kernels_jit`, imported on first use.
"""
from __future__ import annotations

import importlib
import importlib.util
import time
from types import SimpleNamespace

import numpy as np
import torch

from hubness_pr.engine import reductions


def available() -> bool:
    """Whether numba is installed (a requirement; without it the torch route serves the CPU)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = importlib.util.find_spec("numba") is not None
    return _AVAILABLE


_AVAILABLE: bool | None = None
# Below this much work over a run's passes, the torch route is used on the CPU too: loading the
# compiled kernels (about 1 s in a new process, numba's start-up) costs more than they save there.
# The work is pairs x max(dim, SMALL_DIM): the torch route's per-pair sweeps cost as much as a
# product of about SMALL_DIM dimensions (measured, whole runs in new processes: 2,000 x 2,000 x 4096
# faster on the torch route, 5,000 x 5,000 x 4096 faster fused; at dim 16, 128 and 512 the two break
# even near 4,000 x 4,000 and fused is 1.6-3x faster from 8,000 x 8,000 on).
SMALL_WORK = 2_000 * 2_000 * 4096
SMALL_DIM = 1024


def small_work(pairs: float, dim: int) -> bool:
    """Whether a run of ``pairs`` distances of ``dim`` dimensions is small enough for the torch route."""
    return pairs * max(int(dim), SMALL_DIM) < SMALL_WORK


def jit():
    """The jitted module (:mod:`hubness_pr.engine.kernels_jit`), imported on first use."""
    return importlib.import_module(".kernels_jit", __package__)


def _run_split(count: int, job, pool=None) -> list:
    """Run ``job(start, stop)`` over ``range(count)`` split across the threads of ``pool`` (the run's
    :attr:`hubness_pr.engine.context.RunContext.pool`: an executor with ``threads``; None: this thread)."""
    threads = 1 if pool is None else max(1, min(pool.threads, count // 64 or 1))
    if threads == 1:
        return [job(0, count)]
    bounds = np.linspace(0, count, threads + 1).astype(np.int64)
    futures = [pool.submit(job, int(bounds[t]), int(bounds[t + 1])) for t in range(threads)]
    return [f.result() for f in futures]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().numpy()


def load() -> float:
    """Load every fused kernel now (compiling it on the first run after an install, else from numba's
    disk cache) and return the seconds it took; a no-op where numba is missing.

    Optional: the first tile loads them anyway. A fresh process pays ~0.3 s here (numba's own
    start-up), so long-lived callers, benchmarks and services may prefer to pay it up front.
    """
    start = time.perf_counter()
    if available():
        x = torch.arange(24, dtype=torch.float32).reshape(6, 4)
        norms = (x * x).sum(1)
        idx = torch.arange(6)
        exact_pairs(x, idx, x, idx)
        best_d = torch.full((6, 2), float("inf"))
        best_i = torch.full((6, 2), -1, dtype=torch.int64)
        knn_tile(x[:3] @ x.T, norms[:3], norms, 0, 0, best_d, best_i)
        thr = {key: norms.double() for key in reductions.THRESHOLDS}
        tile = SimpleNamespace(na=norms, nb=norms, real=x, fake=x, ri=idx, cj=idx, real_at=idx, fake_at=idx,
                               sq_scale=1.0, eps=1e-6, abs_tol=1e-30, same_set=False)
        cross_tile(x @ x.T, tile, thr, frozenset(reductions.TABLE))
        one = torch.zeros(6, dtype=torch.float64)
        kernel_tile_sums("poly3", x @ x.T, one, one, norms, norms, 1.0, 0.25, -0.005, 0)
        nearest_band(x @ x.T, norms, norms, nearest_top2(x @ x.T, norms, norms)[1])
    return time.perf_counter() - start


def exact_pairs(x, i: torch.Tensor, y, j: torch.Tensor, pool=None) -> torch.Tensor:
    """``sum((x[i[t]] - y[j[t]])**2)`` in float64 (CPU float32 rows, int64 indices), no gathers; rows
    of a file (:class:`hubness_pr.engine.mapped.MappedRows`) are read a chunk of pairs at a time; in the threads
    of ``pool`` (None: this one)."""
    k = jit()
    i_np, j_np = _np(i.to(torch.int64)), _np(j.to(torch.int64))
    out = np.empty(i_np.shape[0], dtype=np.float64)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        x_np, y_np = _np(x), _np(y)
        _run_split(i_np.shape[0], lambda s, e: k._exact_pairs_kernel(x_np, i_np, y_np, j_np, out, s, e), pool)
        return torch.from_numpy(out)
    step = max(16, _GATHER_BYTES // (8 * max(1, x.shape[1])))  # two gathered float32 blocks
    for lo in range(0, i_np.shape[0], step):
        xa, ia = _rows_of(x, i_np[lo:lo + step])
        yb, jb = _rows_of(y, j_np[lo:lo + step])
        part = out[lo:lo + step]
        _run_split(part.shape[0], lambda s, e: k._exact_pairs_kernel(xa, ia, yb, jb, part, s, e), pool)
        del xa, yb
    return torch.from_numpy(out)


_GATHER_BYTES = 4 * 2**20


KERNEL_KINDS = {"poly3": 0, "gauss": 1}
_COLUMN_BLOCK = 256  # columns a row's partial sum covers (fixed: the bits do not depend on threads)


def kernel_tile_sums(kind: str, g: torch.Tensor, ua: torch.Tensor, ub: torch.Tensor, na: torch.Tensor,
                     nb: torch.Tensor, inv_scale: float, inv_dim: float, neg_inv_2s2: float, diag: int,
                     pool=None) -> tuple:
    """One kernel's (row sums, column sums, column sums of squares) over a float32 Gram tile ``g``
    (p, q) of screen rows (:func:`hubness_pr.engine.kernel_sums.tile_vectors` says what each value
    is), float64 numpy, the pair ``j == i + diag`` left out; in the threads of ``pool``."""
    k = jit()
    g_np, ua_np, ub_np, na_np, nb_np = _np(g), _np(ua), _np(ub), _np(na), _np(nb)
    p, q = g_np.shape
    colsum, colsq = np.zeros(q), np.zeros(q)
    rowpart = np.zeros((p, -(-q // _COLUMN_BLOCK)))
    _run_split(q, lambda s, e: k._kernel_sums_kernel(g_np, ua_np, ub_np, na_np, nb_np, inv_scale, inv_dim,
                                                     neg_inv_2s2, KERNEL_KINDS[kind], diag, _COLUMN_BLOCK,
                                                     colsum, colsq, rowpart, s, e), pool)
    return rowpart.sum(axis=1), colsum, colsq


def _rows_of(x, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, positions): ``x[idx] == rows[positions]``; a tensor as it is, file rows gathered."""
    if isinstance(x, torch.Tensor):
        return _np(x), idx
    rows, positions = np.unique(idx, return_inverse=True)
    return x.gather(rows), positions.reshape(-1).astype(np.int64)


def knn_tile(g: torch.Tensor, norms_rows: torch.Tensor, norms_cols: torch.Tensor, row_offset: int,
             col_offset: int, best_d: torch.Tensor, best_i: torch.Tensor, limit: int | None = None,
             pool=None) -> None:
    """Merge one within-set Gram tile ``g = x[rows] . x[cols]^T`` into the running candidate lists.

    Rows are samples ``row_offset + i``, columns ``col_offset + j`` with ``col_offset >= row_offset``
    (a tile of :func:`hubness_pr.engine.distances.tile_grid` with ``upper``). Every pair is offered to its row
    sample, self excluded by index; it is offered to its column sample too unless that column lies
    inside the row block, whose square holds both orders of each pair. With ``limit``, only samples
    below it keep candidate lists (``best_d`` has ``limit`` rows): columns from it on are offered
    to their rows only. In the threads of ``pool`` (None: this one).
    """
    k = jit()
    g_np, nr, nc = _np(g), _np(norms_rows), _np(norms_cols)
    bd, bi = best_d.numpy(), best_i.numpy()
    p, q = g_np.shape
    inside = max(0, min(row_offset + p, col_offset + q) - col_offset)
    stop = q if limit is None else max(inside, min(q, limit - col_offset))
    _run_split(p, lambda s, e: k._knn_rows_kernel(g_np, nr, nc, row_offset, col_offset, bd, bi, s, e), pool)
    if inside < stop:
        _run_split(stop - inside, lambda s, e: k._knn_cols_kernel(g_np, nr, nc, row_offset, col_offset, bd, bi,
                                                                inside + s, inside + e), pool)


def nearest_top2(g: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, pool=None) -> np.ndarray:
    """Each column's two smallest float32 screened squared distances ``(-2 g + |a|^2) + |b|^2`` (>= 0)
    of a real x fake Gram tile ``g`` (p, q), read once, ``g`` unchanged: float32 (2, q), row 0 <= row 1
    (inf where the tile has one row); in the threads of ``pool`` (each its rows, then merged)."""
    k = jit()
    g_np, na_np, nb_np = _np(g), _np(na), _np(nb)
    p, q = g_np.shape

    def job(start, stop):
        t = np.full((2, q), np.inf, dtype=np.float32)
        k._top2_kernel(g_np, na_np, nb_np, t[0], t[1], start, stop)
        return t

    parts = _run_split(p, job, pool)
    return parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts), axis=0)[:2]


def nearest_band(g: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, bound: np.ndarray,
                 pool=None) -> tuple[np.ndarray, np.ndarray]:
    """The entries ``(i, j)`` (int64 arrays, row-major) of a Gram tile ``g`` (p, q) whose float32 screen
    (as :func:`nearest_top2` forms it) is ``<= bound[j]`` (float32 (q,)); ``g`` unchanged; in the
    threads of ``pool``. A thread whose entries overflow its first buffer sweeps its rows again."""
    k = jit()
    g_np, na_np, nb_np = _np(g), _np(na), _np(nb)
    bound = np.ascontiguousarray(bound, dtype=np.float32)
    p, q = g_np.shape

    def job(start, stop):
        cap = 4 * q + 1024
        out_i, out_j = np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64)
        n = k._band_kernel(g_np, na_np, nb_np, bound, out_i, out_j, start, stop)
        if n > cap:
            out_i, out_j = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
            k._band_kernel(g_np, na_np, nb_np, bound, out_i, out_j, start, stop)
        return out_i[:n], out_j[:n]

    parts = _run_split(p, job, pool)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([i for i, _ in parts]), np.concatenate([j for _, j in parts])


def cross_tile(g: torch.Tensor, tile, thresholds: dict, want, pool=None) -> tuple[dict, int]:
    """The reductions ``want`` (names of :data:`hubness_pr.engine.reductions.TABLE`) of one real x fake Gram tile
    ``g = tile.a . tile.b^T`` (p, q), in the threads of ``pool`` (None: this one).

    ``tile`` is a :class:`hubness_pr.engine.cross.Tile`; ``thresholds`` maps threshold names
    (:data:`hubness_pr.engine.reductions.THRESHOLDS`) to float64 tensors of this tile's rows or columns in frame
    units (None: absent). Returns the tile's own results, as :func:`hubness_pr.engine.cross.torch_tile` does
    (an argmax as a (ratio, real index) pair), and the number of pairs refined.
    """
    k = jit()
    table, row_out, col_out = reductions.pack(want)
    p, q = g.shape
    present = [key for key, v in thresholds.items() if v is not None]
    thr = {key: _np(thresholds[key].to(torch.float64)) for key in present}
    thr_r = np.full((p, len(reductions.ROW_SLOTS)), -np.inf)
    thr_c = np.full((len(reductions.COL_SLOTS), q), -np.inf)
    for key in present:
        if key in reductions.ROW_SLOTS:
            thr_r[:, reductions.slot(key)] = thr[key]
        else:
            thr_c[reductions.slot(key)] = thr[key]
    # (banded row slots, banded column slots, inside row slots, inside column slots)
    bands = tuple(np.array([reductions.slot(key) for key in pick(present) if key in slots], dtype=np.int64)
                  for pick in (reductions.banded, reductions.inside)
                  for slots in (reductions.ROW_SLOTS, reductions.COL_SLOTS))
    na_np, nb_np = _np(tile.na), _np(tile.nb)
    eps, abs_tol = tile.eps, tile.abs_tol
    # float32 bounds above every decisive threshold's band: a pair beyond its row's and its column's
    # bound decides nothing (computed in float64, rounded up)
    nb_max, na_max = float(nb_np.max(initial=0.0)), float(na_np.max(initial=0.0))
    decisive = reductions.decisive(present)
    rows_top = np.zeros(p)
    for key in decisive:
        if key in reductions.ROW_SLOTS:
            rows_top = np.maximum(rows_top, thr[key])
    row_far = f32_up(rows_top + eps * (na_np.astype(np.float64) + nb_max) + abs_tol)
    cols = [thr[key] for key in decisive if key in reductions.COL_SLOTS]
    col_far = (f32_up(np.maximum.reduce(cols) + eps * (na_max + nb_np.astype(np.float64)) + abs_tol) if cols
               else np.full(q, -np.inf, dtype=np.float32))
    xs = (_np(tile.real), _np(tile.fake))
    ids = tuple(_np(t.to(torch.int64)) for t in (tile.ri, tile.cj, tile.real_at, tile.fake_at))
    scal = np.array([eps, abs_tol, tile.sq_scale], dtype=np.float64)
    g_np = _np(g)

    def outputs(names, n):
        out = np.empty((len(names), n), dtype=np.float64)
        for o, name in enumerate(names):
            out[o] = -1.0 if name.endswith("_index") else reductions.initial_value(reductions.TABLE[name].op)
        return out

    out_r = outputs(row_out, p)  # threads write disjoint rows

    def job(start, stop):
        out_c = outputs(col_out, q)  # each thread its own column copies
        span = np.array([start, stop, int(tile.same_set)], dtype=np.int64)
        count = k._cross_kernel(g_np, xs, ids, (na_np, nb_np), thr_r, thr_c, table, bands, (row_far, col_far),
                                scal, span, out_r, out_c)
        return count, out_c

    parts = _run_split(p, job, pool)
    out = {}
    for o, name in enumerate(row_out):
        out[name] = torch.from_numpy(out_r[o].astype(reductions.TABLE[name].dtype))
    for o, name in enumerate(col_out):
        if name.endswith("_index"):
            continue
        dtype = reductions.TABLE[name].dtype
        if reductions.TABLE[name].op == "argmax":
            def value(c, o=o, dtype=dtype):
                return c[o].astype(dtype), c[o + 1].astype(np.int64)
        else:
            def value(c, o=o, dtype=dtype):
                return c[o].astype(dtype)
        total = value(parts[0][1])
        for _, c in parts[1:]:
            total = reductions.combine(name, total, value(c))
        out[name] = (tuple(torch.from_numpy(v) for v in total) if isinstance(total, tuple)
                     else torch.from_numpy(total))
    return out, sum(count for count, _ in parts)


def f32_up(v: np.ndarray) -> np.ndarray:
    """float32 values >= the float64 ``v`` (rounded up)."""
    f = v.astype(np.float32)
    low = f.astype(np.float64) < v
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f
