"""Each fake's two nearest real samples, exact, from the real x fake tiles of the cross pass.

For every fake ``y_j``: the index and the exact float64 squared distance of its nearest real sample
and of its second nearest (ties by the lowest real index), as a float64 brute force on the float32
vectors gives them. Memorisation metrics read it (:mod:`hubness_pr.metrics.auth`).

A :class:`NearestGrid` rides the cross pass (:func:`hubness_pr.engine.cross.cross_pass`, ``nearest=``):
no product of its own, each tile's float32 screen (the pass's screen frame, :mod:`hubness_pr.engine.frame`)
is read as it goes by. Where no full cross pass runs (auth alone, or eP&R's hub-only pass),
:func:`nearest_two` runs the cross pass's tiles for the grid alone (no reduction); same tiles, same
result bit for bit.

Why a rider and not an entry of :data:`hubness_pr.engine.reductions.TABLE`: every reduction of the
table compares a pair with a threshold known before the pass (a radius) or keeps one value per sample
(realism's argmax, found from screened ratios, then re-measured). An exact arg-top-2 has no threshold
known in advance: which pairs must be re-measured depends on the second smallest distance, which
only the whole row of reals gives. So the grid keeps a running band, in one sweep over the tiles:
for each tile, in the pass's order,

1. each fake's two smallest screened squared distances so far, ``s1 <= s2`` (this tile's included),
   are updated (:func:`hubness_pr.engine.kernels.nearest_top2` on the fused CPU route, torch's topk
   elsewhere);
2. every pair of the tile with a screened distance ``<= s2 + 2 tol`` (the running ``s2``, rounded up
   to float32; ``tol``: the screen's error bound at the largest norms of both sets,
   ``screen_eps(dim) (max |a|^2 + max |b|^2) + abs_tol``) is re-measured exactly
   (:func:`hubness_pr.engine.distances.exact_sq_dist`, through :meth:`hubness_pr.engine.cross.Tile.exact`)
   and merged into the fake's running exact top 2, ordered by (exact distance, index).

Proof: let ``S2`` be a fake's final ``s2``. The two reals with the smallest screened distances have
exact distances ``<= S2 + tol``, so the exact second smallest ``E2 <= S2 + tol``; any real among the
exact top 2 (ties by index included) has exact distance ``<= E2`` and so a screened one
``<= S2 + 2 tol``. The running ``s2`` only decreases, so when that real's tile went by its bound was
at least ``S2 + 2 tol``: it was re-measured. So the result is the brute force's on any finite input
(duplicates: every copy is re-measured), whatever the tiles and their order (which pairs are
re-measured, ``refined``, depends on them; the result does not).

Processes: the cross pass shares its tiles among the ranks (:meth:`hubness_pr.engine.distributed.Group.share`);
the proof holds for each rank's subset of the pairs, so each rank's running top 2 is the exact top 2
of the reals it saw for each fake. :meth:`NearestGrid.result` gathers every rank's (M, 2) lists and
merges them by (exact distance, index): every rank returns the whole result, equal to one process's
bit for bit (exact distances do not depend on the tiles, the route or the rank).
Numerics only: no files, options or environment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hubness_pr.engine import kernels
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.cross import CrossInputs, cross_pass
from hubness_pr.engine.distances import screen_eps
from hubness_pr.engine.frame import SetStats

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


class NearestGrid:
    """Each fake's exact two nearest reals over the real x fake tiles a pass hands it (module docstring).

    The pass (:func:`hubness_pr.engine.cross.cross_pass`, ``nearest=``) calls :meth:`bind` with its screen
    frame and screen norms, then :meth:`add` with each tile (its Gram product on the fused CPU route,
    else its float32 screen); :meth:`result` merges the ranks' lists. ``n_real >= 2`` reals,
    ``n_fake`` fakes; ``device``: the pass's."""

    def __init__(self, n_real: int, n_fake: int, device):
        if n_real < 2:
            raise ValueError(f"the two nearest reals need at least 2 real samples; got {n_real}")
        self.n_real, self.n_fake = n_real, n_fake
        self.best_d = np.full((n_fake, 2), np.inf)
        self.best_i = np.full((n_fake, 2), -1, dtype=np.int64)
        # each fake's two smallest screened distances so far (frame units)
        self.screened = torch.full((2, n_fake), float("inf"), dtype=torch.float32, device=device)
        self.refined = 0
        self.tol = self.sq_scale = None

    def bind(self, frame, real_n: torch.Tensor, fake_n: torch.Tensor, dim: int) -> None:
        """The pass's :class:`hubness_pr.engine.frame.ScreenFrame` and the screen rows' squared norms of
        both whole sets: one band for the whole pass (frame units), the screen's error bound at the
        largest norms."""
        top = float(real_n.max()) + (float(fake_n.max()) if fake_n.numel() else 0.0)
        self.tol = screen_eps(dim) * top + frame.abs_tol(dim)
        self.sq_scale = frame.sq_scale

    def add(self, tile, cols: slice, *, gram: torch.Tensor | None = None, screen: torch.Tensor | None = None,
            pool=None) -> None:
        """One tile (:class:`hubness_pr.engine.cross.Tile`) of fakes ``cols`` (a slice of the fake set): from
        its float32 Gram product ``gram`` (CPU, the fused kernels, in the threads of ``pool``) or its
        float32 screen ``screen`` (torch, any device); neither is changed."""
        col_at = tile.cj
        if gram is not None:
            run = self.screened[:, cols].numpy()  # a view: written in place
            part = kernels.nearest_top2(gram, tile.na, tile.nb, pool)
            run[:] = np.sort(np.concatenate([run, part]), axis=0)[:2]
            bound = kernels.f32_up(run[1].astype(np.float64) + 2.0 * self.tol)
            i, j = (torch.from_numpy(v) for v in kernels.nearest_band(gram, tile.na, tile.nb, bound, pool))
        else:
            d2 = screen
            part = d2.topk(min(2, d2.shape[0]), dim=0, largest=False).values
            self.screened[:, cols] = torch.cat([self.screened[:, cols], part]).topk(2, dim=0, largest=False).values
            # every pair within 2 tol of the running second smallest (float32, rounded up)
            bound = self.screened[1, cols].to(torch.float64) + 2.0 * self.tol
            bound32 = torch.nextafter(bound.to(torch.float32), torch.tensor(float("inf"), device=d2.device))
            i, j = (d2 <= bound32[None, :]).nonzero(as_tuple=True)
        if i.numel() == 0:
            return
        e = (tile.exact(i, j) / self.sq_scale).cpu().numpy()  # original units (sq_scale: a power of 4)
        self.refined += int(i.numel())
        _merge(self.best_d, self.best_i, col_at[j.to(col_at.device)].cpu().numpy(),
               tile.ri[i.to(tile.ri.device)].cpu().numpy(), e)

    def result(self, group) -> NearestReals:
        """The whole result on every rank of ``group``: the ranks' running lists merged by (exact
        distance, index) (each pair lies in one rank's tiles)."""
        dev = self.screened.device
        refined = int(group.combine("sum", torch.tensor([self.refined], device=dev)).item())
        if not group.active:
            return NearestReals(indices=self.best_i, sq_distances=self.best_d, refined=refined)
        ds = np.concatenate([t.cpu().numpy() for t in group.gather_all(torch.as_tensor(self.best_d, device=dev))])
        ids = np.concatenate([t.cpu().numpy() for t in group.gather_all(torch.as_tensor(self.best_i, device=dev))])
        cols = np.broadcast_to(np.arange(self.n_fake)[:, None], (self.n_fake, 2))
        cols = np.tile(cols, (group.world, 1))
        kept = ids >= 0
        best_d = np.full((self.n_fake, 2), np.inf)
        best_i = np.full((self.n_fake, 2), -1, dtype=np.int64)
        _merge(best_d, best_i, cols[kept], ids[kept], ds[kept])
        return NearestReals(indices=best_i, sq_distances=best_d, refined=refined)


def nearest_two(real, fake, ctx: RunContext, *, fused: bool | None = None, real_stats: SetStats | None = None,
                fake_stats: SetStats | None = None, sums=None) -> NearestReals:
    """The exact two nearest reals of each fake (module docstring), by a pass of their own: the cross
    pass's tiles with no reduction, feeding a :class:`NearestGrid` (inside :func:`hubness_pr.evaluate`,
    a full cross pass feeds it instead).

    ``real`` (N, dim), N >= 2, and ``fake`` (M, dim): float32 tensors on ``ctx.device`` (or rows read
    from files, :mod:`hubness_pr.engine.mapped`); ``ctx``: memory budget, processes (sharing the tiles),
    progress bar, threads; ``fused``: the CPU route (None: ``ctx.fused`` for this size); ``sums``: a
    :class:`hubness_pr.engine.kernel_sums.KernelGrid` ("xy") to fill from the same tiles (as the cross
    pass would).
    """
    n_real = real.shape[0]
    n_fake = fake.shape[0]
    grid = NearestGrid(n_real, n_fake, real.device)
    cross_pass(real, fake, CrossInputs(), ctx, real_stats=real_stats, fake_stats=fake_stats, fused=fused,
               sums=sums, nearest=grid)
    return grid.result(ctx.group)


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
