#!/usr/bin/env python3
"""Images per second of HyP² training steps and of encoding, per backbone, on one device.

Synthetic inputs at each network's own size (googlenet 448, alexnet and resnet 224), random
weights (nothing downloaded), SGD as retrieval.py trains (momentum 0.9, weight decay 5e-4), 20
classes as VOC. Decoding is not included: it runs in DataLoader workers beside the network. The
epoch estimates are for VOC2007 (5,011 training images; encoding 4,952 queries + 5,011 database).

Usage (from the repository root):  python -m bench.hyp2_speed [--device cuda] [--backbones googlenet,alexnet,resnet] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hubness_pr.hyp2.loss import HyP2Loss
from hubness_pr.hyp2.networks import build_network
from hubness_pr.hyp2.zeta import lookup


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, device, batch: int, steps: int, warmup: int, bits: int) -> dict:
    net = build_network(name, bits, pretrained=False, seed=0)
    module = net.module.to(device)
    size = net.prepare.size
    criterion = HyP2Loss(20, bits, lookup(bits, 20).value, beta=0.5).to(device)
    optimizer = torch.optim.SGD([{"params": module.parameters(), "lr": net.lr},
                                 {"params": criterion.parameters(), "lr": 0.02}], momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = (torch.rand(batch, 20, generator=g) < 0.15).float().to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    module.train()
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            started = time.perf_counter()
        loss = criterion(module(x), y).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    train_rate = batch * steps / (time.perf_counter() - started)
    module.eval()
    with torch.inference_mode():
        for step in range(warmup + steps):
            if step == warmup:
                sync(device)
                started = time.perf_counter()
            module(x)
        sync(device)
    encode_rate = batch * steps / (time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"backbone": name, "input": size, "batch": batch, "train_img_per_s": train_rate,
            "encode_img_per_s": encode_rate, "peak_mib": peak,
            "voc2007_epoch_s": 5011 / train_rate, "voc2007_encode_s": (4952 + 5011) / encode_rate}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbones", default="googlenet,alexnet,resnet")
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--hash_bit", type=int, default=48)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    rows = [measure(name, device, args.batch_size, args.steps, args.warmup, args.hash_bit)
            for name in args.backbones.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for r in rows:
        print(f"{r['backbone']:10s} {r['input']}px batch {r['batch']}: train {r['train_img_per_s']:8.1f} img/s, "
              f"encode {r['encode_img_per_s']:8.1f} img/s, peak {r['peak_mib'] or float('nan'):8.0f} MiB; "
              f"VOC2007 epoch {r['voc2007_epoch_s']:.1f} s + encoding {r['voc2007_encode_s']:.1f} s")
    print(f"device {name}, torch {torch.__version__}, cudnn tf32 {torch.backends.cudnn.allow_tf32}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch_version": torch.__version__, "rows": rows,
                                               "numpy_version": np.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
