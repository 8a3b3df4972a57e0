"""What an output folder holds besides the checkpoint: the training log (JSON lines), codes and the
two figures. The log is rewritten whole, atomically, after each epoch; the others are written to
file objects (the command line stages them and puts them in place together)."""
from __future__ import annotations

import json

import numpy as np

from hubness_pr.io.outputs import atomic_write


def write_log(path, history: list) -> None:
    """One JSON object a line, one line an epoch."""
    text = "".join(json.dumps(entry, allow_nan=False) + "\n" for entry in history)
    with atomic_write(path, "w", what="training log", encoding="utf-8") as handle:
        handle.write(text)


def write_codes(handle, query_codes, db_codes, query_labels, db_labels) -> None:
    """``query_codes``, ``db_codes`` (+1/-1 int8) and ``query_labels``, ``db_labels`` (multi-hot uint8)."""
    np.savez(handle, query_codes=np.asarray(query_codes, np.int8), db_codes=np.asarray(db_codes, np.int8),
             query_labels=np.asarray(query_labels, np.uint8), db_labels=np.asarray(db_labels, np.uint8))


def plot_topn(handle, precision_at: dict, title: str) -> None:
    """PNG: precision of the top N against N."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend choice
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ns = sorted(precision_at)
    ax.plot(ns, [precision_at[n] for n in ns], marker="o")
    ax.set(xlabel="N (top N of the Hamming ranking)", ylabel="precision", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    fig.savefig(handle, format="png", dpi=110)


def plot_history(handle, history: list, title: str) -> None:
    """PNG: validation mAP@R at the evaluated epochs, and the training loss of every epoch."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax_map, ax_loss = fig.subplots(1, 2)
    evaluated = [e for e in history if "val_map" in e]
    ax_map.plot([e["epoch"] for e in evaluated], [e["val_map"] for e in evaluated], marker="o")
    ax_map.set(xlabel="epoch", ylabel="validation mAP@R", title=title)
    ax_loss.plot([e["epoch"] for e in history], [e["loss"] for e in history], label="loss")
    ax_loss.plot([e["epoch"] for e in history], [e["pair_term"] for e in history], label="pair term")
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_loss.legend()
    for ax in (ax_map, ax_loss):
        ax.grid(alpha=0.3)
    fig.savefig(handle, format="png", dpi=110)
