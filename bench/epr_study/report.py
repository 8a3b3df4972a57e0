"""Step 3 (and the end of ``run``): the Markdown report, its tables and figures from the cases; the
``report`` command rebuilds it from a run's JSON (and ``--supplement`` runs)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.common import fmt, table, write_text
from bench.epr_study.analysis import (findings, finite, groups, hnsw_rows, inversions, largest_n, ranking_rows,
                                      set_order, summary_rows, supplement_agreement, weighted_cases, worst,
                                      worst_hnsw, worst_weighted)
from bench.epr_study.config import LIMIT, SETS, SIGNIFICANT, atomic_save_figure, log, report_prefix, shown


def section_machine(result: dict, json_path: Path) -> str:
    meta, feats = result["meta"], result["meta"].get("features_machine") or {}
    m = meta["machine"]
    rows = [["metrics (`run`)", m["platform"], m["cpu"], m["cpu_count"], m.get("cuda") or "none",
             f"torch {m['torch']}, numpy {m['numpy']}, faiss {m.get('faiss')}, toolkit {m.get('toolkit')}"],
            ["features (`extract`)", feats.get("platform"), feats.get("cpu"), feats.get("cpu_count"),
             feats.get("cuda") or "none", f"torch {feats.get('torch')}"]]
    a = meta["args"]
    how = meta.get("provenance") or (f"Commit {m.get('commit')}; `{meta['command']}`; device `{a['device']}`; the "
                                     f"run took {meta['seconds']:.0f} s.")
    return ("## Machine and settings\n\n" + table(["step", "platform", "CPU", "cores", "GPU", "versions"], rows) +
            f"\n{how} Sizes N per dataset: " + ", ".join(f"{d} {v}" for d, v in result["sizes"].items()) +
            f". Raw numbers: `{shown(json_path)}` (one record per dataset, backbone, set, N, k, t).\n\n")


def section_sets(manifest: dict) -> str:
    datasets = list(manifest["datasets"])
    names = [s for s in SETS if any(s in manifest["datasets"][d]["sets"] for d in datasets)]
    rows = [["real", *[manifest["datasets"][d]["real"]["size"] for d in datasets],
             "; ".join(f"{d}: {manifest['datasets'][d]['real']['how']} of {manifest['datasets'][d]['real']['drawn_from']}"
                       for d in datasets)]]
    for s in names:
        hows = {manifest["datasets"][d]["sets"][s]["how"] for d in datasets if s in manifest["datasets"][d]["sets"]}
        how = " / ".join(f"{d}: {manifest['datasets'][d]['sets'][s]['how']}" for d in datasets) if len(hows) > 1 \
            else hows.pop()
        rows.append([s, *[manifest["datasets"][d]["sets"].get(s, {}).get("size", "-") for d in datasets], how])
    first = manifest["datasets"][datasets[0]]
    seeds = first["seeds"]
    extracted = "; ".join(f"{d}: {v['extracted']['clean']} clean + {v['extracted']['transformed']} transformed "
                          "images through each backbone" for d, v in manifest["datasets"].items())
    backbones = "; ".join(f"`{b}` ({', '.join(f'{k}={v}' for k, v in meta.items() if k in ('weights', 'weights_seed', 'layer', 'preprocess'))})"
                          for b, meta in manifest["backbones"].items())
    return ("## The sets\n\n" + table(["set", *datasets, "how it was made"], rows) +
            f"\nImages: {first['upscale']}. Held-out pool = every image not in the real set. Every set is "
            f"stored in a seeded random order; at size N the study takes the first N rows of the real set "
            f"and of each generated set (seeded random subsets, the same real subset for every set). "
            f"Seeds: data {seeds['data']}, noise {seeds['noise']}, vgg16_random weights {seeds['backbone']}. "
            f"Extracted: {extracted}; the other sets are rows of those features. Backbones: {backbones}.\n\n")


def section_backbone(cases: list) -> str:
    """Per dataset/backbone at the largest N: one table per k, rows = set."""
    out = ["## eP&R minus exact P&R, per dataset and backbone (largest N)\n\n"]
    for (dataset, backbone), rows in groups(largest_n(cases), "dataset", "backbone").items():
        out.append(f"### {dataset}, {backbone}, N = {rows[0]['n']}\n\n")
        for k, at_k in sorted(groups(rows, "k").items()):
            ts = sorted({c["t"] for c in at_k})
            header = ["set", f"P (k={k[0]})", "R"] + [f"{m} t={t}" for t in ts for m in ("eP−P", "eR−R")]
            body = []
            for s in set_order(at_k):
                by_t = {c["t"]: c for c in at_k if c["set"] == s}
                first = by_t[ts[0]]
                body.append([s, fmt(first["p"]), fmt(first["r"])] +
                            [fmt(by_t[t][m], True) for t in ts for m in ("ep_minus_p", "er_minus_r")])
            out.append(table(header, body) + "\n")
        hub_rows = []
        for (k, t), at in sorted(groups(rows, "k", "t").items()):
            fake = [c["fake_hub_fraction"] for c in at]
            hub_rows.append([k, t, fmt(at[0]["real_hub_fraction"]), f"{fmt(min(fake))}–{fmt(max(fake))}"])
        out.append("Hub fractions (real: the same for every set; fake: range over sets):\n\n" +
                   table(["k", "t", "real hubs", "fake hubs"], hub_rows) + "\n")
    return "".join(out)


def section_summary(cases: list) -> str:
    pairs, sets, worst_of = summary_rows(cases)
    body = []
    for k, t in pairs:
        cells = [("**ok** " if worst_of[(k, t, s)] < LIMIT else "") + fmt(worst_of[(k, t, s)]) for s in sets]
        body.append([k, t, *cells, f"{sum(worst_of[(k, t, s)] < LIMIT for s in sets)}/{len(sets)}"])
    return (f"## Which (k, t) keep |eP−P| and |eR−R| below {LIMIT}\n\nEach cell: the worst max(|eP−P|, |eR−R|) "
            f"over every dataset and backbone at its largest N; **ok** below {LIMIT}.\n\n" +
            table(["k", "t", *sets, "sets ok"], body) + "\n")


def section_misleads(cases: list) -> str:
    inv = inversions(cases)
    out = [f"## Where eP&R misleads (largest N)\n\n### The defect's direction inverted\n\nA set's effect "
           f"against `matched` (value(set) − value(matched)) of at least {SIGNIFICANT} in the exact metric that "
           f"eP&R shows with the opposite sign: {len(inv)} cases.\n\n"]
    if inv:
        inv.sort(key=lambda x: -abs(x[2]))
        body = [[c["dataset"], c["backbone"], c["k"], c["t"], c["set"], metric, fmt(d, True), fmt(e, True)]
                for c, metric, d, e in inv[:25]]
        out.append(table(["dataset", "backbone", "k", "t", "set", "metric", "exact effect", "eP&R effect"], body))
        if len(inv) > 25:
            out.append(f"\n({len(inv) - 25} more in the JSON's cases.)\n")
        out.append("\n")
    ranks = ranking_rows(cases)
    out.append(f"### Ranking of the sets\n\nKendall's tau-a between the ranking of the sets by the exact value "
               f"and by eP&R (1: same order), and the pairs of sets whose exact values differ by at least "
               f"{SIGNIFICANT} but whose eP&R values are in the opposite order.\n\n")
    body = []
    for r in ranks:
        pairs = [f"{a}>{b}" if d > 0 else f"{b}>{a}" for a, b, d, _ in r["reversed_p"]][:3]
        pairs_r = [f"{a}>{b}" if d > 0 else f"{b}>{a}" for a, b, d, _ in r["reversed_r"]][:3]
        body.append([r["dataset"], r["backbone"], r["k"], r["t"], fmt(r["tau_p"], digits=2), len(r["reversed_p"]),
                     ", ".join(pairs), fmt(r["tau_r"], digits=2), len(r["reversed_r"]), ", ".join(pairs_r)])
    out.append(table(["dataset", "backbone", "k", "t", "tau P", "reversed P", "e.g. (exact order)", "tau R",
                      "reversed R", "e.g. (exact order)"], body) + "\n")
    return "".join(out)


def section_sizes(cases: list) -> str:
    body = []
    for (dataset, backbone, n), at in sorted(groups(cases, "dataset", "backbone", "n").items()):
        dp = [abs(c["ep_minus_p"]) for c in at if finite(c["ep_minus_p"])]
        dr = [abs(c["er_minus_r"]) for c in at if finite(c["er_minus_r"])]
        body.append([dataset, backbone, n, fmt(np.median(dp) if dp else None), fmt(max(dp) if dp else None),
                     fmt(np.median(dr) if dr else None), fmt(max(dr) if dr else None)])
    return ("## Dependence on N\n\nOver every set, k and t:\n\n" +
            table(["dataset", "backbone", "N", "median |eP−P|", "max |eP−P|", "median |eR−R|", "max |eR−R|"], body)
            + "\n")


def section_decomposition(cases: list) -> str:
    """eP - P split into the fake-hub selection part and the hub-ball part (precision side)."""
    body = []
    for (k, t), at in sorted(groups(largest_n(cases), "k", "t").items()):
        sel = [c["hub_fakes_in_real_manifold"] - c["p"] for c in at if finite(c["hub_fakes_in_real_manifold"])]
        ball = [c["ep"] - c["hub_fakes_in_real_manifold"] for c in at
                if finite(c["ep"]) and finite(c["hub_fakes_in_real_manifold"])]
        diff = [c["ep_minus_p"] for c in at if finite(c["ep_minus_p"])]
        body.append([k, t, fmt(np.median(sel) if sel else None, True), fmt(np.median(ball) if ball else None, True),
                     fmt(np.median(diff) if diff else None, True)])
    return ("## Why: the two parts of eP − P\n\neP − P = (fraction of fake hubs inside the full real manifold − P): "
            "the selection part, + (eP − that fraction): the hub-ball part, never positive since hub balls are a "
            "subset of all real balls. Medians over datasets, backbones and sets at the largest N. The recall "
            "side cannot be split this way: `evaluate` exposes no per-real-sample recall flags.\n\n" +
            table(["k", "t", "selection part", "hub-ball part", "eP − P"], body) + "\n")


def section_weighted(cases: list) -> str:
    rows = weighted_cases(cases)
    title = "## Variant: hubs weighted by 1/k-occurrence\n\n"
    if not rows:
        return title + "No case at the largest N has both eP&R and the weighted variant defined.\n\n"
    body = []
    for (k, t), at in sorted(groups(rows, "k", "t").items()):
        med = {key: np.median([abs(c[key]) for c in at]) for key in ("ep_minus_p", "wep_minus_p", "er_minus_r",
                                                                     "wer_minus_r")}
        closer = sum(worst_weighted(c) < worst(c) for c in at)
        body.append([k, t, fmt(med["ep_minus_p"]), fmt(med["wep_minus_p"]), fmt(med["er_minus_r"]),
                     fmt(med["wer_minus_r"]), f"{closer}/{len(at)}"])
    return (title + "The same hubs and the same per-hub decisions as eP&R (same cost), averaged with weight "
            "1/O_k per hub (O_k: its k-occurrence in its own set): wP, wR. Medians over datasets, backbones and "
            "sets at the largest N; last column: cases where max(|wP−P|, |wR−R|) < max(|eP−P|, |eR−R|).\n\n" +
            table(["k", "t", "median |eP−P|", "median |wP−P|", "median |eR−R|", "median |wR−R|", "weighted closer"],
                  body) + "\n")


def section_timing(result: dict) -> str:
    body = []
    for r in result["timing"]:
        ratio = r["epr_seconds"] / r["pr_seconds"] if r["pr_seconds"] else float("nan")
        body.append([r["dataset"], r["backbone"], r["n"], r["k"], r["t"], f"{r['pr_seconds']:.3f}",
                     f"{r['epr_seconds']:.3f}", fmt(ratio, digits=2),
                     f"{r['epr_hnsw_seconds']:.3f}" if r.get("epr_hnsw_seconds") is not None else "n/a"])
    return ("## Time: exact P&R vs eP&R\n\nOne timed call each, on the matched set at the largest N, each computing "
            "its own real k-NN pass (what a user pays); device of the run above.\n\n" +
            table(["dataset", "backbone", "N", "k", "t", "exact P&R s", "eP&R s", "eP&R / P&R", "eP&R hnsw s"], body)
            + "\n")


def hnsw_table(rows: list) -> str:
    """Per (k, t): how far approximate selection moved eP&R from exact selection, hub-set Jaccards,
    the worst distance to exact P&R and the index's recall@k (run's check)."""
    body = []
    for (k, t), at in sorted(groups(rows, "k", "t").items()):
        dp = [abs(c["hnsw"]["ep_minus_exact_selection"]) for c in at if finite(c["hnsw"]["ep_minus_exact_selection"])]
        dr = [abs(c["hnsw"]["er_minus_exact_selection"]) for c in at if finite(c["hnsw"]["er_minus_exact_selection"])]
        jr = [c["hnsw"]["real_hub_jaccard"] for c in at if c["hnsw"]["real_hub_jaccard"] is not None]
        jf = [c["hnsw"]["fake_hub_jaccard"] for c in at if c["hnsw"]["fake_hub_jaccard"] is not None]
        recall = [c["hnsw"]["report"][side]["recall_at_k"] for c in at for side in ("real", "fake")
                  if "recall_at_k" in ((c["hnsw"].get("report") or {}).get(side) or {})]
        body.append([k, t, fmt(max(dp) if dp else None), fmt(max(dr) if dr else None),
                     fmt(min(jr) if jr else None), fmt(min(jf) if jf else None),
                     fmt(max(worst_hnsw(c) for c in at)), fmt(min(recall) if recall else None)])
    return table(["k", "t", "max |eP_hnsw − eP|", "max |eR_hnsw − eR|", "min real-hub Jaccard",
                  "min fake-hub Jaccard", "max(|eP_hnsw−P|, |eR_hnsw−R|)", "min recall@k"], body)


def hnsw_by_size(cases: list) -> str:
    """Per dataset and N, over every backbone, set, k and t: how far approximate selection moved eP&R."""
    body = []
    for (dataset, n), at in sorted(groups([c for c in cases if c.get("hnsw") and "ep" in c["hnsw"]],
                                          "dataset", "n").items()):
        moved = {near: [abs(c["hnsw"][key]) for c in at if (c["t"] <= c["k"] + 1) == near
                        for key in ("ep_minus_exact_selection", "er_minus_exact_selection") if finite(c["hnsw"][key])]
                 for near in (True, False)}
        every = moved[True] + moved[False]
        body.append([dataset, n, len(at), fmt(max(moved[True]) if moved[True] else None),
                     fmt(max(moved[False]) if moved[False] else None),
                     fmt(float(np.median(every)) if every else None, digits=4)])
    return table(["dataset", "N", "cases", "max |Δ| at t <= k+1", "max |Δ| at t > k+1", "median |Δ|"], body)


def section_hnsw(result: dict) -> str:
    rows = hnsw_rows(result["cases"])
    note = next((n for n in result["notes"] if n.startswith("approximate")), "")
    if not rows:
        return f"## Approximate hub selection (hnsw)\n\nNot computed: {note.split(': ', 1)[-1]}.\n\n"
    more = (" Larger N: the next section (a separate run)." if result.get("supplements") else "")
    return ("## Approximate hub selection (hnsw)\n\n`evaluate(..., knn='hnsw')`: hubs chosen from a faiss HNSW "
            "graph, radii and the hub cross pass exact. Over datasets, backbones and sets at the largest N with "
            "these columns (" + ", ".join(f"{d} {at[0]['n']}" for (d,), at in groups(rows, "dataset").items()) +
            f"); min recall@k: the index's, from each run's check on sampled queries.{more}\n\n" +
            hnsw_table(rows) + "\nEvery N (|Δ|: |eP_hnsw − eP| and |eR_hnsw − eR|, over backbones, sets, k and t):"
            "\n\n" + hnsw_by_size(result["cases"]) + "\n")


def section_supplement(result: dict, extra: dict, name: str) -> str:
    """A separate run that adds approximate selection at a larger N (features re-extracted)."""
    rows = hnsw_rows(extra["cases"])
    m, feats = extra["meta"]["machine"], extra["meta"].get("features_machine") or {}
    where = ", ".join(f"{d} {b} N = {at[0]['n']}" for (d, b), at in groups(rows, "dataset", "backbone").items())
    agree = supplement_agreement(result["cases"], extra["cases"])
    main_n = [c["n"] for c in result["cases"] if c.get("hnsw") and "ep" in c["hnsw"]]
    same = (f"On the {agree['cases']} cases both runs computed, its exact values differ from the main run's by at "
            f"most {fmt(agree['p'], digits=4)} (P), {fmt(agree['r'], digits=4)} (R), {fmt(agree['ep'], digits=4)} "
            f"(eP), {fmt(agree['er'], digits=4)} (eR); its features were extracted on `{feats.get('cpu')}` "
            f"({feats.get('cuda') or 'no GPU'}) from the same images, seeds and weights."
            if agree["cases"] else "It shares no case with the main run.")
    timing = [r for r in extra.get("timing", []) if r.get("epr_hnsw_seconds") is not None]
    times = "; ".join(f"{r['dataset']} {r['backbone']} N = {r['n']}, k = t = {r['k']}: eP&R alone "
                      f"{r['epr_seconds']:.1f} s exact, {r['epr_hnsw_seconds']:.1f} s hnsw" for r in timing)
    return (f"## Approximate hub selection at larger N (separate run: `{name}`)\n\n"
            f"The main run computed approximate selection up to N = {max(main_n, default=0)} (`--hnsw_max_n "
            f"{result['meta']['args'].get('hnsw_max_n')}`). This run adds it at {where or 'no N'}, on "
            f"{m['cpu_count']} CPU cores (`{m['cpu']}`, {m.get('cuda') or 'no GPU'}; `{extra['meta']['command']}`, "
            f"{extra['meta']['seconds']:.0f} s). {same}\n\n" +
            (hnsw_table(rows) + "\n" + hnsw_by_size(extra["cases"]) + "\n" if rows else "") +
            (f"Time on that machine (one call each, matched set): {times}.\n\n" if times else ""))


def plot_scatter(cases: list, path: Path) -> None:
    """eP vs P and eR vs R over every case, coloured by set."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    colours = plt.get_cmap("tab10")
    for ax, (exact, approx, name) in zip(axes, (("p", "ep", "precision"), ("r", "er", "recall"))):
        for i, s in enumerate(set_order(cases)):
            at = [c for c in cases if c["set"] == s and finite(c[approx])]
            ax.scatter([c[exact] for c in at], [c[approx] for c in at], s=10, alpha=0.6, color=colours(i % 10), label=s)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlabel(f"exact {name}")
        ax.set_ylabel(f"eP&R {name}")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{name}: every dataset, backbone, N, k, t")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_save_figure(path, fig)
    plt.close(fig)


def plot_diff_vs_t(cases: list, path: Path) -> None:
    """Median (solid) and max (dashed) |diff| over sets vs t, per k, per dataset/backbone (largest N)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = sorted(groups(largest_n(cases), "dataset", "backbone").items())
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 6.5), squeeze=False)
    for j, ((dataset, backbone), at) in enumerate(panels):
        for i, (diff, name) in enumerate((("ep_minus_p", "|eP − P|"), ("er_minus_r", "|eR − R|"))):
            ax = axes[i][j]
            for n_k, (k, at_k) in enumerate(sorted(groups(at, "k").items())):
                by_t = sorted(groups(at_k, "t").items())
                ts = [t for (t,), _ in by_t]
                vals = [[abs(c[diff]) for c in rows if finite(c[diff])] for _, rows in by_t]
                colour = f"C{n_k}"
                ax.plot(ts, [np.median(v) if v else np.nan for v in vals], "o-", color=colour, label=f"k={k[0]} median")
                ax.plot(ts, [max(v) if v else np.nan for v in vals], "x--", color=colour, alpha=0.6, label=f"k={k[0]} max")
            ax.axhline(LIMIT, color="grey", lw=0.8)
            ax.set_ylim(bottom=0)
            ax.set_xlabel("hub threshold t")
            ax.set_ylabel(name)
            ax.set_title(f"{dataset}, {backbone}, N={at[0]['n']}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(path, fig)
    plt.close(fig)


def write_report(result: dict, out: Path, prefix: str, json_path: Path) -> Path:
    """OUT/{prefix}.md and its figures."""
    cases = result["cases"]
    figures = {"scatter": out / f"{prefix}_scatter.png", "diff_vs_t": out / f"{prefix}_diff_vs_t.png"}
    plot_scatter(cases, figures["scatter"])
    plot_diff_vs_t(cases, figures["diff_vs_t"])
    checks = result["checks"]
    text = ["# When can eP&R be trusted? Measured on image features\n\n",
            "Generated by `python -m bench.epr_study` from the numbers in the JSON next to it; every statement below is "
            "computed from them. P, R: exact improved precision and recall (k-NN balls of every sample); eP, eR: "
            "eP&R (Liang et al., ICML 2024): hubs only (k-occurrence >= t), hub balls with radii from the full set "
            "(README, Definitions).\n\n",
            "## Findings (measured here)\n\n" + "".join(f"- {f}\n" for f in findings(result)) + "\n",
            section_machine(result, json_path), section_sets(result["manifest"]), section_summary(cases),
            section_backbone(cases), section_misleads(cases), section_sizes(cases), section_decomposition(cases),
            section_weighted(cases), section_hnsw(result),
            *[section_supplement(result, extra, name) for name, extra in result.get("supplements", {}).items()],
            section_timing(result),
            "## Figures\n\n"
            f"![eP&R vs exact P&R]({figures['scatter'].name})\n\n"
            f"![|difference| vs t]({figures['diff_vs_t'].name})\n\n",
            "## Notes\n\n" + "".join(f"- {n}\n" for n in result["notes"]) +
            "- Each case uses one `evaluate(metrics=('pr', 'epr'))` at the first t of its k and "
            "`evaluate(metrics=('epr',))` at the others, the real set's k-NN graph computed once per N "
            "(`real_knn=`). Checks: " + ", ".join(f"{c['what']} ({c['dataset']}, {c['backbone']}, N={c['n']}): "
                                                  f"{'ok' if c['ok'] else 'DIFFERS'}" for c in checks) + ".\n"
            "- The 1/k-occurrence weights use the k-occurrence of the exact k-NN graphs (`real_k_occurrence` of "
            "the real graph, `fake_k_occurrence`) and the per-hub decisions of the same `evaluate` call.\n"]
    path = out / f"{prefix}.md"
    write_text(path, "".join(text))
    return path


def load_supplements(paths) -> dict:
    """{name shown in the report: result} of separate runs' JSON files (``--supplement``)."""
    return {shown(Path(p)): json.loads(Path(p).read_text()) for p in paths or ()}


def cmd_report(args) -> int:
    """The report again from a run's JSON, with the sections of any ``--supplement`` runs."""
    json_path = Path(args.json)
    result = json.loads(json_path.read_text())
    prefix = report_prefix(result["meta"]["args"].get("toy"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = write_report(dict(result, supplements=load_supplements(args.supplement)), out, prefix, json_path)
    log(f"report {report}")
    return 0

