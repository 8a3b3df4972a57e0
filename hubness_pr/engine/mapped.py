"""Feature rows of a memory-mapped ``.npy`` file, read from the file block by block as a pass takes them.

A ``.npy`` input is memory-mapped (:func:`hubness_pr.io.store.load_features`) and never copied whole:

* rows of any numeric dtype or byte order (float64, big-endian ``>f4``, float16, integers) are
  converted to native float32 per block, as each pass reads them; the conversion is elementwise
  (round to nearest), so every result equals that of the input converted first, bit for bit, and
  memory stays the features' mapping plus the memory budget;
* blocks of rows are read with ``pread`` from the file, not through the mapping, so a file
  truncated by another process while a run reads it gives one ``ValueError`` naming the file (a
  short read), not a SIGBUS (exit 135) in the middle of a GEMM; scattered rows (the exact
  re-measurements) are gathered through the mapping after a check of the file's size (``fstat``),
  which leaves only the gather itself (microseconds to milliseconds) exposed.

:class:`MappedRows` has the part of a CPU float32 tensor's interface that the passes use: ``shape``,
``device``, ``dtype`` and ``rows[slice]`` / ``rows[index tensor]`` (a float32 tensor of those rows).
"""
from __future__ import annotations

import mmap
import os

import numpy as np
import torch

from hubness_pr.errors import InputError


def mapped_file(array) -> tuple[str, int] | None:
    """``(path, byte offset of row 0)`` of a C-contiguous 2-D view of a memory-mapped file
    (:class:`numpy.memmap`, as ``np.load(mmap_mode='r')`` returns), else None."""
    if not isinstance(array, np.memmap) or array.ndim != 2 or not array.flags.c_contiguous:
        return None
    path = getattr(array, "filename", None)
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if not path or not isinstance(base, mmap.mmap) or base.closed:
        return None
    start = np.frombuffer(base, dtype=np.uint8).__array_interface__["data"][0]
    here = array.__array_interface__["data"][0] if array.size else start
    offset = int(getattr(array, "offset", 0))
    return path, offset - offset % mmap.ALLOCATIONGRANULARITY + (here - start)


_CONVERT_BYTES = 2**20  # rows of another dtype read per step before conversion
_PREAD_RUNS = 32        # a gather of more runs of consecutive rows reads through the mapping


def to_float32(raw: np.ndarray) -> np.ndarray:
    """``raw`` as native float32 (itself where it already is); values beyond float32 become Inf
    (:func:`hubness_pr.engine.inputs.as_feature_matrix` refuses them before any pass)."""
    if raw.dtype == np.float32 and raw.dtype.isnative:
        return raw
    with np.errstate(over="ignore"):
        return raw.astype(np.float32)


class MappedRows:
    """The rows of a memory-mapped array (see the module docstring) as float32, read on demand."""

    def __init__(self, array: np.memmap, name: str | None = None):
        where = mapped_file(array)
        if where is None:
            raise InputError("MappedRows needs a C-contiguous 2-D numpy.memmap")
        self.path, self.offset = where
        self.name = name or self.path
        self.source_dtype = array.dtype
        self.shape = tuple(int(s) for s in array.shape)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.row_bytes = self.shape[1] * array.dtype.itemsize
        self._array = np.asarray(array)  # the mapping, as a plain ndarray view
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __len__(self) -> int:
        return self.shape[0]

    def _short(self) -> InputError:
        size = os.fstat(self._fd).st_size
        need = self.offset + self.shape[0] * self.row_bytes
        return InputError(file=self.name, message=f"the file is {size} bytes, shorter than the {self.shape[0]} x "
                          f"{self.shape[1]} {self.source_dtype} rows of its header need ({need} bytes): it was "
                          "truncated while this run read it")

    def check(self) -> None:
        """ValueError naming the file where it is shorter than its header says (one ``fstat``)."""
        if os.fstat(self._fd).st_size < self.offset + self.shape[0] * self.row_bytes:
            raise self._short()

    def _read_into(self, out: np.ndarray, start: int) -> None:
        """Rows ``start ..`` of the file into ``out`` (source dtype, C-contiguous)."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos, done = self.offset + start * self.row_bytes, 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], pos + done)
            if got <= 0:
                raise self._short()
            done += got

    def raw(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (the file's dtype and byte order), read into a fresh buffer."""
        start, stop = max(0, start), min(self.shape[0], stop)
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.source_dtype)
        if out.size:
            self._read_into(out, start)
        return out

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a native float32 numpy array (C-contiguous, a fresh buffer)."""
        start, stop = max(0, start), min(self.shape[0], stop)
        if self.source_dtype == np.float32 and self.source_dtype.isnative:
            return self.raw(start, stop)
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=np.float32)
        self._convert_into(out, start)
        return out

    def _convert_into(self, out: np.ndarray, start: int) -> None:
        """Rows ``start ..`` into the float32 ``out``: read straight into it (native float32), else
        read and converted in steps of ~1 MiB (the only other buffer)."""
        if self.source_dtype == np.float32 and self.source_dtype.isnative:
            self._read_into(out, start)
            return
        step = max(1, _CONVERT_BYTES // max(1, self.row_bytes))
        for lo in range(0, out.shape[0], step):
            hi = min(out.shape[0], lo + step)
            out[lo:hi] = to_float32(self.raw(start + lo, start + hi))

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed) as a native float32 numpy array."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= self.shape[0]):
            raise IndexError(f"row index out of range [0, {self.shape[0]})")
        rows, inverse = np.unique(index, return_inverse=True)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows
        if breaks.size < _PREAD_RUNS:  # a few runs: one pread each
            out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
            for lo, hi in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [rows.size]])):
                if hi > lo:
                    self._convert_into(out[lo:hi], int(rows[lo]))
        else:  # scattered rows (exact re-measurements): through the mapping, the file's size checked first
            self.check()
            out = to_float32(self._array[rows])
        if rows.size == index.size and np.array_equal(rows, index):  # sorted and distinct: no second copy
            return out
        return out[inverse.reshape(-1)]

    def __getitem__(self, rows) -> torch.Tensor:
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.shape[0])
            if step != 1:
                return torch.from_numpy(self.gather(np.arange(start, stop, step)))
            return torch.from_numpy(self.block(start, stop))
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        return torch.from_numpy(self.gather(rows))

    def whole(self) -> torch.Tensor:
        """Every row as one float32 tensor (a copy of the set: for the rare steps that need it)."""
        return self[0:self.shape[0]]
