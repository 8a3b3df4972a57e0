"""Image sources (folder, zip, array file, list file) and decoding to RGB uint8 (DESIGN.md section 6).

Every source lists its images in sorted order under names relative to its root, and reads image
``i`` as an (H, W, 3) uint8 RGB array. Decoding: pyspng for 8- and 16-bit grey, RGB and RGBA PNGs
where installed, Pillow otherwise; both give identical pixels, because colour conversion follows PIL's
``convert('RGB')`` (alpha dropped, grey replicated, palette looked up, CMYK by PIL's formula) and
16-bit samples keep their high byte (``v >> 8``) whichever decoder read them.
"""
from __future__ import annotations

import abc
import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

try:  # optional fast PNG decoder
    import pyspng
except ImportError:  # pragma: no cover - depends on the installation
    pyspng = None

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


# ---------------------------------------------------------------------------------------- decoding

def _png_header(data: bytes):
    """(bit depth, colour type) of a PNG, or None when ``data`` is not a PNG with an IHDR chunk."""
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return data[24], data[25]


def to_rgb8(arr: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1|2|3|4) uint8/uint16 -> (H, W, 3) uint8, as PIL's convert('RGB') would."""
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif channels == 4:  # RGBA: alpha dropped, not composited
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def decode_image(data: bytes, name: str, use_pyspng: bool = True) -> np.ndarray:
    """Decode an encoded image to (H, W, 3) uint8 RGB; ValueError naming ``name`` if it cannot be."""
    if not data:
        raise ValueError(f"{name}: empty file, not an image")
    header = _png_header(data)
    # pyspng handles grey, RGB and RGBA at 8 or 16 bits; palette and grey+alpha go to PIL
    if use_pyspng and pyspng is not None and header is not None and header[1] in (0, 2, 6) and header[0] in (8, 16):
        try:
            return to_rgb8(pyspng.load(data))
        except Exception as exc:  # pyspng raises RuntimeError/ValueError for damaged data
            raise ValueError(f"{name}: cannot decode PNG ({str(exc).strip() or type(exc).__name__})") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                arr = np.asarray(img)
                return to_rgb8(np.clip(arr, 0, 65535).astype(np.uint16))
            return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error,
            Image.DecompressionBombError) as exc:
        raise ValueError(f"{name}: cannot decode image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


# ----------------------------------------------------------------------------------------- sources

class ImageSource(abc.ABC):
    """Images in sorted order: ``names`` (relative to the root) and ``read(i)`` -> (H, W, 3) uint8."""

    kind = "images"

    def __init__(self, root: str, names: list[str]):
        self.root = root
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    @abc.abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as (H, W, 3) uint8 RGB; ValueError naming the file if it cannot be decoded."""

    def subset(self, indices) -> ImageSource:
        """The same source restricted to ``indices`` (sorted), keeping names relative to the root."""
        sub = object.__new__(type(self))
        sub.__dict__.update(self.__dict__)
        sub._index = [self._base_index(i) for i in indices]
        sub.names = [self.names[i] for i in indices]
        return sub

    def _base_index(self, i: int) -> int:
        return self._index[i] if getattr(self, "_index", None) is not None else i

    def describe(self) -> dict:
        return {"kind": self.kind, "root": self.root, "count": len(self)}


class FolderSource(ImageSource):
    """A folder searched recursively for png, jpg/jpeg, webp, bmp, tif (any letter case)."""

    kind = "folder"

    def __init__(self, root):
        root = Path(root)
        names = []
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            rel = Path(folder).relative_to(root)
            names += [(rel / f).as_posix() for f in files if is_image_name(f)]
        super().__init__(str(root), sorted(names))

    def read(self, index: int) -> np.ndarray:
        name = self.names[index]
        path = Path(self.root) / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return decode_image(data, str(path))


class ZipSource(ImageSource):
    """Images inside a .zip (the StyleGAN dataset format); the archive is opened once per process."""

    kind = "zip"

    def __init__(self, path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = sorted(n for n in archive.namelist() if is_image_name(n) and not n.endswith("/"))
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{path}: not a readable zip archive ({exc})") from None
        super().__init__(str(path), names)
        self._archive = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_archive"], state["_pid"] = None, None
        return state

    def read(self, index: int) -> np.ndarray:
        if self._archive is None or self._pid != os.getpid():  # a worker must not share the parent's handle
            self._archive, self._pid = zipfile.ZipFile(self.root), os.getpid()
        name = self.names[index]
        try:
            data = self._archive.read(name)
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise ValueError(f"{self.root}:{name}: cannot read from the archive ({exc})") from None
        return decode_image(data, f"{self.root}:{name}")


class ArraySource(ImageSource):
    """A .npy/.npz array of uint8 images, (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4."""

    kind = "array"

    def __init__(self, path):
        path = Path(path)
        array = _load_image_array(path)
        if array.ndim != 4:
            raise ValueError(f"{path}: expected a 4-D uint8 image array (N, H, W, C) or (N, C, H, W), "
                             f"got shape {array.shape}")
        if array.dtype != np.uint8:
            raise ValueError(f"{path}: expected uint8 images, got dtype {array.dtype}")
        if array.shape[-1] in (1, 3, 4):
            self.layout = "NHWC"
        elif array.shape[1] in (1, 3, 4):
            self.layout = "NCHW"
        else:
            raise ValueError(f"{path}: cannot tell the channel axis of shape {array.shape} (need 1, 3 or 4 channels)")
        self.array = array
        width = len(str(max(0, array.shape[0] - 1)))
        super().__init__(str(path), [f"{i:0{width}d}" for i in range(array.shape[0])])

    def read(self, index: int) -> np.ndarray:
        img = self.array[self._base_index(index)]
        if self.layout == "NCHW":
            img = np.moveaxis(img, 0, -1)
        return to_rgb8(np.asarray(img))


class ListSource(ImageSource):
    """A text file with one image path a line (relative paths are relative to the file's folder)."""

    kind = "list"

    def __init__(self, path):
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the image list ({exc})") from None
        names = sorted({line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")})
        self.base = path.parent
        missing = [n for n in names if not (self.base / n).is_file()]
        if missing:
            raise ValueError(f"{path}: {len(missing)} listed file(s) do not exist, e.g. {missing[0]}")
        super().__init__(str(path), names)

    def read(self, index: int) -> np.ndarray:
        full = self.base / self.names[index]
        try:
            data = full.read_bytes()
        except OSError as exc:
            raise ValueError(f"{full}: cannot read ({exc.strerror or exc})") from None
        return decode_image(data, str(full))


def _load_image_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            key = next((k for k in ("images", "image", "x", "arr_0") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ValueError(f"{path}: several arrays ({', '.join(keys)}) and none named images, image, x or arr_0")
            return data[key]
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npy/.npz array file ({exc})") from None


def is_image_array_file(path) -> bool:
    """True if ``path`` is a .npy/.npz holding a 4-D uint8 array (images), not a feature matrix."""
    path = Path(path)
    if path.suffix.lower() not in (".npy", ".npz") or not path.is_file():
        return False
    try:
        array = _load_image_array(path)
    except ValueError:
        return False
    return array.ndim == 4 and array.dtype == np.uint8


def is_image_input(path) -> bool:
    """True if ``path`` names images (a folder, .zip, list file or uint8 image array), not features."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and (path.suffix.lower() in (".zip",) + LIST_EXTENSIONS
                                                  or is_image_array_file(path)))


def open_source(path) -> ImageSource:
    """The image source at ``path``: a folder, a .zip, a .npy/.npz of uint8 images or a list file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        source = FolderSource(path)
    elif path.suffix.lower() == ".zip":
        source = ZipSource(path)
    elif path.suffix.lower() in (".npy", ".npz"):
        source = ArraySource(path)
    elif path.suffix.lower() in LIST_EXTENSIONS:
        source = ListSource(path)
    else:
        raise ValueError(f"{path}: not an image folder, .zip, .npy/.npz image array or list file (.txt)")
    if len(source) == 0:
        raise ValueError(f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} in any letter case)")
    return source
