"""FD, FD-infinity, KID and CMMD (hubness_pr/metrics/fd.py, kid.py, cmmd.py) from the same feature
arrays: equal to pytorch-fid, clean-fid and torch-fidelity where they compute the same thing, to
float64 brute forces written here, whatever the memory budget, and under two Gloo ranks."""
import json

import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.engine.context import RunContext
from hubness_pr.engine.kernel_sums import kernel_sums
from hubness_pr.metrics.fd import fd_inf_sizes
from tests import ranks
from tests.cli_helpers import call


def inception_like(seed, n, dim, shift=0.0):
    """Non-negative, correlated features (pool3-like: ReLU outputs of a mixing)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((dim, dim)) / np.sqrt(dim)
    z = rng.standard_normal((n, dim)) @ mix + 0.3 + shift
    return np.maximum(z, 0.0).astype(np.float32)


def brute_fd(real, fake):
    """FD from float64 moments, the trace of the square root by eigendecompositions (PSD square root)."""
    r, f = real.astype(np.float64), fake.astype(np.float64)
    mu1, mu2 = r.mean(0), f.mean(0)
    s1, s2 = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(root @ s2 @ root)
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


def poly(a, b):
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def gauss(a, b):
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-np.clip(d2, 0, None) / (2 * 10.0**2))


def brute_mmd(real, fake, kernel, biased=False):
    x, y = real.astype(np.float64), fake.astype(np.float64)
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    n, m = len(x), len(y)
    if biased:
        np.fill_diagonal(kxx, 1.0)
        np.fill_diagonal(kyy, 1.0)
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def brute_variance(real, fake):
    """Binkowski et al.'s variance estimate written from full float64 kernel matrices (n == m)."""
    x, y = real.astype(np.float64), fake.astype(np.float64)
    kxx, kyy, kxy = poly(x, x), poly(y, y), poly(x, y)
    m = len(x)
    np.fill_diagonal(kxx, 0)
    np.fill_diagonal(kyy, 0)
    rx, ry, r1, r0 = kxx.sum(1), kyy.sum(1), kxy.sum(1), kxy.sum(0)
    sxx, syy, sxy = kxx.sum(), kyy.sum(), kxy.sum()
    xx2, yy2, xy2 = (kxx**2).sum(), (kyy**2).sum(), (kxy**2).sum()
    dots = rx @ r1 + ry @ r0
    m1, m2 = m - 1, m - 2
    z1 = (1 / (m * m1 * m2) * (rx @ rx - xx2 + ry @ ry - yy2) - 1 / (m * m1) ** 2 * (sxx**2 + syy**2)
          + 1 / (m * m * m1) * (r1 @ r1 + r0 @ r0 - 2 * xy2) - 2 / m**4 * sxy**2 - 2 / (m * m * m1) * dots
          + 2 / (m**3 * m1) * (sxx + syy) * sxy)
    z2 = (1 / (m * m1) * (xx2 + yy2) - 1 / (m * m1) ** 2 * (sxx**2 + syy**2) + 2 / (m * m) * xy2
          - 2 / m**4 * sxy**2 - 4 / (m * m * m1) * dots + 4 / (m**3 * m1) * (sxx + syy) * sxy)
    return 4 * (m - 2) / (m * (m - 1)) * z1 + 2 / (m * (m - 1)) * z2


def run(real, fake, metrics="fd,kid,cmmd", **options):
    return hubness_pr.evaluate(real=real, fake=fake, metrics=metrics, **options)


# KID and CMMD take each pair's product from the passes' float32 GEMM tiles (hubness_pr.engine.kernel_sums):
# their sums then agree with float64 ones to ~1e-8 relative and the MMD^2 to ~1e-7 on these features
KERNEL_RTOL = 1e-6

WELL = (inception_like(0, 1500, 32), inception_like(1, 1200, 32, shift=0.05))  # N >> dim


def test_fd_equals_pytorch_fid_clean_fid_and_torch_fidelity():
    from cleanfid.fid import frechet_distance as clean_fd
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    real, fake = WELL
    got = run(real, fake, "fd").fd.value
    r, f = real.astype(np.float64), fake.astype(np.float64)
    stats = [(r.mean(0), np.cov(r, rowvar=False)), (f.mean(0), np.cov(f, rowvar=False))]
    ref_pf = calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    ref_cf = clean_fd(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    st1, st2 = (fid_features_to_statistics(torch.from_numpy(a)) for a in (r, f))
    ref_tf = fid_statistics_to_metric(st1, st2, verbose=False)["frechet_inception_distance"]
    for ref in (ref_pf, ref_cf, ref_tf, brute_fd(real, fake)):
        assert got == pytest.approx(ref, rel=1e-6)
    assert 0 < got < 10


def test_fd_on_singular_covariances_is_finite_and_equals_the_eigen_brute_force():
    real, fake = inception_like(2, 40, 64), inception_like(3, 30, 64, shift=0.1)  # N < dim: singular
    got = run(real, fake, "fd").fd.value
    # the brute force keeps the square roots of rounding-level eigenvalues (~1e-8 of the scale each)
    assert np.isfinite(got) and got == pytest.approx(brute_fd(real, fake), rel=1e-7)


def _fd_from_moments(real, fake):
    from hubness_pr.engine.moments import frechet_distance, set_moments
    ctx = RunContext()
    return frechet_distance(*(set_moments(torch.from_numpy(a), ctx) for a in (real, fake)))


@pytest.mark.parametrize("case", ["well", "duplicate_column", "constant_column", "tiny_direction", "n_equals_dim"])
def test_the_covariance_factor_routes_give_the_brute_force_fd(case):
    """Cholesky where the covariance is clearly positive definite, the eigen route (with its clip) where
    it is singular or a direction's variance is near rounding level: FD equal to the eigen brute force."""
    from hubness_pr.engine.moments import psd_factor

    real, fake = inception_like(20, 400, 48).astype(np.float64), inception_like(21, 350, 48, shift=0.1)
    if case == "duplicate_column":
        real[:, 7] = real[:, 3]
    elif case == "constant_column":
        real[:, 5] = 0.25
    elif case == "tiny_direction":
        real[:, 9] = real[:, 2] + 1e-6 * np.random.default_rng(3).standard_normal(len(real))
    elif case == "n_equals_dim":
        real = real[:48]
    real = real.astype(np.float32)
    cov = np.cov(real.astype(np.float64), rowvar=False)
    factor = psd_factor(cov)
    np.testing.assert_allclose(factor @ factor.T, cov, rtol=0, atol=1e-12 * np.abs(cov).max())
    triangular = not np.triu(factor, 1).any()
    assert triangular == (case == "well")  # Cholesky only where no variance is near rounding level
    # the brute force keeps the square roots of rounding-level eigenvalues (~1e-8 of the scale each)
    assert _fd_from_moments(real, fake) == pytest.approx(brute_fd(real, fake), rel=1e-7)


def test_the_covariance_is_the_lower_block_triangle_mirrored(monkeypatch):
    """Several column blocks of the symmetric rank-k update: the covariance equals numpy's and is
    symmetric to the last bit."""
    from hubness_pr.engine import moments

    monkeypatch.setattr(moments, "_GRAM_COLUMNS", 5)
    x = inception_like(22, 301, 23) + np.float32(40.0)
    got = moments.set_moments(torch.from_numpy(x), RunContext(memory_budget=2**14))
    want = np.cov(x.astype(np.float64), rowvar=False)
    assert np.array_equal(got.cov, got.cov.T)
    np.testing.assert_allclose(got.cov, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(got.mean, x.astype(np.float64).mean(0), rtol=1e-12)


@pytest.mark.parametrize("triangular", [True, False])
def test_the_trace_of_the_square_root_by_column_blocks_equals_the_eigen_brute_force(monkeypatch, triangular):
    """``Tr (S1 S2)^(1/2)`` from a Cholesky factor, whose zero blocks the product skips (many column
    blocks here), and from an eigen factor (full products): equal to the square roots of the eigenvalues
    of ``S1^(1/2) S2 S1^(1/2)``; torch's thread count is as it was, also where the solver fails."""
    from hubness_pr.engine import moments

    monkeypatch.setattr(moments, "_GRAM_COLUMNS", 5)
    x, y = inception_like(30, 300, 23).astype(np.float64), inception_like(31, 260, 23, shift=0.2).astype(np.float64)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    if triangular:
        factor = np.linalg.cholesky(s1)
    else:
        w, v = np.linalg.eigh(s1)
        factor = v * np.sqrt(w)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(w)) @ v.T
    want = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    threads = torch.get_num_threads()
    assert moments.trace_sqrt_product(factor, s2) == pytest.approx(want, rel=1e-12)
    assert torch.get_num_threads() == threads
    with pytest.raises(Exception):
        moments.trace_sqrt_product(factor, np.full_like(s2, np.nan))
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_moment_pass_leaves_its_input_as_it_was(dtype):
    """Each block is centred in place on its own float64 copy, also where the input is float64 already."""
    from hubness_pr.engine.moments import set_moments

    x = torch.from_numpy(inception_like(23, 301, 9) + np.float32(3.0)).to(dtype)
    before = x.clone()
    got = set_moments(x, RunContext(memory_budget=2**12))
    assert torch.equal(x, before)
    np.testing.assert_allclose(got.cov, np.cov(before.double().numpy(), rowvar=False), rtol=1e-10)


def test_fd_of_a_set_with_itself_is_zero_and_large_means_do_not_cancel():
    real = inception_like(4, 500, 16) + np.float32(1000.0)
    ev = run(real, real.copy(), "fd")
    assert abs(ev.fd.value) < 1e-9
    fake = real + np.float32(0.5)
    assert run(real, fake, "fd").fd.value == pytest.approx(16 * 0.25, rel=1e-6)


def test_fd_infinity_is_the_intercept_of_the_linear_fit_over_nested_seeded_subsets():
    real, fake = WELL
    ev = run(real, fake, "fd", fd_inf_seed=5, fd_inf_points=6)
    sizes = fd_inf_sizes(len(fake), 6)
    assert sizes[0] == len(fake) // 2 and sizes[-1] == len(fake) and len(sizes) == 6
    order = np.random.RandomState(5).permutation(len(fake))
    fds = [brute_fd(real, fake[order[:s]]) for s in sizes]
    slope, want = np.polyfit(1 / np.asarray(sizes, float), fds, 1)
    assert ev.fd.infinity == pytest.approx(want, rel=1e-8) and ev.fd.infinity < ev.fd.value
    assert fd_inf_sizes(50000, 15) == sorted(set(np.linspace(5000, 50000, 15).astype(np.int32).tolist()))
    assert run(real, fake, "fd", fd_inf_points=0).fd.infinity is None  # the default: not computed
    assert run(real, fake, "fd", fd_inf_seed=5, fd_inf_points=6).fd.infinity == ev.fd.infinity  # seeded


def test_full_set_kid_and_its_variance_equal_the_brute_force():
    real, fake = WELL
    kid = run(real, fake, "kid").kid
    assert kid.value == pytest.approx(brute_mmd(real, fake, poly), rel=KERNEL_RTOL)
    assert kid.std > 0  # unequal sizes: the first-order term (test below)
    same = run(real[:1200], fake, "kid").kid
    assert same.value == pytest.approx(brute_mmd(real[:1200], fake, poly), rel=KERNEL_RTOL)
    assert same.std == pytest.approx(np.sqrt(brute_variance(real[:1200], fake)), rel=KERNEL_RTOL)


def test_kid_std_for_unequal_sizes_matches_the_spread_of_repeated_draws():
    """N != M: the first-order variance of the U-statistic, from the row sums, against the standard
    deviation of KID over 80 independent pairs of draws of two different distributions; for N = M it
    stays close to Binkowski et al.'s estimate (which adds the second-order term)."""
    rng = np.random.default_rng(0)
    values, stds = [], []
    for _ in range(80):
        real = rng.standard_normal((240, 8)).astype(np.float32)
        fake = (rng.standard_normal((160, 8)) * 1.2 + 0.2).astype(np.float32)
        kid = run(real, fake, "kid").kid
        values.append(kid.value)
        stds.append(kid.std)
    empirical = np.std(values, ddof=1)  # itself ~8 % uncertain at 80 draws
    assert np.mean(stds) == pytest.approx(empirical, rel=0.25), (np.mean(stds), empirical)
    ctx = RunContext()
    sums = kernel_sums(torch.from_numpy(real[:160]), torch.from_numpy(fake), ("poly3",), ctx)["poly3"]
    assert sums.first_order_variance() == pytest.approx(sums.variance(), rel=0.2)


def test_kid_subsets_equal_torch_fidelity_and_clean_fid():
    from cleanfid.fid import kernel_distance
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = WELL
    kid = run(real, fake, "kid", kid_subsets=7, kid_subset_size=300, kid_seed=11).kid
    ref = kid_features_to_metric(torch.from_numpy(fake.astype(np.float64)), torch.from_numpy(real.astype(np.float64)),
                                 kid_subsets=7, kid_subset_size=300, rng_seed=11, verbose=False)
    assert kid.value == pytest.approx(ref["kernel_inception_distance_mean"], rel=KERNEL_RTOL)
    assert kid.std == pytest.approx(ref["kernel_inception_distance_std"], rel=KERNEL_RTOL)
    # clean-fid draws (from the global numpy state) the second argument's subset first: the same draws
    np.random.seed(11)
    assert kid.value == pytest.approx(kernel_distance(real.astype(np.float64), fake.astype(np.float64),
                                                      num_subsets=7, max_subset_size=300), rel=KERNEL_RTOL)
    with pytest.raises(ValueError, match="kid_subset_size"):
        run(real, fake, "kid", kid_subsets=2, kid_subset_size=5000)


def test_cmmd_equals_the_brute_force_of_the_reference_formula():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((700, 48)).astype(np.float32)
    fake = (rng.standard_normal((650, 48)) * 1.05 + 0.05).astype(np.float32)
    real *= 6 / np.linalg.norm(real, axis=1, keepdims=True)  # distances of the order of sigma
    fake *= 6 / np.linalg.norm(fake, axis=1, keepdims=True)
    c = run(real, fake, "cmmd").cmmd
    assert c.value == pytest.approx(1000 * brute_mmd(real, fake, gauss, biased=True), rel=KERNEL_RTOL)
    assert c.unbiased == pytest.approx(1000 * brute_mmd(real, fake, gauss), rel=KERNEL_RTOL)


@pytest.mark.parametrize("budget", [2**20, 3 * 2**20])
def test_results_do_not_depend_on_the_memory_budget(budget):
    real, fake = inception_like(6, 900, 300), inception_like(7, 900, 300, shift=0.02)
    big = run(real, fake, memory_budget=256 * 2**20, fd_inf_points=4)
    small = run(real, fake, memory_budget=budget, fd_inf_points=4)
    for name in ("fd", "kid", "cmmd"):
        for a, b in zip(vars(big.results[name]).values(), vars(small.results[name]).values()):
            # FD's float64 moments to rounding; the kernel sums' float32 products follow the tiles
            assert a == pytest.approx(b, rel=1e-10 if name == "fd" else KERNEL_RTOL, abs=1e-14), name


def test_tiny_tiles_cover_every_pair_once():
    """A budget whose tiles are far smaller than the sets: the sums equal the full matrices' sums."""
    real, fake = inception_like(8, 333, 40), inception_like(9, 271, 40)
    ctx = RunContext(memory_budget=2**16)
    s = kernel_sums(torch.from_numpy(real), torch.from_numpy(fake), ("poly3", "gauss"), ctx)
    x, y = real.astype(np.float64), fake.astype(np.float64)
    for name, kern in (("poly3", poly), ("gauss", gauss)):
        kxx, kyy, kxy = kern(x, x), kern(y, y), kern(x, y)
        np.fill_diagonal(kxx, 0)
        np.fill_diagonal(kyy, 0)
        got = s[name]
        assert got.xx == pytest.approx(kxx.sum(), rel=1e-8) and got.yy == pytest.approx(kyy.sum(), rel=1e-8)
        assert got.xy == pytest.approx(kxy.sum(), rel=1e-8)
        assert got.xx2 == pytest.approx((kxx**2).sum(), rel=1e-8)
        np.testing.assert_allclose(got.xx_rows, kxx.sum(1), rtol=1e-7)
        np.testing.assert_allclose(got.yy_rows, kyy.sum(1), rtol=1e-7)
        np.testing.assert_allclose(got.xy_cols, kxy.sum(0), rtol=1e-7)


def test_beside_the_knn_metrics_and_in_the_report():
    real, fake = WELL
    ev = run(real, fake, "pr,fd,kid,cmmd")
    alone = run(real, fake)
    assert ev.fd == alone.fd and ev.cmmd == alone.cmmd and ev.kid == alone.kid
    assert ev.pr == hubness_pr.evaluate(real=real, fake=fake, metrics="pr").pr
    d = hubness_pr.to_dict(ev)
    assert set(d["fd"]) == {"value"} and set(d["kid"]) == {"value", "std"}  # fd.infinity: only when asked
    assert set(d["cmmd"]) == {"value", "unbiased"}
    for name in ("fd", "kid", "cmmd"):
        assert name not in hubness_pr.DEFAULT_METRICS


@pytest.mark.parametrize("route", ["fused", "torch"])
def test_kernel_sums_ride_the_knn_passes_with_the_bits_of_their_own_passes(route, monkeypatch):
    """Beside the k-NN metrics, KID's and CMMD's sums come from the k-NN and cross passes' tiles (no
    pass of their own), with the bits of their own passes over the same tiles (KID alone)."""
    from hubness_pr.engine import kernel_sums as ks
    real, fake = inception_like(30, 700, 40), inception_like(31, 700, 40, shift=0.05)  # N = M: a variance
    own = []
    grid_pass = ks.grid_pass
    monkeypatch.setattr(ks, "grid_pass", lambda grid, *a, **k: (own.append(grid.tag), grid_pass(grid, *a, **k)))
    opts = dict(route=route, memory_budget=2**20)
    alone = run(real, fake, "kid,cmmd", **opts)
    assert sorted(own) == ["xx", "xy", "yy"]
    own.clear()
    ride = run(real, fake, "pr,dc,kid,cmmd", **opts)
    assert own == []  # every grid filled by the k-NN and cross passes
    assert ride.kid == alone.kid and ride.cmmd == alone.cmmd
    assert ride.kid.value == pytest.approx(brute_mmd(real, fake, poly), rel=KERNEL_RTOL)
    # eP&R's cross pass covers the hubs only: the real x fake grid gets its own pass
    hubs = run(real, fake, "epr,kid", **opts)
    assert own == ["xy"] and hubs.kid == alone.kid


def test_both_routes_and_offset_features_agree_with_the_brute_force():
    """A large common offset (the screen frame is centred): x.y is rebuilt from the centred products
    and float64 offsets, so the cancellation of the huge kernel values costs no accuracy."""
    rng = np.random.default_rng(3)
    real = (10 + 0.01 * rng.standard_normal((500, 24))).astype(np.float32)
    fake = (10 + 0.01 * rng.standard_normal((450, 24)) + 0.002).astype(np.float32)
    want_p, want_g = brute_mmd(real, fake, poly), brute_mmd(real, fake, gauss)
    for route in ("fused", "torch"):
        for metrics in ("kid,cmmd", "pr,kid,cmmd"):
            ev = run(real, fake, metrics, route=route, memory_budget=2**20)
            assert ev.kid.value == pytest.approx(want_p, rel=1e-4), (route, metrics)
            assert ev.cmmd.unbiased == pytest.approx(1000 * want_g, rel=1e-4), (route, metrics)
    wide = run(*WELL, "kid", route="fused").kid.value
    assert wide == pytest.approx(run(*WELL, "kid", route="torch").kid.value, rel=KERNEL_RTOL)


def test_the_command_prints_fd_kid_cmmd(tmp_path):
    real, fake = WELL
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "fd,kid,cmmd", "--no-cache",
                "--kid_subsets", "3", "--kid_subset_size", "200", "--fd_inf_points", "4", "--json", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert {"fd.value", "fd.infinity", "kid.value", "kid.std", "cmmd.value"} <= set(lines)
    data = json.loads((tmp_path / "out.json").read_text())
    want = run(real, fake, kid_subsets=3, kid_subset_size=200)
    assert data["fd"]["value"] == want.fd.value and data["kid"]["value"] == want.kid.value
    assert data["params"]["kid_subsets"] == 3 and data["params"]["kid_seed"] == 2020


CASES = {"unequal": (inception_like(10, 230, 20), inception_like(11, 210, 20, shift=0.1)),
         "equal": (inception_like(12, 200, 20), inception_like(13, 200, 20, shift=0.1))}


def _ranked(group):
    out = {}
    for name, (real, fake) in CASES.items():
        ev = run(real, fake, group=group, memory_budget=2**20, fd_inf_points=5)
        ride = run(real, fake, "pr,dc,kid,cmmd", group=group, memory_budget=2**20, route="fused")
        sub = run(real, fake, "kid", group=group, kid_subsets=5, kid_subset_size=100)
        out[name] = [ev.fd.value, ev.fd.infinity, ev.kid.value, ev.kid.std, ev.cmmd.value, ev.cmmd.unbiased,
                     ride.kid.value, ride.kid.std, ride.cmmd.value, sub.kid.value, sub.kid.std]
    return out


def test_two_gloo_ranks_give_one_process_results(tmp_path):
    single = ranks.single(_ranked)
    for rank, ranked in enumerate(ranks.on_ranks(_ranked, 2, tmp_path)):
        for name in CASES:
            a, b = np.array(ranked[name], dtype=float), np.array(single[name], dtype=float)
            np.testing.assert_allclose(a, b, rtol=1e-10, equal_nan=True, err_msg=f"{rank} {name}")
            assert a[-2:].tolist() == b[-2:].tolist()  # subset KID: each subset on one rank, exactly
