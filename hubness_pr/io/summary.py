"""The k-NN summary of a set, computed once and reused: what every metric needs from the real set.

Researchers score many generator checkpoints against one real set. Every metric reads from the real
set only its own k-NN structure (the exact squared radii at each k used, and the neighbour lists
that give the k-occurrence), which depends on nothing but the real features (after any subset), the
k values and the engine's definitions. A :class:`~hubness_pr.engine.knn.NeighborGraph` stored with the key

    engine version, content digest of the float32 feature matrix, n, dim, k_max, the exact k's

is therefore reusable bit for bit; results with and without it are identical on every decision.

Files: one ``.npz`` per summary (arrays ``knn_indices``, ``knn_sq_distances``, ``knn_key`` (JSON) and
``knn_checksum``, the SHA-256 of the arrays), written atomically. A file is used only if it loads, its
key equals the key asked for, its checksum matches its arrays, its arrays are a valid graph for
that key (shapes, dtypes, indices in range, distinct and never self, finite non-negative sorted
distances), and the graph is consistent with the features (:func:`check_graph`: every listed
distance re-measured exactly, the stored radii equal to them bit for bit, and the exact k-NN of a
random sample of rows recomputed): anything else (another set, other k's, a truncated, damaged or
forged file, an older engine) is reported and recomputed, never trusted. Its arrays are read
within the sizes the key allows (:func:`hubness_pr.io.store.read_arrays`): a member that declares or
inflates to more is refused before it is inflated. A plain checksum only
catches accidents; anyone who can write the file can recompute it, hence the check against the
features. The same arrays can live inside a feature file (``getFeature.py
--knn_k``). :class:`SummaryCache` keeps summaries in a folder keyed by their key, and uses the folder
and a file only when they are the user's alone (a shared folder is refused; nothing is written
through a link or into a FIFO or device).

Beside it, in the same folder under the same rules, the real set's moments and real x real kernel
sums (:class:`hubness_pr.engine.real_stats.RealStats`: what FD, exact KID and CMMD read from the
real set alone) are stored in their own file under a :class:`StatsKey` (engine version, digest, n,
dim, whether the moments are held, the kernels, and the layout that fixes their bits:
:func:`hubness_pr.engine.real_stats.layout`), arrays ``stats_key``, ``stats_checksum``,
``moments_mean``, ``moments_cov`` and per kernel ``<kernel>_xx``, ``<kernel>_xx2``,
``<kernel>_xx_rows`` (float64). They are used only if the key equals the one asked for, every array
has its shape and dtype, is finite, the checksum matches, the covariance is symmetric with a
non-negative diagonal and each kernel's row sums add up to its total; otherwise recomputed with a
warning. Unlike the graph they cannot be checked against the features without recomputing them:
the checksum catches accidents, the private folder keeps others from writing them. A k-NN summary
file is valid without them and they without it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

import numpy as np
import torch

from hubness_pr.errors import CacheMiss, InputError
from hubness_pr.io.outputs import atomic_write, sweep_stale, temp_prefix
from hubness_pr.io.store import feature_digest, read_arrays

from hubness_pr.engine.distances import as_tensor, exact_sq_dist
from hubness_pr.engine.kernel_sums import RealKernelSums
from hubness_pr.engine.knn import NeighborGraph, exact_rows
from hubness_pr.engine.moments import Moments
from hubness_pr.engine.real_stats import RealStats

# Bump when a definition, tie rule or exactness guarantee changes what a summary holds.
ENGINE_VERSION = 1
KEYS = ("knn_key", "knn_indices", "knn_sq_distances", "knn_checksum")
_KEY_CHARS = 2**16  # a stored key's largest JSON (a digest, five numbers and the exact k's)
CHECK_ROWS = 64  # rows of a stored graph whose k nearest neighbours are recomputed before it is used
_CHECK_PAIRS = 2**20  # listed pairs re-measured at a time (exact_sq_dist chunks its float64 work)
_CHECK_BUDGET = 64 * 2**20  # bytes of float64 strips for the sampled rows' exact search


def content_digest(features) -> str:
    """SHA-256 of a feature matrix as float32 C-order rows (shape included): two arrays with the same
    digest give the same k-NN summary. Reads the array in chunks (cheap on memory-mapped files)."""
    return feature_digest(np.asarray(features), np.float32)


@dataclass(frozen=True)
class SummaryKey:
    """What a k-NN summary depends on."""

    digest: str
    n: int
    dim: int
    k_max: int
    exact_ks: tuple
    engine: int = ENGINE_VERSION

    @classmethod
    def of(cls, features, k_max: int, exact_ks, digest: str | None = None) -> SummaryKey:
        x = np.asarray(features)
        return cls(digest=digest or content_digest(x), n=int(x.shape[0]), dim=int(x.shape[1]), k_max=int(k_max),
                   exact_ks=tuple(sorted(set(int(k) for k in exact_ks) | {int(k_max)})))

    def to_json(self) -> str:
        return json.dumps({"engine": self.engine, "digest": self.digest, "n": self.n, "dim": self.dim,
                           "k_max": self.k_max, "exact_ks": list(self.exact_ks)}, sort_keys=True)

    def file_name(self) -> str:
        ks = "-".join(map(str, self.exact_ks))
        return f"knn-{self.digest[:24]}-n{self.n}-k{self.k_max}-exact{ks}-v{self.engine}.npz"


def summary_arrays(graph: NeighborGraph, key: SummaryKey) -> dict:
    """The arrays that store ``graph`` under ``key`` (in a summary file or inside a feature file)."""
    indices = np.ascontiguousarray(graph.indices, dtype=np.int64)
    sq = np.ascontiguousarray(graph.sq_distances, dtype=np.float64)
    if indices.shape != (key.n, key.k_max) or not set(key.exact_ks) <= set(graph.exact_ks):
        raise InputError(f"neighbour graph {indices.shape} (exact k {graph.exact_ks}) does not fit its key "
                         f"(n={key.n}, k_max={key.k_max}, exact k {key.exact_ks})")
    return {"knn_key": np.asarray(key.to_json()), "knn_indices": indices, "knn_sq_distances": sq,
            "knn_checksum": np.asarray(_checksum(indices, sq))}


def graph_from_arrays(arrays, key: SummaryKey, features=None, *, sample: int = CHECK_ROWS,
                      seed=None, ctx=None) -> NeighborGraph:
    """The graph stored in ``arrays`` (a mapping of :data:`KEYS`), if it is valid for ``key``; else
    ValueError saying why. With ``features`` (those ``key`` was made of), the graph is also checked
    against them (:func:`check_graph`, with ``sample`` and ``seed``) before it is trusted."""
    missing = [name for name in KEYS if name not in arrays]
    if missing:
        raise InputError(f"no k-NN summary ({', '.join(missing)} missing)")
    _check_key(arrays["knn_key"], key)
    indices, sq = np.asarray(arrays["knn_indices"]), np.asarray(arrays["knn_sq_distances"])
    if indices.dtype != np.int64 or sq.dtype != np.float64 or indices.shape != (key.n, key.k_max) \
            or sq.shape != indices.shape:
        raise InputError(f"arrays of the wrong shape or type ({indices.shape} {indices.dtype}, {sq.shape} {sq.dtype})")
    if str(np.asarray(arrays["knn_checksum"]).item()) != _checksum(indices, sq):
        raise InputError("checksum mismatch (damaged or edited)")
    graph = NeighborGraph(indices=indices, sq_distances=sq, exact_ks=key.exact_ks)
    if features is None:
        problem = _structure_problem(graph)
        if problem:
            raise InputError(f"not a valid neighbour graph ({problem})")
    else:
        check_graph(features, graph, sample=sample, seed=seed, ctx=ctx)
    return graph


def _check_key(stored_key, key) -> None:
    """ValueError unless the stored key (a JSON string array) is ``key``."""
    try:
        stored = json.loads(str(np.asarray(stored_key).item()))
    except (ValueError, TypeError):
        raise InputError("unreadable key") from None
    wanted = json.loads(key.to_json())
    if not isinstance(stored, dict) or stored != wanted:
        stored = stored if isinstance(stored, dict) else {}
        changed = sorted(name for name in set(stored) | set(wanted) if stored.get(name) != wanted.get(name))
        raise InputError(f"made for other inputs ({', '.join(changed)} differ)")


def check_graph(features, graph: NeighborGraph, *, sample: int = CHECK_ROWS, seed=None, ctx=None) -> None:
    """ValueError (one line saying what) unless ``graph`` is consistent with ``features`` (n, dim),
    at the cost of O(n k dim) plus the exact k-NN of ``sample`` rows, not a k-NN pass.

    1. Structure: every row lists k valid indices, distinct, never the row itself, with finite
       non-negative squared distances in non-decreasing order.
    2. Every listed pair is re-measured with the engine's exact distance
       (:func:`hubness_pr.engine.distances.exact_sq_dist`: float64 squares of the float32 differences, added
       in a fixed order, the same bits on every route), row block by row block. In the columns of
       ``graph.exact_ks`` (the radii the metrics read) the stored value must *equal* it, bit for bit:
       the engine stores exactly that value there (in ``_refine`` scaled by a power of two and back,
       which is exact), so no tolerance is needed and none is allowed. The other columns hold
       float32-screened values the metrics never read; there the measured distance must lie between
       the exact radii around the column (at least the previous exact radius, at most the next),
       as it does for the true neighbours, since each exact k's first k are the true k nearest.
    3. ``sample`` rows (all rows when n is smaller), drawn afresh each call unless ``seed`` is
       given (so whoever wrote the file cannot know which rows are looked at; a genuine graph passes
       whatever the draw), get their exact k nearest neighbours against the whole set with the
       engine's exact search (:func:`hubness_pr.engine.knn.exact_rows`: a float64 screen with per-pair bounds,
       O(sample n dim)); for every exact k their radius must equal the stored one and their first k
       the stored first k (as sets; ties by the lowest index, as the engine breaks them).

    Steps 1-2 close every forgery that changes a radius the metrics read, or lists a neighbour
    outside the radius it is listed under; they cannot prove that the listed neighbours are the
    nearest ones (a sample replaced by a farther one, with its distance stored consistently). Step 3
    catches that on the sampled rows only: a forgery of a fraction f of the rows is missed with
    probability about (1 - f) ** sample.

    ``ctx``: the run's :class:`hubness_pr.engine.context.RunContext`, whose route and threads measure the pairs
    (None: the torch route; the same bits either way).
    """
    indices, sq = np.asarray(graph.indices), np.asarray(graph.sq_distances)
    problem = _structure_problem(graph)
    if problem:
        raise InputError(f"not a valid neighbour graph ({problem})")
    x = as_tensor(features, torch.device("cpu"))
    n, k = indices.shape
    if tuple(x.shape)[0] != n:
        raise InputError(f"a neighbour graph of {n} samples for {tuple(x.shape)[0]} feature rows")
    exact = sorted(kk - 1 for kk in graph.exact_ks if 1 <= kk <= k)
    if not exact or exact[-1] != k - 1:
        raise InputError(f"not a valid neighbour graph (exact k {graph.exact_ks} for k_max {k})")
    above = np.searchsorted(exact, np.arange(k))                # the exact column at or after each column
    below = np.searchsorted(exact, np.arange(k), side="left") - 1  # the exact column before it (-1: none)
    block = max(1, _CHECK_PAIRS // k)
    fused = ctx is not None and ctx.device.type == "cpu" and ctx.fused(n * k, x.shape[1])
    pool = ctx.pool if fused else None
    with torch.inference_mode():
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            i = torch.arange(lo, hi).repeat_interleave(k)
            j = torch.from_numpy(np.ascontiguousarray(indices[lo:hi]).reshape(-1))
            measured = exact_sq_dist(x, i, x, j, fused=fused, pool=pool).numpy().reshape(hi - lo, k)
            stored = sq[lo:hi]
            lower = np.where(below >= 0, stored[:, np.maximum(below, 0)], -np.inf)
            wrong = (measured > stored[:, np.asarray(exact)[above]]) | (measured < lower)
            wrong[:, exact] |= measured[:, exact] != stored[:, exact]
            if wrong.any():
                row, col = (int(v) for v in np.argwhere(wrong)[0])
                raise InputError(f"not the k-NN graph of these features: sample {lo + row}'s neighbour "
                                 f"{indices[lo + row, col]} is stored at squared distance {stored[row, col]!r}, "
                                 f"measured {measured[row, col]!r}")
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=min(n, int(sample)), replace=False)) if sample > 0 else np.zeros(0, np.int64)
        if rows.size:
            r = torch.from_numpy(rows.astype(np.int64))
            centre = x[r].to(torch.float64).mean(dim=0)
            true_i, true_d = (t.numpy() for t in exact_rows(x, r, k, centre, _CHECK_BUDGET, look_for_copies=False,
                                                                 fused=fused, pool=pool))
            for col in exact:
                same = (np.sort(indices[rows, :col + 1], axis=1) == np.sort(true_i[:, :col + 1], axis=1)).all(axis=1) \
                    & (sq[rows, col] == true_d[:, col])
                if not same.all():
                    row = int(rows[np.flatnonzero(~same)[0]])
                    raise InputError(f"not the k-NN graph of these features: sample {row}'s {col + 1} nearest "
                                     f"neighbours are not the ones stored (checked on {rows.size} sampled samples)")


def _structure_problem(graph: NeighborGraph) -> str | None:
    """What makes ``graph`` no neighbour graph at all, whatever the features, or None."""
    indices, sq = np.asarray(graph.indices), np.asarray(graph.sq_distances)
    n = indices.shape[0]
    if indices.ndim != 2 or sq.shape != indices.shape or indices.shape[1] < 1:
        return f"arrays of shapes {indices.shape} and {sq.shape}"
    if (indices < 0).any() or (indices >= n).any():
        return "an index out of range"
    if (indices == np.arange(n)[:, None]).any():
        return "a sample listed as its own neighbour"
    if (np.diff(np.sort(indices, axis=1), axis=1) == 0).any():
        return "a neighbour listed twice in one row"
    if not np.isfinite(sq).all() or (sq < 0).any():
        return "a distance that is negative or not finite"
    if (np.diff(sq, axis=1) < 0).any():
        return "distances out of order"
    return None


def save_summary(path, graph: NeighborGraph, key: SummaryKey) -> None:
    """Write ``graph`` under ``key`` to ``path`` (``.npz``), atomically."""
    with atomic_write(path) as handle:
        np.savez(handle, **summary_arrays(graph, key))


def load_summary(path, key: SummaryKey, features=None, **check) -> NeighborGraph:
    """The summary at ``path`` (a path, or a seekable binary file open for reading) if it is valid
    for ``key`` (and, given ``features``, consistent with them: :func:`graph_from_arrays`);
    ValueError saying why not. Its arrays are read within what ``key`` allows
    (:func:`summary_shapes`): a file whose members declare or inflate to more is refused before
    they are inflated."""
    shapes = summary_shapes(key)
    head = read_arrays(path, {"knn_key": shapes["knn_key"]})  # whose summary, before any array is read
    if head is None:
        raise InputError("no k-NN summary in it (not a .npz file, or no knn_key)")
    _check_key(head["knn_key"], key)
    return graph_from_arrays(read_arrays(path, shapes), key, features, **check)


@dataclass(frozen=True)
class StatsKey:
    """What the real set's stored moments and real x real kernel sums depend on (module docstring)."""

    digest: str
    n: int
    dim: int
    moments: bool
    kernels: tuple
    layout: tuple  # sorted (name, value) pairs of hubness_pr.engine.real_stats.layout
    engine: int = ENGINE_VERSION

    @classmethod
    def of(cls, digest: str, n: int, dim: int, moments: bool, kernels, layout: dict) -> StatsKey:
        return cls(digest=digest, n=int(n), dim=int(dim), moments=bool(moments),
                   kernels=tuple(sorted(set(kernels))), layout=tuple(sorted(layout.items())))

    def to_json(self) -> str:
        return json.dumps({"engine": self.engine, "digest": self.digest, "n": self.n, "dim": self.dim,
                           "moments": self.moments, "kernels": list(self.kernels),
                           "layout": dict(self.layout)}, sort_keys=True)

    def file_name(self) -> str:
        what = "-".join((["moments"] if self.moments else []) + list(self.kernels))
        tag = hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
        return f"stats-{self.digest[:24]}-n{self.n}-d{self.dim}-{what}-{tag}-v{self.engine}.npz"

    def shapes(self) -> dict:
        """The shape and dtype of each array of a stored :class:`RealStats` for this key."""
        out = {"stats_key": ((), f"<U{_KEY_CHARS}"), "stats_checksum": ((), "<U64")}
        if self.moments:
            out.update(moments_mean=((self.dim,), np.float64), moments_cov=((self.dim, self.dim), np.float64),
                       moments_factor=((self.dim, self.dim), np.float64))
        for name in self.kernels:
            out.update({f"{name}_xx": ((), np.float64), f"{name}_xx2": ((), np.float64),
                        f"{name}_xx_rows": ((self.n,), np.float64)})
        return out

    def largest_file(self) -> int:
        return 8 * (self.dim * (2 * self.dim + 1) + len(self.kernels) * (self.n + 2)) + 4 * (_KEY_CHARS + 64) + 2**20


def _stats_names(key: StatsKey) -> list:
    return [name for name in key.shapes() if name not in ("stats_key", "stats_checksum")]


def stats_arrays(stats: RealStats, key: StatsKey) -> dict:
    """The arrays that store ``stats`` under ``key``: ValueError unless it holds what the key says."""
    if stats.n != key.n or stats.dim != key.dim or not stats.covers(key.moments, key.kernels):
        raise InputError(f"real statistics ({stats.n} x {stats.dim}, moments {stats.moments is not None}, kernels "
                         f"{sorted(stats.kernels)}) do not fit their key (n={key.n}, dim={key.dim}, moments "
                         f"{key.moments}, kernels {list(key.kernels)})")
    arrays = {}
    if key.moments:
        arrays.update(moments_mean=stats.moments.mean, moments_cov=stats.moments.cov, moments_factor=stats.moments.factor)
    for name in key.kernels:
        sums = stats.kernels[name]
        arrays.update({f"{name}_xx": sums.xx, f"{name}_xx2": sums.xx2, f"{name}_xx_rows": sums.xx_rows})
    arrays = {name: np.array(value, dtype=np.float64, order="C") for name, value in arrays.items()}  # 0-d stays 0-d
    return {"stats_key": np.asarray(key.to_json()), **arrays,
            "stats_checksum": np.asarray(_checksum(*(arrays[name] for name in _stats_names(key))))}


def stats_from_arrays(arrays, key: StatsKey) -> RealStats:
    """The :class:`RealStats` stored in ``arrays`` if they are valid for ``key`` (module docstring);
    InputError saying why not."""
    shapes = key.shapes()
    missing = [name for name in shapes if name not in arrays]
    if missing:
        raise InputError(f"no real statistics ({', '.join(missing)} missing)")
    _check_key(arrays["stats_key"], key)
    values = {}
    for name in _stats_names(key):
        value = np.asarray(arrays[name])
        if value.dtype != np.float64 or value.shape != tuple(shapes[name][0]):
            raise InputError(f"{name} of the wrong shape or type ({value.shape} {value.dtype})")
        if not np.isfinite(value).all():
            raise InputError(f"{name} holds a value that is not finite")
        values[name] = value
    if str(np.asarray(arrays["stats_checksum"]).item()) != _checksum(*values.values()):
        raise InputError("checksum mismatch (damaged or edited)")
    moments = None
    if key.moments:
        cov = values["moments_cov"]
        if (cov != cov.T).any() or (np.diag(cov) < 0).any():
            raise InputError("not a covariance (not symmetric, or a negative variance)")
        factor = values["moments_factor"]
        scale = float(np.abs(cov).max()) + np.finfo(np.float64).tiny
        if float(np.abs(factor @ factor.T - cov).max()) > 1e-6 * scale:
            raise InputError("the covariance's stored factor does not give it back (F F^T != cov)")
        moments = Moments.with_factor(n=key.n, mean=values["moments_mean"], cov=cov, factor=factor)
    kernels = {}
    for name in key.kernels:
        xx, rows = float(values[f"{name}_xx"]), values[f"{name}_xx_rows"]
        if abs(float(rows.sum()) - xx) > 1e-9 * (float(np.abs(rows).sum()) + 1.0):
            raise InputError(f"{name}: the row sums do not add up to the total")
        kernels[name] = RealKernelSums(n=key.n, xx=xx, xx2=float(values[f"{name}_xx2"]), xx_rows=rows)
    return RealStats(n=key.n, dim=key.dim, moments=moments, kernels=kernels)


def summary_shapes(key: SummaryKey) -> dict:
    """The shape and dtype of each array of a summary for ``key`` (:func:`hubness_pr.io.store.read_arrays`
    reads no more): the key and checksum as strings (the key at most ``_KEY_CHARS`` characters)."""
    return {"knn_key": ((), f"<U{_KEY_CHARS}"), "knn_indices": ((key.n, key.k_max), np.int64),
            "knn_sq_distances": ((key.n, key.k_max), np.float64), "knn_checksum": ((), "<U64")}


def _largest_file(key: SummaryKey) -> int:
    """Bytes a summary file for ``key`` can take: its arrays, their .npy headers and zip entries."""
    return 16 * key.n * key.k_max + 4 * (_KEY_CHARS + 64) + 2**20


class CacheLookup(NamedTuple):
    """What :meth:`SummaryCache.lookup` found: the graph (None: not usable) and the line for the log."""

    graph: NeighborGraph | None
    message: str


class StatsLookup(NamedTuple):
    """What :meth:`SummaryCache.lookup_stats` found: the real statistics (None: not usable) and the line for the log."""

    stats: RealStats | None
    message: str


class SummaryCache:
    """A folder of k-NN summaries, one file per :class:`SummaryKey`, safe in a folder others can reach.

    A cache folder may be shared (a group- or world-writable ``$HUBNESS_CACHE``), so the folder and
    each file are used only when they are this user's and nobody else may write them, as ssh treats
    its keys: the folder (``os.fstat`` of the opened folder) and the file must be owned by the
    effective user and carry no group or other write bit. A folder that is not is refused as a
    whole: one warning, then the run computes without caching. A file at a key's name that is a
    symbolic link, not a regular file (a FIFO or a device: never opened for reading beyond a
    non-blocking open, never read), or not private is refused the same way and left alone (not
    read, not replaced). Files are opened relative to the opened folder, never through a link
    (``O_NOFOLLOW``), and written to a private temporary name created with ``O_EXCL | O_NOFOLLOW``
    (mode 0600), synced, then renamed onto the key's name: a rename replaces whatever name is
    there (a link planted meanwhile included) and never writes through it. A new folder is created
    with mode 0700.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.refused: str | None = None  # why this cache is left alone for the key looked up (load)

    @staticmethod
    def default_folder() -> Path:
        """``$HUBNESS_CACHE``, else ``$XDG_CACHE_HOME/hubness-pr``, else ``~/.cache/hubness-pr``."""
        if os.environ.get("HUBNESS_CACHE"):
            return Path(os.environ["HUBNESS_CACHE"])
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "hubness-pr"

    def path(self, key: SummaryKey) -> Path:
        return self.folder / key.file_name()

    def load(self, key: SummaryKey, features=None, **check) -> tuple[NeighborGraph | None, str]:
        """(graph, message): :meth:`lookup`'s graph (None on a miss) and what happened, for the log."""
        try:
            found = self.lookup(key, features, **check)
        except CacheMiss as miss:
            return None, str(miss)
        return found.graph, found.message

    def lookup(self, key: SummaryKey, features=None, **check) -> CacheLookup:
        """The cached graph for ``key`` and what happened, for the log. Given ``features`` (those of
        ``key``), the graph is checked against them before it is trusted (:func:`check_graph`).
        The ordinary miss (no folder, no file for the key) raises :class:`CacheMiss`; a lookup
        without a graph (``graph`` None) is worth a warning (``self.refused`` says why the cache is
        left alone, if it is; otherwise the stored file was not valid)."""
        def read(handle):
            size = os.fstat(handle.fileno()).st_size
            if size > _largest_file(key):
                raise InputError(f"{size:,} bytes, more than a summary of {key.n} x {key.k_max} takes")
            return load_summary(handle, key, features, **check)

        return CacheLookup(*self._lookup(key.file_name(), "k-NN summary", read))

    def lookup_stats(self, key: StatsKey) -> StatsLookup:
        """The cached real statistics for ``key`` (:func:`stats_from_arrays`), as :meth:`lookup`."""
        def read(handle):
            size = os.fstat(handle.fileno()).st_size
            if size > key.largest_file():
                raise InputError(f"{size:,} bytes, more than the statistics of {key.n} x {key.dim} take")
            head = read_arrays(handle, {"stats_key": key.shapes()["stats_key"]})
            if head is None:
                raise InputError("no real statistics in it (not a .npz file, or no stats_key)")
            _check_key(head["stats_key"], key)
            handle.seek(0)
            return stats_from_arrays(read_arrays(handle, key.shapes()) or {}, key)

        return StatsLookup(*self._lookup(key.file_name(), "real statistics", read))

    def _lookup(self, name: str, what: str, read) -> tuple:
        path = self.folder / name
        self.refused = None
        try:
            folder = self._open_folder(create=False)
        except FileNotFoundError:
            raise CacheMiss(f"no cached {what} in {self.folder}") from None
        except _Refused as exc:
            return None, self._refuse(str(exc))
        except OSError as exc:
            return None, self._refuse(f"cache folder {self.folder} cannot be opened ({_reason(exc)})")
        try:
            try:
                fd = _open_private(name, folder)
            except FileNotFoundError:
                raise CacheMiss(f"no cached {what} in {self.folder}") from None
            except _Refused as exc:
                return None, self._refuse(f"cached {what} {path} {exc}")
            with os.fdopen(fd, "rb") as handle:
                try:
                    return read(handle), f"{what} reused from {path}"
                except InputError as exc:
                    return None, f"cached {what} {path} not used: {exc}; recomputing"
        finally:
            os.close(folder)

    def store(self, key: SummaryKey, graph: NeighborGraph) -> str:
        """Save ``graph``; returns what happened (a cache that cannot be written is not an error)."""
        return self._store(key.file_name(), "k-NN summary", lambda: summary_arrays(graph, key))

    def store_stats(self, key: StatsKey, stats: RealStats) -> str:
        """Save the real statistics ``stats`` under ``key``; returns what happened, as :meth:`store`."""
        return self._store(key.file_name(), "real statistics", lambda: stats_arrays(stats, key))

    def _store(self, name: str, what: str, make) -> str:
        if self.refused:
            return f"{what} not cached ({self.refused})"
        try:
            arrays = make()
            folder = self._open_folder(create=True)
        except (_Refused, OSError, ValueError) as exc:
            return f"{what} not cached ({_reason(exc)})"
        try:
            try:
                st = os.lstat(name, dir_fd=folder)
            except FileNotFoundError:
                pass
            else:
                why = _not_private(st)
                if why:  # not ours to replace: said, left alone
                    return f"{what} not cached ({self.folder / name} {why})"
            _write_private(folder, name, arrays)
        except OSError as exc:
            return f"{what} not cached ({_reason(exc)})"
        finally:
            os.close(folder)
        return f"{what} saved to {self.folder / name}"

    def _refuse(self, why: str) -> str:
        self.refused = why
        return f"{why}: not used; computing without caching"

    def _open_folder(self, create: bool) -> int:
        """The cache folder, opened (a descriptor), if it is private; created (0700) if asked."""
        if create:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.folder, 0o700)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        why = _not_private(os.fstat(fd), stat.S_IFDIR)
        if why:
            os.close(fd)
            raise _Refused(f"cache folder {self.folder} {why}")
        return fd


class _Refused(Exception):
    """A cache folder or file that is not this user's alone."""


def _not_private(st: os.stat_result, kind: int = stat.S_IFREG) -> str | None:
    """Why a cache file (``kind`` S_IFREG) or folder (S_IFDIR) with these ``lstat``/``fstat``
    results must not be used, or None: not of that kind (a link, FIFO, device...), not owned by the
    effective user, or writable by group or others."""
    if stat.S_IFMT(st.st_mode) != kind:
        return f"is {_KINDS.get(stat.S_IFMT(st.st_mode), 'a special file')}, not a regular " \
               f"{'folder' if kind == stat.S_IFDIR else 'file'}"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else "group" if st.st_mode & 0o020 else "others"
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder",
          stat.S_IFREG: "a file"}


def _open_private(name: str, folder: int) -> int:
    """``name`` in the opened ``folder``, opened for reading if it is a private regular file: never
    through a link, never blocking (a FIFO or device is refused by its ``lstat`` before it is opened
    and by the ``fstat`` of what was opened); _Refused saying why not."""
    why = _not_private(os.lstat(name, dir_fd=folder))
    if why:
        raise _Refused(why)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the lstat
            raise _Refused("is a symbolic link, not a regular file") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise _Refused(f"cannot be opened ({_reason(exc)})") from None
    why = _not_private(os.fstat(fd))
    if why:
        os.close(fd)
        raise _Refused(why)
    return fd


def _write_private(folder: int, name: str, arrays: dict) -> None:
    """``arrays`` as ``name`` (``.npz``) in the opened ``folder``: written to a new private file
    (``O_EXCL | O_NOFOLLOW``, mode 0600) under a random name, synced, then renamed onto ``name``."""
    sweep_stale(".", name, dir_fd=folder)  # what a killed writer of this name left here
    tmp = f"{temp_prefix(name)}{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise
    with contextlib.suppress(OSError):  # the rename itself made durable
        os.fsync(folder)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()
