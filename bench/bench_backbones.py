#!/usr/bin/env python3
"""Benchmark: the time to extract features of 1,000 images with each backbone, on this machine's CPU.

Images: real photos (random 256 x 256 crops of scikit-learn's two sample photos, JPEG, as
``bench.bench_features`` makes them). The backbones whose weights cannot be downloaded here run with
seeded random weights of their own architecture, written to a file and loaded through ``--weights``
(the same network, the same arithmetic: the time does not depend on the weights' values). Each
backbone is first timed on one batch; then it extracts ``--n`` images, or, where that would take
longer than ``--max_seconds``, as many whole batches as fit (the report says how many were measured
and gives the projected time for ``--n`` at the measured rate, marked as projected).

Usage (from the repository root):
    python -m bench.bench_backbones [--n 1000] [--max_seconds 300] [--backbones a,b] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = ("vgg16_random,efficientnet_lite0,inception_fid,dinov2_vits14,dinov2_vitb14,dinov2_vitl14,dinov2_vitg14,"
           "clip_vitb32,clip_vitl14,clip_vitl14_336")


def random_weights(name: str, folder: Path) -> Path | None:
    """A file of seeded random weights for backbone ``name`` (None: it needs none here)."""
    import torch
    torch.manual_seed(0)
    if name == "inception_fid":
        from hubness_pr.extraction.backbones.inception_fid import fid_inception
        state = fid_inception().state_dict()
    elif name.startswith("dinov2_"):
        from hubness_pr.extraction.backbones import dinov2
        state = dinov2.build(name).state_dict()
    elif name.startswith("clip_"):
        import open_clip

        from hubness_pr.extraction.backbones.clip import MODELS
        arch, _, quick_gelu = MODELS[name][:3]
        state = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu).state_dict()
    else:
        return None
    path = folder / f"{name}_random.pth"
    torch.save(state, path)
    return path


def subset(folder: Path, count: int, into: Path) -> Path:
    """A folder holding links to the first ``count`` images of ``folder`` (made once)."""
    if into.exists():
        return into
    into.mkdir()
    for f in sorted(folder.iterdir())[:count]:
        (into / f.name).symlink_to(f)
    return into


def time_backbone(name: str, images: Path, n: int, batch: int, workers: int, max_seconds: float, tmp: Path) -> dict:
    from hubness_pr.extraction.backbones import load_backbone
    from hubness_pr.extraction.extract import extract_features
    from hubness_pr.extraction.images import open_source
    t = time.perf_counter()
    backbone = load_backbone(name, weights=random_weights(name, tmp))
    load = time.perf_counter() - t

    def run(count: int) -> float:
        source = open_source(subset(images, count, tmp / f"{name}_{count}"))
        start = time.perf_counter()
        extract_features(source, backbone, batch_size=batch, num_workers=workers, device="cpu", progress=False)
        return time.perf_counter() - start

    probe = run(batch)
    rate = batch / probe
    count = n if n / rate <= max_seconds else max(batch, int(rate * max_seconds) // batch * batch)
    seconds = run(count)
    return {"backbone": name, "dim": backbone.dim, "input_size": backbone.meta.get("input_size"),
            "random_weights": name not in ("vgg16_random", "efficientnet_lite0"), "load_seconds": load,
            "measured_images": count, "measured_seconds": seconds, "images_per_second": count / seconds,
            "seconds_for_n": seconds * n / count, "projected": count != n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="images (the time reported is for this many)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--max_seconds", type=float, default=300.0,
                   help="measure fewer images (whole batches) where n would take longer; the time is then projected")
    p.add_argument("--backbones", default=DEFAULT)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    import torch

    from bench.bench_features import make_images
    from bench.common import cpu_model, write_text
    info = {"n": args.n, "batch_size": args.batch_size, "num_workers": args.num_workers, "cpu": cpu_model(),
            "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "images": "256x256 JPEG crops of scikit-learn's sample photos", "max_seconds": args.max_seconds,
            "load_average_before": os.getloadavg()}
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "jpg", args.n, "jpg")
        for name in args.backbones.split(","):
            print(f"timing {name} ...", file=sys.stderr, flush=True)
            rows.append(time_backbone(name, tmp / "jpg", args.n, args.batch_size, args.num_workers,
                                      args.max_seconds, tmp))
    info["load_average_after"] = os.getloadavg()
    print(f"\n{args.n} images, {info['cpu']}, {info['cores']} cores, torch {info['torch']}, batch {args.batch_size}, "
          f"{args.num_workers} decoding workers, CPU")
    print(f"{'backbone':<22} {'dim':>5} {'input':>6} {'img/s':>8} {'s for ' + str(args.n):>12}  measured on")
    for r in rows:
        note = f"{r['measured_images']} images" + (" (projected)" if r["projected"] else "")
        print(f"{r['backbone']:<22} {r['dim']:>5} {r['input_size'] or '':>6} {r['images_per_second']:>8.2f} "
              f"{r['seconds_for_n']:>12.1f}  {note}")
    if args.json:
        write_text(args.json, json.dumps({"info": info, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
