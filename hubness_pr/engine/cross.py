"""One pass over real x fake distance tiles that feeds every cross metric at once.

For each tile (a block of reals x a strip of fakes, :func:`hubness_pr.engine.distances.tile_grid`) the float32
screen is computed once on the pass's screen frame (:mod:`hubness_pr.engine.frame`); the entries within the
screening band of a threshold or of zero are re-measured exactly in float64 and compared in float64
with the exact (float64) thresholds; each reduction of :data:`REDUCTIONS` reads the same tile: in one
fused sweep on the CPU (:func:`hubness_pr.engine.kernels.cross_tile`), as torch operations elsewhere
(:func:`torch_tile`). Both routes and every merge (threads, tiles) read the same table.

=============  ==========================================  ========  ========  ===================
reduction      over the tile                                boundary  combine   threshold (k)
=============  ==========================================  ========  ========  ===================
in_real        any real i: d2 <= r_i^2  (precision)         ``<=``    any       real radii, k
in_fake        any fake j: d2 <= s_j^2  (recall)            ``<=``    any       fake radii, k
dens           count of real i: d2 < r_i^2  (density)       ``<``     sum       real radii, dc_k
covered        any fake j: d2 < r_i^2  (coverage)           ``<``     any       real radii, dc_k
rarity         min r_i^2 over real i with d2 < r_i^2        ``<``     min       real radii, k
realism        argmax over real i of rt_i^2 / d2            --        argmax    pruned real radii, k
in_rhub        as in_real, hub balls only (eP&R)            ``<=``    any       real radii, k
in_fhub        as in_fake, hub balls only (eP&R)            ``<=``    any       fake radii, k
=============  ==========================================  ========  ========  ===================

Realism is a value, not a decision: the tiles find each fake's most realistic real (ties by index)
from screened ratios (float64: squared ratios leave float32's range), and the ratio is then recomputed
from that pair's exact distance. It is exact unless two reals give ratios within the screen's error of
each other (then within twice that error).
The pass can be restricted to a subset of rows and columns (eP&R alone: real hubs x fake hubs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from hubness_pr.engine import kernels
from hubness_pr.engine.distances import (exact_matmul, exact_sq_dist, gram_tile, release_memory, screen_eps, sq_dist_tile,
                        strip_width, tile_grid, tile_side)
from hubness_pr.engine.distributed import SINGLE, Group
from hubness_pr.engine.frame import SetStats, choose_frame, screen_rows

# name: (side the result is indexed by, how partial results combine)
REDUCTIONS = {
    "in_real": ("fake", "any"), "in_rhub": ("fake", "any"), "rarity": ("fake", "min"), "dens": ("fake", "sum"),
    "realism": ("fake", "argmax"), "in_fake": ("real", "any"), "in_fhub": ("real", "any"),
    "covered": ("real", "any"),
}


def combine(name: str, total, part):
    """Merge the partial result ``part`` of reduction ``name`` into ``total`` (numpy or torch
    arrays; for ``realism`` a pair (ratio, index): larger ratio wins, then the lower index)."""
    op = REDUCTIONS[name][1]
    lib = torch if isinstance(part if op != "argmax" else part[0], torch.Tensor) else np
    if op == "any":
        return lib.logical_or(total, part)
    if op == "sum":
        return total + part
    if op == "min":
        return lib.minimum(total, part)
    (tv, ti), (pv, pi) = total, part
    better = (pv > tv) | ((pv == tv) & (pi >= 0) & ((ti < 0) | (pi < ti)))
    return lib.where(better, pv, tv), lib.where(better, pi, ti)


@dataclass
class CrossInputs:
    """What the cross pass computes. Squared radii are float64, exact, in original units, indexed
    like the full real/fake sets."""

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
    """Per-sample results of the pass (numpy, full-length; entries outside the subset untouched)."""

    in_real: np.ndarray | None = None        # (M,) bool
    in_fake: np.ndarray | None = None        # (N,) bool
    density_count: np.ndarray | None = None  # (M,) int64
    covered: np.ndarray | None = None        # (N,) bool: nearest fake inside the dc ball
    realism_sq: np.ndarray | None = None     # (M,) float64 (inf when a fake sits on a kept real)
    realism_index: np.ndarray | None = None  # (M,) int64: the real giving the realism score (-1: none)
    rarity_sq: np.ndarray | None = None      # (M,) float64 (inf when outside every real ball)
    in_real_hub_ball: np.ndarray | None = None  # (M,) bool
    in_fake_hub_ball: np.ndarray | None = None  # (N,) bool
    refined: int = 0       # entries re-measured exactly
    tile_side: int = 0


@dataclass
class Tile:
    """One real x fake tile: screen rows and norms, and where its samples are in the full sets
    (the exact distances are those of the original rows ``real[real_at]``, ``fake[fake_at]``:
    ``real``/``fake`` are the full sets with ``real_at = ri``, ``fake_at = cj`` (the default), or,
    for sets read from files (:mod:`hubness_pr.engine.mapped`), the tile's own blocks of original rows)."""

    a: torch.Tensor          # (p, dim) float32 screen rows of the reals
    b: torch.Tensor          # (q, dim) float32 screen rows of the fakes
    na: torch.Tensor         # (p,) float32 squared norms of ``a``
    nb: torch.Tensor         # (q,)
    real: torch.Tensor       # (N, dim) original real features (or the tile's p rows of them)
    fake: torch.Tensor       # (M, dim) (or q rows)
    ri: torch.Tensor         # (p,) int64 rows of ``real``, increasing
    cj: torch.Tensor         # (q,) int64 rows of ``fake``
    sq_scale: float          # frame units per original squared unit
    eps: float               # screening band, relative to na + nb
    abs_tol: float           # screening band, absolute
    same_set: bool = False   # real and fake are one set: a sample's pair with itself is skipped
    fused: bool = False      # the route: exact distances from the fused kernels (same bits either way)
    real_rows: torch.Tensor | None = None  # (p,) rows of ``real`` holding the tile's reals (None: ``ri``)
    fake_rows: torch.Tensor | None = None  # (q,) rows of ``fake`` (None: ``cj``)

    @property
    def real_at(self) -> torch.Tensor:
        return self.ri if self.real_rows is None else self.real_rows

    @property
    def fake_at(self) -> torch.Tensor:
        return self.cj if self.fake_rows is None else self.fake_rows

    def exact(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Exact float64 squared distances (frame units) of the tile entries (i, j)."""
        return (exact_sq_dist(self.real, self.real_at[i], self.fake, self.fake_at[j], fused=self.fused)
                .to(self.a.device) * self.sq_scale)


def cross_pass(real: torch.Tensor, fake: torch.Tensor, inputs: CrossInputs, *, memory_budget: int,
               real_stats: SetStats | None = None, fake_stats: SetStats | None = None,
               real_rows: np.ndarray | None = None, fake_cols: np.ndarray | None = None,
               same_set: bool = False, progress: bool | None = None, group: Group = SINGLE,
               fused: bool | None = None) -> CrossResult:
    """Run the tiled real x fake pass (see the module docstring for what each reduction is).

    ``real`` (N, dim) and ``fake`` (M, dim) are float32 tensors on the pass's device;
    ``real_rows`` / ``fake_cols`` (sorted int arrays) restrict the pass to those samples.
    ``same_set``: ``fake`` is ``real`` and each sample's pair with itself is left out (a set scored
    against the other samples of itself); only for full passes. ``group``: the processes sharing the
    tiles (:mod:`hubness_pr.engine.distributed`); their per-sample results combine by the REDUCTIONS rules and
    every rank returns the whole result.
    """
    if same_set and (real_rows is not None or fake_cols is not None or real.shape != fake.shape):
        raise ValueError("same_set needs one full set on both sides")
    dev = real.device
    n_real, dim = real.shape
    n_fake = fake.shape[0]
    rows_all = _index(real_rows, n_real, dev)
    cols_all = _index(fake_cols, n_fake, dev)
    real_stats = real_stats or SetStats.of(real)
    fake_stats = fake_stats or SetStats.of(fake)
    frame = choose_frame([real, fake], [real_stats, fake_stats])
    real_s, real_n = screen_rows(real, real_stats, frame)
    fake_s, fake_n = screen_rows(fake, fake_stats, frame)

    def t(a):  # original squared radii -> float64 frame units on the device
        return None if a is None else torch.as_tensor(np.asarray(a, dtype=np.float64) * frame.sq_scale).to(dev)

    r_pr, s_pr = t(inputs.real_sq_radii), t(inputs.fake_sq_radii)
    r_dc, r_rt = t(inputs.real_sq_radii_dc), t(inputs.real_sq_radii_realism)
    # eP&R in a full pass: a ball that is not a hub's contains nothing (threshold -1 < 0 <= d2)
    r_hub = None if inputs.real_hubs is None else torch.where(torch.as_tensor(inputs.real_hubs).to(dev), r_pr, -1.0)
    s_hub = None if inputs.fake_hubs is None else torch.where(torch.as_tensor(inputs.fake_hubs).to(dev), s_pr, -1.0)
    use_r = inputs.precision or inputs.rarity or r_hub is not None
    use_s = inputs.recall or s_hub is not None
    want = set()
    for name, on in (("in_real", inputs.precision), ("in_fake", inputs.recall), ("rarity", inputs.rarity),
                     ("dens", r_dc is not None), ("covered", r_dc is not None), ("realism", r_rt is not None),
                     ("in_rhub", r_hub is not None), ("in_fhub", s_hub is not None)):
        if on:
            want.add(name)
    want = frozenset(want)
    thresholds = dict(r_pr=r_pr if use_r else None, r_dc=r_dc, r_rt=r_rt, r_hub=r_hub,
                      s_pr=s_pr if use_s else None, s_hub=s_hub)

    # in the table's order: the ranks combine them in the same order (a set's order differs by process)
    totals = {name: _initial(name, n_real if REDUCTIONS[name][0] == "real" else n_fake, dev)
              for name in REDUCTIONS if name in want}
    if fused is None:
        fused = kernels.enabled(dev, rows_all.numel() * cols_all.numel() * dim)
    side = tile_side(dim, memory_budget)
    width = strip_width(side, dim, memory_budget, fused)
    tiles = tile_grid(rows_all.numel(), cols_all.numel(), side, width)
    tiles = [tiles[t] for t in group.share(len(tiles))]
    refined = 0
    eps, abs_tol = screen_eps(dim), frame.abs_tol(dim)
    # gathered blocks (eP&R's hub subsets) go to two reused buffers: no per-tile allocations
    buf_a = buf_b = None
    if real_rows is not None or fake_cols is not None:
        buf_a = torch.empty((min(side, rows_all.numel()), dim), dtype=torch.float32, device=dev)
        buf_b = torch.empty((min(width, cols_all.numel()), dim), dtype=torch.float32, device=dev)
    with exact_matmul(), torch.inference_mode(), \
            tqdm(total=len(tiles), desc="real x fake", unit="tile",
                 disable=None if progress is None else not progress, leave=False) as bar:
        current_rows = None
        for rp, cp in tiles:
            if rp != current_rows:  # a new row block: gather it once for all its column strips
                current_rows, ri = rp, rows_all[rp]
                a, na = _take(real_s, ri, buf_a), real_n[ri]
                orig_a = _originals(real, ri, a, frame.identity)
                row_thr = {key: thresholds[key][ri] for key in ("r_pr", "r_dc", "r_rt", "r_hub")
                           if thresholds[key] is not None}
            cj = cols_all[cp]
            b = _take(fake_s, cj, buf_b)
            orig_b = _originals(fake, cj, b, frame.identity)
            tile = Tile(a=a, b=b, na=na, nb=fake_n[cj], real=orig_a[0], fake=orig_b[0], ri=ri, cj=cj,
                        sq_scale=frame.sq_scale, eps=eps, abs_tol=abs_tol, same_set=same_set, fused=fused,
                        real_rows=orig_a[1], fake_rows=orig_b[1])
            thr = dict(row_thr)
            thr.update({key: thresholds[key][cj] for key in ("s_pr", "s_hub") if thresholds[key] is not None})
            if fused:
                out, count = kernels.cross_tile(gram_tile(tile.a, tile.b), tile, thr, want)
            else:
                out, count = torch_tile(tile, thr, want)
            refined += count
            for name, part in out.items():
                where = ri if REDUCTIONS[name][0] == "real" else cj
                if name == "realism":
                    v, i = combine(name, (totals[name][0][where], totals[name][1][where]), part)
                    totals[name][0][where], totals[name][1][where] = v, i
                else:
                    totals[name][where] = combine(name, totals[name][where], part)
            del tile, out, b, orig_b  # before the next strip is read
            bar.update()

    release_memory()
    for name in totals:  # the ranks' per-sample results, by the rule of each reduction
        totals[name] = group.combine(REDUCTIONS[name][1], totals[name])
    refined = int(group.combine("sum", torch.tensor([refined], device=dev)).item())
    res = CrossResult(refined=refined, tile_side=side)

    def out(name):
        return totals[name].cpu().numpy() if name in totals else None

    res.in_real, res.in_fake, res.density_count, res.covered = out("in_real"), out("in_fake"), out("dens"), out("covered")
    res.in_real_hub_ball, res.in_fake_hub_ball = out("in_rhub"), out("in_fhub")
    if "rarity" in totals:
        res.rarity_sq = totals["rarity"].cpu().numpy() / frame.sq_scale
    if "realism" in totals:
        res.realism_index = totals["realism"][1].cpu().numpy()
        res.realism_sq = _exact_realism(real, fake, np.asarray(inputs.real_sq_radii_realism, dtype=np.float64),
                                        res.realism_index, cols_all.cpu().numpy(), fused)
    return res


def _initial(name: str, n: int, dev) -> torch.Tensor | tuple:
    op = REDUCTIONS[name][1]
    if op == "any":
        return torch.zeros(n, dtype=torch.bool, device=dev)
    if op == "sum":
        return torch.zeros(n, dtype=torch.int64, device=dev)
    if op == "min":
        return torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
    return (torch.zeros(n, dtype=torch.float64, device=dev), torch.full((n,), -1, dtype=torch.int64, device=dev))


def _exact_realism(real: torch.Tensor, fake: torch.Tensor, rt_sq: np.ndarray, index: np.ndarray,
                   cols: np.ndarray, fused: bool) -> np.ndarray:
    """rt_i^2 / d^2 of each fake and its most realistic real ``index`` from the exact distance (0 where
    every ratio is 0; +inf for a fake on a kept real)."""
    out = np.zeros(fake.shape[0], dtype=np.float64)
    j = cols[index[cols] >= 0]
    if j.size:
        i = index[j]
        d = exact_sq_dist(real, torch.as_tensor(i).to(real.device), fake, torch.as_tensor(j).to(real.device),
                          fused=fused)
        d = d.cpu().numpy()
        rt = rt_sq[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d > 0, rt / np.where(d > 0, d, 1.0), np.where(rt > 0, np.inf, 0.0))
        out[j] = ratio
    return out


def torch_tile(tile: Tile, thresholds: dict, want: frozenset) -> tuple[dict, int]:
    """The torch route of one tile (any device): the reductions named in ``want``, as
    :func:`hubness_pr.engine.kernels.cross_tile` returns them, and the number of pairs re-measured.

    ``thresholds`` maps ``r_pr, r_dc, r_rt, r_hub`` (the tile's rows) and ``s_pr, s_hub`` (its
    columns) to float64 tensors in frame units. The float32 screen decides every entry farther than
    the band from each threshold; the entries within it (or within the band of 0) are re-measured
    and decided in float64.
    """
    d2 = sq_dist_tile(tile.a, tile.b, tile.na, tile.nb)
    if tile.same_set:  # a sample's pair with itself (row i, column i + r0 - c0): beyond every threshold
        d2.diagonal(int(tile.ri[0]) - int(tile.cj[0])).fill_(float("inf"))
    tol = tile.eps * (float(tile.na.max()) + float(tile.nb.max())) + tile.abs_tol
    shape = {"r_pr": (-1, 1), "r_dc": (-1, 1), "r_rt": (-1, 1), "r_hub": (-1, 1), "s_pr": (1, -1), "s_hub": (1, -1)}
    t32 = {key: v.to(torch.float32).view(shape[key]) for key, v in thresholds.items() if v is not None}
    near = d2 <= tol
    for key in ("r_pr", "r_dc", "s_pr"):
        if key in t32:  # the band, widened by the float32 rounding of the threshold
            near |= (d2 - t32[key]).abs_() <= tol + t32[key].abs() * 2.0**-22
    i, j = near.nonzero(as_tuple=True)
    del near
    e = tile.exact(i, j)

    def inside(key, strict):
        """The tile's membership test against threshold ``key``, exact at the re-measured entries."""
        m = d2 < t32[key] if strict else d2 <= t32[key]
        t64 = thresholds[key][i if shape[key][0] == -1 else j]
        m[i, j] = e < t64 if strict else e <= t64
        return m

    out = {}
    if "realism" in want:  # first: its float64 ratio tile (8 bytes an element) meets no mask of the others
        # screened ratios locate each fake's most realistic real; re-measured entries use exact d2.
        # float64, as on the fused route: rt^2 / d^2 can exceed float32's range or fall below it
        ratio = torch.div(thresholds["r_rt"].view(-1, 1), d2)  # float64 / float32 -> float64; x/0 = inf
        ratio.nan_to_num_(nan=0.0, posinf=float("inf"))        # 0/0: a pruned ball at distance 0
        rt = thresholds["r_rt"][i]
        ratio[i, j] = torch.where(e > 0, rt / torch.where(e > 0, e, 1.0), torch.where(rt > 0, float("inf"), 0.0))
        value, arg = ratio.max(dim=0)  # the first (lowest) index among equal maxima
        del ratio
        out["realism"] = (value, torch.where(value > 0, tile.ri[arg], -1))
    if "in_real" in want or "rarity" in want:
        m = inside("r_pr", strict=False)
        if "in_real" in want:
            out["in_real"] = m.any(dim=0)
        if "rarity" in want:
            strict = inside("r_pr", strict=True)
            r = thresholds["r_pr"]
            rank = torch.empty_like(r, dtype=torch.float32)  # exact for < 2^24 reals a tile
            order = torch.argsort(r)
            rank[order] = torch.arange(r.numel(), dtype=torch.float32, device=r.device)
            best = torch.where(strict, rank[:, None], float("inf")).amin(dim=0)
            found = torch.isfinite(best)
            value = torch.full_like(best, float("inf"), dtype=torch.float64)
            value[found] = r[order][best[found].long()]
            out["rarity"] = value
    if "in_fake" in want:
        out["in_fake"] = inside("s_pr", strict=False).any(dim=1)
    if "in_rhub" in want:
        out["in_rhub"] = inside("r_hub", strict=False).any(dim=0)
    if "in_fhub" in want:
        out["in_fhub"] = inside("s_hub", strict=False).any(dim=1)
    if "dens" in want:
        m = inside("r_dc", strict=True)
        # counting as uint8 -> int32 is ~7x faster than summing bools (an int64 copy)
        out["dens"] = m.view(torch.uint8).sum(dim=0, dtype=torch.int32).to(torch.int64)
        out["covered"] = m.any(dim=1)
    return out, int(i.numel())


def _originals(x, idx: torch.Tensor, block: torch.Tensor, identity: bool) -> tuple:
    """(array, positions) holding the original rows ``x[idx]`` of a tile: ``(x, None)`` for a tensor
    (positions: the indices themselves); for rows read from a file (:mod:`hubness_pr.engine.mapped`), the
    tile's block itself in the identity frame, else the block read once more untransformed."""
    if isinstance(x, torch.Tensor):
        return x, None
    return (block if identity else _take(x, idx, None)), torch.arange(idx.numel(), device=idx.device)


def _index(subset, n, dev) -> torch.Tensor:
    if subset is None:
        return torch.arange(n, device=dev)
    return torch.as_tensor(np.asarray(subset, dtype=np.int64)).to(dev)


def _take(x, idx: torch.Tensor, buf: torch.Tensor | None) -> torch.Tensor:
    """Rows ``idx`` (sorted) of ``x`` (a tensor or :class:`hubness_pr.engine.frame.ScreenRows`): a slice when
    they are contiguous, else gathered (into ``buf`` for a tensor)."""
    if idx.numel() and int(idx[-1]) - int(idx[0]) + 1 == idx.numel():
        start = int(idx[0])
        return x[start:start + idx.numel()]
    if not isinstance(x, torch.Tensor):
        return x[idx]
    out = buf[: idx.numel()]
    torch.index_select(x, 0, idx, out=out)
    return out
