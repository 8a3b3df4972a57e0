"""PR-Cover (Cheema & Urner, AISTATS 2023), added as two entries of hubness_pr.engine.reductions.TABLE: equal to a
float64 brute force (random data, duplicates, exact ties on integer grids, both CPU routes, several
tile sizes, two Gloo ranks), to the reference's procedure (sklearn's kd-tree radii, the first of the
k' + 1 neighbours dropped, membership ``<=``, a count of at least k' / C), and analytically sane.

The reference code (FasilCheema/GenerativeMetrics, ``Code/GenerativeMetrics.py``, functions ``PRCover``
and ``PR_Cover_Indicator``, GPL-3.0) is not copied here: :func:`reference_procedure` follows its steps
in code of our own. Its equality with the reference code itself was checked when it replaced a copy
of that code (the copy, and the repository's own file at commit 06777c5): float64 inputs, 40
comparisons, 10 pairs of sets x k in 1, 2, 3, 5 (C = 3); random sets (60 x 70 x 5, 120 x 100 x 10,
200 x 180 x 20, 150 x 150 x 8 as below, 40 x 250 x 3, 250 x 30 x 4), integer grids with ties at the
radii (240 x 220 x 3, 150 x 90 x 2), duplicates (200 x 180 x 6, a set against its own copy). Both
values equal (``==``) in all 40, and so is each sample's covered flag."""
import json

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

import hubness_pr
from hubness_pr.commands.metrics import main
from tests import cases, oracle
from tests.cases import duplicate_sets, grid_sets, random_sets
from tests.cli_helpers import call


def brute_force_prcover(real, fake, k, c=3):
    """(cover precision, cover recall) from full float64 distance matrices: k' = c k; a fake counts when
    its k'-NN ball among the fakes (self excluded by index) holds >= k reals (``d <= radius``), a real
    when its k'-NN ball among the reals holds >= k fakes."""
    kp = c * k
    d = oracle.sq_dists(real, fake)                  # (N, M) squared, float64
    r, s = oracle.sq_radii(real, kp), oracle.sq_radii(fake, kp)
    reals_in_fake_ball = (d <= s[None, :]).sum(axis=0)
    fakes_in_real_ball = (d <= r[:, None]).sum(axis=1)
    return float(np.mean(reals_in_fake_ball >= k)), float(np.mean(fakes_in_real_ball >= k))


def reference_covered(own, other, k, c=3):
    """Per sample of ``own``, the reference's indicator: k' = c k; the radius is the last of the
    sample's k' + 1 nearest neighbours in ``own`` (sklearn's kd-tree; the first, taken as the sample
    itself, is dropped: with copies it may be a copy, at the same distance 0); the sample counts the
    samples of ``other`` whose distance (the norm of the difference) is <= that radius, and is
    covered when the count reaches k' / c."""
    k_prime = c * k
    radii = NearestNeighbors(n_neighbors=k_prime + 1, algorithm="kd_tree").fit(own).kneighbors(own)[0][:, -1]
    hits = [np.count_nonzero(np.linalg.norm(other - x, axis=1) <= r) for x, r in zip(own, radii)]
    return np.array(hits) >= k_prime / c


def reference_procedure(real, fake, k, c=3):
    """(cover precision, cover recall) by the reference's steps, on float64 inputs: the shares of
    covered fakes (balls among the fakes, counting reals) and of covered reals (balls among the
    reals, counting fakes)."""
    return float(np.mean(reference_covered(fake, real, k, c))), float(np.mean(reference_covered(real, fake, k, c)))


def ours(real, fake, k=3, **options):
    pc = hubness_pr.evaluate(real=real, fake=fake, metrics=("prcover",), k=k, **options).prcover
    assert pc.k == k and pc.k_prime == 3 * k
    return pc.precision, pc.recall


CASES = {
    "random": lambda: random_sets(0, 260, 230, 12),
    "grid": lambda: grid_sets(1, 240, 220, 3),
    "duplicates": lambda: duplicate_sets(2, 200, 180, 6),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("k", [1, 3])
def test_equals_a_float64_brute_force_on_both_routes(case, k, kernel_route):
    real, fake = CASES[case]()
    want = brute_force_prcover(real, fake, k)
    assert ours(real, fake, k, route=kernel_route) == want


@pytest.mark.parametrize("budget", [2**20, 3 * 2**20, 256 * 2**20])
def test_equals_the_brute_force_whatever_the_tiles(budget, kernel_route):
    """A 1 MiB budget cuts the k-NN and cross passes of 700 x 64 into several tiles each."""
    rng = np.random.default_rng(7)
    real = np.round(rng.standard_normal((700, 64)) * 2).astype(np.float32) / 2  # ties too
    fake = (np.round(rng.standard_normal((650, 64)) * 2) / 2 + 0.5).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("prcover",), memory_budget=budget, route=kernel_route)
    if budget == 2**20:
        assert ev.diagnostics["cross_tile_side"] < 700
    assert (ev.prcover.precision, ev.prcover.recall) == brute_force_prcover(real, fake, 3)


def test_with_the_other_metrics_and_a_stored_real_graph(kernel_route):
    """One run with every metric gives the same PR-Cover, and a real k-NN graph from the summary's
    needs (k and 3k) skips the real pass with identical results."""
    real, fake = CASES["random"]()
    alone = ours(real, fake, route=kernel_route)
    every_metric = tuple(m for m in hubness_pr.METRICS if m not in ("ct", "protocol"))  # held-out set; a preset
    every = hubness_pr.evaluate(real=real, fake=fake, metrics=every_metric, route=kernel_route)
    assert (every.prcover.precision, every.prcover.recall) == alone
    k_max, ks = hubness_pr.real_knn_needs(every_metric, k=3, dc_k=5)
    assert (k_max, ks) == (9, (1, 3, 4, 5, 9))  # 4: P-P&R's ppr_k; 1: AuthPct's real 1-NN distances
    assert hubness_pr.real_knn_needs(("prcover",), k=2) == (6, (6,))
    graph = hubness_pr.nearest_neighbors(real, k_max, exact_ks=ks, route=kernel_route)
    reused = hubness_pr.evaluate(real=real, fake=fake, metrics=every_metric, real_knn=graph, route=kernel_route)
    assert (reused.prcover.precision, reused.prcover.recall) == alone
    block = hubness_pr.to_dict(reused)["prcover"]
    assert {key: block[key] for key in ("precision", "recall")} == {"precision": alone[0], "recall": alone[1]}
    assert set(block) == {"precision", "precision_se", "recall", "recall_se"}
    assert reused.prcover.k_prime == 9 and reused.params["prcover_c"] == 3
    assert "prcover" not in hubness_pr.DEFAULT_METRICS  # the default output is unchanged


@pytest.mark.parametrize("seed, n_real, n_fake, dim", [(0, 60, 70, 5), (1, 120, 100, 10), (2, 200, 180, 20),
                                                       (3, 150, 150, 8)])
def test_follows_the_reference_procedure(seed, n_real, n_fake, dim):
    """Our cover precision (over fakes) and recall (over reals) are the reference's, bit for bit."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(np.float32).astype(np.float64)
    fake = (rng.standard_normal((n_fake, dim)) + 0.4 * seed).astype(np.float32).astype(np.float64)
    for k in (2, 3):
        want = reference_procedure(real, fake, k)
        assert ours(real.astype(np.float32), fake.astype(np.float32), k) == want, (seed, k)


@pytest.mark.parametrize("case", ["grid", "duplicates"])
def test_follows_the_reference_procedure_with_ties(case):
    """Exact ties at the radii (grids) and copies at distance 0: the reference's ``<=`` and its count."""
    real, fake = CASES[case]()
    for k in (1, 2, 3):
        want = reference_procedure(real.astype(np.float64), fake.astype(np.float64), k)
        assert ours(real, fake, k) == want, k


def test_analytic_extremes():
    rng = np.random.default_rng(11)
    real = rng.standard_normal((400, 5)).astype(np.float32)
    same = rng.standard_normal((380, 5)).astype(np.float32)
    precision, recall = ours(real, same)
    assert precision > 0.9 and recall > 0.9
    far = (rng.standard_normal((380, 5)) + 100).astype(np.float32)
    assert ours(real, far) == (0.0, 0.0)


def test_the_command_prints_cover_lines(tmp_path):
    real, fake = CASES["random"]()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    proc = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--metrics", "prcover,pr", "--no-cache",
                "--json", tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    want = brute_force_prcover(real, fake, 3)
    assert float(lines["prcover.precision"]) == pytest.approx(want[0], abs=1e-5)  # printed to 5 digits
    assert float(lines["prcover.recall"]) == pytest.approx(want[1], abs=1e-5)
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["prcover"]["precision"] == want[0] and data["params"]["prcover_c"] == 3
    default = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--no-cache")
    assert default.returncode == 0 and "prcover" not in default.stdout


def _ranked(group):
    return cases.on_group(CASES, ours, group)


def test_two_gloo_ranks_give_the_brute_force(tmp_path):
    for rank, name, real, fake, got, single in cases.on_two_ranks(CASES, _ranked, tmp_path):
        assert tuple(got) == tuple(single) == brute_force_prcover(real, fake, 3), (rank, name)
