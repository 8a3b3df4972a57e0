"""--plot: one figure of fixed size whatever was computed; the real set's rarity (own ball left out)
computed only for it, and equal to hubness_pr.real_rarity_scores."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from hubness_pr.reports import writers
import hubness_pr
from hubness_pr.commands import metrics as command
from hubness_pr.reports import results as report
from hubness_pr.commands.metrics import main
from tests.cli_helpers import call


def random_pair(seed: int, n_real: int, n_fake: int, dim: int, scale: float):
    """Real and generated float32 features: standard normal, the generated ones scaled."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_real, dim)).astype(np.float32),
            (rng.standard_normal((n_fake, dim)) * scale).astype(np.float32))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plot")
    real, fake = random_pair(5, 70, 60, 6, 1.3)
    np.save(tmp / "real.npy", real)
    np.save(tmp / "fake.npy", fake)
    return tmp, real, fake


@pytest.fixture()
def spy(monkeypatch):
    """Records every call of real_rarity_scores and what write_plot was given, then draws it."""
    seen = {"real_rarity_calls": 0, "plots": []}
    real_rarity_scores, write_plot = hubness_pr.real_rarity_scores, writers.write_plot

    def counting(**kwargs):
        seen["real_rarity_calls"] += 1
        return real_rarity_scores(**kwargs)

    def recording(handle, evaluation, real_rarity=None, title=""):
        seen["plots"].append((evaluation, real_rarity, title))
        write_plot(handle, evaluation, real_rarity, title)

    monkeypatch.setattr(hubness_pr, "real_rarity_scores", counting)
    monkeypatch.setattr(writers, "write_plot", recording)
    return seen


def test_plot_has_both_rarities_and_fixed_size(files, spy):
    tmp, real, fake = files
    proc = call(main, tmp / "real.npy", tmp / "fake.npy", "--plot", tmp / "all.png", "--json", tmp / "all.json",
                "--k", "4")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp / "all.png") as figure:
        assert figure.format == "PNG" and figure.size == report.PLOT_SIZE
    assert spy["real_rarity_calls"] == 1
    evaluation, real_rarity, title = spy["plots"][0]
    want = hubness_pr.real_rarity_scores(real=real, k=4).scores
    np.testing.assert_array_equal(real_rarity, want)
    assert real_rarity.shape == (70,)
    assert evaluation.real_k_occurrence.shape == (70,) and evaluation.fake_k_occurrence.shape == (60,)
    assert evaluation.real_k_occurrence.sum() == 70 * 4 and evaluation.fake_k_occurrence.sum() == 60 * 4
    assert title == "fake.npy (60 generated) vs real.npy (70 real), k=4"
    timings = json.loads((tmp / "all.json").read_text())["timings"]
    assert timings["real_rarity"] > 0 and "load" in timings


def test_real_rarity_only_for_the_plot(files, spy):
    tmp, _, _ = files
    assert call(main, tmp / "real.npy", tmp / "fake.npy", "--json", tmp / "n.json").returncode == 0
    assert call(main, tmp / "real.npy", tmp / "fake.npy", "--plot", tmp / "pr.png", "--metrics", "pr,dc").returncode == 0
    assert spy["real_rarity_calls"] == 0
    assert "real_rarity" not in json.loads((tmp / "n.json").read_text())["timings"]
    with Image.open(tmp / "pr.png") as figure:
        assert figure.size == report.PLOT_SIZE
    assert spy["plots"][0][1] is None


@pytest.mark.parametrize("metrics", ["dc", "realism", "epr", "hubness"])
def test_every_metric_set_gives_the_figure(files, metrics):
    tmp, _, _ = files
    out = tmp / f"{metrics}.png"
    proc = call(main, tmp / "real.npy", tmp / "fake.npy", "--plot", out, "--metrics", metrics)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as figure:
        assert figure.size == report.PLOT_SIZE


def figure_texts(monkeypatch, evaluation, real_rarity=None) -> list:
    """Every title and text of the figure's panels, read from its axes as it is saved."""
    texts = []
    plt = report._pyplot()
    real_savefig = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])
        texts.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", capture)
    with open(os.devnull, "wb") as handle:
        report.write_plot(handle, evaluation, real_rarity)
    return texts


def test_panels_name_what_was_not_computed(files, monkeypatch):
    tmp, real, fake = files
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="dc")
    texts = figure_texts(monkeypatch, ev)
    assert "rarity not computed (--metrics)" in texts and "realism not computed (--metrics)" in texts
    assert "k-occurrence not computed (--metrics)" in texts
    assert f"{ev.dc.density:.3f}" in texts and f"{ev.dc.coverage:.3f}" in texts


def test_panels_of_a_full_run(files, monkeypatch):
    """eP&R beside exact P&R, both rarity histograms with their counts, both k-occurrences."""
    tmp, real, fake = files
    ev = hubness_pr.evaluate(real=real, fake=fake)
    real_rarity = hubness_pr.real_rarity_scores(real=real).scores
    texts = figure_texts(monkeypatch, ev, real_rarity)
    for value in (ev.epr.precision, ev.pr.precision, ev.epr.recall, ev.pr.recall, ev.dc.density, ev.dc.coverage):
        assert f"{value:.3f}" in texts
    assert {"eP&R", "exact P&R"} <= set(texts)
    inside_real, inside_fake = int((~np.isnan(real_rarity)).sum()), int((~np.isnan(ev.rarity.scores)).sum())
    assert f"real, own ball left out: {inside_real} of 70 inside" in texts
    assert f"generated: {inside_fake} of 60 inside" in texts
    assert f"real (max {ev.real_k_occurrence.max()})" in texts
    assert f"generated (max {ev.fake_k_occurrence.max()})" in texts
