"""bench.epr_study at toy size (digits, N=80, efficientnet_lite0 on the CPU): extraction, the
metrics and the report, so that the study cannot break unnoticed between the runs that need a GPU."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """The toy extraction and run, once for the whole test session (every xdist worker shares the
    first one's outputs, under a file lock): (module, features folder, report folder, JSON)."""
    from filelock import FileLock  # a dependency of torch
    from bench import epr_study as module
    base = tmp_path_factory.getbasetemp()  # under xdist: .../pytest-N/popen-gwK, its parent this session's
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    tmp = shared / "epr_study"
    feats, docs, numbers = tmp / "features", tmp / "docs", tmp / "numbers.json"
    with FileLock(str(shared / "epr_study.lock")):
        if not (tmp / "done").is_file():
            assert module.main(["extract", "--toy", "--out", str(feats), "--device", "cpu"]) == 0
            assert module.main(["run", "--toy", "--features", str(feats), "--out", str(docs), "--json",
                                str(numbers), "--device", "cpu"]) == 0
            (tmp / "done").write_text("ok")
    return module, feats, docs, json.loads(numbers.read_text())


def test_extract_writes_every_set_in_image_order(study):
    module, feats, _, _ = study
    manifest = json.loads((feats / "manifest.json").read_text())
    digits = manifest["datasets"]["digits"]
    assert set(digits["sets"]) == set(module.SETS) - set(module.TOY_SKIP)
    assert digits["real"]["size"] == 80 and digits["features"]["efficientnet_lite0"]["dim"] == 1280
    real_items = np.load(feats / "digits_real_items.npy")
    real = np.load(feats / "digits_efficientnet_lite0_real.npy")
    assert real.dtype == np.float32 and real.shape == (80, 1280)
    for name, info in digits["sets"].items():
        x = np.load(feats / f"digits_efficientnet_lite0_{name}.npy")
        labels = np.load(feats / f"digits_{name}_labels.npy")
        items = np.load(feats / f"digits_{name}_items.npy")
        assert x.shape == (info["size"], 1280) and labels.shape == items.shape == (info["size"],)
        if name not in ("memorised", "mix_matched_memorised"):
            assert not np.isin(items, real_items).any(), f"{name} holds real-set images"
    # rows of one image share its features: memorised rows are the real rows of the same images
    memorised = np.load(feats / "digits_efficientnet_lite0_memorised.npy")
    where = {item: row for row, item in enumerate(real_items)}
    rows = [where[i] for i in np.load(feats / "digits_memorised_items.npy")]
    np.testing.assert_array_equal(memorised, real[rows])
    # drop3 has 7 classes, overrep one class at 25 %
    assert len(np.unique(np.load(feats / "digits_drop3_labels.npy"))) == 7
    counts = np.bincount(np.load(feats / "digits_overrep_labels.npy"), minlength=10)
    assert abs(counts.max() - 0.25 * counts.sum()) <= 1


def test_numbers_are_in_range_and_consistent(study):
    _, _, _, numbers = study
    cases = numbers["cases"]
    sets = {c["set"] for c in cases}
    assert len(cases) == len(sets) * 2 and {c["t"] for c in cases} == {2, 3} and {c["n"] for c in cases} == {80}
    for c in cases:
        for key in ("p", "r", "ep", "er"):
            assert 0.0 <= c[key] <= 1.0, (c["set"], key)
        assert math.isclose(c["ep_minus_p"], c["ep"] - c["p"], abs_tol=1e-12)
        assert math.isclose(c["er_minus_r"], c["er"] - c["r"], abs_tol=1e-12)
        assert 0.0 < c["real_hub_fraction"] <= 1.0 and 0.0 < c["fake_hub_fraction"] <= 1.0
        assert c["real_hubs"] == round(c["real_hub_fraction"] * c["n"])
    # a larger threshold never selects more hubs
    for s in sets:
        by_t = {c["t"]: c for c in cases if c["set"] == s}
        assert by_t[3]["real_hubs"] <= by_t[2]["real_hubs"] and by_t[3]["fake_hubs"] <= by_t[2]["fake_hubs"]
    assert numbers["checks"] and all(c["ok"] for c in numbers["checks"])


def test_exact_metrics_see_the_defects(study):
    _, _, _, numbers = study
    at = {c["set"]: c for c in numbers["cases"] if c["t"] == 3}
    assert at["matched"]["p"] > at["noise_strong"]["p"] and at["matched"]["r"] > at["noise_strong"]["r"]
    assert at["memorised"]["p"] == 1.0  # exact copies of real images lie in their own balls
    assert at["drop3"]["r"] < at["matched"]["r"]  # three classes of the real set are not covered


def test_report_has_its_tables_and_figures(study):
    _, _, docs, numbers = study
    report = (docs / "epr_study_toy.md").read_text()
    for heading in ("## Findings (measured here)", "## The sets", "## Which (k, t) keep", "### digits, efficientnet_lite0",
                    "## Where eP&R misleads", "### Ranking of the sets", "## Time: exact P&R vs eP&R",
                    "## Approximate hub selection (hnsw)", "## Machine and settings"):
        assert heading in report
    assert "| matched |" in report and "| noise_strong |" in report
    for figure in ("epr_study_toy_scatter.png", "epr_study_toy_diff_vs_t.png"):
        assert f"]({figure})" in report
        assert (docs / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every table row has as many cells as its header (a '|' inside a cell is escaped)
    lines = report.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            width = len(lines[i - 1].replace("\\|", "").split("|"))
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert len(lines[j].replace("\\|", "").split("|")) == width, lines[j]
                j += 1
    assert numbers["timing"] and numbers["timing"][0]["pr_seconds"] > 0
    hnsw = [c["hnsw"] for c in numbers["cases"] if "hnsw" in c]
    assert hnsw and all("ep" in h and 0.0 <= h["ep"] <= 1.0 and 0.0 <= h["er"] <= 1.0 for h in hnsw), hnsw[:3]


def test_weighted_variant_is_a_hub_average(study):
    """wP, wR (hubs weighted by 1/k-occurrence) lie in [0, 1]; where every hub agrees they equal eP, eR."""
    _, _, _, numbers = study
    weighted = [c for c in numbers["cases"] if "wep" in c]
    assert weighted, "evaluate exposes per-hub decisions: the weighted variant must be computed"
    for c in weighted:
        assert 0.0 <= c["wep"] <= 1.0 and 0.0 <= c["wer"] <= 1.0
        assert math.isclose(c["wep_minus_p"], c["wep"] - c["p"], abs_tol=1e-12)
        if c["ep"] in (0.0, 1.0):
            assert c["wep"] == c["ep"]
        if c["er"] in (0.0, 1.0):
            assert c["wer"] == c["er"]


def test_report_regenerates_with_a_supplement_run(study, tmp_path):
    """`report` rebuilds the report from the JSON alone; a --supplement run gets its own section,
    whose agreement with the main run is measured on the cases both computed (0 for the same numbers,
    the shift where one value was moved), and one finding line."""
    module, _, docs, numbers = study
    main_json = tmp_path / "main.json"
    main_json.write_text(json.dumps(numbers))
    assert module.main(["report", "--json", str(main_json), "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "epr_study_toy.md").read_text() == (docs / "epr_study_toy.md").read_text().replace(
        "Raw numbers: `numbers.json`", "Raw numbers: `main.json`")
    shifted = json.loads(json.dumps(numbers))
    moved = shifted["cases"][0]
    moved["p"] += 0.0125
    supplement = tmp_path / "more.json"
    supplement.write_text(json.dumps(shifted))
    assert module.main(["report", "--json", str(main_json), "--out", str(tmp_path / "with"),
                        "--supplement", str(supplement)]) == 0
    report = (tmp_path / "with" / "epr_study_toy.md").read_text()
    assert "## Approximate hub selection at larger N (separate run: `more.json`)" in report
    assert f"On the {len(numbers['cases'])} cases both runs computed, its exact values differ from the main run's by at " \
           "most 0.0125 (P), 0.0000 (R), 0.0000 (eP), 0.0000 (eR)" in report
    hnsw = [c for c in numbers["cases"] if c.get("hnsw") and "ep" in c["hnsw"]]
    assert hnsw, "the toy run computes approximate selection"
    moved_by = max(abs(c["hnsw"][key]) for c in hnsw for key in ("ep_minus_exact_selection", "er_minus_exact_selection"))
    assert f"(separate run) moved eP or eR by at most {moved_by:.3f} from exact hub selection over {len(hnsw)} cases" \
        in report
    # the supplement's table sits between the main hnsw section and the timing section
    assert report.index("## Approximate hub selection (hnsw)") < report.index("## Approximate hub selection at larger N") \
        < report.index("## Time: exact P&R vs eP&R")


def test_pixel_features_pool_and_project_the_grey_images(study):
    module = study[0]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, module.SIDE, module.SIDE), dtype=np.uint8)
    pooled, meta = module.pixel_features(images, "pixels_pool2")
    x = images.astype(np.float64) / 255
    want = (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4
    np.testing.assert_allclose(pooled, want.reshape(5, -1), rtol=1e-6)
    assert meta["backbone"] == "pixels_pool2"
    projected, meta = module.pixel_features(images, "pixels_proj")
    again, _ = module.pixel_features(images, "pixels_proj")
    assert projected.shape == (5, 256) and np.array_equal(projected, again)  # seeded: the same projection
    # distances roughly kept (Johnson-Lindenstrauss, 256-d): within 35 % for these pairs
    flat = x.reshape(5, -1)
    ratio = np.linalg.norm(projected[0] - projected[1:], axis=1) / np.linalg.norm(flat[0] - flat[1:], axis=1)
    assert np.all(np.abs(ratio - 1) < 0.35), ratio
