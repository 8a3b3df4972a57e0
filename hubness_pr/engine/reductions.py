"""The reductions of the real x fake pass, declared once: both tile routes and every merge read this table.

Each entry of :data:`TABLE` says what one per-sample result of the cross pass is:

* ``side``: the set whose samples index the result: ``"real"`` (the tile's rows) or ``"fake"`` (its
  columns);
* ``threshold``: the squared-radius vector it compares with (a key of :data:`THRESHOLDS`, which says
  whether it belongs to the rows or the columns);
* ``compare``: ``"<"`` or ``"<="`` (membership of the pair in the threshold's ball), ``"ratio"``
  (realism: ``threshold / d2``, a value, not a decision), ``"min-threshold"`` (rarity: the smallest
  threshold whose ball holds the pair, ``d2 < threshold``) or ``"log-ratio"`` (P-precision and
  P-recall: the value ``log(d / R) = 0.5 log(d2 / threshold)`` of each pair with ``d2 < threshold``,
  from the pair's exact float64 distance: its threshold is ``inside``, so every pair within it
  plus the band is re-measured);
* ``op``: how the pairs reduce along the other side and how partial results combine across tiles,
  threads and ranks: ``any``, ``sum`` (a count), ``min``, ``argmax`` (a (ratio, real index) pair:
  larger ratio, then the lower index; -1 = none) or ``logsum`` (a float64 sum of the pairs'
  values; partial sums add, so the result depends on tiles, threads and ranks only by float64
  rounding);
* ``dtype``: the result's type (argmax: the ratio's; its index is int64).

The torch route (:func:`hubness_pr.engine.cross.torch_tile`), the fused CPU kernel
(:func:`hubness_pr.engine.kernels.cross_tile`, packed by :func:`pack`) and the ranks' combine at the end of
:func:`hubness_pr.engine.cross.cross_pass` (:meth:`hubness_pr.engine.distributed.Group.combine`) loop over these entries;
adding a cross metric is one entry here (plus its threshold vector, if new) and the code that reads
its result. Numerics only: no files, options or environment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Threshold:
    """A squared-radius vector the pass compares with (float64, frame units, one per sample)."""

    name: str
    side: str         # "real": one per tile row; "fake": one per tile column
    band: str | None  # the threshold whose screening band re-measures the pairs near this one
    doc: str
    inside: bool = False  # every pair inside it (plus the band) is re-measured: a value needs its exact distance


# The hub radii are the k radii masked (-1 outside the hubs): the k radii's band covers them, and the
# pass brings the k radii along (:func:`needed`). Realism's radii have no band: a ratio is a value, not
# a decision (re-measured pairs of the other thresholds use their exact distance).
THRESHOLDS = {t.name: t for t in (
    Threshold("r_pr", "real", "r_pr", "real radii at k"),
    Threshold("r_dc", "real", "r_dc", "real radii at dc_k"),
    Threshold("r_rt", "real", None, "realism's pruned real radii at k (0: pruned)"),
    Threshold("r_hub", "real", "r_pr", "real radii at k at real hubs, -1 elsewhere"),
    Threshold("r_cover", "real", "r_cover", "real radii at C k (PR-Cover)"),
    Threshold("s_pr", "fake", "s_pr", "fake radii at k"),
    Threshold("s_hub", "fake", "s_pr", "fake radii at k at fake hubs, -1 elsewhere"),
    Threshold("s_cover", "fake", "s_cover", "fake radii at C k (PR-Cover)"),
    Threshold("r_ppr", "real", "r_ppr", "P-precision's R^2 = (a * mean real radius at ppr_k)^2, every real",
              inside=True),
    Threshold("s_ppr", "fake", "s_ppr", "P-recall's R^2 = (a * mean fake radius at ppr_k)^2, every fake",
              inside=True),
    Threshold("r_clip", "real", "r_clip", "real radii at dc_k clipped at their median (clipped density)"),
)}


def needed(names) -> tuple:
    """The thresholds the reductions ``names`` read, with the ones whose bands cover them (table order)."""
    used = {TABLE[name].threshold for name in names}
    used |= {THRESHOLDS[t].band for t in used if THRESHOLDS[t].band}
    return tuple(t for t in THRESHOLDS if t in used)


def inside(present) -> tuple:
    """Of the thresholds ``present``, those whose every pair inside (plus the band) is re-measured."""
    return tuple(t for t in THRESHOLDS if t in present and THRESHOLDS[t].inside)


def banded(present) -> tuple:
    """Of the thresholds ``present``, those whose own band is screened (table order)."""
    return tuple(t for t in THRESHOLDS if t in present and THRESHOLDS[t].band == t)


def decisive(present) -> tuple:
    """Of the thresholds ``present``, those some membership decision reads (all but ratios): a pair
    beyond every one of them plus its band decides nothing."""
    ratio = {r.threshold for r in TABLE.values() if r.compare == "ratio"}
    return tuple(t for t in THRESHOLDS if t in present and t not in ratio)


@dataclass(frozen=True)
class Reduction:
    name: str
    side: str        # "real" | "fake": the samples indexing the result
    threshold: str   # a key of THRESHOLDS
    compare: str     # "<" | "<=" | "ratio" | "min-threshold" | "log-ratio"
    op: str          # "any" | "sum" | "min" | "argmax" | "logsum"
    dtype: type
    doc: str


# In this order everywhere (the ranks combine in it: a set's order must not differ by process). Entries
# sharing a membership mask are adjacent (the torch route keeps the last mask).
TABLE = {r.name: r for r in (
    Reduction("realism", "fake", "r_rt", "ratio", "argmax", np.float64, "argmax over reals of rt_i^2 / d2"),
    Reduction("in_real", "fake", "r_pr", "<=", "any", np.bool_, "some real ball holds the fake (precision)"),
    Reduction("rarity", "fake", "r_pr", "min-threshold", "min", np.float64, "min r_i^2 over balls with d2 < r_i^2"),
    Reduction("in_rhub", "fake", "r_hub", "<=", "any", np.bool_, "some real hub ball holds the fake (eP&R)"),
    Reduction("dens", "fake", "r_dc", "<", "sum", np.int64, "real dc balls holding the fake (density)"),
    Reduction("covered", "real", "r_dc", "<", "any", np.bool_, "some fake inside the real's dc ball (coverage)"),
    Reduction("cover_count", "real", "r_dc", "<", "sum", np.int64,
              "fakes inside the real's dc ball (clipped coverage: min(count, dc_k) / dc_k)"),
    Reduction("in_fake", "real", "s_pr", "<=", "any", np.bool_, "some fake ball holds the real (recall)"),
    Reduction("in_fhub", "real", "s_hub", "<=", "any", np.bool_, "some fake hub ball holds the real (eP&R)"),
    Reduction("cover_fake", "fake", "s_cover", "<=", "sum", np.int64,
              "reals inside the fake's C k-NN ball (PR-Cover precision)"),
    Reduction("cover_real", "real", "r_cover", "<=", "sum", np.int64,
              "fakes inside the real's C k-NN ball (PR-Cover recall)"),
    Reduction("ppr_fake", "fake", "r_ppr", "log-ratio", "logsum", np.float64,
              "sum over reals with d < R of log(d / R) (P-precision: log prod (1 - f))"),
    Reduction("ppr_real", "real", "s_ppr", "log-ratio", "logsum", np.float64,
              "sum over fakes with d < R of log(d / R) (P-recall)"),
    Reduction("clip_dens", "fake", "r_clip", "<=", "sum", np.int64,
              "clipped real balls holding the fake (clipped density)"),
)}

# ---------------------------------------------------------------- the table packed for the jitted kernel

OPS = ("any", "sum", "min", "argmax", "logsum")
OP_ANY, OP_SUM, OP_MIN, OP_ARGMAX, OP_LOGSUM = range(5)
SIDE_REAL, SIDE_FAKE = 0, 1
# columns of a packed row
COL_OP, COL_SIDE, COL_THR_SIDE, COL_SLOT, COL_STRICT, COL_OUT = range(6)
ROW_SLOTS = tuple(name for name, t in THRESHOLDS.items() if t.side == "real")
COL_SLOTS = tuple(name for name, t in THRESHOLDS.items() if t.side == "fake")


def slot(threshold: str) -> int:
    """The threshold's column in the (rows x slot) or (slot x columns) threshold arrays."""
    slots = ROW_SLOTS if THRESHOLDS[threshold].side == "real" else COL_SLOTS
    return slots.index(threshold)


def pack(names) -> tuple[np.ndarray, tuple, tuple]:
    """The entries ``names`` (in table order) as an int64 array (entries x 6: op, side, threshold
    side, threshold slot, strict, output slot), and the output slots' names of the rows' and the
    columns' outputs (realism takes two column slots: ratio, then index)."""
    rows, row_out, col_out = [], [], []
    for name in TABLE:
        if name not in names:
            continue
        r = TABLE[name]
        outs = row_out if r.side == "real" else col_out
        rows.append((OPS.index(r.op), SIDE_REAL if r.side == "real" else SIDE_FAKE,
                     SIDE_REAL if THRESHOLDS[r.threshold].side == "real" else SIDE_FAKE,
                     slot(r.threshold), int(r.compare in ("<", "min-threshold", "log-ratio")), len(outs)))
        outs.append(name)
        if r.op == "argmax":
            outs.append(name + "_index")
    return np.array(rows, dtype=np.int64).reshape(-1, 6), tuple(row_out), tuple(col_out)


def initial_value(op: str) -> float:
    """The identity of ``op`` (argmax: the ratio's; its index starts at -1)."""
    return {"any": 0.0, "sum": 0.0, "min": float("inf"), "argmax": 0.0, "logsum": 0.0}[op]


# ---------------------------------------------------------------- partial results

def initial(name: str, n: int, dev) -> torch.Tensor | tuple:
    """A full-length result of reduction ``name`` before any pair (torch, on ``dev``)."""
    r = TABLE[name]
    if r.op == "argmax":
        return (torch.zeros(n, dtype=torch.float64, device=dev), torch.full((n,), -1, dtype=torch.int64, device=dev))
    dtype = {np.bool_: torch.bool, np.int64: torch.int64, np.float64: torch.float64}[r.dtype]
    return torch.full((n,), initial_value(r.op), dtype=dtype, device=dev)


def combine(name: str, total, part):
    """Merge the partial result ``part`` of reduction ``name`` into ``total`` (numpy or torch arrays;
    argmax: a pair (ratio, index): larger ratio wins, then the lower index)."""
    op = TABLE[name].op
    lib = torch if isinstance(part if op != "argmax" else part[0], torch.Tensor) else np
    if op == "any":
        return lib.logical_or(total, part)
    if op in ("sum", "logsum"):
        return total + part
    if op == "min":
        return lib.minimum(total, part)
    (tv, ti), (pv, pi) = total, part
    better = (pv > tv) | ((pv == tv) & (pi >= 0) & ((ti < 0) | (pi < ti)))
    return lib.where(better, pv, tv), lib.where(better, pi, ti)
