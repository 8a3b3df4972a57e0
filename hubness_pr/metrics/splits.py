"""Whole-pipeline standard errors: the metrics of S disjoint, seeded subsets ("splits") of both sets,
each evaluated on its own by :func:`hubness_pr.metrics.evaluate` (radii, hubs and all), so that their
spread holds every source of randomness of the run, the radii's included (docs/definitions.md,
"Standard errors").

The subsets are drawn **without replacement**: a bootstrap draw with replacement holds duplicates,
whose k-NN radii are 0 (the collapse pathology), and would measure something else. Split i of the
real set is paired with split i of the generated set. Every split of a set has the same size,
``n // S`` (the remainder is left out), since k-NN metrics move with the sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hubness_pr.engine.inputs import as_feature_matrix, check_int
from hubness_pr.errors import InputError


# Student's t 0.975 quantiles for 1..10 degrees of freedom (tables; scipy.stats.t.ppf(0.975, df))
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281)


def t_quantile_975(df: int) -> float:
    """Student's t 0.975 quantile with ``df`` degrees of freedom: the half-width of a 95 % interval in
    standard errors when the standard error is estimated from ``df + 1`` values (S splits: S - 1).
    A table to 10; beyond, the Cornish-Fisher expansion to 1 / df^2 (within 0.002 of scipy's
    ``t.ppf(0.975, df)`` from 11 on, 0.0004 from 20 on)."""
    if df <= 10:
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def split_indices(n: int, count: int, seed: int, stream: int) -> list[np.ndarray]:
    """``count`` disjoint subsets of ``range(n)``, each of ``n // count`` indices (sorted): consecutive
    slices of ``numpy.random.default_rng((seed, stream)).permutation(n)`` (stream 0: the real set, 1:
    the generated set)."""
    size = n // count
    order = np.random.default_rng((seed, stream)).permutation(n)
    return [np.sort(order[i * size:(i + 1) * size]) for i in range(count)]


@dataclass(frozen=True)
class Splits:
    """The evaluations of S paired splits: ``evaluations[i]`` is real rows ``real_indices[i]`` against
    generated rows ``fake_indices[i]``."""

    count: int
    seed: int
    size_real: int
    size_fake: int
    evaluations: tuple = field(repr=False)
    real_indices: tuple = field(repr=False)
    fake_indices: tuple = field(repr=False)


def evaluate_splits(*, real, fake, count: int, seed: int = 0,
                    real_knn_of: Callable[[np.ndarray], object] | None = None, **options) -> Splits:
    """Evaluate ``count`` (>= 2) disjoint seeded splits of ``real`` (N, dim) and ``fake`` (M, dim)
    (:func:`split_indices`), each with :func:`hubness_pr.metrics.evaluate` and ``options`` (its keyword
    arguments). ``real_knn_of(indices)``: the stored k-NN graph of that real split, or None (computed).
    A split smaller than the metrics need is an InputError naming ``splits``."""
    from hubness_pr.metrics.evaluation import evaluate

    count = check_int(count, "count", "evaluate_splits", 2)
    seed = check_int(seed, "seed", "evaluate_splits", 0)
    real, fake = as_feature_matrix(real, "real"), as_feature_matrix(fake, "fake")
    sides = [split_indices(len(x), count, seed, stream) for stream, x in enumerate((real, fake))]
    evaluations = []
    for real_rows, fake_rows in zip(*sides):
        graph = real_knn_of(real_rows) if real_knn_of is not None else None
        try:
            evaluations.append(evaluate(real=real[real_rows], fake=fake[fake_rows], real_knn=graph, **options))
        except InputError as exc:
            if exc.role not in ("real", "fake"):
                raise
            raise InputError(f"{count} splits of {len(real)} real and {len(fake)} generated samples hold "
                             f"{len(real_rows)} and {len(fake_rows)} samples each: {exc.message}", option="--splits",
                             value=count) from None
    return Splits(count=count, seed=seed, size_real=len(sides[0][0]), size_fake=len(sides[1][0]),
                  evaluations=tuple(evaluations), real_indices=tuple(sides[0]), fake_indices=tuple(sides[1]))
