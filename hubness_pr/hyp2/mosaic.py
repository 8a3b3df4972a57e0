"""``--dataset mosaic``: an offline multi-label set for demos and tests.

Each image is a 2 x 2 grid of cells; 1 to 3 cells (uniformly many, at random places) hold a
single-class item, the others stay black; the image is labelled with the classes present (10
classes). Items come from scikit-learn's 8 x 8 digits (``digits``, always available: 16 x 16
mosaics) or from Fashion-MNIST (``fashion``: the Debian package ``dataset-fashion-mnist``, 56 x 56
mosaics). The source items are split once, by a fixed seed, into disjoint pools (50 % train, 10 %
validation, 25 % database, 15 % queries), so no item of a query appears in the database or in
training. Everything is drawn from a fixed data seed: the data are the same whatever ``--seed``
(which seeds the training). Images are composed when read, never stored.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.extraction.images import ImageSource

from hubness_pr.hyp2.splits import RetrievalData, Split

DATA_SEED = 0
DEFAULT_COUNTS = {"train": 4000, "val": 500, "database": 2000, "query": 500}
POOL_FRACTIONS = {"train": 0.5, "val": 0.1, "database": 0.25, "query": 0.15}
DEFAULT_R = 1000
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def _read_idx(path: Path) -> np.ndarray:
    """An MNIST idx file (gzip): uint8 array of the shape in its header."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        if zero != 0 or dtype != 0x08:
            raise InputError("not an unsigned-byte idx file")
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, EOFError, struct.error, ValueError) as exc:
        raise InputError(file=path, message=f"cannot read this idx file ({exc})") from exc


def source_items(source: str, fashion_dir=FASHION_DIR) -> tuple[np.ndarray, np.ndarray, list]:
    """(items (n, h, w) uint8, class (n,), class names) of ``digits`` or ``fashion``."""
    if source == "digits":
        from sklearn.datasets import load_digits
        digits = load_digits()
        return (digits.images * (255 / 16)).round().astype(np.uint8), digits.target, [str(c) for c in range(10)]
    if source == "fashion":
        fashion_dir = Path(fashion_dir)
        if not (fashion_dir / "train-images-idx3-ubyte.gz").is_file():
            raise InputError(file=fashion_dir, message="Fashion-MNIST not found; install the Debian package "
                             f"dataset-fashion-mnist, or use --mosaic_source digits")
        images = np.concatenate([_read_idx(fashion_dir / f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")])
        labels = np.concatenate([_read_idx(fashion_dir / f"{p}-labels-idx1-ubyte.gz") for p in ("train", "t10k")])
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise InputError(file=fashion_dir, message=f"images {images.shape} and labels {labels.shape} do not match")
        return images, labels.astype(np.int64), list(FASHION_CLASSES)
    raise InputError(f"unknown --mosaic_source {source!r}; choose digits or fashion")


class MosaicSource(ImageSource):
    """Mosaic ``i`` composed on read from ``items[picks[i, j]]`` placed in cells ``cells[i, j]`` (-1: none)."""

    kind = "mosaic"

    def __init__(self, root: str, part: str, items: np.ndarray, picks: np.ndarray, cells: np.ndarray):
        width = len(str(max(0, picks.shape[0] - 1)))
        super().__init__(root, [f"{part}/{i:0{width}d}" for i in range(picks.shape[0])])
        self.items, self.picks, self.cells = items, picks, cells

    def stamps(self) -> list[str]:
        """What defines each image: the source, its items and their cells."""
        return [f"{self.root}:{self.picks[i].tolist()}:{self.cells[i].tolist()}"
                for i in map(self._base_index, range(len(self)))]

    def read(self, index: int) -> np.ndarray:
        i = self._base_index(index)
        h, w = self.items.shape[1:]
        canvas = np.zeros((2 * h, 2 * w), np.uint8)
        for pick, cell in zip(self.picks[i], self.cells[i]):
            if cell >= 0:
                r, c = divmod(int(cell), 2)
                canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = self.items[pick]
        return np.repeat(canvas[:, :, None], 3, axis=2)


def _part(source: str, part: str, part_id: int, count: int, pool: np.ndarray, items, classes,
          num_classes: int) -> Split:
    picks = np.full((count, 3), -1, np.int64)
    cells = np.full((count, 3), -1, np.int64)
    labels = np.zeros((count, num_classes), np.uint8)
    for i in range(count):
        rng = np.random.default_rng([DATA_SEED, part_id, i])
        n = int(rng.integers(1, 4))
        cells[i, :n] = rng.choice(4, size=n, replace=False)
        picks[i, :n] = pool[rng.choice(len(pool), size=n, replace=False)]
        labels[i, classes[picks[i, :n]]] = 1
    images = MosaicSource(f"mosaic-{source}", part, items, picks, cells)
    return Split(names=list(images.names), labels=labels, source=images)


def parse_counts(text) -> dict:
    """``"train,val,database,query"`` item counts (or None for the defaults)."""
    if text is None:
        return dict(DEFAULT_COUNTS)
    values = str(text).split(",") if isinstance(text, str) else list(text)
    try:
        counts = [int(v) for v in values]
    except ValueError:
        counts = []
    if len(counts) != 4 or min(counts) < 1:
        raise InputError(option="--mosaic_counts", value=text,
                         message="expected four positive integers train,val,database,query")
    return dict(zip(DEFAULT_COUNTS, counts))


def load_mosaic(source: str = "digits", counts=None, retrieve: int = 0, fashion_dir=FASHION_DIR) -> RetrievalData:
    """The mosaic dataset (module docstring); R = ``retrieve`` or 1000 (capped at the database size)."""
    counts = parse_counts(counts)
    items, classes, names = source_items(source, fashion_dir)
    order = np.random.default_rng(DATA_SEED).permutation(len(items))
    bounds = np.cumsum([0] + [round(POOL_FRACTIONS[p] * len(items)) for p in DEFAULT_COUNTS])
    parts = {p: _part(source, p, j, counts[p], order[bounds[j]:bounds[j + 1]], items, classes, len(names))
             for j, p in enumerate(DEFAULT_COUNTS)}
    return RetrievalData(name="mosaic", classes=names, R=retrieve or DEFAULT_R,
                         meta={"mosaic_source": source, "data_seed": DATA_SEED, "counts": counts}, **parts)
