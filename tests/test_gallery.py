"""--gallery DIR: contact sheets of the images a run singles out, found through the feature files
(paths + meta["source"]: folder, zip), or given as images; sizes, selections against the
Evaluation, the pixels of each tile, captions' sources (gallery.csv), and what happens when images
cannot be found."""
import csv
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

import hubness_pr
from hubness_pr.reports import gallery
from hubness_pr.commands.metrics import main
from tests.cli_helpers import assert_one_line_error, call
from tests.test_reports import random_pair

N_REAL, N_FAKE, SIDE = 120, 100, 8  # at least 100 a set: no small-set warning


def colour(side: str, i: int) -> tuple:
    """A colour unique to each image: the test finds every tile by it."""
    return (10 + 2 * i, 200 if side == "real" else 60, 30 + i)


def write_images(folder, side, n, ext="png"):
    os.makedirs(folder / "sub", exist_ok=True)
    names = []
    for i in range(n):
        name = f"sub/{side}_{i:03d}.{ext}"
        Image.new("RGB", (SIDE, SIDE), colour(side, i)).save(folder / name)
        names.append(name)
    return names


def save_features(path, features, names, source):
    meta = {"source": source, "backbone": "test"}
    np.savez(path, feature=features, paths=np.array(names), meta=np.asarray(json.dumps(meta)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """real.npz -> folder images/real (relative root), fake.npz -> fake.zip; features 4-d."""
    tmp = tmp_path_factory.mktemp("gallery")
    real, fake = random_pair(3, N_REAL, N_FAKE, 4, 1.4)
    names = write_images(tmp / "images" / "real", "real", N_REAL)
    save_features(tmp / "real.npz", real, names, {"kind": "folder", "root": "images/real", "count": N_REAL})
    fake_names = write_images(tmp / "unzipped", "fake", N_FAKE)
    with zipfile.ZipFile(tmp / "fake.zip", "w") as archive:
        for name in fake_names:
            archive.write(tmp / "unzipped" / name, name)
    save_features(tmp / "fake.npz", fake, fake_names, {"kind": "zip", "root": "fake.zip", "count": N_FAKE})
    return tmp, real, fake


def read_index(folder):
    with open(folder / "gallery.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def tile_centre(image, rank: int, n: int) -> tuple:
    columns = min(n, gallery.COLUMNS)
    x = gallery.PAD + (rank % columns) * (gallery.THUMB + gallery.PAD) + gallery.THUMB // 2
    y = gallery.HEADER + (rank // columns) * (gallery.THUMB + gallery.CAPTION + gallery.PAD) + gallery.THUMB // 2
    return image.getpixel((x, y))


def expected(ev, name, n):
    """(set, rows, scores) each sheet must show, computed here from the Evaluation."""
    rarity, realism = ev.rarity.scores, ev.realism.scores
    inside = np.flatnonzero(~np.isnan(rarity))
    outside = np.flatnonzero(~ev.fake_in_real_manifold)
    uncovered = np.flatnonzero(~ev.real_in_fake_manifold)
    by = {
        "rarest": ("fake", inside[np.argsort(-rarity[inside], kind="stable")][:n], rarity),
        "most_typical": ("fake", inside[np.argsort(rarity[inside], kind="stable")][:n], rarity),
        "least_realistic": ("fake", np.argsort(realism, kind="stable")[:n], realism),
        "most_realistic": ("fake", np.argsort(-realism, kind="stable")[:n], realism),
        "outside_real": ("fake", outside[np.unique(np.linspace(0, outside.size - 1, min(n, outside.size))
                                                   .round().astype(int))], realism),
        "hubs_fake": ("fake", np.argsort(-ev.fake_k_occurrence, kind="stable")[:n], ev.fake_k_occurrence),
        "hubs_real": ("real", np.argsort(-ev.real_k_occurrence, kind="stable")[:n], ev.real_k_occurrence),
        "uncovered_real": ("real", uncovered[np.argsort(-ev.real_k_occurrence[uncovered], kind="stable")][:n],
                           ev.real_k_occurrence),
    }
    side, rows, scores = by[name]
    return side, rows, scores[rows]


def test_sheets_show_the_selected_images_with_their_scores(data, monkeypatch):
    tmp, real, fake = data
    monkeypatch.chdir(tmp)  # the real root is relative: found from here
    n = 5
    proc = call(main, "real.npz", "fake.npz", "--gallery", "g", "--gallery_n", n, "--json", "r.json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    names = sorted(os.listdir(tmp / "g"))
    assert names == sorted([f"{spec.name}.png" for spec in gallery.planned_sheets(hubness_pr.DEFAULT_METRICS)] + ["gallery.csv"])
    ev = hubness_pr.evaluate(real=real, fake=fake)
    assert ev.fake_in_real_manifold.sum() < N_FAKE - n  # every sheet has n tiles to show
    rows = read_index(tmp / "g")
    for spec in gallery.planned_sheets(hubness_pr.DEFAULT_METRICS):
        side, want_rows, want_scores = expected(ev, spec.name, n)
        got = [r for r in rows if r["sheet"] == spec.name]
        assert [int(r["rank"]) for r in got] == list(range(1, len(want_rows) + 1))
        assert [int(r["index"]) for r in got] == want_rows.tolist(), spec.name
        assert {r["set"] for r in got} == {side}
        assert [r["path"] for r in got] == [f"sub/{side}_{i:03d}.png" for i in want_rows]
        assert np.allclose([float(r["score"]) for r in got], want_scores.astype(float))
        with Image.open(tmp / "g" / f"{spec.name}.png") as sheet:
            assert sheet.format == "PNG" and sheet.size == gallery.sheet_size(n)
            sheet = sheet.convert("RGB")
            for rank, row in enumerate(want_rows):
                assert tile_centre(sheet, rank, n) == colour(side, row), (spec.name, rank)
    assert json.loads((tmp / "r.json").read_text())["n_fake"] == N_FAKE  # the other outputs too


def test_sheets_sized_by_the_images_drawn(data, monkeypatch):
    """--gallery_n beyond the images there are: every sheet is sized by the most images a sheet
    shows (here the N_FAKE generated / N_REAL real images), not by N; the canvas stays small."""
    tmp, real, fake = data
    monkeypatch.chdir(tmp)
    proc = call(main, "real.npz", "fake.npz", "--gallery", "big", "--gallery_n", gallery.MAX_N,
                "--metrics", "pr,rarity,realism")
    assert proc.returncode == 0, proc.stderr
    rows = read_index(tmp / "big")
    drawn = max(sum(r["sheet"] == spec.name for r in rows) for spec in gallery.planned_sheets(hubness_pr.DEFAULT_METRICS))
    assert drawn == N_REAL  # hubs_real ranks every real image
    for spec in gallery.planned_sheets(hubness_pr.DEFAULT_METRICS):
        with Image.open(tmp / "big" / f"{spec.name}.png") as sheet:
            assert sheet.size == gallery.sheet_size(drawn) != gallery.sheet_size(gallery.MAX_N)
            shown = [int(r["index"]) for r in rows if r["sheet"] == spec.name]
            sheet = sheet.convert("RGB")
            for rank, row in enumerate(shown[:3]):
                assert tile_centre(sheet, rank, drawn) == colour(spec.side, row), (spec.name, rank)
    # a metric subset without real hubs: fakes only, sized by the N_FAKE of the fullest sheet
    proc = call(main, "real.npz", "fake.npz", "--gallery", "fakes", "--gallery_n", 500, "--metrics", "rarity")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp / "fakes" / "most_typical.png") as sheet:
        fullest = max(sum(r["sheet"] == s for r in read_index(tmp / "fakes")) for s in ("rarest", "most_typical",
                                                                                            "hubs_real"))
        assert sheet.size == gallery.sheet_size(fullest)


def test_sizes_follow_n():
    assert gallery.sheet_size(16) == (6 + 8 * 102, 44 + 2 * (96 + 32 + 6) + 6)
    assert gallery.sheet_size(3) == (gallery.MIN_WIDTH, 44 + 96 + 32 + 6 + 6)
    assert gallery.sheet_size(17)[1] == 44 + 3 * (96 + 32 + 6) + 6


def test_relative_root_found_from_the_feature_file_folder_and_subsets(data, tmp_path, monkeypatch):
    """From another folder the relative root is looked up beside the feature file; with
    --num_samples the tiles still show the right images, captioned with their rows in the file."""
    src, _, _ = data
    monkeypatch.chdir(tmp_path)
    proc = call(main, src / "real.npz", src / "fake.npz", "--gallery", "g", "--gallery_n", 4, "--metrics", "hubness",
                "--num_samples", 20, "--seed", 5, "-q")  # -q: no small-set warning for subsets of 20
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert sorted(os.listdir("g")) == ["gallery.csv", "hubs_fake.png", "hubs_real.png"]
    rows = read_index(tmp_path / "g")
    assert len(rows) == 8
    with Image.open("g/hubs_real.png") as sheet:
        sheet = sheet.convert("RGB")
        for rank, row in enumerate(r for r in rows if r["sheet"] == "hubs_real"):
            assert row["path"] == f"sub/real_{int(row['index']):03d}.png"
            assert tile_centre(sheet, rank, 4) == colour("real", int(row["index"]))


def test_missing_images_one_line_and_every_other_output(data, tmp_path, monkeypatch):
    """.npy inputs have no paths: one warning line, grey tiles, every output written."""
    _, real, fake = data
    monkeypatch.chdir(tmp_path)
    np.save("real.npy", real)
    np.save("fake.npy", fake)
    proc = call(main, "real.npy", "fake.npy", "--gallery", "g", "--gallery_n", 3, "--json", "r.json",
                "--per_sample", "p.csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("--gallery g: no fake images (fake.npy has no image paths)")
    assert "no real images" in lines[0] and "grey tiles" in lines[0]
    assert proc.stdout.startswith("precision: ")
    assert os.path.exists("r.json") and os.path.exists("p.csv")
    assert len(read_index(tmp_path / "g")) == len(gallery.planned_sheets(hubness_pr.DEFAULT_METRICS)) * 3
    with Image.open("g/rarest.png") as sheet:
        assert sheet.size == gallery.sheet_size(3)
        assert tile_centre(sheet.convert("RGB"), 0, 3) == (0xD0, 0xD0, 0xD0)


def test_some_images_gone(data, tmp_path, monkeypatch):
    """Images deleted since extraction: grey tiles for them, one line counting them."""
    src, real, fake = data
    monkeypatch.chdir(tmp_path)
    names = write_images(tmp_path / "imgs", "fake", N_FAKE)
    save_features("fake.npz", fake, names, {"kind": "folder", "root": "imgs", "count": N_FAKE})
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr")
    top = int(np.argsort(-ev.fake_k_occurrence, kind="stable")[0])
    os.remove(tmp_path / "imgs" / names[top])
    proc = call(main, src / "real.npz", "fake.npz", "--gallery", "g", "--gallery_n", 2, "--metrics", "pr")
    assert proc.returncode == 0, proc.stderr
    line = assert_warning_line(proc)
    assert "1 fake image(s) not read" in line and names[top] in line
    with Image.open("g/hubs_fake.png") as sheet:
        sheet = sheet.convert("RGB")
        assert tile_centre(sheet, 0, 2) == (0xD0, 0xD0, 0xD0)
        second = int(np.argsort(-ev.fake_k_occurrence, kind="stable")[1])
        assert tile_centre(sheet, 1, 2) == colour("fake", second)


def assert_warning_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_image_folders_given_directly(tmp_path, monkeypatch):
    """Images as REAL and FAKE: the sheets show them (no feature file in between)."""
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "real", "real", 8)
    write_images(tmp_path / "fake", "fake", 6)
    proc = call(main, "real", "fake", "--backbone", "efficientnet_lite0", "--num_workers", 0, "--metrics", "hubness",
                "--gallery", "g", "--gallery_n", 2, "-q")  # -q: no small-set warning for 8 and 6 images
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    rows = read_index(tmp_path / "g")
    for side in ("real", "fake"):
        got = [r for r in rows if r["sheet"] == f"hubs_{side}"]
        assert len(got) == 2
        with Image.open(f"g/hubs_{side}.png") as sheet:
            sheet = sheet.convert("RGB")
            for rank, row in enumerate(got):
                assert row["path"] == f"sub/{side}_{int(row['index']):03d}.png"
                assert tile_centre(sheet, rank, 2) == colour(side, int(row["index"]))


@pytest.mark.parametrize("args, fragments", [
    (["--gallery", "afile"], ["--gallery afile: is a file, expected a folder"]),
    (["--gallery", "nowhere/g"], ["--gallery nowhere/g: folder nowhere does not exist"]),
    (["--gallery", "g", "--metrics", "dc"], ["--gallery g: needs at least one of the metrics"]),
    (["--gallery", "images/real/out"], ["--gallery images/real/out: is inside", "the images of real.npz"]),
    (["--gallery", "gdir", "--json", "gdir/gallery.csv"], ["--gallery gdir/gallery.csv: is also the output of --json"]),
    (["--gallery", "g", "--gallery_n", "0"], ["argument --gallery_n/--gallery-n: must be in [1, 1000]", "got 0"]),
    (["--gallery", "g", "--gallery_n", "100000"], ["argument --gallery_n/--gallery-n: must be in [1, 1000]",
                                                   "got 100000"]),
])
def test_gallery_errors_leave_nothing(data, tmp_path, monkeypatch, args, fragments):
    src, _, _ = data
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "gdir").mkdir()
    os.symlink(src / "images", tmp_path / "images")
    os.symlink(src / "real.npz", tmp_path / "real.npz")
    before = sorted(os.listdir(tmp_path))
    assert_one_line_error(call(main, "real.npz", src / "fake.npz", *args), *fragments)
    assert sorted(os.listdir(tmp_path)) == before
    assert not os.path.exists(src / "images" / "real" / "out")


def test_failed_run_leaves_no_folder_and_no_log_line(data, tmp_path, monkeypatch):
    """A folder the run made is removed again, one that was there is kept; the log gets no line."""
    src, _, _ = data
    monkeypatch.chdir(tmp_path)
    np.save("dim5.npy", np.zeros((40, 5), np.float32))
    os.mkdir("kept")
    for folder in ("g", "kept"):
        assert_one_line_error(call(main, src / "real.npz", "dim5.npy", "--gallery", folder, "--log", "runs.jsonl"),
                              "different dimensions")
    assert sorted(os.listdir(tmp_path)) == ["dim5.npy", "kept"] and os.listdir("kept") == []
