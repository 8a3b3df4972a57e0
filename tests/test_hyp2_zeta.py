"""zeta lookup against the packaged table, and the table against coding theory."""
import csv
import math
from pathlib import Path

import pytest

from hubness_pr.hyp2.zeta import distance_table, lookup

TABLE = Path(__file__).resolve().parent.parent / "hubness_pr" / "hyp2" / "data" / "hyp2_zeta.csv"


@pytest.fixture(scope="module")
def rows():
    with open(TABLE, newline="") as handle:
        return [{k: (float(v) if k == "zeta" else int(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_table_is_complete_and_zeta_column_is_one_minus_2d_over_k(rows):
    assert {(r["bits"], r["k"]) for r in rows} == {(n, k) for n in range(1, 257) for k in range(1, n + 1)}
    for r in rows:
        assert r["zeta"] == pytest.approx(1 - 2 * r["min_distance"] / r["bits"], abs=1e-9)


def test_lookup_reads_row_k_equals_ceil_log2_c(rows):
    by_key = {(r["bits"], r["k"]): r for r in rows}
    for bits in (1, 2, 12, 16, 24, 32, 36, 48, 64, 100, 255, 256):
        for classes in (2, 3, 4, 5, 10, 16, 17, 20, 21, 38, 80, 81, 1000):
            k = math.ceil(math.log2(classes))
            if k > bits:
                continue
            z = lookup(bits, classes)
            assert (z.k, z.min_distance) == (k, by_key[(bits, k)]["min_distance"])
            assert z.value == pytest.approx(by_key[(bits, k)]["zeta"], abs=1e-9)


def test_published_settings():
    # VOC (20 classes) and NUS-WIDE (21): k = 5; Flickr-25K lists (38): k = 6
    assert lookup(48, 20).k == 5 and lookup(48, 21).k == 5 and lookup(12, 38).k == 6
    assert lookup(48, 20).value == 0.0  # [48, 5] codes reach d = 24
    assert lookup(16, 20).min_distance == 8  # [16, 5]: first-order Reed-Muller
    assert lookup(64, 38).value == 1 - 2 * 32 / 64  # [64, 6] reaches d = 32 (Reed-Muller [64, 7])


KNOWN_OPTIMAL = [  # (n, k, d) of classical codes whose minimum distance is optimal
    (7, 4, 3), (15, 11, 3), (31, 26, 3), (63, 57, 3), (127, 120, 3), (255, 247, 3),  # Hamming
    (8, 4, 4), (16, 11, 4), (32, 26, 4), (64, 57, 4), (128, 120, 4), (256, 247, 4),  # extended Hamming
    (7, 3, 4), (15, 4, 8), (31, 5, 16), (63, 6, 32), (127, 7, 64), (255, 8, 128),   # simplex
    (8, 4, 4), (16, 5, 8), (32, 6, 16), (64, 7, 32), (128, 8, 64), (256, 9, 128),   # first-order Reed-Muller
    (23, 12, 7), (24, 12, 8),                                                          # Golay
]


def test_known_optimal_codes():
    table = distance_table()
    for n, k, d in KNOWN_OPTIMAL:
        assert table[(n, k)] == d, (n, k)
    for n in range(1, 257):
        assert table[(n, 1)] == n  # repetition code
        assert table[(n, n)] == 1  # the whole space
        if n >= 2:
            assert table[(n, n - 1)] == 2  # parity check


def test_griesmer_bound_and_monotonicity():
    table = distance_table()
    for (n, k), d in table.items():
        assert sum(math.ceil(d / 2**i) for i in range(k)) <= n, (n, k, d)  # no linear code beats Griesmer
        if (n + 1, k) in table:
            assert table[(n + 1, k)] >= d  # one more bit cannot hurt
        if (n, k + 1) in table:
            assert table[(n, k + 1)] <= d  # a subcode of the larger code exists


@pytest.mark.parametrize("bits, classes, fragment", [
    (48, 1, "at least 2 classes"),
    (0, 20, "covers 1 to 256 bits"),
    (257, 20, "covers 1 to 256 bits"),
    (4, 20, "too short for 20 classes"),
])
def test_errors(bits, classes, fragment):
    with pytest.raises(ValueError, match=fragment):
        lookup(bits, classes)
