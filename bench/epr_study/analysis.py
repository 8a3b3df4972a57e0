"""What the report says, computed from the cases: groupings, the worst differences, the (k, t) that
keep eP&R near the exact values, rankings and inverted defects, the weighted variant, the approximate
selection's cases, and the findings (rule statements generated from the numbers)."""
from __future__ import annotations

import numpy as np

from bench.common import fmt
from bench.epr_study.config import LIMIT, SETS, SIGNIFICANT


def finite(x) -> bool:
    return x is not None and np.isfinite(x)


def worst(row: dict) -> float:
    """max(|eP - P|, |eR - R|); +inf where eP&R is undefined (no hub)."""
    values = (row["ep_minus_p"], row["er_minus_r"])
    return max(abs(v) for v in values) if all(finite(v) for v in values) else float("inf")


def largest_n(cases: list) -> list:
    """The cases at the largest N of each dataset."""
    top = {}
    for c in cases:
        top[c["dataset"]] = max(top.get(c["dataset"], 0), c["n"])
    return [c for c in cases if c["n"] == top[c["dataset"]]]


def groups(cases: list, *keys) -> dict:
    out = {}
    for c in cases:
        out.setdefault(tuple(c[k] for k in keys), []).append(c)
    return out


def kt_pairs(cases: list) -> list:
    return sorted({(c["k"], c["t"]) for c in cases})


def set_order(cases: list) -> list:
    present = {c["set"] for c in cases}
    return [s for s in SETS if s in present]


def summary_rows(cases: list) -> tuple[list, list, dict]:
    """Worst max(|eP-P|, |eR-R|) over datasets/backbones at the largest N, per (k, t) and set."""
    top = largest_n(cases)
    sets = set_order(top)
    worst_of = {}
    for c in top:
        key = (c["k"], c["t"], c["set"])
        worst_of[key] = max(worst_of.get(key, 0.0), worst(c))
    return kt_pairs(top), sets, worst_of


def kendall_tau(a: list, b: list) -> float:
    """Kendall's tau-a of two score lists (ties count 0)."""
    n = len(a)
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i in range(n) for j in range(i + 1, n))
    return float(s / (n * (n - 1) / 2)) if n > 1 else float("nan")


def reversed_pairs(cases: list, exact: str, approx: str) -> list:
    """Pairs of sets whose exact values differ by at least SIGNIFICANT and whose eP&R values are in
    the opposite order."""
    out = []
    for i, a in enumerate(cases):
        for b in cases[i + 1:]:
            d_exact, d_approx = a[exact] - b[exact], a[approx] - b[approx]
            if abs(d_exact) >= SIGNIFICANT and finite(d_approx) and d_exact * d_approx < 0:
                out.append((a["set"], b["set"], d_exact, d_approx))
    return out


def ranking_rows(cases: list) -> list:
    """Per dataset, backbone, k, t at the largest N: tau and reversed pairs for P and R."""
    rows = []
    for (dataset, backbone, k, t), at in sorted(groups(largest_n(cases), "dataset", "backbone", "k", "t").items()):
        at = [c for c in at if finite(c["ep"]) and finite(c["er"])]
        rows.append({"dataset": dataset, "backbone": backbone, "k": k, "t": t,
                     "tau_p": kendall_tau([c["p"] for c in at], [c["ep"] for c in at]),
                     "tau_r": kendall_tau([c["r"] for c in at], [c["er"] for c in at]),
                     "reversed_p": reversed_pairs(at, "p", "ep"), "reversed_r": reversed_pairs(at, "r", "er")})
    return rows


def inversions(cases: list) -> list:
    """Defects whose effect against the matched set has the opposite sign under eP&R:
    (case, metric, exact effect, eP&R effect) where |exact effect| >= SIGNIFICANT."""
    out = []
    for key, at in groups(largest_n(cases), "dataset", "backbone", "k", "t").items():
        base = next((c for c in at if c["set"] == "matched"), None)
        if base is None:
            continue
        for c in at:
            for exact, approx, metric in (("p", "ep", "precision"), ("r", "er", "recall")):
                d_exact, d_approx = c[exact] - base[exact], c[approx] - base[approx]
                if abs(d_exact) >= SIGNIFICANT and finite(d_approx) and d_exact * d_approx < 0:
                    out.append((c, metric, d_exact, d_approx))
    return out


def worst_weighted(c: dict) -> float:
    values = (c["wep_minus_p"], c["wer_minus_r"])
    return max(abs(v) for v in values) if all(finite(v) for v in values) else float("inf")


def weighted_cases(cases: list) -> list:
    """Cases at the largest N where both eP&R and its 1/k-occurrence-weighted variant are defined."""
    return [c for c in largest_n(cases) if np.isfinite(worst(c)) and np.isfinite(worst_weighted(c))]


def hnsw_rows(cases: list) -> list:
    """The cases at the largest N that have the approximate-selection columns."""
    return largest_n([c for c in cases if c.get("hnsw") and "ep" in c["hnsw"]])


def worst_hnsw(c: dict) -> float:
    h = c["hnsw"]
    values = (h["ep_minus_p"], h["er_minus_r"])
    return max(abs(v) for v in values) if all(finite(v) for v in values) else float("inf")


def supplement_agreement(main: list, extra: list) -> dict:
    """Largest |difference| of P, R, eP, eR between the cases two runs share (re-extracted features
    against the main run's), and how many they share."""
    index = {(c["dataset"], c["backbone"], c["set"], c["n"], c["k"], c["t"]): c for c in main}
    keys = [(c["dataset"], c["backbone"], c["set"], c["n"], c["k"], c["t"]) for c in extra]
    shared = [(index[key], c) for key, c in zip(keys, extra) if key in index]
    out = {"cases": len(shared)}
    for name in ("p", "r", "ep", "er"):
        diffs = [abs(a[name] - b[name]) for a, b in shared if finite(a[name]) and finite(b[name])]
        out[name] = max(diffs) if diffs else None
    return out


def findings(result: dict) -> list:
    """Rule statements generated from the numbers."""
    cases = result["cases"]
    pairs, sets, worst_of = summary_rows(cases)
    out = []
    good = [(k, t) for k, t in pairs if all(worst_of[(k, t, s)] < LIMIT for s in sets)]
    if good:
        out.append(f"Measured here, at each dataset's largest N, (k, t) = {', '.join(map(str, good))} kept both "
                   f"|eP−P| and |eR−R| below {LIMIT} on every set, dataset and backbone.")
    else:
        best = max(pairs, key=lambda kt: (sum(worst_of[(*kt, s)] < LIMIT for s in sets),
                                          -max(worst_of[(*kt, s)] for s in sets)))
        n_ok = sum(worst_of[(*best, s)] < LIMIT for s in sets)
        out.append(f"Measured here, no (k, t) kept both |eP−P| and |eR−R| below {LIMIT} on every set; the best, "
                   f"(k, t) = {best}, did on {n_ok} of {len(sets)} sets (worst "
                   f"{fmt(max(worst_of[(*best, s)] for s in sets))}).")
    for s in sets:
        ok = [kt for kt in pairs if worst_of[(*kt, s)] < LIMIT]
        out.append(f"`{s}`: " + (f"below {LIMIT} at (k, t) = {', '.join(map(str, ok))}." if ok else
                                 f"no (k, t) below {LIMIT} (smallest worst case "
                                 f"{fmt(min(worst_of[(*kt, s)] for kt in pairs))})."))
    dp = [c["ep_minus_p"] for c in cases if finite(c["ep_minus_p"])]
    dr = [c["er_minus_r"] for c in cases if finite(c["er_minus_r"])]
    if dp and dr:
        out.append(f"Over all {len(cases)} cases, eP > P in {np.mean(np.array(dp) > 0):.0%} and eR > R in "
                   f"{np.mean(np.array(dr) > 0):.0%}; median eP−P {np.median(dp):+.3f}, median eR−R "
                   f"{np.median(dr):+.3f}.")
    inv = inversions(cases)
    total = len(groups(largest_n(cases), "dataset", "backbone", "k", "t"))
    out.append(f"The direction of a defect (against `matched`, exact effect >= {SIGNIFICANT}) was inverted by eP&R "
               f"in {len(inv)} (set, metric) cases over {total} (dataset, backbone, k, t) settings at the largest N"
               + (f", most often for {max(set_order([c for c, *_ in inv]), key=lambda s: sum(c['set'] == s for c, *_ in inv))}."
                  if inv else "."))
    ranks = ranking_rows(cases)
    changed = [r for r in ranks if r["reversed_p"] or r["reversed_r"]]
    out.append(f"The ranking of the sets by eP&R reversed at least one pair of sets that the exact values separate "
               f"by >= {SIGNIFICANT} in {len(changed)} of {len(ranks)} (dataset, backbone, k, t) settings.")
    weighted = weighted_cases(cases)
    if weighted:
        closer = sum(worst_weighted(c) < worst(c) for c in weighted)
        out.append(f"Weighting each hub by 1/k-occurrence (same hubs, same cost) gave a smaller max(|·−P|, |·−R|) "
                   f"than eP&R in {closer} of {len(weighted)} cases at the largest N (median "
                   f"{np.median([worst(c) for c in weighted]):.3f} → "
                   f"{np.median([worst_weighted(c) for c in weighted]):.3f}).")
    for name, extra in result.get("supplements", {}).items():
        rows = hnsw_rows(extra["cases"])
        moved = [abs(c["hnsw"][key]) for c in rows for key in ("ep_minus_exact_selection", "er_minus_exact_selection")
                 if finite(c["hnsw"][key])]
        if moved:
            at = ", ".join(f"{d} {b} N = {g[0]['n']}" for (d, b), g in groups(rows, "dataset", "backbone").items())
            out.append(f"Approximate (HNSW) hub selection at {at} (separate run) moved eP or eR by at most "
                       f"{max(moved):.3f} from exact hub selection over {len(rows)} cases (median {np.median(moved):.4f}).")
    ratios = [r["epr_seconds"] / r["pr_seconds"] for r in result["timing"] if r["pr_seconds"]]
    if ratios:
        span = f"{min(ratios):.2f}" + (f"–{max(ratios):.2f}" if max(ratios) > min(ratios) else "")
        out.append(f"eP&R alone took {span} of the time of exact P&R alone (one timed call each).")
    return out

