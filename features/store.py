"""Feature files (.npz / .npy) and atomic output files (DESIGN.md section 5).

A feature file written here holds ``feature`` (float32 (n, dim)), ``paths`` (unicode (n,), relative
to the input root, sorted) and ``meta`` (a JSON string: schema version, provenance). Reading also
accepts the keys ``features``, ``reps`` and ``arr_0``, plain ``.npy`` arrays, and files of the
original scripts, whose ``radii_hub`` and ``hubs`` arrays are ignored (they bake k and the hub
threshold into the features).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FEATURE_KEYS = ("feature", "features", "reps", "arr_0")
IGNORED_KEYS = ("radii_hub", "hubs")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FeatureFile:
    """A loaded feature file: ``features`` (n, dim) as stored, optional ``paths`` and ``meta``."""

    features: np.ndarray = field(repr=False)
    paths: list | None = field(default=None, repr=False)
    meta: dict = field(default_factory=dict)
    source: str = ""
    key: str = "feature"

    def subset(self, indices: np.ndarray) -> FeatureFile:
        """The rows ``indices`` (sorted int array), with their paths."""
        paths = None if self.paths is None else [self.paths[i] for i in indices]
        return FeatureFile(self.features[indices], paths, self.meta, self.source, self.key)


def load_features(path) -> FeatureFile:
    """Read a feature file; ValueError with a one-line message naming the file on any problem."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ValueError(f"{name}: no such file")
    if path.is_dir():
        raise ValueError(f"{name}: is a folder, not a feature file (.npz or .npy)")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise ValueError(f"{name}: cannot read ({exc.strerror or _short(exc)})") from None
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise ValueError(f"{name}: not a .npz or .npy array file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ValueError(f"{name}: holds Python objects, not a numeric array; refusing to unpickle") from None
        raise ValueError(f"{name}: damaged or unreadable array file ({_short(exc)})") from None
    if isinstance(loaded, np.ndarray):
        return FeatureFile(features=loaded, source=name, key="(npy)")
    with loaded:
        try:
            keys = list(loaded.files)
            key = next((k for k in FEATURE_KEYS if k in keys), None)
            if key is None:
                raise ValueError(
                    f"{name}: no feature array found (looked for keys {', '.join(FEATURE_KEYS)}; "
                    f"the file has {', '.join(keys) or 'no arrays'})"
                )
            features = loaded[key]
            paths = _read_paths(loaded, name, features) if "paths" in keys else None
            meta = _read_meta(loaded, name) if "meta" in keys else {}
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{name}: damaged .npz file ({_short(exc)})") from None
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise ValueError(f"{name}: holds Python objects, not numeric arrays; refusing to unpickle") from None
            raise
    ignored = [k for k in IGNORED_KEYS if k in keys]
    if ignored:
        log.info("%s: ignoring %s (written by the original scripts; k and hubsK are options here)",
                 name, ", ".join(ignored))
    return FeatureFile(features=features, paths=paths, meta=meta, source=name, key=key)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _read_paths(loaded, name: str, features: np.ndarray):
    paths = loaded["paths"]
    if paths.ndim != 1 or (features.ndim >= 1 and paths.shape[0] != features.shape[0]):
        raise ValueError(f"{name}: 'paths' has shape {paths.shape}, expected ({features.shape[0]},)")
    return [str(p) for p in paths.tolist()]


def _read_meta(loaded, name: str) -> dict:
    raw = loaded["meta"]
    try:
        meta = json.loads(str(raw.item() if raw.ndim == 0 else raw))
        return meta if isinstance(meta, dict) else {"value": meta}
    except (ValueError, TypeError):
        log.warning("%s: 'meta' is not a JSON object; ignored", name)
        return {}


def check_output_path(path, what: str = "output") -> Path:
    """Fail early (ValueError) if ``path`` cannot be written: missing folder, a folder, no permission."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder, expected a file path")
    if not parent.is_dir():
        raise ValueError(f"{what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {path}: folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", **open_kwargs):
    """Open a temporary file beside ``path``; on success rename it over ``path`` (``os.replace``).

    On any exception, KeyboardInterrupt included, the temporary file is removed and ``path`` is
    left as it was: an interrupted run never leaves a half-written output.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_features(path, features: np.ndarray, *, paths=None, meta: dict | None = None,
                  compress: bool = False) -> Path:
    """Write a feature file atomically: ``feature`` float32 (n, dim), ``paths``, ``meta`` (JSON)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (n, dim), got shape {features.shape}")
    arrays = {"feature": features}
    if paths is not None:
        if len(paths) != features.shape[0]:
            raise ValueError(f"{len(paths)} paths for {features.shape[0]} feature rows")
        arrays["paths"] = np.asarray([str(p) for p in paths], dtype=np.str_)
    full_meta = {"schema_version": SCHEMA_VERSION, "count": int(features.shape[0]), "dim": int(features.shape[1])}
    full_meta.update(meta or {})
    arrays["meta"] = np.asarray(json.dumps(full_meta, sort_keys=True))
    path = check_output_path(path, "feature file")
    with atomic_write(path) as handle:
        (np.savez_compressed if compress else np.savez)(handle, **arrays)
    return path


def random_subset(n: int, size: int, seed: int, what: str = "set") -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` out of ``n`` (without replacement)."""
    if size > n:
        raise ValueError(f"--num_samples {size} is larger than the {n} samples of {what}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))
