"""Exact k-nearest-neighbour structure of one feature set.

1. **Screen.** One tiled pass over the upper triangle of the set's distance matrix, in float32 on the
   set's screen frame (:mod:`hubness_pr.engine.frame`: centred and scaled where that sharpens the screen).
   Each off-diagonal tile is reduced along its rows *and* its columns, so every product is computed
   once. Each row keeps a running list of ``k_max + 16`` candidates by screened distance.
2. **Proof.** The screen is within ``T_i`` of the exact distance for every pair of row ``i``
   (:func:`hubness_pr.engine.distances.screen_eps`). Every sample outside the candidate list has a screened
   distance at least the list's last one; if that last one exceeds the k-th by more than ``2 T_i``,
   no sample outside the list can be among the k nearest or tie with the k-th, and the list holds
   the exact answer. Runs of candidates whose screened gaps are within ``2 T_i`` around the k-th
   (and around every radius asked for) are re-measured exactly in float64
   (:func:`hubness_pr.engine.distances.exact_sq_dist`) and the row is sorted by (distance, index).
3. **Fallback.** Rows the proof cannot settle (collapsed clusters, exact ties, more duplicates than
   the list holds) are solved by :func:`exact_rows`: exact duplicates by value, the rest by a float64
   screen with per-pair bounds and the exact distance of every pair those bounds cannot exclude.

So indices, k-occurrence and radii equal a float64 brute force whatever the input, with ties broken
by the lowest index on every route and tile size. Self is excluded by index, so a duplicate of a
sample is its neighbour at distance 0 (docs: definitions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from hubness_pr.engine import kernels
from hubness_pr.engine.inputs import check_feature_input, check_int
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.distances import (DEFAULT_MEMORY_BUDGET, as_tensor, exact_matmul, exact_sq_dist, gram_tile, release_memory,
                        screen_eps, sq_dist_from_gram, sq_dist_tile, strip_width, tile_grid,
                        tile_side)
from hubness_pr.engine.distributed import SINGLE, Group
from hubness_pr.engine.frame import SetStats, choose_frame, screen_rows

_EXTRA_CANDIDATES = 16  # spare candidates a row: enough for most tie groups of low-dimensional data


@dataclass(frozen=True)
class NeighborGraph:
    """The k nearest neighbours of every sample of one set, self excluded.

    Attributes:
        indices: int64 (n, k_max): neighbour indices, nearest first, ties broken by index.
        sq_distances: float64 (n, k_max): squared distances to those neighbours, exact in the
            columns k-1 for k in ``exact_ks`` (elsewhere within float32 screening error).
        exact_ks: the k whose radii are exact.
        fallback_rows: rows the float32 screen could not settle (solved by :func:`exact_rows`).
    """

    indices: np.ndarray
    sq_distances: np.ndarray
    exact_ks: tuple = ()
    fallback_rows: int = 0

    @property
    def n(self) -> int:
        return self.indices.shape[0]

    @property
    def k_max(self) -> int:
        return self.indices.shape[1]

    def _check_k(self, k: int) -> int:
        k = check_int(k, "k", "NeighborGraph", 1)
        if k > self.k_max:
            raise ValueError(f"k={k} exceeds the k_max={self.k_max} this neighbour graph was built with")
        return k

    def sq_radii(self, k: int) -> np.ndarray:
        """Exact squared distance of each sample to its k-th nearest neighbour, float64 (n,)."""
        k = self._check_k(k)
        if k not in self.exact_ks:
            raise ValueError(f"radii at k={k} were not computed exactly (exact_ks={self.exact_ks})")
        return self.sq_distances[:, k - 1]

    def radii(self, k: int) -> np.ndarray:
        """Distance of each sample to its k-th nearest neighbour, float64 (n,)."""
        return np.sqrt(self.sq_radii(k))

    def k_occurrence(self, k: int) -> np.ndarray:
        """O_k: how many other samples have each sample among their k nearest neighbours, int64 (n,).

        Sums to n * k.
        """
        k = self._check_k(k)
        return np.bincount(self.indices[:, :k].ravel(), minlength=self.n).astype(np.int64)


def nearest_neighbors(features, k: int, *, device="auto", memory_budget: int = DEFAULT_MEMORY_BUDGET,
                      exact_ks=None, stats: SetStats | None = None, desc: str = "k-NN",
                      progress: bool | None = None, group: Group = SINGLE, fused: bool | None = None,
                      route: str | None = None, ctx: RunContext | None = None, sums=None) -> NeighborGraph:
    """Exact k nearest neighbours of every row of ``features`` within the same set.

    Args:
        features: float32 array or tensor (n, dim); validated by the caller (see ``evaluate``).
        k: number of neighbours kept (>= 1); needs n >= k + 1.
        device: 'auto', 'cpu', 'cuda' or a torch.device. The fused CPU kernels screen the tiles on
            the CPU, torch code elsewhere; both give the same neighbours.
        memory_budget: bytes for the distance tiles (sets the tile side).
        exact_ks: the k whose radii must be exact (default: all of 1..k). Other columns of
            ``sq_distances`` may keep float32-screened values; the neighbour lists are exact
            regardless (each row's first k' for every k' in ``exact_ks`` and k).
        stats: :class:`hubness_pr.engine.frame.SetStats` of ``features`` if already computed (one read saved).
        progress: tqdm bar on stderr; None shows it only on a terminal.
        group: the processes sharing the work (:mod:`hubness_pr.engine.distributed`); every rank returns the
            whole graph.
        fused: the CPU route the run chose; None: ``ctx.fused`` for this pass's size.
        route: 'auto', 'fused' or 'torch' (:class:`hubness_pr.engine.context.RunContext`).
        ctx: the run's :class:`hubness_pr.engine.context.RunContext`; when given, it replaces ``device``,
            ``memory_budget``, ``progress``, ``group`` and ``route``.
    """
    check_feature_input(features, "features")
    k = check_int(k, "k", "nearest_neighbors", 1)
    if ctx is None:
        with RunContext.build(device=device, memory_budget=memory_budget, route=route, group=group,
                              progress=progress) as own:
            return nearest_neighbors(features, k, exact_ks=exact_ks, stats=stats, desc=desc, fused=fused, ctx=own,
                                     sums=sums)
    dev = ctx.device
    x = as_tensor(features, dev)
    n, dim = x.shape
    if n < k + 1:
        raise ValueError(f"{n} samples are too few for k={k}: the k-th neighbour needs at least {k + 1}")
    if exact_ks is not None and any(not 1 <= kk <= k for kk in exact_ks):
        raise ValueError(f"exact_ks={tuple(exact_ks)} must lie in [1, k={k}]")
    exact_ks = tuple(sorted(set(exact_ks or range(1, k + 1)) | {k}))
    if fused is None:
        fused = ctx.fused(n * n / 2, dim)
    idx, d, fallback = _exact_knn(x, k, exact_ks, n, stats, ctx, desc, fused, sums)
    return NeighborGraph(indices=idx.cpu().numpy(), sq_distances=d.cpu().numpy(), exact_ks=exact_ks,
                         fallback_rows=fallback)


def neighbors_of(features, rows, k: int, *, device="auto", memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 desc: str = "k-NN rows", progress: bool | None = None, group: Group = SINGLE,
                 fused: bool | None = None, route: str | None = None,
                 ctx: RunContext | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest neighbours in the whole set (self excluded) of the samples ``rows``
    (indices into ``features``), at the cost of those rows only: int64 indices and float64 squared
    distances (len(rows), k). The distances equal ``nearest_neighbors(features, k)``'s for those rows
    (so the last column is their exact squared k-th radius); among samples tied at one distance
    the indices may name another of them.

    The samples are reordered so that ``rows`` come first; then the pass of :func:`nearest_neighbors`
    runs over the row blocks of those samples only (the pairs among them once, each with the rest
    once) and its proof, exact step and fallback settle them. Costs ``h - h^2/2`` of the whole-set
    pass for a fraction ``h`` of rows, plus one copy of the set. Settings as :func:`nearest_neighbors`'s.
    """
    check_feature_input(features, "features")
    k = check_int(k, "k", "neighbors_of", 1)
    if ctx is None:
        with RunContext.build(device=device, memory_budget=memory_budget, route=route, group=group,
                              progress=progress) as own:
            return neighbors_of(features, rows, k, desc=desc, fused=fused, ctx=own)
    dev = ctx.device
    x = as_tensor(features, dev)
    n, dim = x.shape
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n or np.unique(rows).size != rows.size):
        raise ValueError(f"rows must be distinct indices in [0, {n})")
    if n < k + 1:
        raise ValueError(f"{n} samples are too few for k={k}: the k-th neighbour needs at least {k + 1}")
    if not rows.size:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), rows, assume_unique=True)
    order = np.concatenate([rows, rest])
    xp = x.index_select(0, torch.from_numpy(order).to(dev)) if isinstance(x, torch.Tensor) else x[order]
    h = rows.size
    if fused is None:
        fused = ctx.fused(h * n - h * h / 2, dim)
    idx, d, _ = _exact_knn(xp, k, tuple(range(1, k + 1)), h, None, ctx, desc, fused)
    return order[idx.cpu().numpy()], d.cpu().numpy()


def _exact_knn(x: torch.Tensor, k: int, exact_ks: tuple, limit: int, stats, ctx: RunContext, desc: str,
               fused: bool, sums=None):
    """The exact k nearest neighbours of samples ``0..limit-1`` of ``x`` within all of ``x`` (steps 1-3
    of the module docstring): indices, squared distances, rows the fallback solved."""
    n, dim = x.shape
    dev = x.device
    group, memory_budget = ctx.group, ctx.memory_budget
    pool = ctx.pool if fused else None
    with exact_matmul(), torch.inference_mode():
        stats = SetStats.of(x) if stats is None else stats
        frame = choose_frame([x], [stats])
        xs, norms = screen_rows(x, stats, frame)
        cand = min(k + _EXTRA_CANDIDATES, n - 1)
        if sums is not None:
            sums.bind(frame, x)
        best_d, best_i = _screen_pass(xs, norms, cand, ctx, desc, fused, limit, sums)
        del xs
        if group.active:  # the k + 16 smallest of every rank's lists (a pair lives in one tile only)
            best_d = torch.cat(group.gather_all(best_d), dim=1)
            best_i = torch.cat(group.gather_all(best_i), dim=1)
            best_d, pos = torch.topk(best_d, cand, dim=1, largest=False)
            best_i = torch.gather(best_i, 1, pos)
        # the exact step, split by rows across the ranks, in row chunks whose float64 temporaries
        # (~160 bytes a candidate: sorts, gathers, runs) fit the budget
        mine = group.rows(limit)
        idx = torch.empty((mine.stop - mine.start, k), dtype=torch.int64, device=dev)
        d = torch.empty((mine.stop - mine.start, k), dtype=torch.float64, device=dev)
        failing, copies = [], False
        chunk = max(1024, memory_budget // (160 * cand))
        for lo in range(mine.start, mine.stop, chunk):
            part = slice(lo, min(mine.stop, lo + chunk))
            rows = torch.arange(part.start, part.stop, device=dev)
            cd, ci = _sort_rows(best_d[part].to(torch.float64), best_i[part])
            tol = screen_eps(dim) * (norms[part].to(torch.float64) + float(norms.max())) + frame.abs_tol(dim)
            proven = (torch.ones(rows.numel(), dtype=torch.bool, device=dev) if cand == n - 1
                      else cd[:, cand - 1] - cd[:, k - 1] > 2 * tol)
            bad = torch.nonzero(~proven).flatten()
            # exact copies are looked for only where a k-th candidate is screened as (near) zero
            copies |= bool((cd[bad, k - 1] <= tol[bad]).any()) if bad.numel() else False
            out = slice(part.start - mine.start, part.stop - mine.start)
            idx[out], d[out] = _refine(x, rows, frame.sq_scale, cd, ci, tol, proven, k, exact_ks, fused, pool)
            failing.append(rows[bad])
        del best_d, best_i
        failing = torch.cat(failing) if failing else torch.zeros(0, dtype=torch.int64, device=dev)
        if failing.numel():
            centre = stats.total / stats.count
            local = failing - mine.start
            idx[local], d[local] = exact_rows(x, failing, k, centre, memory_budget, look_for_copies=copies,
                                              fused=fused, pool=pool)
        idx, d = group.gather_rows(idx, limit), group.gather_rows(d, limit)
        fallback = int(group.combine("sum", torch.tensor([failing.numel()], device=dev)).item())
    release_memory()
    return idx, d, fallback


def _screen_pass(xs: torch.Tensor, norms: torch.Tensor, cand: int, ctx: RunContext, desc: str, fused: bool = False,
                 limit: int | None = None, sums=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``cand`` nearest candidates of every row by screened distance (float32 (n, cand), int64)
    among the pairs of this rank's tiles (all tiles in one process). With ``limit``: of rows
    ``0..limit-1`` only, from the row blocks of those rows (every pair of such a row lies in one).
    ``sums``: a kernel grid fed each tile's product (only for the whole set)."""
    n, dim = xs.shape
    dev = xs.device
    group, memory_budget = ctx.group, ctx.memory_budget
    pool = ctx.pool if fused else None
    onednn = ctx.onednn if dev.type == "cpu" else False
    limit = n if limit is None else limit
    best_d = torch.full((limit, cand), float("inf"), dtype=torch.float32, device=dev)
    best_i = torch.full((limit, cand), -1, dtype=torch.int64, device=dev)

    def merge(rows: slice, d: torch.Tensor, offset: int) -> None:
        # d: (len(rows), width) distances of these rows to columns offset..offset+width
        kk = min(cand, d.shape[1])
        vals, idx = torch.topk(d, kk, dim=1, largest=False, sorted=False)
        all_d = torch.cat([best_d[rows], vals], dim=1)
        all_i = torch.cat([best_i[rows], idx + offset], dim=1)
        top_d, pos = torch.topk(all_d, cand, dim=1, largest=False, sorted=False)
        best_d[rows] = top_d
        best_i[rows] = torch.gather(all_i, 1, pos)

    if sums is not None and limit != n:
        raise ValueError("kernel sums need the pass over the whole set")
    tiles = self_tiles(n, dim, memory_budget, fused, limit)
    tiles = [tiles[t] for t in group.share(len(tiles))]
    with tqdm(total=len(tiles), desc=desc, unit="tile", disable=_disable(ctx.progress), leave=False) as bar:
        for rows, cols in tiles:
            if fused or sums is not None:
                g = gram_tile(xs[rows], xs[cols], onednn)
                if sums is not None:
                    sums.add(rows, cols, g, norms[rows], norms[cols], fused, ctx.pool)
            if fused:
                kernels.knn_tile(g, norms[rows], norms[cols], rows.start, cols.start, best_d, best_i, limit, pool)
            else:
                d2 = (sq_dist_from_gram(g, norms[rows], norms[cols]) if sums is not None
                      else sq_dist_tile(xs[rows], xs[cols], norms[rows], norms[cols], onednn))
                d2.diagonal(rows.start - cols.start).fill_(float("inf"))  # self, by index
                merge(rows, d2, cols.start)
                # leading columns inside the row block hold both orders of their pairs: rows only
                inside = max(0, min(rows.stop, cols.stop) - cols.start)
                stop = max(inside, min(d2.shape[1], limit - cols.start))  # columns with candidate lists
                if inside < stop:
                    merge(slice(cols.start + inside, cols.start + stop), d2[:, inside:stop].T.contiguous(),
                          rows.start)
            bar.update()
    return best_d, best_i


def self_tiles(n: int, dim: int, memory_budget: int, fused: bool, limit: int | None = None) -> list:
    """The within-set pass's tiles (upper triangle, :func:`knn_tile_side` row blocks) over rows
    ``0..limit-1`` (default all ``n``): the k-NN screen and the set's kernel sums read the same ones."""
    limit = n if limit is None else limit
    side = knn_tile_side(limit, dim, memory_budget)
    return tile_grid(limit, n, side, strip_width(side, dim, memory_budget, fused), upper=True)


def knn_tile_side(n: int, dim: int, memory_budget: int) -> int:
    """Row-block height of the within-set pass: the budget's tile side, but at least 10 blocks where
    GEMMs stay efficient (>= 512 rows), so that the computed part (upper triangle plus whole diagonal
    squares) is at most 55/100 of the square."""
    return min(tile_side(dim, memory_budget), max(512, -(-n // 10)))


def _refine(x: torch.Tensor, rows: torch.Tensor, sq_scale: float, d: torch.Tensor, idx: torch.Tensor,
            tol: torch.Tensor, proven: torch.Tensor, k: int, exact_ks: tuple,
            fused: bool = False, pool=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort the candidates of the ``proven`` rows by (distance, index) with exact distances wherever
    the order or a radius depends on them; keep the first k, in original units.

    ``rows`` are the samples whose candidates ``d`` (frame units, float64) and ``idx`` hold, sorted
    by screened distance. In a row, a run of candidates whose consecutive gaps are all <= 2 T_i can
    be in any true order, while anything outside the run is certainly on its side of it. So the runs
    that hold the positions of ``exact_ks`` (k among them) are re-measured exactly and the row is
    re-sorted: the distance at position k'-1 is then the exact k'-th neighbour distance for every k'
    in ``exact_ks``, and the first k indices are exact too. Usually one exact pair per radius. Rows
    not ``proven`` are left for :func:`exact_rows`.
    """
    n, cand = idx.shape
    linked = (d[:, 1:] - d[:, :-1]) <= 2 * tol[:, None]  # consecutive candidates that may swap
    run = torch.cat([torch.zeros((n, 1), dtype=torch.int64, device=d.device),
                     torch.cumsum((~linked).to(torch.int64), dim=1)], dim=1)
    need = torch.zeros((n, cand), dtype=torch.bool, device=d.device)
    for kk in exact_ks:
        need |= run == run[:, kk - 1:kk]
    need &= proven[:, None]
    r, c = need.nonzero(as_tuple=True)
    d[r, c] = exact_sq_dist(x, rows[r], x, idx[r, c], fused=fused, pool=pool).to(d.device) * sq_scale
    d, idx = _sort_rows(d, idx)
    return idx[:, :k].contiguous(), d[:, :k] / sq_scale


def exact_rows(x: torch.Tensor, rows: torch.Tensor, k: int, centre: torch.Tensor, memory_budget: int,
               look_for_copies: bool = True, fused: bool = False, pool=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact k nearest neighbours (self excluded, ties by index) of the samples ``rows`` of ``x``
    (n, dim): int64 indices and float64 squared distances (len(rows), k), whatever the float32
    screen could not settle.

    * A sample with at least k other exact copies (equal values; -0.0 equals 0.0) has the k
      lowest-index copies as neighbours, at distance 0: no distance is computed (copies are
      looked for, one sort of the rows, when ``look_for_copies``).
    * The others: a float64 screen of ``x - centre`` with the per-pair bound
      ``t = eps64 * (|a|^2 + |b|^2)``. The k-th smallest upper bound ``D + t`` of a row bounds its
      k-th neighbour distance ``U``; every sample whose lower bound ``D - t`` is <= ``U`` is
      re-measured exactly, and the row's first k by (exact distance, index) are the answer. In
      float64 the bounds are ~2^-29 times the float32 ones, so few pairs are re-measured.
    """
    out_i = torch.empty((rows.numel(), k), dtype=torch.int64, device=x.device)
    out_d = torch.zeros((rows.numel(), k), dtype=torch.float64, device=x.device)
    todo = _copies_as_neighbours(x, rows, k, out_i) if look_for_copies else torch.arange(rows.numel(), device=x.device)
    if todo.numel():
        sub = rows[todo]
        out_i[todo], out_d[todo] = _float64_rows(x, sub, k, centre, memory_budget, fused, pool)
    return out_i, out_d


def _copies_as_neighbours(x: torch.Tensor, rows: torch.Tensor, k: int, out_i: torch.Tensor) -> torch.Tensor:
    """Fill ``out_i`` for the rows with >= k other exact copies; return the positions of the others."""
    whole = x + 0.0 if isinstance(x, torch.Tensor) else x.whole()  # rows read from a file: one copy, as here
    _, group, counts = torch.unique(whole, dim=0, return_inverse=True, return_counts=True)
    del whole
    g = group[rows]
    many = counts[g] > k
    if not bool(many.any()):
        return torch.arange(rows.numel(), device=x.device)
    order = torch.sort(group, stable=True).indices           # members of each group, by index
    first = torch.cumsum(counts, 0) - counts                  # each group's start in ``order``
    pos = torch.nonzero(many).flatten()
    members = order[first[g[pos]][:, None] + torch.arange(k + 1, device=x.device)]  # k+1 lowest
    not_self = members != rows[pos][:, None]
    keep = torch.cumsum(not_self.to(torch.int64), dim=1) <= k
    out_i[pos] = members[not_self & keep].view(-1, k)
    return torch.nonzero(~many).flatten()


def _float64_rows(x: torch.Tensor, rows: torch.Tensor, k: int, centre: torch.Tensor,
                  memory_budget: int, fused: bool = False, pool=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_rows` for rows without k exact copies: float64 screen, bounds, exact pairs.

    With ``s = |a|^2 + |b|^2`` and ``D = s - 2 a.b`` (float64, centred), the bounds ``D +- eps64 s``
    are one GEMM each: ``(1 +- eps64) s - 2 a.b``.
    """
    n, dim = x.shape
    dev = x.device
    eps = (72.0 + 2.0 * math.sqrt(dim)) * 2.0**-53
    tiny = (dim + 2) * 2.0**-1000
    block = max(1, min(rows.numel(), 512))
    width = max(64, memory_budget // (8 * dim + 24 * block))
    strips = [slice(start, min(n, start + width)) for start in range(0, n, width)]

    def bound(a, na, cols, sign):
        """Upper (sign +1) or lower (-1) bounds of the distances of rows ``a`` to the strip ``cols``,
        with self (by index) at +inf."""
        b = x[cols].to(torch.float64) - centre
        nb = (b * b).sum(dim=1)
        s = (na[:, None] + nb[None, :]).mul_(1.0 + sign * eps).add_(sign * tiny)
        return torch.addmm(s, a, b.T, alpha=-2.0)

    out_i = torch.empty((rows.numel(), k), dtype=torch.int64, device=dev)
    out_d = torch.empty((rows.numel(), k), dtype=torch.float64, device=dev)
    for lo in range(0, rows.numel(), block):
        r = rows[lo:lo + block]
        a = x[r].to(torch.float64) - centre
        na = (a * a).sum(dim=1)
        upper = torch.full((r.numel(), k), float("inf"), dtype=torch.float64, device=dev)
        for cols in strips:  # U: the k-th smallest upper bound of each row
            ub = bound(a, na, cols, +1)
            mine = torch.nonzero((r >= cols.start) & (r < cols.stop)).flatten()
            ub[mine, r[mine] - cols.start] = float("inf")  # self, by index
            upper = torch.topk(torch.cat([upper, ub], dim=1), k, dim=1, largest=False).values
        limit = upper.max(dim=1).values
        pr, pc = [], []
        for cols in strips:  # every sample whose lower bound is within U
            hit = bound(a, na, cols, -1) <= limit[:, None]
            mine = torch.nonzero((r >= cols.start) & (r < cols.stop)).flatten()
            hit[mine, r[mine] - cols.start] = False
            i, j = hit.nonzero(as_tuple=True)
            pr.append(i)
            pc.append(j + cols.start)
        pr, pc = torch.cat(pr), torch.cat(pc)
        e = exact_sq_dist(x, r[pr], x, pc, fused=fused, pool=pool).to(dev)
        # sort by (row, exact distance, index); each row's first k are its neighbours
        order = torch.argsort(pc, stable=True)
        order = order[torch.argsort(e[order], stable=True)]
        order = order[torch.argsort(pr[order], stable=True)]
        pr, pc, e = pr[order], pc[order], e[order]
        counts = torch.bincount(pr, minlength=r.numel())
        first = torch.cumsum(counts, 0) - counts
        take = first[:, None] + torch.arange(k, device=dev)[None, :]
        out_i[lo:lo + r.numel()] = pc[take]
        out_d[lo:lo + r.numel()] = e[take]
    return out_i, out_d


def _sort_rows(d: torch.Tensor, idx: torch.Tensor):
    """Sort each row by (distance, index): by index first, then stably by distance."""
    idx, order = torch.sort(idx, dim=1)
    d = torch.gather(d, 1, order)
    d, order = torch.sort(d, dim=1, stable=True)
    return d, torch.gather(idx, 1, order)


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
