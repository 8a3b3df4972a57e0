"""Step 1, ``extract``: the datasets' images, the real set and the generated sets with known defects
(held-out images, dropped and over-represented classes, pixel noise, blur, memorised copies,
mixtures), and their features through each backbone (the toolkit's extraction, or pixels)."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import write_text
from bench.epr_study.config import (BACKBONE_SEED, BLUR, DATA_SEED, DATASETS, DROPPED, NOISE, NOISE_SEED,
                                    OVERREP_SHARE, PIXEL_BACKBONES, PROJECTION_SEED, SETS, SIDE, TOY, TOY_SKIP,
                                    atomic_save_npy, feature_file, log, machine, resolved_device)


def load_dataset(name: str, fashion_dir=None) -> tuple[np.ndarray, np.ndarray, list, np.ndarray, str]:
    """(grey items (n, h, w) uint8, classes (n,), class names, indices the real set is drawn from,
    description of that pool)."""
    from hubness_pr.hyp2.mosaic import FASHION_DIR, source_items
    items, classes, names = source_items(name, fashion_dir or FASHION_DIR)
    classes = np.asarray(classes, dtype=np.int64)
    if name == "fashion":
        return items, classes, names, np.arange(60000), "Fashion-MNIST's 60,000 train images"
    half = np.random.default_rng([DATA_SEED, 1]).permutation(len(items))[:(len(items) + 1) // 2]
    return items, classes, names, np.sort(half), f"a seeded half of the {len(items)} digits"


def upscale(items: np.ndarray) -> np.ndarray:
    """(n, h, w) grey uint8 -> (n, SIDE, SIDE) with PIL's bilinear resize (a copy when already SIDE)."""
    from PIL import Image
    if items.shape[1:] == (SIDE, SIDE):
        return items.copy()
    return np.stack([np.asarray(Image.fromarray(img).resize((SIDE, SIDE), Image.BILINEAR)) for img in items])


def transform(images: np.ndarray, kind: str, value: float, seed: int) -> np.ndarray:
    """Gaussian pixel noise (sigma on 0..255, rounded and clipped) or PIL Gaussian blur (radius)."""
    if kind == "noise":
        noise = np.random.default_rng([NOISE_SEED, seed]).normal(0.0, value, images.shape)
        return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)
    from PIL import Image, ImageFilter
    blur = ImageFilter.GaussianBlur(radius=value)
    return np.stack([np.asarray(Image.fromarray(img).filter(blur)) for img in images])


def quotas(total: int, weights: dict, available: dict) -> dict:
    """Integer counts per class summing to ``total`` in proportion to ``weights`` (largest
    remainder), each capped at what is ``available``."""
    keys = [c for c in weights if weights[c] > 0]
    raw = np.array([weights[c] for c in keys], dtype=np.float64)
    raw = raw / raw.sum() * total
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[:total - counts.sum()]:
        counts[i] += 1
    return {c: min(int(n), int(available.get(c, 0))) for c, n in zip(keys, counts)}


def take_per_class(order: np.ndarray, classes: np.ndarray, counts: dict) -> np.ndarray:
    """The first ``counts[c]`` items of ``order`` of each class c (so that sets drawn from one seeded
    order share images, and fewer clean images need features)."""
    return np.concatenate([order[classes[order] == c][:n] for c, n in counts.items()])


def class_counts(indices: np.ndarray, classes: np.ndarray) -> dict:
    values, counts = np.unique(classes[indices], return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts)}


def split_real(classes: np.ndarray, candidates: np.ndarray, max_n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A stratified random real set of min(max_n, |candidates|) images from ``candidates``, in
    random order, and the held-out pool: every other image."""
    size = min(max_n, len(candidates))
    have = class_counts(candidates, classes)
    real = rng.permutation(take_per_class(rng.permutation(candidates), classes, quotas(size, have, have)))
    pool = np.setdiff1d(np.arange(len(classes)), real)
    return real, pool


def clean_spec(items: np.ndarray, classes: np.ndarray) -> dict:
    """A set of untransformed images: row i is item ``items[i]``."""
    return {"block": np.zeros(len(items), np.int64), "ref": items.astype(np.int64), "item": items.astype(np.int64),
            "label": classes[items]}


def shuffled(spec: dict, rng) -> dict:
    order = rng.permutation(len(spec["ref"]))
    return {key: value[order] for key, value in spec.items()}


def joined(a: dict, b: dict) -> dict:
    return {key: np.concatenate([a[key], b[key]]) for key in a}


def head(spec: dict, n: int, start: int = 0) -> dict:
    return {key: value[start:start + n] for key, value in spec.items()}


def transform_table(noise=NOISE, blur=BLUR) -> dict:
    """{set: (kind, parameter)}: the pixel changes of the matched set's images, in block order."""
    return {"noise_weak": ("noise", float(noise[0])), "noise_strong": ("noise", float(noise[1])),
            "blur_weak": ("blur", float(blur[0])), "blur_strong": ("blur", float(blur[1]))}


def build_sets(classes: np.ndarray, names: list, candidates: np.ndarray, max_n: int, set_names: tuple,
               transforms: dict) -> tuple[dict, dict]:
    """Every set's rows and how each was made. Returns ({set: spec}, {set: description}); a spec
    holds per row ``block`` (0: clean image, i: the i-th of ``transforms``), ``ref`` (the item
    for a clean row, the matched row for a transformed one), ``item`` (source image) and ``label``."""
    rng = np.random.default_rng([DATA_SEED, 2])
    real, pool = split_real(classes, candidates, max_n, rng)
    order = rng.permutation(pool)
    have = class_counts(pool, classes)
    real_mix = class_counts(real, classes)
    specs, how = {"real": clean_spec(real, classes)}, {}

    size = min(max_n, len(pool))
    specs["matched"] = shuffled(clean_spec(take_per_class(order, classes, quotas(size, real_mix, have)), classes), rng)
    how["matched"] = "held-out images, the real set's class mix (stratified)"

    dropped = sorted(int(c) for c in rng.choice(sorted(real_mix), DROPPED, replace=False))
    kept = {c: n for c, n in real_mix.items() if c not in dropped}
    size = min(max_n, sum(have.get(c, 0) for c in kept))
    specs["drop3"] = shuffled(clean_spec(take_per_class(order, classes, quotas(size, kept, have)), classes), rng)
    how["drop3"] = (f"held-out images of {len(kept)} classes only (dropped: {', '.join(names[c] for c in dropped)}), "
                    f"in the real set's proportions")

    big = int(rng.choice(sorted(real_mix)))
    rest = sum(n for c, n in have.items() if c != big)
    size = int(min(max_n, have.get(big, 0) / OVERREP_SHARE, rest / (1 - OVERREP_SHARE)))
    wanted = {c: (OVERREP_SHARE if c == big else (1 - OVERREP_SHARE) / (len(real_mix) - 1)) for c in real_mix}
    specs["overrep"] = shuffled(clean_spec(take_per_class(order, classes, quotas(size, wanted, have)), classes), rng)
    how["overrep"] = (f"held-out images, class '{names[big]}' {OVERREP_SHARE:.0%} of the set, "
                      f"the other classes uniform")

    matched = specs["matched"]
    for code, (name, (kind, value)) in enumerate(transforms.items(), start=1):
        if name in set_names:
            specs[name] = {"block": np.full(len(matched["ref"]), code), "ref": np.arange(len(matched["ref"])),
                           "item": matched["item"], "label": matched["label"]}
            how[name] = (f"the matched set's images with Gaussian pixel noise, sigma {value:g} on 0..255 "
                         f"(rounded, clipped)" if kind == "noise" else
                         f"the matched set's images blurred: PIL GaussianBlur(radius={value:g}) on the "
                         f"{SIDE}x{SIDE} image")

    size = len(real)
    copies = real[rng.integers(0, len(real), size)]
    specs["memorised"] = clean_spec(copies, classes)
    how["memorised"] = ("exact copies of real-set images (the same pixels, so the same features), drawn with "
                        "replacement from the whole real set: at N below its size most copies are of real images "
                        "outside the evaluated real subset, as when a memorising generator is evaluated on a "
                        "subsample of its training set")

    half = len(matched["ref"]) // 2
    if "noise_strong" in specs:
        specs["mix_matched_noise"] = shuffled(joined(head(matched, half),
                                                     head(specs["noise_strong"], len(matched["ref"]) - half, half)),
                                              rng)
        how["mix_matched_noise"] = ("50 % matched rows + 50 % noise_strong rows (the noisy versions of the "
                                    "other matched images: no image twice)")
    size = min(len(matched["ref"]), len(copies))
    specs["mix_matched_memorised"] = shuffled(joined(head(matched, size // 2),
                                                     head(specs["memorised"], size - size // 2)), rng)
    how["mix_matched_memorised"] = "50 % matched rows + 50 % memorised rows"
    keep = ("real",) + tuple(s for s in set_names if s in specs)
    return {s: specs[s] for s in keep}, {s: how[s] for s in keep if s != "real"}


def image_blocks(specs: dict, grey: np.ndarray, transforms: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """The images that need features, as one (n, SIDE, SIDE) grey array: the clean images in use
    (sorted by item), then each transform of the matched set present. Returns (images, clean items,
    {block code: first row})."""
    clean = np.unique(np.concatenate([s["ref"][s["block"] == 0] for s in specs.values()]))
    parts, starts, row = [grey[clean]], {0: 0}, len(clean)
    matched = grey[specs["matched"]["item"]] if "matched" in specs else None
    for code, (name, (kind, value)) in enumerate(transforms.items(), start=1):
        if name in specs:
            parts.append(transform(matched, kind, value, code))
            starts[code] = row
            row += len(matched)
    return np.concatenate(parts), clean, starts


def feature_rows(spec: dict, clean: np.ndarray, starts: dict) -> np.ndarray:
    """Row of each of the set's images in the extracted block array."""
    rows = np.searchsorted(clean, spec["ref"])
    for code, start in starts.items():
        if code:
            rows = np.where(spec["block"] == code, start + spec["ref"], rows)
    return rows


def pixel_features(images: np.ndarray, backbone: str) -> tuple[np.ndarray, dict]:
    """(features, meta) of grey (n, SIDE, SIDE) uint8 images by one of :data:`PIXEL_BACKBONES`."""
    x = images.astype(np.float32) / 255.0
    if backbone == "pixels_pool2":
        pooled = x.reshape(len(x), SIDE // 2, 2, SIDE // 2, 2).mean(axis=(2, 4))
        return pooled.reshape(len(x), -1), {"backbone": backbone, "layer": "2x2 average pool of the grey pixels"}
    projection = np.random.default_rng(PROJECTION_SEED).normal(0.0, 1 / 16, (SIDE * SIDE, 256)).astype(np.float32)
    return x.reshape(len(x), -1) @ projection, {"backbone": backbone, "weights_seed": PROJECTION_SEED,
                                                 "layer": "Gaussian random projection of the grey pixels to 256-d"}


def extract_features(images: np.ndarray, backbone: str, args, tmp: Path) -> tuple[np.ndarray, dict, float]:
    """Features of grey images (repeated to RGB uint8 in a temporary .npy) through the toolkit."""
    if backbone in PIXEL_BACKBONES:
        t = time.perf_counter()
        feats, meta = pixel_features(images, backbone)
        return np.ascontiguousarray(feats, dtype=np.float32), meta, time.perf_counter() - t
    from hubness_pr.extraction.extract import BackboneSpec, extract_path
    path = tmp / "images.npy"
    if not path.exists():
        np.save(path, np.repeat(images[..., None], 3, axis=3))
    t = time.perf_counter()
    result, meta = extract_path(path, BackboneSpec(backbone, seed=BACKBONE_SEED), num_workers=args.num_workers,
                                device=args.device, batch_size=args.batch_size, half=args.half,
                                progress=args.progress)
    seconds = time.perf_counter() - t
    if result.features.shape[0] != len(images) or result.skipped:
        raise RuntimeError(f"{backbone}: {result.features.shape[0]} features for {len(images)} images")
    return result.features, meta, seconds


def extract_dataset(name: str, args, set_names: tuple, manifest: dict) -> None:
    """Sets, images and features of one dataset into ``args.out``; updates ``manifest``."""
    out = Path(args.out)
    items, classes, names, candidates, pool_text = load_dataset(name, args.fashion_dir)
    specs, how = build_sets(classes, names, candidates, args.max_n, set_names, args.transforms)
    grey = upscale(items)
    images, clean, starts = image_blocks(specs, grey, args.transforms)
    log(f"{name}: {len(items)} images, real {len(specs['real']['ref'])}, "
        f"{len(images)} to extract ({len(clean)} clean, {len(images) - len(clean)} transformed)")
    for set_name, spec in specs.items():
        atomic_save_npy(out / f"{name}_{set_name}_labels.npy", spec["label"].astype(np.int64))
        atomic_save_npy(out / f"{name}_{set_name}_items.npy", spec["item"].astype(np.int64))
    entry = manifest["datasets"].setdefault(name, {})
    entry.update(images=len(items), classes=names, image_side=SIDE,
                 upscale=f"PIL bilinear to {SIDE}x{SIDE}, grey repeated to RGB",
                 real={"size": len(specs["real"]["ref"]), "drawn_from": pool_text,
                       "how": "stratified random sample, random order"},
                 held_out=int(len(classes) - len(specs["real"]["ref"])),
                 sets={s: {"size": int(len(specs[s]["ref"])), "how": how[s]} for s in how},
                 extracted={"clean": int(len(clean)), "transformed": int(len(images) - len(clean))},
                 transforms={k: {"kind": v[0], "value": v[1]} for k, v in args.transforms.items() if k in specs},
                 seeds={"data": DATA_SEED, "noise": NOISE_SEED, "backbone": BACKBONE_SEED},
                 features={})
    with tempfile.TemporaryDirectory(dir=out, prefix=".images_") as tmp:
        for backbone in args.backbones:
            feats, meta, seconds = extract_features(images, backbone, args, Path(tmp))
            log(f"{name} {backbone}: {len(images)} images in {seconds:.1f} s ({len(images) / seconds:.0f}/s)")
            for set_name, spec in specs.items():
                atomic_save_npy(feature_file(out, name, backbone, set_name),
                                np.ascontiguousarray(feats[feature_rows(spec, clean, starts)]))
            manifest["backbones"][backbone] = {k: v for k, v in meta.items() if k not in ("source", "skipped")}
            entry["features"][backbone] = {"dim": int(feats.shape[1]), "images": int(len(images)),
                                           "seconds": round(seconds, 2), "device": resolved_device(args.device)}


def cmd_extract(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = (TOY["dataset"],) if args.toy else DATASETS if args.dataset == "all" else (args.dataset,)
    if args.toy:
        args.max_n, args.backbones = TOY["max_n"], list(TOY["backbones"])
        args.num_workers = 0 if args.num_workers is None else args.num_workers
    set_names = tuple(s for s in SETS if not (args.toy and s in TOY_SKIP))
    args.transforms = transform_table(args.noise, args.blur)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest.setdefault("datasets", {})
    manifest.setdefault("backbones", {})
    manifest.update(toy=bool(args.toy), max_n=args.max_n, sets=list(set_names),
                    machine=machine(), command="extract " + " ".join(args.argv))
    for name in datasets:
        extract_dataset(name, args, set_names, manifest)
        write_text(path, json.dumps(manifest, indent=1, default=str))
    log(f"features in {out}")
    return 0

