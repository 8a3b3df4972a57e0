"""Hash codes, Hamming ranking and mAP@R against a brute-force reference written here."""
import numpy as np
import pytest
import torch

from hubness_pr.hyp2.ranking import hamming_ranking, hash_codes, retrieval_scores


def brute_force_ranking(query, database):
    """Database indices sorted by (Hamming distance, index), and the distances, bit by bit."""
    dist = [sum(int(a != b) for a, b in zip(query, item)) for item in database]
    order = sorted(range(len(database)), key=lambda j: (dist[j], j))
    return order, [dist[j] for j in order]


def brute_force_scores(q_codes, db_codes, q_labels, db_labels, R, topn=()):
    """(mAP@R, AP per query, {N: precision@N}) by the definition, one query at a time."""
    R = min(R, len(db_codes))
    aps, precision = [], {n: [] for n in topn}
    for q, ql in zip(q_codes.tolist(), q_labels.tolist()):
        order, _ = brute_force_ranking(q, db_codes.tolist())
        rel = [any(a and b for a, b in zip(ql, db_labels[j].tolist())) for j in order]
        hits, total = 0, 0.0
        for j in range(R):
            if rel[j]:
                hits += 1
                total += hits / (j + 1)
        aps.append(total / hits if hits else 0.0)
        for n in topn:
            precision[n].append(sum(rel[:n]) / n)
    return float(np.mean(aps)), np.array(aps), {n: float(np.mean(v)) for n, v in precision.items()}


def random_problem(seed, n_q=23, n_db=57, bits=4, classes=5):
    rng = np.random.default_rng(seed)
    q = np.where(rng.random((n_q, bits)) < 0.5, 1, -1).astype(np.int8)
    db = np.where(rng.random((n_db, bits)) < 0.5, 1, -1).astype(np.int8)
    ql = (rng.random((n_q, classes)) < 0.2).astype(np.uint8)
    dl = (rng.random((n_db, classes)) < 0.2).astype(np.uint8)
    ql[0] = 0  # a query without labels: no hit anywhere
    return q, db, ql, dl


def test_hash_codes_sign_of_zero_is_plus_one():
    x = np.array([[0.0, -0.0, 1e-30, -1e-30, 3.0, -2.0]])
    assert hash_codes(x).tolist() == [[1, 1, 1, -1, 1, -1]]
    assert hash_codes(torch.tensor(x)).dtype == np.int8


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bits", [2, 4, 12])
def test_map_matches_brute_force_with_ties_and_queries_without_hits(seed, bits):
    q, db, ql, dl = random_problem(seed, bits=bits)
    for R in (1, 10, 57, 1000):
        got = retrieval_scores(q, db, ql, dl, R, topn=(1, 5, 20))
        want_map, want_ap, want_p = brute_force_scores(q, db, ql, dl, R, topn=(1, 5, 20))
        assert got.R == min(R, 57)
        np.testing.assert_allclose(got.ap, want_ap, rtol=0, atol=1e-12)
        assert got.map == pytest.approx(want_map, abs=1e-12)
        assert got.precision_at == pytest.approx(want_p, abs=1e-12)
        assert got.ap[0] == 0.0


def test_ties_are_broken_by_database_index():
    # every database item has the same code: the ranking is the database order
    q = np.ones((1, 8), np.int8)
    db = np.ones((6, 8), np.int8)
    ql = np.array([[1, 0]], np.uint8)
    dl = np.array([[0, 1], [0, 1], [1, 0], [0, 1], [1, 1], [0, 1]], np.uint8)
    scores = retrieval_scores(q, db, ql, dl, R=6)
    assert scores.map == pytest.approx((1 / 3 + 2 / 5) / 2)  # hits at ranks 3 and 5
    flipped = retrieval_scores(q, db[::-1], ql, dl[::-1], R=6)
    assert flipped.map == pytest.approx((1 / 2 + 2 / 4) / 2)  # hits at ranks 2 and 4


def test_ranking_order_and_distances_and_tiling():
    q, db, _, _ = random_problem(11, n_q=9, n_db=40, bits=6)
    for memory in (256, 1e-9):  # one tile; one query per tile
        tiles = list(hamming_ranking(q, db, depth=40, memory_mib=memory))
        order = np.concatenate([t[2] for t in tiles])
        dist = np.concatenate([t[3] for t in tiles])
        for i in range(9):
            want_order, want_dist = brute_force_ranking(q[i].tolist(), db.tolist())
            assert order[i].tolist() == want_order and dist[i].tolist() == want_dist
        assert len(tiles) == (1 if memory == 256 else 9)
    partial = np.concatenate([t[2] for t in hamming_ranking(q, db, depth=7)])
    assert partial.shape == (9, 7) and np.array_equal(partial, order[:, :7])


def test_tile_size_does_not_change_scores():
    q, db, ql, dl = random_problem(4, n_q=30, n_db=80, bits=3)
    a = retrieval_scores(q, db, ql, dl, 20, topn=(10,))
    b = retrieval_scores(q, db, ql, dl, 20, topn=(10,), memory_mib=1e-9)
    assert np.array_equal(a.ap, b.ap) and a.precision_at == b.precision_at


def test_input_errors():
    q, db, ql, dl = random_problem(0)
    with pytest.raises(ValueError, match="query codes"):
        retrieval_scores(np.zeros_like(q), db, ql, dl, 10)  # a 0 is not a code
    with pytest.raises(ValueError, match="bits"):
        retrieval_scores(q[:, :3], db, ql, dl, 10)
    with pytest.raises(ValueError, match="classes"):
        retrieval_scores(q, db, ql[:, :4], dl, 10)
    with pytest.raises(ValueError, match="R must be >= 1"):
        retrieval_scores(q, db, ql, dl, 0)
