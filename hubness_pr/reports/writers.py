"""The files a metric run writes, keyed by the option that asks for each.

:data:`WRITERS` maps an option's name (``json``, ``per_sample``, ``plot``, ``report``) to how its file is opened
and what goes into it, read from one :class:`RunReport`; the command registers every asked-for
output with :class:`hubness_pr.io.outputs.OutputFiles` before any work and calls
:func:`write_files` inside the commit, so all of them are put in place together or none. The run log
(``--log``, appended after the commit: :func:`log_record`) and the gallery (a folder) are the two
outputs of another shape.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hubness_pr.io.outputs import write_json
from hubness_pr.reports import runlog
from hubness_pr.reports.gallery import DEFAULT_N
from hubness_pr.reports.html import write_report
from hubness_pr.reports.results import json_safe, to_dict, write_per_sample_csv, write_plot


@dataclass
class RunReport:
    """What one run's files are made of: the evaluation, its inputs (feature files), and the run's
    own facts (argv, parameters the command added, timings, seconds, the real-set cache's report)."""

    evaluation: Any
    real: Any                           # hubness_pr.io.store.FeatureFile
    fake: Any
    fake_indices: np.ndarray            # the fake rows evaluated (their indices in the file)
    argv: list
    timings: dict
    seconds: float
    extra_params: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    real_rarity: np.ndarray | None = None
    title: str = ""
    splits: dict | None = None          # the ``splits`` block (--splits), hubness_pr.reports.results.splits_block
    versions: dict = field(default_factory=runlog.versions)
    real_indices: np.ndarray | None = None  # the real rows evaluated (None: all, in order)
    gallery_n: int = DEFAULT_N              # images a contact sheet of --report (at most html.MAX_SHEET_N)
    time: str = field(default_factory=runlog.utc_now)

    def sets(self) -> dict:
        """"real" and "fake" -> (FeatureFile, rows in the input file), as the contact sheets take them."""
        real_indices = np.arange(self.evaluation.n_real) if self.real_indices is None else self.real_indices
        return {"real": (self.real, real_indices), "fake": (self.fake, self.fake_indices)}

    def document_inputs(self) -> dict:
        """The JSON document's ``inputs``: each file's path, key and meta."""
        return {name: {"path": data.source, "key": data.key, "meta": data.meta}
                for name, data in (("real", self.real), ("fake", self.fake))}

    @functools.cached_property
    def input_records(self) -> dict:
        """The run log's ``inputs`` (:func:`hubness_pr.reports.runlog.input_record`: sizes, digests of
        the features; computed once for the log and the report)."""
        return {"real": runlog.input_record(self.real, self.real.features),
                "fake": runlog.input_record(self.fake, self.fake.features)}

    def payload(self) -> dict:
        """The JSON document's metric part (:func:`hubness_pr.reports.results.to_dict`) with the run's facts."""
        out = to_dict(self.evaluation)
        out["params"].update(self.extra_params)
        out["timings"], out["seconds"] = self.timings, self.seconds
        out["cache"] = self.cache
        if self.splits is not None:
            out["splits"] = self.splits
        return out


def _json(handle, run: RunReport) -> None:
    write_json(handle, json_safe(dict(run.payload(), versions=run.versions, inputs=run.document_inputs())))


@dataclass(frozen=True)
class Writer:
    """How an option's file is opened (``open`` keyword arguments of
    :meth:`hubness_pr.io.outputs.Output.open`) and written from a :class:`RunReport`."""

    open: dict
    write: Callable[[Any, RunReport], None]
    doc: str = ""


WRITERS = {
    "json": Writer({"mode": "w", "encoding": "utf-8"}, _json, "every number of the run, strict JSON"),
    "per_sample": Writer({"mode": "w", "newline": "", "encoding": "utf-8"},
                         lambda h, run: write_per_sample_csv(h, run.evaluation, run.fake_indices, run.fake.paths,
                                                              run.real_indices),
                         "one CSV row per generated sample"),
    "plot": Writer({}, lambda h, run: write_plot(h, run.evaluation, run.real_rarity, run.title),
                   "the PNG figure"),
    "report": Writer({"mode": "w", "encoding": "utf-8"}, write_report,
                     "one self-contained HTML page: metrics, figure, contact sheets, provenance"),
}


def write_files(planned: dict, run: RunReport) -> None:
    """Write the file of every planned option that :data:`WRITERS` knows (``planned``: option ->
    :class:`hubness_pr.io.outputs.Output`)."""
    for option, writer in WRITERS.items():
        if option in planned:
            with planned[option].open(**writer.open) as handle:
                writer.write(handle, run)


def log_record(run: RunReport) -> dict:
    """The run's line of the run log (:data:`hubness_pr.reports.runlog.RECORD_TYPES` keys), then
    ``real_flags`` (the per-real-sample recall and coverage flags, packed:
    :func:`hubness_pr.reports.runlog.pack_flags`, for ``compare``'s paired tests) where computed and
    ``splits`` where the run had ``--splits``."""
    payload = run.payload()
    record = {
        "time": run.time, "argv": list(run.argv), "inputs": run.input_records,
        "params": payload["params"], "versions": run.versions,
        "metrics": {name: payload[name] for name in run.evaluation.results},
        "timings": run.timings, "seconds": run.seconds}
    flags = {name: runlog.pack_flags(values) for name, values in (
        ("pr.recall", run.evaluation.real_in_fake_manifold), ("dc.coverage", run.evaluation.real_covered))
        if values is not None}
    if flags:
        record["real_flags"] = flags
    if "splits" in payload:
        record["splits"] = payload["splits"]
    return json_safe(record)
