"""demo.py, the README's first command, end to end on fewer digits (--limit): every output is written,
and the table shows the defects the demo is about (collapse lowers recall and coverage, noise lowers
precision and density)."""
import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_writes_every_output_and_shows_the_defects(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("demo", ROOT / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = tmp_path / "demo_out"
    assert demo.main(["--out", str(out), "--limit", "240"]) == 0
    printed = capsys.readouterr().out
    assert "== which metric catches which defect" in printed
    for name in ("real", *demo.FAKES):
        assert (out / f"{name}.npz").is_file()
    for name in demo.FAKES:
        for suffix in (".json", ".csv", ".png", ".html"):
            assert (out / f"{name}{suffix}").is_file()
        assert (out / "gallery" / name / "gallery.csv").is_file()
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(demo.FAKES)
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["fake"]).name for r in rows] == [f"{name}.npz" for name in demo.FAKES]
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '<section id="charts">' in (out / "summary.html").read_text(encoding="utf-8")
    # the collapsed generator's page shows the real digits it misses
    assert "uncovered (recall" in (out / "fake_collapsed.html").read_text(encoding="utf-8")
    result = {name: json.loads((out / f"{name}.json").read_text()) for name in demo.FAKES}
    held, collapsed, noised, memorised = (result[name] for name in demo.FAKES)
    assert held["n_real"] == 240 and held["n_fake"] == 240
    assert collapsed["pr"]["recall"] < held["pr"]["recall"] - 0.02  # 0.05 measured at 240 (0.19 at 900)
    assert collapsed["dc"]["coverage"] < held["dc"]["coverage"] - 0.1
    assert noised["pr"]["precision"] < held["pr"]["precision"] - 0.3
    assert noised["dc"]["density"] < held["dc"]["density"] - 0.3
    # FD and KID beside P&R, in the table too: both rank the perfect generator best
    for name in ("fd", "kid"):
        assert held[name]["value"] < collapsed[name]["value"] and held[name]["value"] < noised[name]["value"]
    assert {"fd.value", "kid.value"} <= set(rows[0])
    # memorised (the real digits re-encoded with slight noise): P&R as good as held-out digits, AuthPct
    # and the d1/d2 copy fraction catch it, and its closest pairs are drawn
    assert memorised["pr"]["precision"] > held["pr"]["precision"] - 0.05
    assert memorised["pr"]["recall"] > held["pr"]["recall"] - 0.05
    assert memorised["auth"]["authpct"] < 10 < 50 < held["auth"]["authpct"]
    assert memorised["auth"]["copy_fraction"] > 0.6 > 0.05 > held["auth"]["copy_fraction"]
    assert (out / "gallery" / "fake_memorised" / "closest_pairs.png").is_file()
    assert {"auth.authpct", "auth.copy_fraction"} <= set(rows[0])
