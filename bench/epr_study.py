#!/usr/bin/env python3
"""When can eP&R be trusted? A study on real image features with generated sets of known defects.

Two steps, so that the feature extraction can run on a GPU machine apart from the metrics:

1. ``extract``: images of Fashion-MNIST (the Debian package ``dataset-fashion-mnist``) and of
   scikit-learn's digits, a seeded real set, and "generated" sets with known defects made from
   held-out images (a matched set, mode collapse, an over-represented class, pixel noise, blur,
   memorised copies of the real set, and mixtures); features of each set through each backbone::

       python -m bench.epr_study extract --out FEATDIR [--dataset fashion|digits|all]
           [--backbones efficientnet_lite0,vgg16_random] [--device auto] [--max_n 20000]

   writes ``FEATDIR/{dataset}_{backbone}_{set}.npy`` (float32 features, one row per image),
   ``FEATDIR/{dataset}_{set}_labels.npy`` (class per row), ``FEATDIR/{dataset}_{set}_items.npy``
   (index of each row's source image in the dataset: Fashion's 60k train images then its 10k test
   images; scikit-learn's order for digits) and ``FEATDIR/manifest.json`` (sizes, seeds,
   transforms, backbone meta, timings). Only the clean images in use and the four transformed sets
   go through the networks; every other set is a selection of rows of those features. Nothing is
   downloaded.

2. ``run``: exact P&R, eP&R with exact hub selection and (where ``hubness_pr.evaluate`` accepts
   ``knn='hnsw'``) with approximate hub selection, for every dataset, backbone, set, size N, k and
   hub threshold t in {k-1, k, k+1, 2k}::

       python -m bench.epr_study run --features FEATDIR [--sizes 1000,5000,20000] [--ks 3,5,10]
           [--out docs] [--json bench/results/epr_study.json] [--knn exact,hnsw] [--toy]

   writes ``OUT/epr_study.md`` (tables, findings generated from the numbers), figures
   ``OUT/epr_study_*.png`` and the raw numbers as JSON: ``cases``, one record per (dataset,
   backbone, set, N, k, t) with ``p``, ``r`` (exact), ``ep``, ``er`` (eP&R), ``ep_minus_p``,
   ``er_minus_r``, hub counts and fractions, ``wep``, ``wer`` (hubs weighted by 1/k-occurrence),
   ``hub_fakes_in_real_manifold`` and ``hnsw`` (approximate selection); ``timing`` (exact P&R
   alone vs eP&R alone); ``checks``; ``notes``; ``meta`` (machines, versions, settings).
   N is capped per dataset at its smallest set (digits: a few hundred), so every set is compared
   at the same N. ``--hnsw_max_n`` (default 5000) limits the approximate selection, which costs
   more than the exact one on a CPU at these sizes (faiss builds two indexes per call).
   ``--supplement OTHER.json`` (repeatable) adds a section for another run's numbers (approximate
   selection at a larger N run on another machine: its own table, and how far its exact values are
   from this run's on the cases both computed).

3. ``report``: the report again from a run's JSON (``--json``, ``--supplement``, ``--out``), without
   computing; ``meta.provenance`` in the JSON, where present, replaces the generated line on the
   commit and command (a run made elsewhere from a copy of the code).

Extraction on a GPU machine: pass ``--fashion_dir`` where Fashion-MNIST's .gz files were carried,
and ``--num_workers`` up to the cores there (image decoding and resizing run in those workers).

``--toy`` (both steps): digits only, N = 80, k = 3, t in {2, 3}, efficientnet_lite0, the weak
transforms left out; under a minute on a 2-core CPU (tests/test_epr_study.py). Its outputs are
named ``epr_study_toy*``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

DATASETS = ("fashion", "digits")
BACKBONES = ("efficientnet_lite0", "vgg16_random")
# features without a network, to see whether a finding is one of the CNN features (extract --backbones):
# 2x2 average-pooled pixels of the SIDE x SIDE grey image (256-d, 0..1), and a seeded Gaussian random
# projection of its pixels (1024 -> 256, entries N(0, 1/256))
PIXEL_BACKBONES = ("pixels_pool2", "pixels_proj")
PROJECTION_SEED = 11
SIDE = 32                   # images are upscaled to SIDE x SIDE grey, then repeated to RGB
DATA_SEED = 2024            # real / held-out split and every set's composition and order
NOISE_SEED = 7              # pixel noise
BACKBONE_SEED = 0           # vgg16_random's weights
DROPPED = 3                 # classes left out by drop3
OVERREP_SHARE = 0.25        # share of the over-represented class in overrep
NOISE = (12.0, 40.0)        # sigma on 0..255 of noise_weak, noise_strong (--noise)
BLUR = (0.7, 1.5)           # PIL GaussianBlur radius of blur_weak, blur_strong on the SIDE x SIDE image (--blur)
SETS = ("matched", "drop3", "overrep", "noise_weak", "noise_strong", "blur_weak", "blur_strong", "memorised",
        "mix_matched_noise", "mix_matched_memorised")
TOY_SKIP = ("noise_weak", "blur_weak")
TOY = {"dataset": "digits", "max_n": 80, "backbones": ("efficientnet_lite0",), "sizes": (80,), "ks": (3,)}
LIMIT = 0.02                # |eP - P| and |eR - R| below this count as "tracks the exact value"
SIGNIFICANT = 0.02          # an exact difference between two sets at least this large is a real effect
_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr, with the seconds since start."""
    print(f"[epr_study {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# files

def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file beside ``path``, then os.replace."""
    from hubness_pr.io.outputs import atomic_write
    with atomic_write(path, "wb") as handle:
        np.save(handle, array)


def atomic_write_text(path: Path, text: str) -> None:
    from hubness_pr.io.outputs import atomic_write
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_save_figure(path: Path, fig) -> None:
    from hubness_pr.io.outputs import atomic_write
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def feature_file(folder: Path, dataset: str, backbone: str, name: str) -> Path:
    return Path(folder) / f"{dataset}_{backbone}_{name}.npy"


def machine() -> dict:
    """The machine and versions, for the report."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        from hubness_pr.version import __version__
        info["toolkit"] = __version__
    except ImportError:
        pass
    try:
        import faiss
        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = head + (" (working tree modified)" if dirty else "") if head else None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


# ----------------------------------------------------------------------------------------------
# extract: images and sets

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
    from hubness_pr.extraction.extract import extract_path
    path = tmp / "images.npy"
    if not path.exists():
        np.save(path, np.repeat(images[..., None], 3, axis=3))
    t = time.perf_counter()
    result, meta = extract_path(path, backbone=backbone, backbone_seed=BACKBONE_SEED, num_workers=args.num_workers,
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


def resolved_device(device: str) -> str:
    from hubness_pr.engine.devices import resolve_device
    return str(resolve_device(device))


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
        atomic_write_text(path, json.dumps(manifest, indent=1, default=str))
    log(f"features in {out}")
    return 0


# ----------------------------------------------------------------------------------------------
# run: the metrics

def thresholds(k: int, toy: bool) -> tuple:
    """Hub thresholds t studied at k: {k-1, k, k+1, 2k} ({k-1, k} for --toy), t >= 1."""
    ts = (k - 1, k) if toy else (k - 1, k, k + 1, 2 * k)
    return tuple(sorted({t for t in ts if t >= 1}))


class Hnsw:
    """Approximate hub selection through ``evaluate(..., knn='hnsw')``, where the library has it.

    The HNSW graphs do not depend on t: :meth:`cases` builds them once per (real, fake, k), at the
    first t, and passes the hubs that their k-occurrence gives at the other t as ``hubs=`` (the same
    exact steps after selection), where ``evaluate`` accepts it; else one ``knn='hnsw'`` call per t.
    """

    def __init__(self, wanted: bool, max_n: int | None = None):
        self.enabled, self.note = wanted, None if wanted else "not requested (--knn)"
        self.given_hubs, self.max_n = True, max_n

    def _disable(self, note: str) -> None:
        self.enabled, self.note = False, note
        log(note)

    def __call__(self, real, fake, k: int, t: int, device) -> dict | None:
        """One ``knn='hnsw'`` run: {'epr', 'seconds', 'report', occurrences} or {'error'}; None when off."""
        import hubness_pr
        if not self.enabled:
            return None
        start = time.perf_counter()
        try:
            ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, knn="hnsw", device=device,
                                  progress=False)
        except TypeError as exc:
            return self._disable(f"hubness_pr.evaluate does not accept knn='hnsw' here ({exc})")
        except ImportError as exc:
            return self._disable(f"knn='hnsw' unavailable: {exc}")
        except ValueError as exc:
            return {"error": str(exc)}
        return {"epr": ev.epr, "seconds": time.perf_counter() - start, "report": ev.params.get("knn"),
                "real_occurrence": ev.real_k_occurrence, "fake_occurrence": ev.fake_k_occurrence}

    def cases(self, real, fake, k: int, ts: tuple, device) -> dict:
        """{t: result of :meth:`__call__`} for every t (empty when off or N > ``max_n``)."""
        import hubness_pr
        if self.max_n is not None and len(real) > self.max_n:
            return {}
        first = self(real, fake, k, ts[0], device)
        if first is None:
            return {}
        out = {ts[0]: first}
        occ_r, occ_f = first.get("real_occurrence"), first.get("fake_occurrence")
        for t in ts[1:]:
            if self.given_hubs and occ_r is not None and occ_f is not None:
                start = time.perf_counter()
                try:
                    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, device=device,
                                          hubs=(occ_r >= t, occ_f >= t), progress=False)
                    out[t] = {**first, "epr": ev.epr, "seconds": None,
                              "seconds_given_hubs": time.perf_counter() - start}
                    continue
                except TypeError:
                    self.given_hubs = False
            out[t] = self(real, fake, k, t, device)
        return out


def jaccard(a: np.ndarray, b: np.ndarray | None) -> float | None:
    if b is None:
        return None
    union = int(np.sum(a | b))
    return float(np.sum(a & b) / union) if union else 1.0


def weighted_epr(ev, real_occ: np.ndarray, fake_occ: np.ndarray, t: int) -> dict | None:
    """The variant that weights each hub by 1 / k-occurrence in eP&R's averages, from the per-hub
    decisions ``evaluate`` exposes (None where this toolkit does not expose them)."""
    in_real_hubs = getattr(ev, "fake_in_real_hub_balls", None)
    in_fake_hubs = getattr(ev, "real_in_fake_hub_balls", None)
    if in_real_hubs is None or in_fake_hubs is None:
        return None

    def average(flags, occ):
        hubs = occ >= t
        w = 1.0 / occ[hubs]
        return float(np.sum(w * flags[hubs]) / np.sum(w)) if hubs.any() else float("nan")

    return {"wep": average(in_real_hubs, fake_occ), "wer": average(in_fake_hubs, real_occ)}


def case_rows(real, fake, graph, k: int, ts: tuple, device, hnsw: Hnsw) -> list[dict]:
    """Every t of one (real, fake, k): exact P&R and eP&R (exact selection) from one
    ``evaluate(metrics=('pr', 'epr'))`` at the first t, eP&R alone at the others (the real set's
    graph reused), the 1/k-occurrence-weighted variant, approximate selection where available."""
    import hubness_pr
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
        if weighted is not None:
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
            "real_hub_jaccard": jaccard(real_hubs, None if occ_r is None else occ_r >= row["t"]),
            "fake_hub_jaccard": jaccard(fake_hubs, None if occ_f is None else occ_f >= row["t"]),
            "report": approx["report"]}


def time_costs(real, fake, k: int, t: int, device, hnsw: Hnsw) -> dict:
    """Wall time of what a user pays: exact P&R alone and eP&R alone, each with its real k-NN pass."""
    import hubness_pr
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
    import hubness_pr
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
    ('pr', 'epr') run, and its per-hub decisions (where exposed) average to it: the weighted
    variant reads the right flags."""
    import hubness_pr
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics=("epr",), k=k, hubs_k=t, device=device, progress=False)
    ok = ev.epr.precision == row["ep"] and ev.epr.recall == row["er"]
    flags = getattr(ev, "fake_in_real_hub_balls", None), getattr(ev, "real_in_fake_hub_balls", None)
    hubs = ev.fake_k_occurrence >= t, ev.real_k_occurrence >= t
    if flags[0] is not None and flags[1] is not None and hubs[0].any() and hubs[1].any():
        ok &= bool(np.isclose(flags[0][hubs[0]].mean(), ev.epr.precision, rtol=0, atol=1e-12)
                   and np.isclose(flags[1][hubs[1]].mean(), ev.epr.recall, rtol=0, atol=1e-12))
    return {"what": "eP&R alone equals eP&R next to P&R, and its per-hub decisions average to it",
            "dataset": dataset, "backbone": backbone, "n": len(real), "k": k, "t": t, "ok": bool(ok)}


def cmd_run(args) -> int:
    import hubness_pr
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
    import hubness_pr
    result["notes"].append(f"approximate hub selection (hnsw): {hnsw.note or 'computed'}")
    if hnsw.enabled:
        reuse = ("the other t take the hubs their k-occurrence gives (`evaluate(hubs=...)`, the same exact steps "
                 "after selection)" if hnsw.given_hubs else "one `knn='hnsw'` call per t")
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
    atomic_write_text(json_path, json.dumps(hubness_pr.json_safe(without_arrays(result)), indent=1, default=str))
    report = write_report(dict(result, supplements=load_supplements(args.supplement)), out, prefix, json_path)
    log(f"report {report}, numbers {json_path}")


def report_prefix(toy: bool) -> str:
    """Name of the report, its figures and the default JSON."""
    return "epr_study_toy" if toy else "epr_study"


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


def without_arrays(value):
    """The result with numpy arrays (none are meant to be there) turned into lists, for JSON."""
    if isinstance(value, dict):
        return {k: without_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_arrays(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# ----------------------------------------------------------------------------------------------
# the report: tables and findings computed from the cases

def finite(x) -> bool:
    return x is not None and np.isfinite(x)


def fmt(x, signed: bool = False, digits: int = 3) -> str:
    if not finite(x):
        return "n/a"
    x = 0.0 if abs(x) < 0.5 * 10.0 ** -digits else x  # no "-0.000"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def table(header: list, rows: list) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


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


def shown(path: Path) -> str:
    """A path as the report names it: relative to the repository where it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


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


def summary_rows(cases: list) -> tuple[list, list, dict]:
    """Worst max(|eP-P|, |eR-R|) over datasets/backbones at the largest N, per (k, t) and set."""
    top = largest_n(cases)
    sets = set_order(top)
    worst_of = {}
    for c in top:
        key = (c["k"], c["t"], c["set"])
        worst_of[key] = max(worst_of.get(key, 0.0), worst(c))
    return kt_pairs(top), sets, worst_of


def section_summary(cases: list) -> str:
    pairs, sets, worst_of = summary_rows(cases)
    body = []
    for k, t in pairs:
        cells = [("**ok** " if worst_of[(k, t, s)] < LIMIT else "") + fmt(worst_of[(k, t, s)]) for s in sets]
        body.append([k, t, *cells, f"{sum(worst_of[(k, t, s)] < LIMIT for s in sets)}/{len(sets)}"])
    return (f"## Which (k, t) keep |eP−P| and |eR−R| below {LIMIT}\n\nEach cell: the worst max(|eP−P|, |eR−R|) "
            f"over every dataset and backbone at its largest N; **ok** below {LIMIT}.\n\n" +
            table(["k", "t", *sets, "sets ok"], body) + "\n")


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


def worst_weighted(c: dict) -> float:
    values = (c["wep_minus_p"], c["wer_minus_r"])
    return max(abs(v) for v in values) if all(finite(v) for v in values) else float("inf")


def weighted_cases(cases: list) -> list:
    """Cases at the largest N where both eP&R and its 1/k-occurrence-weighted variant are defined."""
    return [c for c in largest_n(cases) if "wep" in c and np.isfinite(worst(c)) and np.isfinite(worst_weighted(c))]


def section_weighted(cases: list) -> str:
    rows = weighted_cases(cases)
    title = "## Variant: hubs weighted by 1/k-occurrence\n\n"
    if not rows:
        return title + ("Not computed: this toolkit's `evaluate` exposes no per-hub eP&R decisions "
                        "(`fake_in_real_hub_balls`, `real_in_fake_hub_balls`).\n\n")
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


def hnsw_rows(cases: list) -> list:
    """The cases at the largest N that have the approximate-selection columns."""
    return largest_n([c for c in cases if c.get("hnsw") and "ep" in c["hnsw"]])


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


def worst_hnsw(c: dict) -> float:
    h = c["hnsw"]
    values = (h["ep_minus_p"], h["er_minus_r"])
    return max(abs(v) for v in values) if all(finite(v) for v in values) else float("inf")


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
               + (f", most often for {max(set(c['set'] for c, *_ in inv), key=lambda s: sum(c['set'] == s for c, *_ in inv))}."
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
            "Generated by `bench/epr_study.py` from the numbers in the JSON next to it; every statement below is "
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
    atomic_write_text(path, "".join(text))
    return path


# ----------------------------------------------------------------------------------------------
# command line

def int_list(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated by commas")
    return values


def float_pair(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected two positive numbers, weak,strong")
    return values


def name_list(choices: tuple):
    def parse(text: str) -> list:
        names = [v.strip() for v in str(text).split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return names
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="images, sets and features into a folder")
    e.add_argument("--out", required=True, help="folder for the features and manifest.json")
    e.add_argument("--dataset", choices=(*DATASETS, "all"), default="all")
    e.add_argument("--backbones", type=name_list(BACKBONES + PIXEL_BACKBONES), default=list(BACKBONES))
    e.add_argument("--device", default="auto")
    e.add_argument("--max_n", type=int, default=20000, help="size of the real set and of each generated set")
    e.add_argument("--batch_size", type=int, default=128)
    e.add_argument("--num_workers", type=int, default=None, help="decoding processes (default: the library's)")
    e.add_argument("--half", action="store_true", help="float16 inference (CUDA only)")
    e.add_argument("--fashion_dir", default=None, help="folder of Fashion-MNIST's idx .gz files")
    e.add_argument("--noise", type=float_pair, default=NOISE, help="sigmas (0..255) of noise_weak,noise_strong")
    e.add_argument("--blur", type=float_pair, default=BLUR, help="radii of blur_weak,blur_strong")
    e.add_argument("--progress", action="store_true", default=None, help="tqdm bars")
    e.add_argument("--toy", action="store_true", help="digits, N=80, efficientnet_lite0, no weak transforms")
    r = sub.add_parser("run", help="the metrics and the report")
    r.add_argument("--features", required=True, help="folder written by extract")
    r.add_argument("--sizes", type=int_list, default=(1000, 5000, 20000))
    r.add_argument("--ks", type=int_list, default=(3, 5, 10))
    r.add_argument("--out", default=str(ROOT / "docs"), help="folder of the report and its figures")
    r.add_argument("--json", default=None, help="raw numbers (default bench/results/epr_study[_toy].json)")
    r.add_argument("--knn", type=name_list(("exact", "hnsw")), default=["exact", "hnsw"])
    r.add_argument("--hnsw_max_n", type=int, default=5000,
                   help="approximate selection only at N up to this (0: every N); the timing table has it at "
                        "the largest N anyway")
    r.add_argument("--device", default="auto")
    r.add_argument("--toy", action="store_true", help="digits, N=80, k=3, t in {2, 3}")
    supplement = dict(action="append", default=[], metavar="JSON",
                      help="another run's JSON (e.g. approximate selection at a larger N, run elsewhere): its own "
                           "section in the report")
    r.add_argument("--supplement", **supplement)
    g = sub.add_parser("report", help="the report again from a run's JSON (and --supplement runs)")
    g.add_argument("--json", default=str(ROOT / "bench" / "results" / "epr_study.json"), help="the run's numbers")
    g.add_argument("--out", default=str(ROOT / "docs"), help="folder of the report and its figures")
    g.add_argument("--supplement", **supplement)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv[1:]
    return {"extract": cmd_extract, "run": cmd_run, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
