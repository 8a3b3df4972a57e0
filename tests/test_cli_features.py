"""getFeature.py and image inputs of the metric script, through main(argv)."""
import json
import os

import numpy as np
import pytest
import torch
import torchvision

from hubness_pr.commands import features as features_main
from hubness_pr.commands import metrics as metrics_main
from tests.cli_helpers import assert_one_line_error, call
from tests.test_backbones import StandInDetector, save_script
from tests.test_extract import digit_images, write_folder

MAINS = {"getFeature.py": features_main.main, "improved_precision_recall_hubness.py": metrics_main.main}


def run(script, *args):
    return call(MAINS[script], *args)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clifeat")
    order = np.random.default_rng(1).permutation(1797)
    real, _ = digit_images(np.sort(order[:60]))
    fake, _ = digit_images(np.sort(order[60:110]), noise=40.0)
    return tmp, write_folder(tmp / "real", real), write_folder(tmp / "fake", fake)


def test_getfeature_writes_feature_paths_meta(sets):
    tmp, real, _ = sets
    out = tmp / "real.npz"
    proc = run("getFeature.py", real, "--fname_precalc", out, "--backbone", "efficientnet_lite0", "--batch_size", 16)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # results go to the file, logs to stderr
    data = np.load(out, allow_pickle=False)
    assert data["feature"].shape == (60, 1280) and data["feature"].dtype == np.float32
    assert data["paths"].tolist() == sorted(p.name for p in real.iterdir())
    meta = json.loads(str(data["meta"]))
    for key in ("schema_version", "backbone", "layer", "weights_sha256", "input_size", "resize", "mean", "std",
                "count", "toolkit_version", "torch_version", "source"):
        assert key in meta, key
    assert meta["count"] == 60 and meta["backbone"] == "efficientnet_lite0"
    assert not [p for p in os.listdir(tmp) if p.endswith((".tmp", ".partial"))]


def test_metric_script_takes_image_folders(sets, monkeypatch):
    """Two image folders: the backbone is built once for both, and the metrics equal those of the
    same images' feature files written by getFeature.py."""
    import hubness_pr.extraction.extract
    tmp, real, fake = sets
    built = []
    load = hubness_pr.extraction.extract.load_backbone

    def counted(*args, **kwargs):
        built.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(hubness_pr.extraction.extract, "load_backbone", counted)
    proc = run("improved_precision_recall_hubness.py", real, fake, "--backbone", "efficientnet_lite0",
               "--json", tmp / "img.json", "--per_sample", tmp / "img.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("precision: ")
    assert len(built) == 1
    data = json.loads((tmp / "img.json").read_text())
    assert data["dim"] == 1280 and data["n_real"] == 60 and data["n_fake"] == 50
    for name, folder in (("r.npz", real), ("f.npz", fake)):
        assert run("getFeature.py", folder, "--fname_precalc", tmp / name, "--backbone", "efficientnet_lite0",
                   "--batch_size", 16).returncode == 0
    files = run("improved_precision_recall_hubness.py", tmp / "r.npz", tmp / "f.npz", "--json", tmp / "f.json")
    assert files.returncode == 0, files.stderr
    from_files = json.loads((tmp / "f.json").read_text())
    for block in ("epr", "pr", "dc"):
        assert from_files[block] == data[block], block
    rows = (tmp / "img.csv").read_text().splitlines()
    assert rows[0].startswith("index,path,") and rows[1].split(",")[1] == "0000.png"


def test_vgg16_weights_file_through_the_cli(sets, tmp_path):
    _, real, _ = sets
    torch.manual_seed(0)
    weights = tmp_path / "vgg.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), weights)
    out = tmp_path / "v.npz"
    proc = run("getFeature.py", real, "--fname_precalc", out, "--weights", weights, "--num_samples", 3,
               "--seed", 4)
    assert proc.returncode == 0, proc.stderr
    data = np.load(out)
    meta = json.loads(str(data["meta"]))
    assert data["feature"].shape == (3, 4096) and (data["feature"] >= 0).all()
    assert meta["num_samples"] == 3 and meta["sample_seed"] == 4 and meta["weights_file"] == "vgg.pth"


@pytest.fixture
def bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noimages").mkdir()
    (tmp_path / "noimages" / "a.txt").write_text("x")
    imgs, _ = digit_images(np.arange(3))
    write_folder(tmp_path / "ok", imgs)
    broken = write_folder(tmp_path / "broken", imgs)
    (broken / "0001.png").write_bytes(b"GIF89a not really")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    save_script(StandInDetector(), tmp_path / "vgg16.pt")
    return tmp_path


@pytest.mark.parametrize("args, fragments", [
    (["missing", "-o", "o.npz"], ["missing: no such file or folder"]),
    (["empty", "-o", "o.npz"], ["empty: no images found"]),
    (["noimages", "-o", "o.npz"], ["no images found"]),
    (["ok", "-o", "nowhere/o.npz"], ["folder nowhere does not exist"]),
    (["ok", "-o", "o.txt"], ["must end in .npz"]),
    (["ok", "-o", "o.npz", "--weights", "resnet.pth"], ["not VGG16 weights", "missing keys"]),
    (["ok", "-o", "o.npz", "--batch_size", "0"], ["argument --batch_size/--batch-size: must be >= 1, got 0"]),
    (["ok", "-o", "o.npz", "--backbone", "clip"], ["invalid choice: 'clip'"]),
    (["ok", "-o", "o.npz", "--preprocess", "bicubic"], ["invalid choice: 'bicubic'"]),
    (["ok", "-o", "o.npz", "--backbone", "vgg16_nvidia"], ["vgg16_nvidia needs --weights vgg16.pt", "never downloaded"]),
    (["ok", "-o", "o.npz", "--backbone", "vgg16_nvidia", "--weights", "resnet.pth"], ["not a TorchScript module"]),
    (["ok", "-o", "o.npz", "--backbone", "vgg16", "--weights", "vgg16.pt"],
     ["a TorchScript module, not a state dict for VGG16", "--backbone vgg16_nvidia"]),
    (["ok", "-o", "o.npz", "--backbone", "vgg16_nvidia", "--weights", "vgg16.pt", "--preprocess", "pil"],
     ["--preprocess pil: vgg16_nvidia resizes and normalises inside NVIDIA's module"]),
    (["ok", "-o", "o.npz", "--device", "gpu"], ["argument --device: expected auto, cpu, cuda or cuda:N"]),
    (["ok", "-o", "o.npz", "--half", "--device", "cpu", "--backbone", "efficientnet_lite0"], ["--half needs a CUDA"]),
    (["broken", "-o", "o.npz", "--backbone", "efficientnet_lite0"], ["0001.png: cannot decode image", "--skip_bad"]),
    (["ok"], ["required: --fname_precalc"]),
])
def test_getfeature_errors(bad_inputs, monkeypatch, args, fragments):
    """Default verbosity: the error line alone."""
    monkeypatch.chdir(bad_inputs)
    before = sorted(os.listdir(bad_inputs))
    assert_one_line_error(run("getFeature.py", *args), *fragments)
    assert sorted(os.listdir(bad_inputs)) == before  # no output, no checkpoint left behind


def test_skip_bad_lists_skipped_in_meta(bad_inputs, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    proc = run("getFeature.py", "broken", "-o", "b.npz", "--backbone", "efficientnet_lite0", "--skip_bad")
    assert proc.returncode == 0, proc.stderr
    assert "0001.png" in proc.stderr
    data = np.load(bad_inputs / "b.npz")
    meta = json.loads(str(data["meta"]))
    assert data["paths"].tolist() == ["0000.png", "0002.png"]
    assert [s["path"] for s in meta["skipped"]] == ["0001.png"]


def test_vgg16_nvidia_through_both_commands(sets, tmp_path):
    tmp, real, fake = sets
    weights = save_script(StandInDetector(), tmp_path / "vgg16.pt")
    out = tmp_path / "nv.npz"
    proc = run("getFeature.py", real, "-o", out, "--backbone", "vgg16_nvidia", "--weights", weights, "--num_samples", 5)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    data = np.load(out)
    meta = json.loads(str(data["meta"]))
    assert data["feature"].shape == (5, 4096) and meta["backbone"] == "vgg16_nvidia"
    assert meta["weights_file"] == "vgg16.pt" and len(meta["weights_sha256"]) == 16
    proc = run("improved_precision_recall_hubness.py", real, fake, "--backbone", "vgg16_nvidia", "--weights", weights,
               "--metrics", "pr", "--json", tmp_path / "nv.json")
    assert proc.returncode == 0, proc.stderr
    inputs = json.loads((tmp_path / "nv.json").read_text())["inputs"]
    assert inputs["real"]["meta"]["backbone"] == inputs["fake"]["meta"]["backbone"] == "vgg16_nvidia"


def test_old_preprocess_name_is_accepted_with_one_note(sets, tmp_path, monkeypatch):
    from hubness_pr.extraction.backbones import preprocess
    monkeypatch.setattr(preprocess, "_aliases_noted", set())
    _, real, _ = sets
    proc = run("getFeature.py", real, "-o", tmp_path / "a.npz", "--backbone", "efficientnet_lite0",
               "--preprocess", "nvidia", "--num_samples", 2)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "old name of tf1_bilinear" in proc.stderr
    assert json.loads(str(np.load(tmp_path / "a.npz")["meta"]))["preprocess"] == "tf1_bilinear"
