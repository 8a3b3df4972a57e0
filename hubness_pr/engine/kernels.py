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

``HUBNESS_KERNELS=torch`` in the environment switches them off (the tests run both routes); small runs
(:data:`SMALL_WORK`) take the torch route, so that they never import numba. The jitted code is in
:mod:`hubness_pr.engine.kernels_jit`, imported on first use.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import importlib
import importlib.util

# reductions of the cross pass, as bit flags (one compiled kernel serves every combination)
PRECISION, RECALL, RARITY, REAL_HUBS, FAKE_HUBS, DC, REALISM = 1, 2, 4, 8, 16, 32, 64
# a tile's own results (hubness_pr.engine.cross.REDUCTIONS): name -> (initial value, dtype); rows are real
# samples, columns fake ones; realism is a (ratio, index of the real) pair
TILE_OUTPUTS = {
    "in_fake": (False, np.bool_), "in_fhub": (False, np.bool_), "covered": (False, np.bool_),
    "in_real": (False, np.bool_), "in_rhub": (False, np.bool_), "rarity": (np.inf, np.float64),
    "dens": (0, np.int64), "realism": (0.0, np.float64), "realism_index": (-1, np.int64),
}
_ROW_KEYS = ("in_fake", "in_fhub", "covered")
_COL_KEYS = ("in_real", "in_rhub", "rarity", "dens", "realism", "realism_index")
_FLAG = {"in_real": PRECISION, "in_fake": RECALL, "rarity": RARITY, "in_rhub": REAL_HUBS,
         "in_fhub": FAKE_HUBS, "dens": DC, "covered": DC, "realism": REALISM, "realism_index": REALISM}


def available() -> bool:
    """Whether numba is installed (a requirement; without it the torch route serves the CPU)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = importlib.util.find_spec("numba") is not None
    return _AVAILABLE


_AVAILABLE: bool | None = None
# Below this many distance products (pairs x dim) over a run's passes, the torch route is used on the
# CPU too: loading the compiled kernels (~0.3 s, numba's start-up) costs more than they save there
# (measured: 2,000 x 2,000 x 4096 faster on the torch route, 5,000 x 5,000 faster fused).
SMALL_WORK = 2_000 * 2_000 * 4096


def enabled(device: torch.device, work: float | None = None) -> bool:
    """Whether the fused kernels serve tiles on ``device`` for a run of ``work`` distance products
    (pairs x dim; None: any size). ``HUBNESS_KERNELS=torch`` switches them off, ``=fused`` on
    whatever the size (the tests run both routes)."""
    choice = os.environ.get("HUBNESS_KERNELS", "auto")
    if device.type != "cpu" or choice == "torch" or not available():
        return False
    return choice == "fused" or work is None or work >= SMALL_WORK


def jit():
    """The jitted module (:mod:`hubness_pr.engine.kernels_jit`), imported on first use."""
    return importlib.import_module(".kernels_jit", __package__)


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def _run_split(count: int, job) -> list:
    """Run ``job(start, stop)`` over ``range(count)`` split across the torch thread count."""
    global _POOL, _POOL_SIZE
    threads = max(1, min(torch.get_num_threads(), count // 64 or 1))
    if threads == 1:
        return [job(0, count)]
    if _POOL is None or _POOL_SIZE < threads:
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hubness"), threads
    bounds = np.linspace(0, count, threads + 1).astype(np.int64)
    futures = [_POOL.submit(job, int(bounds[t]), int(bounds[t + 1])) for t in range(threads)]
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
        from hubness_pr.engine.cross import Tile  # noqa: PLC0415 - cross imports this module
        thr = {key: norms.double() for key in ("r_pr", "r_dc", "r_rt", "r_hub", "s_pr", "s_hub")}
        tile = Tile(a=x, b=x, na=norms, nb=norms, real=x, fake=x, ri=idx, cj=idx, sq_scale=1.0, eps=1e-6,
                    abs_tol=1e-30, real_rows=idx, fake_rows=idx)
        cross_tile(x @ x.T, tile, thr, frozenset(_FLAG))
    return time.perf_counter() - start


def exact_pairs(x, i: torch.Tensor, y, j: torch.Tensor) -> torch.Tensor:
    """``sum((x[i[t]] - y[j[t]])**2)`` in float64 (CPU float32 rows, int64 indices), no gathers; rows
    of a file (:class:`hubness_pr.engine.mapped.MappedRows`) are read a chunk of pairs at a time."""
    k = jit()
    i_np, j_np = _np(i.to(torch.int64)), _np(j.to(torch.int64))
    out = np.empty(i_np.shape[0], dtype=np.float64)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        x_np, y_np = _np(x), _np(y)
        _run_split(i_np.shape[0], lambda s, e: k._exact_pairs_kernel(x_np, i_np, y_np, j_np, out, s, e))
        return torch.from_numpy(out)
    step = max(16, _GATHER_BYTES // (8 * max(1, x.shape[1])))  # two gathered float32 blocks
    for lo in range(0, i_np.shape[0], step):
        xa, ia = _rows_of(x, i_np[lo:lo + step])
        yb, jb = _rows_of(y, j_np[lo:lo + step])
        part = out[lo:lo + step]
        _run_split(part.shape[0], lambda s, e: k._exact_pairs_kernel(xa, ia, yb, jb, part, s, e))
        del xa, yb
    return torch.from_numpy(out)


_GATHER_BYTES = 4 * 2**20


def _rows_of(x, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, positions): ``x[idx] == rows[positions]``; a tensor as it is, file rows gathered."""
    if isinstance(x, torch.Tensor):
        return _np(x), idx
    rows, positions = np.unique(idx, return_inverse=True)
    return x.gather(rows), positions.reshape(-1).astype(np.int64)


def knn_tile(g: torch.Tensor, norms_rows: torch.Tensor, norms_cols: torch.Tensor, row_offset: int,
             col_offset: int, best_d: torch.Tensor, best_i: torch.Tensor, limit: int | None = None) -> None:
    """Merge one within-set Gram tile ``g = x[rows] . x[cols]^T`` into the running candidate lists.

    Rows are samples ``row_offset + i``, columns ``col_offset + j`` with ``col_offset >= row_offset``
    (a tile of :func:`hubness_pr.engine.distances.tile_grid` with ``upper``). Every pair is offered to its row
    sample, self excluded by index; it is offered to its column sample too unless that column lies
    inside the row block, whose square holds both orders of each pair. With ``limit``, only samples
    below it keep candidate lists (``best_d`` has ``limit`` rows): columns from it on are offered
    to their rows only.
    """
    k = jit()
    g_np, nr, nc = _np(g), _np(norms_rows), _np(norms_cols)
    bd, bi = best_d.numpy(), best_i.numpy()
    p, q = g_np.shape
    inside = max(0, min(row_offset + p, col_offset + q) - col_offset)
    stop = q if limit is None else max(inside, min(q, limit - col_offset))
    _run_split(p, lambda s, e: k._knn_rows_kernel(g_np, nr, nc, row_offset, col_offset, bd, bi, s, e))
    if inside < stop:
        _run_split(stop - inside, lambda s, e: k._knn_cols_kernel(g_np, nr, nc, row_offset, col_offset, bd, bi,
                                                                inside + s, inside + e))


def cross_tile(g: torch.Tensor, tile, thresholds: dict, want: frozenset) -> tuple[dict, int]:
    """Every cross reduction of one real x fake Gram tile ``g = tile.a . tile.b^T`` (p, q).

    ``tile`` is a :class:`hubness_pr.engine.cross.Tile`; ``thresholds`` maps ``r_pr, r_dc, r_rt, r_hub`` (rows)
    and ``s_pr, s_hub`` (columns) to float64 tensors of this tile in frame units, or None. ``want``
    names the reductions (:data:`hubness_pr.engine.cross.REDUCTIONS`). Returns the tile's own results, as
    :func:`hubness_pr.engine.cross.torch_tile` does (realism as a (ratio, real index) pair), and the number of
    pairs refined.
    """
    k = jit()
    flags = 0
    for key in want:
        flags |= _FLAG[key]
    p, q = g.shape
    empty = np.empty(0, dtype=np.float64)
    thr = {key: empty if thresholds.get(key) is None else _np(thresholds[key].to(torch.float64))
           for key in ("r_pr", "r_dc", "r_rt", "r_hub", "s_pr", "s_hub")}
    na_np, nb_np = _np(tile.na), _np(tile.nb)
    eps, abs_tol = tile.eps, tile.abs_tol
    # float32 bounds above every threshold's band: a pair beyond its row's and its column's bound
    # decides nothing (computed in float64, rounded up)
    nb_max, na_max = float(nb_np.max(initial=0.0)), float(na_np.max(initial=0.0))
    rows_top = np.zeros(p)
    for key in ("r_pr", "r_dc"):
        if thr[key].size:
            rows_top = np.maximum(rows_top, thr[key])
    row_far = _f32_up(rows_top + eps * (na_np.astype(np.float64) + nb_max) + abs_tol)
    col_far = (_f32_up(thr["s_pr"] + eps * (na_max + nb_np.astype(np.float64)) + abs_tol) if thr["s_pr"].size
               else np.full(q, -np.inf, dtype=np.float32))
    g_np, xa, xb = _np(g), _np(tile.real), _np(tile.fake)
    ri, cj = _np(tile.ri.to(torch.int64)), _np(tile.cj.to(torch.int64))
    ra, cb = _np(tile.real_at.to(torch.int64)), _np(tile.fake_at.to(torch.int64))

    def alloc(key, n):
        fill, dtype = TILE_OUTPUTS[key]
        return np.full(n if flags & _FLAG[key] else 0, fill, dtype=dtype)

    rows = {key: alloc(key, p) for key in _ROW_KEYS}  # threads write disjoint rows

    def job(start, stop):
        cols = {key: alloc(key, q) for key in _COL_KEYS}  # each thread its own column copies
        count = k._cross_kernel(g_np, xa, xb, ri, cj, ra, cb, na_np, nb_np, eps, abs_tol, tile.sq_scale, flags,
                                tile.same_set, thr["r_pr"], thr["r_dc"], thr["r_rt"], thr["r_hub"], thr["s_pr"],
                                thr["s_hub"], row_far, col_far, start, stop, rows["in_fake"], rows["in_fhub"],
                                rows["covered"], cols["in_real"], cols["in_rhub"], cols["rarity"], cols["dens"],
                                cols["realism"], cols["realism_index"])
        return count, cols

    from hubness_pr.engine.cross import combine  # noqa: PLC0415 - cross imports this module

    parts = _run_split(p, job)
    out = {key: torch.from_numpy(rows[key]) for key in _ROW_KEYS if key in want}
    for key in ("in_real", "in_rhub", "rarity", "dens"):
        if key in want:
            total = parts[0][1][key]
            for _, cols in parts[1:]:
                total = combine(key, total, cols[key])
            out[key] = torch.from_numpy(total)
    if "realism" in want:
        total = (parts[0][1]["realism"], parts[0][1]["realism_index"])
        for _, cols in parts[1:]:
            total = combine("realism", total, (cols["realism"], cols["realism_index"]))
        out["realism"] = (torch.from_numpy(total[0]), torch.from_numpy(total[1]))
    return out, sum(count for count, _ in parts)


def _f32_up(v: np.ndarray) -> np.ndarray:
    """float32 values >= the float64 ``v`` (rounded up)."""
    f = v.astype(np.float32)
    low = f.astype(np.float64) < v
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f
