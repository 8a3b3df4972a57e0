"""One self-contained HTML page of a run (``--report run.html``) or of a run log (``compare --report
runs.html``): offline, one file, readable with scripts disabled.

The page is formed from what the other outputs are formed from: the run's JSON document
(:meth:`hubness_pr.reports.writers.RunReport.payload`), the ``--plot`` figure
(:func:`hubness_pr.reports.results.write_plot`) and the contact sheets of ``--gallery``
(:class:`hubness_pr.reports.gallery.Drawn`), and for ``compare`` the comparison table
(:func:`hubness_pr.reports.runlog.comparison`) and its bar charts
(:func:`hubness_pr.reports.results.write_compare_plot`). Images are embedded as ``data:`` URIs,
each PNG or JPEG, whichever is smaller (JPEG only where it saves a quarter: text stays sharp); the
style sheet is inline; there is no script and no address of anything outside the page. It shows
aggregates and at most :data:`MAX_SHEET_N` images a sheet, never every sample, so it stays small
(0.3-1 MB: 0.35 MB for the demo's runs) at any set size.

Standard errors and expected values are shown where a metric block has them: ``<name>_se`` beside
``<name>`` and an ``expected`` object of the same names (``"pr": {"precision": 0.7,
"precision_se": 0.01, "expected": {"precision": 0.74}}``); a top-level ``splits`` object is shown as
a table. Which way is better is :data:`DIRECTION`'s.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
import shlex

from hubness_pr.metrics.registry import REGISTRY
from hubness_pr.reports import gallery
from hubness_pr.reports.cells import format_cell
from hubness_pr.reports.results import json_safe, write_compare_plot, write_plot
from hubness_pr.reports.runlog import lookup, utc_now

HIGHER, LOWER, EXPECTED = "higher", "lower", "expected"
# which way each headline number is better (dotted names as the metric command prints them); EXPECTED:
# nearest the value two samples of one distribution give (the "expected" column where the run has one)
DIRECTION = {
    "epr.precision": HIGHER, "epr.recall": HIGHER, "pr.precision": HIGHER, "pr.recall": HIGHER,
    "dc.density": EXPECTED, "dc.coverage": HIGHER, "prcover.precision": HIGHER, "prcover.recall": HIGHER,
    "ppr.precision": HIGHER, "ppr.recall": HIGHER, "cdc.density": HIGHER, "cdc.coverage": HIGHER,
    "realism.mean": EXPECTED, "hubness.fake.skewness": EXPECTED,
    "fd.value": LOWER, "fd.infinity": LOWER, "kid.value": LOWER, "cmmd.value": LOWER, "cmmd.unbiased": LOWER,
    "auth.authpct": EXPECTED, "auth.copy_fraction": LOWER, "ct.value": EXPECTED,
    "protocol.precision": HIGHER, "protocol.recall": HIGHER, "protocol.density": EXPECTED,
    "protocol.coverage": HIGHER, "protocol.f_score": HIGHER,
}
DIRECTION_TEXT = {HIGHER: "\u2191 higher", LOWER: "\u2193 lower",
                  EXPECTED: "\u2248 nearest expected"}
DIRECTION_NOTE = {"dc.density": "1 for two samples of one distribution",
                  "realism.mean": "the real set's own (about 1 inside the real manifold)",
                  "hubness.fake.skewness": "the real set's skewness (hubness.real.skewness)",
                  "auth.authpct": "held-out real data's own, not 100 (66 % for the demo's digits)",
                  "ct.value": "0 for held-out real data; below about -3: data copying"}
SUMMARY = ("epr.precision", "epr.recall", "pr.precision", "pr.recall", "dc.density", "dc.coverage",
           "fd.value", "kid.value", "cmmd.value")  # the cards at the top, those the run has
MAX_SHEET_N = 64       # images a sheet of the page at most (the sheets of --gallery_n, capped)
JPEG_QUALITY = 85
JPEG_GAIN = 0.75       # JPEG only where it is below this fraction of the PNG's bytes
SE_SUFFIX = "_se"
# what the page may load, said to the browser: inline style and data: images, nothing else (no script,
# no address outside the page; a browser that met one would refuse it and say so on its console)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;
background:#f4f5f7;margin:0}
main{max-width:1180px;margin:0 auto;padding:18px 22px 40px}
header{background:#1f3a5f;color:#fff;padding:18px 22px}
header .inner{max-width:1180px;margin:0 auto}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header p{margin:0;color:#c9d6e8}
nav{margin-top:10px}
nav a{color:#fff;margin-right:14px;text-decoration:none;border-bottom:1px dotted #9fb5d3}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:14px 18px;margin:16px 0}
h2{font-size:18px;margin:2px 0 10px;color:#1f3a5f}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{padding:4px 8px;border-bottom:1px solid #e6e8ec;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.wide{overflow-x:auto}
.wide th,.wide td{white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:4px 18px}
.block h3{margin:10px 0 2px;font-size:14px}
.block table{margin:0}
.block td{padding:1px 6px;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #dde1e7;border-radius:6px;padding:8px 12px;min-width:128px;background:#fafbfc}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .n{color:#556;font-size:12px}
.dir{white-space:nowrap;color:#335}
.note{color:#556;font-size:13px}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
img{max-width:100%;height:auto;border:1px solid #e6e8ec}
details summary{cursor:pointer;color:#1f3a5f}
pre{background:#f7f8fa;padding:8px;overflow:auto;font-size:12px;max-height:420px}
footer{color:#667;font-size:12px;text-align:center;margin-top:20px}
"""


# ------------------------------------------------------------------------------------- small parts

def _e(text) -> str:
    return html.escape(str(text), quote=True)


def number(value) -> str:
    """A value as it reads in a cell of the page: floats with 4 decimals, or 3 significant digits in
    exponent form where they are below 0.01 or at least 10,000; None and NaN as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        value = float(value)
        if math.isinf(value) or value == 0 or 0.01 <= abs(value) < 1e4:
            return format_cell(value, digits=4)
        return f"{value:.3e}"
    return format_cell(value)


def image_uri(image) -> str:
    """A PIL image as a ``data:`` URI: PNG, or JPEG where that is below :data:`JPEG_GAIN` of the PNG's
    bytes (photographs; drawings, digits and captions stay PNG)."""
    png = io.BytesIO()
    image.save(png, format="PNG")
    data, kind = png.getvalue(), "png"
    jpeg = io.BytesIO()
    image.convert("RGB").save(jpeg, format="JPEG", quality=JPEG_QUALITY)
    if len(jpeg.getvalue()) < JPEG_GAIN * len(data):
        data, kind = jpeg.getvalue(), "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(draw) -> str:
    """The PNG that ``draw(handle)`` writes to a binary file object, as a ``data:`` URI."""
    buffer = io.BytesIO()
    draw(buffer)
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _plus_minus(se) -> str:
    return "" if se is None else "\u00b1 " + _e(number(se))


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _table(header: list, rows: list, numeric: set = frozenset()) -> str:
    """An HTML table; cells already HTML (strings) in columns ``numeric`` are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(mapping: dict) -> str:
    """A two-column table of a flat or nested mapping (nested keys dotted)."""
    rows = []

    def walk(prefix, value):
        if isinstance(value, dict) and value:
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            shown = json.dumps(value) if isinstance(value, (list, dict)) else number(value)
            rows.append([f"<code>{_e(prefix)}</code>", _e(shown)])
    walk("", mapping)
    return _table(["name", "value"], rows) if rows else '<p class="note">none</p>'


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{_e(title)}</h2>{body}</section>'


def _page(title: str, subtitle: str, sections: list, footer: str) -> str:
    nav = "".join(f'<a href="#{ident}">{_e(name)}</a>' for ident, name, _ in sections)
    body = "".join(_section(ident, name, content) for ident, name, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><div class=\"inner\"><h1>{_e(title)}</h1><p>{_e(subtitle)}</p><nav>{nav}</nav></div></header>"
            f"<main>{body}<footer>{_e(footer)}</footer></main></body></html>\n")


def _direction(name: str) -> str:
    way = DIRECTION.get(name)
    if way is None:
        return ""
    note = DIRECTION_NOTE.get(name)
    return f'<span class="dir">{DIRECTION_TEXT[way]}</span>' + (f'<br><span class="note">{_e(note)}</span>'
                                                                  if note else "")


# ------------------------------------------------------------------------------------ metric rows

def metric_rows(payload: dict, blocks) -> list[tuple]:
    """(dotted name, value, standard error, expected value) of every number of the metric ``blocks``
    of a JSON document, in their order; ``<name>_se`` and ``expected`` entries are read into the
    row of ``<name>`` (None where absent), not listed on their own."""
    rows = []

    def walk(prefix: str, block: dict):
        expected = block.get("expected") if isinstance(block.get("expected"), dict) else {}
        for key, value in block.items():
            if key == "expected" or (key.endswith(SE_SUFFIX) and key[: -len(SE_SUFFIX)] in block):
                continue
            name = f"{prefix}.{key}"
            if isinstance(value, dict):
                walk(name, value)
            else:
                rows.append((name, value, block.get(key + SE_SUFFIX), expected.get(key)))

    for block in blocks:
        if isinstance(payload.get(block), dict):
            walk(block, payload[block])
    return rows


def _metrics_table(payload: dict, blocks, docs: dict) -> str:
    """The headline numbers (those of :data:`DIRECTION`, and any with a standard error or expected
    value) in one table."""
    rows = metric_rows(payload, blocks)
    headline = [row for row in rows if row[0] in DIRECTION or row[2] is not None or row[3] is not None]
    has_se = any(se is not None for _, _, se, _ in rows)
    has_expected = any(exp is not None for _, _, _, exp in rows)
    header = ["metric", "value"] + (["\u00b1 standard error"] if has_se else []) + (
        ["expected"] if has_expected else []) + ["better"]
    body = []
    for name, value, se, exp in headline:
        cells = [f"<code>{_e(name)}</code>", _e(number(value))] + ([_plus_minus(se)] if has_se else []) + (
            ["" if exp is None else _e(number(exp))] if has_expected else []) + [_direction(name)]
        body.append(cells)
    return _table(header, body, set(range(1, len(header) - 1))) if body else ""


def _every_number(payload: dict, blocks, docs: dict) -> str:
    """Every number of each metric block, a small table a block, in a grid."""
    rows = metric_rows(payload, blocks)
    grid = []
    for block in blocks:
        mine = [row for row in rows if row[0].split(".")[0] == block]
        if mine:
            doc = f' <span class="note">{_e(docs[block])}</span>' if docs.get(block) else ""
            grid.append(f'<div class="block"><h3>{_e(block)}{doc}</h3>' + _table(
                ["name", "value"], [[f"<code>{_e(name[len(block) + 1:])}</code>",
                                     _e(number(value)) + (f" {_plus_minus(se)}" if se is not None else "")]
                                    for name, value, se, _ in mine], {1}) + "</div>")
    return f'<div class="grid">{"".join(grid)}</div>'


def _cards(payload: dict, blocks) -> str:
    found = {name: (value, se) for name, value, se, _ in metric_rows(payload, blocks)}
    cards = []
    for name in SUMMARY:
        if name in found:
            value, se = found[name]
            error = f"{_plus_minus(se)} &middot; " if se is not None else ""
            cards.append(f'<div class="card"><div class="n"><code>{_e(name)}</code></div>'
                         f'<div class="v">{_e(number(value))}</div><div class="n">'
                         f'{error}{DIRECTION_TEXT[DIRECTION[name]]} is better</div></div>')
    return f'<div class="cards">{"".join(cards)}</div>' if cards else ""


# ----------------------------------------------------------------------------------- a run's page

_META_SHOWN = ("backbone", "layer", "weights", "weights_sha256", "input_size", "resize", "count", "toolkit")


def _inputs_table(inputs: dict, records: dict) -> str:
    rows = []
    for role in ("real", "fake"):
        entry, record = inputs.get(role, {}), records.get(role, {})
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        extractor = "; ".join(f"{key} {meta[key]}" for key in _META_SHOWN if meta.get(key) not in (None, ""))
        rows.append([_e(role), f"<code>{_e(entry.get('path'))}</code>", _e(entry.get("key") or ""),
                     _e(f"{record.get('n', '')} x {record.get('dim', '')}"),
                     f"<code>{_e(record.get('sha256', ''))}</code>",
                     _e(extractor or "not recorded (plain arrays)")])
    return _table(["set", "file", "key", "samples x dim", "SHA-256 of the features evaluated (float32)",
                   "feature extractor (meta)"], rows)


def _meta_details(inputs: dict) -> str:
    parts = []
    for role in ("real", "fake"):
        meta = inputs.get(role, {}).get("meta")
        if meta:
            parts.append(f"<details><summary>{_e(role)}: the feature file's whole meta</summary>"
                         f"<pre>{_e(json.dumps(meta, indent=1, sort_keys=True, default=str))}</pre></details>")
    return "".join(parts)


def _sheet_figures(sheets) -> tuple[str, str]:
    """(the uncovered real images' sheet, the other sheets) as HTML, from (Sheet, image uri) pairs."""
    uncovered, others = "", []
    for sheet, uri in sheets:
        figure = ((f'<p class="note">{_e(sheet.note)}</p>' if sheet.note else "")
                  + _img(uri, f"contact sheet: {sheet.spec.title}"))
        if sheet.spec.name == "uncovered_real":
            uncovered = figure
        else:
            others.append(f"<h3>{_e(sheet.spec.title)}</h3>{figure}")
    return uncovered, "".join(others)


def run_page(run) -> str:
    """The page of one run (:class:`hubness_pr.reports.writers.RunReport`): the headline metrics with
    their standard errors, expected values and better direction, the uncovered real images, the
    ``--plot`` figure, the other contact sheets, every number of the run, and its provenance."""
    payload = json_safe(run.payload())
    blocks = list(run.evaluation.results)
    docs = {name: REGISTRY[name].doc for name in blocks if name in REGISTRY}
    ev = run.evaluation
    metrics_html = _cards(payload, blocks) + _metrics_table(payload, blocks, docs)
    if isinstance(payload.get("splits"), dict):
        metrics_html += "<h3>splits</h3>" + _pairs(payload["splits"])
    sections = [("metrics", "Metrics", metrics_html)]
    specs = gallery.planned_sheets(blocks)
    sheets, missing = [], ""
    if specs:
        n = min(run.gallery_n, MAX_SHEET_N)
        chosen = gallery.select(ev, specs, n)
        drawn = gallery.Drawn(chosen, n, run.sets(), run.title, ev)
        sheets = [(sheet, image_uri(image)) for sheet, image in zip(chosen, drawn.images)]  # one image at a time
        missing = drawn.missing()
    uncovered, others = _sheet_figures(sheets)
    note = f'<p class="note">Images not shown: {_e(missing)} (grey tiles keep each index and score).</p>' if missing \
        else ""
    if not uncovered:
        uncovered = '<p class="note">Not computed: needs exact recall (<code>pr</code> among --metrics).</p>'
    sections.append(("uncovered", "Real images no generated image covers",
                     '<p class="note">Real samples outside every generated k-NN ball (exact recall\'s '
                     "membership): the modes the generator misses.</p>" + uncovered + note))
    figure = png_uri(lambda handle: write_plot(handle, ev, run.real_rarity, run.title))
    sections.append(("figures", "Figures", _img(figure, "rarity, realism, k-occurrence and metric values")
                     + '<p class="note">Rarity of both sets, realism of the generated set, k-occurrence of both '
                       "sets and the metric values (the figure of <code>--plot</code>).</p>"))
    sections.append(("gallery", "Contact sheets", (others + note) if others else
                     '<p class="note">No sheet: the metrics computed select none.</p>'))
    sections.append(("numbers", "Every number of the run", _every_number(payload, blocks, docs)))

    provenance = (_inputs_table(run.document_inputs(), run.input_records)
                  + f"<h3>command</h3><p><code>{_e(shlex.join(str(a) for a in run.argv))}</code></p>"
                  + "<h3>options</h3>" + _pairs(payload["params"])
                  + "<h3>versions</h3>" + _pairs(run.versions)
                  + f"<h3>timings (seconds; whole run {number(run.seconds)})</h3>" + _pairs(payload["timings"])
                  + "<h3>real-set cache</h3>" + _pairs(payload.get("cache") or {})
                  + "<h3>diagnostics</h3>" + _pairs(payload.get("diagnostics") or {})
                  + _meta_details(run.document_inputs()))
    sections.append(("provenance", "Provenance", provenance))
    subtitle = (f"{ev.n_fake} generated vs {ev.n_real} real samples, dim {ev.dim}, k={ev.params.get('k')}"
                f" \u00b7 {format_cell(run.time)} UTC")
    return _page(run.title or "hubness-pr report", subtitle, sections,
                 f"hubness-pr {run.versions.get('toolkit', '')}: one self-contained file, no script, "
                 "nothing fetched from elsewhere")


def write_report(handle, run) -> None:
    """The ``--report`` page of a run (:func:`run_page`) to a text file object."""
    handle.write(run_page(run))


# ------------------------------------------------------------------------------- compare's page

def _error_of(record: dict, column: str):
    """The standard error of a metric column in a run record (``pr.precision`` -> ``pr.precision_se``)."""
    value = lookup(record.get("metrics", {}), column + SE_SUFFIX)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare_page(runs: list, header: list, rows: list, metric_columns: list) -> str:
    """The page of ``compare --report``: the comparison table (values ± standard error where the runs
    have them, which way is better), bar charts with error bars, and each run's provenance."""
    errors = {column: [_error_of(record, column) for _, record in runs] for column in metric_columns}
    numeric = {j for j, h in enumerate(header) if h in metric_columns or h == "seconds"}
    body = []
    for row, (_, record) in zip(rows, runs):
        cells = []
        for column, value in zip(header, row):
            text = _e(number(value) if column in metric_columns or column == "seconds" else format_cell(value))
            se = errors[column][len(body)] if column in errors else None
            cells.append(text + (f' <span class="note">{_plus_minus(se)}</span>' if se is not None else ""))
        body.append(cells)
    table = ('<div class="wide">' + _table([h + (f" {DIRECTION_TEXT[DIRECTION[h]][0]}" if h in DIRECTION else "")
                                            for h in header], body, numeric)
             + '</div><p class="note">Better: \u2191 higher, \u2193 lower, \u2248 nearest the expected value '
               "(two samples of one distribution).</p>")
    drawable = [c for c in metric_columns if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                                  for v in (row[header.index(c)] for row in rows))]
    charts = (_img(png_uri(lambda handle: write_compare_plot(handle, header, rows, drawable, errors)),
                   "one bar chart per metric, one bar per run")
              + ('<p class="note">Error bars: \u00b1 one standard error.</p>'
                 if any(e is not None for c in drawable for e in errors[c]) else
                 '<p class="note">No standard errors in these runs: bars without error bars.</p>')
              if drawable else '<p class="note">No numeric metric column to draw.</p>')
    provenance = []
    for label, record in runs:
        inputs = record.get("inputs", {})
        provenance.append([_e(label)] + [
            f"<code>{_e(inputs.get(side, {}).get('path'))}</code><br><span class=\"mono\">"
            f"{_e(str(inputs.get(side, {}).get('sha256', ''))[:16])}</span> {_e(inputs.get(side, {}).get('backbone', ''))}"
            for side in ("real", "fake")] + [
            _e(", ".join(f"{k}={record['params'][k]}" for k in ("k", "dc_k", "hubsK") if k in record["params"])),
            _e(record.get("versions", {}).get("toolkit", "")), _e(number(record.get("seconds"))),
            _e(format_cell(record.get("time"))),
            f"<code>{_e(shlex.join(str(a) for a in record.get('argv', [])))}</code>"])
    runs_table = '<div class="wide">' + _table(["run", "real (SHA-256 of features, backbone)", "generated", "k", "toolkit", "seconds",
                         "time (UTC)", "command"], provenance) + "</div>"
    sections = [("metrics", "Metrics", table), ("charts", "Bar charts", charts), ("runs", "Runs", runs_table)]
    return _page("hubness-pr: comparison of runs", f"{len(runs)} runs \u00b7 {format_cell(utc_now())} UTC", sections,
                 "hubness-pr compare: one self-contained file, no script, nothing fetched from elsewhere")


def write_compare_report(handle, runs: list, header: list, rows: list, metric_columns: list) -> None:
    """The ``compare --report`` page (:func:`compare_page`) to a text file object."""
    handle.write(compare_page(runs, header, rows, metric_columns))
