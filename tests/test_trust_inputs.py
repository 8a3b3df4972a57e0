"""Guard rails on the metric command's inputs: features of different extractors are refused (or
compared on request), small sets are said, options are checked by name, and under torchrun every
rank must have read the same inputs and taken the same stored summary."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hubness_pr.io.provenance import describe_differences, extractor_differences
from hubness_pr.io.store import save_features
from hubness_pr.commands.metrics import main
from tests.cli_helpers import METRICS_SCRIPT, assert_one_line_error, call

ROOT = Path(METRICS_SCRIPT).parent


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBNESS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(7)
    np.save("real.npy", rng.standard_normal((150, 6)).astype(np.float32))
    np.save("fake.npy", (rng.standard_normal((140, 6)) + 0.2).astype(np.float32))
    return tmp_path


def vgg_random_meta(seed: int) -> dict:
    """The meta a feature file extracted with vgg16_random drawn from ``seed`` records."""
    from hubness_pr.extraction.backbones import load_backbone
    return dict(load_backbone("vgg16_random", seed=seed).meta)


def test_features_of_different_extractors_are_refused_naming_both_files(files):
    real, fake = np.load("real.npy"), np.load("fake.npy")
    save_features("real.npz", real, meta=vgg_random_meta(0))
    save_features("fake.npz", fake, meta=vgg_random_meta(1))
    refused = call(main, "real.npz", "fake.npz", "--no_cache")
    line = assert_one_line_error(refused, "real.npz (real)", "fake.npz (fake)", "different feature extractors",
                                 "weights_seed 0 vs 1", "--allow_mismatched_features")
    assert "backbone" not in line.split("extractors:")[1].split(";")[0]  # only what differs is named
    allowed = call(main, "real.npz", "fake.npz", "--no_cache", "--allow_mismatched_features")
    assert allowed.returncode == 0, allowed.stderr
    assert "different feature extractors" in allowed.stderr and "compared anyway" in allowed.stderr
    assert allowed.stdout.startswith("precision:")


@pytest.mark.parametrize("field, a, b", [("backbone", "vgg16", "efficientnet_lite0"),
                                         ("weights_sha256", "ab" * 32, "cd" * 32),
                                         ("layer", "fc2 after ReLU", "fc1"),
                                         ("preprocess", "pil", "tf1"),
                                         ("input_size", 224, 299),
                                         ("mean", [0.485, 0.456, 0.406], [0.5, 0.5, 0.5])])
def test_each_extractor_field_is_compared(files, field, a, b):
    base = {"backbone": "vgg16", "weights": "file", "weights_sha256": "ab" * 32, "layer": "fc2 after ReLU",
            "preprocess": "pil", "input_size": 224, "mean": [0.485, 0.456, 0.406]}
    save_features("real.npz", np.load("real.npy"), meta={**base, field: a})
    save_features("fake.npz", np.load("fake.npy"), meta={**base, field: b})
    assert_one_line_error(call(main, "real.npz", "fake.npz", "--no_cache"), f"{field} ")


def test_the_same_extractor_and_unknown_provenance_are_compared(files):
    meta = vgg_random_meta(0)
    # other images, another subset, another toolkit version: the same extractor
    save_features("real.npz", np.load("real.npy"), meta={**meta, "source": "a/", "toolkit_version": "0.1"})
    save_features("fake.npz", np.load("fake.npy"), meta={**meta, "source": "b/", "num_samples": 140})
    same = call(main, "real.npz", "fake.npz", "--no_cache")
    assert same.returncode == 0 and same.stderr == "", same.stderr
    unknown = call(main, "real.npz", "fake.npy", "--no_cache", "-v")
    assert unknown.returncode == 0, unknown.stderr
    note = [line for line in unknown.stderr.splitlines() if "no recorded feature extractor" in line]
    assert note == ["fake.npy (fake): no recorded feature extractor; REAL and FAKE are assumed to come from the "
                    "same one"], unknown.stderr
    quiet = call(main, "real.npz", "fake.npy", "--no_cache")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_extractor_differences_library():
    assert extractor_differences({}, {"backbone": "vgg16"}) is None
    assert extractor_differences({"backbone": "vgg16"}, {"backbone": "vgg16"}) == []
    found = extractor_differences({"backbone": "vgg16", "weights_seed": 0}, {"backbone": "vgg16_random"})
    assert found == [("backbone", "vgg16", "vgg16_random"), ("weights_seed", 0, None)]
    assert describe_differences(found) == "backbone vgg16 vs vgg16_random, weights_seed 0 vs none"


@pytest.mark.parametrize("n_real, n_fake, argv, warned", [
    (5, 140, (), "real 5"), (150, 40, (), "fake 40"), (150, 140, ("--k", "8"), "real 150, fake 140"),
    (150, 140, (), None), (150, 140, ("--metrics", "pr"), None)])
def test_small_sets_for_k_are_said_in_one_line(files, n_real, n_fake, argv, warned):
    rng = np.random.default_rng(1)
    np.save("r.npy", rng.standard_normal((n_real, 4)).astype(np.float32))
    np.save("f.npy", rng.standard_normal((n_fake, 4)).astype(np.float32))
    k = ("--k", "3") if "--k" not in argv else ()
    result = call(main, "r.npy", "f.npy", "--no_cache", "--dc_k", "4", *k, *argv)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "small sets" in line]
    if warned is None:
        assert lines == [], result.stderr
    else:
        assert len(lines) == 1 and warned in lines[0], result.stderr
    quiet = call(main, "r.npy", "f.npy", "--no_cache", "-q", *argv)
    assert "small sets" not in quiet.stderr


@pytest.mark.parametrize("argv, option", [(("--knn", "hnsw", "--hnsw_m", "1"), "--hnsw_m"),
                                          (("--seed", "-1"), "--seed"), (("--seed", "x"), "--seed")])
def test_option_messages_name_the_option(files, argv, option):
    result = call(main, "real.npy", "fake.npy", *argv)
    line = assert_one_line_error(result, status=2)
    assert f"argument {option}" in line, line


def test_help_says_the_first_two_lines_are_epr():
    result = call(main, "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "'precision:' and 'recall:'" in text and "are eP&R" in text and "'pr.precision:'" in text
    first_screen = " ".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:20])
    assert "`precision:` and `recall:` first" in first_screen and "**eP&R**" in " ".join(first_screen.split())
    assert "exact improved P&R follows as `pr.precision:`" in " ".join(first_screen.split())


# ---------------------------------------------------------------- torchrun: same inputs on every rank

LAUNCHER = """
import os, sys
rank = os.environ["RANK"]
# per-rank arguments: '@R' in an argument becomes the rank; a HUBNESS_CACHE_<rank> variable the cache
sys.argv = [sys.argv[0]] + [a.replace("@R", rank) for a in sys.argv[1:]]
if os.environ.get("HUBNESS_CACHE_" + rank):
    os.environ["HUBNESS_CACHE"] = os.environ["HUBNESS_CACHE_" + rank]
sys.path.insert(0, {root!r})
from hubness_pr.commands.launch import launch
raise SystemExit(launch("hubness_pr.commands.metrics", "improved_precision_recall_hubness.py"))
"""


def torchrun(folder, *argv, env=None):
    launcher = folder / "launch_ranks.py"
    launcher.write_text(LAUNCHER.format(root=str(ROOT)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(launcher),
           *map(str, argv)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HUBNESS_DIST_TIMEOUT": "120", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=full_env, cwd=folder)


@pytest.mark.parametrize("other", ["same_shape", "other_n", "other_dim"])
def test_torchrun_ranks_given_different_files_fail_with_one_line(files, other):
    real = np.load("real.npy")
    changed = {"same_shape": real[::-1].copy(), "other_n": real[:120], "other_dim": real[:, :5]}[other]
    np.save("real0.npy", real)
    np.save("real1.npy", changed)
    proc = torchrun(files, "real@R.npy", "fake.npy", "--no_cache", "--json", "out.json")
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if "improved_precision_recall_hubness.py: error" in line]
    assert len(ours) == 1, proc.stderr[-3000:]
    if other == "other_dim":  # rank 1 fails before the digests are compared: REAL and FAKE differ there
        assert "process 1 of 2: fake.npy (fake): 6-dimensional features, but real1.npy (real) has 5" in ours[0]
    else:
        assert "real0.npy (REAL): process 1 of 2 read other features than process 0" in ours[0], ours[0]
    # no Gloo abort; torchrun adds its own report of a failed worker, no traceback comes from the toolkit
    assert "collective" not in proc.stderr.lower(), proc.stderr[-3000:]
    assert "hubness/" not in proc.stderr and "features/" not in proc.stderr, proc.stderr[-3000:]
    assert not Path("out.json").exists()


def test_torchrun_ranks_with_different_cached_summaries_agree_and_equal_one_process(files):
    # rank 0 finds the real set's summary in its cache, rank 1 finds none
    first = call(main, "real.npy", "fake.npy", "--json", "one.json", "--cache_dir", "cache0")
    assert first.returncode == 0, first.stderr
    assert len(list((files / "cache0").iterdir())) == 1
    proc = torchrun(files, "real.npy", "fake.npy", "--json", "two.json", "--memory_budget", "1",
                    env={"HUBNESS_CACHE_0": str(files / "cache0"), "HUBNESS_CACHE_1": str(files / "cache1")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "different stored k-NN summaries" in proc.stderr
    two, one = json.loads(Path("two.json").read_text()), json.loads(Path("one.json").read_text())
    assert two["params"]["processes"] == 2 and two["cache"]["real"]["status"].startswith("computed")
    for block in ("epr", "pr", "dc", "hubness"):
        assert two[block] == one[block], block


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_feature_input_that_is_not_a_regular_file_is_one_line(files, kind):
    import threading
    target = files / f"fake.{'zip' if kind == 'fifo' else 'npz'}"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        os.symlink("/dev/zero", target)
    box = {}
    worker = threading.Thread(target=lambda: box.update(result=call(main, "real.npy", target.name, "--no_cache")),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the run hung on a non-regular input"
    assert_one_line_error(box["result"], f"{target.name}: not a regular file")
