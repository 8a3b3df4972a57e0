"""One pass over real x fake distance tiles that feeds every cross metric at once.

For each tile (a block of reals x a strip of fakes, :func:`hubness.distances.tile_grid`) the float32
screen is computed once, the entries within the screening band of a threshold or of zero are
re-measured exactly, and each requested reduction reads the same tile: in one fused sweep on the CPU
(:func:`hubness.kernels.cross_tile`), as torch operations elsewhere (:func:`torch_tile`).

====================  ==========================================  ==========  ===========
quantity              reduction over the tile                      boundary    radii
====================  ==========================================  ==========  ===========
in_real (precision)   any over real i of d2 <= r_i^2                ``<=``      real, k
in_fake (recall)      any over fake j of d2 <= s_j^2                ``<=``      fake, k
density_count         sum over real i of d2 < r_i^2                 ``<``       real, dc_k
nn_fake_sq (coverage) min over fake j of d2                         (``<`` later) real, dc_k
realism_sq            max over real i of rt_i^2 / d2                --          real, k, pruned
rarity_sq             min over real i with d2 < r_i^2 of r_i^2      ``<``       real, k
epr flags             as precision/recall, hub balls and hubs only  ``<=``      as above
====================  ==========================================  ==========  ===========

The pass can be restricted to a subset of rows and columns (eP&R alone: real hubs x fake hubs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import kernels
from .distances import (exact_matmul, gram_tile, refine_tile, screen_eps, sq_dist_tile, strip_width, tile_grid,
                        tile_side)


@dataclass
class CrossInputs:
    """What the cross pass computes; every array is indexed like the full real/fake sets.

    Squared radii are float64 (exact); they are rounded to float32 here, as are the refined
    distances, so equal float64 values compare equal.
    """

    real_sq_radii: np.ndarray | None = None          # (N,) r_i^2 at k: precision, rarity, eP&R
    fake_sq_radii: np.ndarray | None = None          # (M,) s_j^2 at k: recall, eP&R
    precision: bool = False                          # -> in_real
    recall: bool = False                             # -> in_fake
    rarity: bool = False                             # -> rarity_sq
    real_sq_radii_dc: np.ndarray | None = None       # (N,) r_i^2 at dc_k: density, coverage
    real_sq_radii_realism: np.ndarray | None = None  # (N,) rt_i^2 (0 = pruned): realism
    real_hubs: np.ndarray | None = None              # (N,) bool: eP&R precision flags in a full pass
    fake_hubs: np.ndarray | None = None              # (M,) bool: eP&R recall flags in a full pass


@dataclass
class CrossResult:
    """Per-sample reductions of the pass (numpy, full-length; entries outside the subset untouched)."""

    in_real: np.ndarray | None = None        # (M,) bool
    in_fake: np.ndarray | None = None        # (N,) bool
    density_count: np.ndarray | None = None  # (M,) int64
    nn_fake_sq: np.ndarray | None = None     # (N,) float32
    realism_sq: np.ndarray | None = None     # (M,) float32 (inf when a fake sits on a kept real)
    rarity_sq: np.ndarray | None = None      # (M,) float32 (inf when outside every real ball)
    in_real_hub_ball: np.ndarray | None = None  # (M,) bool
    in_fake_hub_ball: np.ndarray | None = None  # (N,) bool
    refined: int = 0       # entries re-measured exactly
    tile_side: int = 0


def cross_pass(real: torch.Tensor, fake: torch.Tensor, real_norms: torch.Tensor, fake_norms: torch.Tensor,
               inputs: CrossInputs, *, memory_budget: int, real_rows: np.ndarray | None = None,
               fake_cols: np.ndarray | None = None, progress: bool | None = None) -> CrossResult:
    """Run the tiled real x fake pass (see the module docstring for what each reduction is).

    ``real_rows`` / ``fake_cols`` (int arrays) restrict the pass to those samples; the default is all.
    """
    dev = real.device
    n_real, dim = real.shape
    n_fake = fake.shape[0]
    rows_all = _index(real_rows, n_real, dev)
    cols_all = _index(fake_cols, n_fake, dev)

    def t(a, dtype=torch.float32):
        return None if a is None else torch.as_tensor(np.asarray(a)).to(dev, dtype)

    r_pr, s_pr = t(inputs.real_sq_radii), t(inputs.fake_sq_radii)
    r_dc, r_rt = t(inputs.real_sq_radii_dc), t(inputs.real_sq_radii_realism)
    # eP&R in a full pass: a ball that is not a hub's contains nothing (threshold -1 < 0 <= d2)
    r_hub = None if inputs.real_hubs is None else torch.where(t(inputs.real_hubs, torch.bool), r_pr, -1.0)
    s_hub = None if inputs.fake_hubs is None else torch.where(t(inputs.fake_hubs, torch.bool), s_pr, -1.0)
    use_r = inputs.precision or inputs.rarity or r_hub is not None
    use_s = inputs.recall or s_hub is not None

    res = CrossResult()
    zeros = lambda n, dtype, fill=0: torch.full((n,), fill, dtype=dtype, device=dev)  # noqa: E731
    in_real = zeros(n_fake, torch.bool) if inputs.precision else None
    in_fake = zeros(n_real, torch.bool) if inputs.recall else None
    dens = zeros(n_fake, torch.int64) if r_dc is not None else None
    nn_fake = zeros(n_real, torch.float32, float("inf")) if r_dc is not None else None
    realism = zeros(n_fake, torch.float32) if r_rt is not None else None
    rarity = zeros(n_fake, torch.float32, float("inf")) if inputs.rarity else None
    in_rhub = zeros(n_fake, torch.bool) if r_hub is not None else None
    in_fhub = zeros(n_real, torch.bool) if s_hub is not None else None

    eps = screen_eps(dim)
    fused = kernels.enabled(dev)
    side = tile_side(dim, memory_budget)
    width = strip_width(side, dim, memory_budget, fused)
    tiles = tile_grid(rows_all.numel(), cols_all.numel(), side, width)
    want = frozenset(key for key, v in (("in_real", in_real), ("in_fake", in_fake), ("dens", dens),
                                         ("nn_fake", nn_fake), ("realism", realism), ("rarity", rarity),
                                         ("in_rhub", in_rhub), ("in_fhub", in_fhub)) if v is not None)
    refined = 0
    # gathered blocks (eP&R's hub subsets) go to two reused buffers: no per-tile allocations
    buf_a = buf_b = None
    if real_rows is not None or fake_cols is not None:
        buf_a = torch.empty((min(side, rows_all.numel()), dim), dtype=real.dtype, device=dev)
        buf_b = torch.empty((min(width, cols_all.numel()), dim), dtype=fake.dtype, device=dev)
    with exact_matmul(), torch.inference_mode(), \
            tqdm(total=len(tiles), desc="real x fake", unit="tile",
                 disable=None if progress is None else not progress, leave=False) as bar:
        current_rows = None
        for rp, cp in tiles:
            if rp != current_rows:  # a new row block: gather it once for all its column strips
                current_rows, ri = rp, rows_all[rp]
                a, na = _take(real, ri, buf_a), real_norms[ri]
                rc = lambda v: None if v is None else v[ri]  # noqa: E731
                row_thr = dict(r_pr=rc(r_pr) if use_r else None, r_dc=rc(r_dc), r_rt=rc(r_rt), r_hub=rc(r_hub))
            cj = cols_all[cp]
            b, nb = _take(fake, cj, buf_b), fake_norms[cj]
            thr = dict(row_thr, s_pr=s_pr[cj] if use_s else None,
                       s_hub=None if s_hub is None else s_hub[cj])
            if fused:
                tile, count = kernels.cross_tile(gram_tile(a, b), a, b, na, nb, eps, thr, want)
            else:
                tile, count = torch_tile(a, b, na, nb, eps, thr, want)
            refined += count
            for key, total in (("in_real", in_real), ("in_rhub", in_rhub)):
                if total is not None:
                    total[cj] |= tile[key]
            for key, total in (("in_fake", in_fake), ("in_fhub", in_fhub)):
                if total is not None:
                    total[ri] |= tile[key]
            if dens is not None:
                dens[cj] += tile["dens"]
                nn_fake[ri] = torch.minimum(nn_fake[ri], tile["nn_fake"])
            if rarity is not None:
                rarity[cj] = torch.minimum(rarity[cj], tile["rarity"])
            if realism is not None:
                realism[cj] = torch.maximum(realism[cj], tile["realism"])
            del tile
            bar.update()

    def out(v):
        return None if v is None else v.cpu().numpy()

    res.in_real, res.in_fake, res.density_count = out(in_real), out(in_fake), out(dens)
    res.nn_fake_sq, res.realism_sq, res.rarity_sq = out(nn_fake), out(realism), out(rarity)
    res.in_real_hub_ball, res.in_fake_hub_ball = out(in_rhub), out(in_fhub)
    res.refined, res.tile_side = refined, side
    return res


def torch_tile(a: torch.Tensor, b: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, eps: float,
               thresholds: dict, want: frozenset) -> tuple[dict, int]:
    """The torch route of one tile (any device): the reductions named in ``want`` of the tile
    ``a`` (rows, real) x ``b`` (columns, fake), as :func:`hubness.kernels.cross_tile` returns them.

    The float32 screen is formed once; the entries within the screening band of a threshold or of
    zero are re-measured exactly; then each reduction reads the tile.
    """
    d2 = sq_dist_tile(a, b, na, nb)
    col = lambda v: None if v is None else v[None, :]  # noqa: E731
    r_pr, r_dc, r_rt, r_hub = (None if v is None else v[:, None]
                               for v in (thresholds[key] for key in ("r_pr", "r_dc", "r_rt", "r_hub")))
    s_pr, s_hub = col(thresholds["s_pr"]), col(thresholds["s_hub"])
    tol = eps * (float(na.max()) + float(nb.max()))
    near = d2 <= tol
    for thr in (r_pr, r_dc, s_pr):
        if thr is not None:
            near |= (d2 >= thr - tol) & (d2 <= thr + tol)  # boolean temporaries only
    refined = refine_tile(d2, near, a, b)
    del near
    out = {}
    if "in_real" in want:
        out["in_real"] = (d2 <= r_pr).any(dim=0)
    if "rarity" in want:
        out["rarity"] = torch.where(d2 < r_pr, r_pr, float("inf")).amin(dim=0)
    if "in_fake" in want:
        out["in_fake"] = (d2 <= s_pr).any(dim=1)
    if "in_rhub" in want:
        out["in_rhub"] = (d2 <= r_hub).any(dim=0)
    if "in_fhub" in want:
        out["in_fhub"] = (d2 <= s_hub).any(dim=1)
    if "dens" in want:
        # counting as uint8 -> int32 is ~7x faster than summing bools (an int64 copy)
        out["dens"] = (d2 < r_dc).view(torch.uint8).sum(dim=0, dtype=torch.int32)
        out["nn_fake"] = d2.amin(dim=1)
    if "realism" in want:
        ratio = torch.div(r_rt, d2)                      # rt^2 / d^2; x/0 = inf
        ratio.nan_to_num_(nan=0.0, posinf=float("inf"))  # 0/0: a pruned ball at distance 0
        out["realism"] = ratio.amax(dim=0)
    return out, refined


def _index(subset, n, dev) -> torch.Tensor:
    if subset is None:
        return torch.arange(n, device=dev)
    return torch.as_tensor(np.asarray(subset, dtype=np.int64)).to(dev)


def _take(x: torch.Tensor, idx: torch.Tensor, buf: torch.Tensor | None) -> torch.Tensor:
    """Rows ``idx`` (sorted) of ``x``: a view when they are contiguous, else gathered into ``buf``."""
    if idx.numel() and int(idx[-1]) - int(idx[0]) + 1 == idx.numel():
        start = int(idx[0])
        return x[start:start + idx.numel()]
    out = buf[: idx.numel()]
    torch.index_select(x, 0, idx, out=out)
    return out
