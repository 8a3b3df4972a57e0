"""--report run.html and compare --report runs.html: one self-contained HTML page.

Its structure (sections, images embedded as data: URIs that decode, no script, no address outside
the page, standard errors and expected values where the JSON has them), and its rendering in a real
browser: headless Chromium (Debian's ``chromium``; .ci/run installs it) takes a screenshot, which
must not be blank, dumps the DOM, which must hold every section, and logs the page's console, which
must be empty (the page has no script, and its Content-Security-Policy makes the browser refuse,
and report on the console, anything it would load from elsewhere). Without Chromium the browser
tests are skipped, saying so.
"""
import base64
from html.parser import HTMLParser
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hubness_pr.commands.metrics import main
from hubness_pr.reports import gallery, html
from hubness_pr.reports.results import PLOT_SIZE
from tests.cli_helpers import assert_one_line_error, call
from tests.test_gallery import N_FAKE, N_REAL, save_features, write_images
from tests.test_reports import random_pair

RUN_SECTIONS = ["metrics", "uncovered", "figures", "gallery", "numbers", "provenance"]
COMPARE_SECTIONS = ["metrics", "charts", "runs"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class Page(HTMLParser):
    """What the tests read of a page: section ids, images, scripts, every attribute, the text."""

    def __init__(self, text: str):
        super().__init__()
        self.sections, self.images, self.scripts, self.attributes, self.text = [], [], 0, [], []
        self.csp = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.attributes += [(tag, name, value or "") for name, value in attrs.items()]
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "script":
            self.scripts += 1
        elif tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            self.csp = attrs.get("content")

    def handle_data(self, data):
        self.text.append(data)

    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def decode(uri: str) -> Image.Image:
    match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:60]
    image = Image.open(io.BytesIO(base64.b64decode(match.group(2), validate=True)))
    assert image.format == match.group(1).upper()
    return image


def assert_self_contained(text: str, page: Page) -> None:
    """No script, nothing loaded from elsewhere: every image a data: URI, every link an anchor of
    the page, no url() or @import in the style, and the CSP that allows nothing else."""
    assert page.scripts == 0 and "<script" not in text.lower()
    assert page.csp == html.CSP
    for tag, name, value in page.attributes:
        if name in ("src", "href", "action", "poster", "srcset", "data"):
            assert value.startswith("data:image/" if name == "src" else "#"), (tag, name, value[:80])
        assert not name.startswith("on"), (tag, name)
    style = text[text.index("<style>"): text.index("</style>")]
    assert "url(" not in style and "@import" not in style
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", text)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of image-backed feature files (the second with other k), their JSON, and the
    comparison, each with --report."""
    tmp = tmp_path_factory.mktemp("report")
    real, fake = random_pair(3, N_REAL, N_FAKE, 4, 1.4)
    names = write_images(tmp / "images" / "real", "real", N_REAL)
    save_features(tmp / "real.npz", real, names, {"kind": "folder", "root": str(tmp / "images" / "real")})
    fake_names = write_images(tmp / "images" / "fake", "fake", N_FAKE)
    save_features(tmp / "fake.npz", fake, fake_names, {"kind": "folder", "root": str(tmp / "images" / "fake")})
    log = tmp / "runs.jsonl"
    first = call(main, tmp / "real.npz", tmp / "fake.npz", "--report", tmp / "run.html", "--json", tmp / "run.json",
                 "--log", log, "--metrics", "epr,pr,dc,realism,rarity,hubness,fd,kid")
    assert first.returncode == 0, first.stderr
    second = call(main, tmp / "real.npz", tmp / "fake.npz", "--k", 5, "--log", log)
    assert second.returncode == 0, second.stderr
    compared = call(main, "compare", log, "--report", tmp / "runs.html")
    assert compared.returncode == 0, compared.stderr
    return tmp


def test_run_report_sections_images_and_provenance(runs):
    text = (runs / "run.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == RUN_SECTIONS
    assert_self_contained(text, page)
    document = json.loads((runs / "run.json").read_text())
    words = page.words()
    for name in ("pr.precision", "dc.coverage", "fd.value"):
        block, field = name.split(".")
        se = document[block].get(f"{field}_se")  # the means have one, FD none
        row = f"{name} {html.number(document[block][field])}" + (f" ± {html.number(se)}" if se is not None else "")
        assert row in words, (name, row)
        assert html.DIRECTION_TEXT[html.DIRECTION[name]] in words
    assert document["pr"]["precision_se"] > 0 and "± standard error" in words
    assert "expected" in [c.strip() for c in page.text]  # --json computes the expected values: their column
    images = [decode(uri) for uri in page.images]
    assert images[1].size == PLOT_SIZE  # the --plot figure after the uncovered real images
    sheets = gallery.planned_sheets(document["params"]["metrics"])
    assert len(images) == 1 + len(sheets)
    assert {image.size for image in images[:1] + images[2:]} == {gallery.sheet_size(16)}
    # the sheet of the real images no generated image covers, with the count the recall gives
    uncovered = round((1 - document["pr"]["recall"]) * document["n_real"])
    assert f"{uncovered} of {N_REAL} uncovered" in words
    record = json.loads((runs / "runs.jsonl").read_text().splitlines()[0])
    for side in ("real", "fake"):  # provenance: the digests of the features evaluated, the backbone
        assert record["inputs"][side]["sha256"] in words
    assert "backbone test" in words and document["versions"]["toolkit"] in words
    assert os.path.getsize(runs / "run.html") < 1_500_000


def test_standard_errors_expected_values_and_splits_are_shown_where_present(runs, monkeypatch):
    """The other metric modules' fields, as they will come: ``<name>_se``, an ``expected`` object,
    a top-level ``splits`` object; here written into a run's payload."""
    from hubness_pr.reports import writers

    seen = {}
    real_payload = writers.RunReport.payload

    def payload(self):
        out = real_payload(self)
        out["pr"].update(precision_se=0.0123, recall_se=0.0234, expected={"precision": 0.7777, "recall": 0.8888})
        out["dc"]["coverage_se"] = 0.0345
        out["splits"] = {"count": 10, "pr": {"precision": [0.7, 0.71]}}
        seen.update(out)
        return out

    monkeypatch.setattr(writers.RunReport, "payload", payload)
    result = call(main, runs / "real.npz", runs / "fake.npz", "--report", runs / "se.html", "--metrics", "pr,dc")
    assert result.returncode == 0, result.stderr
    page = Page((runs / "se.html").read_text(encoding="utf-8"))
    words = page.words()
    assert "± standard error" in words and "expected" in words
    assert (f"pr.precision {html.number(seen['pr']['precision'])} ± 0.0123 0.7777 ↑ higher" in words)
    assert f"pr.recall {html.number(seen['pr']['recall'])} ± 0.0234 0.8888" in words
    assert f"dc.coverage {html.number(seen['dc']['coverage'])} ± 0.0345 ↑ higher" in words
    assert "precision_se" not in words  # read into precision's row, not a row of its own
    assert "splits" in words and "count 10" in words
    rows = html.metric_rows(seen, ["pr", "dc"])
    assert ("pr.precision", seen["pr"]["precision"], 0.0123, 0.7777) in rows


def test_compare_report_table_bars_and_error_bars(runs, tmp_path):
    text = (runs / "runs.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == COMPARE_SECTIONS
    assert_self_contained(text, page)
    words = page.words()
    assert "pr.precision ↑" in words and "fd.value ↓" in words and "Better: ↑ higher, ↓ lower" in words
    assert "Error bars: ± one standard error" in words  # the runs' logged standard errors
    assert len(page.images) == 1 and decode(page.images[0]).size[0] > 0
    # runs whose metric blocks carry standard errors: shown in the table and drawn as error bars
    lines = (runs / "runs.jsonl").read_text().splitlines()
    with_se = []
    for number, line in enumerate(lines):
        record = json.loads(line)
        record["metrics"]["pr"]["precision_se"] = 0.01 * (number + 1)
        with_se.append(json.dumps(record))
    log = tmp_path / "se.jsonl"
    log.write_text("\n".join(with_se) + "\n")
    result = call(main, "compare", log, "--report", tmp_path / "se.html", "--columns", "pr.precision,pr.recall")
    assert result.returncode == 0, result.stderr
    words = Page((tmp_path / "se.html").read_text(encoding="utf-8")).words()
    assert "± 0.0100" in words and "± 0.0200" in words and "Error bars: ± one standard error" in words


def test_report_without_image_paths_and_bounded_in_size(tmp_path):
    """Plain arrays (no image paths): the sheets keep grey tiles with index and score, and the page
    says why. The page shows aggregates: ten times the samples, about the same size."""
    sizes = []
    for n in (150, 1500):
        real, fake = random_pair(4, n, n, 6, 1.2)
        np.save(tmp_path / "real.npy", real)
        np.save(tmp_path / "fake.npy", fake)
        result = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--report", tmp_path / f"{n}.html",
                      "--gallery_n", 8)
        assert result.returncode == 0, result.stderr
        text = (tmp_path / f"{n}.html").read_text(encoding="utf-8")
        assert f"no fake images ({tmp_path / 'fake.npy'} has no image paths)" in Page(text).words()
        sizes.append(len(text))
    assert sizes[1] < 1.5 * sizes[0], sizes


def test_report_option_checked_before_any_work(tmp_path):
    real, fake = random_pair(4, 120, 120, 6, 1.2)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    result = call(main, tmp_path / "real.npy", tmp_path / "fake.npy", "--report", tmp_path / "no" / "r.html",
                  "--json", tmp_path / "r.json")
    assert_one_line_error(result, "--report")
    assert sorted(os.listdir(tmp_path)) == ["fake.npy", "real.npy"]  # nothing written, no temporary file left


def test_image_encoding_picks_the_smaller_of_png_and_jpeg():
    rng = np.random.default_rng(0)
    drawing = Image.new("RGB", (300, 200), "white")
    photo = Image.fromarray((rng.standard_normal((200, 300, 3)) * 20 + 128).clip(0, 255).astype(np.uint8))
    photo = photo.resize((300, 200))
    assert html.image_uri(drawing).startswith("data:image/png;base64,")
    assert html.image_uri(photo).startswith("data:image/jpeg;base64,")


# ------------------------------------------------------------------------------ in a real browser

def browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip("chromium not installed (apt-get install chromium): the report is not rendered in a browser")
    return found


def render(page, tmp_path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium on a file, its console logged to stderr (one ``CONSOLE`` line a message).
    Other hosts resolve to nothing: a page that reached out would fail to load, and say so."""
    return subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=timeout)


def console(stderr: str) -> list[str]:
    """The page's console messages in Chromium's log (errors, warnings and logs alike: the report
    has no script, so any message is a fault, as a CSP refusal or an uncaught error)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_console_check_sees_errors(tmp_path):
    """The check below is not vacuous: a page with a script error and an image from elsewhere,
    under the report's CSP, shows both on the console."""
    bad = tmp_path / "bad.html"
    bad.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{html.CSP}">'
                   '</head><body><img src="http://example.invalid/x.png"><p>text</p></body></html>')
    messages = console(render(bad, tmp_path, "--dump-dom").stderr)
    assert any("example.invalid" in line for line in messages), messages
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    messages = console(render(bad, tmp_path, "--dump-dom").stderr)
    assert any("Uncaught" in line for line in messages), messages


@pytest.mark.parametrize("name, sections", [("run.html", RUN_SECTIONS), ("runs.html", COMPARE_SECTIONS)])
def test_report_renders_in_a_browser(runs, tmp_path, name, sections):
    shot = tmp_path / "shot.png"
    proc = render(runs / name, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert console(proc.stderr) == []
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20  # not blank: text, tables, figures
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 50
    dom = render(runs / name, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console(dom.stderr) == []
    page = Page(dom.stdout)
    assert page.sections == sections
    assert all(decode(uri) for uri in page.images)
