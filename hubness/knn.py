"""Exact k-nearest-neighbour structure of one feature set.

One tiled pass over the upper triangle of the set's distance matrix: each off-diagonal tile is
reduced along its rows *and* its columns, so every product is computed once (half the GEMM work of
a full N x N pass). Each row keeps a running list of ``k_max + 4`` float32 candidates; at the end the
candidates whose order or radius the float32 screen cannot decide are re-measured exactly in float64
(:func:`hubness.distances.exact_sq_dist`) and the rows are sorted by (distance, index). Self is excluded by index, so a duplicate of a sample is its neighbour at
distance 0 (DESIGN.md section 2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import kernels
from ._checks import check_int
from .distances import (DEFAULT_MEMORY_BUDGET, exact_matmul, exact_sq_dist, gram_tile, resolve_device, screen_eps,
                        sq_dist_tile, sq_norms, strip_width, tile_grid, tile_side)

_EXTRA_CANDIDATES = 4


@dataclass(frozen=True)
class NeighborGraph:
    """The k nearest neighbours of every sample of one set, self excluded.

    Attributes:
        indices: int64 (n, k_max): neighbour indices, nearest first, ties broken by index.
        sq_distances: float64 (n, k_max): squared distances to those neighbours, exact in the
            columns k-1 for k in ``exact_ks`` (elsewhere within float32 screening error).
        exact_ks: the k whose radii are exact.
    """

    indices: np.ndarray
    sq_distances: np.ndarray
    exact_ks: tuple = ()

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
                      norms: torch.Tensor | None = None, exact_ks=None, desc: str = "k-NN",
                      progress: bool | None = None) -> NeighborGraph:
    """Exact k nearest neighbours of every row of ``features`` within the same set.

    Args:
        features: float32 array or tensor (n, dim); validated by the caller (see ``evaluate``).
        k: number of neighbours kept (>= 1); needs n >= k + 1.
        device: 'auto', 'cpu', 'cuda' or a torch.device. Same code on every device.
        memory_budget: bytes for the distance tiles (sets the tile side).
        norms: precomputed :func:`hubness.distances.sq_norms` of ``features`` (optional).
        exact_ks: the k whose radii must be exact (default: all of 1..k). Other columns of
            ``sq_distances`` may keep float32-screened values; neighbour order is exact regardless
            wherever it decides membership of the first k' for k' in ``exact_ks``.
        progress: tqdm bar on stderr; None shows it only on a terminal.
    """
    k = check_int(k, "k", "nearest_neighbors", 1)
    dev = resolve_device(device)
    x = torch.as_tensor(features).to(dev, torch.float32)
    n, dim = x.shape
    if n < k + 1:
        raise ValueError(f"{n} samples are too few for k={k}: the k-th neighbour needs at least {k + 1}")
    if exact_ks is not None and any(not 1 <= kk <= k for kk in exact_ks):
        raise ValueError(f"exact_ks={tuple(exact_ks)} must lie in [1, k={k}]")
    cand = min(k + _EXTRA_CANDIDATES, n - 1)
    best_d = torch.full((n, cand), float("inf"), dtype=torch.float32, device=dev)
    best_i = torch.full((n, cand), -1, dtype=torch.int64, device=dev)

    def merge(rows: slice, d: torch.Tensor, offset: int) -> None:
        # d: (len(rows), width) distances of these rows to columns offset..offset+width
        kk = min(cand, d.shape[1])
        vals, idx = torch.topk(d, kk, dim=1, largest=False, sorted=False)
        all_d = torch.cat([best_d[rows], vals], dim=1)
        all_i = torch.cat([best_i[rows], idx + offset], dim=1)
        top_d, pos = torch.topk(all_d, cand, dim=1, largest=False, sorted=False)
        best_d[rows] = top_d
        best_i[rows] = torch.gather(all_i, 1, pos)

    fused = kernels.enabled(dev)
    with exact_matmul(), torch.inference_mode():
        norms = sq_norms(x) if norms is None else norms.to(dev)
        side = knn_tile_side(n, dim, memory_budget)
        tiles = tile_grid(n, n, side, strip_width(side, dim, memory_budget, fused), upper=True)
        with tqdm(total=len(tiles), desc=desc, unit="tile", disable=_disable(progress), leave=False) as bar:
            for rows, cols in tiles:
                if fused:
                    kernels.knn_tile(gram_tile(x[rows], x[cols]), norms[rows], norms[cols], rows.start,
                                     cols.start, best_d, best_i)
                else:
                    d2 = sq_dist_tile(x[rows], x[cols], norms[rows], norms[cols])
                    d2.diagonal(rows.start - cols.start).fill_(float("inf"))  # self, by index
                    merge(rows, d2, cols.start)
                    # leading columns inside the row block hold both orders of their pairs: rows only
                    inside = max(0, min(rows.stop, cols.stop) - cols.start)
                    if inside < d2.shape[1]:
                        merge(slice(cols.start + inside, cols.stop), d2[:, inside:].T.contiguous(), rows.start)
                bar.update()
        exact_ks = tuple(sorted(set(exact_ks or range(1, k + 1)) | {k}))
        indices, sq_dist = _refine(x, norms, best_d, best_i, k, exact_ks)
    return NeighborGraph(indices=indices.cpu().numpy(), sq_distances=sq_dist.cpu().numpy(), exact_ks=exact_ks)


def knn_tile_side(n: int, dim: int, memory_budget: int) -> int:
    """Row-block height of the within-set pass: the budget's tile side, but at least 10 blocks where
    GEMMs stay efficient (>= 512 rows), so that the computed part (upper triangle plus whole diagonal
    squares) is at most 55/100 of the square."""
    return min(tile_side(dim, memory_budget), max(512, -(-n // 10)))


def _refine(x: torch.Tensor, norms: torch.Tensor, cand_d: torch.Tensor, cand_i: torch.Tensor, k: int,
            exact_ks: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort the candidates by (distance, index) with exact distances wherever the order or a radius
    depends on them; keep the first k.

    The float32 screen is within ``T_i = screen_eps * (|x_i|^2 + max |x|^2)`` of the truth. In a row
    sorted by screened distance, a run of candidates whose consecutive gaps are all <= 2 T_i can be
    in any true order, while anything outside the run is certainly on its side of it. So the runs
    that hold the positions of ``exact_ks`` are re-measured exactly (float64,
    :func:`exact_sq_dist`) and the row is re-sorted: the distance at position k-1 is then the exact
    k-th neighbour distance for every k in ``exact_ks``, and the first k indices are exact too. Far
    fewer pairs than all candidates need the exact float64 pass (usually one per radius).
    """
    n, cand = cand_i.shape
    dim = x.shape[1]
    d, idx = _sort_rows(cand_d.to(torch.float64), cand_i)
    band = 2.0 * screen_eps(dim) * (norms.to(torch.float64) + norms.max().to(torch.float64))
    linked = (d[:, 1:] - d[:, :-1]) <= band[:, None]  # consecutive candidates that may swap
    run = torch.cat([torch.zeros((n, 1), dtype=torch.int64, device=x.device),
                     torch.cumsum((~linked).to(torch.int64), dim=1)], dim=1)
    need = torch.zeros((n, cand), dtype=torch.bool, device=x.device)
    for kk in exact_ks:
        need |= run == run[:, kk - 1:kk]
    rows, cols = need.nonzero(as_tuple=True)
    d[rows, cols] = exact_sq_dist(x, rows, x, idx[rows, cols])
    d, idx = _sort_rows(d, idx)
    return idx[:, :k].contiguous(), d[:, :k].contiguous()


def _sort_rows(d: torch.Tensor, idx: torch.Tensor):
    """Sort each row by (distance, index): by index first, then stably by distance."""
    idx, order = torch.sort(idx, dim=1)
    d = torch.gather(d, 1, order)
    d, order = torch.sort(d, dim=1, stable=True)
    return d, torch.gather(idx, 1, order)


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
