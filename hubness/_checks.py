"""Parameter and array validation shared by the metric functions.

Messages follow scikit-learn's form: they name the parameter, the function, the allowed range and the
value received, so that a one-line error at the command line is enough to fix the call.
"""
from __future__ import annotations

import numbers

import numpy as np

from features.validation import check_int  # noqa: F401 - part of this module's interface

# Rows checked for NaN/Inf per step: bounds the temporary boolean array to a few MB.
_FINITE_CHECK_ROWS = 4096


def check_choice(value, name: str, func: str, choices) -> str:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The '{name}' parameter of {func} must be one of {allowed}. Got {value!r} instead."
        )
    return value


def check_feature_input(array, name: str) -> None:
    """The checks of :func:`as_feature_matrix` that need neither a copy nor a device transfer, for
    functions that take tensors where they lie: TypeError for None and for a torch dtype numpy lacks
    (bfloat16, float8), ValueError for a rank other than 2. Messages start with ``name``."""
    if array is None:
        raise TypeError(f"{name}: expected a feature array of shape (n_samples, dim), got None")
    if hasattr(array, "detach"):  # a torch tensor
        try:
            array.new_empty(0).cpu().numpy()
        except TypeError:  # numpy has no bfloat16 / float8: refuse rather than guess a conversion
            raise TypeError(f"{name}: torch tensors of dtype {array.dtype} are not supported; "
                            f"convert them with .float() first") from None
    shape = tuple(array.shape) if hasattr(array, "shape") else np.shape(array)
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D feature array of shape (n_samples, dim), got shape {shape}")


def as_feature_matrix(array, name: str) -> np.ndarray:
    """Validate a feature array and return it as a C-contiguous float32 array of shape (n, dim).

    Accepts any real numeric dtype (integers, float16/32/64). float32 input that is already
    C-contiguous is returned without a copy. Raises ValueError naming ``name`` for a wrong rank,
    an empty set, a non-numeric dtype, NaN/Inf values, or values too large for float32 distances;
    TypeError for None and for tensors of a dtype numpy lacks (bfloat16, float8).
    """
    check_feature_input(array, name)
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{name}: expected a numeric feature array, got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: the feature array is empty (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating):
        for start in range(0, array.shape[0], _FINITE_CHECK_ROWS):
            block = array[start:start + _FINITE_CHECK_ROWS]
            if not np.isfinite(block).all():
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise ValueError(f"{name}: row {bad} contains NaN or Inf values")
    with np.errstate(over="ignore"):
        features = np.ascontiguousarray(array, dtype=np.float32)
    if array.dtype.itemsize > 4 and np.issubdtype(array.dtype, np.floating):
        for start in range(0, features.shape[0], _FINITE_CHECK_ROWS):
            if not np.isfinite(features[start:start + _FINITE_CHECK_ROWS]).all():
                raise ValueError(f"{name}: feature values overflow float32; rescale the features")
    return features
