"""Exact kernel sums over the full sets, from the tiles the k-NN passes form anyway: what KID and CMMD
are formed from (unbiased and biased MMD^2, the variance of the unbiased one).

Kernels (:data:`KERNELS`): ``"poly3"``, KID's ``k(x, y) = (x.y / d + 1)^3``; ``"gauss"``, CMMD's
``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` with sigma = 10. Three grids of tiles: real x real and
fake x fake (the upper triangles of the k-NN passes, :func:`hubness_pr.engine.knn.self_tiles`) and
real x fake (the cross pass's, :func:`hubness_pr.engine.cross.cross_tiles`). A :class:`KernelGrid`
rides along a pass that runs anyway: each tile's float32 Gram block of screen rows (the pass's frame,
:mod:`hubness_pr.engine.frame`) gives every pair's kernel value, formed in float64 from that product
(``x.y = g / scale + x.c + y.c - c.c`` for a frame centred at ``c``), and reduced at once into

* ``xx``, ``yy``: the sums over ordered pairs ``i != j`` within each set, ``xy``: over every pair;
* ``xx2``, ``yy2``, ``xy2``: the same sums of the squared kernel values;
* ``xx_rows`` (N), ``yy_rows`` (M): each sample's sum over the other samples of its set;
  ``xy_rows`` (N), ``xy_cols`` (M): each real's sum over the fakes and each fake's over the reals;

all accumulated in float64 (:func:`tile_vectors`). A grid whose pass does not run (FD/KID/CMMD alone,
a stored real k-NN graph, eP&R's hub-only cross pass) gets its own pass over the same tiles
(:func:`grid_pass`), so the sums have the same bits either way. The products are float32 GEMMs, as
every tool of the field computes them: each pair's product errs by about ``sqrt(d) 2^-24 |x||y|``,
which averages out over the N M pairs; against a float64 brute force KID and CMMD agree to about
1e-6 relative on realistic features (docs/definitions.md, "KID"; the tests hold them to it).

Within a set a pair of the upper triangle's off-square tiles stands for both orders (counted twice,
its value added to both samples' row sums); inside a diagonal square both orders are there and the
diagonal is left out. No N x M matrix is built; working memory is the pass's. The real x real grid
depends on the real set alone, so a stored :class:`RealKernelSums` serves every generated set
(``kernel_sums(..., real=...)``, :class:`hubness_pr.engine.real_stats.RealStats`), bit for bit under
the same layout. Under torchrun each rank reduces its share of each pass's tiles and the sums and
vectors are added (``group.combine("sum", ...)``): equal to one process's to float64 rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hubness_pr.engine import kernels as fused_kernels
from hubness_pr.engine.cross import cross_tiles
from hubness_pr.engine.distances import exact_matmul, gram_tile, row_chunks
from hubness_pr.engine.frame import SetStats, choose_frame, screen_rows
from hubness_pr.engine.knn import self_tiles

KERNELS = ("poly3", "gauss")
CMMD_SIGMA = 10.0
_SCALARS = ("xx", "yy", "xy", "xx2", "yy2", "xy2")


@dataclass(frozen=True, eq=False)
class KernelSums:
    """One kernel's sums over two sets of ``n`` and ``m`` samples (see the module docstring)."""

    n: int
    m: int
    xx: float
    yy: float
    xy: float
    xx2: float
    yy2: float
    xy2: float
    xx_rows: np.ndarray
    yy_rows: np.ndarray
    xy_rows: np.ndarray
    xy_cols: np.ndarray

    def unbiased(self) -> float:
        """The unbiased MMD^2 (U-statistic within each set): ``xx / (n (n-1)) + yy / (m (m-1)) - 2 xy / (n m)``."""
        n, m = self.n, self.m
        return self.xx / (n * (n - 1)) + self.yy / (m * (m - 1)) - 2.0 * self.xy / (n * m)

    def biased(self, diagonal: float = 1.0) -> float:
        """The biased (V-statistic) MMD^2, the diagonal ``k(x, x) = diagonal`` included (1 for a Gaussian kernel)."""
        n, m = self.n, self.m
        return (self.xx + n * diagonal) / n**2 + (self.yy + m * diagonal) / m**2 - 2.0 * self.xy / (n * m)

    def variance(self) -> float:
        """An estimate of the variance of the unbiased MMD^2: for ``n == m`` Binkowski et al.'s (ICLR
        2018, MMD-GAN ``compute_scores.py``, ``_mmd2_and_variance``, with ``var_at_m = m``; Sutherland
        et al. 2017, Appendix A); for ``n != m`` :meth:`first_order_variance`. NaN below 3 samples."""
        if min(self.n, self.m) < 3:
            return float("nan")
        if self.n != self.m:
            return self.first_order_variance()
        m, m1, m2 = float(self.n), float(self.n - 1), float(self.n - 2)
        sq = lambda v: float(np.dot(v, v))  # noqa: E731
        dots = float(np.dot(self.xx_rows, self.xy_rows) + np.dot(self.yy_rows, self.xy_cols))
        within, within2, cross = self.xx + self.yy, self.xx**2 + self.yy**2, self.xy
        zeta1 = (1 / (m * m1 * m2) * (sq(self.xx_rows) - self.xx2 + sq(self.yy_rows) - self.yy2)
                 - 1 / (m * m1) ** 2 * within2
                 + 1 / (m * m * m1) * (sq(self.xy_rows) + sq(self.xy_cols) - 2 * self.xy2)
                 - 2 / m**4 * cross**2
                 - 2 / (m * m * m1) * dots
                 + 2 / (m**3 * m1) * within * cross)
        zeta2 = (1 / (m * m1) * (self.xx2 + self.yy2)
                 - 1 / (m * m1) ** 2 * within2
                 + 2 / (m * m) * self.xy2
                 - 2 / m**4 * cross**2
                 - 4 / (m * m * m1) * dots
                 + 4 / (m**3 * m1) * within * cross)
        return 4 * (m - 2) / (m * (m - 1)) * zeta1 + 2 / (m * (m - 1)) * zeta2

    def first_order_variance(self) -> float:
        """The leading term of the variance of the two-sample U-statistic MMD^2 for any sizes:
        ``4 zeta_x / n + 4 zeta_y / m``, ``zeta_x`` the sample variance over the reals of
        ``xx_rows_i / (n-1) - xy_rows_i / m`` (each real's mean kernel value with the other reals minus
        its mean with the fakes; ``zeta_y`` the same for the fakes). From the row sums the pass keeps;
        it leaves out the second-order term, so it underestimates where both sets come from one
        distribution (where the first-order term vanishes: the statistic is degenerate)."""
        zeta_x = _first_order(self.xx_rows, self.xy_rows, self.n, self.m)
        zeta_y = _first_order(self.yy_rows, self.xy_cols, self.m, self.n)
        return 4.0 * zeta_x / self.n + 4.0 * zeta_y / self.m


@dataclass(frozen=True, eq=False)
class RealKernelSums:
    """One kernel's real x real part of :class:`KernelSums`: ``xx``, ``xx2`` and ``xx_rows`` of ``n``
    samples, which depend on the real set alone (:func:`real_kernel_sums`), so that a stored one can
    be given to :func:`kernel_sums` (``real=``) for another generated set."""

    n: int
    xx: float
    xx2: float
    xx_rows: np.ndarray


def _check_kernels(kernels) -> tuple:
    kernels = tuple(kernels)
    unknown = set(kernels) - set(KERNELS)
    if unknown or not kernels:
        raise ValueError(f"kernels must be drawn from {KERNELS}; got {kernels}")
    return kernels


def _first_order(within_rows: np.ndarray, cross_rows: np.ndarray, own: int, other: int) -> float:
    """The sample variance of one set's projections ``mean_j k(a_i, a_j) - mean_b k(a_i, b)``."""
    return float(np.var(within_rows / (own - 1) - cross_rows / other, ddof=1))


def tile_vectors(name: str, g: torch.Tensor, ua: torch.Tensor, ub: torch.Tensor, na: torch.Tensor,
                 nb: torch.Tensor, inv_scale: float, dim: int, diag: int | None, fused: bool, pool=None) -> tuple:
    """One tile's (row sums, column sums, column sums of squares) of kernel ``name``, float64: the
    pair (i, j) of the float32 screen product ``g`` (p, q) has ``x.y = g[i, j] * inv_scale + ua[i] +
    ub[j]`` and ``|x - y|^2 = (na[i] + nb[j] - 2 g[i, j]) * inv_scale`` (at least 0), formed in float64;
    the pairs ``j == i + diag`` (a sample with itself) are left out (None: none). On the fused CPU
    route one sweep of the tile (:func:`hubness_pr.engine.kernels.kernel_tile_sums`), else torch."""
    neg_inv_2s2 = -1.0 / (2.0 * CMMD_SIGMA**2)
    p, q = g.shape
    if fused:
        rows, cols, sq = fused_kernels.kernel_tile_sums(name, g, ua, ub, na, nb, inv_scale, 1.0 / dim, neg_inv_2s2,
                                                        q if diag is None else diag, pool)
        return torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(sq)
    g64 = g.to(torch.float64)
    if name == "poly3":
        k = (g64 * inv_scale + ua[:, None] + ub[None, :]) * (1.0 / dim) + 1.0
        k = k * k * k
    else:
        d2 = ((na.double()[:, None] + nb.double()[None, :] - 2.0 * g64) * inv_scale).clamp_(min=0.0)
        k = torch.exp(d2 * neg_inv_2s2)
    if diag is not None:
        lo = max(0, -diag)
        i = torch.arange(lo, max(lo, min(p, q - diag)), device=k.device)
        k[i, i + diag] = 0.0
    return k.sum(dim=1), k.sum(dim=0), (k * k).sum(dim=0)


class KernelGrid:
    """The kernels' sums over one grid of tiles: ``tag`` "xx" (real x real, upper triangle), "yy"
    (fake x fake, upper triangle) or "xy" (real x fake), of ``n_a`` x ``n_b`` samples.

    The pass that forms the grid's tiles calls :meth:`bind` with its screen frame and original rows,
    then :meth:`add` with each tile's float32 Gram block before it consumes it; :meth:`result` adds
    the ranks' shares. Any pass over the same tiles gives the same bits (:func:`grid_pass`)."""

    def __init__(self, tag: str, kernels, n_a: int, n_b: int, dim: int, device):
        self.tag, self.kernels, self.dim = tag, _check_kernels(kernels), dim
        self.n_a, self.n_b = n_a, n_b
        z = lambda size: torch.zeros(size, dtype=torch.float64, device=device)  # noqa: E731
        self.acc = {k: {"scalars": z(len(_SCALARS)), "rows": z(n_a), "cols": z(n_b)} for k in self.kernels}
        self.ua = self.ub = None
        self.inv_scale = 1.0
        self.bound = False

    def bind(self, frame, a, b=None) -> None:
        """The pass's :class:`hubness_pr.engine.frame.ScreenFrame` and its original rows ``a`` (and
        ``b`` for real x fake; float32 tensors or mapped rows): each sample's offset ``x.c - c.c/2``
        (float64; zero for an uncentred frame) and the frame's scale."""
        self.inv_scale = 1.0 / frame.sq_scale
        self.ua = self._offsets(frame, a, self.n_a)
        self.ub = self.ua if b is None else self._offsets(frame, b, self.n_b)
        self.bound = True

    def _offsets(self, frame, x, n: int) -> torch.Tensor:
        dev = self.acc[self.kernels[0]]["rows"].device
        out = torch.zeros(n, dtype=torch.float64, device=dev)
        if frame.centre is not None:
            c = frame.centre.to(dev)
            half = float(c @ c) / 2.0
            for rows in row_chunks(x):
                out[rows] = torch.as_tensor(x[rows]).to(dev, torch.float64) @ c - half
        return out

    def add(self, rows: slice, cols: slice, g: torch.Tensor, na: torch.Tensor, nb: torch.Tensor,
            fused: bool = False, pool=None) -> None:
        """Reduce the tile of samples ``rows`` x ``cols`` (slices of the grid's sets) whose screen
        product is ``g`` (float32, (len(rows), len(cols))) and screen squared norms ``na``, ``nb``."""
        within = self.tag != "xy"
        diag = rows.start - cols.start if within else None
        for name in self.kernels:
            r, c, c2 = tile_vectors(name, g, self.ua[rows], self.ub[cols], na, nb, self.inv_scale, self.dim, diag,
                                    fused and g.device.type == "cpu", pool)
            acc = self.acc[name]
            dev = acc["rows"].device
            r, c, c2 = r.to(dev), c.to(dev), c2.to(dev)
            s = acc["scalars"]
            if not within:
                s[2] += c.sum()
                s[5] += c2.sum()
                acc["rows"][rows] += r
                acc["cols"][cols] += c
                continue
            # columns inside the row block's square hold both orders of their pairs; beyond it, one
            inside = max(0, min(cols.stop, rows.stop) - cols.start)
            which = 0 if self.tag == "xx" else 1
            s[which] += c[:inside].sum() + 2.0 * c[inside:].sum()
            s[which + 3] += c2[:inside].sum() + 2.0 * c2[inside:].sum()
            acc["rows"][rows] += r
            acc["rows"][cols.start + inside:cols.stop] += c[inside:]

    def result(self, group, split: bool = True) -> dict:
        """``{kernel: {"scalars", "rows", "cols"}}``, the ranks' shares added (``split``)."""
        if not split:
            return self.acc
        return {name: {key: group.combine("sum", v) for key, v in parts.items()} for name, parts in self.acc.items()}


def grid_pass(grid: KernelGrid, a, b, ctx, fused: bool, split: bool = True) -> None:
    """The grid's own pass when no k-NN or cross pass forms its tiles: the same frame
    (:func:`hubness_pr.engine.frame.choose_frame` of the set, or of both sets for real x fake), the
    same tiles, the same products, so the same bits. ``a``, ``b``: float32 tensors or mapped rows
    on ``ctx.device`` (``b`` is ignored within a set); ``split``: this rank's share of the tiles."""
    within = grid.tag != "xy"
    sets = [a] if within else [a, b]
    with exact_matmul(), torch.inference_mode():
        stats = [SetStats.of(x) for x in sets]
        frame = choose_frame(sets, stats)
        screens = [screen_rows(x, st, frame) for x, st in zip(sets, stats)]
        sa, na = screens[0]
        sb, nb = screens[-1]
        grid.bind(frame, a, None if within else b)
        dim = grid.dim
        tiles = (self_tiles(grid.n_a, dim, ctx.memory_budget, fused) if within
                 else cross_tiles(grid.n_a, grid.n_b, dim, ctx.memory_budget, fused))
        mine = ctx.group.share(len(tiles)) if split else range(len(tiles))
        onednn = ctx.onednn if ctx.device.type == "cpu" else False
        pool = ctx.pool if fused else None
        block = (None, None)
        for t in mine:
            rows, cols = tiles[t]
            if block[0] != rows:
                block = (rows, sa[rows])
            grid.add(rows, cols, gram_tile(block[1], sb[cols], onednn), na[rows], nb[cols], fused, pool)


@dataclass(frozen=True, eq=False)
class KernelPlan:
    """The grids a run's kernel sums need (:func:`plan_grids`): ``grids`` tag -> :class:`KernelGrid`
    (the real x real one absent when ``real`` sums were given) for the passes to fill."""

    kernels: tuple
    grids: dict
    real: dict | None


def plan_grids(n: int, m: int, dim: int, kernels, device, real: dict | None = None) -> KernelPlan:
    """The :class:`KernelGrid` of each grid the sums need: all three, or fake x fake and real x fake
    where ``real`` (``{kernel: RealKernelSums}`` of the same real set) is given."""
    kernels = _check_kernels(kernels)
    if real is not None:
        missing = [name for name in kernels if name not in real or real[name].n != n
                   or real[name].xx_rows.shape != (n,)]
        if missing:
            raise ValueError(f"the given real x real kernel sums do not fit {n} real samples for kernels {missing}")
    grids = {"yy": KernelGrid("yy", kernels, m, m, dim, device), "xy": KernelGrid("xy", kernels, n, m, dim, device)}
    if real is None:
        grids["xx"] = KernelGrid("xx", kernels, n, n, dim, device)
    return KernelPlan(kernels=kernels, grids=grids, real=real)


def finish(plan: KernelPlan, x, y, ctx, fused: bool, split: bool = True, real_fused: bool | None = None) -> tuple:
    """Run :func:`grid_pass` for every grid no pass has filled (on the route ``fused``; the real x
    real one on ``real_fused``, default the same), then assemble: ``({kernel: KernelSums},
    {kernel: RealKernelSums})``."""
    sets = {"xx": (x, x), "yy": (y, y), "xy": (x, y)}
    for tag, grid in plan.grids.items():
        if not grid.bound:
            grid_pass(grid, *sets[tag], ctx, fused if tag != "xx" or real_fused is None else real_fused, split)
    acc = {tag: grid.result(ctx.group, split) for tag, grid in plan.grids.items() if tag != "xx"}
    n, m = x.shape[0], y.shape[0]
    real = plan.real
    if real is None:
        real = real_kernel_sums_of(plan.grids["xx"], ctx, split)
    out = {}
    for name in plan.kernels:
        yy, xy, r = acc["yy"][name], acc["xy"][name], real[name]
        s_yy, s_xy = yy["scalars"].cpu().numpy(), xy["scalars"].cpu().numpy()
        out[name] = KernelSums(n=n, m=m, xx=r.xx, yy=float(s_yy[1]), xy=float(s_xy[2]), xx2=r.xx2,
                               yy2=float(s_yy[4]), xy2=float(s_xy[5]), xx_rows=np.asarray(r.xx_rows, dtype=np.float64),
                               yy_rows=yy["rows"].cpu().numpy(), xy_rows=xy["rows"].cpu().numpy(),
                               xy_cols=xy["cols"].cpu().numpy())
    return out, {name: real[name] for name in plan.kernels}


def real_kernel_sums_of(grid: KernelGrid, ctx, split: bool = True) -> dict:
    """``{kernel: RealKernelSums}`` of a filled real x real grid (``"xx"``), the ranks' shares added."""
    acc = grid.result(ctx.group, split)
    out = {}
    for name in grid.kernels:
        s = acc[name]["scalars"].cpu().numpy()
        out[name] = RealKernelSums(n=grid.n_a, xx=float(s[0]), xx2=float(s[3]), xx_rows=acc[name]["rows"].cpu().numpy())
    return out


def real_kernel_sums(x, kernels, ctx, split: bool = True, fused: bool | None = None) -> dict:
    """``{kernel: RealKernelSums}`` of ``x`` (N, dim): the real x real grid alone (upper triangle,
    the real k-NN pass's tiles), its tiles shared among the group's ranks and the sums added
    (``split``). ``fused``: the route (None: the context's for this pass's size, as
    :func:`hubness_pr.engine.real_stats.real_route`)."""
    n, dim = x.shape
    grid = KernelGrid("xx", kernels, n, n, dim, ctx.device)
    fused = ctx.fused(n * n / 2, dim) if fused is None else fused
    grid_pass(grid, x, x, ctx, fused, split)
    return real_kernel_sums_of(grid, ctx, split)


def kernel_sums(x, y, kernels, ctx, split: bool = True, real: dict | None = None, fused: bool | None = None) -> dict:
    """``{kernel: KernelSums}`` of ``x`` (N, dim) against ``y`` (M, dim) for each name of ``kernels``
    (:data:`KERNELS`), each grid by its own pass (:func:`grid_pass`; inside a run the k-NN and cross
    passes fill them instead, with the same bits). ``real``: the real x real sums computed earlier
    for the same ``x`` (:func:`real_kernel_sums`): then no real x real tile is formed. ``x``, ``y``:
    float32 tensors or :class:`hubness_pr.engine.mapped.MappedRows`; ``ctx``: the run context
    (device, memory budget, group); ``split``: share the tiles among the group's ranks (False: this
    process does all); ``fused``: the CPU route (None: the context's for the sets' size)."""
    n, m, dim = x.shape[0], y.shape[0], x.shape[1]
    if real is None:
        real = real_kernel_sums(x, kernels, ctx, split, fused)
    plan = plan_grids(n, m, dim, kernels, ctx.device, real)
    fused = ctx.fused(m * m / 2 + n * m, dim) if fused is None else fused
    return finish(plan, x, y, ctx, fused, split)[0]


def subset_mmd(real, fake, ctx, subsets: int, size: int, seed: int, kernel: str = "poly3") -> np.ndarray:
    """The unbiased MMD^2 of ``subsets`` pairs of random subsets of ``size`` rows, as torch-fidelity's
    ``kid_features_to_metric`` draws them with ``input1 = fake``, ``input2 = real``: one
    ``numpy.random.RandomState(seed)``; per subset ``choice(M, size, replace=False)`` of the fakes, then
    ``choice(N, size, replace=False)`` of the reals. Each subset is a tiled :func:`kernel_sums` pass;
    under torchrun the subsets are shared among the ranks and the values gathered. float64 (S,)."""
    n, m = real.shape[0], fake.shape[0]
    if size < 2 or size > min(n, m):
        raise ValueError(f"kid_subset_size must be in [2, {min(n, m)}] (the smaller set's size); got {size}")
    rng = np.random.RandomState(seed)
    draws = []
    for _ in range(subsets):
        f = rng.choice(m, size, replace=False)
        r = rng.choice(n, size, replace=False)
        draws.append((f, r))
    values = torch.zeros(subsets, dtype=torch.float64)
    for s in ctx.group.share(subsets):
        f, r = draws[s]
        xs, ys = real[torch.as_tensor(r)], fake[torch.as_tensor(f)]
        values[s] = kernel_sums(xs, ys, (kernel,), ctx, split=False)[kernel].unbiased()
    return ctx.group.combine("sum", values).numpy()
