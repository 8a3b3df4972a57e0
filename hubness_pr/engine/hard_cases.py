"""Inputs that break float32 k-NN engines: on these a float32 engine goes wrong unless it is exact by
construction. Collapsed generators, large offsets, extreme power-of-two scales, a distance one
rounding from a radius, ulp-near and exact ties, more duplicates than a candidate list holds.

Public, for checking any route or device against another (docs/numerics.md): the test suite runs
every metric on them against a float64 brute force (tests/test_numerics_hard.py, tests/test_cuda.py)
and ``python -m bench.gpu_check`` compares the CPU and CUDA on :func:`all_cases`. Each function
returns float32 arrays (most ``(real, fake)``); seeded, numpy only.
"""
import numpy as np


def relu_mixture(rng, n, dim, centres):
    which = rng.integers(0, len(centres), n)
    return np.maximum(centres[which] + rng.standard_normal((n, dim)), 0).astype(np.float32)


def collapsed(noise, seed=0, n_real=260, n_fake=240, dim=128):
    """Real: a ReLU-Gaussian mixture; fake: one mixture mode plus noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim)) * 2.0
    real = relu_mixture(rng, n_real, dim, centres)
    fake = (np.maximum(centres[2], 0) + noise * rng.standard_normal((n_fake, dim))).astype(np.float32)
    return real, fake


def partly_collapsed(seed=5, dim=64):
    """A cluster of near-duplicates far from the centre of a spread set, in both sets."""
    rng = np.random.default_rng(seed)
    spread = rng.standard_normal((200, dim)).astype(np.float32) * 3
    anchor = np.full(dim, 40.0)
    cluster = (anchor + 1e-4 * rng.standard_normal((120, dim))).astype(np.float32)
    real = np.concatenate([spread, cluster])[rng.permutation(320)]
    fake = np.concatenate([rng.standard_normal((150, dim)).astype(np.float32) * 3,
                           (anchor + 1e-4 * rng.standard_normal((60, dim))).astype(np.float32)])
    return real, fake


def offset(value, seed=None, n_real=300, n_fake=250, dim=48, spread=0.01):
    rng = np.random.default_rng(int(abs(value)) if seed is None else seed)
    real = (value + spread * rng.standard_normal((n_real, dim))).astype(np.float32)
    fake = (value + spread * rng.standard_normal((n_fake, dim))).astype(np.float32)
    return real, fake


def grid(seed, n, dim, step):
    """Values on a grid of ``step`` with few significant bits: every power-of-two scaling of them
    from 2^-120 to 2^60 is exact in float32 (subnormals included)."""
    rng = np.random.default_rng(seed)
    return (np.round(rng.standard_normal((n, dim)) * 3 / step) * step).astype(np.float32)


def scaled(exponent):
    """Grid data and the same data times 2**exponent (exactly): ``(real, fake, real_s, fake_s)``."""
    real = grid(1, 240, 10, 2.0**-6)
    fake = grid(2, 220, 10, 2.0**-6) + np.float32(0.25)
    scale = np.float32(2.0**exponent)
    return real, fake, real * scale, fake * scale


def half_integer_grid(seed=8, n_real=700, n_fake=650, dim=3):
    """Features rounded to a half-integer grid: many exactly equal distances."""
    rng = np.random.default_rng(seed)
    real = (np.round(rng.standard_normal((n_real, dim)) * 2) / 2).astype(np.float32)
    fake = (np.round(rng.standard_normal((n_fake, dim)) * 2) / 2 + 0.5).astype(np.float32)
    return real, fake


def ulp_ties(dim=12, offset=3000.0):
    """A point with a large norm and neighbours at distances that tie exactly or differ by one
    float32 ulp of a coordinate (one set: use it as real and as fake)."""
    base = np.full(dim, offset, dtype=np.float32)
    one = np.float32(1.0)
    up = np.nextafter(one, np.float32(2))
    steps = [one, up, one, np.nextafter(one, np.float32(0)), one, np.nextafter(up, np.float32(2)), one,
             np.float32(1.5)]
    eye = np.eye(dim, dtype=np.float32)
    pts = [base] + [base + s * eye[j] * (1 if j % 2 else -1) for j, s in enumerate(steps)]
    return np.array(pts, dtype=np.float32)


def many_duplicates(seed=12, copies=40, dim=16):
    """More exact copies of one point than k plus the spare candidates (one set)."""
    rng = np.random.default_rng(seed)
    point = rng.standard_normal(dim).astype(np.float32)
    others = rng.standard_normal((90, dim)).astype(np.float32)
    x = np.concatenate([others[:30], np.repeat(point[None], copies, 0), others[30:]])
    return x[rng.permutation(len(x))]


def radius_rounding():
    """Real (0,0), (-1,0), k=1: radius exactly 1; fake (0.6, 0.8) lies at squared distance
    1.0000000477 from (0,0), which rounds to 1 in float32 (outside under '<=')."""
    real = np.array([[0, 0], [-1, 0]], dtype=np.float32)
    fake = np.array([[0.6, 0.8], [9, 9], [9, 10]], dtype=np.float32)
    return real, fake


def all_cases():
    """name -> (real, fake, evaluate options) for a CPU vs CUDA comparison of every metric."""
    cases = {f"collapse_{noise:g}": (*collapsed(noise, seed=i), {}) for i, noise in enumerate((1e-2, 1e-3, 1e-5))}
    cases["partly_collapsed"] = (*partly_collapsed(), {})
    for value in (10.0, -300.0, 4000.0):
        cases[f"offset_{value:g}"] = (*offset(value), {})
    for exponent in (-120, -60, 60):
        cases[f"scale_2^{exponent}"] = (*scaled(exponent)[2:], {})
    cases["half_integer_grid"] = (*half_integer_grid(), {})
    x = ulp_ties()
    cases["ulp_ties"] = (x, x[::-1].copy(), dict(k=3, dc_k=4))
    d = many_duplicates()
    cases["many_duplicates"] = (d, d[::-1].copy(), {})
    cases["radius_rounding"] = (*radius_rounding(), dict(k=1, dc_k=1))
    return cases
