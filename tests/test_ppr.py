"""P-precision and P-recall (Park & Kim, ICCV 2023; hubness_pr/metrics/pprecision.py), a ``logsum``
reduction of hubness_pr.engine.reductions.TABLE: equal to a float64 brute force (random data,
duplicates at distance 0, integer grids, both CPU routes, several tile sizes, two Gloo ranks) to
float64 rounding of the sums, and to the reference's procedure (sklearn's distance matrices, the
(k+1)-th smallest entry of each own-set row, the score zeroed from ``d >= R``, products over the other
set).

The reference code (kdst-team/Probablistic_precision_recall, ``metric/pp_pr.py``, MIT) is not copied
here: :func:`reference_procedure` follows its steps in code of our own (its CPU branch). Its
equality with the reference code itself was checked when it replaced a copy of that code (the
copy, and the repository's own file at commit 7e15c91): float64 inputs, 54 comparisons, 9 pairs of
sets x (a, k) in (1.2, 4), (1.5, 3), (0.7, 1), (2.0, 5), (5.0, 10), (3.0, 2); random sets
(300 x 280 x 8, 1000 x 900 x 64, 2000 x 1800 x 16 as below, 40 x 400 x 4, 400 x 35 x 2), integer
grids with ties (240 x 220 x 3, 150 x 90 x 2, where R_X = 0 at k <= 4), duplicates (200 x 180 x 6,
a set against its own copy). Both values equal bit for bit (max difference 0.0), and so is every
per-sample score."""
import json

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.engine.cross import CrossInputs, cross_pass
from hubness_pr.engine.context import RunContext
from hubness_pr.errors import InputError
from tests import cases, oracle
from tests.cases import duplicate_sets, grid_sets, random_sets
from tests.cli_helpers import call

TOL = dict(rel=1e-12, abs=1e-13)  # the sums' order follows tiles, threads and ranks


def brute_force_ppr(real, fake, a=1.2, k=4):
    """(P-precision, P-recall) from full float64 distance matrices, as the paper writes them."""
    d = np.sqrt(oracle.sq_dists(real, fake))  # (N, M)
    r_x = a * np.mean(np.sqrt(oracle.sq_radii(real, k)))
    r_y = a * np.mean(np.sqrt(oracle.sq_radii(fake, k)))
    f_x = np.maximum(0.0, 1.0 - d / r_x)      # score of each real ball for each fake
    f_y = np.maximum(0.0, 1.0 - d / r_y)
    return float(np.mean(1.0 - np.prod(1.0 - f_x, axis=0))), float(np.mean(1.0 - np.prod(1.0 - f_y, axis=1)))


def reference_scores(real, fake, a=1.2, k=4):
    """Per sample, 1 - prod(1 - score) by the reference's steps, on float64 inputs: sklearn's
    Euclidean distance matrices (real x real, fake x fake, real x fake), formed as the reference asks
    (``n_jobs=8``: 8 threaded column slices, whose products round a few entries ~1e-15 away from one
    whole product); each set's R is a times the mean, over its samples, of the (k+1)-th smallest
    entry of the sample's row, its own 0 included (so the k-th neighbour, with copies too); each
    pair's score 1 - d / R, 0 where d >= R; the product runs over the other set's balls (each fake
    under the reals' balls of radius R_X, each real under the fakes' balls of radius R_Y). Returns
    (per fake, per real)."""
    def distances(x, y):
        return pairwise_distances(x, y, metric="euclidean", n_jobs=8)

    cross = distances(real, fake)                             # (N, M)

    def ball_radius(x):
        rows = np.sort(distances(x, x), axis=1)               # ascending, the sample's own 0 first
        return a * np.mean(rows[:, k])

    def kept(r):                                              # 1 - score of each pair
        with np.errstate(divide="ignore", invalid="ignore"):  # r = 0 where the k-th neighbours are copies
            score = np.where(cross < r, 1.0 - cross / r, 0.0)
        return 1.0 - score

    return 1.0 - np.prod(kept(ball_radius(real)), axis=0), 1.0 - np.prod(kept(ball_radius(fake)), axis=1)


def reference_procedure(real, fake, a=1.2, k=4):
    """(P-precision, P-recall): the means of :func:`reference_scores` over the fakes and the reals."""
    per_fake, per_real = reference_scores(real, fake, a, k)
    return float(np.mean(per_fake)), float(np.mean(per_real))


def ours(real, fake, **options):
    r = hubness_pr.evaluate(real=real, fake=fake, metrics=("ppr",), **options).ppr
    return r.precision, r.recall


CASES = {
    "random": lambda: random_sets(0, 260, 230, 12),
    "narrow": lambda: random_sets(3, 250, 240, 10, scale=0.6),  # R_fake < R_real: the row side decides
    "grid": lambda: grid_sets(1, 240, 220, 3),
    "duplicates": lambda: duplicate_sets(2, 200, 180, 6),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("a, k", [(1.2, 4), (0.7, 2), (2.0, 5)])
def test_equals_a_float64_brute_force_on_both_routes(case, a, k, kernel_route):
    real, fake = CASES[case]()
    want = brute_force_ppr(real, fake, a, k)
    got = ours(real, fake, ppr_a=a, ppr_k=k, route=kernel_route)
    assert got == pytest.approx(want, **TOL)
    assert 0.0 < got[0] <= 1.0 and 0.0 < got[1] <= 1.0


def test_duplicates_score_one():
    """A fake on a real sample (d = 0: log 0 = -inf in the sum) scores exactly 1."""
    real, fake = CASES["duplicates"]()
    res = cross_pass(*(hubness_pr.engine.distances.as_tensor(x, hubness_pr.resolve_device("cpu")) for x in (real, fake)),
                     CrossInputs(want=frozenset({"ppr_fake"}), sq_radii={"r_ppr": np.full(len(real), 4.0)}),
                     RunContext(device=hubness_pr.resolve_device("cpu")))
    on_real = (oracle.sq_dists(real, fake) == 0).any(axis=0)
    assert on_real.sum() >= 40
    assert np.all(res["ppr_fake"][on_real] == -np.inf) and np.all(np.isfinite(res["ppr_fake"][~on_real]))


@pytest.mark.parametrize("budget", [2**20, 3 * 2**20, 256 * 2**20])
def test_equals_the_brute_force_whatever_the_tiles(budget, kernel_route):
    """A 1 MiB budget cuts the passes of 700 x 64 into several tiles each."""
    rng = np.random.default_rng(7)
    real = np.round(rng.standard_normal((700, 64)) * 2).astype(np.float32) / 2
    fake = (np.round(rng.standard_normal((650, 64)) * 2) / 2 + 0.3).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("ppr",), memory_budget=budget, route=kernel_route)
    if budget == 2**20:
        assert ev.diagnostics["cross_tile_side"] < 700
    assert ev.diagnostics["refined_pairs"] > 0  # every pair inside R is re-measured
    assert (ev.ppr.precision, ev.ppr.recall) == pytest.approx(brute_force_ppr(real, fake), **TOL)


def test_every_pair_inside_the_radius_is_remeasured(kernel_route):
    """The value reads the exact distance: the pass re-measures at least every pair with d < R (a
    screen value would be off by ~1e-7 relative per term)."""
    real, fake = CASES["random"]()
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("ppr",), route=kernel_route)
    d = np.sqrt(oracle.sq_dists(real, fake))
    inside = (d < ev.ppr.radius_real).sum() + (d < ev.ppr.radius_fake).sum()
    assert ev.diagnostics["refined_pairs"] >= (d < max(ev.ppr.radius_real, ev.ppr.radius_fake)).sum()
    assert inside > 0


@pytest.mark.parametrize("seed, n_real, n_fake, dim", [(0, 300, 280, 8), (1, 1000, 900, 64), (2, 2000, 1800, 16)])
def test_follows_the_reference_procedure(seed, n_real, n_fake, dim):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) * 1.1 + 0.1 * seed).astype(np.float32)
    want = reference_procedure(real.astype(np.float64), fake.astype(np.float64))
    assert ours(real, fake) == pytest.approx(want, rel=1e-12, abs=1e-12)
    want = reference_procedure(real.astype(np.float64), fake.astype(np.float64), a=1.5, k=3)
    assert ours(real, fake, ppr_a=1.5, ppr_k=3) == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("case, a, k", [("grid", 1.2, 4), ("grid", 0.7, 2), ("grid", 2.0, 5),
                                        ("narrow", 2.0, 5)])
def test_follows_the_reference_procedure_with_ties(case, a, k):
    """Integer grids: ties among the neighbours that set the radii, and pairs at exactly R (score 0
    either way); and the narrow fakes (R_Y < R_X)."""
    real, fake = CASES[case]()
    want = reference_procedure(real.astype(np.float64), fake.astype(np.float64), a, k)
    assert ours(real, fake, ppr_a=a, ppr_k=k) == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_duplicates_where_the_reference_reads_sklearn_distances():
    """sklearn forms |x|^2 + |y|^2 - 2 x.y: some copies come out ~1e-8 apart instead of 0
    (docs/definitions.md), so on sets with copies the reference moves off the exact value (ours, the
    brute force's) by more than rounding (pinned); elsewhere the two agree to 1e-12."""
    real, fake = CASES["duplicates"]()
    real64, fake64 = real.astype(np.float64), fake.astype(np.float64)
    copies = (real64[:, None, :] == fake64[None, :, :]).all(axis=-1)
    assert copies.sum() >= 40 and pairwise_distances(real64, fake64, n_jobs=8)[copies].max() > 0
    got, want = ours(real, fake, ppr_a=0.7, ppr_k=2), reference_procedure(real64, fake64, 0.7, 2)
    assert got == pytest.approx(brute_force_ppr(real, fake, 0.7, 2), **TOL)
    assert got != pytest.approx(want, rel=1e-12, abs=1e-12) and got == pytest.approx(want, rel=1e-7)


def test_analytic_extremes():
    rng = np.random.default_rng(11)
    real = rng.standard_normal((400, 5)).astype(np.float32)
    same = rng.standard_normal((380, 5)).astype(np.float32)
    precision, recall = ours(real, same)
    assert precision > 0.6 and recall > 0.6
    far = (rng.standard_normal((380, 5)) + 100).astype(np.float32)
    assert ours(real, far) == (0.0, 0.0)
    assert ours(real, real.copy()) == (1.0, 1.0)  # every sample on its copy


def test_options_are_validated():
    real, fake = CASES["random"]()
    for bad in (0, -1.0, float("nan"), float("inf"), "1.2", True):
        with pytest.raises(InputError, match="'ppr_a' parameter of evaluate"):
            ours(real, fake, ppr_a=bad)
    with pytest.raises(InputError, match="'ppr_k' parameter of evaluate"):
        ours(real, fake, ppr_k=0)


def test_the_command_prints_and_writes_ppr(tmp_path):
    real, fake = CASES["random"]()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "ppr", "--ppr_a", "1.5", "--ppr_k",
                "3", "--no-cache", "--json", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    want = brute_force_ppr(real, fake, 1.5, 3)
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert float(lines["ppr.precision"]) == pytest.approx(want[0], abs=1e-5)
    data = json.loads((tmp_path / "out.json").read_text())
    assert (data["ppr"]["precision"], data["ppr"]["recall"]) == pytest.approx(want, **TOL)
    assert data["params"]["ppr_a"] == 1.5 and data["params"]["ppr_k"] == 3
    bad = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "ppr", "--ppr_a", "0", "--no-cache")
    assert bad.returncode == 2 and "--ppr_a" in bad.stderr
    default = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--no-cache")
    assert default.returncode == 0 and "ppr" not in default.stdout and "ppr" not in hubness_pr.DEFAULT_METRICS


def _ranked(group):
    return cases.on_group(CASES, ours, group)


def test_two_gloo_ranks_give_the_brute_force(tmp_path):
    for rank, name, real, fake, got, single in cases.on_two_ranks(CASES, _ranked, tmp_path):
        assert got == pytest.approx(single, **TOL), (rank, name)
        assert got == pytest.approx(brute_force_ppr(real, fake), **TOL), (rank, name)


def test_the_command_reuses_the_stored_real_graph_at_ppr_k(tmp_path):
    """The real set's stored k-NN summary holds ppr_k's radii (real_knn_needs reads --ppr_k): the
    second run reuses it and gives the same values; another --ppr_k needs another summary."""
    real, fake = CASES["random"]()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    runs = []
    for name, ppr_k in (("a", "6"), ("b", "6"), ("c", "2")):
        proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "ppr", "--ppr_k", ppr_k,
                    "--cache_dir", tmp_path / "cache", "--json", tmp_path / f"{name}.json")
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert [r["cache"]["real"]["status"] for r in runs] == ["computed", "reused", "computed"]
    assert runs[0]["ppr"] == runs[1]["ppr"]
    assert (runs[1]["ppr"]["precision"], runs[1]["ppr"]["recall"]) == pytest.approx(brute_force_ppr(real, fake, 1.2, 6),
                                                                                    **TOL)
    assert (runs[2]["ppr"]["precision"], runs[2]["ppr"]["recall"]) == pytest.approx(brute_force_ppr(real, fake, 1.2, 2),
                                                                                    **TOL)
    assert hubness_pr.real_knn_needs(("ppr",), ppr_k=6) == (6, (6,))
