"""The metric command at scale: the real set's k-NN summary cached and reused (identical results),
recomputed whenever it does not fit; torchrun with 2 Gloo processes equals one process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hubness_pr.commands.metrics import main
from tests.cli_helpers import METRICS_SCRIPT, call


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBNESS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(4)
    np.save("real.npy", rng.standard_normal((260, 10)).astype(np.float32))
    np.save("fake.npy", (rng.standard_normal((230, 10)) + 0.2).astype(np.float32))
    return tmp_path


def run(*argv):
    result = call(main, *argv)
    assert result.returncode == 0, result.stderr
    return result


def results(path):
    data = json.loads(Path(path).read_text())
    return {key: data[key] for key in ("epr", "pr", "dc", "realism", "rarity", "hubness")}, data["cache"]["real"]


def test_the_real_summary_is_cached_and_reused_with_identical_results(files):
    first = run("real.npy", "fake.npy", "--json", "a.json", "-v")
    assert "no cached k-NN summary" in first.stderr and "saved to" in first.stderr
    second = run("real.npy", "fake.npy", "--json", "b.json", "-v")
    assert "reused from" in second.stderr
    (a, cache_a), (b, cache_b) = results("a.json"), results("b.json")
    assert a == b and cache_a["status"] == "computed" and cache_b["status"] == "reused"
    assert cache_a["path"] == cache_b["path"] and Path(cache_a["path"]).is_file()
    # another k, another subset: other summaries, not the stored one
    run("real.npy", "fake.npy", "--json", "c.json", "--k", "4")
    run("real.npy", "fake.npy", "--json", "d.json", "--num_samples", "200")
    assert {results(f)[1]["status"] for f in ("c.json", "d.json")} == {"computed"}
    assert len(list((files / "cache").iterdir())) == 3
    # --no_cache: nothing read, nothing written
    run("real.npy", "fake.npy", "--json", "e.json", "--no_cache", "--k", "5")
    assert results("e.json")[1]["status"] == "off" and len(list((files / "cache").iterdir())) == 3


def test_changed_features_or_a_damaged_summary_are_recomputed_never_trusted(files):
    run("real.npy", "fake.npy", "--json", "a.json")
    path = Path(results("a.json")[1]["path"])
    path.write_bytes(path.read_bytes()[:-100])  # truncated, as by an interrupted copy
    damaged = call(main, "real.npy", "fake.npy", "--json", "b.json")
    assert damaged.returncode == 0 and "not used" in damaged.stderr and "recomputing" in damaged.stderr
    assert results("b.json")[1]["status"].startswith("recomputed") and results("b.json")[0] == results("a.json")[0]
    real = np.load("real.npy")
    real[0, 0] += 0.5
    np.save("real.npy", real)
    changed = run("real.npy", "fake.npy", "--json", "c.json", "-v")
    assert "no cached k-NN summary" in changed.stderr and results("c.json")[1]["status"] == "computed"


def test_a_summary_inside_the_feature_file_is_used(files):
    import hubness_pr
    from hubness_pr.io.store import save_features
    from hubness_pr.io.summary import SummaryKey, summary_arrays
    real = np.load("real.npy")
    k_max, ks = hubness_pr.real_knn_needs(hubness_pr.DEFAULT_METRICS, 3, 5)
    graph = hubness_pr.nearest_neighbors(real, k_max, exact_ks=ks)
    save_features("real.npz", real, extra=summary_arrays(graph, SummaryKey.of(real, k_max, ks)))
    used = run("real.npz", "fake.npy", "--json", "a.json", "-v")
    assert "reused from real.npz" in used.stderr
    assert results("a.json")[0] == (run("real.npy", "fake.npy", "--json", "b.json", "--no_cache") and
                                   results("b.json")[0])
    # for another k the stored one does not fit: said, and computed
    other = run("real.npz", "fake.npy", "--json", "c.json", "--dc_k", "7")
    assert "inside real.npz is not used" in other.stderr and results("c.json")[1]["status"] == "computed"


def test_torchrun_with_two_gloo_processes_equals_one_process(files):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(METRICS_SCRIPT).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(METRICS_SCRIPT), "real.npy", "fake.npy", "--json", "two.json", "--no_cache", "--memory_budget", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=files)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line.split(":")[0] for line in proc.stdout.splitlines()].count("precision") == 1  # rank 0 alone
    run("real.npy", "fake.npy", "--json", "one.json", "--no_cache", "--memory_budget", "1")
    two, one = json.loads(Path("two.json").read_text()), json.loads(Path("one.json").read_text())
    assert two["params"]["processes"] == 2 and two["params"]["backend"] == "gloo"
    assert one["params"]["processes"] == 1
    for block in ("epr", "pr", "dc", "hubness"):
        assert two[block] == one[block], block
    assert two["realism"] == pytest.approx(one["realism"], rel=1e-12)


@pytest.mark.parametrize("script, argv, message", [
    ("improved_precision_recall_hubness.py", ("real.npy", "missing.npy"), "missing.npy: no such file"),
    ("getFeature.py", ("missing", "-o", "out.npy"), "missing: no such file or folder")])
def test_torchrun_with_bad_input_fails_on_every_rank_with_one_line(files, script, argv, message):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(METRICS_SCRIPT).parent / script), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=files)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if f"{script}: error" in line]
    assert ours == [f"{script}: error: {message}"], proc.stderr[-2000:]
    # torchrun adds its own report of a failed worker; no traceback comes from the toolkit's code
    assert "hubness/" not in proc.stderr and "features/" not in proc.stderr, proc.stderr[-2000:]


def test_getfeature_knn_k_stores_a_summary_the_metric_command_reuses(files):
    from hubness_pr.commands.features import main as extract_main
    from PIL import Image
    rng = np.random.default_rng(5)
    folder = files / "images"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    made = call(extract_main, "images", "-o", "real.npz", "--backbone", "vgg16_random", "--num_workers", "0",
                "--knn_k", "3,5")
    assert made.returncode == 0, made.stderr
    with np.load("real.npz") as data:
        assert {"knn_key", "knn_indices", "knn_sq_distances", "knn_checksum"} <= set(data.files)
        assert data["knn_indices"].shape == (12, 5)
        np.save("fake.npy", data["feature"][::-1] * 1.01)
    used = run("real.npz", "fake.npy", "--json", "a.json", "-v")
    assert "reused from real.npz" in used.stderr and results("a.json")[1]["status"] == "reused"
    plain = run("real.npz", "fake.npy", "--json", "b.json", "--no_cache")
    assert plain.returncode == 0 and results("a.json")[0] == results("b.json")[0]
    bad = call(extract_main, "images", "-o", "x.npz", "--knn_k", "3,zero")
    assert bad.returncode == 2 and "--knn_k" in bad.stderr


@pytest.fixture
def digits(tmp_path, monkeypatch):
    from tests.test_extract import digit_images, write_folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBNESS_CACHE", str(tmp_path / "cache"))
    images, _ = digit_images(np.arange(11))
    write_folder(tmp_path / "images", images)
    return tmp_path


EXTRACT = ("--backbone", "efficientnet_lite0", "--num_workers", "0", "--batch_size", "4")


def extract(*argv):
    from hubness_pr.commands.features import main as extract_main
    made = call(extract_main, *argv)
    assert made.returncode == 0, made.stderr
    return made


def test_getfeature_npy_output_is_streamed_with_a_sidecar_the_metric_command_reads(digits):
    from hubness_pr.io.store import load_features
    extract("images", "-o", "whole.npz", *EXTRACT)
    # shards of 3 images: the .npy is written from 4 shards, never all rows at once
    extract("images", "-o", "streamed.npy", "--checkpoint_every", "3", *EXTRACT)
    whole, streamed = load_features("whole.npz"), load_features("streamed.npy")
    assert isinstance(np.load("streamed.npy", mmap_mode="r"), np.memmap)
    np.testing.assert_array_equal(streamed.features, whole.features)
    assert list(streamed.paths) == list(whole.paths) and len(streamed.paths) == 11
    assert streamed.meta["backbone"] == "efficientnet_lite0" and streamed.meta["count"] == 11
    assert not [p for p in os.listdir(digits) if p.endswith((".tmp", ".partial"))]
    # the metric command takes it (memory-mapped) and names the images from the sidecar
    run("streamed.npy", "whole.npz", "--k", "3", "--per_sample", "rows.csv", "--no_cache")
    rows = Path("rows.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == whole.paths[0]


def test_getfeature_npy_refuses_knn_k_with_one_line(digits):
    from hubness_pr.commands.features import main as extract_main
    from tests.cli_helpers import assert_one_line_error
    assert_one_line_error(call(extract_main, "images", "-o", "x.npy", "--knn_k", "3", *EXTRACT), "--knn_k", ".npz")
    assert not Path("x.npy").exists() and not Path("x.npy.json").exists()


def test_extraction_can_leave_the_features_in_its_shards(digits):
    from hubness_pr.extraction.extract import extract_path, shard_features
    whole, _ = extract_path("images", backbone="efficientnet_lite0", num_workers=0, batch_size=4)
    kept, meta = extract_path("images", backbone="efficientnet_lite0", num_workers=0, batch_size=4,
                              checkpoint_dir=digits / "ck", shard_size=4, keep_features=False)
    assert kept.features is None and len(kept.shards) == 3 and kept.dim == 1280
    np.testing.assert_array_equal(np.concatenate(list(shard_features(kept.shards))), whole.features)
    assert kept.paths == whole.paths
    with pytest.raises(ValueError, match="checkpoint_dir"):
        extract_path("images", backbone="efficientnet_lite0", keep_features=False)
    # a share of several processes: contiguous, the shares in rank order are the whole set
    shares = [extract_path("images", backbone="efficientnet_lite0", num_workers=0, part=(r, 3))[0] for r in range(3)]
    assert [len(s.paths) for s in shares] == [4, 4, 3]
    assert [p for s in shares for p in s.paths] == whole.paths
    np.testing.assert_array_equal(np.concatenate([s.features for s in shares]), whole.features)
    assert meta["source"] == extract_path("images", backbone="efficientnet_lite0", num_workers=0,
                                          part=(2, 3))[1]["source"]


@pytest.mark.parametrize("images, out", [(11, "two.npz"), (11, "two.npy"), (1, "two.npz")])
def test_torchrun_extraction_with_two_gloo_processes_equals_one_process(digits, images, out):
    from hubness_pr.io.store import load_features
    from tests.cli_helpers import FEATURES_SCRIPT
    if images == 1:  # fewer images than processes: rank 1 has none
        for extra in sorted(Path("images").iterdir())[1:]:
            extra.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(FEATURES_SCRIPT), "images", "-o", out, "--checkpoint_every", "2", "-v", *EXTRACT]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=digits)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("wrote ") == 1, proc.stderr[-2000:]  # rank 0 alone reports
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1): conv kernels' bits follow the threads
    try:
        extract("images", "-o", "one.npz", *EXTRACT)
    finally:
        torch.set_num_threads(threads)
    two, one = load_features(out), load_features("one.npz")
    np.testing.assert_array_equal(two.features, one.features)
    assert list(two.paths) == list(one.paths) and len(one.paths) == images
    assert two.meta["processes"] == 2 and one.meta["processes"] == 1
    assert two.meta["source"] == one.meta["source"]
    assert not [p for p in os.listdir(digits) if p.endswith((".tmp", ".partial"))]
