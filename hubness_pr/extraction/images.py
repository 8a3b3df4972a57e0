"""Image sources (folder, zip, array file, list file) and decoding to RGB uint8 (docs/architecture.md, "Feature extraction").

Every source lists its images in sorted order under names relative to its root, and reads image
``i`` as an (H, W, 3) uint8 RGB array. Decoding: pyspng for 8- and 16-bit grey, RGB and RGBA PNGs
where installed, Pillow otherwise; both give identical pixels, because colour conversion follows PIL's
``convert('RGB')`` (alpha dropped, grey replicated, palette looked up, CMYK by PIL's formula) and
16-bit samples keep their high byte (``v >> 8``) whichever decoder read them. Both refuse an image
of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels from its header, before decoding it.

Reading is bounded too: only regular files are opened (a FIFO or a device named ``x.png`` would
hang the run or fill the memory), and an image file or zip member is read only up to
:func:`max_file_bytes`, derived from the same pixel limit.
"""
from __future__ import annotations

import abc
import collections
import io
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from hubness_pr.errors import InputError
from hubness_pr.io.store import ZIP_READ_ERRORS, npz_array, npz_header, read_bounded

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
    """(width, height, bit depth, colour type) of a PNG, or None when ``data`` is not a PNG with an IHDR chunk."""
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height, data[24], data[25]


def _too_large(name: str, size: str = "") -> InputError:
    return InputError(file=name, message=f"image too large{size}: over the limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                      "(PIL.Image.MAX_IMAGE_PIXELS), not decoded (a decompression bomb?)")


def _check_size(width: int, height: int, name: str) -> None:
    """Refuse, from the header, an image with too many pixels (a decompression bomb) or none."""
    if width == 0 or height == 0:
        raise InputError(file=name, message=f"the image is empty ({width} x {height} pixels)")
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise _too_large(name, f" ({width} x {height} = {width * height:,} pixels)")


# the most bytes a pixel an encoded image can take (16-bit RGBA stored uncompressed), and room for its metadata
_BYTES_PER_PIXEL = 8
_METADATA_BYTES = 16 * 2**20


def max_file_bytes() -> int | None:
    """The largest image file (or zip member) read: ``8 x PIL.Image.MAX_IMAGE_PIXELS`` bytes (an
    uncompressed 16-bit RGBA image at the pixel limit) plus 16 MiB of metadata; None when PIL's
    pixel limit is off."""
    if not Image.MAX_IMAGE_PIXELS:
        return None
    return _BYTES_PER_PIXEL * Image.MAX_IMAGE_PIXELS + _METADATA_BYTES


def _check_bytes(size: int, name: str, size_text: str | None = None) -> None:
    """Refuse an image file of more than :func:`max_file_bytes` bytes, before reading it."""
    limit = max_file_bytes()
    if limit is not None and size > limit:
        raise InputError(file=name,
                         message=f"{size_text or f'{size:,} bytes'}, over the limit of {limit:,} bytes for one "
                         f"image ({_BYTES_PER_PIXEL} bytes a pixel at PIL.Image.MAX_IMAGE_PIXELS = "
                         f"{Image.MAX_IMAGE_PIXELS:,}, plus {_METADATA_BYTES // 2**20} MiB), not read")


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(name: str, mode: int) -> InputError:
    kind = next((text for test, text in _FILE_KINDS if test(mode)), "not a regular file")
    return InputError(file=name, message=f"not a regular file ({kind}), not read")


def read_image_file(path) -> bytes:
    """The bytes of the image file ``path``: a regular file (a link to one is followed) of at most
    :func:`max_file_bytes` bytes; anything else (a FIFO, a device, a socket, a folder) is refused
    before it is opened. ValueError naming the file."""
    name = str(path)
    try:
        st = os.stat(path)  # follows links: the target decides
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(name, st.st_mode)
        _check_bytes(st.st_size, name)
        limit = max_file_bytes()
        # non-blocking: a file swapped for a FIFO since the check cannot hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with open(fd, "rb") as handle:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise _not_regular(name, mode)
            data = read_bounded(handle, limit)
    except OSError as exc:
        raise InputError(file=name, message=f"cannot read ({exc.strerror or exc})") from exc
    if limit is not None and len(data) > limit:  # grew since the check
        _check_bytes(len(data), name, f"more than {limit:,} bytes")
    return data


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
        raise InputError(file=name, message="empty file, not an image")
    header = _png_header(data)
    if header is not None:
        _check_size(header[0], header[1], name)
    # pyspng handles grey, RGB and RGBA at 8 or 16 bits; palette and grey+alpha go to PIL
    if use_pyspng and pyspng is not None and header is not None and header[3] in (0, 2, 6) and header[2] in (8, 16):
        try:
            return to_rgb8(pyspng.load(data))
        except Exception as exc:  # pyspng raises RuntimeError/ValueError for damaged data
            raise InputError(file=name,
                             message=f"cannot decode PNG ({str(exc).strip() or type(exc).__name__})") from None
    try:
        with warnings.catch_warnings():
            # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that: refuse both, from the header
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(name) from None
    except _PIL_ERRORS as exc:
        raise _cannot_decode(name, exc) from None
    with img:
        _check_size(*img.size, name)
        try:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                return to_rgb8(np.clip(np.asarray(img), 0, 65535).astype(np.uint16))
            return np.ascontiguousarray(np.asarray(img.convert("RGB")))
        except _PIL_ERRORS as exc:
            raise _cannot_decode(name, exc) from None


_PIL_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error)


def _cannot_decode(name: str, exc: BaseException) -> InputError:
    return InputError(file=name,
                      message=f"cannot decode image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


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

    @abc.abstractmethod
    def stamps(self) -> list[str]:
        """One string per image that changes whenever the image may have (size and times, or a
        checksum): part of the checkpoint fingerprint, so that a resumed run never reuses features
        of an image that has since changed."""


def _file_stamp(path) -> str:
    """Size, modification and status-change times of a file (the last changes on any write, even
    one that restores the modification time)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class _FileSource(ImageSource):
    """Images that are files on disk, at ``path_of(i)``."""

    @abc.abstractmethod
    def path_of(self, index: int) -> Path:
        """The file of image ``index``."""

    def read(self, index: int) -> np.ndarray:
        path = self.path_of(index)
        return decode_image(read_image_file(path), str(path))

    def stamps(self) -> list[str]:
        return [_file_stamp(self.path_of(i)) for i in range(len(self))]


def _walk_images(root: Path) -> list[str]:
    """Image names under ``root`` (relative, '/'-separated), each real folder listed once.

    A symbolic link to a folder inside ``root`` is not followed (its images are listed under their
    real names), and a link to a folder outside is followed once: a link loop (``ln -s . d/self``)
    cannot repeat or hang the listing.
    """
    real_root = os.path.realpath(root)
    seen, names = set(), []
    stack = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise InputError(file=folder, message=f"cannot list the folder ({exc.strerror or exc})") from exc
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:  # a link loop: listed as a file, which then fails to read with its name
                is_dir = False
            if not is_dir:
                if is_image_name(entry.name):
                    names.append(rel + entry.name)
            elif not (entry.is_symlink() and _is_within(os.path.realpath(entry.path), real_root)):
                subfolders.append((entry.path, f"{rel}{entry.name}/"))
        stack += reversed(subfolders)  # depth first, in name order
    return sorted(names)


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class FolderSource(_FileSource):
    """A folder searched recursively for png, jpg/jpeg, webp, bmp, tif (any letter case)."""

    kind = "folder"

    def __init__(self, root):
        super().__init__(str(root), _walk_images(Path(root)))

    def path_of(self, index: int) -> Path:
        return Path(self.root) / self.names[index]


class ZipSource(ImageSource):
    """Images inside a .zip (the StyleGAN dataset format); the archive is opened once per process.

    A member is read only up to :func:`max_file_bytes`: one that declares more is refused before it is
    inflated, and one that inflates past what it declares is stopped there (a zip bomb costs no
    memory). An archive holding two members of one image name is refused (which one is the image?).
    """

    kind = "zip"

    def __init__(self, path):
        try:
            with zipfile.ZipFile(path) as archive:
                listed = [n for n in archive.namelist() if is_image_name(n) and not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(file=path, message=f"not a readable zip archive ({exc})") from exc
        counts = collections.Counter(listed)
        twice = sorted(n for n, count in counts.items() if count > 1)
        if twice:
            raise InputError(file=path, message=f"the member {twice[0]} is in the archive {counts[twice[0]]} times "
                             f"({len(twice)} image name(s) held more than once): which one is the image?")
        names = sorted(counts)
        super().__init__(str(path), names)
        self._archive = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_archive"], state["_pid"] = None, None
        return state

    def read(self, index: int) -> np.ndarray:
        name = self.names[index]
        where = f"{self.root}:{name}"
        try:
            info = self._open().getinfo(name)
            _check_bytes(info.file_size, where, f"{info.file_size:,} bytes inflated")
            limit = max_file_bytes()
            # read a MiB at a time: zipfile inflates as much as one read asks before it cuts the data at
            # the declared size (then fails the CRC), so a member that lies in its header costs a MiB
            with self._open().open(info) as member:
                data = read_bounded(member, limit)
        except (*ZIP_READ_ERRORS, KeyError) as exc:
            raise InputError(file=where, message=f"cannot read from the archive ({exc})") from None
        if limit is not None and len(data) > limit:
            _check_bytes(len(data), where, f"more than {limit:,} bytes inflated")
        return decode_image(data, where)

    def _open(self) -> zipfile.ZipFile:
        if self._archive is None or self._pid != os.getpid():  # a worker must not share the parent's handle
            self._archive, self._pid = zipfile.ZipFile(self.root), os.getpid()
        return self._archive

    def stamps(self) -> list[str]:
        try:
            archive = self._open()
            return [f"{info.file_size}:{info.CRC:08x}" for info in map(archive.getinfo, self.names)]
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise InputError(file=self.root, message=f"not a readable zip archive ({exc})") from exc


class ArraySource(ImageSource):
    """A .npy/.npz array of uint8 images, (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4."""

    kind = "array"

    def __init__(self, path):
        path = Path(path)
        array = _load_image_array(path)
        if array.ndim != 4:
            raise InputError(file=path, message="expected a 4-D uint8 image array (N, H, W, C) or (N, C, H, W), "
                             f"got shape {array.shape}")
        if array.dtype != np.uint8:
            raise InputError(file=path, message=f"expected uint8 images, got dtype {array.dtype}")
        if 0 in array.shape:
            raise InputError(file=path, message=f"the image array is empty (shape {array.shape})")
        if array.shape[-1] in (1, 3, 4):
            self.layout = "NHWC"
        elif array.shape[1] in (1, 3, 4):
            self.layout = "NCHW"
        else:
            raise InputError(file=path,
                             message=f"cannot tell the channel axis of shape {array.shape} (need 1, 3 or 4 channels)")
        self.array = array
        width = len(str(max(0, array.shape[0] - 1)))
        super().__init__(str(path), [f"{i:0{width}d}" for i in range(array.shape[0])])

    def read(self, index: int) -> np.ndarray:
        img = self.array[self._base_index(index)]
        if self.layout == "NCHW":
            img = np.moveaxis(img, 0, -1)
        return to_rgb8(np.asarray(img))

    def stamps(self) -> list[str]:
        return [_file_stamp(self.root)] * len(self)


class ListSource(_FileSource):
    """A text file with one image path a line (relative paths are relative to the file's folder)."""

    kind = "list"

    def __init__(self, path):
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(file=path, message=f"cannot read the image list ({exc})") from exc
        names = sorted({line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")})
        self.base = path.parent
        missing = [n for n in names if not (self.base / n).exists()]  # a FIFO or a folder fails when read, with its kind
        if missing:
            raise InputError(file=path, message=f"{len(missing)} listed file(s) do not exist, e.g. {missing[0]}")
        super().__init__(str(path), names)

    def path_of(self, index: int) -> Path:
        return self.base / self.names[index]


_IMAGE_ARRAY_KEYS = ("images", "image", "x", "arr_0")


def _load_image_array(path: Path, header_only: bool = False):
    """The image array of a .npy (memory-mapped) or .npz file; with ``header_only`` (shape, dtype)
    read from the header alone. ValueError naming the file where there is none."""
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # maps the data, reads only the header
            return (array.shape, array.dtype) if header_only else array
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            key = next((k for k in _IMAGE_ARRAY_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputError(file=path, message=f"{len(keys)} arrays ({', '.join(keys) or 'none'}) and none named "
                                 f"{', '.join(_IMAGE_ARRAY_KEYS)}")
            return (npz_header if header_only else npz_array)(data, key, str(path))
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        if isinstance(exc, InputError):  # ours: names the file already
            raise
        raise InputError(file=path,
                         message=f"not a readable .npy/.npz array of images ({str(exc).splitlines()[0]})") from exc


def is_image_array_file(path) -> bool:
    """True if ``path`` is a .npy/.npz holding a 4-D uint8 array (images), not a feature matrix; reads headers only."""
    path = Path(path)
    if path.suffix.lower() not in (".npy", ".npz") or not path.is_file():
        return False
    try:
        shape, dtype = _load_image_array(path, header_only=True)
    except ValueError:
        return False
    return len(shape) == 4 and dtype == np.uint8


def is_image_input(path) -> bool:
    """True if ``path`` names images (a folder, .zip, list file or uint8 image array), not features."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and (path.suffix.lower() in (".zip",) + LIST_EXTENSIONS
                                                  or is_image_array_file(path)))


def open_source(path) -> ImageSource:
    """The image source at ``path``: a folder, a .zip, a .npy/.npz of uint8 images or a list file."""
    path = Path(path)
    if not path.exists():
        raise InputError(file=path, message="no such file or folder")
    mode = path.stat().st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):  # a FIFO or a device would hang or never end
        raise _not_regular(str(path), mode)
    if path.is_dir():
        source = FolderSource(path)
    elif path.suffix.lower() == ".zip":
        source = ZipSource(path)
    elif path.suffix.lower() in (".npy", ".npz"):
        source = ArraySource(path)
    elif path.suffix.lower() in LIST_EXTENSIONS:
        source = ListSource(path)
    else:
        raise InputError(file=path, message="not an image folder, .zip, .npy/.npz image array or list file (.txt)")
    if len(source) == 0:
        raise InputError(file=path,
                         message=f"no images found (looked for {', '.join(IMAGE_EXTENSIONS)} in any letter case)")
    return source
