"""Extraction pipeline: invariance to batch size, workers and input form; bad files; resume; end to end."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import hubness_pr
from hubness_pr.extraction.backbones import load_backbone
from hubness_pr.extraction.extract import extract_features, extract_path
from hubness_pr.extraction.images import open_source
from tests.test_images import png_bomb

ROOT = Path(__file__).resolve().parent.parent


def digit_images(indices, noise=0.0, seed=0):
    """scikit-learn's real 8x8 digits as 32x32 RGB uint8 images (optionally noised)."""
    digits = load_digits()
    imgs = (digits.images[indices] * (255 / 16)).astype(np.float64)
    if noise:
        imgs = imgs + np.random.default_rng(seed).normal(0, noise, imgs.shape)
    imgs = np.clip(imgs, 0, 255).astype(np.uint8)
    big = np.repeat(np.repeat(imgs, 4, axis=1), 4, axis=2)
    return np.repeat(big[..., None], 3, axis=3), digits.target[indices]


def write_folder(folder: Path, imgs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def lite():
    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    imgs, _ = digit_images(np.arange(24))
    folder = write_folder(tmp / "folder", imgs)
    import zipfile
    with zipfile.ZipFile(tmp / "set.zip", "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, arcname=f"nested/{f.name}")
    np.save(tmp / "set.npy", imgs)
    return tmp, imgs


def test_same_features_whatever_batch_size_workers_and_input_form(lite, small_set):
    tmp, imgs = small_set
    base = extract_features(open_source(tmp / "folder"), lite, batch_size=24, num_workers=0)
    assert base.features.shape == (24, 1280) and base.paths[0] == "0000.png"
    for source, batch, workers in [(tmp / "folder", 1, 0), (tmp / "folder", 5, 2), (tmp / "set.zip", 7, 2),
                                   (tmp / "set.npy", 16, 1)]:
        other = extract_features(open_source(source), lite, batch_size=batch, num_workers=workers)
        np.testing.assert_allclose(other.features, base.features, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(lite.embed(imgs), base.features, atol=2e-5, rtol=1e-4)


def test_bad_image_stops_or_is_skipped(lite, tmp_path):
    imgs, _ = digit_images(np.arange(6))
    folder = write_folder(tmp_path / "f", imgs)
    (folder / "0002.png").write_bytes((folder / "0002.png").read_bytes()[:40])  # truncated
    (folder / "0004.png").write_bytes(b"")  # zero bytes
    with pytest.raises(ValueError, match="0002.png: cannot decode"):
        extract_features(open_source(folder), lite, num_workers=2)
    result = extract_features(open_source(folder), lite, num_workers=2, skip_bad=True)
    assert result.paths == ["0000.png", "0001.png", "0003.png", "0005.png"]
    assert [name for name, _ in result.skipped] == ["0002.png", "0004.png"]
    assert "empty file" in result.skipped[1][1]


def test_checkpoints_resume_to_the_same_result(lite, small_set, tmp_path):
    tmp, _ = small_set
    source = open_source(tmp / "folder")
    full = extract_features(source, lite, batch_size=4, num_workers=0)
    ckpt = tmp_path / "ckpt"
    calls = {"n": 0}
    real_prepare = lite.prepare

    def failing_prepare(img):  # simulate a crash after 14 images
        calls["n"] += 1
        if calls["n"] > 14:
            raise KeyboardInterrupt
        return real_prepare(img)

    lite.prepare = failing_prepare
    try:
        with pytest.raises(KeyboardInterrupt):
            extract_features(source, lite, batch_size=4, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    finally:
        lite.prepare = real_prepare
    shards = sorted(p.name for p in ckpt.glob("shard_*.npz"))
    assert shards == ["shard_0000000000_0000000004.npz", "shard_0000000004_0000000008.npz",
                      "shard_0000000008_0000000012.npz"]
    counted = {"n": 0}

    def counting_prepare(img):
        counted["n"] += 1
        return real_prepare(img)

    lite.prepare = counting_prepare
    try:
        resumed = extract_features(source, lite, batch_size=4, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    finally:
        lite.prepare = real_prepare
    assert counted["n"] == 12  # only the images after the last checkpoint were recomputed
    assert resumed.paths == full.paths
    np.testing.assert_allclose(resumed.features, full.features, atol=1e-6)


def test_checkpoint_of_other_inputs_is_discarded(lite, small_set, tmp_path):
    tmp, _ = small_set
    ckpt = tmp_path / "ckpt"
    extract_features(open_source(tmp / "folder").subset(range(8)), lite, num_workers=0, checkpoint_dir=ckpt,
                     shard_size=4)
    result = extract_features(open_source(tmp / "folder"), lite, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    assert len(result.paths) == 24


def test_resume_discards_a_checkpoint_of_images_changed_since(lite, tmp_path):
    """Same names, new content of the same size, modification time put back: the shards are stale."""
    imgs, _ = digit_images(np.arange(8))
    folder = tmp_path / "f"
    folder.mkdir()
    for i, img in enumerate(imgs):  # uncompressed PNGs: the file size depends on the image size only
        Image.fromarray(img).save(folder / f"{i:04d}.png", compress_level=0)
    ckpt = tmp_path / "ckpt"
    before = extract_features(open_source(folder), lite, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    changed = folder / "0005.png"
    old = changed.stat()
    Image.fromarray(255 - imgs[5]).save(changed, compress_level=0)
    os.utime(changed, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert changed.stat().st_size == old.st_size and changed.stat().st_mtime_ns == old.st_mtime_ns
    after = extract_features(open_source(folder), lite, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    fresh = extract_features(open_source(folder), lite, num_workers=0)
    np.testing.assert_allclose(after.features, fresh.features, atol=1e-6)
    assert np.abs(after.features[5] - before.features[5]).max() > 1e-3


def test_png_bomb_in_a_folder_stops_the_run_or_is_skipped(lite, tmp_path):
    folder = write_folder(tmp_path / "f", digit_images(np.arange(3))[0])
    (folder / "0001b.png").write_bytes(png_bomb(20000))
    with pytest.raises(ValueError, match=r"0001b.png: image too large \(20000 x 20000 .* \(use --skip_bad"):
        extract_features(open_source(folder), lite, num_workers=0)
    result = extract_features(open_source(folder), lite, num_workers=0, skip_bad=True)
    assert result.paths == ["0000.png", "0001.png", "0002.png"]
    assert [name for name, _ in result.skipped] == ["0001b.png"] and "pixels" in result.skipped[0][1]


def test_num_samples_subset_recorded(lite, small_set):
    tmp, _ = small_set
    result, meta = extract_path(tmp / "folder", backbone="efficientnet_lite0", num_samples=5, seed=3, num_workers=0)
    again, _ = extract_path(tmp / "folder", backbone="efficientnet_lite0", num_samples=5, seed=3, num_workers=0)
    assert result.paths == again.paths and len(result.paths) == 5
    assert meta["num_samples"] == 5 and meta["sample_seed"] == 3 and meta["images_found"] == 24


def test_end_to_end_real_digits_move_precision_and_recall_the_expected_way(tmp_path):
    """Real images, a pretrained network: held-out digits score high on both; a noised copy loses
    precision; a copy holding digits 0-4 only loses recall."""
    order = np.random.default_rng(0).permutation(1797)
    real_idx, held_idx = np.sort(order[:200]), np.sort(order[200:400])
    real, _ = digit_images(real_idx)
    held, labels = digit_images(held_idx)
    noised, _ = digit_images(held_idx, noise=90.0)
    kw = dict(backbone="efficientnet_lite0", num_workers=2, batch_size=60)
    feats = {}
    for name, imgs in [("real", real), ("held", held), ("noised", noised)]:
        feats[name] = extract_path(write_folder(tmp_path / name, imgs), **kw)[0].features
    feats["collapsed"] = feats["held"][labels < 5]  # the same images' features: digits 0-4 only
    res = {name: hubness_pr.evaluate(real=feats["real"], fake=feats[name], metrics="pr,dc")
           for name in ("held", "noised", "collapsed")}
    assert res["held"].pr.precision > 0.6 and res["held"].pr.recall > 0.6
    assert res["noised"].pr.precision < res["held"].pr.precision - 0.3
    # fewer fakes have larger balls, so recall drops less than the lost half of the modes suggests;
    # coverage (real balls only) is the sharper detector of dropped modes
    assert res["collapsed"].pr.recall < res["held"].pr.recall - 0.08
    assert res["collapsed"].dc.coverage < res["held"].dc.coverage - 0.12


def test_interrupted_cli_extraction_resumes(tmp_path_factory, tmp_path):
    n = 120  # after the first shard, ~118 images (seconds of work on 2 cores) remain: room to interrupt
    folder = write_folder(tmp_path_factory.mktemp("resume") / "folder", digit_images(np.arange(n))[0])
    out = tmp_path / "out.npz"
    cmd = [sys.executable, str(ROOT / "getFeature.py"), str(folder), "--fname_precalc", str(out),
           "--backbone", "efficientnet_lite0", "--batch_size", "2", "--checkpoint_every", "2",
           "--num_workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = tmp_path / "out.npz.partial"
    while not list(partial.glob("shard_*.npz")):
        assert proc.poll() is None, "extraction ended before it could be interrupted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-400:]
    assert "resume" in err.decode() and "Traceback" not in err.decode()
    assert not out.exists() and partial.is_dir()
    done = subprocess.run(cmd + ["-v"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming at image" in done.stderr
    assert out.exists() and not partial.exists()
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]
    data = np.load(out)
    assert data["feature"].shape == (n, 1280)


def test_extraction_runs_in_full_float32_and_restores_the_settings(small_set):
    """TF32 (CUDA convolutions and matmuls with a 10-bit mantissa) is off while the network runs, in
    extraction and in embed, whatever the process had set; the process's settings are back after."""
    import torch
    from hubness_pr.extraction.backbones import Backbone
    tmp, imgs = small_set
    seen = []

    class Probe(torch.nn.Module):  # data-dependent control flow: torch.fx cannot trace it, so it runs as it is
        def forward(self, x):
            if not bool(torch.isfinite(x).all()):
                raise ValueError("non-finite input")
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                         torch.get_float32_matmul_precision()))
            return x.float().mean(dim=(2, 3))

    probe = Backbone(name="probe", dim=3, network=Probe(), prepare=lambda img: torch.from_numpy(
        np.ascontiguousarray(img.transpose(2, 0, 1))).float())
    before = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("medium")  # allows TF32 (and bf16) matmuls
    try:
        out = extract_features(open_source(tmp / "set.npy"), probe, batch_size=10, num_workers=0)
        embedded = probe.embed(imgs[:4])
        after = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                 torch.get_float32_matmul_precision())
    finally:
        torch.backends.cudnn.allow_tf32 = before[0]
        torch.set_float32_matmul_precision(before[1])
    assert out.features.shape == (24, 3) and embedded.shape == (4, 3)
    assert len(seen) == 3 + 1 and set(seen) == {(False, False, "highest")}
    assert after == (True, True, "medium")
