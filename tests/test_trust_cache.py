"""The real set's k-NN summary is trusted only when it is ours and consistent with the features:
a shared cache folder (links, FIFOs, devices, other owners, writable by others) is refused with one
warning and never written through; a forged summary (edited arrays, checksum recomputed) is checked
against the features and recomputed; an .npz member is never inflated beyond what its key allows."""
import functools
import json
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import hubness_pr
from hubness_pr.io import summary
from hubness_pr.commands.metrics import main
from hubness_pr.io.summary import SummaryCache, SummaryKey
from tests.cli_helpers import call

DEADLINE = 60  # seconds a run may take here before it counts as hung


def data(seed=0, n_real=90, n_fake=80, dim=6):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_real, dim)).astype(np.float32),
            (rng.standard_normal((n_fake, dim)) + 0.25).astype(np.float32))


def key_and_graph(real, k=3, dc_k=5):
    k_max, ks = hubness_pr.real_knn_needs(hubness_pr.DEFAULT_METRICS, k, dc_k)
    return SummaryKey.of(real, k_max, ks), hubness_pr.nearest_neighbors(real, k_max, exact_ks=ks)


def within_deadline(function, *args):
    """``function(*args)`` in a thread; fails (instead of hanging the suite) past the deadline."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", function(*args)), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"still running after {DEADLINE} s (blocked on the cache entry?)"
    return out["value"]


# ---- the library: SummaryCache ---------------------------------------------------------------

def test_a_new_cache_folder_and_its_files_are_private(tmp_path):
    real, _ = data()
    key, graph = key_and_graph(real)
    cache = SummaryCache(tmp_path / "deep" / "cache")
    assert "saved to" in cache.store(key, graph)
    assert stat.S_IMODE(os.stat(cache.folder).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(cache.path(key)).st_mode) & 0o077 == 0
    assert [p.name for p in cache.folder.iterdir()] == [key.file_name()]  # no temporary file left
    got, message = cache.load(key)
    assert got is not None and "reused" in message and cache.refused is None
    np.testing.assert_array_equal(got.indices, graph.indices)


def plant(cache, key, what, outside):
    """Put ``what`` at the key's file name in the cache folder (which is private)."""
    cache.folder.mkdir(mode=0o700, exist_ok=True)
    path = cache.path(key)
    if what == "symlink":
        path.symlink_to(outside)
    elif what == "dangling symlink":
        path.symlink_to(outside.parent / "nothing-here")
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "device":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
        except PermissionError:
            pytest.skip("creating a device node needs root")
    elif what == "folder":
        path.mkdir()
    elif what == "group-writable file":
        summary.save_summary(path, key_and_graph(np.load(outside.parent / "real.npy"))[1], key)
        path.chmod(0o664)
    elif what == "other owner":
        summary.save_summary(path, key_and_graph(np.load(outside.parent / "real.npy"))[1], key)
        path.chmod(0o600)
        chown_or_skip(path)
    return path


def chown_or_skip(path):
    try:
        os.chown(path, 12345, 12345, follow_symlinks=False)
    except PermissionError:
        pytest.skip("giving a file to another user needs root")


KINDS = ["symlink", "dangling symlink", "fifo", "device", "folder", "group-writable file", "other owner"]


@pytest.mark.parametrize("what", KINDS)
def test_an_entry_that_is_not_ours_is_refused_left_alone_and_never_blocks(tmp_path, what):
    real, _ = data(1)
    np.save(tmp_path / "real.npy", real)
    outside = tmp_path / "precious.txt"
    outside.write_text("root's file\n")
    key, graph = key_and_graph(real)
    cache = SummaryCache(tmp_path / "cache")
    path = plant(cache, key, what, outside)
    before = os.lstat(path)
    got, message = within_deadline(cache.load, key)
    assert got is None and cache.refused and "computing without caching" in message and str(path) in message
    stored = within_deadline(cache.store, key, graph)
    assert stored.startswith("k-NN summary not cached")
    after = os.lstat(path)  # left as it was: not replaced, not written through
    assert (after.st_ino, after.st_mode, after.st_uid) == (before.st_ino, before.st_mode, before.st_uid)
    assert outside.read_text() == "root's file\n"
    assert sorted(p.name for p in cache.folder.iterdir()) == [key.file_name()]  # no temporary left


@pytest.mark.parametrize("problem", ["world-writable", "group-writable", "other owner", "a file"])
def test_a_cache_folder_that_is_not_private_is_refused_whole(tmp_path, problem):
    real, _ = data(2)
    key, graph = key_and_graph(real)
    folder = tmp_path / "cache"
    if problem == "a file":
        folder.write_text("x")
    else:
        folder.mkdir(mode=0o700)
        SummaryCache(folder).store(key, graph)  # a valid summary: still not read from such a folder
        if problem == "other owner":
            chown_or_skip(folder)
        else:
            folder.chmod(0o777 if problem == "world-writable" else 0o770)
    cache = SummaryCache(folder)
    got, message = cache.load(key)
    assert got is None and cache.refused and "computing without caching" in message and str(folder) in message
    assert cache.store(key, graph).startswith("k-NN summary not cached")
    if problem != "a file":
        assert [p.name for p in folder.iterdir()] == [key.file_name()]


def test_writing_replaces_a_link_at_the_name_and_never_follows_it(tmp_path):
    # a link planted between the look and the write (a race): the write creates a new file under a
    # private name (O_EXCL | O_NOFOLLOW) and renames it over the link, whose target stays as it was
    real, _ = data(3)
    key, graph = key_and_graph(real)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep\n")
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    (folder / key.file_name()).symlink_to(outside)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        summary._write_private(fd, key.file_name(), summary.summary_arrays(graph, key))
    finally:
        os.close(fd)
    assert outside.read_text() == "keep\n"
    written = folder / key.file_name()
    assert not written.is_symlink() and stat.S_IMODE(written.stat().st_mode) == 0o600
    got, _ = SummaryCache(folder).load(key)
    np.testing.assert_array_equal(got.sq_distances, graph.sq_distances)


# ---- the command: improved_precision_recall_hubness.py ----------------------------------------

@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBNESS_CACHE", str(tmp_path / "cache"))
    real, fake = data(4, n_real=120, n_fake=100, dim=8)
    np.save("real.npy", real)
    np.save("fake.npy", fake)
    return tmp_path


def metrics_of(path):
    document = json.loads(Path(path).read_text())
    return {name: document[name] for name in ("epr", "pr", "dc", "realism", "rarity", "hubness")}, document["cache"]["real"]


def run(*argv):
    result = within_deadline(call, main, *argv)
    assert result.returncode == 0, result.stderr
    return result


def cache_lines(stderr):
    return [line for line in stderr.splitlines() if "cache" in line or "summary" in line]


@pytest.mark.parametrize("what", KINDS)
def test_the_command_refuses_a_planted_entry_with_one_warning_and_correct_results(files, what):
    outside = files / "precious.txt"
    outside.write_text("root's file\n")
    run("real.npy", "fake.npy", "--json", "plain.json", "--no_cache")
    key = SummaryKey.of(np.load("real.npy"), *hubness_pr.real_knn_needs(hubness_pr.DEFAULT_METRICS, 3, 5))
    path = plant(SummaryCache(files / "cache"), key, what, outside)
    before = os.lstat(path)
    result = run("real.npy", "fake.npy", "--json", "a.json")
    lines = cache_lines(result.stderr)
    assert len(lines) == 1 and "computing without caching" in lines[0] and str(path) in lines[0], result.stderr
    (got, cache), (expected, _) = metrics_of("a.json"), metrics_of("plain.json")
    assert got == expected and cache["status"].startswith("computed (not cached:")
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert outside.read_text() == "root's file\n"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_the_command_refuses_a_shared_cache_folder(files, mode):
    (files / "cache").mkdir()
    (files / "cache").chmod(mode)
    run("real.npy", "fake.npy", "--json", "plain.json", "--no_cache")
    result = run("real.npy", "fake.npy", "--json", "a.json", "--cache_dir", "cache")
    lines = cache_lines(result.stderr)
    assert len(lines) == 1 and "writable by" in lines[0] and "computing without caching" in lines[0], result.stderr
    assert metrics_of("a.json")[0] == metrics_of("plain.json")[0]
    assert list((files / "cache").iterdir()) == []  # nothing written into it


def test_the_command_creates_a_private_cache_and_reuses_it(files):
    run("real.npy", "fake.npy", "--json", "a.json")
    run("real.npy", "fake.npy", "--json", "b.json")
    (a, cache_a), (b, cache_b) = metrics_of("a.json"), metrics_of("b.json")
    assert a == b and (cache_a["status"], cache_b["status"]) == ("computed", "reused")
    assert stat.S_IMODE(os.stat(files / "cache").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache_a["path"]).st_mode) == 0o600


# ---- forged summaries: arrays edited, checksum recomputed --------------------------------------

ROW = 7  # the row a single-row forgery edits


def forged(real, graph, how):
    """``graph`` edited as a forger would, as (indices, sq_distances)."""
    idx, sq = graph.indices.copy(), graph.sq_distances.copy()
    n, k = idx.shape
    if how == "farther neighbour, its distance stored":  # every row's k-th neighbour: the (k+1)-th
        wider = hubness_pr.nearest_neighbors(real, k + 1)
        idx[:, k - 1], sq[:, k - 1] = wider.indices[:, k], wider.sq_distances[:, k]
    elif how == "farther neighbour in a column no radius reads":
        far = np.argmax(((real - real[ROW]) ** 2).sum(axis=1))
        idx[ROW, 0] = far
    elif how == "distances scaled":
        sq *= 4.0
    elif how == "one radius huge":
        sq[ROW, k - 1] = 1e30
    elif how == "every radius huge":
        sq[:, 2:] = 3600.0
    elif how == "a radius one ulp larger":
        sq[ROW, 2] = np.nextafter(sq[ROW, 2], np.inf)
        sq[ROW, 3:] = np.maximum(sq[ROW, 3:], sq[ROW, 2])
    elif how == "a row's indices duplicated":
        idx[ROW, 1] = idx[ROW, 0]
    elif how == "self as neighbour":
        idx[ROW, 0] = ROW
    elif how == "two neighbours swapped across a radius":
        idx[ROW, [2, 3]] = idx[ROW, [3, 2]]
    elif how == "an index out of range":
        idx[ROW, 0] = n
    else:
        raise AssertionError(how)
    return idx, sq


FORGERIES = ["farther neighbour, its distance stored", "farther neighbour in a column no radius reads",
             "distances scaled", "one radius huge", "every radius huge", "a radius one ulp larger",
             "a row's indices duplicated", "self as neighbour", "two neighbours swapped across a radius",
             "an index out of range"]
STRUCTURAL = {"a row's indices duplicated", "self as neighbour", "an index out of range"}  # no features needed


def forged_arrays(real, how, k=3, dc_k=5):
    key, graph = key_and_graph(real, k, dc_k)
    idx, sq = forged(real, graph, how)
    # summary_arrays recomputes the checksum: the forgery is consistent as far as a checksum goes
    arrays = {"knn_key": np.asarray(key.to_json()), "knn_indices": idx, "knn_sq_distances": sq,
              "knn_checksum": np.asarray(summary._checksum(idx, sq))}
    return key, arrays


@pytest.mark.parametrize("how", FORGERIES)
def test_a_forged_summary_with_its_checksum_recomputed_is_refused(how):
    real, fake = data(5)
    key, arrays = forged_arrays(real, how)
    if how not in STRUCTURAL:
        summary.graph_from_arrays(arrays, key)  # passes what a checksum and shapes can check ...
    with pytest.raises(ValueError, match="not (the k-NN graph of these features|a valid neighbour graph)"):
        summary.graph_from_arrays(arrays, key, real)  # ... but not the features


@pytest.mark.parametrize("how", ["farther neighbour, its distance stored", "every radius huge", "distances scaled"])
def test_the_forgeries_would_change_the_metrics_if_trusted(how):
    real, fake = data(5)
    key, arrays = forged_arrays(real, how)
    graph = summary.graph_from_arrays(arrays, key)
    trusted = hubness_pr.to_dict(hubness_pr.evaluate(real=real, fake=fake, real_knn=graph))
    fresh = hubness_pr.to_dict(hubness_pr.evaluate(real=real, fake=fake))
    assert {m: trusted[m] for m in ("epr", "pr", "dc")} != {m: fresh[m] for m in ("epr", "pr", "dc")}


def test_the_sampled_check_finds_a_neighbour_replaced_on_a_sampled_row_only(tmp_path):
    # a farther neighbour with its distance stored consistently passes the O(n k dim) check; the
    # exact search of sampled rows finds it on those rows (here one row, sampled or not)
    real, _ = data(6, n_real=200)
    key, graph = key_and_graph(real)
    wider = hubness_pr.nearest_neighbors(real, key.k_max + 1)
    idx, sq = graph.indices.copy(), graph.sq_distances.copy()
    idx[ROW, -1], sq[ROW, -1] = wider.indices[ROW, -1], wider.sq_distances[ROW, -1]
    one = hubness_pr.engine.knn.NeighborGraph(indices=idx, sq_distances=sq, exact_ks=key.exact_ks)
    summary.check_graph(real, one, sample=0)  # what steps 1-2 alone cannot see
    rows = np.sort(np.random.default_rng(11).choice(200, size=20, replace=False))
    assert ROW not in rows  # (the seed's draw)
    summary.check_graph(real, one, sample=20, seed=11)
    with pytest.raises(ValueError, match=f"sample {ROW}'s 5 nearest"):
        summary.check_graph(real, one, sample=200)


@functools.lru_cache(maxsize=None)
def hard_cases():
    from hubness_pr.engine.hard_cases import all_cases
    return all_cases()


@pytest.mark.parametrize("case", sorted(hard_cases()))
def test_genuine_graphs_of_the_hard_cases_pass_the_check_bit_for_bit(case, kernel_route):
    # the radii are compared for equality, not within a tolerance: they must be the engine's bits;
    # the real set with the case's k's, the fake set with k's that leave columns no radius reads
    real, fake, options = hard_cases()[case]
    wide = min(7, fake.shape[0] - 1)
    for features, (k, dc_k) in ((real, (options.get("k", 3), options.get("dc_k", 5))), (fake, (min(2, wide), wide))):
        k_max, ks = hubness_pr.real_knn_needs(hubness_pr.DEFAULT_METRICS, k, dc_k)
        graph = hubness_pr.nearest_neighbors(features, k_max, exact_ks=ks)
        summary.check_graph(features, graph, sample=min(features.shape[0], 128))


def test_the_check_costs_no_knn_pass(monkeypatch):
    real, _ = data(7, n_real=300)
    key, graph = key_and_graph(real)

    def no_pass(*args, **kwargs):
        raise AssertionError("a k-NN pass of the whole set")
    monkeypatch.setattr(hubness_pr.engine.knn, "_screen_pass", no_pass)
    summary.check_graph(real, graph)


@pytest.mark.parametrize("how", ["farther neighbour, its distance stored", "every radius huge",
                                 "a radius one ulp larger", "a row's indices duplicated"])
@pytest.mark.parametrize("where", ["cache", "feature file"])
def test_the_command_recomputes_a_forged_summary_with_one_warning(files, how, where):
    from hubness_pr.io.store import save_features
    run("real.npy", "fake.npy", "--json", "plain.json", "--no_cache")
    real = np.load("real.npy")
    key, arrays = forged_arrays(real, how)
    if where == "cache":
        run("real.npy", "fake.npy", "--json", "first.json")  # a genuine one, then forged in place
        path = Path(metrics_of("first.json")[1]["path"])
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        source = "real.npy"
    else:
        save_features("real.npz", real, extra=arrays)
        source = "real.npz"
    result = run(source, "fake.npy", "--json", "a.json")
    warnings = [line for line in cache_lines(result.stderr) if "not used" in line]
    assert len(warnings) == 1, result.stderr
    assert "not the k-NN graph of these features" in warnings[0] or "not a valid neighbour graph" in warnings[0]
    (got, cache), (expected, _) = metrics_of("a.json"), metrics_of("plain.json")
    assert got == expected
    assert cache["status"] == ("recomputed (the stored one was not valid)" if where == "cache" else "computed")


# ---- .npz members are read no larger than the key allows ----------------------------------------

INFLATED = 200 * 2**20  # what the bomb's member inflates to (its file is ~200 KB)


def write_bomb(path, key, mode="w", declared_shape=None, lie=False):
    """An .npz whose ``knn_indices`` member inflates to INFLATED bytes of zeros (written a MiB at
    a time, so building it costs no memory), beside small genuine-looking members. ``declared_shape``:
    what its .npy header says (default: the key's own shape); ``lie``: the zip's central directory
    then declares only the size the key's shape takes, as a forger would."""
    import zipfile
    with zipfile.ZipFile(path, mode, compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("knn_key.npy", "w") as handle:
            np.lib.format.write_array(handle, np.asarray(key.to_json()))
        with archive.open("knn_indices.npy", "w", force_zip64=not lie) as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "<i8", "fortran_order": False,
                                                          "shape": declared_shape or (key.n, key.k_max)})
            zeros = bytes(2**20)
            for _ in range(INFLATED // len(zeros)):
                handle.write(zeros)
        with archive.open("knn_checksum.npy", "w") as handle:
            np.lib.format.write_array(handle, np.asarray("0" * 64))
    if lie:  # the central directory's uncompressed size of the member: the key's 128-byte header + data
        data = bytearray(Path(path).read_bytes())
        entry = data.rindex(b"knn_indices.npy") - 46  # its central directory entry (the last mention)
        assert data[entry:entry + 4] == b"PK\x01\x02"
        data[entry + 24:entry + 28] = (128 + 8 * key.n * key.k_max).to_bytes(4, "little")
        Path(path).write_bytes(bytes(data))
    assert Path(path).stat().st_size < 2**20


def peak_bytes(function, *args):
    """(result or ValueError raised, peak bytes Python and numpy allocated while ``function(*args)`` ran)."""
    import tracemalloc
    tracemalloc.start()
    try:
        try:
            result = function(*args)
        except ValueError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bomb", ["declared size", "declared shape", "lying zip header"])
def test_a_bomb_at_the_key_name_is_refused_before_it_is_inflated(tmp_path, bomb):
    real, _ = data(8, n_real=2000)  # members larger than zipfile's first read: headers are read first
    key, _ = key_and_graph(real)
    cache = SummaryCache(tmp_path / "cache")
    cache.folder.mkdir(mode=0o700)
    # declared size: the zip says 200 MB; declared shape: the zip says the key's size, the .npy header
    # a shape 1000 times the key's; lying zip header: both say the key's, the data inflate to 200 MB
    write_bomb(cache.path(key), key, declared_shape=(key.n * 1000, key.k_max) if bomb == "declared shape" else None,
               lie=bomb != "declared size")
    (graph, message), peak = peak_bytes(cache.load, key, real)
    assert graph is None and "not used" in message and "recomputing" in message, message
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated while refusing a bomb"
    expected = {"declared size": "declares", "declared shape": "holds a", "lying zip header": "unreadable"}[bomb]
    assert expected in message, message
    good = key_and_graph(real)[1]
    assert "saved to" in cache.store(key, good)  # a private file: replaced by a good one
    loaded = cache.load(key, real)[0]
    np.testing.assert_array_equal(loaded.indices, good.indices)
    np.testing.assert_array_equal(loaded.sq_distances, good.sq_distances)


def test_a_bomb_inside_a_feature_file_is_refused_before_it_is_inflated(files):
    from hubness_pr.io.store import read_arrays, save_features
    real = np.load("real.npy")
    key, _ = key_and_graph(real)
    save_features("real.npz", real)
    write_bomb("real.npz", key, mode="a")
    refused, peak = peak_bytes(read_arrays, "real.npz", summary.summary_shapes(key))
    assert isinstance(refused, ValueError) and "declares" in str(refused) and peak < 50 * 2**20
    run("real.npy", "fake.npy", "--json", "plain.json", "--no_cache")
    result = run("real.npz", "fake.npy", "--json", "a.json")
    warnings = [line for line in cache_lines(result.stderr) if "not used" in line]
    assert len(warnings) == 1 and "inside real.npz" in warnings[0] and "declares" in warnings[0], result.stderr
    assert metrics_of("a.json")[0] == metrics_of("plain.json")[0]


def test_read_arrays_reads_what_fits_and_refuses_what_does_not(tmp_path):
    from hubness_pr.io.store import read_arrays
    path = tmp_path / "x.npz"
    np.savez_compressed(path, a=np.arange(12, dtype=np.int64).reshape(3, 4), s=np.asarray("hello"),
                        f=np.asfortranarray(np.ones((2, 3))), b=np.zeros((3, 4), dtype=">i8"))
    got = read_arrays(path, {"a": ((3, 4), np.int64), "s": ((), "<U16"), "f": ((2, 3), np.float64),
                             "missing": ((1,), np.int64)})
    np.testing.assert_array_equal(got["a"], np.arange(12).reshape(3, 4))
    assert str(got["s"]) == "hello" and got["f"].shape == (2, 3) and "missing" not in got
    for name, shape, dtype, message in (("a", (3, 5), np.int64, "expected"), ("a", (3, 4), np.float64, "expected"),
                                        ("s", (), "<U4", "expected"), ("b", (3, 4), np.int64, "expected"),
                                        ("a", (1, 1), np.int64, "expected")):
        with pytest.raises(ValueError, match=message):
            read_arrays(path, {name: (shape, dtype)})
    assert read_arrays(path, {"missing": ((1,), np.int64)}) is None
    (tmp_path / "plain.npy").write_bytes(b"\x93NUMPY not a zip")
    assert read_arrays(tmp_path / "plain.npy", {"a": ((3, 4), np.int64)}) is None


def test_the_command_refuses_a_bomb_in_the_cache_with_one_warning(files):
    run("real.npy", "fake.npy", "--json", "plain.json", "--no_cache")
    key = SummaryKey.of(np.load("real.npy"), *hubness_pr.real_knn_needs(hubness_pr.DEFAULT_METRICS, 3, 5))
    cache = SummaryCache(files / "cache")
    cache.folder.mkdir(mode=0o700)
    write_bomb(cache.path(key), key)
    result = run("real.npy", "fake.npy", "--json", "a.json")
    warnings = [line for line in cache_lines(result.stderr) if "not used" in line]
    assert len(warnings) == 1 and "declares" in warnings[0], result.stderr
    (got, cache_record), (expected, _) = metrics_of("a.json"), metrics_of("plain.json")
    assert got == expected and cache_record["status"].startswith("recomputed")
    assert cache.path(key).stat().st_size < 2**20 and cache.load(key, np.load("real.npy"))[0] is not None  # replaced


def test_a_cache_file_larger_than_its_key_allows_is_not_opened_as_a_zip(tmp_path):
    real, _ = data(9)
    key, graph = key_and_graph(real)
    cache = SummaryCache(tmp_path / "cache")
    cache.store(key, graph)
    with open(cache.path(key), "r+b") as handle:
        handle.truncate(summary._largest_file(key) + 1)  # (sparse: costs no disk)
    got, message = cache.load(key, real)
    assert got is None and "more than a summary of 90 x 5 takes" in message
