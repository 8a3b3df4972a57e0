"""What the metrics are expected to be when the generated set comes from the real set's distribution,
at the run's N (real), M (generated) and k: the reference point of each value (docs/definitions.md,
"Expected values").

* density: exactly 1 (Naeem et al., ICML 2020): around a real x_i, a fake is among the k nearest of
  the N - 1 other reals and itself with probability k / N, so each real ball holds k M / N fakes on
  average, and the N balls k M in all;
* coverage: ``1 - (N-1)(N-2)...(N-k) / ((N+M-1)(N+M-2)...(N+M-k))`` (Naeem et al. 2020): x_i is
  covered when one of its k nearest among the N - 1 other reals and the M fakes is a fake; with all
  N + M samples exchangeable, the k nearest are all reals with probability C(N-1, k) / C(N+M-1, k).
  Both hold for any continuous distribution and any dimension;
* precision and recall: no formula (they depend on the dimension and the shape of the distribution):
  a seeded simulation, both sets drawn from one standard Gaussian in :data:`SIMULATION_DIM`
  dimensions, through :func:`hubness_pr.metrics.evaluate` itself (passed in: ``evaluate``; this
  module does not import it, which imports this one), averaged over up to 10 draws
  (:func:`simulation_draws`), and kept in a small in-process cache keyed by (N, M, k, dim, seed).
"""
from __future__ import annotations

import math

import numpy as np

SIMULATION_DIM = 64       # dimension of the Gaussians of the P&R simulation
SIMULATION_SEED = 0
# draws x min(N, M) aimed at: a binomial standard error of the simulated P or R of at most about
# sqrt(0.25 / 10000) = 0.005, reached from N = 1,000 on; below, at most 10 draws (100 samples: ~0.016)
SIMULATION_SAMPLES = 10_000
SIMULATION_MAX_DRAWS = 10
_CACHE_SIZE = 64
_simulated: dict = {}     # (n_real, n_fake, k, dim, seed) -> (precision, recall, draws)


def expected_coverage(n_real: int, n_fake: int, k: int) -> float:
    """E[coverage] for identical distributions: ``1 - prod_{i=1..k} (N - i) / (N + M - i)``."""
    if n_real <= k:
        return float("nan")
    return 1.0 - math.prod((n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1))


def simulation_draws(n_real: int, n_fake: int) -> int:
    """How many pairs of sets the P&R simulation draws at these sizes."""
    return max(1, min(SIMULATION_MAX_DRAWS, math.ceil(SIMULATION_SAMPLES / max(1, min(n_real, n_fake)))))


def simulated_precision_recall(n_real: int, n_fake: int, k: int, *, evaluate, dim: int = SIMULATION_DIM,
                               seed: int = SIMULATION_SEED, ctx=None) -> tuple[float, float, int]:
    """(E[precision], E[recall], draws) for N reals and M fakes of one standard Gaussian in ``dim``
    dimensions, estimated from :func:`simulation_draws` seeded draws (``numpy.random.default_rng((seed,
    N, M, k, draw))``, float32), each evaluated exactly by ``evaluate`` (:func:`hubness_pr.metrics.evaluate`)
    (``ctx``'s device and memory budget, its route where it names one, else the fused CPU kernels; no
    progress bars). Cached in this process."""
    key = (n_real, n_fake, k, dim, seed)
    if key not in _simulated:
        from hubness_pr.engine.context import RunContext

        draws = simulation_draws(n_real, n_fake)
        options = {} if ctx is None else dict(device=ctx.device, memory_budget=ctx.memory_budget)
        route = None if ctx is None else ctx.route
        if route in (None, "auto") and (ctx is None or ctx.device.type == "cpu"):
            route = "fused"  # low-dimensional sets: the fused kernels, ~15x faster than "auto"'s torch (same results)
        values = []
        with RunContext(progress=False, route=route, **options) as sim:
            for draw in range(draws):
                rng = np.random.default_rng((seed, n_real, n_fake, k, draw))
                real = rng.standard_normal((n_real, dim), dtype=np.float32)
                fake = rng.standard_normal((n_fake, dim), dtype=np.float32)
                pr = evaluate(real=real, fake=fake, metrics=("pr",), k=k, ctx=sim).pr
                values.append((pr.precision, pr.recall))
        if len(_simulated) >= _CACHE_SIZE:
            _simulated.pop(next(iter(_simulated)))
        precision, recall = np.mean(values, axis=0)
        _simulated[key] = (float(precision), float(recall), draws)
    return _simulated[key]


def expected_values(names, n_real: int, n_fake: int, *, k: int, dc_k: int, evaluate, ctx=None) -> tuple[dict, dict]:
    """(expected values by metric name, how they were obtained) for the metrics of ``names`` that have
    them (``pr``, ``dc``); the second dict goes into the run's ``params``. ``evaluate``:
    :func:`hubness_pr.metrics.evaluate`, for the simulation."""
    values, how = {}, {}
    if "pr" in names and min(n_real, n_fake) > k:
        precision, recall, draws = simulated_precision_recall(n_real, n_fake, k, evaluate=evaluate, ctx=ctx)
        values["pr"] = {"precision": precision, "recall": recall}
        how["pr"] = {"method": "simulation", "distribution": "standard Gaussian", "dim": SIMULATION_DIM,
                     "draws": draws, "seed": SIMULATION_SEED}
    if "dc" in names:
        values["dc"] = {"density": 1.0, "coverage": expected_coverage(n_real, n_fake, dc_k)}
        how["dc"] = {"method": "closed form (Naeem et al. 2020)"}
    return values, how
