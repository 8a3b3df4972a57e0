"""Each fake's two nearest real samples, exact: a separate tiled pass over real x fake distances.

For every fake ``y_j``: the index and the exact float64 squared distance of its nearest real sample
and of its second nearest (ties by the lowest real index), as a float64 brute force on the float32
vectors gives them. Memorisation metrics read it (:mod:`hubness_pr.metrics.auth`).

Why a pass of its own and not an entry of :data:`hubness_pr.engine.reductions.TABLE`: every reduction
of the table compares a pair with a threshold known before the pass (a radius) or keeps one value per
sample (realism's argmax, found from screened ratios, then re-measured). An exact arg-top-2 has no
threshold known in advance: which pairs must be re-measured depends on the second smallest distance,
which only the whole row of reals gives. So the pass runs in two sweeps over the same tiles:

1. the float32 screen (on the pass's screen frame, :mod:`hubness_pr.engine.frame`) of every tile,
   keeping each fake's two smallest screened squared distances ``s1 <= s2``;
2. the screen again; every pair with a screened distance ``<= s2 + 2 tol`` (``tol``: the screen's
   error bound, the same band as the cross pass's) is re-measured exactly
   (:func:`hubness_pr.engine.distances.exact_sq_dist`, through :meth:`hubness_pr.engine.cross.Tile.exact`)
   and merged into the fake's running exact top 2, ordered by (exact distance, index).

Proof: the two reals with the smallest screened distances have exact distances ``<= s2 + tol``, so the
exact second smallest ``E2 <= s2 + tol``; any real among the exact top 2 (ties by index included) has
exact distance ``<= E2`` and so a screened one ``<= s2 + 2 tol``. Every such pair is re-measured, so
the result is the brute force's on any finite input (duplicates: every copy is re-measured).

Processes: each rank takes a contiguous share of the fakes (:meth:`hubness_pr.engine.distributed.Group.rows`)
and runs both sweeps over every real for them; the shares are gathered, so every rank returns the
whole result, equal to one process's bit for bit (exact distances do not depend on the tiles).
Numerics only: no files, options or environment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from hubness_pr.engine.context import RunContext
from hubness_pr.engine.cross import Tile, _originals, _take
from hubness_pr.engine.distances import (exact_matmul, release_memory, screen_eps, sq_dist_tile, strip_width,
                                         tile_grid, tile_side)
from hubness_pr.engine.frame import SetStats, choose_frame, screen_rows

_NO_INDEX = np.iinfo(np.int64).max  # sorts after every real index


@dataclass(frozen=True)
class NearestReals:
    """The two nearest real samples of every fake, input order.

    Attributes:
        indices: int64 (M, 2): the nearest and the second nearest real index (ties by lowest index).
        sq_distances: float64 (M, 2): their exact squared distances (float64 on the float32 vectors).
        refined: pairs re-measured exactly (all ranks).
    """

    indices: np.ndarray
    sq_distances: np.ndarray
    refined: int = 0


def nearest_two(real, fake, ctx: RunContext, *, fused: bool | None = None, real_stats: SetStats | None = None,
                fake_stats: SetStats | None = None) -> NearestReals:
    """The exact two nearest reals of each fake (module docstring).

    ``real`` (N, dim), N >= 2, and ``fake`` (M, dim): float32 tensors on ``ctx.device`` (or rows read
    from files, :mod:`hubness_pr.engine.mapped`); ``ctx``: memory budget, processes, progress bar,
    threads; ``fused``: the CPU route of the exact distances (None: ``ctx.fused`` for this size).
    """
    n_real, dim = real.shape
    n_fake = fake.shape[0]
    if n_real < 2:
        raise ValueError(f"the two nearest reals need at least 2 real samples; got {n_real}")
    group = ctx.group
    share = group.rows(n_fake)
    n_cols = share.stop - share.start
    real_stats = real_stats or SetStats.of(real)
    fake_stats = fake_stats or SetStats.of(fake)
    frame = choose_frame([real, fake], [real_stats, fake_stats])
    real_s, real_n = screen_rows(real, real_stats, frame)
    fake_s, fake_n = screen_rows(fake, fake_stats, frame)
    dev = real_n.device
    if fused is None:
        fused = ctx.fused(n_real * n_cols * dim)
    pool = ctx.pool if fused else None
    onednn = ctx.onednn if dev.type == "cpu" else False
    side = tile_side(dim, ctx.memory_budget)
    # the screen is torch operations on either route (d2 tile, mask, topk): the torch route's tile sizes
    tiles = tile_grid(n_real, n_cols, side, strip_width(side, dim, ctx.memory_budget, False)) if n_cols else []
    eps, abs_tol = screen_eps(dim), frame.abs_tol(dim)
    # one band for the whole pass (frame units): the screen's error bound at the largest norms
    tol = eps * (float(real_n.max()) + (float(fake_n.max()) if n_fake else 0.0)) + abs_tol
    cols_all = torch.arange(share.start, share.stop, device=dev)
    rows_all = torch.arange(n_real, device=dev)

    def sweep(desc):
        """Each tile's screen (float32, frame units), with its Tile for the exact distances."""
        current = None
        with tqdm(total=len(tiles), desc=desc, unit="tile", leave=False,
                  disable=None if ctx.progress is None else not ctx.progress) as bar:
            for rp, cp in tiles:
                if rp != current:
                    current, ri = rp, rows_all[rp]
                    a, na = _take(real_s, ri, None), real_n[ri]
                    orig_a = _originals(real, ri, a, frame.identity)
                cj = cols_all[cp]
                b = _take(fake_s, cj, None)
                orig_b = _originals(fake, cj, b, frame.identity)
                tile = Tile(a=a, b=b, na=na, nb=fake_n[cj], real=orig_a[0], fake=orig_b[0], ri=ri, cj=cj,
                            sq_scale=frame.sq_scale, eps=eps, abs_tol=abs_tol, fused=fused, pool=pool,
                            onednn=onednn, real_rows=orig_a[1], fake_rows=orig_b[1])
                yield rp, cp, sq_dist_tile(a, b, na, tile.nb, onednn), tile
                bar.update()

    best_d = np.full((n_cols, 2), np.inf)
    best_i = np.full((n_cols, 2), -1, dtype=np.int64)
    refined = 0
    inf = torch.tensor(float("inf"), device=dev)
    with exact_matmul(), torch.inference_mode():
        screened = torch.full((2, n_cols), float("inf"), dtype=torch.float32, device=dev)
        for _, cp, d2, tile in sweep("nearest reals"):
            # each fake's two smallest screened distances so far, this tile's included
            part = d2.topk(min(2, d2.shape[0]), dim=0, largest=False).values
            screened[:, cp] = torch.cat([screened[:, cp], part]).topk(2, dim=0, largest=False).values
            # every pair within 2 tol of the running second smallest (float32, rounded up)
            bound = screened[1, cp].to(torch.float64) + 2.0 * tol
            bound32 = torch.nextafter(bound.to(torch.float32), inf)
            i, j = (d2 <= bound32[None, :]).nonzero(as_tuple=True)
            e = (tile.exact(i, j) / frame.sq_scale).cpu().numpy()  # original units (sq_scale: a power of 4)
            refined += int(i.numel())
            _merge(best_d, best_i, (j + cp.start).cpu().numpy(), tile.ri[i].cpu().numpy(), e)
            del d2, tile
    release_memory()
    refined = int(group.combine("sum", torch.tensor([refined], device=dev)).item())
    d_all = group.gather_rows(torch.as_tensor(best_d, device=dev), n_fake).cpu().numpy()
    i_all = group.gather_rows(torch.as_tensor(best_i, device=dev), n_fake).cpu().numpy()
    return NearestReals(indices=i_all, sq_distances=d_all, refined=refined)


def _merge(best_d: np.ndarray, best_i: np.ndarray, col: np.ndarray, idx: np.ndarray, d: np.ndarray) -> None:
    """Merge candidate pairs (fake ``col``, real ``idx``, exact squared distance ``d``) into each
    fake's running top 2 (``best_d``, ``best_i``; index -1: none yet), ordered by (distance, index).
    A pair is never offered twice (each pair lies in one tile)."""
    if col.size == 0:
        return
    u = np.unique(col)
    cols = np.concatenate([col, np.repeat(u, 2)])
    ids = np.concatenate([idx, best_i[u].ravel()])
    ds = np.concatenate([d, best_d[u].ravel()])
    order = np.lexsort((np.where(ids < 0, _NO_INDEX, ids), ds, cols))
    start = np.searchsorted(cols[order], u)  # every column has at least its 2 running entries
    for t in (0, 1):
        best_d[u, t] = ds[order[start + t]]
        best_i[u, t] = ids[order[start + t]]
