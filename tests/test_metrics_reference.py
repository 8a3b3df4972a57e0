"""Metrics against independent references: the float64 brute force in tests/oracle.py, the prdc
package, hand-computed tiny cases and analytic expectations (docs/definitions.md)."""
import numpy as np
import prdc
import pytest
import torch

import hubness_pr
from hubness_pr.reports.results import metric_block
from tests import oracle

pytestmark = pytest.mark.usefixtures("kernel_route")  # every test on both tile routes

SMALL_BUDGETS = [2**20, 8 * 2**20, hubness_pr.DEFAULT_MEMORY_BUDGET]


def make_sets(seed, n_real=230, n_fake=190, dim=12, shift=0.4, scale=1.2):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) * scale + shift).astype(np.float32)
    return real, fake


def assert_matches_oracle(ev, ref):
    assert ev.pr.precision == pytest.approx(ref["precision"], abs=1e-12)
    assert ev.pr.recall == pytest.approx(ref["recall"], abs=1e-12)
    assert ev.dc.density == pytest.approx(ref["density"], abs=1e-12)
    assert ev.dc.coverage == pytest.approx(ref["coverage"], abs=1e-12)
    np.testing.assert_allclose(ev.realism.scores, ref["realism"], rtol=2e-6)
    np.testing.assert_array_equal(np.isnan(ev.rarity.scores), np.isnan(ref["rarity"]))
    np.testing.assert_allclose(ev.rarity.scores, ref["rarity"], rtol=2e-6, equal_nan=True)
    assert ev.epr.precision == pytest.approx(ref["epr_precision"], abs=1e-12)
    assert ev.epr.recall == pytest.approx(ref["epr_recall"], abs=1e-12)
    assert (ev.epr.real_hubs, ev.epr.fake_hubs) == (ref["real_hubs"], ref["fake_hubs"])
    np.testing.assert_array_equal(ev.fake_k_occurrence, ref["occ_fake"])
    np.testing.assert_array_equal(ev.fake_in_real_manifold, ref["in_real"])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", SMALL_BUDGETS)
def test_all_metrics_match_float64_brute_force(seed, budget):
    real, fake = make_sets(seed)
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=budget, device="cpu")
    ref = oracle.all_metrics(real, fake)
    assert_matches_oracle(ev, ref)
    assert ev.hubness_real.hubs == ref["real_hubs"]
    assert ev.hubness_real.max == ref["occ_real"].max()


def test_many_tiles_match_brute_force():
    """Sets spanning several tiles a side (1 MiB budget): tile borders, per-thread column copies,
    the balanced block split and the candidate merges across tiles all take part."""
    real, fake = make_sets(7, n_real=1300, n_fake=1100, dim=8)
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20, device="cpu")
    assert ev.diagnostics["cross_tile_side"] < 400  # so both passes cross tile borders
    ref = oracle.all_metrics(real, fake)
    assert_matches_oracle(ev, ref)
    np.testing.assert_array_equal(ev.hubness_real.max, ref["occ_real"].max())


def test_other_k_values_match_brute_force():
    real, fake = make_sets(5, n_real=150, n_fake=170, dim=6)
    ev = hubness_pr.evaluate(real=real, fake=fake, k=1, dc_k=7, hubs_k=2, memory_budget=2**20)
    ref = oracle.all_metrics(real, fake, k=1, dc_k=7, hubs_k=2)
    assert_matches_oracle(ev, ref)


def test_high_dimensional_relu_features_match_brute_force():
    """VGG-like non-negative features: the regime where |x|^2 + |y|^2 - 2xy cancels most."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((1, 1024))
    real = np.maximum(base + rng.standard_normal((160, 1024)), 0).astype(np.float32)
    fake = np.maximum(base + 1.1 * rng.standard_normal((140, 1024)) + 0.05, 0).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    assert_matches_oracle(ev, oracle.all_metrics(real, fake))


def test_prdc_agrees_on_density_coverage_and_on_pr_without_ties():
    real, fake = make_sets(7, n_real=400, n_fake=350, dim=20, shift=0.2)
    for k in (3, 5):
        ref = prdc.compute_prdc(real, fake, nearest_k=k)
        ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc", k=k, dc_k=k)
        # continuous data: no distance equals a radius, so '<=' (ours) and '<' (prdc) agree
        assert ev.pr.precision == pytest.approx(ref["precision"], abs=1e-12)
        assert ev.pr.recall == pytest.approx(ref["recall"], abs=1e-12)
        assert ev.dc.density == pytest.approx(ref["density"], abs=1e-12)
        assert ev.dc.coverage == pytest.approx(ref["coverage"], abs=1e-12)


def test_prdc_differs_exactly_by_the_boundary_convention_on_ties():
    """On an integer grid distances tie with radii: P&R use '<=' (official), prdc uses '<'."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 4, size=(120, 2)).astype(np.float32)
    fake = rng.integers(0, 4, size=(110, 2)).astype(np.float32) + np.float32(0.0)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc", k=3, dc_k=3)
    ref = prdc.compute_prdc(real, fake, nearest_k=3)
    d = oracle.sq_dists(real, fake)
    r, s = oracle.sq_radii(real, 3), oracle.sq_radii(fake, 3)
    strict_precision = np.mean((d < r[:, None]).any(axis=0))
    # prdc is our oracle under '<' (its radii can differ with duplicates: it drops the smallest
    # distance instead of self; with exact duplicates here that matters, so compare to the oracle)
    assert ev.pr.precision == pytest.approx(np.mean((d <= r[:, None]).any(axis=0)))
    assert ev.pr.recall == pytest.approx(np.mean((d <= s[None, :]).any(axis=1)))
    assert ev.pr.precision >= strict_precision
    assert ev.dc.density == pytest.approx((d < r[:, None]).sum() / (3 * len(fake)))
    assert ev.pr.precision > ref["precision"]  # ties exist, so the conventions really differ here


def test_hand_computed_one_dimensional_case():
    # real points on a line; radii at k=1 are nearest-neighbour gaps
    real = np.array([[0.0], [1.0], [3.0], [6.0]], dtype=np.float32)
    # r (k=1): 0->1, 1->1, 3->2, 6->3 ; median(r) = 1.5 -> kept radii: 1, 1, 0, 0
    fake = np.array([[0.5], [1.0], [4.5], [10.0], [9.0]], dtype=np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc,realism,rarity", k=1, dc_k=1)
    # precision (<=): 0.5 in ball(0,1) yes; 1.0 yes; 4.5 in ball(3,2) yes; 10 no (6+3=9 < 10); 9 yes (=, boundary)
    assert ev.fake_in_real_manifold.tolist() == [True, True, True, False, True]
    assert ev.pr.precision == pytest.approx(4 / 5)
    # fake radii k=1: 0.5->0.5, 1.0->0.5, 4.5->3.5, 10->1, 9->1
    # recall: real 0 within 0.5 of fake 0.5 yes; 1 yes; 3 within 3.5 of 4.5 yes; 6 within 3.5 of 4.5 yes
    assert ev.pr.recall == pytest.approx(1.0)
    # density (<, k=1): 0.5: in (0,1) and (1,1) -> 2; 1.0: ball(0,1) no (=1), ball(1,1) yes (0), ball(3,2) no (=2) -> 1;
    # 4.5: ball(3,2) yes, ball(6,3) yes -> 2; 10: none; 9: ball(6,3) no (=3) -> 0.  total 5 / (1 * 5)
    assert ev.dc.density == pytest.approx(1.0)
    # coverage: nearest fake of 0 is 0.5 (<1 yes), of 1 is 1.0 (0<1 yes), of 3 is 4.5 (1.5<2 yes), of 6 is 4.5 (1.5<3 yes)
    assert ev.dc.coverage == pytest.approx(1.0)
    # realism: max over kept radii (reals 0 and 1, radius 1) of 1/d: 0.5 -> 1/0.5 = 2; 1.0 -> d=0 to real 1 -> inf;
    # 4.5 -> max(1/4.5, 1/3.5); 10 -> 1/9; 9 -> 1/8
    np.testing.assert_allclose(ev.realism.scores, [2.0, np.inf, 1 / 3.5, 1 / 9, 1 / 8])
    # rarity (<, k=1): smallest radius of a ball strictly containing the fake
    # 0.5 -> balls of 0 and 1 (r=1) -> 1; 1.0 -> ball(1,1) -> 1; 4.5 -> balls 3 (2), 6 (3) -> 2; 10, 9 -> undefined
    np.testing.assert_allclose(ev.rarity.scores, [1.0, 1.0, 2.0, np.nan, np.nan])
    summary = metric_block("rarity", ev.rarity)
    assert summary["inside"] == 3 and summary["fraction_inside"] == pytest.approx(0.6)
    assert metric_block("realism", ev.realism)["defined"] == 4


def test_duplicates_and_zero_radii():
    # four copies of one point: with k=3 each copy's 3rd neighbour is another copy at distance 0
    real = np.array([[0, 0]] * 4 + [[5, 0], [0, 5], [5, 5]], dtype=np.float32)
    fake = np.array([[0, 0], [0.1, 0], [5, 5], [9, 9]], dtype=np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc,rarity", k=3, dc_k=3)
    g = hubness_pr.nearest_neighbors(real, 3)
    np.testing.assert_array_equal(g.radii(3)[:4], 0.0)
    # self excluded by index: copy 0's neighbours are copies 1, 2, 3 (ties broken by index)
    assert g.indices[0].tolist() == [1, 2, 3]
    assert g.indices[3].tolist() == [0, 1, 2]
    # fake (0,0) lies in the zero-radius balls under '<=' but not under '<'
    ref = oracle.all_metrics(real, fake, k=3, dc_k=3)
    assert ev.fake_in_real_manifold.tolist() == ref["in_real"].tolist()
    assert ev.fake_in_real_manifold[0]
    assert ev.dc.density == pytest.approx(ref["density"])
    assert ev.dc.coverage == pytest.approx(ref["coverage"])
    np.testing.assert_allclose(ev.rarity.scores, ref["rarity"], equal_nan=True)


def test_random_duplicates_are_exact_despite_float32_cancellation():
    """Large-norm features with duplicated rows: the GEMM screen is noisy at distance 0; the exact
    re-measurement must make copies coincide and zero radii hold under '<='."""
    rng = np.random.default_rng(11)
    base = (rng.standard_normal((60, 256)) + 30).astype(np.float32)
    real = np.concatenate([base, base[:20], base[:20], base[:20]])  # 20 points with 4 copies each
    fake = np.concatenate([base[:10], (rng.standard_normal((50, 256)) + 30).astype(np.float32)])
    ev = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    ref = oracle.all_metrics(real, fake)
    assert_matches_oracle(ev, ref)
    assert ev.fake_in_real_manifold[:10].all()
    assert np.isinf(ev.realism.scores[:10]).sum() == np.isinf(ref["realism"][:10]).sum()


def test_real_against_itself():
    real, _ = make_sets(4, n_real=300, dim=16)
    ev = hubness_pr.evaluate(real=real, fake=real.copy(), metrics="pr,dc,epr")
    assert ev.pr.precision == 1.0 and ev.pr.recall == 1.0
    assert ev.dc.coverage == 1.0
    assert ev.dc.density == 1.0  # exactly: '<' excludes each ball's own k-th neighbour
    assert ev.epr.precision == 1.0 and ev.epr.recall == 1.0


def test_real_against_itself_high_dimensional_density_is_exactly_one():
    rng = np.random.default_rng(9)
    real = np.maximum(rng.standard_normal((400, 2048)) + 0.5, 0).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=real.copy(), metrics="dc", memory_budget=2**20)
    assert ev.dc.density == 1.0 and ev.dc.coverage == 1.0


def test_two_samples_of_one_distribution_analytic_limits():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((3000, 16)).astype(np.float32)
    fake = rng.standard_normal((3000, 16)).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc", k=3, dc_k=5)
    assert ev.dc.coverage == pytest.approx(1 - 2**-5, abs=0.015)
    assert ev.dc.density == pytest.approx(1.0, abs=0.05)
    # P and R of one distribution are symmetric and high; below 1 by the known k=3 bias in 16-d
    assert ev.pr.precision > 0.75 and ev.pr.recall > 0.75
    assert ev.pr.precision == pytest.approx(ev.pr.recall, abs=0.03)
    ref = prdc.compute_prdc(real, fake, nearest_k=3)
    assert ev.pr.precision == pytest.approx(ref["precision"]) and ev.pr.recall == pytest.approx(ref["recall"])


def test_tight_cluster_in_wide_cloud_has_high_precision_low_recall():
    """Guards the classic real/fake swap."""
    rng = np.random.default_rng(2)
    real = (rng.standard_normal((1500, 8)) * 3.0).astype(np.float32)
    fake = (rng.standard_normal((1500, 8)) * 0.3).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake)
    assert ev.pr.precision > 0.95 and ev.pr.recall < 0.2
    assert ev.epr.precision > 0.9 and ev.epr.recall < 0.3
    assert ev.dc.coverage < 0.2
    swapped = hubness_pr.evaluate(real=fake, fake=real, metrics="pr")
    assert swapped.pr.precision < 0.2 and swapped.pr.recall > 0.95


def test_fake_order_permutes_per_sample_results_only():
    real, fake = make_sets(12)
    perm = np.random.default_rng(0).permutation(len(fake))
    a = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    b = hubness_pr.evaluate(real=real, fake=fake[perm], memory_budget=64 * 2**20)
    assert a.pr == b.pr and a.dc == b.dc and a.epr == b.epr
    np.testing.assert_allclose(a.realism.scores[perm], b.realism.scores, rtol=1e-6)
    np.testing.assert_array_equal(a.rarity.scores[perm], b.rarity.scores)
    np.testing.assert_array_equal(a.fake_k_occurrence[perm], b.fake_k_occurrence)


def test_epr_alone_uses_hub_only_pass_and_matches_full_pass():
    real, fake = make_sets(13, n_real=300, n_fake=280)
    full = hubness_pr.evaluate(real=real, fake=fake, metrics="epr,pr")
    alone = hubness_pr.efficient_precision_recall(real=real, fake=fake)
    assert alone == full.epr
    ref = oracle.all_metrics(real, fake)
    assert alone.precision == pytest.approx(ref["epr_precision"])
    assert alone.recall == pytest.approx(ref["epr_recall"])


def test_single_metric_functions_agree_with_evaluate():
    real, fake = make_sets(14)
    ev = hubness_pr.evaluate(real=real, fake=fake, dc_k=4)
    assert hubness_pr.precision_recall(real=real, fake=fake) == ev.pr
    assert hubness_pr.density_coverage(real=real, fake=fake, k=4) == ev.dc
    # realism is a float32-screened ratio: equal to float32 resolution, not bit for bit
    np.testing.assert_allclose(hubness_pr.realism_scores(real=real, fake=fake).scores, ev.realism.scores, rtol=1e-6)
    np.testing.assert_array_equal(hubness_pr.rarity_scores(real=real, fake=fake).scores, ev.rarity.scores)


def test_input_dtypes_are_accepted():
    real, fake = make_sets(15, dim=5)
    base = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,dc")
    ints = hubness_pr.evaluate(real=(real * 100).astype(np.int32), fake=(fake * 100).astype(np.int64),
                            metrics="pr,dc")
    assert 0 <= ints.pr.precision <= 1
    f64 = hubness_pr.evaluate(real=real.astype(np.float64), fake=fake.astype(np.float64), metrics="pr,dc")
    assert f64.pr == base.pr and f64.dc == base.dc
    f16 = hubness_pr.evaluate(real=real.astype(np.float16), fake=fake.astype(np.float16), metrics="pr,dc")
    ref = oracle.all_metrics(real.astype(np.float16).astype(np.float32), fake.astype(np.float16).astype(np.float32))
    assert f16.pr.precision == pytest.approx(ref["precision"])


@pytest.mark.parametrize("bad, message", [
    (dict(k=0), "'k' parameter of evaluate must be an int in the range [1, inf). Got 0"),
    (dict(dc_k=-1), "'dc_k' parameter"),
    (dict(hubs_k=1.5), "'hubs_k' parameter"),
    (dict(metrics="pr,nope"), "Got 'nope' instead"),
    (dict(metrics=""), "non-empty"),
    (dict(device="tpu"), "'device' parameter"),
    (dict(memory_budget=10), "'memory_budget' parameter"),
])
def test_bad_options_name_the_parameter(bad, message):
    real, fake = make_sets(16, n_real=20, n_fake=20)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        hubness_pr.evaluate(real=real, fake=fake, **bad)


@pytest.mark.parametrize("real, fake, message", [
    (np.zeros((10, 3)), np.zeros((10, 4)), "different dimensions: 3 vs 4"),
    (np.zeros((10, 3, 2)), np.zeros((10, 3)), "real: expected a 2-D feature array"),
    (np.zeros((3, 3)), np.zeros((10, 3)), "real has 3 samples; k=5 needs at least 6"),
    (np.zeros((10, 3)), np.zeros((3, 3)), "fake has 3 samples; k=3 needs at least 4"),
    (np.zeros((10, 3)), np.full((10, 3), np.nan), "fake: row 0 contains NaN or Inf"),
    (np.array([["a", "b"]] * 10), np.zeros((10, 2)), "real: expected a numeric feature array"),
    (np.zeros((0, 3)), np.zeros((10, 3)), "empty"),
])
def test_bad_arrays_are_clear_errors(real, fake, message):
    with pytest.raises(ValueError, match=message):
        hubness_pr.evaluate(real=real, fake=fake)


def test_no_hubs_gives_nan_epr_not_an_error():
    real, fake = make_sets(22, n_real=60, n_fake=60)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="epr", hubs_k=10_000)
    assert ev.epr.real_hubs == 0 and ev.epr.fake_hubs == 0
    assert np.isnan(ev.epr.precision) and np.isnan(ev.epr.recall)
    assert hubness_pr.json_safe(hubness_pr.to_dict(ev))["epr"]["precision"] is None


@pytest.mark.parametrize("budget", [2**20, hubness_pr.DEFAULT_MEMORY_BUDGET])
def test_real_rarity_leaves_each_samples_own_ball_out(budget):
    """Rarity of real samples against the other real balls, brute force: min r_i over i != j with
    d(x_j, x_i) < r_i; duplicates included (a copy's ball holds it at distance 0)."""
    real, _ = make_sets(31, n_real=700, dim=6)
    real[5] = real[9]
    got = hubness_pr.real_rarity_scores(real=real, k=3, memory_budget=budget).scores
    d, r = oracle.sq_dists(real, real), oracle.sq_radii(real, 3)
    inside = d < r[:, None]
    np.fill_diagonal(inside, False)
    want = np.sqrt(np.where(inside, r[:, None], np.inf).min(axis=0))
    want[np.isinf(want)] = np.nan
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got).any() and (~np.isnan(got)).any()


def test_real_k_occurrence_and_realism_index():
    real, fake = make_sets(32)
    ev = hubness_pr.evaluate(real=real, fake=fake)
    ref = oracle.all_metrics(real, fake)
    np.testing.assert_array_equal(ev.real_k_occurrence, ref["occ_real"])
    # the real sample named by realism.real_index gives the score: rt / d for that pair
    radii = np.sqrt(oracle.sq_radii(real, 3))
    kept = np.where(radii <= np.median(radii), radii, 0.0)
    idx = ev.realism.real_index
    dist = np.sqrt(oracle.sq_dists(real, fake)[idx, np.arange(len(fake))])
    np.testing.assert_allclose(ev.realism.scores, kept[idx] / dist, rtol=1e-12)
