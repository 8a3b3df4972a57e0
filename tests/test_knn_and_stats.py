"""k-NN structure and hubness statistics against brute force, scipy and hand-computed values."""
import numpy as np
import pytest
import scipy.stats

import hubness_pr
from hubness_pr.engine.distances import tile_side
from hubness_pr.metrics.hubness import gini_coefficient, robin_hood_index
from tests import oracle


pytestmark = pytest.mark.usefixtures("kernel_route")  # every test on both tile routes

@pytest.mark.parametrize("n, dim, k", [(5, 2, 4), (37, 3, 3), (260, 10, 6), (301, 64, 1)])
@pytest.mark.parametrize("budget", [2**20, 512 * 2**20])
def test_knn_matches_brute_force(n, dim, k, budget):
    x = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    g = hubness_pr.nearest_neighbors(x, k, memory_budget=budget)
    idx, d = oracle.knn(x, k)
    np.testing.assert_array_equal(g.indices, idx)
    np.testing.assert_allclose(g.sq_distances, d, rtol=1e-12)
    np.testing.assert_allclose(g.radii(k), np.sqrt(d[:, -1]), rtol=1e-12)
    occ = g.k_occurrence(k)
    assert occ.sum() == n * k
    np.testing.assert_array_equal(occ, oracle.k_occurrence(x, k))
    assert not (g.indices == np.arange(n)[:, None]).any()  # self never its own neighbour


def test_tiles_cover_many_blocks_with_smallest_budget():
    assert tile_side(3, 2**20) < 300  # so the n=301 case above crosses tile borders
    assert tile_side(4096, 512 * 2**20) >= 1024


def test_integer_grid_ties_broken_by_index():
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [5, 5]], dtype=np.float32)
    g = hubness_pr.nearest_neighbors(x, 4)
    assert g.indices[0].tolist() == [1, 2, 3, 4]  # four neighbours at distance 1, index order
    np.testing.assert_array_equal(g.sq_distances[0], [1, 1, 1, 1])


def test_too_few_samples_and_bad_k():
    x = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="3 samples are too few for k=3"):
        hubness_pr.nearest_neighbors(x, 3)
    with pytest.raises(ValueError, match="'k' parameter of nearest_neighbors"):
        hubness_pr.nearest_neighbors(x, 0)
    g = hubness_pr.nearest_neighbors(x, 2)
    with pytest.raises(ValueError, match="exceeds the k_max=2"):
        g.radii(3)


def test_hubness_stats_against_scipy_and_hand_values():
    occ = np.array([0, 0, 1, 2, 3, 9, 0, 1])  # sums to 16 = 8 * 2 (k = 2)
    st = hubness_pr.hubness_stats(occ, k=2, hubs_k=3)
    assert st.skewness == pytest.approx(scipy.stats.skew(occ))
    assert (st.max, st.hubs, st.antihubs, st.n) == (9, 2, 3, 8)
    # Robin Hood: 0.5 * sum|O - 2| / 16 = 0.5 * (2+2+1+0+1+7+2+1) / 16
    assert st.robin_hood == pytest.approx(0.5 * 16 / 16)
    # Gini from the mean absolute difference: sum_ij |Oi - Oj| / (2 n^2 mean)
    mad = np.abs(occ[:, None] - occ[None, :]).sum()
    assert st.gini == pytest.approx(mad / (2 * len(occ) ** 2 * occ.mean()))
    assert hubness_pr.hubness_stats(np.full(5, 3), k=3, hubs_k=3).skewness == 0.0
    assert gini_coefficient(np.full(4, 2)) == 0.0 and robin_hood_index(np.full(4, 2)) == 0.0


def test_hubness_grows_with_dimension():
    """A known property of k-NN graphs (Radovanovic et al. 2010): k-occurrence skewness grows with dim."""
    rng = np.random.default_rng(0)
    low = hubness_pr.nearest_neighbors(rng.standard_normal((1500, 2)).astype(np.float32), 5).k_occurrence(5)
    high = hubness_pr.nearest_neighbors(rng.standard_normal((1500, 100)).astype(np.float32), 5).k_occurrence(5)
    assert hubness_pr.hubness_stats(high, k=5, hubs_k=5).skewness > hubness_pr.hubness_stats(low, k=5, hubs_k=5).skewness + 0.5


def test_near_ties_below_float32_screen_resolution_are_ordered_exactly():
    """Large norms (|x|^2 ~ 8e6) and neighbour distances ~1 that differ by 1e-4: the float32 GEMM
    screen cannot order them; the exact re-measure must (indices and radii as the float64 oracle)."""
    base = np.full(8, 1000.0)
    steps = np.array([1.0, 1.0007, 1.0002, 1.0005, 1.0001, 1.0004, 1.0003])
    pts = [base] + [base + s * np.eye(8)[j % 8] * (1 if j < 4 else -1) for j, s in enumerate(steps)]
    x = np.array(pts, dtype=np.float32)
    ref_idx, ref_d = oracle.knn(x, 5)
    for exact in (None, (3, 5)):
        g = hubness_pr.nearest_neighbors(x, 5, exact_ks=exact)
        np.testing.assert_array_equal(g.indices[0], ref_idx[0])
        np.testing.assert_allclose(g.radii(3), np.sqrt(ref_d[:, 2]), rtol=1e-12)
        np.testing.assert_allclose(g.radii(5), np.sqrt(ref_d[:, 4]), rtol=1e-12)
        np.testing.assert_array_equal(g.k_occurrence(3), oracle.k_occurrence(x, 3))


def test_exact_ks_subset():
    x = np.random.default_rng(8).standard_normal((120, 5)).astype(np.float32)
    g = hubness_pr.nearest_neighbors(x, 5, exact_ks=(2, 5))
    idx, d = oracle.knn(x, 5)
    np.testing.assert_allclose(g.sq_radii(2), d[:, 1], rtol=1e-12)
    np.testing.assert_allclose(g.sq_radii(5), d[:, 4], rtol=1e-12)
    np.testing.assert_array_equal(g.indices, idx)
    with pytest.raises(ValueError, match="not computed exactly"):
        g.sq_radii(3)
