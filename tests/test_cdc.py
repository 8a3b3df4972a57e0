"""Clipped density and clipped coverage (Salvy, Talbot & Thirion 2025; hubness_pr/metrics/clipped.py),
two count reductions of hubness_pr.engine.reductions.TABLE (clipped real balls, ``<=``; the real's own
ball, ``<``): equal to a float64 brute force (random data, duplicates, integer grids with ties at the
clipped radii, both CPU routes, several tile sizes, two Gloo ranks), and to the reference's procedure
(``sklearn`` neighbours, the whole table of the coverage map and ``np.searchsorted``).

The reference code (nicolassalvy/ClippedDensityCoverage, CC BY-SA 4.0) is not copied here:
:func:`reference_procedure` follows its steps in code of our own. Its equality with the reference code
itself at n <= 2,000 was checked when the metric was added (docs/definitions.md)."""
import json

import numpy as np
import pytest
from scipy.special import betaln, gammaln
from sklearn.neighbors import NearestNeighbors

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.metrics.clipped import coverage_map, coverage_mapped
from tests import cases, oracle
from tests.cases import duplicate_sets, grid_sets, random_sets
from tests.cli_helpers import call


def analytic_f(m, k, n, big_m):
    """f(m) from scipy's log-gamma and log-beta (independent of the library's log-factorial table)."""
    if m < k:
        return 0.0
    j = np.arange(m + 1)
    log_c = gammaln(m + 1) - gammaln(j + 1) - gammaln(m - j + 1)
    w = np.exp(log_c + betaln(k + j, n + m - k - j) - betaln(k, n - k))
    return float(np.sum(np.minimum(j, k) * w) / k)


def g_of(y, k, n, m):
    table = np.array([analytic_f(i, k, n, m) for i in range(m + 1)])
    return np.searchsorted(table, y) / len(table)


def brute_force_cdc(real, fake, k=5):
    """(clipped density, clipped coverage) from full float64 distance matrices."""
    d = oracle.sq_dists(real, fake)                       # (N, M) squared
    idx, dist = oracle.knn(real, k)
    r2 = dist[:, k - 1]
    r = np.sqrt(r2)
    med = np.median(r)
    clip2 = np.where(r <= med, r2, med * med)
    fid = np.mean(np.minimum((d <= clip2[:, None]).sum(axis=0) / k, 1.0))
    inside = dist <= clip2[:, None]                       # real j among the K nearest of i, in i's clipped ball
    ideal = np.bincount(idx[inside], minlength=len(real))
    density = min(fid / np.mean(np.minimum(ideal / k, 1.0)), 1.0)
    share = np.mean(np.minimum((d < r2[:, None]).sum(axis=1), k) / k)
    return float(density), float(g_of(share, k, len(real), len(fake)))


def reference_procedure(real, fake, k=5):
    """The reference's steps: sklearn K+1 neighbours of the reals (self in the first column), radii
    clipped at the median, radius queries of the fakes, the ideal from the real K-NN lists, K nearest
    fakes of each real with ``<``, the coverage map's whole table and ``np.searchsorted``."""
    dist, ind = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)
    radius = dist[:, -1]
    clipped = np.clip(radius, 0, np.median(radius))
    tree = NearestNeighbors(algorithm="ball_tree").fit(fake)
    dd, ii = tree.radius_neighbors(real, radius=np.max(clipped), return_distance=True, sort_results=False)
    hits = np.concatenate([ii[i][dd[i] <= clipped[i]] for i in range(len(real))])
    counts = np.bincount(hits, minlength=len(fake))
    own = np.bincount(ind[:, 1:][dist[:, 1:] <= clipped[:, None]], minlength=len(real))
    density = min(np.mean(np.clip(counts / k, 0, 1)) / np.mean(np.clip(own / k, 0, 1)), 1.0)
    to_fake, _ = NearestNeighbors(n_neighbors=k).fit(fake).kneighbors(real)
    share = np.mean(np.mean(to_fake < radius[:, None], axis=1))
    table = np.array([coverage_map(m, k, len(real), len(fake)) for m in range(len(fake) + 1)])
    return float(density), float(np.searchsorted(table, share) / len(table))


def ours(real, fake, **options):
    r = hubness_pr.evaluate(real=real, fake=fake, metrics=("cdc",), **options).cdc
    return r.density, r.coverage


CASES = {
    "random": lambda: random_sets(0, 260, 230, 12),
    "narrow": lambda: random_sets(3, 250, 240, 10, scale=0.6),
    "grid": lambda: grid_sets(1, 240, 220, 3),
    "duplicates": lambda: duplicate_sets(2, 200, 180, 6),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("k", [2, 5])
def test_equals_a_float64_brute_force_on_both_routes(case, k, kernel_route):
    real, fake = CASES[case]()
    want = brute_force_cdc(real, fake, k)
    got = ours(real, fake, dc_k=k, route=kernel_route)
    assert got == pytest.approx(want, rel=1e-14, abs=0)
    assert 0.0 < got[0] <= 1.0 and 0.0 <= got[1] <= 1.0


@pytest.mark.parametrize("budget", [2**20, 3 * 2**20, 256 * 2**20])
def test_equals_the_brute_force_whatever_the_tiles(budget, kernel_route):
    rng = np.random.default_rng(7)
    real = np.round(rng.standard_normal((700, 64)) * 2).astype(np.float32) / 2  # ties too
    fake = (np.round(rng.standard_normal((650, 64)) * 2) / 2 + 0.5).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("cdc", "dc"), memory_budget=budget, route=kernel_route)
    if budget == 2**20:
        assert ev.diagnostics["cross_tile_side"] < 700
    assert (ev.cdc.density, ev.cdc.coverage) == pytest.approx(brute_force_cdc(real, fake), rel=1e-14, abs=0)


@pytest.mark.parametrize("seed, n_real, n_fake, dim", [(0, 300, 280, 8), (1, 1000, 900, 64), (2, 2000, 1800, 16)])
def test_follows_the_reference_procedure(seed, n_real, n_fake, dim):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) * 1.1 + 0.1 * seed).astype(np.float32)
    want = reference_procedure(real.astype(np.float64), fake.astype(np.float64))
    assert ours(real, fake) == pytest.approx(want, rel=1e-14, abs=0)


def test_the_coverage_map():
    """The bisection reads the same index as searchsorted on the whole table; f rises from 0 to about
    1 - 2^-K... and equals an independent log-gamma form of the same sum."""
    k, n, m = 5, 120, 90
    table = np.array([coverage_map(i, k, n, m) for i in range(m + 1)])
    assert np.all(table[:k] == 0) and np.all(np.diff(table[k - 1:]) > 0)
    assert table == pytest.approx([analytic_f(i, k, n, m) for i in range(m + 1)], rel=1e-10, abs=1e-300)
    for y in np.concatenate([np.linspace(0, 1, 101), table[::7], np.nextafter(table[::7], 2)]):
        assert coverage_mapped(y, k, n, m) == np.searchsorted(table, y) / (m + 1), y


def test_clipping_matters():
    """Fakes packed inside a sparse real cluster (large balls): plain density exceeds 1 there; the
    clipped balls count far less."""
    rng = np.random.default_rng(5)
    real = np.concatenate([rng.standard_normal((150, 4)) * 0.1, rng.standard_normal((150, 4)) * 3 + 10])
    fake = rng.standard_normal((200, 4)) * 0.5 + 10
    ev = hubness_pr.evaluate(real=real.astype(np.float32), fake=fake.astype(np.float32), metrics=("cdc", "dc"))
    assert ev.dc.density > 1.0
    assert ev.cdc.density_unclipped < ev.dc.density / 2
    assert ev.cdc.density == min(ev.cdc.density_unclipped, 1.0)
    assert ev.cdc.coverage < 0.5  # the dense half of the real set is not covered


def test_analytic_extremes():
    rng = np.random.default_rng(11)
    real = rng.standard_normal((400, 5)).astype(np.float32)
    far = (rng.standard_normal((380, 5)) + 100).astype(np.float32)
    assert ours(real, far) == (0.0, 0.0)
    same = rng.standard_normal((400, 5)).astype(np.float32)
    density, coverage = ours(real, same)
    assert density > 0.85 and coverage > 0.85  # the map sends the expected share to about 1


def test_the_command_prints_and_writes_cdc(tmp_path):
    real, fake = CASES["random"]()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "cdc,dc", "--no-cache", "--json",
                tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    want = brute_force_cdc(real, fake)
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert float(lines["cdc.density"]) == pytest.approx(want[0], abs=1e-5)
    assert float(lines["cdc.coverage"]) == pytest.approx(want[1], abs=1e-5)
    data = json.loads((tmp_path / "out.json").read_text())
    assert (data["cdc"]["density"], data["cdc"]["coverage"]) == pytest.approx(want, rel=1e-14, abs=0)
    assert "cdc" not in hubness_pr.DEFAULT_METRICS


def _ranked(group):
    return cases.on_group(CASES, ours, group)


def test_two_gloo_ranks_give_the_brute_force(tmp_path):
    for rank, name, real, fake, got, single in cases.on_two_ranks(CASES, _ranked, tmp_path):
        assert got == single, (rank, name)
        assert got == pytest.approx(brute_force_cdc(real, fake), rel=1e-14, abs=0), (rank, name)


def test_duplicates_where_the_reference_counts_a_sample_in_its_own_ball():
    """The reference drops the first of sklearn's K+1 neighbours as "the point itself": with copies
    of a real sample that may be another copy, and the sample itself then counts in its own clipped
    ball, inflating the reals' own counts. We exclude self by index (docs/definitions.md): our value is
    the brute force's, the reference's differs there (pinned) and agrees without duplicates."""
    real, fake = CASES["duplicates"]()
    ours_value = ours(real, fake)
    reference = reference_procedure(real.astype(np.float64), fake.astype(np.float64))
    assert ours_value == pytest.approx(brute_force_cdc(real, fake), rel=1e-14, abs=0)
    assert reference[0] != pytest.approx(ours_value[0], rel=1e-3)   # density: the reals' own counts differ
    assert reference[1] == ours_value[1]                            # coverage reads no self-neighbour
    real, fake = CASES["random"]()
    assert ours(real, fake) == pytest.approx(reference_procedure(real.astype(np.float64), fake.astype(np.float64)),
                                             rel=1e-14, abs=0)
