"""The k-NN summary of a set, computed once and reused: what every metric needs from the real set.

Researchers score many generator checkpoints against one real set. Every metric reads from the real
set only its own k-NN structure (the exact squared radii at each k used, and the neighbour lists
that give the k-occurrence), which depends on nothing but the real features (after any subset), the
k values and the engine's definitions. A :class:`~hubness.knn.NeighborGraph` stored with the key

    engine version, content digest of the float32 feature matrix, n, dim, k_max, the exact k's

is therefore reusable bit for bit; results with and without it are identical on every decision.

Files: one ``.npz`` per summary (arrays ``knn_indices``, ``knn_sq_distances``, ``knn_key`` (JSON) and
``knn_checksum``, the SHA-256 of the arrays), written atomically. A file is used only if it loads, its
key equals the key asked for, its checksum matches its arrays, and its arrays are a valid graph for
that key (shapes, dtypes, indices in range and never self, finite non-negative sorted distances):
anything else (another set, other k's, a truncated or damaged file, an older engine) is reported and
recomputed, never trusted. The same arrays can live inside a feature file (``getFeature.py
--knn_k``). :class:`SummaryCache` keeps summaries in a folder keyed by their key.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.outputs import atomic_write

from .knn import NeighborGraph

# Bump when a definition, tie rule or exactness guarantee changes what a summary holds.
ENGINE_VERSION = 1
KEYS = ("knn_key", "knn_indices", "knn_sq_distances", "knn_checksum")
_DIGEST_CHUNK = 16 * 2**20  # bytes hashed at a time (memory-mapped inputs stay unread until then)


def content_digest(features) -> str:
    """SHA-256 of a feature matrix as float32 C-order rows (shape included): two arrays with the same
    digest give the same k-NN summary. Reads the array in chunks (cheap on memory-mapped files)."""
    x = np.asarray(features)
    h = hashlib.sha256(f"float32 {x.shape}".encode())
    rows = max(1, _DIGEST_CHUNK // max(1, 4 * int(np.prod(x.shape[1:], dtype=np.int64))))
    for start in range(0, x.shape[0], rows):
        h.update(np.ascontiguousarray(x[start:start + rows], dtype=np.float32).tobytes())
    return h.hexdigest()


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
        raise ValueError(f"neighbour graph {indices.shape} (exact k {graph.exact_ks}) does not fit its key "
                         f"(n={key.n}, k_max={key.k_max}, exact k {key.exact_ks})")
    return {"knn_key": np.asarray(key.to_json()), "knn_indices": indices, "knn_sq_distances": sq,
            "knn_checksum": np.asarray(_checksum(indices, sq))}


def graph_from_arrays(arrays, key: SummaryKey) -> NeighborGraph:
    """The graph stored in ``arrays`` (a mapping of :data:`KEYS`), if it is valid for ``key``; else
    ValueError saying why."""
    missing = [name for name in KEYS if name not in arrays]
    if missing:
        raise ValueError(f"no k-NN summary ({', '.join(missing)} missing)")
    try:
        stored = json.loads(str(np.asarray(arrays["knn_key"]).item()))
    except (ValueError, TypeError):
        raise ValueError("unreadable key") from None
    if stored != json.loads(key.to_json()):
        changed = sorted(name for name in set(stored) | set(json.loads(key.to_json()))
                         if stored.get(name) != json.loads(key.to_json()).get(name))
        raise ValueError(f"made for other inputs ({', '.join(changed)} differ)")
    indices, sq = np.asarray(arrays["knn_indices"]), np.asarray(arrays["knn_sq_distances"])
    if indices.dtype != np.int64 or sq.dtype != np.float64 or indices.shape != (key.n, key.k_max) \
            or sq.shape != indices.shape:
        raise ValueError(f"arrays of the wrong shape or type ({indices.shape} {indices.dtype}, {sq.shape} {sq.dtype})")
    if str(np.asarray(arrays["knn_checksum"]).item()) != _checksum(indices, sq):
        raise ValueError("checksum mismatch (damaged or edited)")
    rows = np.arange(key.n)[:, None]
    if (indices < 0).any() or (indices >= key.n).any() or (indices == rows).any() \
            or not np.isfinite(sq).all() or (sq < 0).any() or (np.diff(sq, axis=1) < 0).any():
        raise ValueError("not a valid neighbour graph")
    return NeighborGraph(indices=indices, sq_distances=sq, exact_ks=key.exact_ks)


def save_summary(path, graph: NeighborGraph, key: SummaryKey) -> None:
    """Write ``graph`` under ``key`` to ``path`` (``.npz``), atomically."""
    with atomic_write(path) as handle:
        np.savez(handle, **summary_arrays(graph, key))


def load_summary(path, key: SummaryKey) -> NeighborGraph:
    """The summary at ``path`` if it is valid for ``key``; ValueError saying why not."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return graph_from_arrays({name: data[name] for name in data.files if name in KEYS}, key)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError("holds Python objects") from None
        raise


class SummaryCache:
    """A folder of k-NN summaries, one file per :class:`SummaryKey`."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @staticmethod
    def default_folder() -> Path:
        """``$HUBNESS_CACHE``, else ``$XDG_CACHE_HOME/hubness-pr``, else ``~/.cache/hubness-pr``."""
        if os.environ.get("HUBNESS_CACHE"):
            return Path(os.environ["HUBNESS_CACHE"])
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "hubness-pr"

    def path(self, key: SummaryKey) -> Path:
        return self.folder / key.file_name()

    def load(self, key: SummaryKey) -> tuple[NeighborGraph | None, str]:
        """(graph, message): the cached graph for ``key`` or None, and what happened, for the log."""
        path = self.path(key)
        if not path.exists():
            return None, f"no cached k-NN summary in {self.folder}"
        try:
            return load_summary(path, key), f"k-NN summary reused from {path}"
        except ValueError as exc:
            return None, f"cached k-NN summary {path} not used: {exc}; recomputing"

    def store(self, key: SummaryKey, graph: NeighborGraph) -> str:
        """Save ``graph``; returns what happened (a cache that cannot be written is not an error)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_summary(self.path(key), graph, key)
        except (OSError, ValueError) as exc:
            return f"k-NN summary not cached ({exc})"
        return f"k-NN summary saved to {self.path(key)}"


def _checksum(indices: np.ndarray, sq: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in (indices, sq):
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()
