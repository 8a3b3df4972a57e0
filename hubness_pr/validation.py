"""Parameter checks shared by every package of the toolkit, with scikit-learn's form of message: the
parameter, the function, the allowed range and the value received."""
from __future__ import annotations

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
