"""Extraction's inputs and checkpoints, bounded: entries of an image folder that are not regular files,
oversized files and zip members, duplicate zip members, damaged checkpoint shards, replacing a
feature file of other images, and the offline way out of missing VGG16 weights."""
import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hubness_pr.extraction import backbones as registry
from hubness_pr.extraction import images
from hubness_pr.extraction.extract import extract_features
from hubness_pr.extraction.images import open_source, read_image_file
from hubness_pr.commands import features as extract_command
from tests.cli_helpers import ROOT, assert_one_line_error, call

DEADLINE = 60  # seconds: a hang fails the test instead of hanging the suite


def bounded(function, seconds: float = DEADLINE):
    """``function()`` in a thread, failing the test if it is still running after ``seconds``."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (hung on a non-regular file?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def tiny_images(n: int, seed: int = 0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)


def write_pngs(folder, imgs, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / (names[i] if names else f"{i:03d}.png"))
    return folder


class MeanColour(torch.nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def tiny_backbone(**_):
    """A six-feature backbone (channel means and maxima): fast, and each image's features differ."""
    prepare = lambda img: torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()  # noqa: E731
    return registry.Backbone(name="tiny_trust", dim=6, network=MeanColour(), prepare=prepare,
                             meta={"backbone": "tiny_trust"})


@pytest.fixture
def tiny(monkeypatch):
    """The tiny backbone, also registered as ``--backbone tiny_trust`` (and ``tiny_trust2``) for main(argv)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_backbone("tiny_trust")(tiny_backbone)

    def other(**kwargs):
        backbone = tiny_backbone()
        backbone.name, backbone.meta = "tiny_trust2", {"backbone": "tiny_trust2"}
        return backbone

    registry.register_backbone("tiny_trust2")(other)
    return tiny_backbone()


def getfeature(*args):
    return call(extract_command.main, *args)


# ------------------------------------------------------------- entries that are not regular files

def _fifo(path):
    os.mkfifo(path)


def _zero_link(path):
    path.symlink_to("/dev/zero")


def _urandom_link(path):
    path.symlink_to("/dev/urandom")


def _zero_node(path):
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root (the link to /dev/zero covers character devices here)")
    os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero's numbers


def _socket(path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays


def _link_to_fifo(path):
    os.mkfifo(path.with_name("hidden_fifo"))
    path.symlink_to("hidden_fifo")


SPECIALS = {"fifo": (_fifo, "a FIFO"), "link_to_dev_zero": (_zero_link, "a character device"),
            "link_to_dev_urandom": (_urandom_link, "a character device"),
            "device_node": (_zero_node, "a character device"), "socket": (_socket, "a socket"),
            "link_to_fifo": (_link_to_fifo, "a FIFO")}


@pytest.fixture(params=sorted(SPECIALS))
def special_folder(request, tmp_path):
    """Three 8x8 PNGs and, sorted between them, ``001b.png`` that is not a regular file."""
    make, kind = SPECIALS[request.param]
    folder = write_pngs(tmp_path / "imgs", tiny_images(3))
    make(folder / "001b.png")
    return folder, kind


def test_non_regular_entry_is_refused_before_it_is_opened(special_folder):
    folder, kind = special_folder
    source = open_source(folder)
    assert source.names == ["000.png", "001.png", "001b.png", "002.png"]
    with pytest.raises(ValueError, match=rf"001b.png: not a regular file \({kind}\), not read"):
        bounded(lambda: source.read(2))


def test_non_regular_entry_stops_extraction_or_is_skipped(special_folder, tiny):
    folder, kind = special_folder
    with pytest.raises(ValueError, match=rf"001b.png: not a regular file \({kind}\).*use --skip_bad"):
        bounded(lambda: extract_features(open_source(folder), tiny, num_workers=0))
    result = bounded(lambda: extract_features(open_source(folder), tiny, num_workers=0, skip_bad=True))
    assert result.paths == ["000.png", "001.png", "002.png"]
    assert result.skipped == [("001b.png", f"{folder / '001b.png'}: not a regular file ({kind}), not read")]
    clean = extract_features(open_source(folder).subset([0, 1, 3]), tiny, num_workers=0)
    np.testing.assert_array_equal(result.features, clean.features)


def test_non_regular_entry_through_getfeature(special_folder, tiny, tmp_path):
    folder, kind = special_folder
    out = tmp_path / "out.npz"
    args = (folder, "-o", out, "--backbone", "tiny_trust", "--num_workers", 0, "--device", "cpu")
    failed = bounded(lambda: getfeature(*args))
    assert_one_line_error(failed, "001b.png: not a regular file", kind, "--skip_bad")
    assert not out.exists()
    done = bounded(lambda: getfeature(*args, "--skip_bad"))
    assert done.returncode == 0, done.stderr
    assert "001b.png" in done.stderr and "1 undecodable image(s) skipped" in done.stderr
    with np.load(out) as data:
        meta = json.loads(str(data["meta"]))
        assert data["paths"].tolist() == ["000.png", "001.png", "002.png"]
    assert [entry["path"] for entry in meta["skipped"]] == ["001b.png"] and kind in meta["skipped"][0]["reason"]


def test_list_file_naming_a_fifo_or_a_folder(tmp_path, tiny):
    write_pngs(tmp_path, tiny_images(2))
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "list.txt").write_text("000.png\npipe.png\ndir.png\n001.png\n")
    result = bounded(lambda: extract_features(open_source(tmp_path / "list.txt"), tiny, num_workers=0,
                                              skip_bad=True))
    assert result.paths == ["000.png", "001.png"]
    assert [(name, reason.split(": ", 1)[1]) for name, reason in result.skipped] == [
        ("dir.png", "not a regular file (a folder), not read"), ("pipe.png", "not a regular file (a FIFO), not read")]


@pytest.mark.parametrize("name", ["in.zip", "in.npy", "in.txt"])
def test_input_that_is_a_fifo_is_refused(tmp_path, name):
    os.mkfifo(tmp_path / name)
    with pytest.raises(ValueError, match=rf"{name}: not a regular file \(a FIFO\)"):
        bounded(lambda: open_source(tmp_path / name))


def test_oversized_file_refused_before_it_is_read(tmp_path, monkeypatch):
    """A (sparse) file over the byte limit derived from PIL's pixel limit is refused from its size."""
    limit = images.max_file_bytes()
    assert limit == 8 * Image.MAX_IMAGE_PIXELS + 16 * 2**20
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.truncate(limit + 1)  # sparse: no disk, no memory
    with pytest.raises(ValueError, match=rf"big.png: {limit + 1:,} bytes, over the limit of {limit:,} bytes"):
        read_image_file(big)
    at_limit = tmp_path / "ok.png"
    Image.fromarray(tiny_images(1)[0]).save(at_limit)
    size = at_limit.stat().st_size
    monkeypatch.setattr(images, "_METADATA_BYTES", 0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", size // 8)  # the limit follows PIL's setting
    if size % 8:
        with pytest.raises(ValueError, match="ok.png: .* bytes, over the limit"):
            read_image_file(at_limit)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", -(-size // 8))
    assert read_image_file(at_limit) == at_limit.read_bytes()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's limit off: no byte limit either
    assert images.max_file_bytes() is None and read_image_file(at_limit) == at_limit.read_bytes()


def test_file_that_grows_after_the_size_check_is_read_no_further(tmp_path, monkeypatch):
    path = tmp_path / "grows.png"
    path.write_bytes(b"\0" * 100)
    real_stat = os.stat
    monkeypatch.setattr(images, "_METADATA_BYTES", 40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # limit: 80 bytes
    monkeypatch.setattr(images.os, "stat", lambda p, *a, **k: os.stat_result(
        real_stat(p, *a, **k)[:6] + (10,) + real_stat(p, *a, **k)[7:]))  # claims 10 bytes
    with pytest.raises(ValueError, match="grows.png: more than 80 bytes, over the limit of 80 bytes"):
        read_image_file(path)


# ------------------------------------------------------------------------------- zip members

def deflated_zeros(n_mib: int) -> bytes:
    """A raw deflate stream of ``n_mib`` MiB of zeros, about 1 KiB a MiB, made in milliseconds: one
    fully flushed segment (it refers to nothing before it) repeated, then an empty final block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return segment * n_mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def zeros_crc(n_mib: int) -> int:
    chunk, crc = bytes(2**20), 0
    for _ in range(n_mib):
        crc = zlib.crc32(chunk, crc)
    return crc


def zip_with(path, members):
    """A zip written by hand: ``members`` = [(name, deflated data, crc, declared size)], the declared
    uncompressed size written into both headers as given (it may lie), names possibly repeated."""
    body, central = b"", b""
    for name, data, crc, size in members:
        raw = name.encode()
        fields = struct.pack("<HHHHHIIIH", 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw))
        central += struct.pack("<IH", 0x02014B50, 20) + fields + struct.pack("<HHHHII", 0, 0, 0, 0, 0, len(body)) + raw
        body += struct.pack("<I", 0x04034B50) + fields + struct.pack("<H", 0) + raw + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0)
    path.write_bytes(body + central + end)
    return path


def png_bytes(img) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    return buffer.getvalue()


def deflated(data: bytes) -> tuple[bytes, int, int]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(), zlib.crc32(data), len(data)


def test_hand_made_zips_are_what_zipfile_reads(tmp_path):
    img = tiny_images(1)[0]
    path = zip_with(tmp_path / "ok.zip", [("a.png", *deflated(png_bytes(img))),
                                          ("z.png", deflated_zeros(3), zeros_crc(3), 3 * 2**20)])
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None and archive.read("z.png") == bytes(3 * 2**20)
    np.testing.assert_array_equal(open_source(path).read(0), img)


PEAK = """
import json, resource, sys
from hubness_pr.extraction.images import open_source
source = open_source(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    source.read(source.names.index(sys.argv[2]))
    message = None
except ValueError as exc:
    message = str(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"message": message, "grown_mib": grown / 1024}))
"""


def read_in_process(path, member) -> dict:
    """Read ``member`` of the zip ``path`` in a fresh process: its error and the growth of its peak memory."""
    done = subprocess.run([sys.executable, "-c", PEAK, str(path), member], capture_output=True, text=True,
                          timeout=DEADLINE, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


BOMB_MIB = 1024  # inflates to 1 GiB (about 1 MiB on disk): over the limit of about 730 MB


def test_zip_bomb_member_refused_from_its_declared_size(tmp_path, monkeypatch):
    path = zip_with(tmp_path / "bomb.zip", [("a.png", *deflated(png_bytes(tiny_images(1)[0]))),
                                            ("bomb.png", deflated_zeros(BOMB_MIB), 0, BOMB_MIB * 2**20)])
    assert path.stat().st_size < 2 * 2**20 and BOMB_MIB * 2**20 > images.max_file_bytes()
    seen = read_in_process(path, "bomb.png")
    assert seen["message"].startswith(f"{path}:bomb.png: {BOMB_MIB * 2**20:,} bytes inflated, over the limit of")
    assert seen["grown_mib"] < 32, seen  # never inflated (before: over 2 GB)

    def inflated(*args, **kwargs):
        raise AssertionError("the member was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", inflated)
    with pytest.raises(ValueError, match="bomb.png: .* bytes inflated, over the limit"):
        open_source(path).read(1)


def test_zip_member_that_lies_about_its_size_inflates_no_further(tmp_path):
    """Declared 4 KiB in both headers, inflating to 1 GiB: stopped at the declared size (a CRC error)."""
    path = zip_with(tmp_path / "liar.zip", [("liar.png", deflated_zeros(BOMB_MIB), zeros_crc(BOMB_MIB), 4096)])
    seen = read_in_process(path, "liar.png")
    assert seen["message"].startswith(f"{path}:liar.png: cannot read from the archive (Bad CRC-32")
    assert seen["grown_mib"] < 32, seen


def test_zip_member_read_is_bounded_whatever_it_declares(tmp_path, monkeypatch):
    """The read asks a MiB at a time, up to one byte over the limit, and a member that gives that
    many (more than it declares: zipfile's own stop is not relied on) is refused."""
    path = zip_with(tmp_path / "z.zip", [("z.png", deflated_zeros(4), zeros_crc(4), 4 * 2**20)])
    monkeypatch.setattr(images, "_METADATA_BYTES", 0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2**20)  # limit: 8 MiB, over the declared 4 MiB
    reads, overlong = [], {"on": False}
    real_open = zipfile.ZipFile.open

    def spy(self, *args, **kwargs):
        member = real_open(self, *args, **kwargs)
        real_read = member.read
        member.read = lambda n=-1: reads.append(n) or (bytes(n) if overlong["on"] else real_read(n))
        return member

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    source = open_source(path)
    with pytest.raises(ValueError, match="z.png: cannot decode image"):  # 4 MiB of zeros, read in full
        source.read(0)
    assert reads == [2**20] * 5  # 4 MiB, then the end
    reads.clear()
    overlong["on"] = True
    with pytest.raises(ValueError, match=r"z.zip:z.png: more than 8,388,608 bytes inflated, over the limit of "
                                         r"8,388,608 bytes"):
        source.read(0)
    assert reads == [2**20] * 8 + [1]


def test_duplicate_zip_member_names_are_one_error(tmp_path, tiny):
    first, second = (png_bytes(img) for img in tiny_images(2))
    path = zip_with(tmp_path / "dup.zip", [("a.png", *deflated(first)), ("b.png", *deflated(first)),
                                           ("a.png", *deflated(second))])
    with pytest.raises(ValueError, match=r"dup.zip: the member a.png is in the archive 2 times \(1 image name"):
        open_source(path)
    with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile itself writes them too
        with zipfile.ZipFile(tmp_path / "dup2.zip", "w") as archive:
            for name in ("x/c.png", "x/c.png", "x/c.png", "d.png", "d.png"):
                archive.writestr(name, first)
    out = tmp_path / "out.npz"
    failed = getfeature(tmp_path / "dup2.zip", "-o", out, "--backbone", "tiny_trust", "--num_workers", 0,
                        "--skip_bad")
    assert_one_line_error(failed, "dup2.zip: the member d.png is in the archive 2 times",
                          "(2 image name(s) held more than once)")
    assert not out.exists()


# ------------------------------------------------------------------------ checkpoint shards

def _cut(shard):
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])


def _rewrite(shard, **changes):
    with np.load(shard) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update({key: change(arrays) for key, change in changes.items()})
    np.savez(shard, **arrays)


def _drop(shard, key):
    with np.load(shard) as data:
        arrays = {name: data[name] for name in data.files if name != key}
    np.savez(shard, **arrays)


DAMAGES = {
    "cut_in_the_middle": _cut,
    "not_a_zip": lambda shard: shard.write_bytes(b"garbage"),
    "empty_file": lambda shard: shard.write_bytes(b""),
    "fewer_rows": lambda shard: _rewrite(shard, indices=lambda a: a["indices"][:2],
                                         features=lambda a: a["features"][:2]),
    "fewer_feature_rows": lambda shard: _rewrite(shard, features=lambda a: a["features"][:2]),
    "more_rows": lambda shard: _rewrite(shard, indices=lambda a: np.r_[a["indices"], a["indices"][-1] + 1],
                                        features=lambda a: np.r_[a["features"], a["features"][-1:]]),
    "float64_features": lambda shard: _rewrite(shard, features=lambda a: a["features"].astype(np.float64)),
    "int32_indices": lambda shard: _rewrite(shard, indices=lambda a: a["indices"].astype(np.int32)),
    "other_dim": lambda shard: _rewrite(shard, features=lambda a: a["features"][:, :4]),
    "indices_out_of_range": lambda shard: _rewrite(shard, indices=lambda a: a["indices"] + 100),
    "wider_range": lambda shard: _rewrite(shard, range=lambda a: np.array([a["range"][0], a["range"][1] + 4])),
    "no_features": lambda shard: _drop(shard, "features"),
}


def counting(backbone):
    calls = []
    prepare = backbone.prepare
    backbone.prepare = lambda img: calls.append(1) or prepare(img)
    return calls


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_shard_is_recomputed(tmp_path, tiny, damage, caplog):
    """Shards of 4 images; the second is damaged: the resumed run keeps the first, warns, recomputes the
    other 20 images, and gives the clean extraction's features, all 24 rows."""
    folder = write_pngs(tmp_path / "imgs", tiny_images(24))
    clean = extract_features(open_source(folder), tiny, num_workers=0)
    ckpt = tmp_path / "ckpt"
    extract_features(open_source(folder), tiny, batch_size=4, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    shard = ckpt / "shard_0000000004_0000000008.npz"
    DAMAGES[damage](shard)
    calls = counting(tiny)
    with caplog.at_level("WARNING", logger="hubness_pr.extraction.extract"):
        resumed = extract_features(open_source(folder), tiny, batch_size=4, num_workers=0, checkpoint_dir=ckpt,
                                   shard_size=4)
    assert len(calls) == 20
    assert resumed.paths == clean.paths and resumed.features.shape == (24, 6)
    np.testing.assert_array_equal(resumed.features, clean.features)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{shard}: damaged checkpoint shard (")
    assert warnings[0].endswith("recomputing from image 4")
    again = extract_features(open_source(folder), tiny, batch_size=4, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    assert len(calls) == 20  # the recomputed shards are whole: nothing more to do
    np.testing.assert_array_equal(again.features, clean.features)


def test_shard_listing_an_image_as_skipped_that_is_not(tmp_path, tiny):
    folder = write_pngs(tmp_path / "imgs", tiny_images(8))
    ckpt = tmp_path / "ckpt"
    extract_features(open_source(folder), tiny, batch_size=4, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    _rewrite(ckpt / "shard_0000000000_0000000004.npz", skipped_names=lambda a: np.array(["003.png", "002.png"]),
             skipped_reasons=lambda a: np.array(["x", "y"]), indices=lambda a: a["indices"][:2],
             features=lambda a: a["features"][:2])  # right count, wrong order: the names must match
    calls = counting(tiny)
    resumed = extract_features(open_source(folder), tiny, batch_size=4, num_workers=0, checkpoint_dir=ckpt,
                                   shard_size=4)
    assert len(calls) == 8 and resumed.paths == [f"{i:03d}.png" for i in range(8)] and not resumed.skipped


def test_shards_of_another_shard_size_after_a_damaged_one_are_removed(tmp_path, tiny):
    folder = write_pngs(tmp_path / "imgs", tiny_images(12))
    ckpt = tmp_path / "ckpt"
    extract_features(open_source(folder), tiny, batch_size=4, num_workers=0, checkpoint_dir=ckpt, shard_size=4)
    _cut(ckpt / "shard_0000000004_0000000008.npz")
    result = extract_features(open_source(folder), tiny, batch_size=3, num_workers=0, checkpoint_dir=ckpt,
                              shard_size=3)
    assert len(result.paths) == 12
    assert sorted(p.name for p in ckpt.glob("shard_*")) == [  # 8-12 and 12-12 (size 4) are gone
        "shard_0000000000_0000000004.npz", "shard_0000000004_0000000007.npz", "shard_0000000007_0000000010.npz",
        "shard_0000000010_0000000012.npz"]


def interrupting(backbone, after: int):
    prepare, calls = backbone.prepare, []

    def interrupt(img):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return prepare(img)

    backbone.prepare = interrupt
    return lambda: setattr(backbone, "prepare", prepare)


@pytest.mark.parametrize("suffix", ["npz", "npy"])
@pytest.mark.parametrize("damage", ["cut_in_the_middle", "fewer_rows", "float64_features"])
def test_getfeature_resume_recomputes_a_damaged_shard(tmp_path, tiny, monkeypatch, suffix, damage):
    """Through getFeature.py (.npz: features kept in memory; .npy: streamed from the shards): an
    interrupted run leaves shards; one is damaged; the resumed run writes every image's features."""
    folder = write_pngs(tmp_path / "imgs", tiny_images(32))
    args = ("--backbone", "tiny_trust", "--num_workers", 0, "--checkpoint_every", 8, "--batch_size", 4)
    assert getfeature(folder, "-o", tmp_path / f"clean.{suffix}", *args).returncode == 0
    out = tmp_path / f"out.{suffix}"
    real = registry._REGISTRY["tiny_trust"]

    def load_interrupting(**kwargs):  # Ctrl-C after 28 images: shards of 0-8, 8-16, 16-24 are written
        backbone = real(**kwargs)
        interrupting(backbone, 28)
        return backbone

    monkeypatch.setitem(registry._REGISTRY, "tiny_trust", load_interrupting)
    stopped = getfeature(folder, "-o", out, *args)
    assert stopped.returncode == 130, stopped.stderr
    partial = tmp_path / f"out.{suffix}.partial"
    assert sorted(p.name for p in partial.glob("shard_*")) == [
        f"shard_{a:010d}_{a + 8:010d}.npz" for a in (0, 8, 16)]
    DAMAGES[damage](partial / "shard_0000000008_0000000016.npz")
    monkeypatch.setitem(registry._REGISTRY, "tiny_trust", real)
    done = getfeature(folder, "-o", out, *args)
    assert done.returncode == 0, done.stderr
    assert "shard_0000000008_0000000016.npz: damaged checkpoint shard" in done.stderr
    if suffix == "npz":
        with np.load(out) as got, np.load(tmp_path / "clean.npz") as want:
            assert got["paths"].tolist() == want["paths"].tolist() == [f"{i:03d}.png" for i in range(32)]
            np.testing.assert_array_equal(got["feature"], want["feature"])
    else:
        np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "clean.npy"))
        assert json.loads((tmp_path / "out.npy.json").read_text())["paths"] == [f"{i:03d}.png" for i in range(32)]
    assert not partial.exists()


# ------------------------------------------------------------- replacing a feature file

@pytest.mark.parametrize("suffix", ["npz", "npy"])
def test_replacing_features_of_other_images_or_backbone_is_said(tmp_path, tiny, suffix):
    write_pngs(tmp_path / "four", tiny_images(4))
    write_pngs(tmp_path / "three", tiny_images(3, seed=1))
    out = tmp_path / f"out.{suffix}"
    base = ("-o", out, "--num_workers", 0)

    def extract(folder, backbone, *more):
        done = getfeature(tmp_path / folder, *base, "--backbone", backbone, *more)
        assert done.returncode == 0, done.stderr
        return done.stderr.strip().splitlines()

    assert extract("four", "tiny_trust") == []  # nothing to replace
    assert extract("four", "tiny_trust") == []  # the same count and backbone again: quiet
    assert extract("three", "tiny_trust") == [
        f"{out}: replacing features of 4 images (tiny_trust) with features of 3 images (tiny_trust)"]
    assert extract("three", "tiny_trust2") == [
        f"{out}: replacing features of 3 images (tiny_trust) with features of 3 images (tiny_trust2)"]
    assert extract("four", "tiny_trust", "-q") == []  # -q silences it
    assert extract("three", "tiny_trust2", "-q") == []
    written = np.load(out)["feature"] if suffix == "npz" else np.load(out)
    assert written.shape == (3, 6)  # replaced all the same


def test_replacing_a_file_without_meta_or_not_a_feature_file(tmp_path, tiny):
    write_pngs(tmp_path / "imgs", tiny_images(2))
    out = tmp_path / "out.npz"
    np.savez(out, feature=np.zeros((5, 6), np.float32))  # the original scripts' files: no meta
    args = (tmp_path / "imgs", "-o", out, "--num_workers", 0, "--backbone", "tiny_trust")
    done = getfeature(*args)
    assert done.returncode == 0 and done.stderr.strip() == (
        f"{out}: replacing features of 5 images (backbone not recorded) with features of 2 images (tiny_trust)")
    out.write_bytes(b"not a feature file")
    done = getfeature(*args)
    assert done.returncode == 0 and done.stderr == ""


# ------------------------------------------------------------- VGG16 weights offline

@pytest.fixture
def offline(monkeypatch, tmp_path):
    """torchvision's cache empty, and any download fails the test (as no network would)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def download(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)


@pytest.mark.parametrize("backbone", ["vgg16", "inception_v3"])
def test_missing_imagenet_weights_name_the_offline_backbone(offline, backbone):
    with pytest.raises(ValueError) as info:
        registry.load_backbone(backbone)
    message = str(info.value)
    assert "\n" not in message and "torchvision's cache" in message and "--weights FILE" in message
    assert "`--backbone efficientnet_lite0` needs no download" in message
    assert registry.load_backbone("efficientnet_lite0").dim == 1280  # and it does load offline


def test_getfeature_default_backbone_offline_names_efficientnet(offline, tmp_path):
    write_pngs(tmp_path / "imgs", tiny_images(2))
    failed = getfeature(tmp_path / "imgs", "-o", tmp_path / "out.npz", "--num_workers", 0)  # default: vgg16
    assert_one_line_error(failed, "VGG16 ImageNet weights not found in torchvision's cache", "--allow_download",
                          "--weights FILE", "--backbone efficientnet_lite0")
    assert not (tmp_path / "out.npz").exists()
