"""One pass over real x fake distance tiles that feeds every cross metric at once.

For each tile (a block of reals x a strip of fakes, :func:`hubness_pr.engine.distances.tile_grid`) the float32
screen is computed once on the pass's screen frame (:mod:`hubness_pr.engine.frame`); the entries within the
screening band of a threshold or of zero are re-measured exactly in float64 and compared in float64
with the exact (float64) thresholds; each reduction asked for reads the same tile: in one fused sweep
on the CPU (:func:`hubness_pr.engine.kernels.cross_tile`), as torch operations elsewhere (:func:`torch_tile`).
What each reduction is (its side, threshold, boundary, how partial results combine) is declared once
in :data:`hubness_pr.engine.reductions.TABLE`; both routes, the merge of tiles and threads and the ranks'
combine read it.

Realism is a value, not a decision: the tiles find each fake's most realistic real (ties by index)
from screened ratios (float64: squared ratios leave float32's range), and the ratio is then recomputed
from that pair's exact distance. It is exact unless two reals give ratios within the screen's error of
each other (then within twice that error).
The pass can be restricted to a subset of rows and columns (eP&R alone: real hubs x fake hubs).

Riders: a full pass hands each tile's float32 Gram product to a
:class:`hubness_pr.engine.kernel_sums.KernelGrid` (``sums=``, KID and CMMD) and each tile's screen to a
:class:`hubness_pr.engine.nearest.NearestGrid` (``nearest=``, each fake's exact two nearest reals),
so neither forms a product of its own. The fused kernels read the Gram tile without changing it, and
the kernel sums read it before anything turns it into distances; on the torch route the screen
formed once is read by the nearest reals first, then by :func:`torch_tile` (neither changes it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from hubness_pr.engine import kernels
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.distances import (exact_matmul, exact_sq_dist, gram_tile, release_memory, screen_eps, sq_dist_from_gram, sq_dist_tile,
                        strip_width, tile_grid, tile_side)
from hubness_pr.engine.frame import SetStats, choose_frame, screen_rows
from hubness_pr.engine.reductions import TABLE, THRESHOLDS, banded, combine, initial, inside, needed




@dataclass
class CrossInputs:
    """What the cross pass computes: the reductions ``want`` (names of
    :data:`hubness_pr.engine.reductions.TABLE`) and the squared radii they read, ``sq_radii``: threshold name
    (:data:`hubness_pr.engine.reductions.THRESHOLDS`) -> float64 (N,) or (M,), exact, original units, indexed
    like the full real/fake sets (-1 or any negative value: a ball holding nothing)."""

    want: frozenset = frozenset()
    sq_radii: dict = field(default_factory=dict)


@dataclass
class CrossResult:
    """Per-sample results of the pass (numpy, full-length; entries outside the subset untouched), by
    reduction name: ``any`` bool, ``sum`` int64, ``min-threshold`` the squared radius in original
    units (inf: no ball), ``ratio`` the exact squared ratio (float64) with ``NAME_index`` (int64, -1:
    none), ``log-ratio`` the float64 sum of ``log(d / R)`` over the pairs inside (-inf: a pair at d = 0)."""

    values: dict = field(default_factory=dict)
    refined: int = 0       # entries re-measured exactly
    tile_side: int = 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


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
    pool: object = None      # the fused kernels' threads (the run's, RunContext.pool)
    onednn: bool = False     # the CPU GEMM: the run's oneDNN probe (RunContext.onednn)
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
        return (exact_sq_dist(self.real, self.real_at[i], self.fake, self.fake_at[j], fused=self.fused,
                              pool=self.pool)
                .to(self.a.device) * self.sq_scale)


def cross_pass(real: torch.Tensor, fake: torch.Tensor, inputs: CrossInputs, ctx: RunContext, *,
               real_stats: SetStats | None = None, fake_stats: SetStats | None = None,
               real_rows: np.ndarray | None = None, fake_cols: np.ndarray | None = None,
               same_set: bool = False, fused: bool | None = None, sums=None, nearest=None) -> CrossResult:
    """Run the tiled real x fake pass: the reductions ``inputs.want`` (:data:`hubness_pr.engine.reductions.TABLE`).

    ``real`` (N, dim) and ``fake`` (M, dim) are float32 tensors on the pass's device (``ctx.device``);
    ``ctx`` gives the memory budget, the processes sharing the tiles (``ctx.group``: their per-sample
    results combine by the table's rules and every rank returns the whole result), the progress bar
    and the fused kernels' threads. ``real_rows`` / ``fake_cols`` (sorted int arrays) restrict the pass
    to those samples. ``same_set``: ``fake`` is ``real`` and each sample's pair with itself is left out
    (a set scored against the other samples of itself); only for full passes. ``fused``: the CPU route
    the run chose (None: ``ctx.fused`` for this pass's size). ``sums``: a
    :class:`hubness_pr.engine.kernel_sums.KernelGrid` ("xy") fed each tile's product (full passes only).
    ``nearest``: a :class:`hubness_pr.engine.nearest.NearestGrid` fed each tile's screen (full passes
    only; its :meth:`~hubness_pr.engine.nearest.NearestGrid.result` gives the whole result after). With
    no reduction wanted (``inputs.want`` empty) the tiles feed the riders only.
    """
    if same_set and (real_rows is not None or fake_cols is not None or real.shape != fake.shape):
        raise ValueError("same_set needs one full set on both sides")
    if sums is not None and (real_rows is not None or fake_cols is not None or same_set):
        raise ValueError("kernel sums need the full real x fake pass")
    if nearest is not None and (real_rows is not None or fake_cols is not None or same_set):
        raise ValueError("the nearest reals need the full real x fake pass")
    want = frozenset(inputs.want)
    unknown = want - set(TABLE)
    if unknown:
        raise ValueError(f"unknown cross reductions: {sorted(unknown)}")
    present = needed(want)
    missing = [key for key in present if inputs.sq_radii.get(key) is None]
    if missing:
        raise ValueError(f"the cross reductions {sorted(want)} need the squared radii {missing}")
    dev = real.device
    n_real, dim = real.shape
    n_fake = fake.shape[0]
    group = ctx.group
    rows_all = _index(real_rows, n_real, dev)
    cols_all = _index(fake_cols, n_fake, dev)
    real_stats = real_stats or SetStats.of(real)
    fake_stats = fake_stats or SetStats.of(fake)
    frame = choose_frame([real, fake], [real_stats, fake_stats])
    real_s, real_n = screen_rows(real, real_stats, frame)
    fake_s, fake_n = screen_rows(fake, fake_stats, frame)
    # original squared radii -> float64 frame units on the device
    thresholds = {key: torch.as_tensor(np.asarray(inputs.sq_radii[key], dtype=np.float64) * frame.sq_scale).to(dev)
                  for key in present}
    row_keys = [key for key in present if THRESHOLDS[key].side == "real"]
    col_keys = [key for key in present if THRESHOLDS[key].side == "fake"]

    # in the table's order: the ranks combine them in the same order (a set's order differs by process)
    totals = {name: initial(name, n_real if TABLE[name].side == "real" else n_fake, dev)
              for name in TABLE if name in want}
    if fused is None:
        fused = ctx.fused(rows_all.numel() * cols_all.numel(), dim)
    pool = ctx.pool if fused else None
    onednn = ctx.onednn if dev.type == "cpu" else False
    memory_budget = ctx.memory_budget
    side = tile_side(dim, memory_budget)
    width = strip_width(side, dim, memory_budget, fused)
    tiles = cross_tiles(rows_all.numel(), cols_all.numel(), dim, memory_budget, fused)
    if sums is not None:
        sums.bind(frame, real, fake)
    if nearest is not None:
        nearest.bind(frame, real_n, fake_n, dim)
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
                 disable=None if ctx.progress is None else not ctx.progress, leave=False) as bar:
        current_rows = None
        for rp, cp in tiles:
            if rp != current_rows:  # a new row block: gather it once for all its column strips
                current_rows, ri = rp, rows_all[rp]
                a, na = _take(real_s, ri, buf_a), real_n[ri]
                orig_a = _originals(real, ri, a, frame.identity)
                row_thr = {key: thresholds[key][ri] for key in row_keys}
            cj = cols_all[cp]
            b = _take(fake_s, cj, buf_b)
            orig_b = _originals(fake, cj, b, frame.identity)
            tile = Tile(a=a, b=b, na=na, nb=fake_n[cj], real=orig_a[0], fake=orig_b[0], ri=ri, cj=cj,
                        sq_scale=frame.sq_scale, eps=eps, abs_tol=abs_tol, same_set=same_set, fused=fused,
                        pool=pool, onednn=onednn, real_rows=orig_a[1], fake_rows=orig_b[1])
            thr = dict(row_thr)
            thr.update({key: thresholds[key][cj] for key in col_keys})
            g = gram_tile(tile.a, tile.b, onednn) if fused or sums is not None else None
            if sums is not None:
                sums.add(rp, cp, g, tile.na, tile.nb, fused, ctx.pool)
            out, count = {}, 0
            if fused:  # the kernels read g and leave it as it is
                if want:
                    out, count = kernels.cross_tile(g, tile, thr, want, pool)
                if nearest is not None:
                    nearest.add(tile, cp, gram=g, pool=pool)
            else:  # the screen, once (in place of g), read by both
                d2 = (sq_dist_tile(tile.a, tile.b, tile.na, tile.nb, onednn) if g is None
                      else sq_dist_from_gram(g, tile.na, tile.nb))
                if nearest is not None:
                    nearest.add(tile, cp, screen=d2)
                if want:
                    out, count = torch_tile(tile, thr, want, screen=d2)
                del d2
            del g
            refined += count
            for name, part in out.items():
                where = ri if TABLE[name].side == "real" else cj
                if TABLE[name].op == "argmax":
                    v, i = combine(name, (totals[name][0][where], totals[name][1][where]), part)
                    totals[name][0][where], totals[name][1][where] = v, i
                else:
                    totals[name][where] = combine(name, totals[name][where], part)
            del tile, out, b, orig_b  # before the next strip is read
            bar.update()

    release_memory()
    for name in totals:  # the ranks' per-sample results, by the rule of each reduction
        totals[name] = group.combine(TABLE[name].op, totals[name])
    refined = int(group.combine("sum", torch.tensor([refined], device=dev)).item())
    res = CrossResult(refined=refined, tile_side=side)
    cols_np = cols_all.cpu().numpy()
    for name, total in totals.items():
        r = TABLE[name]
        if r.compare == "ratio":  # recomputed from the exact distance of the pair found
            index = total[1].cpu().numpy()
            res.values[name + "_index"] = index
            res.values[name] = _exact_ratio(real, fake, np.asarray(inputs.sq_radii[r.threshold], dtype=np.float64),
                                            index, cols_np, fused, pool)
        elif r.compare == "min-threshold":  # a threshold in frame units: back to original ones
            res.values[name] = total.cpu().numpy() / frame.sq_scale
        else:
            res.values[name] = total.cpu().numpy()
    return res


def _exact_ratio(real: torch.Tensor, fake: torch.Tensor, rt_sq: np.ndarray, index: np.ndarray,
                 cols: np.ndarray, fused: bool, pool) -> np.ndarray:
    """rt_i^2 / d^2 of each fake and its argmax real ``index`` from the exact distance (0 where every
    ratio is 0; +inf for a fake on a kept real)."""
    out = np.zeros(fake.shape[0], dtype=np.float64)
    j = cols[index[cols] >= 0]
    if j.size:
        i = index[j]
        d = exact_sq_dist(real, torch.as_tensor(i).to(real.device), fake, torch.as_tensor(j).to(real.device),
                          fused=fused, pool=pool)
        d = d.cpu().numpy()
        rt = rt_sq[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d > 0, rt / np.where(d > 0, d, 1.0), np.where(rt > 0, np.inf, 0.0))
        out[j] = ratio
    return out


def cross_tiles(n_rows: int, n_cols: int, dim: int, memory_budget: int, fused: bool) -> list:
    """The real x fake pass's tiles: row blocks of :func:`hubness_pr.engine.distances.tile_side`, strips
    as wide as the budget allows; the cross reductions and the kernel sums read the same ones."""
    side = tile_side(dim, memory_budget)
    return tile_grid(n_rows, n_cols, side, strip_width(side, dim, memory_budget, fused))


def torch_tile(tile: Tile, thresholds: dict, want, gram: torch.Tensor | None = None,
               screen: torch.Tensor | None = None) -> tuple[dict, int]:
    """The torch route of one tile (any device): the reductions named in ``want``
    (:data:`hubness_pr.engine.reductions.TABLE`), as :func:`hubness_pr.engine.kernels.cross_tile` returns them, and the
    number of pairs re-measured.

    ``thresholds`` maps threshold names (:data:`hubness_pr.engine.reductions.THRESHOLDS`) to float64 tensors of
    the tile's rows or columns in frame units (None: absent). The float32 screen decides every entry
    farther than the band from each banded threshold; the entries within it (or within the band of 0)
    are re-measured and decided in float64. ``gram``: the tile's product if already formed (consumed);
    ``screen``: the tile's screen (:func:`hubness_pr.engine.distances.sq_dist_tile`) if already formed,
    read and left unchanged (but for a ``same_set`` tile's diagonal, set to inf).
    """
    if screen is not None:
        d2 = screen
    else:
        d2 = (sq_dist_tile(tile.a, tile.b, tile.na, tile.nb, tile.onednn) if gram is None
              else sq_dist_from_gram(gram, tile.na, tile.nb))
    if tile.same_set:  # a sample's pair with itself (row i, column i + r0 - c0): beyond every threshold
        d2.diagonal(int(tile.ri[0]) - int(tile.cj[0])).fill_(float("inf"))
    tol = tile.eps * (float(tile.na.max()) + float(tile.nb.max())) + tile.abs_tol
    present = [key for key, v in thresholds.items() if v is not None]

    def shaped(key, v):  # a row threshold as a column vector, a column threshold as a row vector
        return v.view(-1, 1) if THRESHOLDS[key].side == "real" else v.view(1, -1)

    t32 = {key: shaped(key, thresholds[key].to(torch.float32)) for key in present}
    near = d2 <= tol
    for key in banded(present):  # the band, widened by the float32 rounding of the threshold
        near |= (d2 - t32[key]).abs_() <= tol + t32[key].abs() * 2.0**-22
    for key in inside(present):  # a value of the exact distance: every pair inside, and the band
        near |= d2 <= t32[key] + (tol + t32[key].abs() * 2.0**-22)
    i, j = near.nonzero(as_tuple=True)
    del near
    e = tile.exact(i, j)
    last = {}  # the last membership mask (entries sharing one are adjacent in the table)

    def member(key, strict):
        """The tile's membership test against threshold ``key``, exact at the re-measured entries."""
        if last.get("key") == (key, strict):
            return last["mask"]
        last.clear()
        m = d2 < t32[key] if strict else d2 <= t32[key]
        t64 = thresholds[key][i if THRESHOLDS[key].side == "real" else j]
        m[i, j] = e < t64 if strict else e <= t64
        last.update(key=(key, strict), mask=m)
        return m

    out = {}
    for name, r in TABLE.items():
        if name not in want:
            continue
        along = 0 if r.side == "fake" else 1  # reduce over the other side's samples
        if r.compare == "ratio":  # first in the table: its float64 tile (8 bytes an element) meets no mask
            # screened ratios locate each fake's most realistic real; re-measured entries use exact d2.
            # float64, as on the fused route: rt^2 / d^2 can exceed float32's range or fall below it
            rt_all = thresholds[r.threshold]
            ratio = torch.div(rt_all.view(-1, 1), d2)  # float64 / float32 -> float64; x/0 = inf
            ratio.nan_to_num_(nan=0.0, posinf=float("inf"))  # 0/0: a pruned ball at distance 0
            rt = rt_all[i]
            ratio[i, j] = torch.where(e > 0, rt / torch.where(e > 0, e, 1.0), torch.where(rt > 0, float("inf"), 0.0))
            value, arg = ratio.max(dim=0)  # the first (lowest) index among equal maxima
            del ratio
            out[name] = (value, torch.where(value > 0, tile.ri[arg], -1))
        elif r.compare == "min-threshold":  # the smallest row threshold whose ball holds the column
            strict = member(r.threshold, strict=True)
            t = thresholds[r.threshold]
            rank = torch.empty_like(t, dtype=torch.float32)  # exact for < 2^24 reals a tile
            order = torch.argsort(t)
            rank[order] = torch.arange(t.numel(), dtype=torch.float32, device=t.device)
            best = torch.where(strict, rank[:, None], float("inf")).amin(dim=0)
            found = torch.isfinite(best)
            value = torch.full_like(best, float("inf"), dtype=torch.float64)
            value[found] = t[order][best[found].long()]
            out[name] = value
        elif r.compare == "log-ratio":  # every pair with d2 < threshold was re-measured (``inside``)
            t64 = thresholds[r.threshold][i if THRESHOLDS[r.threshold].side == "real" else j]
            sel = e < t64
            at = (j if r.side == "fake" else i)[sel]
            value = torch.zeros(tile.b.shape[0] if r.side == "fake" else tile.a.shape[0], dtype=torch.float64,
                                device=e.device)
            out[name] = value.index_add_(0, at, 0.5 * torch.log(e[sel] / t64[sel]))
        else:
            m = member(r.threshold, strict=r.compare == "<")
            if r.op == "any":
                out[name] = m.any(dim=along)
            else:  # sum: counting as uint8 -> int32 is ~7x faster than summing bools (an int64 copy)
                out[name] = m.view(torch.uint8).sum(dim=along, dtype=torch.int32).to(torch.int64)
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
