"""Parameter checks shared by every package of the toolkit, with scikit-learn's form of message: the
parameter, the function, the allowed range and the value received."""
from __future__ import annotations

import math
import numbers

from hubness_pr.errors import InputError


def check_int(value, name: str, func: str, low: int = 1) -> int:
    """Return ``value`` as an int, or raise :class:`InputError` (a ValueError, ``role=name``) if it is
    not an int >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(
            f"The '{name}' parameter of {func} must be an int in the range [{low}, inf). "
            f"Got {value!r} instead.", role=name
        )
    return int(value)


def check_positive_float(value, name: str, func: str) -> float:
    """Return ``value`` as a float, or raise :class:`InputError` (``role=name``) if it is not a finite
    real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InputError(
            f"The '{name}' parameter of {func} must be a finite number in the range (0, inf). "
            f"Got {value!r} instead.", role=name
        )
    return float(value)
