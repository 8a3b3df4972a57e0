"""The numerical kernels under every metric: the float32 GEMM screen, the exact float64 distances,
the block split, and the fused CPU tiles against the torch route on the same inputs."""
import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.engine import distances, kernels
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.cross import Tile, torch_tile
from hubness_pr.engine.reductions import TABLE as REDUCTIONS
from hubness_pr.engine.reductions import combine
from hubness_pr.engine.distances import blocks, exact_sq_dist, gram_tile, screen_eps, sq_norms, tile_grid


def relu_set(seed, n, dim, shift=0.0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.maximum(rng.standard_normal((n, dim)) + shift, 0).astype(np.float32))


def test_fused_route_is_on_for_large_cpu_runs_and_can_be_switched(monkeypatch):
    monkeypatch.setenv("HUBNESS_KERNELS", "torch")  # the library never reads it (only the command's --route)
    auto = RunContext(device="cpu", route="auto")
    assert auto.fused() and auto.fused(kernels.SMALL_WORK / 4096, 4096)
    assert not auto.fused(kernels.SMALL_WORK / 4096 - 1, 4096)  # small runs never import numba
    # low dimensions: the torch route's per-pair sweeps weigh as a product of SMALL_DIM dimensions
    assert auto.fused(4100 * 4100, 16) and not auto.fused(3000 * 3000, 16)
    assert not RunContext(device="cpu", route="torch").fused()
    cuda = RunContext(device="cpu", route="fused")
    object.__setattr__(cuda, "device", torch.device("cuda"))  # no GPU needed: the decision only
    assert not cuda.fused(1e20, 4096)
    assert RunContext(device="cpu", route="fused").fused(1.0, 2)
    with pytest.raises(ValueError, match="route"):
        RunContext(route="numba")


def test_a_run_context_owns_its_thread_pool():
    with RunContext(device="cpu", threads=3) as ctx:
        pool = ctx.pool
        assert pool is ctx.pool and pool.threads == 3
        assert pool.submit(lambda: 7).result() == 7
    with pytest.raises(RuntimeError):  # shut down at the end of the block
        pool.submit(lambda: 7)
    assert RunContext(device="cpu", threads=1).pool is None  # one thread: no pool


def test_the_private_onednn_op_is_probed_once_and_a_failing_probe_takes_the_public_path(monkeypatch):
    """Where torch's private op is missing or fails its probe, every GEMM takes numpy's BLAS and the
    results still equal the float64 brute force."""
    from tests.oracle import all_metrics

    calls = []

    def failing():
        calls.append(1)
        return False

    monkeypatch.setattr(distances, "onednn_gemm_works", failing)
    import hubness_pr.engine.context
    monkeypatch.setattr(hubness_pr.engine.context, "onednn_gemm_works", failing)

    def broken(*args, **kwargs):
        raise AssertionError("the private oneDNN op was used after its probe failed")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken, raising=False)
    rng = np.random.default_rng(3)
    real = rng.standard_normal((120, 24)).astype(np.float32)
    fake = (rng.standard_normal((100, 24)) + 0.2).astype(np.float32)
    for route in ("fused", "torch"):
        calls.clear()
        with RunContext(device="cpu", route=route, memory_budget=2**20) as ctx:
            ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("pr", "dc"), ctx=ctx)
            assert not ctx.onednn
        assert len(calls) == 1, route  # probed once per context
        want = all_metrics(real, fake, k=3, dc_k=5)
        assert ev.pr.precision == want["precision"] and ev.pr.recall == want["recall"], route
        assert ev.dc.coverage == want["coverage"], route
        assert abs(ev.dc.density - want["density"]) < 1e-12, route


def test_a_small_run_does_not_import_numba():
    import subprocess
    import sys
    code = ("import sys, numpy as np, hubness_pr; x = np.random.default_rng(0).standard_normal((50, 8)).astype('f4');"
            "ev = hubness_pr.evaluate(real=x, fake=x[::-1].copy()); assert ev.diagnostics['route'] == 'torch';"
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "HUBNESS_KERNELS": "auto"})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_load_leaves_one_compiled_specialisation_per_kernel(monkeypatch):
    """load() compiles/loads the kernels for exactly the argument types the passes use (a second
    specialisation would mean a second compile at run time)."""
    kernels.load()
    monkeypatch.setenv("HUBNESS_KERNELS", "fused")
    x = relu_set(5, 40, 16)
    ev = hubness_pr.evaluate(real=x.numpy(), fake=x.numpy()[::-1].copy(), device="cpu", route="fused")
    assert ev.diagnostics["route"] == "fused CPU kernels"
    jit = kernels.jit()
    for fn in (jit._cross_kernel, jit._knn_rows_kernel, jit._knn_cols_kernel, jit._exact_pairs_kernel):
        assert len(fn.signatures) == 1, fn


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("dim", [3, 64, 4096])
def test_gram_tile_error_is_well_inside_the_screening_band(monkeypatch, onednn, dim):
    """Both CPU GEMMs (oneDNN, numpy's BLAS): |float32 screen - exact| <= screen_eps / 4 * (|a|^2+|b|^2)."""
    if onednn and not distances.onednn_gemm_works():
        pytest.fail("torch's oneDNN inner product is missing or inexact in this torch build")
    a, b = relu_set(0, 300, dim), relu_set(1, 200, dim, shift=0.3)
    na, nb = sq_norms(a), sq_norms(b)
    d2 = distances.sq_dist_tile(a, b, na, nb, onednn).double()
    exact = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1)
    scale = na.double()[:, None] + nb.double()[None, :]
    assert bool(((d2 - exact).abs() <= screen_eps(dim) / 4 * scale).all())
    np.testing.assert_allclose(gram_tile(a, b, onednn).double(), a.double() @ b.double().T, rtol=1e-5)


@pytest.mark.parametrize("route", ["fused", "torch"])
def test_exact_sq_dist_is_float64_exact_and_equal_for_equal_pairs(monkeypatch, route):
    x = relu_set(2, 50, 1000)
    x[7] = x[3]  # a duplicate row
    i = torch.tensor([0, 3, 7, 5, 3, 1])
    j = torch.tensor([1, 5, 5, 3, 7, 1])
    got = exact_sq_dist(x, i, x, j, fused=route == "fused")
    want = ((x[i].double() - x[j].double()) ** 2).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    assert got[1] == got[2] == got[3]  # (3,5), (7,5), (5,3): equal pairs, equal bits
    assert got[4] == 0 and got[5] == 0  # duplicate and self


def test_exact_sq_dist_has_the_same_bits_on_both_routes_and_any_batch(monkeypatch):
    """A fixed summation tree: the same float64 bits whatever the route, the batch or the dim."""
    # every branch of the fused kernel's first tree levels: p < 4, two levels with 0-2 padded quarters,
    # three levels (dim a power of two)
    for dim in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 1000, 1024, 1025, 1537, 2048):
        x = relu_set(dim, 40, dim) * 1.7 + 0.3
        i = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(dim))
        j = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(dim + 1))
        with RunContext(device="cpu", threads=2) as ctx:
            fused = exact_sq_dist(x, i, x, j, fused=True, pool=ctx.pool)
        torch_route = exact_sq_dist(x, i, x, j, chunk_bytes=1)  # one small chunk at a time
        assert torch.equal(fused, torch_route)
        single = torch.stack([exact_sq_dist(x, i[t:t + 1], x, j[t:t + 1]) for t in range(5)]).flatten()
        assert torch.equal(single, torch_route[:5])
        # the tree by hand: pad to a power of two, add halves
        sq = ((x[i[0]].double() - x[j[0]].double()) ** 2).tolist()
        sq += [0.0] * ((1 << (dim - 1).bit_length()) - dim)
        while len(sq) > 1:
            h = len(sq) // 2
            sq = [sq[t] + sq[t + h] for t in range(h)]
        assert fused[0].item() == sq[0]


def test_upper_tile_grid_holds_every_pair_once_or_both_orders_in_diagonal_squares():
    n = 23
    seen = np.zeros((n, n), dtype=int)
    for rows, cols in tile_grid(n, n, 5, 7, upper=True):
        assert rows.stop - rows.start <= 5 and cols.stop - cols.start <= 7 and cols.start >= rows.start
        seen[rows, cols] += 1
    assert (seen <= 1).all()
    assert ((seen + seen.T) >= 1).all()  # every unordered pair offered at least once ...
    both = (seen == 1) & (seen.T == 1)
    block = np.zeros(n, dtype=int)
    for b, part in enumerate(blocks(n, 5)):
        block[part] = b
    np.testing.assert_array_equal(both, block[:, None] == block[None, :])  # ... both orders only in-block


def test_blocks_are_balanced_and_cover_the_range():
    for n, side in [(0, 5), (1, 5), (10, 5), (11, 5), (5000, 3557), (301, 16)]:
        parts = list(blocks(n, side))
        assert [p.start for p in parts[1:]] == [p.stop for p in parts[:-1]]
        if n:
            assert parts[0].start == 0 and parts[-1].stop == n
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) <= side and max(sizes) - min(sizes) <= 1
            assert len(parts) == -(-n // side)
        else:
            assert parts == []


def _tile_inputs(seed, with_ties):
    """A real x fake tile with float64 thresholds near the distances it holds (optionally equal to
    some), in frame units of the identity frame."""
    a, b = relu_set(seed, 150, 1024), relu_set(seed + 1, 120, 1024, shift=0.05)
    b[:5] = a[:5]  # fakes on top of reals: distance 0
    # the engine's float64 distance (tested against numpy's above), so that thresholds set equal to a
    # distance tie with it bit for bit
    i, j = torch.meshgrid(torch.arange(150), torch.arange(120), indexing="ij")
    exact = exact_sq_dist(a, i.flatten(), b, j.flatten()).view(150, 120)
    gen = torch.Generator().manual_seed(seed)
    r = torch.quantile(exact, 0.01, dim=1)
    s = torch.quantile(exact, 0.01, dim=0)
    if with_ties:  # balls whose border passes exactly through their nearest other sample: only the
        # exact re-measurement and the <= / < conventions decide these
        r[5:] = exact[5:].amin(dim=1)
        s[5:] = exact[:, 5:].amin(dim=0)
    thr = dict(r_pr=r, r_dc=r * 1.2, r_rt=torch.where(torch.rand(150, generator=gen) < 0.5, r, 0.0),
               r_hub=torch.where(torch.rand(150, generator=gen) < 0.3, r, -1.0), s_pr=s,
               s_hub=torch.where(torch.rand(120, generator=gen) < 0.3, s, -1.0), r_cover=exact.kthvalue(4, dim=1).values,
               s_cover=exact.kthvalue(4, dim=0).values,  # through the 4th nearest of the other set: ties
               r_clip=torch.minimum(r, r.median()),       # clipped radii (ties where r is kept)
               r_ppr=torch.full((150,), float(torch.quantile(exact, 0.02))),  # one R^2 for every row
               s_ppr=torch.full((120,), float(torch.quantile(exact, 0.03))))
    tile = Tile(a=a, b=b, na=sq_norms(a), nb=sq_norms(b), real=a, fake=b, ri=torch.arange(150), cj=torch.arange(120),
                sq_scale=1.0, eps=screen_eps(1024), abs_tol=1e-30)
    return tile, thr, exact


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_ties", [False, True])
def test_fused_cross_tile_equals_the_torch_route(seed, with_ties):
    tile, thr, _ = _tile_inputs(seed, with_ties)
    want = frozenset(REDUCTIONS)
    fused, refined = kernels.cross_tile(gram_tile(tile.a, tile.b), tile, thr, want)
    ref, _ = torch_tile(tile, thr, want)
    assert refined > 0
    assert set(fused) == set(ref) == want
    for key in ("in_real", "in_fake", "in_rhub", "in_fhub", "dens", "covered", "rarity", "cover_fake", "cover_real",
                "clip_dens", "cover_count"):
        np.testing.assert_array_equal(fused[key].numpy(), ref[key].numpy().astype(fused[key].numpy().dtype))
    for key in ("ppr_fake", "ppr_real"):  # float64 sums of exact values: equal to the order of the sums
        np.testing.assert_allclose(fused[key].numpy(), ref[key].numpy(), rtol=1e-13, atol=0)
    np.testing.assert_allclose(fused["realism"][0].numpy(), ref["realism"][0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(fused["realism"][1].numpy(), ref["realism"][1].numpy())
    # a subset of reductions computes only those
    part, _ = kernels.cross_tile(gram_tile(tile.a, tile.b), tile, thr, frozenset({"dens", "covered"}))
    assert set(part) == {"dens", "covered"}
    np.testing.assert_array_equal(part["dens"].numpy(), fused["dens"].numpy())


@pytest.mark.parametrize("route", ["fused", "torch"])
def test_cross_tile_against_exact_float64_decisions(route):
    tile, thr, exact = _tile_inputs(3, with_ties=True)
    want = frozenset(REDUCTIONS)
    if route == "fused":
        out, _ = kernels.cross_tile(gram_tile(tile.a, tile.b), tile, thr, want)
    else:
        out, _ = torch_tile(tile, thr, want)
    r, s, rd = thr["r_pr"][:, None], thr["s_pr"][None, :], thr["r_dc"][:, None]
    np.testing.assert_array_equal(out["in_real"].numpy(), (exact <= r).any(0).numpy())
    np.testing.assert_array_equal(out["in_fake"].numpy(), (exact <= s).any(1).numpy())
    np.testing.assert_array_equal(out["dens"].numpy(), (exact < rd).sum(0).numpy())
    np.testing.assert_array_equal(out["covered"].numpy(), (exact < rd).any(1).numpy())
    np.testing.assert_array_equal(out["in_rhub"].numpy(), (exact <= thr["r_hub"][:, None]).any(0).numpy())
    np.testing.assert_array_equal(out["in_fhub"].numpy(), (exact <= thr["s_hub"][None, :]).any(1).numpy())
    np.testing.assert_array_equal(out["cover_fake"].numpy(), (exact <= thr["s_cover"][None, :]).sum(0).numpy())
    np.testing.assert_array_equal(out["cover_real"].numpy(), (exact <= thr["r_cover"][:, None]).sum(1).numpy())
    assert out["cover_fake"].dtype == out["cover_real"].dtype == torch.int64
    np.testing.assert_array_equal(out["clip_dens"].numpy(), (exact <= thr["r_clip"][:, None]).sum(0).numpy())
    np.testing.assert_array_equal(out["cover_count"].numpy(), (exact < rd).sum(1).numpy())
    for name, t, axis in (("ppr_fake", thr["r_ppr"][:, None], 0), ("ppr_real", thr["s_ppr"][None, :], 1)):
        logs = torch.where(exact < t, 0.5 * torch.log(exact / t), 0.0).sum(axis)  # -inf where d = 0
        np.testing.assert_allclose(out[name].numpy(), logs.numpy(), rtol=1e-13, atol=0)
        assert np.isneginf(out[name].numpy()[:5]).all() and np.isfinite(out[name].numpy()[5:]).all()
    rarity = torch.where(exact < r, r, float("inf")).amin(0)
    np.testing.assert_array_equal(out["rarity"].numpy(), rarity.numpy())
    ratio = torch.nan_to_num(thr["r_rt"][:, None] / exact, nan=0.0, posinf=float("inf"))
    np.testing.assert_array_equal(out["realism"][1].numpy(), ratio.argmax(0).numpy())
    assert np.isinf(out["realism"][0][:5].numpy()).sum() == np.isinf(ratio.amax(0)[:5].numpy()).sum()


def test_combine_rules():
    assert combine("in_real", np.array([True, False]), np.array([False, False])).tolist() == [True, False]
    assert combine("dens", np.array([1, 2]), np.array([3, 0])).tolist() == [4, 2]
    assert combine("rarity", np.array([1.0, np.inf]), np.array([2.0, 5.0])).tolist() == [1.0, 5.0]
    # realism: the larger ratio wins, a tie goes to the lower index; -1: no real gives a positive ratio
    v, i = combine("realism", (np.array([1.0, 2.0, 0.0, 3.0]), np.array([4, 9, -1, 7])),
                   (np.array([1.0, 1.0, 0.0, 3.0]), np.array([2, 1, -1, 8])))
    assert v.tolist() == [1.0, 2.0, 0.0, 3.0] and i.tolist() == [2, 9, -1, 7]


def test_fused_knn_tiles_keep_the_true_candidates():
    """Diagonal and off-diagonal tiles merged into running lists give each row's nearest candidates."""
    x = relu_set(4, 90, 32)
    n, cand = x.shape[0], 6
    norms = sq_norms(x)
    best_d = torch.full((n, cand), float("inf"))
    best_i = torch.full((n, cand), -1, dtype=torch.int64)
    # strips narrower than 1.5 row blocks split some diagonal squares across two tiles
    tiles = tile_grid(n, n, 25, 30, upper=True)
    assert any(cols.start > rows.start and cols.start < rows.stop for rows, cols in tiles)
    for rows, cols in tiles:
        kernels.knn_tile(gram_tile(x[rows], x[cols]), norms[rows], norms[cols], rows.start, cols.start,
                         best_d, best_i)
    exact = ((x.double()[:, None, :] - x.double()[None, :, :]) ** 2).sum(-1)
    exact.fill_diagonal_(float("inf"))
    order = exact.argsort(dim=1)[:, :cand]
    for row in range(n):
        assert set(best_i[row].tolist()) == set(order[row].tolist())
    np.testing.assert_allclose(best_d.sort(dim=1).values.double(), exact.gather(1, order), rtol=1e-4, atol=1e-3)
