"""Exact kernel sums over the full sets, tiled: what KID and CMMD are formed from (unbiased and
biased MMD^2, the variance of the unbiased one).

Kernels (:data:`KERNELS`): ``"poly3"``, KID's ``k(x, y) = (x.y / d + 1)^3``; ``"gauss"``, CMMD's
``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` with sigma = 10. One pass over three grids of tiles
(:func:`hubness_pr.engine.distances.tile_grid`): real x real (upper triangle), fake x fake (upper
triangle), real x fake. Each tile's Gram block ``a b^T`` is one GEMM in float64 (:data:`GEMM_DTYPE`:
the float32 product's rounding, amplified by the cancellation in MMD^2, stays above 1e-6 relative;
docs/definitions.md), every kernel asked for is formed from it in float64 and reduced at once into

* ``xx``, ``yy``: the sums over ordered pairs ``i != j`` within each set, ``xy``: over every pair;
* ``xx2``, ``yy2``, ``xy2``: the same sums of the squared kernel values;
* ``xx_rows`` (N), ``yy_rows`` (M): each sample's sum over the other samples of its set;
  ``xy_rows`` (N), ``xy_cols`` (M): each real's sum over the fakes and each fake's over the reals.

Within a set a pair of the upper triangle's off-square tiles stands for both orders (counted twice,
its value added to both samples' row sums); inside a diagonal square both orders are there and the
diagonal is left out. No N x M matrix is built; working memory is the budget. The real x real
grid is its own pass (:func:`real_kernel_sums`, :class:`RealKernelSums`): it depends on the real set
alone, so a stored one serves every generated set (``kernel_sums(..., real=...)``), bit for bit.
Under torchrun each rank reduces a share of each pass's tiles (``group.share``) and the sums and
vectors are added (``group.combine("sum", ...)``): equal to one process's to float64 rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hubness_pr.engine.distances import strip_width, tile_grid, tile_side

KERNELS = ("poly3", "gauss")
CMMD_SIGMA = 10.0
GEMM_DTYPE = torch.float64
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
        """Binkowski et al.'s (ICLR 2018, MMD-GAN ``compute_scores.py``, ``_mmd2_and_variance``)
        estimate of the variance of the unbiased MMD^2 with ``var_at_m = m`` (Sutherland et al. 2017,
        Appendix A); defined for ``n == m`` (NaN otherwise, and below 3 samples)."""
        if self.n != self.m or self.n < 3:
            return float("nan")
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


def _kernel(name: str, g: torch.Tensor, na: torch.Tensor, nb: torch.Tensor, dim: int) -> torch.Tensor:
    if name == "poly3":
        k = g / dim + 1.0
        return k * k * k
    d2 = (na[:, None] + nb[None, :] - 2.0 * g).clamp_(min=0.0)
    return torch.exp(d2 * (-1.0 / (2.0 * CMMD_SIGMA**2)))


def _norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


@dataclass(frozen=True, eq=False)
class RealKernelSums:
    """One kernel's real x real part of :class:`KernelSums`: ``xx``, ``xx2`` and ``xx_rows`` of ``n``
    samples, which depend on the real set alone (:func:`real_kernel_sums`), so that a stored one can
    be given to :func:`kernel_sums` (``real=``) for another generated set."""

    n: int
    xx: float
    xx2: float
    xx_rows: np.ndarray


def kernel_layout(n: int, dim: int, memory_budget: int) -> tuple:
    """(tile side, strip width) of the real x real grid: with the kernels and the group's world,
    what fixes the bits of :func:`real_kernel_sums` (the order in which its tiles are added)."""
    budget = max(2**18, memory_budget // 4)
    side = tile_side(dim, budget)
    return side, strip_width(min(side, n), dim, budget, False)


def _check_kernels(kernels) -> tuple:
    kernels = tuple(kernels)
    unknown = set(kernels) - set(KERNELS)
    if unknown or not kernels:
        raise ValueError(f"kernels must be drawn from {KERNELS}; got {kernels}")
    return kernels


def _pass(sets: dict, lengths: dict, kernels: tuple, ctx, split: bool) -> dict:
    """One tiled pass over the grids of ``sets`` (tag -> (a, b); tags "xx", "yy", "xy"): the
    accumulators of each kernel, combined over the group's ranks when ``split``."""
    x = sets.get("xx", sets.get("xy"))[0]
    dim = x.shape[1]
    dev, group = ctx.device, ctx.group
    # float64 Gram block, a kernel block and temporaries: ~4 float64 per element; budget / 4 at 12 bytes
    budget = max(2**18, ctx.memory_budget // 4)
    side = tile_side(dim, budget)
    grids = []
    for tag in ("xx", "yy", "xy"):
        if tag in sets:
            a_len, b_len = lengths[tag]
            width = strip_width(min(side, a_len), dim, budget, False)
            grids += [(tag, rows, cols) for rows, cols in tile_grid(a_len, b_len, side, width, upper=tag != "xy")]
    mine = group.share(len(grids)) if split else range(len(grids))
    n, m = lengths.get("xx", lengths.get("xy"))[0], lengths.get("yy", (0,))[0]
    z = lambda size: torch.zeros(size, dtype=torch.float64, device=dev)  # noqa: E731
    acc = {k: {"scalars": z(len(_SCALARS)), "xx_rows": z(n), "yy_rows": z(m), "xy_rows": z(n), "xy_cols": z(m)}
           for k in kernels}
    with torch.inference_mode():
        cached = (None, None)
        for t in mine:
            tag, rows, cols = grids[t]
            src_a, src_b = sets[tag]
            if cached[0] != (tag[0], rows):
                a = src_a[rows].to(dev, GEMM_DTYPE)
                cached = ((tag[0], rows), (a, _norms(a.double())))
            a, na = cached[1]
            b = src_b[cols].to(dev, GEMM_DTYPE)
            nb = _norms(b.double())
            g = (a @ b.T).double()
            for name in kernels:
                _reduce(tag, rows, cols, _kernel(name, g, na, nb, dim), acc[name])
    if split:
        acc = {name: {key: group.combine("sum", value) for key, value in parts.items()} for name, parts in acc.items()}
    return acc


def real_kernel_sums(x, kernels, ctx, split: bool = True) -> dict:
    """``{kernel: RealKernelSums}`` of ``x`` (N, dim): the real x real grid alone (upper triangle),
    its tiles shared among the group's ranks and the sums added (``split``)."""
    kernels = _check_kernels(kernels)
    n = x.shape[0]
    acc = _pass({"xx": (x, x)}, {"xx": (n, n)}, kernels, ctx, split)
    out = {}
    for name in kernels:
        s = acc[name]["scalars"].cpu().numpy()
        out[name] = RealKernelSums(n=n, xx=float(s[0]), xx2=float(s[3]), xx_rows=acc[name]["xx_rows"].cpu().numpy())
    return out


def kernel_sums(x, y, kernels, ctx, split: bool = True, real: dict | None = None) -> dict:
    """``{kernel: KernelSums}`` of ``x`` (N, dim) against ``y`` (M, dim) for each name of ``kernels``
    (:data:`KERNELS`): the real x real grid (:func:`real_kernel_sums`, or ``real``, its result
    computed earlier for the same ``x``: then no real x real tile is formed, with the same bits),
    then one tiled pass over the fake x fake and real x fake grids (module docstring). ``x``, ``y``:
    float32 tensors or :class:`hubness_pr.engine.mapped.MappedRows`; ``ctx``: the run context
    (device, memory budget, group); ``split``: share the tiles among the group's ranks (False: this
    process does all)."""
    kernels = _check_kernels(kernels)
    n, m = x.shape[0], y.shape[0]
    if real is None:
        real = real_kernel_sums(x, kernels, ctx, split)
    missing = [name for name in kernels if name not in real or real[name].n != n or real[name].xx_rows.shape != (n,)]
    if missing:
        raise ValueError(f"the given real x real kernel sums do not fit {n} real samples for kernels {missing}")
    acc = _pass({"yy": (y, y), "xy": (x, y)}, {"yy": (m, m), "xy": (n, m)}, kernels, ctx, split)
    out = {}
    for name in kernels:
        parts, r = acc[name], real[name]
        s = parts["scalars"].cpu().numpy()
        out[name] = KernelSums(n=n, m=m, xx=r.xx, yy=float(s[1]), xy=float(s[2]), xx2=r.xx2, yy2=float(s[4]),
                               xy2=float(s[5]), xx_rows=np.asarray(r.xx_rows, dtype=np.float64),
                               **{key: parts[key].cpu().numpy() for key in ("yy_rows", "xy_rows", "xy_cols")})
    return out


def _reduce(tag: str, rows: slice, cols: slice, k: torch.Tensor, acc: dict) -> None:
    s = acc["scalars"]
    if tag == "xy":
        s[2] += k.sum()
        s[5] += (k * k).sum()
        acc["xy_rows"][rows] += k.sum(dim=1)
        acc["xy_cols"][cols] += k.sum(dim=0)
        return
    which, row_sums = (0, acc["xx_rows"]) if tag == "xx" else (1, acc["yy_rows"])
    # columns inside the row block's square (both orders in this block's tiles): the diagonal left out
    inside = max(0, min(cols.stop, rows.stop) - cols.start)
    if inside:
        a = torch.arange(max(0, cols.start - rows.start), min(k.shape[0], cols.start + inside - rows.start),
                         device=k.device)
        k[a, a + rows.start - cols.start] = 0.0
    square, beyond = k[:, :inside], k[:, inside:]
    s[which] += square.sum() + 2.0 * beyond.sum()
    s[which + 3] += (square * square).sum() + 2.0 * (beyond * beyond).sum()
    row_sums[rows] += k.sum(dim=1)
    if beyond.shape[1]:
        row_sums[cols.start + inside:cols.stop] += beyond.sum(dim=0)


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
