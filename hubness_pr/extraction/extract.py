"""Images -> features: decoding in DataLoader workers, batched inference, resumable checkpoints.

:func:`extract_features` reads an :class:`hubness_pr.extraction.images.ImageSource` in order, runs each image
through the backbone's ``prepare`` in worker processes and the network in batches under
``torch.inference_mode``, and returns float32 features in the source's order. Results do not
depend on batch size, number of workers or input form (folder, zip, array) beyond float noise.

Resume: with ``checkpoint_dir`` set, every ``shard_size`` images are saved there as a shard
(written atomically, with a fingerprint of the source, every image's size and times, and the
backbone). A restarted run with the same inputs loads the shards and goes on from the first image
not yet done; a checkpoint of other inputs, or of images changed since, is discarded, and a shard
that does not hold its range in full (cut short, rewritten, unreadable) is recomputed.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


from hubness_pr.errors import InputError
from hubness_pr.engine.devices import exact_matmul, resolve_device
from hubness_pr.validation import check_int
from hubness_pr.version import __version__
from hubness_pr.extraction.backbones import Backbone, load_backbone
from hubness_pr.extraction.images import ImageSource, open_source
from hubness_pr.io.outputs import atomic_write
from hubness_pr.engine.distributed import contiguous_share
from hubness_pr.io.store import random_subset

log = logging.getLogger(__name__)


@dataclass
class Extraction:
    """Features of the decodable images, their names, and the images skipped with the reason.

    With ``keep_features=False`` the features stay in the checkpoint shards on disk (``shards``, in
    order; ``features`` is None): a caller writes them out shard by shard (a million images never sit
    in memory at once)."""

    features: np.ndarray | None = field(repr=False)
    paths: list = field(repr=False)
    skipped: list = field(default_factory=list)  # [(name, reason)]
    shards: list = field(default_factory=list, repr=False)  # checkpoint shard files, in order
    dim: int = 0


class _Prepared(Dataset):
    """Image ``start + i`` of the source, prepared for the network; a decoding error is returned, not
    raised, so that the main process can name the file in one line (or skip it): the
    :class:`InputError` itself, with its ``file``."""

    def __init__(self, source: ImageSource, prepare, start: int, stop: int):
        self.source, self.prepare, self.start, self.stop = source, prepare, start, stop

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, i):
        index = self.start + i
        try:
            return index, self.prepare(self.source.read(index)), None
        except InputError as exc:  # bad input only: any other exception is a fault and stops the run
            return index, None, exc  # (picklable with its fields, from a worker process)


def _collate(items):
    indices = [i for i, x, _ in items if x is not None]
    tensors = [x for _, x, _ in items if x is not None]
    errors = [(i, e) for i, x, e in items if x is None]
    if tensors and any(x.shape != tensors[0].shape for x in tensors):
        return indices, tensors, errors  # images of different sizes, for a network that resizes them itself
    batch = torch.stack(tensors) if tensors else None
    return indices, batch, errors


def _forward(network, batch, dev, half: bool) -> np.ndarray:
    """Features of a batch; a list of inputs of different sizes (:func:`_collate`) runs in runs of one size."""
    if isinstance(batch, list):
        runs = [list(run) for _, run in itertools.groupby(batch, key=lambda x: x.shape)]
        return np.concatenate([_forward(network, torch.stack(run), dev, half) for run in runs])
    batch = batch.to(dev, non_blocking=True, memory_format=torch.channels_last)
    return network(batch.half() if half else batch).float().cpu().numpy()


def fingerprint(source: ImageSource, backbone: Backbone, half: bool) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"source": source.describe(), "backbone": backbone.meta, "half": half},
                        sort_keys=True, default=str).encode())
    for name, stamp in zip(source.names, source.stamps()):
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + stamp.encode() + b"\0")
    return h.hexdigest()


class _Checkpoint:
    """Shards of finished work in a folder: ``manifest.json`` + ``shard_<start>_<stop>.npz``.

    ``names`` are the source's image names and ``dim`` the backbone's: on loading, each shard is
    checked against its recorded range (every image in it either has a float32 feature row of
    ``dim`` values or is listed as skipped, by name), so that a shard cut short, rewritten or damaged
    is recomputed instead of losing its images silently."""

    def __init__(self, folder: Path, key: str, names, dim: int):
        self.folder, self.key, self.names, self.dim = Path(folder), key, list(names), dim

    def load(self, keep: bool = True):
        """(next image index, [(indices, features or None, shard file)], skipped) from a matching earlier
        run, else a fresh start; ``keep=False`` leaves the features in the shards. The first shard
        that fails its checks and every one after it are deleted (with a warning): the run goes on
        from there."""
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            return 0, [], []
        try:
            matches = json.loads(manifest.read_text()).get("fingerprint") == self.key
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: unreadable checkpoint (%s); starting over", self.folder, exc)
            self.clear()
            return 0, [], []
        if not matches:
            log.warning("%s: checkpoint of a different extraction (images or backbone changed); starting over",
                        self.folder)
            self.clear()
            return 0, [], []
        shards = sorted(self.folder.glob("shard_*.npz"))
        done, parts, skipped = 0, [], []
        for position, shard in enumerate(shards):
            try:
                part = self._read_shard(shard, done, keep)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("%s: damaged checkpoint shard (%s); recomputing from image %d", shard,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__, done)
                part = None
            if part is None:  # damaged, or not the next range (left by a run with another shard size)
                for stale in shards[position:]:
                    stale.unlink(missing_ok=True)
                break
            indices, feats, shard_skipped, done = part
            parts.append((indices, feats, shard))
            skipped += shard_skipped
        return done, parts, skipped

    def _read_shard(self, shard: Path, start: int, keep: bool):
        """(indices, features or None, skipped, stop) of the shard if it starts at ``start`` and holds
        its range in full; None if it starts elsewhere; ValueError saying what is wrong otherwise."""
        with np.load(shard, allow_pickle=False) as data:
            recorded = data["range"]
            if recorded.shape != (2,) or recorded.dtype.kind not in "iu":
                raise InputError(f"range is {recorded.dtype} {recorded.shape}, expected 2 integers")
            first, stop = int(recorded[0]), int(recorded[1])
            if first != start:
                return None
            if shard.name != f"shard_{first:010d}_{stop:010d}.npz" or not start <= stop <= len(self.names):
                raise InputError(f"range {first}-{stop} does not match the file name or the {len(self.names)} images")
            indices = data["indices"]
            feats = data["features"]  # read in full even with keep=False: a damaged file fails here, not later
            names, reasons = data["skipped_names"], data["skipped_reasons"]
        if indices.dtype != np.int64 or indices.ndim != 1:
            raise InputError(f"indices are {indices.dtype} {indices.shape}, expected int64 (n,)")
        if len(indices) and (indices[0] < start or indices[-1] >= stop or np.any(np.diff(indices) <= 0)):
            raise InputError(f"indices are not increasing within {start}-{stop}")
        if feats.dtype != np.float32 or feats.shape != (len(indices), self.dim):
            raise InputError(f"features are {feats.dtype} {feats.shape}, expected float32 ({len(indices)}, {self.dim})")
        missing = np.setdiff1d(np.arange(start, stop), indices)
        if names.ndim != 1 or reasons.shape != names.shape or \
                names.tolist() != [self.names[i] for i in missing.tolist()]:
            raise InputError(f"{len(indices)} feature rows and {names.size} skipped image(s) for the "
                             f"{stop - start} images {start}-{stop}")
        skipped = list(zip(names.tolist(), reasons.tolist()))
        return indices.copy(), feats.copy() if keep else None, skipped, stop

    def save(self, start: int, stop: int, indices, feats, skipped) -> Path:
        """Write one shard; returns its file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / "manifest.json"
        if not manifest.is_file():
            with atomic_write(manifest, "w") as handle:
                json.dump({"fingerprint": self.key}, handle)
        names = np.asarray([n for n, _ in skipped], dtype=np.str_)
        reasons = np.asarray([r for _, r in skipped], dtype=np.str_)
        shard = self.folder / f"shard_{start:010d}_{stop:010d}.npz"
        with atomic_write(shard) as handle:
            np.savez(handle, range=np.array([start, stop]), indices=np.asarray(indices, dtype=np.int64),
                     features=feats, skipped_names=names, skipped_reasons=reasons)
        return shard

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def extract_features(source: ImageSource, backbone: Backbone, *, batch_size: int = 64,
                     num_workers: int | None = None, device="auto", half: bool = False,
                     skip_bad: bool = False, progress: bool | None = None,
                     checkpoint_dir=None, shard_size: int = 4096, keep_features: bool = True) -> Extraction:
    """Features of every image of ``source``, in order (see the module docstring).

    Args:
        batch_size: images per forward pass (>= 1); does not change the result.
        num_workers: DataLoader decoding processes (default: the number of CPUs, at most 8; 0 = in process).
        device: 'auto', 'cpu', 'cuda', 'cuda:N'. ``half`` runs the network in float16 (CUDA only);
            otherwise it runs in full float32 (TF32 off on CUDA: the same features as on the CPU up to
            float32 rounding, not TF32's 10-bit mantissa).
        skip_bad: skip undecodable images (listed in the result) instead of stopping at the first.
        checkpoint_dir: folder for resumable shards (left in place; the caller removes it when done).
        keep_features: False: the features stay in the checkpoint shards (needs ``checkpoint_dir``);
            the result lists them in ``shards`` instead of holding them.
    """
    if not isinstance(source, ImageSource):
        raise TypeError("The 'source' parameter of extract_features must be an ImageSource "
                        f"(hubness_pr.extraction.images.open_source(path)). Got {type(source).__name__} instead.")
    if not isinstance(backbone, Backbone):
        raise TypeError("The 'backbone' parameter of extract_features must be a Backbone "
                        f"(hubness_pr.extraction.backbones.load_backbone(name)). Got {type(backbone).__name__} instead.")
    check_int(batch_size, "batch_size", "extract_features", 1)
    dev = resolve_device(device)
    if half and dev.type != "cuda":
        raise InputError("--half needs a CUDA device (float16 inference on the CPU is slow and inexact)")
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    network = backbone.inference_network(dev, half=half)

    if not keep_features and not checkpoint_dir:
        raise InputError("keep_features=False needs a checkpoint_dir: the features stay in its shards")
    ckpt = _Checkpoint(checkpoint_dir, fingerprint(source, backbone, half), source.names,
                       backbone.dim) if checkpoint_dir else None
    start, parts, skipped = ckpt.load(keep_features) if ckpt else (0, [], [])
    if start:
        log.info("resuming at image %d of %d from %s", start, len(source), checkpoint_dir)
    n = len(source)
    pending_idx, pending_feat, pending_skip, shard_start = [], [], [], start
    loader = DataLoader(_Prepared(source, backbone.prepare, start, n), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate, pin_memory=dev.type == "cuda",
                        persistent_workers=False)

    def flush(stop):
        nonlocal pending_idx, pending_feat, pending_skip, shard_start
        feats = np.concatenate(pending_feat) if pending_feat else np.zeros((0, backbone.dim), np.float32)
        idx = np.asarray(pending_idx, dtype=np.int64)
        shard = ckpt.save(shard_start, stop, idx, feats, pending_skip) if ckpt else None
        parts.append((idx, feats if keep_features else None, shard))
        skipped.extend(pending_skip)
        pending_idx, pending_feat, pending_skip, shard_start = [], [], [], stop

    done = start
    with torch.inference_mode(), exact_matmul(), \
            tqdm(total=n, initial=start, unit="img", desc=f"{backbone.name} features",
                 disable=None if progress is None else not progress) as bar:
        for indices, batch, errors in loader:
            for index, error in errors:
                if not skip_bad:
                    raise InputError(f"{error.message} (use --skip_bad to skip undecodable images)", file=error.file,
                                     option=error.option, role=error.role, value=error.value,
                                     show_role=error.show_role) from None
                reason = str(error)
                log.warning("skipped %s", reason)
                pending_skip.append((source.names[index], reason))
            if batch is not None:
                pending_idx += indices
                pending_feat.append(_forward(network, batch, dev, half))
            done += len(indices) + len(errors)
            bar.update(len(indices) + len(errors))
            if done - shard_start >= shard_size:
                flush(done)
    flush(n)
    order = np.concatenate([i for i, _, _ in parts]) if parts else np.zeros(0, np.int64)
    if len(order) == 0 and n and keep_features:
        raise InputError(file=source.root, message=f"none of the {n} images could be decoded")
    paths = [source.names[i] for i in order]
    if not keep_features:
        return Extraction(features=None, paths=paths, skipped=skipped, shards=[f for _, _, f in parts],
                          dim=backbone.dim)
    features = np.concatenate([f for _, f, _ in parts]) if parts else np.zeros((0, backbone.dim), np.float32)
    return Extraction(features=np.ascontiguousarray(features, dtype=np.float32), paths=paths, skipped=skipped,
                      dim=backbone.dim)


def shard_features(shards) -> iter:
    """The features of checkpoint shard files, one shard at a time, in order."""
    for shard in shards:
        try:
            with np.load(shard, allow_pickle=False) as data:
                feats = np.ascontiguousarray(data["features"], dtype=np.float32)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(file=shard, message=f"checkpoint shard damaged since it was checked ({exc}); "
                             "run the same command again to recompute it") from exc
        yield feats


@dataclass(frozen=True)
class BackboneSpec:
    """Which feature extractor: a backbone name of the registry (:mod:`hubness_pr.extraction.backbones`),
    its weights file (None: torchvision's or torch hub's cache), ``--preprocess`` choice (None: the
    backbone's own), seed (random-init backbones) and whether missing weights may be downloaded."""

    name: str = "vgg16"
    weights: str | None = None
    preprocess: str | None = None
    seed: int = 0
    allow_download: bool = False

    def load(self) -> Backbone:
        return load_backbone(self.name, weights=self.weights, preprocess=self.preprocess, seed=self.seed,
                             allow_download=self.allow_download)


def extract_path(path, backbone: BackboneSpec | str = "vgg16", *, num_samples: int | None = None, seed: int = 0,
                 part: tuple | None = None, backbones: dict | None = None, **run) -> tuple[Extraction, dict]:
    """Open the images at ``path``, extract features with ``backbone`` (a :class:`BackboneSpec`, or a
    name), and return them with the ``meta`` to store.

    ``num_samples`` / ``seed`` take a seeded random subset of the images (recorded in ``meta``).
    ``part=(rank, world)``: only this rank's contiguous share of those images (several processes;
    the shares in rank order are the whole set in order). ``run``: the keyword options of
    :func:`extract_features` (batch_size, num_workers, device, half, skip_bad, progress,
    checkpoint_dir, shard_size, keep_features). ``backbones``: a dict the caller keeps between calls;
    a backbone built here is kept in it and reused by a later call with the same spec (several image
    sets, one load). Inputs are still checked before any weights load.
    """
    if path is None or isinstance(path, bytes):
        raise TypeError(f"The 'path' parameter of extract_path must be a path. Got {path!r} instead.")
    spec = BackboneSpec(backbone) if isinstance(backbone, str) else backbone
    unknown = set(run) - (set(inspect.signature(extract_features).parameters) - {"source", "backbone"})
    if unknown:
        raise TypeError(f"extract_path() got unexpected keyword arguments {sorted(unknown)}")
    check_int(run.get("batch_size", 64), "batch_size", "extract_path", 1)  # every cheap check before the heavy work
    resolve_device(run.get("device", "auto"))
    source = open_source(path)  # listing the images is cheap: find input errors before loading weights
    total = len(source)
    if num_samples is not None:
        source = source.subset(random_subset(total, num_samples, seed, str(path)))
    described = source.describe()
    if part is not None:  # this rank's contiguous share
        share = contiguous_share(len(source), *part)
        source = source.subset(range(share.start, share.stop))
    key = BackboneSpec(spec.name, None if spec.weights is None else str(spec.weights), spec.preprocess, spec.seed,
                       spec.allow_download)
    model = (backbones or {}).get(key)
    if model is None:
        model = spec.load()
        if backbones is not None:
            backbones[key] = model
    result = extract_features(source, model, **run)
    meta = dict(model.meta)
    meta.update(source=described, images_found=total, num_samples=num_samples,
                sample_seed=seed if num_samples is not None else None, half=run.get("half", False),
                skipped=[{"path": n, "reason": r} for n, r in result.skipped],
                toolkit_version=__version__, torch_version=torch.__version__)
    return result, meta
