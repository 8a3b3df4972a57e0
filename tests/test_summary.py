"""The real set's k-NN summary: stored, reused bit for bit, and never trusted when it does not fit."""
import json

import numpy as np
import pytest

import hubness_pr
from hubness_pr.io.summary import SummaryCache, SummaryKey, content_digest, load_summary, save_summary


def sets(seed=0, n_real=300, n_fake=250, dim=12):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, dim)).astype(np.float32), (rng.standard_normal((n_fake, dim)) + 0.3).astype(np.float32)


def comparable(ev):
    out = hubness_pr.to_dict(ev)
    out.pop("timings")
    return hubness_pr.json_safe(out)


def test_a_stored_summary_gives_identical_results(tmp_path):
    real, fake = sets()
    k_max, ks = hubness_pr.real_knn_needs(hubness_pr.DEFAULT_METRICS, 3, 5)
    graph = hubness_pr.nearest_neighbors(real, k_max, exact_ks=ks)
    key = SummaryKey.of(real, k_max, ks)
    save_summary(tmp_path / "s.npz", graph, key)
    loaded = load_summary(tmp_path / "s.npz", key)
    np.testing.assert_array_equal(loaded.indices, graph.indices)
    np.testing.assert_array_equal(loaded.sq_distances, graph.sq_distances)
    fresh = hubness_pr.evaluate(real=real, fake=fake)
    reused = hubness_pr.evaluate(real=real, fake=fake, real_knn=loaded)
    assert comparable(reused) == comparable(fresh)
    np.testing.assert_array_equal(reused.realism.scores, fresh.realism.scores)
    np.testing.assert_array_equal(reused.rarity.scores, fresh.rarity.scores)
    np.testing.assert_array_equal(reused.real_k_occurrence, fresh.real_k_occurrence)


def test_a_summary_is_recomputed_when_anything_it_depends_on_changes(tmp_path):
    real, _ = sets(1)
    key = SummaryKey.of(real, 5, (3, 5))
    cache = SummaryCache(tmp_path)
    assert cache.load(key)[0] is None
    graph = hubness_pr.nearest_neighbors(real, 5, exact_ks=(3, 5))
    assert "saved" in cache.store(key, graph)
    got, message = cache.load(key)
    assert got is not None and "reused" in message
    changed = real.copy()
    changed[7, 0] += 1e-3
    other_features = SummaryKey.of(changed, 5, (3, 5))
    subset = SummaryKey.of(real[::2], 5, (3, 5))
    other_k = SummaryKey.of(real, 7, (3, 7))
    for other in (other_features, subset, other_k):
        assert other.file_name() != key.file_name()
        assert cache.load(other)[0] is None
        with pytest.raises(ValueError, match="made for other inputs"):
            load_summary(cache.path(key), other)  # a file under the wrong name is still refused
    older = SummaryKey(**{**key.__dict__, "engine": key.engine - 1})
    with pytest.raises(ValueError, match=r"made for other inputs \(engine differ"):
        load_summary(cache.path(key), older)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "edit_index"])
def test_a_damaged_summary_is_never_trusted(tmp_path, damage):
    real, _ = sets(2)
    key = SummaryKey.of(real, 3, (3,))
    cache = SummaryCache(tmp_path)
    cache.store(key, hubness_pr.nearest_neighbors(real, 3))
    path = cache.path(key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1:])
    elif damage == "garbage":
        path.write_bytes(b"not an npz at all")
    else:  # a consistent-looking edit: indices changed, checksum left as it was
        with np.load(path) as f:
            arrays = dict(f)
        arrays["knn_indices"] = arrays["knn_indices"][::-1].copy()
        np.savez(path, **arrays)
    graph, message = cache.load(key)
    assert graph is None and "not used" in message and "recomputing" in message


def test_cache_that_cannot_be_written_is_said_not_raised(tmp_path):
    real, _ = sets(3)
    (tmp_path / "file").write_text("x")
    cache = SummaryCache(tmp_path / "file" / "sub")
    message = cache.store(SummaryKey.of(real, 3, (3,)), hubness_pr.nearest_neighbors(real, 3))
    assert message.startswith("k-NN summary not cached")


def test_content_digest_reads_memory_mapped_arrays_in_chunks(tmp_path, monkeypatch):
    real, _ = sets(4, n_real=1000)
    np.save(tmp_path / "r.npy", real)
    mapped = np.load(tmp_path / "r.npy", mmap_mode="r")
    monkeypatch.setattr("hubness_pr.io.store.DIGEST_BLOCK_BYTES", 4096)  # many blocks
    assert content_digest(mapped) == content_digest(real)
    assert content_digest(real[:-1]) != content_digest(real)
    assert content_digest(real.astype(np.float64)) == content_digest(real)  # the float32 values count


def test_evaluate_refuses_a_graph_that_does_not_fit():
    real, fake = sets(5)
    small = hubness_pr.nearest_neighbors(real, 3)
    with pytest.raises(ValueError, match="does not fit: a graph of 300 samples, k_max 3"):
        hubness_pr.evaluate(real=real, fake=fake, real_knn=small)  # dc needs k=5
    with pytest.raises(ValueError, match="needed 299 samples"):
        hubness_pr.evaluate(real=real[:-1], fake=fake, metrics="pr", real_knn=small)
    with pytest.raises(TypeError, match="'real_knn' parameter of evaluate must be a NeighborGraph"):
        hubness_pr.evaluate(real=real, fake=fake, metrics="pr", real_knn=json.dumps({}))
    reused = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,epr,hubness", real_knn=small)
    fresh = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,epr,hubness")
    assert (reused.pr, reused.epr, reused.hubness_real) == (fresh.pr, fresh.epr, fresh.hubness_real)
