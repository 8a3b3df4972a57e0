"""What the benchmarks share: the one table-cell formatter and Markdown table, the metric names (taken
from the library), the machine's description, and result files written atomically.

Standard library and numpy at import; ``hubness_pr`` (lazy, so no torch) for the metric names.
"""
from __future__ import annotations

import math
import platform
from pathlib import Path

import hubness_pr

# every metric a default run computes (what "all metrics" means in the benchmarks), in report order
ALL_METRICS = hubness_pr.DEFAULT_METRICS
# the metrics whose JSON blocks are a few set-level values: the benchmarks record them with each
# timing and compare them exactly between routes (realism, rarity and hubness are per-sample scores
# and their statistics, compared apart where needed)
VALUE_METRICS = tuple(name for name in hubness_pr.METRICS if name in ("epr", "pr", "dc"))


def values(evaluation) -> dict:
    """The JSON blocks of :data:`VALUE_METRICS` that ``evaluation`` computed."""
    document = hubness_pr.to_dict(evaluation)
    return {name: document[name] for name in VALUE_METRICS if name in document}


def fmt(x, signed: bool = False, digits: int = 3) -> str:
    """A number as a table cell: ``digits`` decimals (a sign with ``signed``), ``n/a`` for None,
    NaN and infinities, and no ``-0.000``."""
    if x is None or not math.isfinite(x):
        return "n/a"
    x = 0.0 if abs(x) < 0.5 * 10.0 ** -digits else x
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def ratio(a: dict, b: dict, digits: int = 2) -> str:
    """``a["seconds"] / b["seconds"]`` as ``1.23x``; empty where either has no time (skipped, failed)."""
    return f"{fmt(a['seconds'] / b['seconds'], digits=digits)}x" if "seconds" in a and "seconds" in b else ""


def table(header: list, rows: list) -> str:
    """A Markdown table (a ``|`` inside a cell escaped), ending with a newline."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    """The CPU's model name, where /proc/cpuinfo tells."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_model() -> str:
    """CPU model name and vector width (GEMM speed depends on both), where /proc/cpuinfo tells."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{fields.get('model name', platform.machine())} ({vector})"


def write_text(path, text: str) -> None:
    """``text`` into ``path`` (its folder made), through a temporary file put in place at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with hubness_pr.atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)
