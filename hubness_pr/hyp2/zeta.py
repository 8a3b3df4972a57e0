"""The margin zeta of HyP²: 1 - 2 d / K, from the best known binary linear [K, k] codes.

C classes need k = ceil(log2 C) = (C - 1).bit_length() information bits; the best known minimum
distance d of a binary linear [K, k] code bounds how far apart C class centres can be on the
K-bit Hamming cube, and zeta = 1 - 2 d / K is the cosine of that angle. The table
``data/hyp2_zeta.csv`` (columns bits, k, zeta, min_distance; 1 <= k <= K <= 256) was decoded from the
original's ``codetable.xlsx`` (row K, column k) and checked against known optimal codes
(tests/test_hyp2_zeta.py). zeta is computed from the integer distance, not read from the rounded
column.
"""
from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

from hubness_pr.errors import InputError

MAX_BITS = 256
TABLE = "hyp2_zeta.csv"


@dataclass(frozen=True)
class Zeta:
    """zeta for ``bits`` = K and ``num_classes`` = C: ``k`` information bits, ``min_distance`` d."""

    bits: int
    num_classes: int
    k: int
    min_distance: int

    @property
    def value(self) -> float:
        return 1.0 - 2.0 * self.min_distance / self.bits

    def to_dict(self) -> dict:
        return {"zeta": self.value, "min_distance": self.min_distance, "code_dimension": self.k,
                "hash_bit": self.bits, "num_classes": self.num_classes}


@functools.lru_cache(maxsize=1)
def distance_table() -> dict[tuple[int, int], int]:
    """{(K, k): d} for every row of the packaged table."""
    text = resources.files(__package__).joinpath("data", TABLE).read_text(encoding="utf-8")
    return {(int(row["bits"]), int(row["k"])): int(row["min_distance"]) for row in csv.DictReader(io.StringIO(text))}


def code_dimension(num_classes: int) -> int:
    """k = ceil(log2 C), the information bits needed to give C classes distinct codewords."""
    return (int(num_classes) - 1).bit_length()


def lookup(bits: int, num_classes: int) -> Zeta:
    """zeta for K = ``bits`` and C = ``num_classes``; ValueError (one line) outside the table."""
    bits, num_classes = int(bits), int(num_classes)
    if num_classes < 2:
        raise InputError(f"HyP² needs at least 2 classes, got {num_classes}")
    if not 1 <= bits <= MAX_BITS:
        raise InputError(option="--hash_bit", value=bits, message=f"the zeta table covers 1 to {MAX_BITS} bits")
    k = code_dimension(num_classes)
    if k > bits:
        raise InputError(f"--hash_bit {bits} is too short for {num_classes} classes: they need a [K, k] code "
                         f"with k = ceil(log2 {num_classes}) = {k} <= K")
    return Zeta(bits=bits, num_classes=num_classes, k=k, min_distance=distance_table()[(bits, k)])
