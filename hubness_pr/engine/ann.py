"""Approximate k-NN for eP&R's hub selection: a faiss HNSW index decides the k-occurrence.

eP&R needs from the k-NN graph of each set only which samples are hubs (k-occurrence >= t); the
paper argues that hub selection is insensitive to small errors of the neighbour lists. With
``evaluate(..., knn="hnsw")`` the k nearest neighbours of every sample come from an HNSW graph
(faiss ``IndexHNSWFlat``, squared L2, float32), hubs are chosen from their k-occurrence, and
everything after selection is exact: each hub's radius is its exact k-th neighbour distance in the
whole set (:func:`hubness_pr.engine.knn.neighbors_of`) and the hub cross pass is the exact engine's.

Every run measures the index against the exact engine on a seeded sample of queries
(:func:`quality`): recall@k, and the agreement of the k-occurrence those queries give.

faiss is optional (``pip install 'hubness-pr[ann]'``, which installs ``faiss-cpu``). faiss has no HNSW
index on GPUs, so the index is built and searched on the CPU whatever the device (the exact passes
after selection run on the device); on a GPU the exact engine is fast enough that this route rarely
pays (see the README).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from hubness_pr.engine.inputs import check_int
from hubness_pr.engine.distances import DEFAULT_MEMORY_BUDGET, exact_sq_dist

KNN_METHODS = ("exact", "hnsw")
INSTALL_HINT = "pip install 'hubness-pr[ann]' (or pip install faiss-cpu)"


@dataclass(frozen=True)
class HnswOptions:
    """Index parameters: ``m`` links a node (faiss ``M``), ``ef_construction`` and ``ef_search`` the
    candidate lists while building and searching (``ef_search`` at least k + 1), ``sample`` the
    queries of the quality check, ``seed`` their choice, ``threads`` faiss's OpenMP threads (0: all).

    ``min_recall``: where the check's recall@k falls below it, ``ef_search`` is doubled (up to
    ``max_ef_search``) and every sample searched again in the same index, until it is reached (0: off;
    needs ``sample`` > 0). Recall at a fixed ``ef_search`` falls as the set grows (measured:
    0.985 at 50,000 x 512, 0.91 at 200,000 x 512), so a floor keeps large runs from degrading silently."""

    m: int = 16
    ef_construction: int = 40
    ef_search: int = 32
    sample: int = 1000
    seed: int = 0
    threads: int = 0
    min_recall: float = 0.9
    max_ef_search: int = 512

    def __post_init__(self):
        for name, low in (("m", 2), ("ef_construction", 1), ("ef_search", 1), ("sample", 0), ("threads", 0),
                          ("max_ef_search", 1)):
            check_int(getattr(self, name), name, "HnswOptions", low)
        if isinstance(self.min_recall, bool) or not isinstance(self.min_recall, (int, float)) \
                or not 0.0 <= self.min_recall <= 1.0:
            raise ValueError(f"The 'min_recall' parameter of HnswOptions must be a number in [0, 1]. "
                             f"Got {self.min_recall!r}.")
        if self.min_recall > 0 and self.sample == 0:
            raise ValueError("The 'min_recall' parameter of HnswOptions needs the quality check: sample > 0 "
                             "(or min_recall=0).")

    def to_dict(self) -> dict:
        return asdict(self)


def load_faiss():
    """The faiss module, or one clear error naming what to install."""
    try:
        import faiss
    except ImportError:
        raise ImportError(f"knn='hnsw' needs faiss, which is not installed: {INSTALL_HINT}") from None
    return faiss


def hnsw_neighbors(features: np.ndarray, k: int, options: HnswOptions = HnswOptions()) -> np.ndarray:
    """The approximate k nearest neighbours of every sample within its set, self excluded: int64 (n, k),
    searched once at ``options.ef_search`` (no check; see :func:`hnsw_select`)."""
    return hnsw_select(features, k, options)[0]


def hnsw_select(features: np.ndarray, k: int, options: HnswOptions = HnswOptions(),
                check: Callable[[np.ndarray], dict] | None = None) -> tuple[np.ndarray, dict]:
    """The approximate k nearest neighbours of every sample within its set, self excluded, and the
    report of ``check`` (called with them; :func:`quality` in a run) plus ``ef_search_used``.

    The index holds every sample; each is searched for k + 1 neighbours and itself is dropped (or the
    last one, where the index did not return it: duplicates at distance 0). Where ``check`` reports a
    ``recall_at_k`` below ``options.min_recall``, ``ef_search`` is doubled and every sample searched
    again, up to ``options.max_ef_search``; ``tries`` then lists each efSearch and its recall."""
    faiss = load_faiss()
    x = np.ascontiguousarray(features, dtype=np.float32)
    n, dim = x.shape
    threads = faiss.omp_get_max_threads()  # a process-wide setting: restored below
    if options.threads:
        faiss.omp_set_num_threads(options.threads)
    ef, tries = max(options.ef_search, k + 1), []
    try:
        index = faiss.IndexHNSWFlat(dim, options.m)
        index.hnsw.efConstruction = options.ef_construction
        index.add(x)
        while True:
            index.hnsw.efSearch = ef
            found = _without_self(_search(index, x, k + 1), k)
            report = check(found) if check is not None else {}
            recall = report.get("recall_at_k")
            tries.append({"ef_search": ef, "recall_at_k": recall})
            if recall is None or recall >= options.min_recall or ef >= options.max_ef_search:
                break
            ef = min(2 * ef, max(options.max_ef_search, k + 1))
        del index
    finally:
        faiss.omp_set_num_threads(threads)
    report = dict(report, ef_search_used=ef)
    if len(tries) > 1:
        report["tries"] = tries
    return found, report


def _search(index, x: np.ndarray, count: int) -> np.ndarray:
    found = np.empty((x.shape[0], count), dtype=np.int64)
    step = 65536
    for start in range(0, x.shape[0], step):
        _, found[start:start + step] = index.search(x[start:start + step], count)
    return found


def _without_self(found: np.ndarray, k: int) -> np.ndarray:
    """(n, k + 1) search results -> (n, k): each row's own index dropped (else its last entry), gaps
    (-1: the graph returned fewer than k + 1) filled from the rest of the set."""
    n = found.shape[0]
    own = found == np.arange(n)[:, None]
    drop = own.copy()
    drop[~own.any(axis=1), k] = True  # self not returned: drop the farthest
    drop &= np.cumsum(drop, axis=1) == 1  # one entry a row
    out = found[~drop].reshape(n, k)
    missing = out < 0
    if missing.any():  # the graph returned fewer than k (tiny or degenerate sets): fill from the rest
        rows = np.flatnonzero(missing.any(axis=1))
        for r in rows:
            have = [j for j in out[r] if j >= 0 and j != r]
            extra = [j for j in range(n) if j != r and j not in have][: k - len(have)]
            out[r] = have + extra
    return out


def k_occurrence(indices: np.ndarray, n: int, k: int) -> np.ndarray:
    """How many samples list each sample among their first k neighbours: int64 (n,)."""
    return np.bincount(indices[:, :k].ravel(), minlength=n).astype(np.int64)


def quality(features, indices: np.ndarray, k: int, hubs_k: int, options: HnswOptions, *, device="auto",
            memory_budget: int = DEFAULT_MEMORY_BUDGET, fused: bool | None = None, ctx=None) -> dict:
    """The index against the exact engine, on ``options.sample`` seeded queries of the set.

    * ``recall_at_k``: the share of the sampled queries' k approximate neighbours that are true k
      nearest neighbours: whose exact distance is at most the query's exact k-th neighbour distance
      (:func:`hubness_pr.engine.knn.neighbors_of`; a neighbour tied with the k-th counts as right).
    * ``k_occurrence_agreement``: the k-occurrence the sampled queries give (each query adds one to
      each of its k neighbours), from the index against from the exact lists:
      ``1 - sum_x |c_index(x) - c_exact(x)| / (2 k s)``. A wrong neighbour that lands on a sample
      another query missed cancels out, as it does for hub selection, so this is at least the recall.
    """
    from hubness_pr.engine.context import RunContext  # noqa: PLC0415 - context imports torch's heavier parts
    from hubness_pr.engine.knn import neighbors_of

    if ctx is None or ctx.group.active or ctx.progress is not False:
        # ``ctx``: the run's RunContext, ``fused``: the route it chose (None: by size). The check runs in
        # this process alone, without a bar: under torchrun each rank checks its own index, as many
        # times as its search needs (a collective here could wait for a rank that has stopped)
        with RunContext(device=device if ctx is None else ctx.device,
                        memory_budget=memory_budget if ctx is None else ctx.memory_budget,
                        route=None if ctx is None else ctx.route, progress=False,
                        threads=0 if ctx is None else ctx.threads) as own:
            return quality(features, indices, k, hubs_k, options, fused=fused, ctx=own)

    with warnings.catch_warnings():  # a read-only memory-mapped .npy: the tensor is only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
    n = x.shape[0]
    s = min(options.sample, n)
    out = {"sample": s}
    if s == 0:
        return out
    picked = np.sort(np.random.default_rng(options.seed).choice(n, s, replace=False))
    if fused is None:
        fused = ctx.fused(s * n, x.shape[1])
    exact_i, exact_d = neighbors_of(x, picked, k, fused=fused, desc="k-NN check", ctx=ctx)
    rows = torch.from_numpy(np.repeat(picked, k))
    cols = torch.from_numpy(indices[picked, :k].reshape(-1))
    d = exact_sq_dist(x, rows, x, cols, fused=fused, pool=ctx.pool if fused else None).numpy().reshape(s, k)
    out["recall_at_k"] = float(np.mean(d <= exact_d[:, k - 1:k]))
    c_index = np.bincount(indices[picked, :k].ravel(), minlength=n)
    c_exact = np.bincount(exact_i.ravel(), minlength=n)
    out["k_occurrence_agreement"] = float(1.0 - np.abs(c_index - c_exact).sum() / (2 * k * s))
    return out
