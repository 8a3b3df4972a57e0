"""Hubness statistics of a k-occurrence vector (docs/definitions.md, "Hubness statistics").

All measures take O_k with self excluded (it sums to n * k). They are a few lines each, so they
live here rather than in scikit-hubness (which cannot be installed on Python 3.11 and counts a
point among its own neighbours).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hubness_pr.engine.inputs import check_int
from hubness_pr.metrics.registry import Metric, Passes, register


@dataclass(frozen=True)
class HubnessStats:
    """Hubness of one set.

    Attributes:
        skewness: third standardised moment of O_k (population moments); 0 for a constant O_k.
        max: largest k-occurrence.
        hubs: number of samples with O_k >= hubs_k.
        antihubs: number of samples with O_k == 0.
        robin_hood: Robin Hood index, 0.5 * sum|O - k| / sum(O), in [0, 1).
        gini: Gini coefficient of O_k, in [0, 1).
        n, k, hubs_k: size of the set, neighbourhood size and hub threshold used.
    """

    skewness: float
    max: int
    hubs: int
    antihubs: int
    robin_hood: float
    gini: float
    n: int
    k: int
    hubs_k: int


def k_occurrence_skewness(occ: np.ndarray) -> float:
    o = np.asarray(occ, dtype=np.float64)
    centred = o - o.mean()
    var = np.mean(centred**2)
    if var == 0.0:
        return 0.0
    return float(np.mean(centred**3) / var**1.5)


def robin_hood_index(occ: np.ndarray) -> float:
    o = np.asarray(occ, dtype=np.float64)
    total = o.sum()
    return 0.0 if total == 0 else float(0.5 * np.abs(o - o.mean()).sum() / total)


def gini_coefficient(occ: np.ndarray) -> float:
    o = np.sort(np.asarray(occ, dtype=np.float64))
    n, total = o.size, o.sum()
    if total == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * ranks - n - 1) * o) / (n * total))


def hubness_stats(k_occurrence: np.ndarray, *, k: int, hubs_k: int) -> HubnessStats:
    """Summarise a k-occurrence vector (int (n,), self excluded) into :class:`HubnessStats`."""
    k = check_int(k, "k", "hubness_stats", 1)
    hubs_k = check_int(hubs_k, "hubs_k", "hubness_stats", 1)
    occ = np.asarray(k_occurrence)
    if occ.ndim != 1 or occ.size == 0:
        raise ValueError(f"k_occurrence must be a non-empty 1-D array, got shape {occ.shape}")
    return HubnessStats(
        skewness=k_occurrence_skewness(occ),
        max=int(occ.max()),
        hubs=int(np.count_nonzero(occ >= hubs_k)),
        antihubs=int(np.count_nonzero(occ == 0)),
        robin_hood=robin_hood_index(occ),
        gini=gini_coefficient(occ),
        n=int(occ.size),
        k=k,
        hubs_k=hubs_k,
    )


@dataclass(frozen=True)
class SetsHubness:
    """The hubness statistics of the real set and of the fake set (each within itself)."""

    real: HubnessStats
    fake: HubnessStats


def _finish(p: Passes) -> SetsHubness:
    o = p.options
    return SetsHubness(real=hubness_stats(p.real_occurrence, k=o.k, hubs_k=o.hubs_k),
                       fake=hubness_stats(p.fake_occurrence, k=o.k, hubs_k=o.hubs_k))


register(Metric("hubness", _finish, real_radii=("k",), fake_radii=("k",), hubs=True,
                order=60, doc="hubness statistics of the k-occurrence in each set"))
