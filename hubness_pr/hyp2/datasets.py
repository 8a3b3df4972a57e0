"""Multi-label retrieval datasets: train, validation, database and query splits with multi-hot labels.

| ``--dataset`` | train | database | queries | classes | R |
|---|---|---|---|---|---|
| ``voc2007`` | trainval | trainval | test | 20 | 5011 |
| ``voc2012`` | train | train | val | 20 | 5717 |
| ``flickr`` | 4,000 | the rest | 1,000 | 38 | 1000 |
| ``nuswide`` | ``train.txt`` | ``database.txt`` | ``test.txt`` | 21 | 5000 |
| ``mosaic`` | see :mod:`hubness_pr.hyp2.mosaic` | | | 10 | 1000 |
| ``features`` | split file | split file | split file | label file | database size |

The checkpoint is chosen on a validation split: carved from train (seeded, ``val_size`` items) unless
the dataset brings its own (mosaic, a split file with ``"val"``). While validating, the validation
items are removed from the database (:meth:`RetrievalData.validation_database`).

Split files (``--split``, JSON): ``{"train": [names], "database": [names], "query": [names]}`` and
optionally ``"val"``; names are image names of ``img.txt`` (flickr) or ``paths`` of the feature file
(features). Queries must be disjoint from train, database and val; train and database may overlap.
For flickr a seeded split (1,000 queries, 4,000 train, the rest database) is written once when the
file does not exist, and reused afterwards. The original HyP² code ships its permutation instead
(``flickr.txt``: a JSON list of 0-based indices into ``img.txt``; its queries are the first 1,000,
train the next 4,000, the database the rest): :func:`read_order` and :func:`split_from_order` turn it
into this split (``retrieval.py --flickr_order flickr.txt``), so that runs use the original's images.
"""
from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.extraction.images import FolderSource, ImageSource
from hubness_pr.io.outputs import atomic_write
from hubness_pr.io.store import load_features
from hubness_pr.hyp2.splits import RetrievalData, Split  # noqa: F401 - part of this module's interface

log = logging.getLogger(__name__)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
PUBLISHED_R = {"voc2007": 5011, "voc2012": 5717, "flickr": 1000, "nuswide": 5000}
DEFAULT_ROOTS = {"voc2007": "data", "voc2012": "data", "flickr": "data/flickr25k", "nuswide": "data/nus_wide"}
FLICKR_CLASSES, NUSWIDE_CLASSES = 38, 21
SPLIT_PARTS = ("train", "val", "database", "query")


class ListedFiles(FolderSource):
    """The images ``names`` (relative paths) under ``root``, in the given order (not sorted)."""

    kind = "list"

    def __init__(self, root, names):
        ImageSource.__init__(self, str(root), list(names))  # FolderSource.read reads root/name


# ------------------------------------------------------------------------------------------ labels

def first_repeat(keys, places):
    """(key, its place, its first place) of the first key met a second time, or None."""
    first = {}
    for key, place in zip(keys, places):
        if key in first:
            return key, place, first[key]
        first[key] = place
    return None


def check_unique(path, names, line_numbers) -> None:
    """ValueError naming the file, the line and the name of the first item listed a second time."""
    repeat = first_repeat(names, line_numbers)
    if repeat:
        name, number, first = repeat
        raise InputError(f"{path}:{number}: {name!r} is listed again (first on line {first}); "
                         f"each item must appear once")


def read_name_list(path, whole_line: bool = False) -> list:
    """The first word (``whole_line``: the stripped line) of every non-blank line of ``path``, each name
    once (:func:`check_unique`)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(file=path, message=f"cannot read the list ({getattr(exc, 'strerror', None) or exc})") from exc
    rows = [(line.strip() if whole_line else line.split()[0], number)
            for number, line in enumerate(lines, 1) if line.strip()]
    check_unique(path, [name for name, _ in rows], [number for _, number in rows])
    return [name for name, _ in rows]


def parse_label_rows(path, num_classes: int | None, with_names: bool):
    """Rows ``[name] l_1 ... l_C`` of 0/1 labels: (names or None, uint8 (n, C)). ``num_classes`` None:
    the first row sets the width. A row of another width, a value other than 0/1 or (``with_names``) a
    name listed twice is a ValueError naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(file=path,
                         message=f"cannot read the label list ({getattr(exc, 'strerror', None) or exc})") from exc
    names, numbers, rows = [], [], []
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        if with_names:
            names.append(tokens[0])
            numbers.append(number)
            tokens = tokens[1:]
        width = num_classes if num_classes is not None else len(tokens)
        if len(tokens) != width or width < 2:
            raise InputError(f"{path}:{number}: {len(tokens)} labels, expected {width if width >= 2 else '>= 2'}")
        if any(t not in ("0", "1") for t in tokens):
            raise InputError(f"{path}:{number}: labels must be 0 or 1, got {' '.join(tokens)[:60]}")
        num_classes = width
        rows.append([t == "1" for t in tokens])
    if not rows:
        raise InputError(file=path, message="no label rows")
    if with_names:
        check_unique(path, names, numbers)
    return (names if with_names else None), np.asarray(rows, dtype=np.uint8)


def _require(path: Path, what: str, hint: str = "") -> Path:
    if not path.exists():
        raise InputError(file=path, message=f"{what} not found{'; ' + hint if hint else ''}")
    return path


def _check_files(root: Path, names, what: str) -> None:
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise InputError(f"{root / missing[0]}: {what} image not found ({len(missing)} of {len(names)} missing)")


def _image_split(root: Path, names, labels) -> Split:
    _check_files(root, names, "listed")
    return Split(names=list(names), labels=labels, source=ListedFiles(root, names))


# -------------------------------------------------------------------------------------------- VOC

def _voc_labels(annotation: Path) -> np.ndarray:
    try:
        objects = ElementTree.parse(annotation).getroot().findall("object")
    except (OSError, ElementTree.ParseError) as exc:
        raise InputError(file=annotation, message=f"cannot read the annotation ({exc})") from exc
    labels = np.zeros(len(VOC_CLASSES), np.uint8)
    for obj in objects:  # every object counts, difficult ones too (as the original)
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise InputError(file=annotation, message=f"unknown VOC class {name!r}")
        labels[VOC_CLASSES.index(name)] = 1
    return labels


def load_voc(root, year: str) -> tuple[Split, Split, Split]:
    """(train, database, query) of PASCAL VOC ``year`` from ``root/VOCdevkit/VOC<year>``."""
    voc = _require(Path(root) / "VOCdevkit" / f"VOC{year}", f"VOC{year} folder",
                   "extract the VOC tar files (trainval" + (" and test" if year == "2007" else "") + ") into --data")
    train_set, query_set = {"2007": ("trainval", "test"), "2012": ("train", "val")}[year]

    def read(image_set: str) -> Split:
        listing = _require(voc / "ImageSets" / "Main" / f"{image_set}.txt", f"VOC{year} image set list")
        ids = read_name_list(listing)
        labels = np.stack([_voc_labels(_require(voc / "Annotations" / f"{i}.xml", "annotation")) for i in ids])
        return _image_split(voc, [f"JPEGImages/{i}.jpg" for i in ids], labels)

    train = read(train_set)
    return train, train, read(query_set)


# -------------------------------------------------------------------------------------- split files

def read_split(path, names) -> dict:
    """{part: item indices into ``names``} from a split file (module docstring); ValueError on any problem."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(file=path, message=f"cannot read the split file ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict) or any(not isinstance(raw.get(p), list) for p in ("train", "database", "query")):
        raise InputError(file=path,
                         message="expected a JSON object with lists 'train', 'database', 'query' (and 'val')")
    position = {n: i for i, n in enumerate(names)}
    parts = {}
    for part in SPLIT_PARTS:
        if part not in raw:
            continue
        unknown = [n for n in raw[part] if n not in position]
        if unknown:
            raise InputError(file=path,
                             message=f"{part} item {unknown[0]!r} is not in the dataset ({len(unknown)} unknown)")
        if len(set(raw[part])) != len(raw[part]):
            raise InputError(file=path, message=f"{part} lists an item twice")
        if not raw[part] and part != "val":
            raise InputError(file=path, message=f"{part} is empty")
        parts[part] = np.asarray([position[n] for n in raw[part]], dtype=np.int64)
    queries = set(parts["query"].tolist())
    for part in ("train", "val", "database"):
        if part in parts and queries.intersection(parts[part].tolist()):
            raise InputError(file=path, message=f"queries and {part} share items")
    return parts


def split_from_order(order, num_query: int, num_train: int) -> dict:
    """The original's flickr split of a permutation ``order`` of the items: the first ``num_query`` are the
    queries, the next ``num_train`` train, the rest the database."""
    order = np.asarray(order, dtype=np.int64)
    if len(order) <= num_query + num_train:
        raise InputError(f"{len(order)} images cannot give {num_query} queries, {num_train} train and a database")
    return {"query": order[:num_query], "train": order[num_query:num_query + num_train],
            "database": order[num_query + num_train:]}


def seeded_split(n: int, num_query: int, num_train: int, seed: int) -> dict:
    """The flickr split of a seeded permutation (:func:`split_from_order`)."""
    if n <= num_query + num_train:
        raise InputError(f"{n} images cannot give {num_query} queries, {num_train} train and a database")
    return split_from_order(np.random.default_rng(seed).permutation(n), num_query, num_train)


def read_order(path, names) -> np.ndarray:
    """The permutation of ``names`` in ``path``: the original HyP²'s ``flickr.txt`` (a JSON list of 0-based
    indices into ``img.txt``), or one 0-based index or one image name a line. Every item exactly once;
    ValueError (one line, naming the file and the entry) otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(option="--flickr_order", file=path,
                         message=f"cannot read it ({getattr(exc, 'strerror', None) or exc})") from exc
    if text.lstrip().startswith("["):
        try:
            entries = json.loads(text)
        except ValueError as exc:
            raise InputError(option="--flickr_order", file=path,
                             message=f"not a JSON list ({str(exc).splitlines()[0]})") from None
        where = [f"entry {i}" for i in range(len(entries))]
    else:
        rows = [(line.strip(), number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        entries, where = [e for e, _ in rows], [f"line {n}" for _, n in rows]
    position = {n: i for i, n in enumerate(names)}
    order = []
    for entry, at in zip(entries, where):
        if isinstance(entry, str) and entry in position:
            order.append(position[entry])
        elif isinstance(entry, (int, str)) and not isinstance(entry, bool) and str(entry).isdigit() \
                and int(entry) < len(names):
            order.append(int(entry))
        else:
            raise InputError(option="--flickr_order", file=path,
                             message=f"{at}: {entry!r} is neither an index below {len(names)} "
                             f"nor an image of img.txt")
    repeat = first_repeat(order, where)
    if repeat:
        index, at, first = repeat
        raise InputError(option="--flickr_order", file=path,
                         message=f"{at}: image {names[index]!r} (index {index}) again, first at {first}")
    if len(order) != len(names):
        raise InputError(option="--flickr_order", file=path,
                         message=f"{len(order)} entries, img.txt lists {len(names)} images; the order "
                         f"must name each image once")
    return np.asarray(order, dtype=np.int64)


def write_split(path, names, parts: dict, origin: dict) -> None:
    """The split file (module docstring) of ``parts``; ``origin`` ({"seed": s} or {"order": file}) is recorded."""
    payload = {"format": "hyp2 split", **origin, **{p: [names[i] for i in parts[p]] for p in parts}}
    with atomic_write(path, "w", what="--split", encoding="utf-8") as handle:
        json.dump(payload, handle)


# --------------------------------------------------------------------------------- flickr, nuswide

def load_flickr(root, split_path=None, seed: int = 0, num_query: int = 1000, num_train: int = 4000,
                order_path=None):
    """(train, database, query) of Flickr-25K: ``img.txt`` (names), ``targets.txt`` (38 labels a row),
    images in ``mirflickr/``; the split file (default ``root/hyp2_split.json``) is written when missing,
    from ``order_path`` (:func:`read_order`) when given, else seeded. With ``order_path``, an existing
    split file must hold that order's split (ValueError otherwise: it is never replaced)."""
    root = _require(Path(root), "Flickr-25K folder")
    names = read_name_list(_require(root / "img.txt", "image list"), whole_line=True)
    _, labels = parse_label_rows(_require(root / "targets.txt", "label list"), FLICKR_CLASSES, with_names=False)
    if len(names) != labels.shape[0]:
        raise InputError(file=root,
                         message=f"img.txt lists {len(names)} images, targets.txt {labels.shape[0]} label rows")
    split_path = Path(split_path) if split_path else root / "hyp2_split.json"
    wanted = None if order_path is None else split_from_order(read_order(order_path, names), num_query, num_train)
    if split_path.exists():
        log.info("flickr: split from %s", split_path)
    elif wanted is not None:
        write_split(split_path, names, wanted, {"order": str(order_path)})
        log.info("flickr: wrote the split of %s to %s; later runs reuse it", order_path, split_path)
    else:
        write_split(split_path, names, seeded_split(len(names), num_query, num_train, seed), {"seed": seed})
        log.info("flickr: wrote a seeded split (seed %d) to %s; later runs reuse it", seed, split_path)
    parts = read_split(split_path, names)
    if wanted is not None and any(sorted(parts.get(p, np.empty(0)).tolist()) != sorted(wanted[p].tolist())
                                  for p in wanted):
        raise InputError(file=split_path,
                         message=f"holds another split than --flickr_order {order_path}; name another --split "
                         f"(or remove this one) to write the order's split")
    images = _image_split(root / "mirflickr", names, labels)
    return images.subset(parts["train"]), images.subset(parts["database"]), images.subset(parts["query"])


def load_nuswide(root, train_list=None, database_list=None, query_list=None):
    """(train, database, query) of NUS-WIDE from the usual 21-class lists (``path l_1 ... l_21``,
    paths relative to ``root``): ``train.txt``, ``database.txt``, ``test.txt`` by default."""
    root = _require(Path(root), "NUS-WIDE folder")

    def read(listing, default):
        names, labels = parse_label_rows(_require(Path(listing or root / default), "image list"), NUSWIDE_CLASSES,
                                         with_names=True)
        return _image_split(root, names, labels)

    return read(train_list, "train.txt"), read(database_list, "database.txt"), read(query_list, "test.txt")


# ---------------------------------------------------------------------------------------- features

def load_feature_split(features_path, labels_path, split_path) -> tuple[dict, list]:
    """{part: Split} of feature vectors from a getFeature.py file, a label list (``path l_1 ... l_C``, the
    paths of the feature file) and a split file; and the class names (their column numbers)."""
    for value, option in ((features_path, "--features"), (labels_path, "--labels"), (split_path, "--split")):
        if not value:
            raise InputError(f"--dataset features needs {option} (see README: multi-label retrieval)")
    ff = load_features(features_path)
    if ff.paths is None:
        raise InputError(file=features_path, message="no 'paths' array (write it with getFeature.py) to match labels")
    if ff.features.ndim != 2 or not np.isfinite(ff.features).all():
        raise InputError(file=features_path,
                         message=f"features must be a finite (n, dim) array, got shape {ff.features.shape}")
    label_names, labels = parse_label_rows(labels_path, None, with_names=True)
    row = {n: i for i, n in enumerate(label_names)}
    parts = read_split(split_path, ff.paths)
    used = sorted(set(np.concatenate(list(parts.values())).tolist()))
    unlabelled = [ff.paths[i] for i in used if ff.paths[i] not in row]
    if unlabelled:
        raise InputError(file=labels_path,
                         message=f"no label row for {unlabelled[0]!r} ({len(unlabelled)} items without)")
    all_labels = np.zeros((len(ff.paths), labels.shape[1]), np.uint8)
    all_labels[used] = labels[[row[ff.paths[i]] for i in used]]
    items = Split(names=list(ff.paths), labels=all_labels, features=np.asarray(ff.features, dtype=np.float32))
    classes = [str(c) for c in range(labels.shape[1])]
    return {part: items.subset(idx) for part, idx in parts.items()}, classes


# -------------------------------------------------------------------------------------------- all

def carve_validation(train: Split, size: int, seed: int) -> tuple[Split, Split]:
    """(train without val, val): ``size`` seeded random items of train."""
    if not 1 <= size < len(train):
        raise InputError(option="--val_size", value=size,
                         message=f"must be >= 1 and below the {len(train)} training items")
    order = np.random.default_rng([seed, 7919]).permutation(len(train))
    return train.subset(np.sort(order[size:])), train.subset(np.sort(order[:size]))


def default_val_size(n_train: int) -> int:
    """10 % of train, at least 1, at most 1,000."""
    return int(min(1000, max(1, n_train // 10)))


def load_dataset(name: str, *, data=None, split=None, features=None, labels=None, seed: int = 0,
                 val_size: int | None = None, retrieve: int = 0, mosaic_source: str = "digits",
                 mosaic_counts=None, num_query: int = 1000, num_train: int = 4000, flickr_order=None) -> RetrievalData:
    """The dataset ``name`` (module docstring) with its validation split and R (``retrieve`` > 0 overrides)."""
    root = data or DEFAULT_ROOTS.get(name)
    val = None
    if name in ("voc2007", "voc2012"):
        train, database, query = load_voc(root, name[3:])
        classes = list(VOC_CLASSES)
    elif name == "flickr":
        train, database, query = load_flickr(root, split, seed, num_query, num_train, flickr_order)
        classes = [str(c) for c in range(FLICKR_CLASSES)]
    elif name == "nuswide":
        train, database, query = load_nuswide(root)
        classes = [str(c) for c in range(NUSWIDE_CLASSES)]
    elif name == "mosaic":
        from hubness_pr.hyp2.mosaic import load_mosaic
        return load_mosaic(mosaic_source, mosaic_counts, retrieve=retrieve)
    elif name == "features":
        parts, classes = load_feature_split(features, labels, split)
        train, database, query, val = parts["train"], parts["database"], parts["query"], parts.get("val")
    else:
        raise InputError(f"unknown --dataset {name!r}")
    if val is None or len(val) == 0:
        train, val = carve_validation(train, val_size or default_val_size(len(train)), seed)
    data_set = RetrievalData(name=name, classes=classes, train=train, val=val, database=database, query=query,
                             R=retrieve or PUBLISHED_R.get(name, len(database)),
                             meta={"root": str(root) if root else None})
    unlabelled, queries = unlabelled_items(data_set)
    if unlabelled:
        log.warning("%s: %d items carry no label, %d of them queries (a query without labels scores AP 0)", name,
                    unlabelled, queries)
    return data_set


def unlabelled_items(data: RetrievalData) -> tuple[int, int]:
    """(items without any label, those among the queries), each item counted once by name although it may
    be in several splits (VOC's trainval is train, or val, and database)."""
    def empty(split: Split) -> set:
        return {split.names[i] for i in np.flatnonzero(~split.labels.any(axis=1))}
    every = set().union(*(empty(s) for s in (data.train, data.val, data.database, data.query)))
    return len(every), len(empty(data.query))
