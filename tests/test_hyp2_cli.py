"""retrieval.py end to end on the mosaic and on feature files, --test, and one-line errors (in process)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hubness_pr.io.store import save_features
from hubness_pr.commands.retrieval import main
from tests.test_hyp2_ranking import brute_force_scores

ROOT = Path(__file__).resolve().parent.parent
MOSAIC = ["--dataset", "mosaic", "--backbone", "pixels", "--hash_bit", "16", "--mosaic_counts", "1200,150,400,100",
          "--no-progress", "-q"]


def random_codes_map(labels_q, labels_db, bits, R, seed=0):
    rng = np.random.default_rng(seed)
    q = np.where(rng.random((len(labels_q), bits)) < 0.5, 1, -1)
    db = np.where(rng.random((len(labels_db), bits)) < 0.5, 1, -1)
    return brute_force_scores(q, db, labels_q, labels_db, R)[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("hyp2_run")
    assert main([*MOSAIC, "--epochs", "6", "--eval_every", "2", "--output", str(out)]) == 0
    return out


def test_training_writes_every_output(trained, capsys):
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("map", "R", "val_map", "hash_bit", "beta", "zeta", "seed", "precision_at_n", "best_epoch"):
        assert key in metrics
    assert (metrics["hash_bit"], metrics["beta"], metrics["zeta"], metrics["seed"]) == (16, 0.5, 0.0, 0)
    assert metrics["R"] == 400 and metrics["val_R"] == 400 and metrics["tie_break"] == "database index"
    log = [json.loads(line) for line in (trained / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3, 4, 5, 6]
    assert [e["epoch"] for e in log if "val_map" in e] == [2, 4, 6]
    assert metrics["val_map"] == max(e["val_map"] for e in log if "val_map" in e)
    assert log[0]["lr_network"] == 0.02 and log[0]["lr_proxies"] == 0.02
    for name in ("checkpoint.pt", "topn_precision.png", "map_per_epoch.png"):
        assert (trained / name).stat().st_size > 0
    assert not (trained / "codes.npz").exists()  # codes come with --test
    payload = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert (payload["hash_bit"], payload["num_classes"], payload["backbone"], payload["zeta"]) == (16, 10, "pixels", 0.0)
    assert payload["proxies"].shape == (10, 16) and payload["epoch"] == metrics["best_epoch"]


def test_trained_codes_beat_random_codes_and_test_mode_reproduces(trained, capsys):
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    capsys.readouterr()
    assert main([*MOSAIC, "--output", str(trained), "--test"]) == 0
    out = capsys.readouterr().out.splitlines()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert out[0] == f"map: {metrics['map']:.6f}" and metrics["mode"] == "test"
    assert metrics["map"] == trained_metrics["map"] and metrics["val_map"] == trained_metrics["val_map"]
    assert (metrics["beta"], metrics["epochs"]) == (0.5, 6)  # how the checkpoint was trained
    codes = np.load(trained / "codes.npz")
    assert codes["query_codes"].dtype == np.int8 and set(np.unique(codes["db_codes"])) == {-1, 1}
    assert codes["query_codes"].shape == (100, 16) and codes["db_labels"].shape == (400, 10)
    want = brute_force_scores(codes["query_codes"], codes["db_codes"], codes["query_labels"], codes["db_labels"], 400)[0]
    assert metrics["map"] == pytest.approx(want, abs=1e-12)  # others can recompute the ranking from codes.npz
    chance = random_codes_map(codes["query_labels"], codes["db_labels"], 16, 400)
    assert metrics["map"] > chance + 0.15, (metrics["map"], chance)


def test_training_is_deterministic(tmp_path):
    args = [*MOSAIC, "--epochs", "2", "--mosaic_counts", "300,50,100,50"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    assert main([*args, "--output", str(tmp_path / "b")]) == 0
    a, b = (torch.load(tmp_path / x / "checkpoint.pt", weights_only=True) for x in "ab")
    assert all(torch.equal(a["network"][k], b["network"][k]) for k in a["network"])
    assert torch.equal(a["proxies"], b["proxies"])
    assert main([*args, "--output", str(tmp_path / "c"), "--seed", "1"]) == 0
    c = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert not torch.equal(a["proxies"], c["proxies"])


def test_features_dataset_trains_the_hash_head(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n, classes = 600, 6
    labels = np.zeros((n, classes), np.uint8)
    for i in range(n):
        labels[i, rng.choice(classes, size=rng.integers(1, 3), replace=False)] = 1
    centres = rng.normal(size=(classes, 32)) * 3
    features = labels @ centres + rng.normal(size=(n, 32))
    paths = [f"x/{i:03d}.png" for i in range(n)]
    save_features(tmp_path / "f.npz", features.astype(np.float32), paths=paths)
    (tmp_path / "l.txt").write_text("".join(p + " " + " ".join(map(str, r)) + "\n" for p, r in zip(paths, labels)))
    (tmp_path / "s.json").write_text(json.dumps({"train": paths[:400], "database": paths[:500], "query": paths[500:]}))
    args = ["--dataset", "features", "--features", str(tmp_path / "f.npz"), "--labels", str(tmp_path / "l.txt"),
            "--split", str(tmp_path / "s.json"), "--hash_bit", "12", "--output", str(tmp_path / "out"), "-q"]
    assert main([*args, "--epochs", "5"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["backbone"] == "mlp" and metrics["R"] == 500 and metrics["n_val"] == 40
    assert metrics["map"] > random_codes_map(labels[500:], labels[:500], 12, 500) + 0.2
    assert main([*args, "--test"]) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["map"] == pytest.approx(metrics["map"])


@pytest.fixture()
def bad_flickr(tmp_path):
    root = tmp_path / "flickr"
    root.mkdir()
    (root / "img.txt").write_text("a.jpg\nb.jpg\n")
    (root / "targets.txt").write_text(" ".join(["0"] * 38) + "\n" + " ".join(["1"] * 37) + "\n")
    return root


@pytest.mark.parametrize("args, code, fragment", [
    (["--dataset", "voc2007", "--data", "{tmp}/none"], 1, "VOC2007 folder not found"),
    (["--dataset", "flickr", "--data", "{tmp}/flickr"], 1, "targets.txt:2: 37 labels, expected 38"),
    (["--dataset", "nuswide", "--data", "{tmp}"], 1, "train.txt: image list not found"),
    ([*MOSAIC, "--hash_bit", "300"], 2, "argument --hash_bit: must be 1 to 256, got 300"),
    ([*MOSAIC, "--hash_bit", "3"], 1, "too short for 10 classes"),
    ([*MOSAIC, "--test", "--output", "{tmp}"], 1, "no checkpoint here"),
    ([*MOSAIC, "--mosaic_counts", "5,5"], 2, "argument --mosaic_counts: expected four positive integers"),
    (["--dataset", "mosaic", "--backbone", "mlp"], 1, "--backbone mlp needs --dataset features"),
    (["--dataset", "features", "--split", "s.json"], 1, "--dataset features needs --features"),
    (["--dataset", "mosaic", "--backbone", "googlenet", "--mosaic_counts", "20,5,10,5"], 1,
     "Inception-v3 ImageNet weights not found"),
    (["--dataset", "mosaic", "--backbone", "vit"], 2, "argument --backbone: invalid choice: 'vit'"),
    (["--beta", "-1"], 2, "argument --beta: must be >= 0"),
])
def test_bad_input_is_one_line(args, code, fragment, bad_flickr, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no cached ImageNet weights
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        status = main([*args, "--output", str(tmp_path / "out")] if "--output" not in args else args)
    except SystemExit as exc:  # argparse usage errors
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == code
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_checkpoint_of_another_architecture_is_refused(trained, capsys):
    capsys.readouterr()
    assert main([*MOSAIC, "--hash_bit", "32", "--checkpoint", str(trained / "checkpoint.pt"), "--test"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--hash_bit 32: the checkpoint {trained / 'checkpoint.pt'} was trained with " \
                             f"--hash_bit 16" in err[0]


def test_script_exit_status_and_single_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "retrieval.py"), "--dataset", "voc2012", "--data",
                           str(tmp_path), "--output", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"retrieval.py: error: {tmp_path}/VOCdevkit/VOC2012: VOC2012 folder not found; "
        f"extract the VOC tar files (trainval) into --data"]


def test_threads_of_the_caller_are_restored(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([*MOSAIC, "--epochs", "1", "--mosaic_counts", "60,10,30,10", "--output", str(tmp_path)]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
