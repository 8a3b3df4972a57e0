"""Issue 17 (trust round 3): realism at extreme ratios, non-float32 memory-mapped inputs, inputs
truncated during a run, the gallery's size and non-UTF-8 image names."""
import os

import numpy as np
import pytest

import hubness_pr
from tests import oracle


# ----------------------------------------------------------------------------------------------
# Realism in float64 on both routes, against the float64 brute force
# ----------------------------------------------------------------------------------------------

def oracle_realism(real, fake, k):
    """Each fake's realism (float64) and the real giving it (lowest index among equal ratios; -1 where
    every ratio is 0), from the brute force's distances: max_i rt_i / d(y, x_i)."""
    d = np.sqrt(oracle.sq_dists(real, fake))
    radii = np.sqrt(oracle.sq_radii(real, k))
    kept = np.where(radii <= np.median(radii), radii, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = kept[:, None] / d
    ratio[np.isnan(ratio)] = 0.0
    best = ratio.max(axis=0)
    index = np.where(best > 0, ratio.argmax(axis=0), -1)
    return best, index, ratio


def clusters_of_many_scales(seed):
    """Reals in clusters at scales 1e-30 ... 1e4, each cluster where float32 resolves it; the four
    smallest keep their realism radii (1e-30 to ~1: squared ratios spanning 1e60), the four largest
    are pruned. Each fake lies 0.05 scale from a real of a kept cluster (a clear winner)."""
    rng = np.random.default_rng(seed)
    dim = 8
    reals, fakes = [], []
    for axis, (scale, centre) in enumerate([(1e-30, 0.0), (1e-20, 1e-18), (1e-10, 1e-8), (1.0, 50.0),
                                            (10.0, 500.0), (1e2, 5e3), (1e3, 5e4), (1e4, 5e5)]):
        c = np.zeros(dim)
        c[axis] = centre
        x = c + scale * rng.normal(size=(6, dim))
        reals.append(x)
        if scale <= 1.0:
            fakes.append(x[rng.choice(6, 3, replace=False)] + 0.05 * scale * _unit(rng, 3, dim))
    order = rng.permutation(48)  # clusters interleaved in index order
    return np.concatenate(reals)[order].astype(np.float32), np.concatenate(fakes).astype(np.float32)


def twins_beyond_float32(seed):
    """Two reals 1e-24 apart at the origin with radii ~1 among reals at scale 1; fakes 1e-25 from the
    later twin: squared ratios ~1e50 and ~1e48 (both beyond float32), the larger one the winner."""
    rng = np.random.default_rng(seed)
    dim = 5
    twins = np.zeros((2, dim))
    twins[0, 1] = 1e-24
    others = _unit(rng, 10, dim) * rng.uniform(1.0, 3.0, size=(10, 1))
    real = np.concatenate([twins, others])
    fake = np.zeros((3, dim))
    fake[:, 2] = [1e-25, -2e-25, 3e-25]
    fake = np.concatenate([fake, others[:4] + 0.02 * _unit(rng, 4, dim)])
    return real.astype(np.float32), fake.astype(np.float32)


def _unit(rng, n, dim):
    v = rng.normal(size=(n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def tiny_realism_set(seed):
    """Reals at scale 1e-20 near the origin, fakes 1e19..1e20 away: realism scores near 1e-40 (squared
    1e-80, below float32's smallest number)."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(20, 5)) * 1e-20
    fake = _unit(rng, 8, 5) * rng.uniform(1e19, 1e20, size=(8, 1))
    return real.astype(np.float32), fake.astype(np.float32)


def _check_against_oracle(real, fake, k=3, memory_budget=2**20):
    want, index, ratio = oracle_realism(real, fake, k)
    # the data's winners are clear (no near-tie within the float32 screen's error): the test is of range
    top2 = np.sort(ratio, axis=0)[-2:]
    assert np.all((top2[1] == top2[0]) | (top2[1] > (1 + 1e-3) * top2[0])), "test data: a near tie"
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("realism",), k=k, memory_budget=memory_budget)
    np.testing.assert_array_equal(ev.realism.real_index, index)
    np.testing.assert_allclose(ev.realism.scores, want, rtol=1e-13, atol=0)
    return ev, want


@pytest.mark.parametrize("seed", [0, 1])
def test_realism_radii_differing_by_1e30(kernel_route, seed):
    real, fake = clusters_of_many_scales(seed)
    ev, want = _check_against_oracle(real, fake)
    radii = np.sqrt(oracle.sq_radii(real, 3))
    kept = radii[radii <= np.median(radii)]
    assert kept.max() / kept.min() > 1e29  # what the data is about


@pytest.mark.parametrize("seed", [0, 1])
def test_realism_ratios_beyond_float32(kernel_route, seed):
    real, fake = twins_beyond_float32(seed)
    ev, want = _check_against_oracle(real, fake)
    assert np.all(want[:3] > 1e20) and np.all(ev.realism.real_index[:3] == 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_realism_of_1e_minus_40_is_not_zero(kernel_route, seed):
    real, fake = tiny_realism_set(seed)
    ev, want = _check_against_oracle(real, fake)
    assert np.all((want > 1e-42) & (want < 1e-38))
    assert np.all(ev.realism.scores > 0) and np.all(ev.realism.real_index >= 0)


@pytest.mark.parametrize("exponent", [60, -60])
def test_realism_of_features_scaled_by_powers_of_two(kernel_route, exponent):
    rng = np.random.default_rng(exponent + 100)
    real = rng.normal(size=(40, 7)).astype(np.float32)
    fake = (rng.normal(size=(30, 7)) * 1.3).astype(np.float32)
    base = hubness_pr.evaluate(real=real, fake=fake, metrics=("realism",), k=3)
    scaled_real, scaled_fake = np.ldexp(real, exponent), np.ldexp(fake, exponent)
    ev, _ = _check_against_oracle(scaled_real, scaled_fake)
    # a power of two scales every distance exactly: the same reals and the same bits
    np.testing.assert_array_equal(ev.realism.real_index, base.realism.real_index)
    np.testing.assert_array_equal(ev.realism.scores, base.realism.scores)


def test_realism_routes_pick_the_same_reals(monkeypatch):
    real, fake = clusters_of_many_scales(3)
    got = {}
    for route in ("fused", "torch"):
        monkeypatch.setenv("HUBNESS_KERNELS", route)
        ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("realism",), k=3, memory_budget=2**20)
        got[route] = ev.realism
    np.testing.assert_array_equal(got["fused"].real_index, got["torch"].real_index)
    np.testing.assert_array_equal(got["fused"].scores, got["torch"].scores)


# ----------------------------------------------------------------------------------------------
# Memory-mapped .npy inputs of any dtype and byte order: read and converted block by block
# ----------------------------------------------------------------------------------------------

def _mapped(tmp_path, name, array):
    from hubness_pr.io.store import load_features
    np.save(tmp_path / name, array)
    features = load_features(str(tmp_path / name)).features
    assert isinstance(features, np.memmap) and features.dtype == array.dtype
    return features


def _assert_same_evaluation(a, b):
    """Every result of two evaluations equal, bit for bit (timings aside)."""
    def plain(value):
        if isinstance(value, np.ndarray):
            return (value.dtype.str, value.shape, value.tobytes())
        if hasattr(value, "__dataclass_fields__"):
            return {f: plain(getattr(value, f)) for f in value.__dataclass_fields__}
        return repr(value)
    for field in a.__dataclass_fields__:
        if field != "timings":
            assert plain(getattr(a, field)) == plain(getattr(b, field)), field


def _feature_kinds(seed):
    """ReLU-like features (identity screen frame), features far from the origin (a centred frame) and
    a set with exact copies (the k-NN fallback): each path that reads rows."""
    rng = np.random.default_rng(seed)
    relu = np.maximum(rng.normal(size=(300, 24)), 0), np.maximum(rng.normal(size=(260, 24)) + 0.1, 0)
    offset = 1e3 + rng.normal(size=(300, 24)), 1e3 + 1.1 * rng.normal(size=(260, 24))
    copies = np.repeat(rng.normal(size=(60, 24)), 5, axis=0), rng.normal(size=(260, 24))
    return {"relu": relu, "offset": offset, "copies": copies}


@pytest.mark.parametrize("dtype", ["<f8", ">f4", ">f8", "<f2", ">i2"])
@pytest.mark.parametrize("kind", ["relu", "offset", "copies"])
def test_mapped_inputs_of_any_dtype_equal_converting_first(tmp_path, kernel_route, dtype, kind):
    real, fake = (np.asarray(a * (100 if dtype == ">i2" else 1)).astype(dtype) for a in _feature_kinds(7)[kind])
    ref = hubness_pr.evaluate(real=real.astype(np.float32), fake=fake.astype(np.float32), memory_budget=2**20)
    mr, mf = _mapped(tmp_path, "real.npy", real), _mapped(tmp_path, "fake.npy", fake)
    got = hubness_pr.evaluate(real=mr, fake=mf, memory_budget=2**20)
    _assert_same_evaluation(got, ref)
    rarity = hubness_pr.real_rarity_scores(real=mr, memory_budget=2**20).scores
    np.testing.assert_array_equal(rarity, hubness_pr.real_rarity_scores(real=real.astype(np.float32),
                                                                      memory_budget=2**20).scores)


def test_mapped_inputs_for_approximate_hub_selection(tmp_path):
    pytest.importorskip("faiss")
    real, fake = _feature_kinds(8)["relu"]
    ref = hubness_pr.evaluate(real=real.astype(np.float32), fake=fake.astype(np.float32), metrics="epr", knn="hnsw")
    got = hubness_pr.evaluate(real=_mapped(tmp_path, "r.npy", real.astype(">f8")),
                           fake=_mapped(tmp_path, "f.npy", fake.astype(">f8")), metrics="epr", knn="hnsw")
    assert (got.epr.precision, got.epr.recall) == (ref.epr.precision, ref.epr.recall)


def test_mapped_input_checks_name_the_file(tmp_path):
    bad = np.ones((40, 4))
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"real: row 17 contains NaN"):
        hubness_pr.evaluate(real=_mapped(tmp_path, "nan.npy", bad), fake=np.ones((40, 4), np.float32))
    huge = np.ones((40, 4))
    huge[3, 1] = 1e300
    with pytest.raises(ValueError, match="overflow float32"):
        hubness_pr.evaluate(real=_mapped(tmp_path, "huge.npy", huge.astype(">f8")), fake=np.ones((40, 4), np.float32))


def test_command_on_float64_and_big_endian_npy_equals_float32(tmp_path):
    from hubness_pr.commands.metrics import main
    from tests.cli_helpers import call
    real, fake = _feature_kinds(9)["relu"]
    outs = {}
    for dtype in ("<f4", "<f8", ">f4"):
        np.save(tmp_path / f"real{dtype[1:]}{dtype[0] == '>'}.npy", real.astype(dtype))
        np.save(tmp_path / f"fake{dtype[1:]}{dtype[0] == '>'}.npy", fake.astype(dtype))
        proc = call(main, tmp_path / f"real{dtype[1:]}{dtype[0] == '>'}.npy",
                    tmp_path / f"fake{dtype[1:]}{dtype[0] == '>'}.npy", "--per_sample", tmp_path / f"{dtype[1:]}.csv")
        assert proc.returncode == 0, proc.stderr
        outs[dtype] = [line for line in proc.stdout.splitlines() if not line.startswith("seconds")], \
            (tmp_path / f"{dtype[1:]}.csv").read_text()
    assert outs["<f8"] == outs["<f4"] and outs[">f4"] == outs["<f4"]


_MEMORY_SCRIPT = r"""
import resource, sys, tracemalloc
import os

import numpy as np
import hubness_pr
from hubness_pr.engine import kernels
from hubness_pr.io.store import load_features
real, fake = (load_features(p).features for p in sys.argv[1:3])
small = np.abs(np.random.default_rng(0).normal(size=(50, real.shape[1]))).astype(np.float32)
kernels.load()
hubness_pr.evaluate(real=small, fake=small, metrics="pr", memory_budget=2**23)  # every import, warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr", memory_budget=2**23)
peak = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak, (after - before) * 1024, ev.pr.precision)
"""


def test_float64_npy_is_not_copied_whole(tmp_path):
    """5,000 x 2,048 float64 (80 MB; a float32 copy: 40 MB) with an 8 MiB budget: neither numpy's
    allocations (tracemalloc) nor the process's peak resident memory grow by a copy of the set."""
    import subprocess
    import sys
    rng = np.random.default_rng(10)
    real = np.maximum(rng.normal(size=(5000, 2048)), 0)
    fake = np.maximum(rng.normal(size=(400, 2048)), 0)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake.astype(">f4"))
    copy = real.shape[0] * real.shape[1] * 4
    env = {**__import__("os").environ, "HUBNESS_KERNELS": "fused"}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "real.npy"), str(tmp_path / "fake.npy")],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak, grown, precision = proc.stdout.split()
    assert int(peak) < copy / 2, (int(peak), copy)
    assert int(grown) < copy, (int(grown), copy)  # converting first: the copy and the mapped file read
    ref = hubness_pr.evaluate(real=real.astype(np.float32), fake=fake.astype(np.float32), metrics="pr",
                           memory_budget=2**23)
    assert float(precision) == ref.pr.precision


# ----------------------------------------------------------------------------------------------
# An input truncated while the run reads it: one line naming the file, not SIGBUS (exit 135)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_input_truncated_during_the_run_is_one_line(tmp_path, dtype):
    import os
    import signal
    import subprocess
    import sys
    from tests.cli_helpers import METRICS_SCRIPT
    rng = np.random.default_rng(3)
    np.save(tmp_path / "real.npy", rng.standard_normal((20000, 128)).astype(dtype))
    np.save(tmp_path / "fake.npy", rng.standard_normal((20000, 128)).astype(dtype))
    proc = subprocess.Popen([sys.executable, str(METRICS_SCRIPT), "real.npy", "fake.npy", "--json", "out.json",
                             "--memory_budget", "1", "--progress"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HUBNESS_KERNELS": "torch"})  # no wait for numba's start-up
    try:
        seen = b""
        # once the first k-NN pass has begun, seconds of tiles (both k-NN passes, the cross pass that
        # reads REAL again) remain: the file is cut to half its rows under the running process
        while b"k-NN real" not in seen:
            chunk = proc.stderr.read1(4096)
            assert chunk, f"the run ended before the file could be cut: {seen[-300:]!r}"
            seen += chunk
        os.truncate(tmp_path / "real.npy", os.path.getsize(tmp_path / "real.npy") // 2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (seen + err).decode()
    assert proc.returncode == 1, (proc.returncode, -signal.SIGBUS, err[-500:])
    assert "Traceback" not in err
    last = [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert "real.npy" in last and "truncated" in last, last
    assert out == b"" and not (tmp_path / "out.json").exists()


# ----------------------------------------------------------------------------------------------
# Image names that are not UTF-8: escaped (backslash form) in the per-sample CSV and the gallery
# ----------------------------------------------------------------------------------------------

_ODD_NAMES = [b"\xff.png", b"caf\xe9.png", b"\xc3(.png", b"ok_\xe2\x82.png"]  # not UTF-8 (Linux bytes names)


def _odd_name(i: int) -> str:
    """Names as Python gets them from the file system: undecodable bytes as surrogates."""
    return os.fsdecode(b"%03d_" % i + _ODD_NAMES[i % len(_ODD_NAMES)]) if i % 3 else f"{i:03d}_plain.png"


def _write_images(folder, n):
    from PIL import Image
    folder.mkdir()
    names = [_odd_name(i) for i in range(n)]
    for i, name in enumerate(names):
        Image.new("RGB", (8, 8), (2 * i % 256, 90, 40)).save(os.path.join(os.fsencode(folder), os.fsencode(name)),
                                                             format="PNG")
    return names


def test_printable_name():
    from hubness_pr.reports.results import printable_name
    for raw in _ODD_NAMES + [b"plain.png", "čaj.png".encode()]:
        assert printable_name(os.fsdecode(raw)) == raw.decode("utf-8", "backslashreplace")
    assert printable_name("\ud800.png") == "\\ud800.png"  # a lone surrogate no byte gives (from JSON)
    assert printable_name(os.fsdecode(b"\xff.png")) == "\\xff.png"


def test_non_utf8_names_in_per_sample_csv_and_gallery(tmp_path, monkeypatch):
    import csv
    import json
    from hubness_pr.commands.metrics import main
    from hubness_pr.reports.results import printable_name
    from tests.cli_helpers import call
    monkeypatch.chdir(tmp_path)
    n = 110
    names = _write_images(tmp_path / "imgs", n)
    rng = np.random.default_rng(11)
    meta = json.dumps({"source": {"kind": "folder", "root": "imgs", "count": n}, "backbone": "test"})
    for side in ("real", "fake"):
        np.savez(f"{side}.npz", feature=rng.normal(size=(n, 4)), paths=np.array(names), meta=np.asarray(meta))
    proc = call(main, "real.npz", "fake.npz", "--per_sample", "per.csv", "--gallery", "g")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # every image found and read: no grey tile
    with open("per.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [printable_name(name) for name in names]
    assert any("\\x" in r["path"] for r in rows)
    with open("g/gallery.csv", newline="", encoding="utf-8") as handle:
        tiles = list(csv.DictReader(handle))
    assert tiles and all(t["path"] == printable_name(names[int(t["index"])]) for t in tiles)
    assert any("\\x" in t["path"] for t in tiles)


def test_non_utf8_image_names_given_as_a_folder(tmp_path, monkeypatch):
    import csv
    from hubness_pr.commands.metrics import main
    from hubness_pr.reports.results import printable_name
    from tests.cli_helpers import call
    monkeypatch.chdir(tmp_path)
    names = sorted(_write_images(tmp_path / "imgs", 24), key=os.fsencode)
    proc = call(main, "imgs", "imgs", "--backbone", "efficientnet_lite0", "--num_workers", 0, "--metrics", "pr,hubness",
                "--per_sample", "per.csv", "--gallery", "g", "--gallery_n", 4, "-q")
    assert proc.returncode == 0, proc.stderr
    with open("per.csv", newline="", encoding="utf-8") as handle:
        paths = [r["path"] for r in csv.DictReader(handle)]
    assert sorted(paths) == sorted(printable_name(name) for name in names)
    assert any("\\x" in p for p in paths)
    with open("g/gallery.csv", newline="", encoding="utf-8") as handle:
        assert {t["path"] for t in csv.DictReader(handle)} <= set(paths)
