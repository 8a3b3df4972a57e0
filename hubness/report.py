"""Turn an :class:`hubness.Evaluation` into text lines, CSV rows and a figure."""
from __future__ import annotations

import csv
import math

import numpy as np

from .metrics import Evaluation

PLOT_METRICS = ("realism", "rarity", "pr", "epr", "hubness")  # those with a per-sample panel in write_plot


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.6f}"
    return str(value)


def _flatten(prefix: str, value, out: list) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, sub, out)
    else:
        out.append((prefix, value))


def summary_lines(evaluation: Evaluation, seconds: float) -> list[str]:
    """``name: value`` lines; the first two are ``precision:`` and ``recall:`` (eP&R) when computed."""
    data = evaluation.to_dict()
    lines = []
    if "epr" in data:
        lines += [f"precision: {_fmt(data['epr']['precision'])}", f"recall: {_fmt(data['epr']['recall'])}"]
    items = []
    for block in ("epr", "pr", "dc", "realism", "rarity", "hubness"):
        if block in data:
            _flatten(block, data[block], items)
    items = [(name, v) for name, v in items if name not in ("epr.precision", "epr.recall")]
    items += [("n_real", data["n_real"]), ("n_fake", data["n_fake"]), ("dim", data["dim"]), ("seconds", seconds)]
    lines += [f"{name}: {_fmt(value)}" for name, value in items]
    return lines


def write_per_sample_csv(handle, evaluation: Evaluation, indices: np.ndarray, paths=None) -> None:
    """One row per fake sample, input order, to a text file object: index, path, then each computed
    per-sample quantity.

    ``indices`` are the rows' indices in the fake file (they differ from 0..M-1 after subsampling).
    Undefined rarity is an empty cell; realism on a kept real sample is ``inf``.
    """
    columns = [("index", indices)]
    if paths is not None:
        columns.append(("path", paths))
    if evaluation.fake_in_real_manifold is not None:
        columns.append(("in_real_manifold", evaluation.fake_in_real_manifold.astype(np.int8)))
    if evaluation.realism is not None:
        columns.append(("realism", evaluation.realism.scores))
    if evaluation.rarity is not None:
        columns.append(("rarity", evaluation.rarity.scores))
    if evaluation.fake_k_occurrence is not None:
        columns.append(("k_occurrence", evaluation.fake_k_occurrence))
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


def write_plot(handle, evaluation: Evaluation) -> None:
    """A PNG of the per-sample distributions (realism, rarity, k-occurrence of the fake set) to a binary file object."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if evaluation.realism is not None:
        v = evaluation.realism.scores
        panels.append(("realism score (fake)", v[np.isfinite(v)]))
    if evaluation.rarity is not None:
        v = evaluation.rarity.scores
        panels.append(("rarity score (fakes inside the real manifold)", v[~np.isnan(v)]))
    if evaluation.fake_k_occurrence is not None:
        panels.append(("k-occurrence (fake set)", evaluation.fake_k_occurrence))
    if not panels:
        raise ValueError(f"--plot needs at least one of the metrics {', '.join(PLOT_METRICS)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels):
        ax.hist(values, bins=50, color="#3b6ea5")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("samples")
    fig.suptitle(f"{evaluation.n_fake} fake vs {evaluation.n_real} real samples, k={evaluation.params['k']}",
                 fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)
