"""Exact on every input: collapsed sets, large offsets, power-of-two scalings, distances one rounding
from a radius, ulp-near and exact ties, on both tile routes and several tile sizes, all against the
float64 brute force of tests/oracle.py (decisions equal, values to float64 precision)."""
import numpy as np
import pytest

import hubness_pr
from hubness_pr.engine import hard_cases
from tests import oracle

pytestmark = pytest.mark.usefixtures("kernel_route")  # every test on both tile routes

BUDGETS = [2**20, 8 * 2**20, hubness_pr.DEFAULT_MEMORY_BUDGET]


def assert_exact(ev, ref, realism_rtol=1e-9):
    """Every decision equal to the oracle; realism/rarity values to float64 precision (the float64
    sums of the oracle and of the engine add in different orders)."""
    assert ev.pr.precision == ref["precision"]
    assert ev.pr.recall == ref["recall"]
    assert ev.dc.density == pytest.approx(ref["density"], rel=1e-15)
    assert ev.dc.coverage == ref["coverage"]
    np.testing.assert_array_equal(ev.fake_in_real_manifold, ref["in_real"])
    np.testing.assert_array_equal(ev.fake_k_occurrence, ref["occ_fake"])
    assert (ev.epr.real_hubs, ev.epr.fake_hubs) == (ref["real_hubs"], ref["fake_hubs"])
    np.testing.assert_array_equal(np.isnan(ev.epr.precision), np.isnan(ref["epr_precision"]))
    if not np.isnan(ref["epr_precision"]):
        assert ev.epr.precision == ref["epr_precision"]
        assert ev.epr.recall == ref["epr_recall"]
    np.testing.assert_array_equal(np.isnan(ev.rarity.scores), np.isnan(ref["rarity"]))
    np.testing.assert_allclose(ev.rarity.scores, ref["rarity"], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(np.isinf(ev.realism.scores), np.isinf(ref["realism"]))
    np.testing.assert_allclose(ev.realism.scores, ref["realism"], rtol=realism_rtol)
    assert ev.hubness_real.hubs == ref["real_hubs"]
    assert ev.hubness_real.max == ref["occ_real"].max()


@pytest.mark.parametrize("noise", [1e-2, 1e-3, 1e-5])
def test_collapsed_generator_near_duplicates(noise):
    """A generator collapsed onto one mode: neighbours closer than the float32 screen resolves."""
    real, fake = hard_cases.collapsed(noise, seed=int(-np.log10(noise)))
    ref = oracle.all_metrics(real, fake)
    for budget in (2**20, hubness_pr.DEFAULT_MEMORY_BUDGET):
        ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=budget)
        assert_exact(ev, ref)


def test_partly_collapsed_real_set_inside_a_spread_one():
    """A cluster of near-duplicates far from the set's centre: centring the set cannot help there."""
    real, fake = hard_cases.partly_collapsed()
    ref = oracle.all_metrics(real, fake)
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    assert_exact(ev, ref)
    g = hubness_pr.nearest_neighbors(real, 3)
    idx, d = oracle.knn(real, 3)
    np.testing.assert_array_equal(g.indices, idx)
    np.testing.assert_allclose(g.sq_distances, d, rtol=1e-13)


@pytest.mark.parametrize("offset", [10.0, -300.0, 4000.0])
def test_large_common_offset(offset):
    real, fake = hard_cases.offset(offset)
    rng = np.random.default_rng(1)
    ref = oracle.all_metrics(real, fake)
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    assert_exact(ev, ref)
    # the order of the real rows changes nothing
    perm = rng.permutation(len(real))
    shuffled = hubness_pr.evaluate(real=real[perm], fake=fake, memory_budget=8 * 2**20)
    assert (shuffled.pr, shuffled.dc, shuffled.epr) == (ev.pr, ev.dc, ev.epr)
    np.testing.assert_array_equal(shuffled.rarity.scores, ev.rarity.scores)


@pytest.mark.parametrize("exponent", [-120, -100, -60, -20, 0, 20, 60])
def test_power_of_two_scaling_changes_no_decision(exponent):
    real, fake, real_s, fake_s = hard_cases.scaled(exponent)
    scale = np.float32(2.0**exponent)
    assert np.array_equal(real_s / scale, real) and np.array_equal(fake_s / scale, fake)  # exact scaling
    base = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    ev = hubness_pr.evaluate(real=real_s, fake=fake_s, memory_budget=2**20)
    assert (ev.pr, ev.dc, ev.epr) == (base.pr, base.dc, base.epr)
    np.testing.assert_array_equal(ev.fake_k_occurrence, base.fake_k_occurrence)
    np.testing.assert_array_equal(ev.realism.scores, base.realism.scores)  # a ratio: scale-free
    np.testing.assert_array_equal(ev.rarity.scores, base.rarity.scores * 2.0**exponent)
    assert_exact(base, oracle.all_metrics(real, fake))
    g = hubness_pr.nearest_neighbors(real_s, 3)
    np.testing.assert_allclose(g.sq_radii(3), oracle.sq_radii(real, 3) * 4.0**exponent, rtol=1e-13)


def test_large_finite_features_are_scaled_not_refused():
    real = hard_cases.grid(3, 80, 6, 2.0**-4) * np.float32(2.0**100)
    fake = hard_cases.grid(4, 70, 6, 2.0**-4) * np.float32(2.0**100)
    ev = hubness_pr.evaluate(real=real, fake=fake)
    assert_exact(ev, oracle.all_metrics(real, fake))


def test_distance_one_rounding_above_a_radius_is_outside():
    """Real (0,0), (-1,0), k=1: radius exactly 1. Fake (0.6, 0.8) in float32 lies at squared
    distance 1.0000000477 > 1 from (0,0): outside under '<=' (a float32 comparison says inside)."""
    real, fake = hard_cases.radius_rounding()
    exact = (np.float64(np.float32(0.6)) ** 2 + np.float64(np.float32(0.8)) ** 2)
    assert exact > 1.0 and np.float32(exact) == 1.0  # one float32 rounding from the radius
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc,rarity", k=1, dc_k=1)
    assert not ev.fake_in_real_manifold[0]
    assert ev.dc.density == 0.0 and np.isnan(ev.rarity.scores[0])
    # and just inside: (0.6, 0.79999995) is at squared distance below 1
    inside = np.array([[0.6, np.nextafter(np.float32(0.8), np.float32(0))]], dtype=np.float32)
    assert np.float64(inside[0, 0]) ** 2 + np.float64(inside[0, 1]) ** 2 < 1.0
    ev = hubness_pr.evaluate(real=real, fake=np.concatenate([inside, fake[1:]]), metrics="pr,dc", k=1, dc_k=1)
    assert ev.fake_in_real_manifold[0] and ev.dc.density == 1 / 3


def test_ulp_near_ties_are_ordered_exactly():
    """Neighbours at distances that differ by one float32 ulp of a coordinate, or tie exactly,
    around a point with a large norm: order by exact distance, then index."""
    x = hard_cases.ulp_ties()
    ref_idx, ref_d = oracle.knn(x, 6)
    for budget in (2**20, 64 * 2**20):
        g = hubness_pr.nearest_neighbors(x, 6, memory_budget=budget)
        np.testing.assert_array_equal(g.indices[0], ref_idx[0])
        np.testing.assert_array_equal(g.indices, ref_idx)
        np.testing.assert_allclose(g.sq_distances, ref_d, rtol=1e-13)
        np.testing.assert_array_equal(g.k_occurrence(3), oracle.k_occurrence(x, 3))


@pytest.mark.parametrize("budget", BUDGETS)
def test_tie_heavy_half_integer_grid_on_every_route_and_tile_size(budget):
    """Features rounded to a half-integer grid: many exactly equal distances. Ties break by the
    lowest index, as the brute force, whatever the route and the tile size."""
    real, fake = hard_cases.half_integer_grid()
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=budget)
    assert_exact(ev, oracle.all_metrics(real, fake))
    g = hubness_pr.nearest_neighbors(fake, 4, memory_budget=budget)
    idx, d = oracle.knn(fake, 4)
    np.testing.assert_array_equal(g.indices, idx)
    np.testing.assert_allclose(g.sq_distances, d, rtol=1e-13)


def test_many_exact_duplicates_beyond_the_candidate_list():
    """More exact copies of a point than k + the spare candidates: the k neighbours are the
    lowest-index other copies, k-occurrence as the brute force."""
    x = hard_cases.many_duplicates()
    for k in (3, 10):
        g = hubness_pr.nearest_neighbors(x, k, memory_budget=2**20)
        idx, d = oracle.knn(x, k)
        np.testing.assert_array_equal(g.indices, idx)
        np.testing.assert_allclose(g.sq_distances, d, rtol=1e-13)


def test_realism_is_exact_on_offset_data():
    rng = np.random.default_rng(30)
    real = (10 + 0.01 * rng.standard_normal((200, 32))).astype(np.float32)
    fake = (10 + 0.01 * rng.standard_normal((150, 32))).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="realism")
    np.testing.assert_allclose(ev.realism.scores, oracle.all_metrics(real, fake)["realism"], rtol=1e-12)


def test_screen_frames_centre_offsets_and_leave_ordinary_features_alone():
    """Offset data is screened centred (no fallback rows); ReLU features as they are (no copy)."""
    from hubness_pr.engine.frame import SetStats, choose_frame
    import torch
    real, _ = hard_cases.offset(10.0)
    x = torch.from_numpy(real)
    frame = choose_frame([x], [SetStats.of(x)])
    assert frame.centre is not None and frame.exponent == 0
    assert hubness_pr.nearest_neighbors(real, 3).fallback_rows == 0
    relu = np.maximum(np.random.default_rng(0).standard_normal((300, 256)), 0).astype(np.float32)
    x = torch.from_numpy(relu)
    assert choose_frame([x], [SetStats.of(x)]).identity
    tiny = torch.from_numpy(relu * np.float32(2.0**-100))
    assert choose_frame([tiny], [SetStats.of(tiny)]).exponent == 100 - 4  # |x|^2 ~ 2^7 * 2^-200


def test_collapsed_set_is_settled_by_the_screen_and_identical_rows_without_distances():
    """A set collapsed onto one point is screened centred: no fallback. A set of identical rows
    (a generator ignoring its input) needs no distance at all: every neighbour is a copy."""
    _, fake = hard_cases.collapsed(1e-3)
    assert hubness_pr.nearest_neighbors(fake, 3).fallback_rows == 0
    same = np.repeat(np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32), 3000, axis=0)
    g = hubness_pr.nearest_neighbors(same, 5)
    assert g.fallback_rows == 3000
    assert g.indices[0].tolist() == [1, 2, 3, 4, 5] and g.indices[2].tolist() == [0, 1, 3, 4, 5]
    assert (g.indices[10:] == np.arange(5)).all() and (g.sq_distances == 0).all()
    np.testing.assert_array_equal(g.k_occurrence(5)[:6], [2999, 2999, 2999, 2999, 2999, 5])


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_a_callers_matmul_precision_is_kept_and_does_not_change_results(precision):
    """A caller that allows TF32/bf16 matmuls (torch.set_float32_matmul_precision, as training
    frameworks do) gets the same exact results, call after call, and its setting back: the exact
    products run at "highest" inside and restore the caller's precision without leaving torch in its
    "mix of legacy and new APIs" state (which made the second call raise)."""
    import torch
    real, fake = hard_cases.offset(4000.0)
    reference = hubness_pr.evaluate(real=real, fake=fake, metrics=("pr", "dc"))
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        runs = [hubness_pr.evaluate(real=real, fake=fake, metrics=("pr", "dc")) for _ in range(2)]
        assert torch.get_float32_matmul_precision() == precision
    finally:
        torch.set_float32_matmul_precision(before)
    for ev in runs:
        assert ev.pr == reference.pr and ev.dc == reference.dc
