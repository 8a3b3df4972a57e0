"""Feature files: every accepted layout, every rejected one, atomic writes."""
import json
import os
import zipfile

import numpy as np
import pytest

from hubness_pr.io.outputs import atomic_write, check_output_path
from hubness_pr.io.store import load_features, random_subset, save_features


@pytest.fixture
def feats():
    return np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)


@pytest.mark.parametrize("key", ["feature", "features", "reps", "arr_0"])
def test_accepted_keys(tmp_path, feats, key):
    path = tmp_path / "f.npz"
    np.savez(path, **{key: feats})
    data = load_features(path)
    assert data.key == key
    np.testing.assert_array_equal(data.features, feats)


def test_npy_and_original_script_files(tmp_path, feats):
    np.save(tmp_path / "f.npy", feats)
    np.testing.assert_array_equal(load_features(tmp_path / "f.npy").features, feats)
    # the original getFeature.py wrote feature, radii_hub and hubs with savez_compressed
    np.savez_compressed(tmp_path / "orig.npz", feature=feats, radii_hub=np.ones(5), hubs=feats[:5])
    data = load_features(tmp_path / "orig.npz")
    assert data.key == "feature" and data.features.shape == (20, 6)


def test_roundtrip_paths_and_meta(tmp_path, feats):
    paths = [f"img/{i:03d}.png" for i in range(20)]
    out = tmp_path / "out.npz"
    save_features(out, feats, paths=paths, meta={"backbone": "vgg16"})
    raw = np.load(out, allow_pickle=False)  # everything readable without pickle
    assert raw["feature"].dtype == np.float32 and raw["paths"].dtype.kind == "U"
    meta = json.loads(str(raw["meta"]))
    assert meta["schema_version"] == 1 and meta["backbone"] == "vgg16" and meta["count"] == 20
    data = load_features(out)
    assert data.paths == paths and data.meta["dim"] == 6
    assert data.subset(np.array([3, 7])).paths == [paths[3], paths[7]]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_text("hello, not an array"), "not a .npz or .npy array file"),
    (lambda p: p.write_bytes(b""), "not a .npz or .npy array file"),
    (lambda p: np.savez(p.open("wb"), x=np.zeros(3)), "no feature array found .*the file has x"),
    (lambda p: np.save(p.open("wb"), np.array([{"a": 1}], dtype=object)), "Python objects"),
    (lambda p: p.write_bytes(b"PK\x03\x04garbage"), "damaged or unreadable"),
])
def test_rejected_files(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ValueError, match=message):
        load_features(path)


@pytest.mark.parametrize("member", ["feature", "feature.npy", "paths.npy", "meta.npy"])
def test_npz_member_that_is_not_an_array(tmp_path, feats, member):
    """np.load returns such a member as raw bytes; it must be refused with one line, not crash later."""
    np.savez(tmp_path / "good.npz", feature=feats, paths=np.array([f"{i}.png" for i in range(20)]), meta=np.array("{}"))
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(tmp_path / "good.npz") as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            dst.writestr(*(member, "text, not an array") if name in (member, member + ".npy") else (name, src.read(name)))
    with pytest.raises(ValueError, match=f"odd.npz: member '{member}' is not a .npy array"):
        load_features(path)


@pytest.mark.parametrize("call, error, message", [
    (lambda tmp: load_features(None), TypeError, "'path' parameter of load_features"),
    (lambda tmp: save_features(tmp / "x.npz", None), TypeError, "'features' parameter of save_features"),
    (lambda tmp: save_features(tmp / "x.npz", np.zeros(5)), ValueError, "'features' parameter of save_features .*"
                                                                         "2-D"),
])
def test_library_errors_name_the_parameter(tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(tmp_path)
    assert os.listdir(tmp_path) == []


def test_truncated_npz(tmp_path, feats):
    path = tmp_path / "t.npz"
    np.savez(path, feature=feats)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="t.npz"):
        load_features(path)


def test_unreadable_file(tmp_path, feats, monkeypatch):
    path = tmp_path / "u.npz"
    np.savez(path, feature=feats)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # CI runs as root, which reads any file whatever its mode: simulate the refusal instead
    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(ValueError, match="u.npz: cannot read \\(Permission denied\\)"):
        load_features(path)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_check_output_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "x.json")
    with pytest.raises(ValueError, match="is a folder"):
        check_output_path(tmp_path)
    assert check_output_path(tmp_path / "x.json") == tmp_path / "x.json"


def test_random_subset_is_seeded_and_sorted():
    a, b = random_subset(100, 10, seed=3), random_subset(100, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert (np.diff(a) > 0).all() and not np.array_equal(a, random_subset(100, 10, seed=4))
    with pytest.raises(ValueError, match="larger than the 100 samples"):
        random_subset(100, 101, seed=0)


def test_feature_formats_are_a_registry(tmp_path, monkeypatch):
    """load_features picks the reader by the file's first bytes from FORMATS; a new format is one
    registration; a suffix registered twice is refused."""
    from hubness_pr.io import store

    assert set(store.FORMATS) == {".npz", ".npy"}
    with pytest.raises(ValueError, match="registered twice"):
        store.register_format(store.FeatureFormat(".npz", b"PK", lambda p, n: None))
    monkeypatch.setattr(store, "FORMATS", dict(store.FORMATS))
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)

    def read_text(path, name):
        return store.FeatureFile(features=np.loadtxt(path, skiprows=1, dtype=np.float32, ndmin=2), source=name,
                                 key="(txt)")

    store.register_format(store.FeatureFormat(".tsv", b"#FEAT", read_text))
    (tmp_path / "f.tsv").write_text("#FEAT\n" + "\n".join("\t".join(map(str, r)) for r in rows.tolist()))
    loaded = store.load_features(tmp_path / "f.tsv")
    np.testing.assert_array_equal(loaded.features, rows)
    (tmp_path / "g.bin").write_bytes(b"GARBAGE")
    with pytest.raises(ValueError, match="not a .npz or .npy or .tsv array file"):
        store.load_features(tmp_path / "g.bin")
