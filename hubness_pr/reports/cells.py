"""How a value reads in a text cell: the ``name: value`` lines of a run and the ``compare`` table.

One formatter for both (standard library only): booleans as ``true``/``false``, integers as they
are, floats with ``digits`` decimals (``nan`` for NaN), None as ``-``, ISO times to the minute.
"""
from __future__ import annotations

import math
import numbers


def format_cell(value, digits: int = 6) -> str:
    """``value`` as text; floats with ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return "nan" if math.isnan(value) else f"{float(value):.{digits}f}"
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        return value[:16].replace("T", " ")  # ISO time, to the minute (UTC)
    return str(value)
