"""Parameter and array validation shared by the metric functions.

Messages follow scikit-learn's form: they name the parameter, the function, the allowed range and the
value received, so that a one-line error at the command line is enough to fix the call.
"""
from __future__ import annotations

import numbers

import numpy as np

from hubness_pr.errors import InputError, InputTypeError
from hubness_pr.validation import check_int  # noqa: F401 - part of this module's interface

from hubness_pr.engine.mapped import MappedRows, mapped_file, to_float32

def _bad(kind, name: str, file, text: str) -> InputError:
    """The error of argument ``name`` (its ``role``): ``name: text``, or, given the ``file`` the array
    came from, ``text`` with that file, which its line shows as ``file (name): text``."""
    if file is None:
        return kind(f"{name}: {text}", role=name)
    return kind(text, file=file, role=name)


# Bytes of features checked for NaN/Inf per step: bounds the block read and its temporaries to a few MB.
_FINITE_CHECK_BYTES = 4 * 2**20


def check_feature_input(array, name: str, file=None) -> None:
    """The checks of :func:`as_feature_matrix` that need neither a copy nor a device transfer, for
    functions that take tensors where they lie: :class:`hubness_pr.errors.InputTypeError` (a
    TypeError) for None and for a torch dtype numpy lacks (bfloat16, float8),
    :class:`hubness_pr.errors.InputError` (a ValueError) for a rank other than 2. Messages start
    with ``name``; the error's ``role`` is ``name`` (the argument, e.g. "real" or "fake")."""
    if array is None:
        raise _bad(InputTypeError, name, file, "expected a feature array of shape (n_samples, dim), got None")
    if hasattr(array, "detach"):  # a torch tensor
        try:
            array.new_empty(0).cpu().numpy()
        except TypeError:  # numpy has no bfloat16 / float8: refuse rather than guess a conversion
            raise _bad(InputTypeError, name, file, f"torch tensors of dtype {array.dtype} are not supported; "
                                                   "convert them with .float() first") from None
    shape = tuple(array.shape) if hasattr(array, "shape") else np.shape(array)
    if len(shape) != 2:
        raise _bad(InputError, name, file,
                   f"expected a 2-D feature array of shape (n_samples, dim), got shape {shape}")


def as_feature_matrix(array, name: str, file=None) -> np.ndarray:
    """Validate a feature array and return it as a C-contiguous float32 array of shape (n, dim).

    Accepts any real numeric dtype (integers, float16/32/64, either byte order). float32 input that is
    already C-contiguous is returned without a copy; so is a memory-mapped file (a ``.npy`` loaded with
    ``mmap_mode``) of any such dtype: validated here by blocks read from the file, and read and
    converted block by block by the passes (:mod:`hubness_pr.engine.mapped`, through
    :func:`hubness_pr.engine.distances.as_tensor`), never copied whole. Raises InputError (a
    ValueError) naming ``name``, with ``role=name`` (and ``file=file`` where given: the line is then ``file (name): ...``), for a wrong rank, an empty set, a non-numeric
    dtype, NaN/Inf values, or values too large for float32 distances; InputTypeError (a TypeError)
    for None and for tensors of a dtype numpy lacks (bfloat16, float8).
    """
    check_feature_input(array, name, file)
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.memmap):
        array = np.asarray(array)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise _bad(InputError, name, file, f"expected a numeric feature array, got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise _bad(InputError, name, file, f"the feature array is empty (shape {array.shape})")
    floating = np.issubdtype(array.dtype, np.floating)
    narrowed = floating and array.dtype.itemsize > 4  # float64 and wider: values may exceed float32
    mapped = MappedRows(array, name) if mapped_file(array) is not None else None
    step = max(1, _FINITE_CHECK_BYTES // (array.shape[1] * array.dtype.itemsize))
    for start in range(0, array.shape[0] if floating else 0, step):
        block = mapped.raw(start, start + step) if mapped is not None else array[start:start + step]
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise _bad(InputError, name, file, f"row {bad} contains NaN or Inf values")
        if mapped is not None and narrowed:
            _check_fits_float32(to_float32(block), name, file)
    if mapped is not None:
        return array
    with np.errstate(over="ignore"):
        features = np.ascontiguousarray(array, dtype=np.float32)
    if narrowed:
        for start in range(0, features.shape[0], step):
            _check_fits_float32(features[start:start + step], name, file)
    return features


def _check_fits_float32(block: np.ndarray, name: str, file=None) -> None:
    """InputError where a value of the float32 ``block`` became Inf (the source was finite)."""
    if not np.isfinite(block).all():
        raise _bad(InputError, name, file, "feature values overflow float32; rescale the features")
