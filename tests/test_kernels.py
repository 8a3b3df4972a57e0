"""The numerical kernels under every metric: the float32 GEMM screen, the exact float64 distances,
the block split, and the fused CPU tiles against the torch route on the same inputs."""
import numpy as np
import pytest
import torch

import hubness
from hubness import distances, kernels
from hubness.cross import torch_tile
from hubness.distances import blocks, exact_sq_dist, gram_tile, screen_eps, sq_norms, tile_grid


def relu_set(seed, n, dim, shift=0.0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.maximum(rng.standard_normal((n, dim)) + shift, 0).astype(np.float32))


def test_fused_route_is_on_for_the_cpu_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("HUBNESS_KERNELS", raising=False)
    assert kernels.enabled(torch.device("cpu"))
    assert not kernels.enabled(torch.device("cuda"))
    monkeypatch.setenv("HUBNESS_KERNELS", "torch")
    assert not kernels.enabled(torch.device("cpu"))


def test_load_leaves_one_compiled_specialisation_per_kernel():
    """load() compiles/loads the kernels for exactly the argument types the passes use (a second
    specialisation would mean a second compile at run time)."""
    assert kernels.load() >= 0.0
    x = relu_set(5, 40, 16)
    hubness.evaluate(real=x.numpy(), fake=x.numpy()[::-1].copy(), device="cpu")
    for fn in (kernels._cross_kernel, kernels._knn_rows_kernel, kernels._knn_cols_kernel,
               kernels._exact_pairs_kernel):
        assert len(fn.signatures) == 1, fn


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("dim", [3, 64, 4096])
def test_gram_tile_error_is_well_inside_the_screening_band(monkeypatch, onednn, dim):
    """Both CPU GEMMs (oneDNN, numpy's BLAS): |float32 screen - exact| <= screen_eps / 4 * (|a|^2+|b|^2)."""
    if onednn and not distances._onednn_gemm():
        pytest.fail("torch's oneDNN inner product is missing or inexact in this torch build")
    monkeypatch.setattr(distances, "_ONEDNN", onednn)
    a, b = relu_set(0, 300, dim), relu_set(1, 200, dim, shift=0.3)
    na, nb = sq_norms(a), sq_norms(b)
    d2 = distances.sq_dist_tile(a, b, na, nb).double()
    exact = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1)
    scale = na.double()[:, None] + nb.double()[None, :]
    assert bool(((d2 - exact).abs() <= screen_eps(dim) / 4 * scale).all())
    np.testing.assert_allclose(gram_tile(a, b).double(), a.double() @ b.double().T, rtol=1e-5)


@pytest.mark.parametrize("route", ["fused", "torch"])
def test_exact_sq_dist_is_float64_exact_and_equal_for_equal_pairs(monkeypatch, route):
    monkeypatch.setenv("HUBNESS_KERNELS", "auto" if route == "fused" else "torch")
    x = relu_set(2, 50, 1000)
    x[7] = x[3]  # a duplicate row
    i = torch.tensor([0, 3, 7, 5, 3, 1])
    j = torch.tensor([1, 5, 5, 3, 7, 1])
    got = exact_sq_dist(x, i, x, j)
    want = ((x[i].double() - x[j].double()) ** 2).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    assert got[1] == got[2] == got[3]  # (3,5), (7,5), (5,3): equal pairs, equal bits
    assert got[4] == 0 and got[5] == 0  # duplicate and self


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
    """A real x fake tile with thresholds near the distances it holds (and, optionally, equal to some)."""
    a, b = relu_set(seed, 150, 1024), relu_set(seed + 1, 120, 1024, shift=0.05)
    b[:5] = a[:5]  # fakes on top of reals: distance 0
    na, nb = sq_norms(a), sq_norms(b)
    exact = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1)
    gen = torch.Generator().manual_seed(seed)
    r = torch.quantile(exact, 0.01, dim=1).float()
    s = torch.quantile(exact, 0.01, dim=0).float()
    if with_ties:  # balls whose border passes exactly through their nearest other sample: only the
        # exact re-measurement and the <= / < conventions decide these
        r[5:] = exact[5:].amin(dim=1).float()
        s[5:] = exact[:, 5:].amin(dim=0).float()
    thr = dict(r_pr=r, r_dc=r * 1.2, r_rt=torch.where(torch.rand(150, generator=gen) < 0.5, r, 0.0),
               r_hub=torch.where(torch.rand(150, generator=gen) < 0.3, r, -1.0), s_pr=s,
               s_hub=torch.where(torch.rand(120, generator=gen) < 0.3, s, -1.0))
    return a, b, na, nb, thr


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_ties", [False, True])
def test_fused_cross_tile_equals_the_torch_route(seed, with_ties):
    a, b, na, nb, thr = _tile_inputs(seed, with_ties)
    want = frozenset(kernels.TILE_OUTPUTS)
    eps = screen_eps(a.shape[1])
    fused, refined = kernels.cross_tile(gram_tile(a, b), a, b, na, nb, eps, thr, want)
    ref, _ = torch_tile(a, b, na, nb, eps, thr, want)
    assert refined > 0
    assert set(fused) == set(ref) == want
    for key in ("in_real", "in_fake", "in_rhub", "in_fhub", "dens"):
        np.testing.assert_array_equal(fused[key].numpy(), ref[key].numpy().astype(fused[key].numpy().dtype))
    for key in ("rarity", "nn_fake", "realism"):
        np.testing.assert_allclose(fused[key].numpy(), ref[key].numpy(), rtol=1e-5)
    # a subset of reductions computes only those
    part, _ = kernels.cross_tile(gram_tile(a, b), a, b, na, nb, eps, thr, frozenset({"dens", "nn_fake"}))
    assert set(part) == {"dens", "nn_fake"}
    np.testing.assert_array_equal(part["dens"].numpy(), fused["dens"].numpy())


def test_fused_cross_tile_against_exact_float64_decisions():
    a, b, na, nb, thr = _tile_inputs(3, with_ties=True)
    exact = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1).float()  # as radii are rounded
    out, _ = kernels.cross_tile(gram_tile(a, b), a, b, na, nb, screen_eps(1024), thr, frozenset(kernels.TILE_OUTPUTS))
    r, s, rd = thr["r_pr"][:, None], thr["s_pr"][None, :], thr["r_dc"][:, None]
    np.testing.assert_array_equal(out["in_real"].numpy(), (exact <= r).any(0).numpy())
    np.testing.assert_array_equal(out["in_fake"].numpy(), (exact <= s).any(1).numpy())
    np.testing.assert_array_equal(out["dens"].numpy(), (exact < rd).sum(0).numpy())
    np.testing.assert_array_equal(out["in_rhub"].numpy(), (exact <= thr["r_hub"][:, None]).any(0).numpy())
    np.testing.assert_array_equal(out["in_fhub"].numpy(), (exact <= thr["s_hub"][None, :]).any(1).numpy())
    rarity = torch.where(exact < r, r, float("inf")).amin(0)
    np.testing.assert_array_equal(out["rarity"].numpy(), rarity.numpy())
    assert float(out["nn_fake"][:5].max()) == 0.0  # the five fakes sitting on reals


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
