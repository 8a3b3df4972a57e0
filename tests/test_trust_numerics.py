"""Issue 17 (trust round 3): realism at extreme ratios, non-float32 memory-mapped inputs, inputs
truncated during a run, the gallery's size and non-UTF-8 image names."""
import numpy as np
import pytest

import hubness
from tests import oracle


# ----------------------------------------------------------------------------------------------
# Realism in float64 on both routes, against the float64 brute force
# ----------------------------------------------------------------------------------------------

def oracle_realism(real, fake, k):
    """Each fake's realism (float64) and the real giving it (lowest index among equal ratios; -1 where
    every ratio is 0), from the brute force's distances: max_i rt_i / d(y, x_i)."""
    d = np.sqrt(oracle.sq_dists(real, fake))
    radii = np.sqrt(oracle.sq_radii(real, k))
    kept = np.where(radii <= np.median(radii), radii, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = kept[:, None] / d
    ratio[np.isnan(ratio)] = 0.0
    best = ratio.max(axis=0)
    index = np.where(best > 0, ratio.argmax(axis=0), -1)
    return best, index, ratio


def clusters_of_many_scales(seed):
    """Reals in clusters at scales 1e-30 ... 1e4, each cluster where float32 resolves it; the four
    smallest keep their realism radii (1e-30 to ~1: squared ratios spanning 1e60), the four largest
    are pruned. Each fake lies 0.05 scale from a real of a kept cluster (a clear winner)."""
    rng = np.random.default_rng(seed)
    dim = 8
    reals, fakes = [], []
    for axis, (scale, centre) in enumerate([(1e-30, 0.0), (1e-20, 1e-18), (1e-10, 1e-8), (1.0, 50.0),
                                            (10.0, 500.0), (1e2, 5e3), (1e3, 5e4), (1e4, 5e5)]):
        c = np.zeros(dim)
        c[axis] = centre
        x = c + scale * rng.normal(size=(6, dim))
        reals.append(x)
        if scale <= 1.0:
            fakes.append(x[rng.choice(6, 3, replace=False)] + 0.05 * scale * _unit(rng, 3, dim))
    order = rng.permutation(48)  # clusters interleaved in index order
    return np.concatenate(reals)[order].astype(np.float32), np.concatenate(fakes).astype(np.float32)


def twins_beyond_float32(seed):
    """Two reals 1e-24 apart at the origin with radii ~1 among reals at scale 1; fakes 1e-25 from the
    later twin: squared ratios ~1e50 and ~1e48 (both beyond float32), the larger one the winner."""
    rng = np.random.default_rng(seed)
    dim = 5
    twins = np.zeros((2, dim))
    twins[0, 1] = 1e-24
    others = _unit(rng, 10, dim) * rng.uniform(1.0, 3.0, size=(10, 1))
    real = np.concatenate([twins, others])
    fake = np.zeros((3, dim))
    fake[:, 2] = [1e-25, -2e-25, 3e-25]
    fake = np.concatenate([fake, others[:4] + 0.02 * _unit(rng, 4, dim)])
    return real.astype(np.float32), fake.astype(np.float32)


def _unit(rng, n, dim):
    v = rng.normal(size=(n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def tiny_realism_set(seed):
    """Reals at scale 1e-20 near the origin, fakes 1e19..1e20 away: realism scores near 1e-40 (squared
    1e-80, below float32's smallest number)."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(20, 5)) * 1e-20
    fake = _unit(rng, 8, 5) * rng.uniform(1e19, 1e20, size=(8, 1))
    return real.astype(np.float32), fake.astype(np.float32)


def _check_against_oracle(real, fake, k=3, memory_budget=2**20):
    want, index, ratio = oracle_realism(real, fake, k)
    # the data's winners are clear (no near-tie within the float32 screen's error): the test is of range
    top2 = np.sort(ratio, axis=0)[-2:]
    assert np.all((top2[1] == top2[0]) | (top2[1] > (1 + 1e-3) * top2[0])), "test data: a near tie"
    ev = hubness.evaluate(real=real, fake=fake, metrics=("realism",), k=k, memory_budget=memory_budget)
    np.testing.assert_array_equal(ev.realism.real_index, index)
    np.testing.assert_allclose(ev.realism.scores, want, rtol=1e-13, atol=0)
    return ev, want


@pytest.mark.parametrize("seed", [0, 1])
def test_realism_radii_differing_by_1e30(kernel_route, seed):
    real, fake = clusters_of_many_scales(seed)
    ev, want = _check_against_oracle(real, fake)
    radii = np.sqrt(oracle.sq_radii(real, 3))
    kept = radii[radii <= np.median(radii)]
    assert kept.max() / kept.min() > 1e29  # what the data is about


@pytest.mark.parametrize("seed", [0, 1])
def test_realism_ratios_beyond_float32(kernel_route, seed):
    real, fake = twins_beyond_float32(seed)
    ev, want = _check_against_oracle(real, fake)
    assert np.all(want[:3] > 1e20) and np.all(ev.realism.real_index[:3] == 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_realism_of_1e_minus_40_is_not_zero(kernel_route, seed):
    real, fake = tiny_realism_set(seed)
    ev, want = _check_against_oracle(real, fake)
    assert np.all((want > 1e-42) & (want < 1e-38))
    assert np.all(ev.realism.scores > 0) and np.all(ev.realism.real_index >= 0)


@pytest.mark.parametrize("exponent", [60, -60])
def test_realism_of_features_scaled_by_powers_of_two(kernel_route, exponent):
    rng = np.random.default_rng(exponent + 100)
    real = rng.normal(size=(40, 7)).astype(np.float32)
    fake = (rng.normal(size=(30, 7)) * 1.3).astype(np.float32)
    base = hubness.evaluate(real=real, fake=fake, metrics=("realism",), k=3)
    scaled_real, scaled_fake = np.ldexp(real, exponent), np.ldexp(fake, exponent)
    ev, _ = _check_against_oracle(scaled_real, scaled_fake)
    # a power of two scales every distance exactly: the same reals and the same bits
    np.testing.assert_array_equal(ev.realism.real_index, base.realism.real_index)
    np.testing.assert_array_equal(ev.realism.scores, base.realism.scores)


def test_realism_routes_pick_the_same_reals(monkeypatch):
    real, fake = clusters_of_many_scales(3)
    got = {}
    for route in ("fused", "torch"):
        monkeypatch.setenv("HUBNESS_KERNELS", route)
        ev = hubness.evaluate(real=real, fake=fake, metrics=("realism",), k=3, memory_budget=2**20)
        got[route] = ev.realism
    np.testing.assert_array_equal(got["fused"].real_index, got["torch"].real_index)
    np.testing.assert_array_equal(got["fused"].scores, got["torch"].scores)
