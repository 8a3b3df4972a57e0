"""Turn an :class:`hubness_pr.Evaluation` into what a run shows: the JSON document
(:func:`to_dict`, strict through :func:`json_safe`), the ``name: value`` lines, CSV rows and a figure.

The metric blocks are formed here, not by the metrics: each result's number fields (less the
neighbourhood sizes, which ``params`` holds), per-sample scores summarised, nested results (the
hubness of each set) as nested blocks; blocks come in the metrics' order (:data:`hubness_pr.METRICS`).
"""
from __future__ import annotations

import csv
import math
from dataclasses import fields, is_dataclass

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.metrics.evaluation import Evaluation
from hubness_pr.metrics.registry import standard_error
from hubness_pr.metrics.splits import t_quantile_975
from hubness_pr.reports.cells import format_cell

# fields of a result that are options of the run (in ``params``), not numbers of the block
PARAMETER_FIELDS = ("n", "k", "hubs_k", "k_prime")
# how a per-sample score result names its defined samples (default: defined, fraction_defined)
SCORE_COUNTS = {"rarity": ("inside", "fraction_inside")}


def json_safe(value):
    """Replace NaN/Inf by None, recursively, so the result is strict JSON."""
    if isinstance(value, dict):
        return {key: json_safe(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def score_summary(values: np.ndarray, defined: np.ndarray, count_name: str, fraction_name: str) -> dict:
    """Count and fraction of defined scores (with the fraction's binomial standard error), then their
    mean (with its standard error), median, std (ddof 0), min and max (NaN: none)."""
    v = values[defined]
    n = int(defined.sum())
    stats = {count_name: n, fraction_name: n / values.size if values.size else float("nan"),
             f"{fraction_name}_se": standard_error(defined)}
    keys = ("mean", "mean_se", "median", "std", "min", "max")
    if n:
        stats.update(zip(keys, (float(v.mean()), standard_error(v), float(np.median(v)), float(v.std()),
                                float(v.min()), float(v.max()))))
    else:
        stats.update(dict.fromkeys(keys, float("nan")))
    return stats


def metric_block(name: str, result) -> dict:
    """The JSON block of one metric's result."""
    if hasattr(result, "scores") and hasattr(result, "defined"):
        return score_summary(result.scores, result.defined(), *SCORE_COUNTS.get(name, ("defined", "fraction_defined")))
    block = {}
    for f in fields(result):
        value = getattr(result, f.name)
        if is_dataclass(value):
            block[f.name] = metric_block(f.name, value)
        elif f.name not in PARAMETER_FIELDS and np.ndim(value) == 0 and value is not None:
            block[f.name] = value
    return block


def to_dict(evaluation: Evaluation) -> dict:
    """JSON-ready dict: n_real, n_fake, dim, params, one block per computed metric (eP&R's with its
    difference to exact P&R when both ran), timings, diagnostics."""
    out = {"n_real": evaluation.n_real, "n_fake": evaluation.n_fake, "dim": evaluation.dim,
           "params": dict(evaluation.params)}
    for name, result in evaluation.results.items():  # in the metrics' order
        out[name] = metric_block(name, result)
        if name in evaluation.expected:  # the values when both sets come from one distribution
            out[name]["expected"] = dict(evaluation.expected[name])
    epr, pr = evaluation.results.get("epr"), evaluation.results.get("pr")
    if epr is not None and pr is not None:
        out["epr"]["precision_minus_exact"] = epr.precision - pr.precision
        out["epr"]["recall_minus_exact"] = epr.recall - pr.recall
    out["timings"] = dict(evaluation.timings)
    out["diagnostics"] = dict(evaluation.diagnostics)
    return out


def _flatten(prefix: str, value, out: list) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, sub, out)
    else:
        out.append((prefix, value))


# sample counts a split's preset used (its size, or dgm-eval's subset of it): sizes, as the splits'
# own size_real / size_fake, not values to average
_SPLIT_SIZES = ("protocol.n_real_used", "protocol.n_fake_used")


def split_values(evaluation: Evaluation) -> dict:
    """The numbers of one split's metric blocks by dotted name (``pr.precision``, ...), less the
    conditional standard errors and expected values (which the splits' spread replaces) and the
    sample counts of :data:`_SPLIT_SIZES`."""
    data, items = to_dict(evaluation), []
    for block in evaluation.results:
        _flatten(block, data[block], items)
    return {name: float(value) for name, value in items
            if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))
            and not name.endswith("_se") and ".expected." not in name and name not in _SPLIT_SIZES}


def splits_block(splits) -> dict:
    """The JSON's ``splits`` (a :class:`hubness_pr.metrics.splits.Splits`): count, sizes, seed, ``t95``
    (Student's t 0.975 quantile with S - 1 degrees of freedom: a 95 % interval is ``mean +- t95 se``),
    and per dotted metric name the splits' ``mean``, its standard error ``se`` (sample std, ddof 1,
    over sqrt(S); NaN where a split's value is NaN) and the ``values``, split by split."""
    per_split = [split_values(e) for e in splits.evaluations]
    metrics = {}
    for name in per_split[0]:
        values = np.array([values.get(name, float("nan")) for values in per_split])
        metrics[name] = {"mean": float(values.mean()), "se": standard_error(values), "values": values.tolist()}
    return {"count": splits.count, "size_real": splits.size_real, "size_fake": splits.size_fake, "seed": splits.seed,
            "t95": t_quantile_975(splits.count - 1), "metrics": metrics}


def splits_lines(block: dict) -> list[tuple[str, object]]:
    """(name, value) of the ``splits.*`` lines: count and sizes, then each metric's mean and its
    standard error (``splits.pr.precision``, ``splits.pr.precision_se``)."""
    items = [(f"splits.{key}", block[key]) for key in ("count", "size_real", "size_fake", "seed", "t95")]
    for name, stats in block["metrics"].items():
        items += [(f"splits.{name}", stats["mean"]), (f"splits.{name}_se", stats["se"])]
    return items


def summary_lines(evaluation: Evaluation, seconds: float, expected: bool = False,
                  splits: dict | None = None) -> list[str]:
    """``name: value`` lines; the first two are ``precision:`` and ``recall:`` (eP&R) when computed.
    The expected values (``pr.expected.precision``, ...) only with ``expected`` (the command's ``-v``);
    ``splits``: the JSON's ``splits`` block (:func:`splits_block`), whose lines come last but the sizes."""
    data = to_dict(evaluation)
    lines = []
    if "epr" in data:
        lines += [f"precision: {format_cell(data['epr']['precision'])}", f"recall: {format_cell(data['epr']['recall'])}"]
    items = []
    for block in evaluation.results:  # every metric block, in the metrics' order
        _flatten(block, data[block], items)
    items = [(name, v) for name, v in items if name not in ("epr.precision", "epr.recall")
             and (expected or ".expected." not in name)]
    knn = data["params"].get("knn")
    if knn:  # approximate hub selection: said on stdout as well as on stderr
        items.append(("knn", f"{knn['method']} (approximate hub selection; hub radii and cross pass exact)"))
        for side in ("real", "fake"):
            for name in ("recall_at_k", "k_occurrence_agreement", "ef_search_used"):
                if name in knn.get(side, {}):
                    items.append((f"knn.{side}.{name}", knn[side][name]))
    if splits is not None:
        items += splits_lines(splits)
    items += [("n_real", data["n_real"]), ("n_fake", data["n_fake"]), ("dim", data["dim"]), ("seconds", seconds)]
    lines += [f"{name}: {format_cell(value)}" for name, value in items]
    return lines


def approximate_note(evaluation: Evaluation) -> str:
    """The stderr line of a run whose hubs came from approximate k-NN (``knn='hnsw'``)."""
    knn = evaluation.params["knn"]
    checked = [f"{knn[side]['recall_at_k']:.3f} {side}" for side in ("real", "fake") if "recall_at_k" in knn[side]]
    quality = (f"recall@{evaluation.params['k']} {', '.join(checked)} on {knn['real']['sample']} sampled queries "
               "against the exact engine" if checked else "the index was not checked (--hnsw_check 0)")
    used = {side: knn[side].get("ef_search_used", knn["ef_search"]) for side in ("real", "fake")}
    ef = str(knn["ef_search"]) if set(used.values()) == {knn["ef_search"]} else \
        f"{knn['ef_search']}, raised to {used['real']} real, {used['fake']} fake for recall >= {knn['min_recall']}"
    low = [side for side in ("real", "fake") if knn[side].get("recall_at_k", 1.0) < knn.get("min_recall", 0.0)]
    short = (f"; recall below {knn['min_recall']} ({', '.join(low)}) even at efSearch {knn['max_ef_search']}"
             if low else "")
    return (f"eP&R hubs chosen by approximate k-NN (faiss HNSW, M={knn['m']}, efSearch={ef}): "
            f"{quality}{short}; hub radii and the hub cross pass are exact")


def printable_name(name) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 (names Python decoded with surrogateescape,
    e.g. ``b'\\xff.png'`` read as ``'\\udcff.png'``) written in backslash form, ``\\xff.png``; other lone
    surrogates as ``\\udcff``. Valid names are returned unchanged."""
    name = str(name)
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte gives (from JSON, say)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def write_per_sample_csv(handle, evaluation: Evaluation, indices: np.ndarray, paths=None,
                         real_indices: np.ndarray | None = None) -> None:
    """One row per fake sample, input order, to a text file object: index, path, then each computed
    per-sample quantity.

    ``indices`` are the rows' indices in the fake file (they differ from 0..M-1 after subsampling);
    paths go through :func:`printable_name`. ``density`` is the number of real balls (at dc_k) holding
    the sample over dc_k: density is its mean. Undefined rarity is an empty cell; realism on a kept
    real sample is ``inf``.
    """
    columns = [("index", indices)]
    if paths is not None:
        columns.append(("path", [printable_name(p) for p in paths]))
    if evaluation.fake_in_real_manifold is not None:
        columns.append(("in_real_manifold", evaluation.fake_in_real_manifold.astype(np.int8)))
    if evaluation.fake_density is not None:
        columns.append(("density", evaluation.fake_density))
    if evaluation.realism is not None:
        columns.append(("realism", evaluation.realism.scores))
    if evaluation.rarity is not None:
        columns.append(("rarity", evaluation.rarity.scores))
    auth = evaluation.results.get("auth")
    if auth is not None:  # memorisation: the nearest real (index in REAL's input order after subsampling)
        nearest = auth.nearest_real if real_indices is None else np.asarray(real_indices)[auth.nearest_real]
        columns += [("nearest_real", nearest), ("nearest_real_distance", auth.nearest_real_distance),
                     ("ratio_d1_d2", auth.ratio_d1_d2)]
    if evaluation.fake_k_occurrence is not None:
        columns.append(("k_occurrence_hnsw" if is_approximate(evaluation) else "k_occurrence",
                        evaluation.fake_k_occurrence))
    if evaluation.epr is not None and evaluation.fake_is_hub is not None:
        columns.append(("is_hub", evaluation.fake_is_hub.astype(np.int8)))

    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else repr(float(value))
        return value

    writer = csv.writer(handle)
    writer.writerow([name for name, _ in columns])
    for row in zip(*(values for _, values in columns)):
        writer.writerow([cell(v) for v in row])


PLOT_SIZE = (1100, 800)  # pixels of the --plot figure, whatever was computed
_DPI = 100
_COLORS = {"real": "#4c72b0", "fake": "#dd8452"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _empty(ax, title: str, why: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9, color="#666666", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _finish(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.legend(fontsize=8)


def _rarity_panel(ax, evaluation: Evaluation, real_rarity) -> None:
    title = "rarity score (lower: more typical)"
    if evaluation.rarity is None:
        return _empty(ax, title, "rarity not computed (--metrics)")
    series = [("generated", evaluation.rarity.scores, _COLORS["fake"])]
    if real_rarity is not None:
        series.insert(0, ("real, own ball left out", real_rarity, _COLORS["real"]))
    defined = [v[~np.isnan(v)] for _, v, _ in series]
    if not any(d.size for d in defined):
        return _empty(ax, title, "no sample inside a real ball")
    bins = np.histogram_bin_edges(np.concatenate(defined), bins=40)
    for (label, values, color), inside in zip(series, defined):
        ax.hist(inside, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=color)
        ax.hist(inside, bins=bins, density=True, histtype="step", color=color,
                label=f"{label}: {inside.size} of {values.size} inside")
    _finish(ax, title, "rarity score (radius of the smallest real ball holding the sample)", "density")


def _realism_panel(ax, evaluation: Evaluation) -> None:
    title = "realism score of the generated samples"
    if evaluation.realism is None:
        return _empty(ax, title, "realism not computed (--metrics)")
    scores = evaluation.realism.scores
    finite = scores[np.isfinite(scores)]
    copies = int(np.isinf(scores).sum())
    ax.hist(finite, bins=40, color=_COLORS["fake"], alpha=0.8,
            label=f"{finite.size} samples" + (f" (+{copies} at distance 0: inf)" if copies else ""))
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="1: edge of a real ball")
    _finish(ax, title, "realism score (higher: deeper inside the real manifold)", "samples")


def is_approximate(evaluation: Evaluation) -> bool:
    """Whether eP&R's hubs (and the k-occurrence reported) came from approximate k-NN (``knn='hnsw'``)."""
    return (evaluation.params.get("knn") or {}).get("method") == "hnsw"


def _occurrence_panel(ax, evaluation: Evaluation) -> None:
    from matplotlib.ticker import MaxNLocator

    k = evaluation.params["k"]
    title = (f"k-occurrence (k={k}) in approximate k-NN graphs (HNSW)" if is_approximate(evaluation) else
             f"k-occurrence (k={k}): how often a sample is among others' {k} nearest")
    sides = [(label, occ, _COLORS[side]) for side, label, occ in
             (("real", "real", evaluation.real_k_occurrence), ("fake", "generated", evaluation.fake_k_occurrence))
             if occ is not None]
    if not sides:
        return _empty(ax, title, "k-occurrence not computed (--metrics)")
    width = 0.8 / len(sides)
    for j, (label, occ, color) in enumerate(sides):
        counts = np.bincount(occ)
        values = np.flatnonzero(counts)
        ax.bar(values + (j - (len(sides) - 1) / 2) * width, counts[values], width=width, color=color,
               label=f"{label} (max {int(occ.max())})")
    ax.axvline(evaluation.params["hubsK"] - 0.5, color="black", linestyle="--", linewidth=1,
               label=f"hub threshold t={evaluation.params['hubsK']}")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish(ax, title, "k-occurrence", "samples (log scale)")


def _metric_bars(ax, evaluation: Evaluation) -> None:
    title = "metric values"
    groups = []  # (group, [(bar label, value, colour)])
    for name in ("precision", "recall"):
        epr = "eP&R, hubs by HNSW" if is_approximate(evaluation) else "eP&R"
        bars = [(f"{label}", getattr(result, name), color) for label, result, color in
                ((epr, evaluation.epr, "#55a868"), ("exact P&R", evaluation.pr, "#8172b2")) if result is not None]
        if bars:
            groups.append((name, bars))
    if evaluation.dc is not None:
        groups += [("density", [("D&C", evaluation.dc.density, "#c44e52")]),
                   ("coverage", [("D&C", evaluation.dc.coverage, "#c44e52")])]
    if not groups:
        return _empty(ax, title, "no P&R, eP&R or D&C computed (--metrics)")
    seen, top = set(), 1.0
    for g, (group, bars) in enumerate(groups):
        width = 0.8 / len(bars)
        for j, (label, value, color) in enumerate(bars):
            x = g + (j - (len(bars) - 1) / 2) * width
            shown = 0.0 if math.isnan(value) else value
            ax.bar(x, shown, width=width * 0.95, color=color, label=None if label in seen else label)
            ax.text(x, shown + 0.01, "n/a" if math.isnan(value) else f"{value:.3f}", ha="center", va="bottom",
                    fontsize=8)
            seen.add(label)
            top = max(top, shown)
    ax.set_xticks(range(len(groups)), [group for group, _ in groups])
    ax.set_ylim(0, top * 1.15)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")


def write_plot(handle, evaluation: Evaluation, real_rarity: np.ndarray | None = None, title: str = "") -> None:
    """The ``--plot`` figure (:data:`PLOT_SIZE` pixels) as PNG to a binary file object: rarity
    histograms of the real set (``real_rarity``: scored against the other real samples, see
    :func:`hubness_pr.real_rarity_scores`) and the generated set, realism, k-occurrence of both sets
    (log scale), and the metric values as bars (eP&R beside exact P&R). A panel whose metric was
    not computed says so."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(PLOT_SIZE[0] / _DPI, PLOT_SIZE[1] / _DPI), dpi=_DPI)
    try:
        _rarity_panel(axes[0, 0], evaluation, real_rarity)
        _realism_panel(axes[0, 1], evaluation)
        _occurrence_panel(axes[1, 0], evaluation)
        _metric_bars(axes[1, 1], evaluation)
        fig.suptitle(title or f"{evaluation.n_fake} generated vs {evaluation.n_real} real samples, "
                     f"k={evaluation.params['k']}", fontsize=11)
        fig.tight_layout()
        fig.savefig(handle, format="png", dpi=_DPI)
    finally:
        plt.close(fig)


def write_compare_plot(handle, header: list, rows: list, metric_columns: list, errors: dict | None = None) -> None:
    """The ``compare --plot`` figure as PNG to a binary file object: one bar chart per metric column,
    one bar per run (labelled ``run: fake``), each panel on its own scale, values written on the bars
    when there are at most 12 runs; ``errors`` (column -> a standard error or None per run) adds error
    bars of one standard error. :func:`compare_plot_size` gives its size in pixels."""
    if not metric_columns:
        raise InputError("--plot: no metric column to draw")
    plt = _pyplot()
    columns, panel_rows = _compare_grid(len(metric_columns))
    width, height = compare_plot_size(len(metric_columns))
    fig, axes = plt.subplots(panel_rows, columns, figsize=(width / _DPI, height / _DPI), dpi=_DPI, squeeze=False)
    run_col, fake_col = header.index("run"), header.index("fake")
    labels = [f"{row[run_col]}: {row[fake_col]}" for row in rows]
    colors = plt.get_cmap("tab10").colors
    try:
        for ax in axes.flat[len(metric_columns):]:
            ax.axis("off")
        for ax, column in zip(axes.flat, metric_columns):
            values = [row[header.index(column)] for row in rows]
            shown = [0.0 if v is None or not math.isfinite(v) else float(v) for v in values]
            x = np.arange(len(rows))
            se = [0.0 if e is None or not math.isfinite(e) else float(e) for e in (errors or {}).get(column, [])]
            ax.bar(x, shown, color=[colors[i % len(colors)] for i in range(len(rows))],
                   yerr=se if any(se) else None, capsize=4 if any(se) else 0, ecolor="#333333")
            if len(rows) <= 12:
                for xi, v, h in zip(x, values, shown):
                    ax.text(xi, h + (se[xi] if se else 0.0), "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}", ha="center",
                            va="bottom", fontsize=8)
                ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
            else:
                ax.set_xticks(x, [str(row[run_col]) for row in rows], fontsize=7)
            tops = [h + e for h, e in zip(shown, se)] if se else shown
            low, high = min(shown + [0.0]), max(tops + [1.0])  # 1.0 always shown: the scale of P, R, coverage
            ax.set_ylim(low * 1.15, high * 1.12)
            ax.set_title(column, fontsize=10)
        fig.suptitle(f"{len(rows)} runs, one bar each", fontsize=11)
        fig.tight_layout()
        fig.savefig(handle, format="png", dpi=_DPI)
    finally:
        plt.close(fig)


def _compare_grid(panels: int) -> tuple[int, int]:
    columns = min(3, panels)
    return columns, math.ceil(panels / columns)


def compare_plot_size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of the ``compare --plot`` figure with this many metric panels."""
    columns, rows = _compare_grid(panels)
    return 380 * columns, 300 * rows + 40
