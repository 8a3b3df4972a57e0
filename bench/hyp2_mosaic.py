#!/usr/bin/env python3
"""HyP² (beta 0.5) against the plain proxy loss (beta 0) on the mosaic, over seeds, with retrieval.py.

Each run is ``retrieval.py --dataset mosaic --backbone pixels`` in this process (same code as the
command line), its figures read back from metrics.json. Random +1/-1 codes (seeded) give the floor.
Writes a JSON summary (--json) and prints a table. Default: K in {16, 32}, 3 seeds, 20 epochs,
one torch thread: about 1.5 minutes on an idle core.

Usage (from the repository root):  python -m bench.hyp2_mosaic [--bits 16,32] [--seeds 0,1,2] [--json FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import cpu_model
from hubness_pr.commands.retrieval import main as retrieval_main
from hubness_pr.hyp2.mosaic import load_mosaic
from hubness_pr.hyp2.ranking import retrieval_scores


def random_codes_map(bits: int, source: str, seed: int = 0) -> float:
    data = load_mosaic(source)
    rng = np.random.default_rng(seed)
    q = np.where(rng.random((len(data.query), bits)) < 0.5, 1, -1).astype(np.int8)
    db = np.where(rng.random((len(data.database), bits)) < 0.5, 1, -1).astype(np.int8)
    return retrieval_scores(q, db, data.query.labels, data.database.labels, data.R).map


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", default="16,32")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--betas", default="0,0.5")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--mosaic_source", default="digits", choices=("digits", "fashion"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for bits in map(int, args.bits.split(",")):
            for beta in map(float, args.betas.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    out = Path(tmp) / f"k{bits}_b{beta}_s{seed}"
                    t0 = time.time()
                    with contextlib.redirect_stdout(io.StringIO()):  # its map: lines; the table says it
                        status = retrieval_main(["--dataset", "mosaic", "--backbone", "pixels", "--hash_bit", str(bits),
                                                 "--beta", str(beta), "--seed", str(seed), "--epochs",
                                                 str(args.epochs), "--mosaic_source", args.mosaic_source,
                                                 "--output", str(out), "--no-progress", "-q"])
                    if status != 0:
                        return status
                    m = json.loads((out / "metrics.json").read_text())
                    runs.append({"hash_bit": bits, "beta": beta, "seed": seed, "map": m["map"], "val_map": m["val_map"],
                                 "best_epoch": m["best_epoch"], "seconds": time.time() - t0})
                    print(f"K {bits:3d}  beta {beta:<4g} seed {seed}  mAP@{m['R']} {m['map']:.4f}  "
                          f"(val {m['val_map']:.4f}, epoch {m['best_epoch']}, {time.time() - t0:.1f} s)", flush=True)
    summary = []
    for bits in sorted({r["hash_bit"] for r in runs}):
        row = {"hash_bit": bits, "random_codes_map": random_codes_map(bits, args.mosaic_source)}
        for beta in sorted({r["beta"] for r in runs}):
            maps = [r["map"] for r in runs if r["hash_bit"] == bits and r["beta"] == beta]
            row[f"beta_{beta:g}"] = {"mean": float(np.mean(maps)), "std": float(np.std(maps)), "maps": maps}
        summary.append(row)
        print(f"K {bits}: random codes {row['random_codes_map']:.4f}; "
              + "; ".join(f"beta {b[5:]} mean {v['mean']:.4f} (std {v['std']:.4f})"
                          for b, v in row.items() if b.startswith("beta_")))
    total = time.time() - started
    print(f"total {total:.0f} s on {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary, "epochs": args.epochs,
                                               "mosaic_source": args.mosaic_source,
                                               "total_seconds": total, "cpu": cpu_model(),
                                               "torch_threads": torch.get_num_threads(),
                                               "torch_version": torch.__version__,
                                               "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
