"""Feature sets the cross metrics' tests share (PR-Cover, P-precision/recall, clipped density/coverage):
random, integer-grid (exact ties at the balls' borders) and duplicate-laden pairs, and the per-case
results of a metric on a process group (for tests/ranks.py)."""
import numpy as np


def random_sets(seed, n_real, n_fake, dim, shift=0.3, scale=1.2):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) * scale + shift).astype(np.float32)
    return real, fake


def grid_sets(seed, n_real, n_fake, dim):
    """Points of a small integer grid: many exact ties, at the balls' borders too (exact in float64)."""
    rng = np.random.default_rng(seed)
    real = rng.integers(0, 4, (n_real, dim)).astype(np.float32)
    fake = rng.integers(0, 5, (n_fake, dim)).astype(np.float32)
    return real, fake


def duplicate_sets(seed, n_real, n_fake, dim):
    """Fakes that copy reals (pairs at distance 0), and repeated samples within each set."""
    real, fake = random_sets(seed, n_real, n_fake, dim)
    fake[: n_fake // 3] = real[: n_fake // 3]
    real[10:20] = real[0]
    fake[-12:] = fake[-13]
    return real, fake


def on_two_ranks(cases: dict, ranked, tmp_path):
    """Yield ``(rank, name, real, fake, the rank's result, one process's result)`` for each of 2 Gloo
    ranks and each case, ``ranked(group)`` (a module-level function, e.g. of :func:`on_group`) run on
    the spawned ranks and in this process (tests/ranks.py)."""
    from tests import ranks
    single = ranks.single(ranked)
    for rank, results in enumerate(ranks.on_ranks(ranked, 2, tmp_path)):
        for name in cases:
            real, fake = cases[name]()
            yield rank, name, real, fake, results[name], single[name]


def on_group(cases: dict, ours, group) -> dict:
    """``ours(real, fake, group=group, memory_budget=2**20)`` of each case (name -> a function making
    the pair), as JSON-able lists, in name order."""
    out = {}
    for name in sorted(cases):
        real, fake = cases[name]()
        out[name] = list(ours(real, fake, group=group, memory_budget=2**20))
    return out
