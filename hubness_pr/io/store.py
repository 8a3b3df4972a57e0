"""Feature files (.npz / .npy) (docs/definitions.md, "Feature files"); they are written through :mod:`hubness_pr.io.outputs`.

A feature file written here holds ``feature`` (float32 (n, dim)), ``paths`` (unicode (n,), relative
to the input root, sorted) and ``meta`` (a JSON string: schema version, provenance). Reading also
accepts the keys ``features``, ``reps`` and ``arr_0``, plain ``.npy`` arrays, and files of the
original scripts, whose ``radii_hub`` and ``hubs`` arrays are ignored (they bake k and the hub
threshold into the features).
"""
from __future__ import annotations

import hashlib
import json
import logging
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.io.outputs import atomic_write

log = logging.getLogger(__name__)

FEATURE_KEYS = ("feature", "features", "reps", "arr_0")
IGNORED_KEYS = ("radii_hub", "hubs")
# arrays a feature file may carry beside the features: a k-NN summary of them (getFeature --knn_k,
# read by the metric command; hubness_pr/io/summary.py defines them)
SUMMARY_PREFIX = "knn_"
SCHEMA_VERSION = 1
# What reading a zip member raises besides ValueError: damaged data (BadZipFile, zlib.error, EOFError,
# OSError), an unsupported compression method (NotImplementedError), an encrypted member (zipfile's
# RuntimeError "password required").
ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError)


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


@dataclass(frozen=True)
class FeatureFormat:
    """A feature-file format the toolkit reads: its suffix, the bytes its files start with, and its
    reader (``read(path, name) -> FeatureFile``, :class:`InputError` naming the file on any problem)."""

    suffix: str
    magic: bytes
    read: Callable[[Path, str], "FeatureFile"]
    doc: str = ""


FORMATS: dict[str, FeatureFormat] = {}


def register_format(fmt: FeatureFormat) -> FeatureFormat:
    """Add a reader to :data:`FORMATS`; a suffix registered twice is refused."""
    if fmt.suffix in FORMATS:
        raise ValueError(f"feature format {fmt.suffix!r} is registered twice")
    FORMATS[fmt.suffix] = fmt
    return fmt


def load_features(path) -> FeatureFile:
    """Read a feature file of any format of :data:`FORMATS` (chosen by the bytes it starts with, not its
    name); :class:`InputError` (a ValueError) with a one-line message naming the file (its ``file``
    field) on any problem."""
    if path is None or isinstance(path, bytes):
        raise TypeError(f"The 'path' parameter of load_features must be a file path. Got {path!r} instead.")
    path = Path(path)
    name = str(path)
    kinds = " or ".join(FORMATS)
    if not path.exists():
        raise InputError("no such file", file=name)
    if path.is_dir():
        raise InputError(f"is a folder, not a feature file ({kinds})", file=name)
    if not path.is_file():  # a FIFO or device would hang the read or never end it
        raise InputError("not a regular file (a FIFO, device or socket), not read", file=name)
    try:
        with open(path, "rb") as handle:
            head = handle.read(max(len(f.magic) for f in FORMATS.values()))
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or _short(exc)})", file=name) from exc
    fmt = next((f for f in FORMATS.values() if head.startswith(f.magic)), None)
    if fmt is None:
        raise InputError(f"not a {kinds} array file", file=name)
    return fmt.read(path, name)


def _read_npy(path: Path, name: str) -> FeatureFile:
    """A ``.npy`` array, memory-mapped (the passes read it tile by tile, from the file cache), with its
    paths and meta from the sidecar ``OUT.npy.json``."""
    try:
        with open(path, "rb") as handle:
            handle.read(6)
            npy_dtype = _npy_dtype(handle)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or _short(exc)})", file=name) from exc
    if npy_dtype is not None and npy_dtype.hasobject:  # decided from the header, before np.load
        raise InputError("holds Python objects, not a numeric array; refusing to unpickle", file=name)
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"damaged or unreadable array file ({_short(exc)})", file=name) from exc
    if not isinstance(loaded, np.ndarray):
        raise InputError("damaged or unreadable array file (not one array)", file=name)
    paths, meta = _read_sidecar(path, loaded)
    return FeatureFile(features=loaded, paths=paths, meta=meta, source=name, key="(npy)")


def _read_npz(path: Path, name: str) -> FeatureFile:
    """An ``.npz`` archive: the first of :data:`FEATURE_KEYS` it holds, its ``paths`` and ``meta``."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"damaged or unreadable array file ({_short(exc)})", file=name) from exc
    if isinstance(loaded, np.ndarray):  # a zip-looking file numpy read as one array
        raise InputError("damaged or unreadable array file (not an .npz archive)", file=name)
    with loaded:
        try:
            keys = list(loaded.files)
            key = next((k for k in FEATURE_KEYS if k in keys), None)
            if key is None:
                raise InputError(f"no feature array found (looked for keys {', '.join(FEATURE_KEYS)}; "
                                 f"the file has {', '.join(keys) or 'no arrays'})", file=name)
            features = npz_array(loaded, key, name)
            paths = _read_paths(loaded, name, features) if "paths" in keys else None
            meta = _read_meta(loaded, name) if "meta" in keys else {}
        except InputError:
            raise
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:  # numpy's, zipfile's: damaged data
            raise InputError(f"damaged .npz file ({_short(exc)})", file=name) from exc
    ignored = [k for k in IGNORED_KEYS if k in keys]
    if ignored:
        log.info("%s: ignoring %s (written by the original scripts; k and hubsK are options here)",
                 name, ", ".join(ignored))
    return FeatureFile(features=features, paths=paths, meta=meta, source=name, key=key)


register_format(FeatureFormat(".npz", b"PK", _read_npz, "numpy archive: feature (n, dim), paths, meta, knn_* summary"))
register_format(FeatureFormat(".npy", b"\x93NUMPY", _read_npy, "one (n, dim) array, memory-mapped; OUT.npy.json sidecar"))


def _npy_dtype(handle) -> np.dtype | None:
    """The dtype in the header of the ``.npy`` open at its 6th byte, or None where the header cannot
    be read (np.load then says why)."""
    try:
        handle.seek(0)
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        return None if read_header is None else read_header(handle)[2]
    except (ValueError, OSError, EOFError, SyntaxError):
        return None


def sidecar_path(path) -> Path:
    """The paths and meta of a ``.npy`` feature file: ``OUT.npy.json`` beside it."""
    return Path(f"{path}.json")


def _read_sidecar(path: Path, features: np.ndarray):
    """(paths, meta) from the ``.npy``'s sidecar (getFeature.py -o OUT.npy writes one), or (None, {})."""
    side = sidecar_path(path)
    if not side.is_file():
        return None, {}
    try:
        data = parse_json(side.read_text(encoding="utf-8"))
        paths, meta = data.get("paths"), data.get("meta", {})
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s: unreadable sidecar (%s); paths and meta ignored", side, _short(exc))
        return None, {}
    if paths is not None and (not isinstance(paths, list) or (features.ndim and len(paths) != features.shape[0])):
        raise InputError(file=side,
                         message=f"'paths' has {len(paths) if isinstance(paths, list) else 'no'} entries for "
                         f"{features.shape[0]} feature rows")
    wrong = next((i for i, p in enumerate(paths or ()) if not isinstance(p, str)), None)
    if wrong is not None:
        raise InputError(file=side, message=f"'paths' entry {wrong} is {json_kind(paths[wrong])}, expected a string "
                         "(an image's path)")
    return paths, meta if isinstance(meta, dict) else {}


def json_kind(value) -> str:
    """A JSON value's kind, for messages: ``null``, ``a number``, ``a string``, ``a list``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


JSON_DEPTH = 100  # nesting levels accepted in JSON a file holds (meta, sidecar, run log line); the toolkit writes 4


def parse_json(text: str):
    """``json.loads(text)``; ValueError for any text that is not JSON nested at most :data:`JSON_DEPTH`
    levels deep (the parser itself raises RecursionError a thousand levels down, and the code that
    reads a value walks it recursively)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputError(f"JSON nested more than {JSON_DEPTH} levels deep") from None
    level, depth = [value], 0  # the lists and objects one level down, breadth first: no recursion
    while level := [item for item in level if isinstance(item, (list, dict))]:
        depth += 1
        if depth > JSON_DEPTH:
            raise InputError(f"JSON nested more than {JSON_DEPTH} levels deep")
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)]
    return value


def write_npy_rows(handle, n: int, dim: int, blocks) -> None:
    """A float32 (n, dim) ``.npy`` written to a binary file object from row ``blocks`` in order (an
    iterable of (rows, dim) arrays), so the whole array is never in memory."""
    np.lib.format.write_array_header_1_0(handle, {"descr": np.dtype(np.float32).str, "fortran_order": False,
                                                   "shape": (int(n), int(dim))})
    written = 0
    for block in blocks:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != dim:
            raise InputError(f"a block of shape {block.shape} for a ({n}, {dim}) array")
        handle.write(block.tobytes())
        written += block.shape[0]
    if written != n:
        raise InputError(f"{written} rows written for a ({n}, {dim}) array")


def sidecar_text(paths, meta: dict, n: int, dim: int) -> str:
    """The JSON sidecar of a ``.npy`` feature file: its ``paths`` and ``meta`` (as in a ``.npz``)."""
    full_meta = {"schema_version": SCHEMA_VERSION, "count": int(n), "dim": int(dim)}
    full_meta.update(meta or {})
    return json.dumps({"paths": None if paths is None else [str(p) for p in paths], "meta": full_meta},
                      sort_keys=True) + "\n"


def read_arrays(path, expect: dict) -> dict | None:
    """The arrays named in ``expect`` that the ``.npz`` at ``path`` (a path, or a seekable binary file)
    holds: extra arrays stored beside the features, e.g. a k-NN summary. None when it holds none of
    them or is not a zip file; ValueError saying why when one of them is damaged or not as expected.

    ``expect`` maps each name to ``(shape, dtype)``: the array must have exactly that shape and that
    (native) dtype; for a string dtype, that kind and at most that width. A member is never
    inflated before its zip header (the declared size) and its ``.npy`` header (shape, dtype) agree
    with that, and its data are then read a MiB at a time into a buffer of the expected size: a
    member whose header lies about its size costs at most a MiB more than the expected bytes, never
    its inflated size. Nothing is unpickled."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            found = {}
            for name, (shape, dtype) in expect.items():
                info = members.get(f"{name}.npy") or members.get(name)
                if info is not None:
                    found[name] = _read_member(archive, info, tuple(shape), np.dtype(dtype))
    except ZIP_READ_ERRORS as exc:
        raise InputError(f"unreadable .npz ({_short(exc)})") from None
    return found or None


_NPY_HEADER_BYTES = 2**16  # an .npy header's largest size here (version 1.0's own limit is 65,535)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """The array of the .npz member ``info``, checked against ``shape`` and ``dtype`` before its data
    are inflated (see :func:`read_arrays`)."""
    what = f"member {info.filename!r}"
    allowed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size > allowed + _NPY_HEADER_BYTES:
        raise InputError(f"{what} declares {info.file_size:,} bytes inflated; a {shape} {dtype} array takes "
                         f"{allowed:,} bytes")
    with archive.open(info) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise InputError(f".npy format {version}")
            got_shape, fortran, got_dtype = read_header(handle, max_header_size=_NPY_HEADER_BYTES)
        except ValueError as exc:
            raise InputError(f"{what} is not a .npy array this reader takes ({_short(exc)})") from None
        fits = got_dtype == dtype if dtype.kind not in "SU" else \
            (got_dtype.kind == dtype.kind and got_dtype.isnative and got_dtype.itemsize <= dtype.itemsize)
        if tuple(got_shape) != shape or not fits or got_dtype.hasobject:
            raise InputError(f"{what} holds a {tuple(got_shape)} {got_dtype} array, expected {shape} {dtype}")
        nbytes = int(np.prod(got_shape, dtype=np.int64)) * got_dtype.itemsize
        data = read_bounded(handle, nbytes)  # (at the end, zipfile also checks the member's CRC)
        if len(data) < nbytes:
            raise InputError(f"{what} is cut short ({len(data):,} of {nbytes:,} data bytes)")
        if len(data) > nbytes:
            raise InputError(f"{what} holds more bytes than its {tuple(got_shape)} {got_dtype} header says")
    array = np.frombuffer(data, dtype=got_dtype).copy()  # (a writable array, as np.load gives)
    return array.reshape(got_shape, order="F" if fortran else "C")


def read_bounded(handle, limit: int | None, chunk: int = 2**20) -> bytes:
    """What ``handle`` holds, read a MiB at a time up to one byte over ``limit`` (a decompressing
    reader then never inflates more than a MiB past it, whatever its header declares)."""
    data = bytearray()
    while limit is None or len(data) <= limit:
        piece = handle.read(chunk if limit is None else min(chunk, limit + 1 - len(data)))
        if not piece:
            break
        data += piece
    return bytes(data)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def npz_header(loaded, key: str, name: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of the array ``key`` of an open .npz, read from its header alone; ValueError
    naming the file if that member is not a .npy array (``np.load`` would return its raw bytes)."""
    member = key if key in loaded.zip.namelist() else f"{key}.npy"
    with loaded.zip.open(member) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:  # format 3.0 (unicode field names): read the array itself
                array = loaded[key]
                return array.shape, array.dtype
            shape, _, dtype = read_header(handle)
        except ValueError:
            raise InputError(f"member {member!r} is not a .npy array", file=name) from None
    if dtype.hasobject:
        raise InputError("holds Python objects, not numeric arrays; refusing to unpickle", file=name)
    return shape, dtype


def npz_array(loaded, key: str, name: str) -> np.ndarray:
    """The array ``key`` of an open .npz, checked as :func:`npz_header` does."""
    npz_header(loaded, key, name)
    return loaded[key]


def _read_paths(loaded, name: str, features: np.ndarray):
    paths = npz_array(loaded, "paths", name)
    if paths.ndim != 1 or (features.ndim >= 1 and paths.shape[0] != features.shape[0]):
        raise InputError(f"'paths' has shape {paths.shape}, expected ({features.shape[0]},)", file=name)
    return [str(p) for p in paths.tolist()]


def _read_meta(loaded, name: str) -> dict:
    raw = npz_array(loaded, "meta", name)
    try:
        meta = parse_json(str(raw.item() if raw.ndim == 0 else raw))
        return meta if isinstance(meta, dict) else {"value": meta}
    except (ValueError, TypeError) as exc:
        log.warning("%s: 'meta' is not a JSON object (%s); ignored", name, _short(exc))
        return {}


def save_features(target, features: np.ndarray, *, paths=None, meta: dict | None = None,
                  compress: bool = False, extra: dict | None = None) -> None:
    """Write a feature file: ``feature`` float32 (n, dim), ``paths``, ``meta`` (JSON), and ``extra``
    arrays whose names start with ``knn_`` (a k-NN summary of the features, hubness_pr/io/summary.py).

    ``target`` is a path (written safely: :func:`hubness_pr.io.outputs.atomic_write`) or a binary file
    object, such as one of :class:`hubness_pr.io.outputs.OutputFiles`.
    """
    if features is None or isinstance(features, (str, bytes)):
        raise TypeError(f"The 'features' parameter of save_features must be an array (n, dim). Got {features!r} instead.")
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise InputError(f"The 'features' parameter of save_features must be 2-D (n, dim). Got shape {features.shape}.")
    arrays = {"feature": features}
    if paths is not None:
        if len(paths) != features.shape[0]:
            raise InputError(f"{len(paths)} paths for {features.shape[0]} feature rows")
        arrays["paths"] = np.asarray([str(p) for p in paths], dtype=np.str_)
    full_meta = {"schema_version": SCHEMA_VERSION, "count": int(features.shape[0]), "dim": int(features.shape[1])}
    full_meta.update(meta or {})
    arrays["meta"] = np.asarray(json.dumps(full_meta, sort_keys=True))
    for name, value in (extra or {}).items():
        if not name.startswith(SUMMARY_PREFIX):
            raise InputError(f"extra array {name!r}: names of extra arrays start with {SUMMARY_PREFIX!r}")
        arrays[name] = value
    write = np.savez_compressed if compress else np.savez
    if hasattr(target, "write"):
        write(target, **arrays)
        return
    with atomic_write(target, what="feature file") as handle:
        write(handle, **arrays)


DIGEST_BLOCK_BYTES = 4 * 2**20  # bytes of an array converted and hashed at a time


def feature_digest(features: np.ndarray, dtype=None) -> str:
    """SHA-256 of the line ``"<dtype> <n>x<dim>\\n"`` followed by the array's bytes in C order, the
    array converted to ``dtype`` first where one is given (block by block of rows: a memory-mapped
    float64 input is never copied whole): the identity of the features a run evaluated."""
    dtype = np.dtype(features.dtype if dtype is None else dtype)
    digest = hashlib.sha256(f"{dtype} {'x'.join(map(str, features.shape))}\n".encode())
    if features.ndim == 0:
        features = features.reshape(1)
    step = max(1, DIGEST_BLOCK_BYTES // max(1, dtype.itemsize * (features[0].size if len(features) else 1)))
    for start in range(0, len(features), step):
        digest.update(memoryview(np.ascontiguousarray(features[start:start + step], dtype=dtype)).cast("B"))
    return digest.hexdigest()


def random_subset(n: int, size: int, seed: int, what: str = "set") -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` out of ``n`` (without replacement)."""
    if size > n:
        raise InputError(f"--num_samples {size} is larger than the {n} samples of {what}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))
