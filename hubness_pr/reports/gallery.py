"""Contact sheets of the samples a run singles out (``--gallery DIR``): the rarity-score paper's main
figure made for any model.

One PNG per sheet, each the N images that a score ranks first, labelled with the score and the
sample's index: :data:`SHEETS` lists them and the metrics each needs. Which sheets a run writes
depends on ``--metrics`` alone (:func:`planned_sheets`), so every file of the folder is known, and
checked, before any work. Images are found through the inputs: a feature file's ``paths`` and the
image source recorded in its ``meta["source"]`` (folder, zip, list file or image array; a relative
root is looked up from the current folder, then from the feature file's folder), or the images
themselves when the command was given images. Where an image cannot be found or read, its tile is
grey and still carries the caption; :func:`find_images` says why.

Every sheet of a run has the same size (:func:`sheet_size`), fixed by N, or by the most images a sheet
of the run shows where no sheet has N to show (``--gallery_n 1000`` on 250 generated images: sheets of
250), so that the canvas follows the images drawn; N is at most :data:`MAX_N`. Images are read and
shrunk one at a time as they are drawn.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hubness_pr.errors import InputError
from hubness_pr.metrics.evaluation import Evaluation
from hubness_pr.reports.results import printable_name

THUMB = 96        # thumbnail box, pixels
CAPTION = 32      # two caption lines under each thumbnail
PAD = 6
HEADER = 44       # title and subtitle
COLUMNS = 8
MIN_WIDTH = 600   # room for the title when N is small
DEFAULT_N = 16
MAX_N = 1000      # images a sheet at most (--gallery_n): a sheet of 1,000 is 822 x 16,800 pixels


@dataclass(frozen=True)
class SheetSpec:
    """A kind of sheet: file stem, title, which set, which score, and what it needs."""

    name: str
    title: str
    side: str         # "fake", "real" or "pair" (a generated image beside its nearest real image)
    score: str        # caption label of the score
    needs: tuple      # any one of these metrics makes the sheet


SHEETS = (
    SheetSpec("rarest", "rarest generated images (highest rarity score)", "fake", "rarity", ("rarity",)),
    SheetSpec("most_typical", "most typical generated images (lowest rarity score)", "fake", "rarity", ("rarity",)),
    SheetSpec("least_realistic", "least realistic generated images (lowest realism score)", "fake", "realism",
              ("realism",)),
    SheetSpec("most_realistic", "most realistic generated images (highest realism score)", "fake", "realism",
              ("realism",)),
    SheetSpec("outside_real", "generated images outside the real manifold", "fake", "realism", ("pr", "rarity")),
    SheetSpec("hubs_fake", "strongest hubs of the generated set (highest k-occurrence)", "fake", "k-occ",
              ("pr", "epr", "hubness")),
    SheetSpec("hubs_real", "strongest hubs of the real set (highest k-occurrence)", "real", "k-occ",
              ("pr", "epr", "realism", "rarity", "hubness")),
    SheetSpec("uncovered_real", "real images no generated image covers (outside every generated k-NN ball)",
              "real", "k-occ", ("pr",)),
    SheetSpec("closest_pairs", "generated images closest to a real image (each left of that real image)",
              "pair", "d", ("auth",)),
)
PAIR = "pair"  # a sheet of (generated, nearest real) pairs: two tiles each, captioned with both indices
INDEX_FILE = "gallery.csv"


def count_option(text: str) -> int:
    """argparse type of ``--gallery_n``: an integer in [1, :data:`MAX_N`]."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= MAX_N:
        raise argparse.ArgumentTypeError(f"must be in [1, {MAX_N}] (images a contact sheet), got {value}")
    return value


def planned_sheets(metrics) -> list[SheetSpec]:
    """The sheets a run with these metrics writes (known before any work)."""
    return [spec for spec in SHEETS if set(spec.needs) & set(metrics)]


def sheet_size(n: int) -> tuple[int, int]:
    """(width, height) in pixels of every sheet of a gallery of ``n`` images a sheet."""
    columns = min(n, COLUMNS)
    rows = math.ceil(n / columns)
    return max(MIN_WIDTH, PAD + columns * (THUMB + PAD)), HEADER + rows * (THUMB + CAPTION + PAD) + PAD


@dataclass(frozen=True)
class Sheet:
    """One sheet's selection: rows of its set (evaluated order), their scores, a note for the title."""

    spec: SheetSpec
    rows: np.ndarray
    scores: np.ndarray | None
    note: str = ""


def _ranked(values: np.ndarray, keep: np.ndarray, n: int, descending: bool) -> np.ndarray:
    """The first ``n`` rows among ``keep`` by value (ties: lower row first)."""
    rows = np.flatnonzero(keep)
    order = np.argsort(-values[rows] if descending else values[rows], kind="stable")
    return rows[order[:n]]


def select(evaluation: Evaluation, specs, n: int) -> list[Sheet]:
    """What each sheet of ``specs`` shows, from the evaluation (rows of the evaluated sets)."""
    sheets = []
    realism = evaluation.realism.scores if evaluation.realism is not None else None
    for spec in specs:
        note = ""
        if spec.score == "rarity":
            values = evaluation.rarity.scores
            rows = _ranked(values, ~np.isnan(values), n, descending=spec.name == "rarest")
            note = f"{int((~np.isnan(values)).sum())} of {values.size} have a rarity score"
        elif spec.name in ("least_realistic", "most_realistic"):
            values = realism
            # +inf (a copy of a kept real sample) is the most realistic of all
            rows = _ranked(values, ~np.isnan(values), n, descending=spec.name == "most_realistic")
        elif spec.name == "outside_real":
            outside = (~evaluation.fake_in_real_manifold if evaluation.fake_in_real_manifold is not None
                       else np.isnan(evaluation.rarity.scores))
            candidates = np.flatnonzero(outside)
            # a sample of them spread evenly over the input order (the extremes are least_realistic's)
            pick = np.unique(np.linspace(0, candidates.size - 1, min(n, candidates.size)).round().astype(int))
            rows = candidates[pick] if candidates.size else candidates
            values = realism
            note = f"{candidates.size} of {outside.size} outside, shown spread over the input order"
        elif spec.name == "uncovered_real":
            # the modes the generator misses: the most central of them (highest k-occurrence in the
            # real set: typical real images, not outliers) first
            values = evaluation.real_k_occurrence
            uncovered = ~evaluation.real_in_fake_manifold
            rows = _ranked(values, uncovered, n, descending=True)
            note = (f"{int(uncovered.sum())} of {uncovered.size} uncovered (recall {1 - uncovered.mean():.3f}), "
                    "most central (highest k-occurrence) first")
        elif spec.side == PAIR:
            # memorisation: the generated images nearest to some real image (ties: lower index first),
            # n // 2 pairs so that the sheet keeps the run's size (at least one)
            auth = evaluation.results["auth"]
            values = auth.nearest_real_distance
            rows = _ranked(values, np.ones(values.size, bool), max(1, n // 2), descending=False)
            note = (f"{auth.copy_count} of {values.size} with d1/d2 < {evaluation.params.get('copy_ratio')}; "
                    f"AuthPct {auth.authpct:.1f} %")
        else:
            values = evaluation.fake_k_occurrence if spec.side == "fake" else evaluation.real_k_occurrence
            rows = _ranked(values, np.ones(values.size, bool), n, descending=True)
        sheets.append(Sheet(spec, rows, None if values is None else values[rows], note))
    return sheets


# --------------------------------------------------------------------------------- finding images

class ImageFinder:
    """Images of one set by row: ``read(row)`` -> (H, W, 3) uint8, or None with ``problems`` noting why."""

    def __init__(self, source, names: list[str]):
        self.source = source
        self.names = names
        self._where = {name: i for i, name in enumerate(source.names)} if source is not None else {}
        self.problems: list[str] = []

    def read(self, row: int):
        if self.source is None:
            return None
        index = self._where.get(self.names[row])
        if index is None:
            self.problems.append(f"{self.names[row]} is not in {self.source.root}")
            return None
        try:
            return self.source.read(index)
        except InputError as exc:  # an image that cannot be read: the sheet shows a blank, the log says why
            self.problems.append(str(exc))
            return None


def _resolve_root(root: str, feature_file: str) -> str | None:
    candidates = [root]
    if not os.path.isabs(root) and feature_file:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(feature_file)), root))
    return next((c for c in candidates if os.path.exists(c)), None)


def image_root(data) -> tuple[str | None, str]:
    """(the image source's path, "") for a :class:`hubness_pr.io.store.FeatureFile`, or (None, why not)."""
    name = data.source or "the input"
    if not data.paths:
        return None, f"{name} has no image paths"
    source = data.meta.get("source") if isinstance(data.meta, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("root"), str):
        return None, f"{name} records no image source (meta['source'])"
    root = _resolve_root(source["root"], data.source if data.key != "(images)" else "")
    if root is None:
        return None, f"the images of {name} ({source.get('kind', 'source')} {source['root']}) are not there"
    return root, ""


def find_images(data) -> tuple[ImageFinder, str]:
    """An :class:`ImageFinder` for the rows of ``data`` (a FeatureFile), and why none when it has no images."""
    from hubness_pr.extraction.images import open_source

    root, why = image_root(data)
    if root is None:
        return ImageFinder(None, []), why
    try:
        source = open_source(root)
    except InputError as exc:
        return ImageFinder(None, []), str(exc)
    return ImageFinder(source, list(data.paths)), ""


# ---------------------------------------------------------------------------------------- drawing

def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, font, width: int) -> str:
    """``text`` shortened in the middle with an ellipsis until it fits ``width`` pixels."""
    head, tail = text[: len(text) // 2], text[len(text) // 2:]
    shortened = False
    while (head or tail) and font.getlength(head + ("…" if shortened else "") + tail) > width:
        head, tail, shortened = (head[:-1], tail, True) if len(head) > len(tail) else (head, tail[1:], True)
    return head + ("…" if shortened else "") + tail


def _thumbnail(image: np.ndarray):
    from PIL import Image

    img = Image.fromarray(image)
    scale = min(THUMB / img.width, THUMB / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # small images (digits, icons) grow with hard pixel edges; large ones shrink smoothly
    return img.resize(size, Image.NEAREST if scale >= 2 else Image.LANCZOS)


def format_score(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "undefined"
    if math.isinf(value):
        return "inf"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def render(sheet: Sheet, images, labels: list[str], n: int, subtitle: str, count: int | None = None):
    """The sheet as a PIL image of :func:`sheet_size` (``n``): title, subtitle, then the thumbnails
    in rank order, each captioned ``#index score`` and its file name; ``None`` images are grey tiles.
    ``images`` may be any iterable (a generator reads each image only when its tile is drawn);
    ``count``: the number the title gives (None: the tiles)."""
    from PIL import Image, ImageDraw

    width, height = sheet_size(n)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    title_font, font = _font(15), _font(11)
    shown = len(sheet.rows)
    title = f"{shown if count is None else count} {sheet.spec.title}"
    draw.text((PAD, 4), _fit(title, title_font, width - 2 * PAD), fill="black", font=title_font)
    draw.text((PAD, 24), _fit(subtitle + (f"; {sheet.note}" if sheet.note else ""), font, width - 2 * PAD),
              fill="#444444", font=font)
    if not shown:
        draw.text((PAD, HEADER + THUMB // 2), "none", fill="#888888", font=title_font)
    columns = min(n, COLUMNS)
    for k, (row, image, label) in enumerate(zip(sheet.rows, images, labels)):
        x = PAD + (k % columns) * (THUMB + PAD)
        y = HEADER + (k // columns) * (THUMB + CAPTION + PAD)
        if image is None:
            draw.rectangle((x, y, x + THUMB - 1, y + THUMB - 1), fill="#d0d0d0")
            draw.text((x + (THUMB - font.getlength("missing")) / 2, y + 8), "missing", fill="#555555",
                      font=font)
        else:
            thumb = _thumbnail(image)
            canvas.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        score = "" if sheet.scores is None else f"  {sheet.spec.score} {format_score(sheet.scores[k])}"
        draw.text((x, y + THUMB + 2), _fit(f"#{label[0]}{score}", font, THUMB), fill="black", font=font)
        if label[1]:
            draw.text((x, y + THUMB + 16), _fit(label[1], font, THUMB), fill="#555555", font=font)
    return canvas


def render_pairs(sheet: Sheet, images, labels: list, n: int, subtitle: str):
    """A :data:`PAIR` sheet as a PIL image of :func:`sheet_size` (``n``): each pair is two tiles, the
    generated image (caption ``#index d distance``) then its nearest real image (``real #index``);
    ``images`` and ``labels`` alternate generated, real. ``None`` images are grey tiles."""
    rows = np.repeat(sheet.rows, 2)
    inner = Sheet(SheetSpec(sheet.spec.name, sheet.spec.title, sheet.spec.side, "", sheet.spec.needs), rows, None,
                  sheet.note)
    canvas = render(inner, images, labels, max(n, 2), subtitle, count=len(sheet.rows))
    if canvas.size != sheet_size(n):  # n = 1: one pair on the run's one-image canvas (MIN_WIDTH holds two)
        from PIL import Image

        small = Image.new("RGB", sheet_size(n), "white")
        small.paste(canvas.crop((0, 0) + sheet_size(n)), (0, 0))
        canvas = small
    return canvas


def pair_rows(sheet: Sheet, evaluation_nearest: np.ndarray) -> list:
    """(side, row) of each tile of a :data:`PAIR` sheet, in drawing order."""
    return [(side, int(r)) for row in sheet.rows for side, r in (("fake", row), ("real", evaluation_nearest[row]))]


def write_index(handle, sheets: list[Sheet], sets: dict, nearest: np.ndarray | None = None) -> None:
    """``gallery.csv``: one row per tile: sheet, rank, set, index (row in the input file), path (names
    that are not UTF-8 in backslash form, :func:`hubness_pr.reports.results.printable_name`), score.
    A :data:`PAIR` sheet has two rows a rank, the generated image and its nearest real image
    (``nearest``: the evaluated real row of each generated row), both with the pair's distance."""
    writer = csv.writer(handle)
    writer.writerow(["sheet", "rank", "set", "index", "path", "score_name", "score"])
    for sheet in sheets:
        for rank, row in enumerate(sheet.rows):
            score = "" if sheet.scores is None else sheet.scores[rank]
            if isinstance(score, (float, np.floating)):
                score = "" if math.isnan(score) else repr(float(score))
            tiles = [(sheet.spec.side, row)] if sheet.spec.side != PAIR else [("fake", row), ("real", nearest[row])]
            for side, r in tiles:
                indices, paths = sets[side]
                writer.writerow([sheet.spec.name, rank + 1, side, int(indices[r]),
                                 "" if paths is None else printable_name(paths[r]), sheet.spec.score, score])


def sheet_file(folder, spec: SheetSpec) -> Path:
    return Path(folder) / f"{spec.name}.png"


def _within(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Gallery:
    """The ``--gallery DIR`` output of one run: every file planned (and checked) up front in the
    run's :class:`hubness_pr.io.outputs.OutputFiles`, written with the run's other outputs and put in
    place with them at the commit.

    DIR may exist (files of the same names are replaced, others left alone) or is created when the
    run starts (its parent must exist); a folder the run created is removed again if the run fails.
    """

    count = staticmethod(count_option)  # argparse type of --gallery_n

    def __init__(self, folder, metrics, n: int, outputs, option: str = "--gallery"):
        self.folder, self.n, self.option = str(folder), n, option
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise InputError(option=option, file=self.folder, message="is a file, expected a folder")
        for name, source in outputs.inputs.items():
            if os.path.isdir(source) and _within(self.folder, source):
                raise InputError(option=option, file=self.folder, message=f"is inside the input {name} ({source}); "
                                 "the sheets would become images of it")
        self.specs = planned_sheets(metrics)
        if not self.specs:
            needs = sorted({m for spec in SHEETS for m in spec.needs})
            raise InputError(option=option, file=self.folder,
                             message=f"needs at least one of the metrics {', '.join(needs)}")
        self.created = False
        if not os.path.isdir(self.folder):
            parent = os.path.dirname(os.path.abspath(self.folder))
            if not os.path.isdir(parent):
                raise InputError(option=option, file=self.folder,
                                 message=f"folder {os.path.dirname(self.folder) or '.'} does not exist")
            try:
                os.mkdir(self.folder)
            except OSError as exc:
                raise InputError(option=option, file=self.folder,
                                 message=f"cannot create the folder ({exc.strerror or exc})") from exc
            self.created = True
        try:
            self.sheets = {spec.name: outputs.add(sheet_file(self.folder, spec), option) for spec in self.specs}
            self.index = outputs.add(Path(self.folder) / INDEX_FILE, option)
        except BaseException:
            self.abandon()
            raise

    def check_sources(self, *datasets) -> None:
        """Refuse a folder inside the image source recorded in a feature file (checked once loaded)."""
        for data in datasets:
            root, _ = image_root(data)
            if root is not None and os.path.isdir(root) and _within(self.folder, root):
                raise InputError(option=self.option, file=self.folder,
                                 message=f"is inside {root}, the images of {data.source}; "
                                 "the sheets would become images of it")

    def abandon(self) -> None:
        """After a failed run: remove the folder if this run created it and it is still empty."""
        if self.created:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass

    def write(self, evaluation: Evaluation, sets: dict, subtitle: str) -> str:
        """Render every planned sheet and the index to their staged files. ``sets`` maps "real" and
        "fake" to (FeatureFile, row indices in the input file). Returns a one-line note of images
        that could not be found or read ("" when all were)."""
        sheets = select(evaluation, self.specs, self.n)
        drawn = Drawn(sheets, self.n, sets, subtitle, evaluation)
        for sheet, image in zip(sheets, drawn.images):  # one sheet in memory at a time
            with self.sheets[sheet.spec.name].open() as handle:
                image.save(handle, format="PNG")
        with self.index.open("w", newline="", encoding="utf-8") as handle:
            write_index(handle, sheets, {side: (indices, data.paths) for side, (data, indices) in sets.items()},
                        _nearest(evaluation))
        return f"{self.option} {self.folder}: {drawn.missing()}: grey tiles instead" if drawn.missing() else ""


def _nearest(evaluation: Evaluation | None) -> np.ndarray | None:
    """Each generated row's nearest real row (metric ``auth``), or None."""
    auth = evaluation.results.get("auth") if evaluation is not None else None
    return None if auth is None else auth.nearest_real


class Drawn:
    """The sheets of :func:`select` drawn one after the other (:attr:`images`, a generator of PIL
    images in the selection's order, each of the same :func:`sheet_size`: that of ``n`` images, or of
    the most images a sheet shows where none has ``n``), and once drawn, which images could not be
    found or read (:meth:`missing`). ``sets`` maps "real" and "fake" to (FeatureFile, row indices in
    the input file)."""

    def __init__(self, sheets: list[Sheet], n: int, sets: dict, subtitle: str, evaluation: Evaluation | None = None):
        self.sheets, self.sets, self.subtitle = sheets, sets, subtitle
        self.nearest = _nearest(evaluation)
        self.n = max(1, min(n, max([len(sheet.rows) * (2 if sheet.spec.side == PAIR else 1)
                                    for sheet in sheets] or [1])))  # the images drawn
        self.finders, self.absent = {}, []
        sides = {side for sheet in sheets for side in (("fake", "real") if sheet.spec.side == PAIR
                                                        else (sheet.spec.side,))}
        for side in sorted(sides):
            self.finders[side], why = find_images(sets[side][0])
            if why:
                self.absent.append(f"no {side} images ({why})")
        self.images = (self._render(sheet) for sheet in sheets)

    def _render(self, sheet: Sheet):
        if sheet.spec.side == PAIR:
            tiles = pair_rows(sheet, self.nearest)
            images = (self.finders[side].read(row) for side, row in tiles)
            labels = []
            for k, (side, row) in enumerate(tiles):
                data, indices = self.sets[side]
                text = (f"{int(indices[row])} d {format_score(sheet.scores[k // 2])}" if side == "fake"
                        else f"{int(indices[row])} real")
                labels.append((text, printable_name(os.path.basename(data.paths[row])) if data.paths else ""))
            return render_pairs(sheet, images, labels, self.n, self.subtitle)
        data, indices = self.sets[sheet.spec.side]
        images = (self.finders[sheet.spec.side].read(int(row)) for row in sheet.rows)  # one at a time
        labels = [(int(indices[row]), printable_name(os.path.basename(data.paths[row])) if data.paths else "")
                  for row in sheet.rows]
        return render(sheet, images, labels, self.n, self.subtitle)

    def missing(self) -> str:
        """One line on the images not drawn ("" when every one was)."""
        notes = list(self.absent)
        for side, finder in self.finders.items():
            if finder.problems:
                notes.append(f"{len(finder.problems)} {side} image(s) not read (first: {finder.problems[0]})")
        return "; ".join(notes)

