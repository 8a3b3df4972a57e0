"""Decoding and image sources: every mode, both decoders, every input form, broken files."""
import io
import signal
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from hubness_pr.extraction import images
from hubness_pr.extraction.images import decode_image, open_source


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def rgb_noise(h=13, w=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def png16(arr: np.ndarray) -> bytes:
    """A minimal 16-bit PNG writer (PIL cannot write 16-bit RGB): colour type 0 (grey) or 2 (RGB)."""
    h, w = arr.shape[:2]
    color = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"])
def test_png_modes_identical_with_both_decoders(mode):
    base = Image.fromarray(rgb_noise())
    img = base.convert(mode) if mode != "I;16" else Image.fromarray(
        np.random.default_rng(1).integers(0, 65536, size=(9, 11), dtype=np.uint16))
    data = encode(img)
    fast = decode_image(data, "x.png", use_pyspng=True)
    slow = decode_image(data, "x.png", use_pyspng=False)
    assert fast.dtype == np.uint8 and fast.shape[2] == 3
    np.testing.assert_array_equal(fast, slow)
    if mode != "I;16":  # 8-bit modes: exactly PIL's convert('RGB')
        np.testing.assert_array_equal(slow, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    else:  # 16-bit: high byte
        expected = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        np.testing.assert_array_equal(slow[:, :, 0], expected)


def test_sixteen_bit_rgb_png_high_byte_both_decoders():
    arr = np.random.default_rng(2).integers(0, 65536, size=(7, 5, 3), dtype=np.uint16)
    data = png16(arr)
    expected = (arr >> 8).astype(np.uint8)
    np.testing.assert_array_equal(decode_image(data, "a.png", use_pyspng=True), expected)
    np.testing.assert_array_equal(decode_image(data, "a.png", use_pyspng=False), expected)
    grey = arr[:, :, 0]
    np.testing.assert_array_equal(decode_image(png16(grey), "g.png")[:, :, 1], (grey >> 8).astype(np.uint8))


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"), ("TIFF", "CMYK"),
                                       ("WEBP", "RGB"), ("BMP", "RGB"), ("TIFF", "RGBA")])
def test_other_formats_follow_pil_convert(fmt, mode):
    img = Image.fromarray(rgb_noise()).convert(mode)
    data = encode(img, fmt)
    np.testing.assert_array_equal(decode_image(data, "x"), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"this is text, not an image", "cannot decode image"),
])
def test_undecodable_data_names_the_file(data, message):
    with pytest.raises(ValueError, match=f"bad.png: {message}"):
        decode_image(data, "bad.png")


@pytest.mark.parametrize("use_pyspng", [True, False])
def test_truncated_png(use_pyspng):
    data = encode(Image.fromarray(rgb_noise(64, 64)))
    with pytest.raises(ValueError, match="cut.png: cannot decode"):
        decode_image(data[: len(data) // 2], "cut.png", use_pyspng=use_pyspng)


@pytest.fixture
def tree(tmp_path):
    """A folder with nested images in mixed-case extensions, a non-image, and the same as zip/npy/list."""
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    arrays = {}
    names = ["b.png", "a.PNG", "sub/c.jpg", "sub/deeper/d.Png", "sub/e.bmp"]
    for i, name in enumerate(names):
        arr = rgb_noise(20, 20, seed=i)
        fmt = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP"}[name.rsplit(".", 1)[1].lower()]
        Image.fromarray(arr).save(root / name, format=fmt)
        arrays[name] = np.asarray(Image.open(root / name).convert("RGB"))
    (root / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        for name in names:
            z.write(root / name, arcname=name)
        z.writestr("readme.md", "skip me")
    ordered = sorted(names)
    stack = np.stack([arrays[n] for n in ordered])
    np.save(tmp_path / "imgs_nhwc.npy", stack)
    np.save(tmp_path / "imgs_nchw.npy", np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))
    (tmp_path / "list.txt").write_text("\n".join(f"imgs/{n}" for n in reversed(names)) + "\n")
    return tmp_path, ordered, stack


def test_sources_agree(tree):
    tmp, ordered, stack = tree
    folder = open_source(tmp / "imgs")
    assert folder.names == ordered  # recursive, any letter case, sorted, non-images ignored
    archive = open_source(tmp / "imgs.zip")
    assert archive.names == ordered
    listed = open_source(tmp / "list.txt")
    assert listed.names == [f"imgs/{n}" for n in ordered]
    for src in (folder, archive, listed, open_source(tmp / "imgs_nhwc.npy"), open_source(tmp / "imgs_nchw.npy")):
        assert len(src) == len(ordered)
        for i in range(len(src)):
            np.testing.assert_array_equal(src.read(i), stack[i])


def test_subset_keeps_names_and_pixels(tree):
    tmp, ordered, stack = tree
    for src in (open_source(tmp / "imgs"), open_source(tmp / "imgs_nhwc.npy")):
        sub = src.subset([1, 3])
        assert sub.names == [src.names[1], src.names[3]]
        np.testing.assert_array_equal(sub.read(1), stack[3])


def _write(path, content):
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize("name, content, message", [
    ("missing", None, "no such file or folder"),
    ("empty", "dir", "no images found"),
    ("x.dat", "hi", "not an image folder"),
    ("bad.zip", "hi", "not a readable zip"),
    ("f.npy", np.zeros((4, 5), np.float32), "expected a 4-D uint8"),
    ("g.npy", np.zeros((2, 5, 5, 3), np.float32), "expected uint8 images"),
    ("h.npy", np.zeros((2, 5, 5, 7), np.uint8), "cannot tell the channel axis"),
    ("l.txt", "nope.png\n", "do not exist, e.g. nope.png"),
    ("o.npy", np.array([[[[None]]]], dtype=object), r"o.npy: not a readable .npy/.npz array of images \(Array can't"),
])
def test_bad_sources(tmp_path, name, content, message):
    is_dir = isinstance(content, str) and content == "dir"
    path = tmp_path / name if content is None else _write(tmp_path / name, None if is_dir else content)
    with pytest.raises(ValueError, match=message):
        open_source(path)


def test_image_input_detection(tree):
    tmp, _, _ = tree
    np.savez(tmp / "feats.npz", feature=np.zeros((3, 4), np.float32))
    assert images.is_image_input(tmp / "imgs") and images.is_image_input(tmp / "imgs.zip")
    assert images.is_image_input(tmp / "imgs_nhwc.npy") and images.is_image_input(tmp / "list.txt")
    assert not images.is_image_input(tmp / "feats.npz")


# ------------------------------------------------------------------------------ bounded work

def png_bomb(side: int, colour: int = 0) -> bytes:
    """A valid PNG of side x side black pixels (8-bit grey, or RGB with colour=2), about side^2 / 230 bytes:
    decoding it would take side^2 (grey) or 3 side^2 bytes; made in well under a second."""
    row = b"\x00" * (1 + side * (3 if colour == 2 else 1))
    deflate = zlib.compressobj(1)
    block = row * max(1, 2**20 // len(row))
    rows_per_block = len(block) // len(row)
    parts = [deflate.compress(block) for _ in range(side // rows_per_block)]
    parts += [deflate.compress(row * (side % rows_per_block)), deflate.flush()]

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("colour", [0, 2])
def test_png_bomb_helper_makes_valid_pngs(colour):
    data = png_bomb(2000, colour)  # whole blocks of rows and a remainder
    for use_pyspng in (True, False):
        pixels = decode_image(data, "small.png", use_pyspng=use_pyspng)
        assert pixels.shape == (2000, 2000, 3) and not pixels.any()


class Decoded(BaseException):
    """Raised by a decoder that must not have been reached (escapes every `except Exception`)."""


@pytest.mark.parametrize("side", [20000, 10000])  # above PIL's hard limit (2x), and between 1x and 2x where PIL only warns
@pytest.mark.parametrize("use_pyspng", [True, False])
def test_png_bomb_refused_from_the_header_by_both_decoders(monkeypatch, side, use_pyspng):
    data = png_bomb(side, colour=2 if side == 10000 else 0)
    assert len(data) < 2 * 2**20 and side * side > Image.MAX_IMAGE_PIXELS

    def reached(*args, **kwargs):
        raise Decoded("the decoder was called")

    monkeypatch.setattr(images.pyspng, "load", reached)
    monkeypatch.setattr(ImageFile.ImageFile, "load", reached)
    with pytest.raises(ValueError, match=rf"bomb.png: image too large \({side} x {side} = [\d,]+ pixels\): "
                                         r"over the limit of 89,478,485 pixels"):
        decode_image(data, "bomb.png", use_pyspng=use_pyspng)


def test_pixel_limit_follows_pil_setting(monkeypatch):
    data = encode(Image.fromarray(rgb_noise(40, 50)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1999)
    for use_pyspng in (True, False):
        with pytest.raises(ValueError, match=r"x.png: image too large \(50 x 40 = 2,000 pixels\): over the limit of 1,999"):
            decode_image(data, "x.png", use_pyspng=use_pyspng)
    other = encode(Image.fromarray(rgb_noise(40, 50)), "BMP")  # not a PNG: the limit comes from PIL's header parse
    with pytest.raises(ValueError, match="x.bmp: image too large: over the limit of 1,999 pixels"):
        decode_image(other, "x.bmp")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert decode_image(data, "x.png").shape == (40, 50, 3)


def test_symlink_loops_and_aliases_list_each_real_folder_once(tmp_path):
    root, outside = tmp_path / "d", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for i, name in enumerate([root / "a.png", root / "sub" / "b.png", outside / "c.png"]):
        Image.fromarray(rgb_noise(8, 8, seed=i)).save(name)
    (root / "self").symlink_to(".")  # ln -s . d/self
    (root / "sub" / "up").symlink_to("..")  # a loop through the parent
    (root / "alias").symlink_to("sub")  # a second name of a folder inside: listed under its real name
    (root / "ext1").symlink_to(outside)  # a folder outside is followed, once
    (root / "ext2").symlink_to(outside)
    (outside / "back").symlink_to(root)
    (outside / "me").symlink_to(".")
    (root / "loop.png").symlink_to("loop.png")  # a file link loop: listed, then fails to read with its name
    source = run_bounded(lambda: open_source(root))
    assert source.names == ["a.png", "ext1/c.png", "loop.png", "sub/b.png"]
    with pytest.raises(ValueError, match="loop.png: cannot read"):
        source.read(2)


def run_bounded(function, seconds: int = 60):
    """``function()``, failing the test (instead of hanging the suite) if it takes more than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        return function()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_npz_member_that_is_not_an_array(tmp_path):
    with zipfile.ZipFile(tmp_path / "imgs.npz", "w") as archive:
        archive.writestr("images.npy", "text, not an array")
    with zipfile.ZipFile(tmp_path / "notes.npz", "w") as archive:
        archive.writestr("notes.txt", "text, not an array")
    for name, member in [("imgs.npz", "images.npy"), ("notes.npz", "notes.txt")]:
        assert not images.is_image_input(tmp_path / name)
        with pytest.raises(ValueError, match=f"{name}: member '{member}' is not a .npy array"):
            open_source(tmp_path / name)


@pytest.mark.parametrize("shape", [(4, 0, 0, 3), (4, 3, 0, 5), (0, 8, 8, 3)])
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_empty_image_arrays_refused(tmp_path, shape, suffix):
    path = tmp_path / f"empty{suffix}"
    (np.save if suffix == ".npy" else np.savez)(path, np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=rf"empty{suffix}: the image array is empty \(shape \({shape[0]}, "):
        open_source(path)


def test_image_array_detection_reads_headers_only(tmp_path, monkeypatch):
    np.savez(tmp_path / "imgs.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    np.savez(tmp_path / "feats.npz", feature=np.zeros((3, 4), np.float32))

    def no_read(*args, **kwargs):
        raise AssertionError("the array data was read")

    monkeypatch.setattr(np.lib.format, "read_array", no_read)
    assert images.is_image_input(tmp_path / "imgs.npz") and not images.is_image_input(tmp_path / "feats.npz")
