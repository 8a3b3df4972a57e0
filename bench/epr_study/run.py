"""Step 2, ``run``: exact P&R, eP&R with exact hub selection, its 1/k-occurrence-weighted variant and
eP&R with approximate (HNSW) hub selection for every dataset, backbone, set, N, k and t; the JSON of
the cases and the report written after each backbone."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import hubness_pr
from bench.common import write_text
from bench.epr_study.config import (DATASETS, LIMIT, ROOT, SETS, SIGNIFICANT, TOY, feature_file, log, machine,
                                    report_prefix, resolved_device)
from bench.epr_study.report import load_supplements, write_report


def thresholds(k: int, toy: bool) -> tuple:
    """Hub thresholds t studied at k: {k-1, k, k+1, 2k} ({k-1, k} for --toy), t >= 1."""
    ts = (k - 1, k) if toy else (k - 1, k, k + 1, 2 * k)
    return tuple(sorted({t for t in ts if t >= 1}))


class Hnsw:
    """Approximate hub selection through ``evaluate(..., knn='hnsw')``.

    The HNSW graphs do not depend on t: :meth:`cases` builds them once per (real, fake, k), at the
    first t, and passes the hubs that their k-occurrence gives at the other t as ``hubs=`` (the same
    exact steps after selection). Off when not requested or where faiss is not installed (a note says so).
    """

    def __init__(self, wanted: bool, max_n: int | None = None):
        self.enabled, self.note = wanted, None if wanted else "not requested (--knn)"
        self.max_n = max_n

    def _disable(self, note: str) -> None:
        self.enabled, self.note = False, note
        log(note)

    def __call__(self, real, fake, k: int, t: int, device) -> dict | None:
        """One ``knn='hnsw'`` run: {'epr', 'seconds', 'report', occurrences} or {'error'}; None when off."""
        if not self.enabled:
            return None
        start = time.perf_counter()
        try:
            ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, knn="hnsw", device=device,
                                     progress=False)
        except ImportError as exc:
            return self._disable(f"knn='hnsw' unavailable: {exc}")
        except ValueError as exc:
            return {"error": str(exc)}
        return {"epr": ev.epr, "seconds": time.perf_counter() - start, "report": ev.params.get("knn"),
                "real_occurrence": ev.real_k_occurrence, "fake_occurrence": ev.fake_k_occurrence}

    def cases(self, real, fake, k: int, ts: tuple, device) -> dict:
        """{t: result of :meth:`__call__`} for every t (empty when off or N > ``max_n``)."""
        if self.max_n is not None and len(real) > self.max_n:
            return {}
        first = self(real, fake, k, ts[0], device)
        if first is None:
            return {}
        out = {ts[0]: first}
        for t in ts[1:]:
            if "error" in first:  # no graphs to reuse: each t tries on its own
                out[t] = self(real, fake, k, t, device)
                continue
            occ_r, occ_f = first["real_occurrence"], first["fake_occurrence"]
            start = time.perf_counter()
            ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, device=device,
                                     hubs=(occ_r >= t, occ_f >= t), progress=False)
            out[t] = {**first, "epr": ev.epr, "seconds": None, "seconds_given_hubs": time.perf_counter() - start}
        return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.sum(a | b))
    return float(np.sum(a & b) / union) if union else 1.0


def weighted_epr(ev, real_occ: np.ndarray, fake_occ: np.ndarray, t: int) -> dict:
    """The variant that weights each hub by 1 / k-occurrence in eP&R's averages, from the per-hub
    decisions ``evaluate`` exposes (``fake_in_real_hub_balls``, ``real_in_fake_hub_balls``)."""

    def average(flags, occ):
        hubs = occ >= t
        w = 1.0 / occ[hubs]
        return float(np.sum(w * flags[hubs]) / np.sum(w)) if hubs.any() else float("nan")

    return {"wep": average(ev.fake_in_real_hub_balls, fake_occ), "wer": average(ev.real_in_fake_hub_balls, real_occ)}


def case_rows(real, fake, graph, k: int, ts: tuple, device, hnsw: Hnsw) -> list[dict]:
    """Every t of one (real, fake, k): exact P&R and eP&R (exact selection) from one
    ``evaluate(metrics=('pr', 'epr'))`` at the first t, eP&R alone at the others (the real set's
    graph reused), the 1/k-occurrence-weighted variant, approximate selection where available."""
    start = time.perf_counter()
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("pr", "epr"), k=k, hubs_k=ts[0], real_knn=graph,
                          device=device, progress=False)
    first = time.perf_counter() - start
    p, r = ev.pr.precision, ev.pr.recall
    real_occ, fake_occ = graph.k_occurrence(k), ev.fake_k_occurrence
    approx = hnsw.cases(real, fake, k, ts, device)
    rows = []
    for t in ts:
        if t == ts[0]:
            ev_t, seconds = ev, {"pr_and_epr": first}
        else:
            start = time.perf_counter()
            ev_t = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, real_knn=graph,
                                    device=device, progress=False)
            seconds = {"epr": time.perf_counter() - start}
        epr = ev_t.epr
        fake_hubs = fake_occ >= t
        inside = float(ev.fake_in_real_manifold[fake_hubs].mean()) if fake_hubs.any() else float("nan")
        row = {"k": k, "t": t, "p": p, "r": r, "ep": epr.precision, "er": epr.recall,
               "ep_minus_p": epr.precision - p, "er_minus_r": epr.recall - r,
               "real_hubs": epr.real_hubs, "fake_hubs": epr.fake_hubs,
               "real_hub_fraction": epr.real_hubs / len(real), "fake_hub_fraction": epr.fake_hubs / len(fake),
               "hub_fakes_in_real_manifold": inside, "seconds": seconds}
        weighted = weighted_epr(ev_t, real_occ, fake_occ, t)
        row.update(weighted, wep_minus_p=weighted["wep"] - p, wer_minus_r=weighted["wer"] - r)
        if approx.get(t) is not None:
            row["hnsw"] = hnsw_row(approx[t], row, real_occ >= t, fake_hubs)
        rows.append(row)
    return rows


def hnsw_row(approx: dict, row: dict, real_hubs: np.ndarray, fake_hubs: np.ndarray) -> dict:
    """The approximate-selection columns of one case."""
    if "error" in approx:
        return {"error": approx["error"]}
    epr = approx["epr"]
    occ_r, occ_f = approx["real_occurrence"], approx["fake_occurrence"]
    return {"ep": epr.precision, "er": epr.recall, "ep_minus_p": epr.precision - row["p"],
            "er_minus_r": epr.recall - row["r"], "ep_minus_exact_selection": epr.precision - row["ep"],
            "er_minus_exact_selection": epr.recall - row["er"], "real_hubs": epr.real_hubs,
            "fake_hubs": epr.fake_hubs, "seconds": approx["seconds"],
            "seconds_given_hubs": approx.get("seconds_given_hubs"),
            "real_hub_jaccard": jaccard(real_hubs, occ_r >= row["t"]),
            "fake_hub_jaccard": jaccard(fake_hubs, occ_f >= row["t"]),
            "report": approx["report"]}


def time_costs(real, fake, k: int, t: int, device, hnsw: Hnsw) -> dict:
    """Wall time of what a user pays: exact P&R alone and eP&R alone, each with its real k-NN pass."""
    out = {}
    for name, metrics in (("pr", ("pr",)), ("epr", ("epr",))):
        start = time.perf_counter()
        hubness_pr.evaluate(real=real, fake=fake, metrics=metrics, k=k, hubs_k=t, device=device, progress=False)
        out[f"{name}_seconds"] = time.perf_counter() - start
    approx = hnsw(real, fake, k, t, device)
    out["epr_hnsw_seconds"] = approx.get("seconds") if approx else None
    return out


def load_features(folder: Path, dataset: str, backbone: str, set_names) -> dict:
    """Memory-mapped feature arrays of the real set and every generated set present."""
    sets = {}
    for name in ("real",) + tuple(set_names):
        path = feature_file(folder, dataset, backbone, name)
        if path.is_file():
            sets[name] = np.load(path, mmap_mode="r")
    return sets


def study_sizes(sizes: tuple, available: int) -> list:
    """The sizes N of a dataset: each requested N, capped at the smallest set (real or generated),
    so that every set is compared at the same N."""
    return sorted({min(n, available) for n in sizes})


def run_backbone(dataset: str, backbone: str, sets: dict, sizes: list, ks: tuple, args, hnsw: Hnsw,
                 result: dict) -> None:
    """Every case of one dataset and backbone into ``result``."""
    for n in sizes:
        real = np.ascontiguousarray(sets["real"][:n], dtype=np.float32)
        start = time.perf_counter()
        graph = hubness_pr.nearest_neighbors(real, max(ks), exact_ks=ks, device=args.device, progress=False)
        result["real_knn"].append({"dataset": dataset, "backbone": backbone, "n": n,
                                   "seconds": time.perf_counter() - start})
        for set_name, feats in sets.items():
            if set_name == "real":
                continue
            fake = np.ascontiguousarray(feats[:n], dtype=np.float32)
            for k in ks:
                ts = thresholds(k, args.toy)
                for row in case_rows(real, fake, graph, k, ts, args.device, hnsw):
                    result["cases"].append({"dataset": dataset, "backbone": backbone, "set": set_name, "n": n, **row})
                if n == sizes[0] and k == ks[0] and set_name == "matched":
                    result["checks"].append(check_epr_alone(dataset, backbone, real, fake, k, ts[0], args.device,
                                                            result["cases"][-len(ts)]))
            log(f"{dataset} {backbone} N={n} {set_name}: done")
        if n == sizes[-1] and "matched" in sets:
            fake = np.ascontiguousarray(sets["matched"][:n], dtype=np.float32)
            for k in ks:
                result["timing"].append({"dataset": dataset, "backbone": backbone, "n": n, "k": k, "t": k,
                                         **time_costs(real, fake, k, k, args.device, hnsw)})


def check_epr_alone(dataset, backbone, real, fake, k, t, device, row) -> dict:
    """eP&R computed alone (real hubs x fake hubs, its own real k-NN pass) equals the eP&R of the
    ('pr', 'epr') run, and its per-hub decisions average to it: the weighted variant reads the right
    flags."""
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, device=device, progress=False)
    ok = ev.epr.precision == row["ep"] and ev.epr.recall == row["er"]
    flags = ev.fake_in_real_hub_balls, ev.real_in_fake_hub_balls
    hubs = ev.fake_k_occurrence >= t, ev.real_k_occurrence >= t
    if hubs[0].any() and hubs[1].any():
        ok &= bool(np.isclose(flags[0][hubs[0]].mean(), ev.epr.precision, rtol=0, atol=1e-12)
                   and np.isclose(flags[1][hubs[1]].mean(), ev.epr.recall, rtol=0, atol=1e-12))
    return {"what": "eP&R alone equals eP&R next to P&R, and its per-hub decisions average to it",
            "dataset": dataset, "backbone": backbone, "n": len(real), "k": k, "t": t, "ok": bool(ok)}


def cmd_run(args) -> int:
    folder = Path(args.features)
    manifest = json.loads((folder / "manifest.json").read_text())
    if args.toy:
        args.sizes, args.ks = TOY["sizes"], TOY["ks"]
    hnsw = Hnsw("hnsw" in args.knn, args.hnsw_max_n or None)
    result = {"cases": [], "timing": [], "real_knn": [], "checks": [], "sizes": {}, "notes": []}
    started = time.perf_counter()
    datasets = [d for d in DATASETS[::-1] if d in manifest["datasets"] and not (args.toy and d != TOY["dataset"])]
    for dataset in datasets:  # digits first (small); the results so far are written after each backbone
        info = manifest["datasets"][dataset]
        set_names = [s for s in SETS if s in info["sets"]]
        for backbone in info["features"]:
            sets = load_features(folder, dataset, backbone, set_names)
            sizes = study_sizes(args.sizes, min(len(v) for v in sets.values()))
            result["sizes"][dataset] = sizes
            log(f"{dataset} {backbone}: sizes {sizes}, k {list(args.ks)}, {len(sets) - 1} sets")
            run_backbone(dataset, backbone, sets, sizes, tuple(args.ks), args, hnsw, result)
            save_results(dict(result, notes=list(result["notes"])), args, hnsw, manifest, started)
    return 0


def save_results(result: dict, args, hnsw, manifest: dict, started: float) -> None:
    """The JSON and the report of every case computed so far (a run cut short keeps what it did)."""
    result["notes"].append(f"approximate hub selection (hnsw): {hnsw.note or 'computed'}")
    if hnsw.enabled:
        reuse = ("the other t take the hubs their k-occurrence gives (`evaluate(hubs=...)`, the same exact steps "
                 "after selection)")
        limit = f" at N <= {hnsw.max_n} (--hnsw_max_n)" if hnsw.max_n else ""
        result["notes"].append(f"hnsw: computed{limit}; the HNSW graphs are built once per (set, N, k), by "
                               f"`evaluate(knn='hnsw')` at the first t; {reuse}")
    settings = {"sizes": list(args.sizes), "ks": list(args.ks), "knn": args.knn, "hnsw_max_n": args.hnsw_max_n,
                "device": resolved_device(args.device), "toy": args.toy}
    result["meta"] = {"machine": machine(), "features_machine": manifest.get("machine"),
                      "seconds": time.perf_counter() - started, "args": settings, "limit": LIMIT,
                      "significant": SIGNIFICANT, "command": "run " + " ".join(args.argv)}
    result["manifest"] = manifest
    prefix = report_prefix(args.toy)
    json_path = Path(args.json or ROOT / "bench" / "results" / f"{prefix}.json")
    out = Path(args.out)
    for folder_ in (json_path.parent, out):
        folder_.mkdir(parents=True, exist_ok=True)
    write_text(json_path, json.dumps(hubness_pr.json_safe(without_arrays(result)), indent=1, default=str))
    report = write_report(dict(result, supplements=load_supplements(args.supplement)), out, prefix, json_path)
    log(f"report {report}, numbers {json_path}")


def without_arrays(value):
    """The result with numpy arrays (none are meant to be there) turned into lists, for JSON."""
    if isinstance(value, dict):
        return {k: without_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_arrays(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value

