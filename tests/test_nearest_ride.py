"""Each fake's two nearest reals riding the cross pass (hubness_pr.engine.nearest.NearestGrid,
``cross_pass(..., nearest=)``): the same NearestReals, bit for bit (np.array_equal), as the standalone
pass (nearest_two) and as a float64 brute force summed in the engine's fixed order; on both CPU
routes, several memory budgets (one tile to many), random, integer-grid (many exact ties) and
duplicate-laden sets, and two Gloo ranks. The cross reductions and the kernel sums it rides with are
unchanged by it, and evaluate runs no standalone pass when a full cross pass runs."""
import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.engine import hard_cases
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.cross import CrossInputs, cross_pass, cross_tiles
from hubness_pr.engine.distances import as_tensor
from hubness_pr.engine.kernel_sums import KernelGrid
from hubness_pr.engine.nearest import NearestGrid, nearest_two
from hubness_pr.metrics import evaluation
from tests import cases, oracle, ranks

CASES = {
    "random": lambda: cases.random_sets(0, 260, 230, 12),
    "grid": lambda: cases.grid_sets(1, 240, 220, 3),
    "duplicates": lambda: cases.duplicate_sets(2, 200, 180, 6),
}
# 32 KiB: tiles of a few dozen rows (many tiles); 256 KiB: a few; 256 MiB: one
BUDGETS = (32 * 2**10, 256 * 2**10, 256 * 2**20)
WANT = frozenset({"realism", "in_real", "rarity", "dens", "covered", "in_fake"})


def brute_force(real, fake):
    """Each fake's two nearest reals from the full float64 distance matrix, every pair's squares added
    in the engine's fixed binary-tree order (hubness_pr.engine.distances.tree_sum, written again here),
    ties by the lowest real index: (indices (M, 2), squared distances (M, 2))."""
    dim = real.shape[1]
    width = 1 << max(0, (dim - 1).bit_length())
    r64 = real.astype(np.float64)
    d = np.empty((len(fake), len(real)))
    for j in range(len(fake)):
        v = np.zeros((len(real), width))
        v[:, :dim] = (r64 - fake[j].astype(np.float64)) ** 2
        while v.shape[1] > 1:
            h = v.shape[1] // 2
            v = v[:, :h] + v[:, h:]
        d[j] = v[:, 0]
    np.testing.assert_allclose(d, oracle.sq_dists(real, fake).T, rtol=1e-13, atol=0)  # it is the distance
    order = np.lexsort((np.broadcast_to(np.arange(len(real)), d.shape), d), axis=1)[:, :2]
    return order, np.take_along_axis(d, order, axis=1)


def radii(real, fake):
    """Squared radii for the reductions of WANT (the 3-NN radii of each set: ties at the borders on the grid)."""
    r, s = oracle.sq_radii(real, min(3, len(real) - 1)), oracle.sq_radii(fake, min(3, len(fake) - 1))
    return {"r_rt": r, "r_pr": r, "r_dc": r, "s_pr": s}


def riding(real, fake, ctx, fused, want=WANT, kernels=False):
    """(NearestReals from a cross pass with reductions ``want`` (and the kernel sums), its CrossResult,
    the kernel sums)."""
    xr, xf = as_tensor(real, ctx.device), as_tensor(fake, ctx.device)
    grid = NearestGrid(len(real), len(fake), xr.device)
    sums = KernelGrid("xy", ("poly3", "gauss"), len(real), len(fake), real.shape[1], xr.device) if kernels else None
    res = cross_pass(xr, xf, CrossInputs(want=want, sq_radii=radii(real, fake)), ctx, fused=fused, nearest=grid,
                     sums=sums)
    return grid.result(ctx.group), res, None if sums is None else sums.result(ctx.group)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("route", ["fused", "torch"])
def test_the_rider_equals_the_standalone_pass_and_the_brute_force(case, budget, route):
    real, fake = CASES[case]()
    ctx = RunContext(device="cpu", memory_budget=budget, route=route)
    fused = route == "fused"
    if budget == BUDGETS[0]:
        assert len(cross_tiles(len(real), len(fake), real.shape[1], budget, fused)) > 4
    ride, res, _ = riding(real, fake, ctx, fused)
    alone = nearest_two(as_tensor(real, ctx.device), as_tensor(fake, ctx.device), ctx, fused=fused)
    idx, sq = brute_force(real, fake)
    for got in (ride, alone):
        assert got.indices.dtype == np.int64 and got.sq_distances.dtype == np.float64
        assert np.array_equal(got.indices, idx), (case, budget, route)
        assert np.array_equal(got.sq_distances, sq), (case, budget, route)
    assert ride.refined >= len(fake)  # at least each fake's nearest pair is re-measured
    if case == "grid":  # exact ties: many reals within the band
        assert (sq[:, 0] == sq[:, 1]).sum() > 50
    if case == "duplicates":  # copies of reals, one of a real repeated 11 times
        assert (sq[:, 0] == 0).sum() >= 50 and (sq[:, 1] == 0).sum() >= 1


@pytest.mark.parametrize("case", sorted(name for name, (real, _, _) in hard_cases.all_cases().items() if len(real) >= 2))
@pytest.mark.parametrize("route", ["fused", "torch"])
def test_the_inputs_that_break_float32_engines(case, route):
    """Collapsed sets, offsets, extreme scales, one-ulp ties, many duplicates: the screen alone picks
    wrong reals here (the running band is what makes the rider pass: dropping it fails this)."""
    real, fake, _ = hard_cases.all_cases()[case]
    ctx = RunContext(device="cpu", memory_budget=BUDGETS[1], route=route)
    ride = riding(real, fake, ctx, route == "fused")[0]
    idx, sq = brute_force(real, fake)
    assert np.array_equal(ride.indices, idx) and np.array_equal(ride.sq_distances, sq), case


@pytest.mark.parametrize("route", ["fused", "torch"])
def test_the_rider_leaves_the_reductions_and_the_kernel_sums_alone(route):
    """The Gram tile the fused kernels and the kernel sums read, and the screen the torch route reads,
    are those of a pass without the rider: every reduction and sum has the same bits."""
    real, fake = CASES["duplicates"]()
    ctx = RunContext(device="cpu", memory_budget=BUDGETS[1], route=route)
    fused = route == "fused"
    _, with_rider, sums_with = riding(real, fake, ctx, fused, kernels=True)
    xr, xf = as_tensor(real, ctx.device), as_tensor(fake, ctx.device)
    sums = KernelGrid("xy", ("poly3", "gauss"), len(real), len(fake), real.shape[1], xr.device)
    without = cross_pass(xr, xf, CrossInputs(want=WANT, sq_radii=radii(real, fake)), ctx, fused=fused, sums=sums)
    assert with_rider.values.keys() == without.values.keys()
    for name, v in without.values.items():
        assert np.array_equal(with_rider[name], v), name
    assert with_rider.refined == without.refined
    for kernel, parts in sums.result(ctx.group).items():
        for key, v in parts.items():
            assert torch.equal(sums_with[kernel][key], v), (kernel, key)


def test_the_rider_refuses_a_partial_pass():
    real, fake = CASES["random"]()
    xr, xf = as_tensor(real, torch.device("cpu")), as_tensor(fake, torch.device("cpu"))
    grid = NearestGrid(len(real), len(fake), xr.device)
    with pytest.raises(ValueError, match="full real x fake pass"):
        cross_pass(xr, xf, CrossInputs(), RunContext(), real_rows=np.arange(10), nearest=grid)
    with pytest.raises(ValueError, match="at least 2 real samples"):
        NearestGrid(1, 5, xr.device)


def _ranked(group):
    """Each case's nearest reals from the rider and from the standalone pass, on both routes, with
    many tiles shared among the ranks (JSON: floats round-trip exactly)."""
    out = {}
    for name in sorted(CASES):
        real, fake = CASES[name]()
        for route in ("fused", "torch"):
            ctx = RunContext(device="cpu", memory_budget=BUDGETS[0], route=route, group=group)
            ride = riding(real, fake, ctx, route == "fused")[0]
            alone = nearest_two(as_tensor(real, ctx.device), as_tensor(fake, ctx.device), ctx,
                                fused=route == "fused")
            out[f"{name}/{route}"] = [[r.indices.tolist(), r.sq_distances.tolist(), r.refined] for r in (ride, alone)]
    return out


def test_two_gloo_ranks_give_one_process_and_the_brute_force(tmp_path):
    single = ranks.single(_ranked)
    ranked = ranks.on_ranks(_ranked, 2, tmp_path)
    for key, (ride, alone) in single.items():
        idx, sq = brute_force(*CASES[key.split("/")[0]]())
        for got in (ride, alone):
            assert got[0] == idx.tolist() and got[1] == sq.tolist(), key
        for rank, results in enumerate(ranked):
            for one, many in zip((ride, alone), results[key]):
                assert many[:2] == one[:2], (rank, key)  # the refined counts may differ (tiles per rank)


@pytest.mark.parametrize("others", [("pr",), ("pr", "dc"), ("realism", "rarity")])
def test_evaluate_runs_no_pass_of_its_own_beside_a_full_cross_pass(others, kernel_route, monkeypatch):
    real, fake = CASES["duplicates"]()
    alone = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), route=kernel_route, memory_budget=2**20)
    assert "nearest" in alone.timings and "cross" not in alone.timings

    def refuse(*args, **kwargs):
        raise AssertionError("the standalone nearest-reals pass ran")

    monkeypatch.setattr(evaluation, "nearest_two", refuse)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=others + ("auth",), route=kernel_route,
                             memory_budget=2**20)
    assert "nearest" not in ev.timings and "cross" in ev.timings
    assert ev.diagnostics["nearest_refined_pairs"] >= len(fake)
    a, b = ev.auth, alone.auth
    for field in ("nearest_real", "second_real", "nearest_real_distance", "second_real_distance", "ratio_d1_d2",
                  "authentic"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert (a.authpct, a.copy_count, a.ratio_quantiles) == (b.authpct, b.copy_count, b.ratio_quantiles)
    idx, sq = brute_force(real, fake)
    assert np.array_equal(a.nearest_real, idx[:, 0]) and np.array_equal(a.nearest_real_distance, np.sqrt(sq[:, 0]))
    # eP&R's hub-only cross pass does not see every real: the standalone pass runs
    with pytest.raises(AssertionError, match="standalone"):
        hubness_pr.evaluate(real=real, fake=fake, metrics=("epr", "auth"), route=kernel_route)


@pytest.mark.parametrize("others", [(), ("epr",)])
def test_without_a_full_cross_pass_the_kernel_sums_ride_the_nearest_pass(others, kernel_route, monkeypatch):
    """auth with KID and CMMD (and beside eP&R's hub-only pass): the standalone pass carries the real x
    fake kernel sums, so no grid pass of their own runs; the same values as each metric alone."""
    from hubness_pr.engine import kernel_sums

    real, fake = CASES["random"]()
    opts = dict(route=kernel_route, memory_budget=2**20)
    kid = hubness_pr.evaluate(real=real, fake=fake, metrics=("kid", "cmmd"), **opts)
    auth = hubness_pr.evaluate(real=real, fake=fake, metrics=("auth",), **opts)
    tags, grid_pass = [], kernel_sums.grid_pass
    monkeypatch.setattr(kernel_sums, "grid_pass", lambda grid, *a, **kw: (tags.append(grid.tag), grid_pass(grid, *a, **kw)))
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=others + ("kid", "cmmd", "auth"), **opts)
    assert "xy" not in tags and "nearest" in ev.timings
    assert ev.kid == kid.kid and ev.cmmd == kid.cmmd
    assert np.array_equal(ev.auth.nearest_real_distance, auth.auth.nearest_real_distance)
    assert np.array_equal(ev.auth.second_real, auth.auth.second_real)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_the_top_two_and_band_kernels_equal_numpy_on_the_same_screen(case, threads):
    """The fused route's sweeps of one Gram tile (hubness_pr.engine.kernels.nearest_top2, nearest_band):
    each column's two smallest float32 screens (a value twice fills both) and the entries within a
    bound (row-major), equal to numpy on the same float32 screen; bounds that few rows reach (most rows
    skipped) and that many reach."""
    from hubness_pr.engine import kernels
    from hubness_pr.engine.context import ThreadPool

    real, fake = (np.ascontiguousarray(a, dtype=np.float32) for a in CASES[case]())
    g = torch.from_numpy(real @ fake.T)
    na, nb = (torch.from_numpy((a * a).sum(1, dtype=np.float32)) for a in (real, fake))
    screen = (np.float32(-2.0) * g.numpy() + na.numpy()[:, None]) + nb.numpy()[None, :]
    screen = np.maximum(screen, np.float32(0.0))
    with ThreadPool(threads) as pool:  # rows split between its threads (grid and duplicates: >= 64 rows each)
        top = kernels.nearest_top2(g, na, nb, pool if threads > 1 else None)
        assert np.array_equal(top, np.sort(screen, axis=0)[:2])
        for bound in (top[1], np.nextafter(top[0], np.float32(-1)), top[1] + np.float32(0.5) * (top[1] - top[0])):
            i, j = kernels.nearest_band(g, na, nb, bound, pool if threads > 1 else None)
            want_i, want_j = np.nonzero(screen <= bound[None, :])
            assert np.array_equal(i, want_i) and np.array_equal(j, want_j)


def test_the_route_counts_the_nearest_reals_pass_only_where_they_do_not_ride():
    """The pairs that choose the CPU route: the nearest reals add a real x fake pass of their own only
    where no full cross pass runs (auth with hub-only eP&R); riding one, they add none."""
    from hubness_pr.metrics.evaluation import Plan
    from hubness_pr.metrics.registry import Options

    n, m = 300, 200
    plain = Plan.of(("pr",), Options()).pairs(n, m, False)
    riding = Plan.of(("pr", "auth"), Options())
    assert riding.cross and not riding.hub_only and riding.pairs(n, m, False) == plain
    own = Plan.of(("epr", "auth"), Options())
    assert own.hub_only and own.pairs(n, m, False) == Plan.of(("epr",), Options()).pairs(n, m, False) + n * m
