"""Dataset loaders on tiny fake folders and lists made here; mosaic composition; streaming batches."""
import gzip
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from hubness_pr.io.store import save_features
from hubness_pr.hyp2.batches import batches
from hubness_pr.hyp2.datasets import VOC_CLASSES, carve_validation, load_dataset, load_flickr, load_nuswide, load_voc
from hubness_pr.hyp2.mosaic import load_mosaic, source_items


def write_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 9, 3), value, np.uint8)).save(path)


def write_voc(root, year, sets):
    """VOCdevkit/VOC<year> with ImageSets/Main/<set>.txt, Annotations and JPEGImages for {set: {id: [objects]}}."""
    voc = root / "VOCdevkit" / f"VOC{year}"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    for image_set, items in sets.items():
        (voc / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in items))
        for n, (i, objects) in enumerate(items.items()):
            xml = "".join(f"<object><name>{name}</name><difficult>{int(hard)}</difficult></object>"
                          for name, hard in objects)
            (voc / "Annotations" / f"{i}.xml").write_text(f"<annotation><filename>{i}.jpg</filename>{xml}</annotation>")
            write_image(voc / "JPEGImages" / f"{i}.jpg", 10 * n)
    return voc


def test_voc2007_every_object_counts_difficult_too(tmp_path):
    write_voc(tmp_path, "2007", {
        "trainval": {"000005": [("chair", 0), ("chair", 1)], "000007": [("car", 0)], "000009": [("horse", 0), ("person", 1)]},
        "test": {"000001": [("dog", 0), ("person", 0)], "000002": [("train", 1)]},
    })
    train, database, query = load_voc(tmp_path, "2007")
    assert train is database and train.names == ["JPEGImages/000005.jpg", "JPEGImages/000007.jpg", "JPEGImages/000009.jpg"]
    assert [sorted(VOC_CLASSES[c] for c in np.flatnonzero(row)) for row in train.labels] == \
        [["chair"], ["car"], ["horse", "person"]]
    assert [sorted(VOC_CLASSES[c] for c in np.flatnonzero(row)) for row in query.labels] == [["dog", "person"], ["train"]]
    assert query.source.read(1).shape == (6, 9, 3) and query.source.read(1)[0, 0, 0] == pytest.approx(10, abs=3)


def test_voc2012_train_val_and_errors(tmp_path):
    voc = write_voc(tmp_path, "2012", {"train": {"a": [("cat", 0)], "b": [("dog", 0)]}, "val": {"c": [("cow", 0)]}})
    train, database, query = load_voc(tmp_path, "2012")
    assert len(train) == 2 and len(query) == 1 and query.labels[0, VOC_CLASSES.index("cow")] == 1
    with pytest.raises(ValueError, match="VOC2007 folder not found"):
        load_voc(tmp_path, "2007")
    (voc / "Annotations" / "a.xml").write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(ValueError, match="unknown VOC class 'unicorn'"):
        load_voc(tmp_path, "2012")
    (voc / "Annotations" / "a.xml").write_text("<annotation><object><name>cat</name></object></annotation>")
    (voc / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(ValueError, match="b.jpg: listed image not found"):
        load_voc(tmp_path, "2012")


def write_flickr(root, n=20, width=38):
    rng = np.random.default_rng(0)
    names = [f"im{i + 1}.jpg" for i in range(n)]
    (root / "img.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "img.txt").write_text("\n".join(names) + "\n")
    labels = (rng.random((n, width)) < 0.2).astype(int)
    (root / "targets.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in labels))
    for i, name in enumerate(names):
        write_image(root / "mirflickr" / name, i)
    return names, labels


def test_flickr_split_written_once_and_reused(tmp_path):
    names, labels = write_flickr(tmp_path)
    train, database, query = load_flickr(tmp_path, seed=3, num_query=4, num_train=6)
    split = json.loads((tmp_path / "hyp2_split.json").read_text())
    assert (len(query), len(train), len(database)) == (4, 6, 10)
    assert set(query.names).isdisjoint(train.names) and set(database.names).isdisjoint(train.names)
    assert set(query.names) | set(train.names) | set(database.names) == set(names)
    for part in (train, database, query):
        for name, row in zip(part.names, part.labels):
            assert row.tolist() == labels[names.index(name)].tolist()
    again = load_flickr(tmp_path, seed=99, num_query=4, num_train=6)  # another seed: the file wins
    assert again[2].names == query.names and json.loads((tmp_path / "hyp2_split.json").read_text()) == split
    assert split["seed"] == 3 and split["query"] == query.names


def test_flickr_bad_inputs(tmp_path):
    write_flickr(tmp_path)
    lines = (tmp_path / "targets.txt").read_text().splitlines()
    lines[4] = lines[4] + " 1"
    (tmp_path / "targets.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"targets.txt:5: 39 labels, expected 38"):
        load_flickr(tmp_path, num_query=4, num_train=6)
    write_flickr(tmp_path, n=8)
    with pytest.raises(ValueError, match="8 images cannot give 4 queries, 6 train"):
        load_flickr(tmp_path, num_query=4, num_train=6)
    with pytest.raises(ValueError, match="Flickr-25K folder not found"):
        load_flickr(tmp_path / "nope")


def test_nuswide_lists(tmp_path):
    rows = {"train.txt": 5, "database.txt": 8, "test.txt": 3}
    rng = np.random.default_rng(1)
    for listing, n in rows.items():
        lines = []
        for i in range(n):
            name = f"images/{listing[:2]}_{i}.jpg"
            write_image(tmp_path / name, i)
            lines.append(name + " " + " ".join(map(str, (rng.random(21) < 0.3).astype(int))))
        (tmp_path / listing).write_text("\n".join(lines) + "\n")
    train, database, query = load_nuswide(tmp_path)
    assert (len(train), len(database), len(query)) == (5, 8, 3) and train.labels.shape == (5, 21)
    assert query.names[0] == "images/te_0.jpg"
    (tmp_path / "test.txt").write_text("images/te_0.jpg 1 0 1\n")
    with pytest.raises(ValueError, match=r"test.txt:1: 3 labels, expected 21"):
        load_nuswide(tmp_path)
    (tmp_path / "test.txt").write_text("images/te_0.jpg " + " ".join(["2"] * 21) + "\n")
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        load_nuswide(tmp_path)


def test_features_dataset_and_split_rules(tmp_path):
    rng = np.random.default_rng(2)
    paths = [f"img_{i:02d}.png" for i in range(30)]
    save_features(tmp_path / "f.npz", rng.normal(size=(30, 6)).astype(np.float32), paths=paths)
    labels = (rng.random((30, 4)) < 0.4).astype(int)
    (tmp_path / "labels.txt").write_text("".join(p + " " + " ".join(map(str, r)) + "\n" for p, r in zip(paths, labels)))
    split = {"train": paths[:20], "database": paths[:25], "query": paths[25:]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    data = load_dataset("features", features=tmp_path / "f.npz", labels=tmp_path / "labels.txt",
                        split=tmp_path / "split.json", val_size=4, seed=0)
    assert data.kind == "features" and data.num_classes == 4 and data.R == 25
    assert (len(data.train), len(data.val), len(data.database), len(data.query)) == (16, 4, 25, 5)
    vdb = data.validation_database()
    assert len(vdb) == 21 and set(vdb.names).isdisjoint(data.val.names)  # val items are not in the validation database
    i = paths.index(data.query.names[2])
    assert data.query.labels[2].tolist() == labels[i].tolist()
    assert np.array_equal(data.query.features[2], np.load(tmp_path / "f.npz")["feature"][i])

    def fails(fragment, **changes):
        (tmp_path / "split.json").write_text(json.dumps({**split, **changes}))
        with pytest.raises(ValueError, match=fragment):
            load_dataset("features", features=tmp_path / "f.npz", labels=tmp_path / "labels.txt",
                         split=tmp_path / "split.json")
    fails("queries and train share items", query=paths[19:])
    fails("query item 'nope.png' is not in the dataset", query=["nope.png"])
    fails("train lists an item twice", train=paths[:3] + paths[:1])
    (tmp_path / "labels.txt").write_text("".join(p + " 0 1 0 1\n" for p in paths[1:]))
    fails("no label row for 'img_00.png'")
    with pytest.raises(ValueError, match="needs --labels"):
        load_dataset("features", features=tmp_path / "f.npz", split=tmp_path / "split.json")


def test_carve_validation_is_seeded_and_disjoint():
    data = load_mosaic("digits", (50, 5, 20, 5))
    train, val = carve_validation(data.train, 10, seed=4)
    again, val2 = carve_validation(data.train, 10, seed=4)
    assert val.names == val2.names and len(train) == 40 and set(train.names).isdisjoint(val.names)
    assert carve_validation(data.train, 10, seed=5)[1].names != val.names
    with pytest.raises(ValueError, match="--val_size 50"):
        carve_validation(data.train, 50, seed=0)


def test_mosaic_images_labels_and_disjoint_pools():
    data = load_mosaic("digits", (60, 10, 30, 10))
    items, classes, _ = source_items("digits")
    assert data.num_classes == 10 and data.R == 1000 and (len(data.train), len(data.query)) == (60, 10)
    pools = {}
    for part in ("train", "val", "database", "query"):
        split = getattr(data, part)
        src = split.source
        pools[part] = set(src.picks[src.picks >= 0].tolist())
        for i in range(len(split)):
            image = src.read(i)
            assert image.shape == (16, 16, 3) and (image[..., 0] == image[..., 2]).all()
            present = set()
            for cell in range(4):
                r, c = divmod(cell, 2)
                block = image[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8, 0]
                placed = [p for p, k in zip(src.picks[i], src.cells[i]) if k == cell]
                if placed:
                    assert np.array_equal(block, items[placed[0]])
                    present.add(int(classes[placed[0]]))
                else:
                    assert not block.any()
            assert 1 <= (src.cells[i] >= 0).sum() <= 3
            assert set(np.flatnonzero(split.labels[i]).tolist()) == present
    for a in pools:
        for b in pools:
            assert a == b or pools[a].isdisjoint(pools[b])
    stamps = data.train.source.stamps()
    assert len(set(stamps)) == 60 and data.train.subset([3, 7]).source.stamps() == [stamps[3], stamps[7]]
    again = load_mosaic("digits", (60, 10, 30, 10))
    assert np.array_equal(again.query.labels, data.query.labels)
    assert np.array_equal(again.query.source.read(3), data.query.source.read(3))


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_mosaic_from_fashion_mnist_files(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 60), ("t10k", 20)):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_mosaic("fashion", (20, 5, 10, 5), fashion_dir=tmp_path)
    assert data.query.source.read(0).shape == (56, 56, 3) and data.classes[9] == "Ankle boot"
    with pytest.raises(ValueError, match="install the Debian package dataset-fashion-mnist"):
        load_mosaic("fashion", fashion_dir=tmp_path / "none")


def test_batches_flip_seeded_and_independent_of_workers():
    data = load_mosaic("digits", (30, 5, 10, 5))
    prepare = lambda image: torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)  # noqa: E731
    order = np.arange(30)[::-1]

    def run(workers, epoch=1):
        got = list(batches(data.train, prepare, batch_size=7, order=order, train=True, seed=0, epoch=epoch,
                           num_workers=workers))
        return [i for b in got for i in b[0]], torch.cat([b[1] for b in got]), torch.cat([b[2] for b in got])

    idx, x, y = run(0)
    assert idx == order.tolist() and torch.equal(y, torch.from_numpy(data.train.labels[order]))
    plain = np.stack([data.train.source.read(i) for i in order])
    flipped = [not np.array_equal(x[j].permute(1, 2, 0).numpy(), plain[j]) for j in range(30)]
    for j, i in enumerate(order):
        want = plain[j][:, ::-1] if flipped[j] else plain[j]
        assert np.array_equal(x[j].permute(1, 2, 0).numpy(), want)
    assert 5 < sum(flipped) < 25
    idx2, x2, _ = run(2)
    assert idx2 == idx and torch.equal(x2, x)
    assert not torch.equal(run(0, epoch=2)[1], x)  # new flips each epoch


def test_decoding_error_is_one_line(tmp_path):
    write_voc(tmp_path, "2012", {"train": {"a": [("cat", 0)], "b": [("dog", 0)]}, "val": {"c": [("cow", 0)]}})
    (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages" / "b.jpg").write_bytes(b"not a jpeg")
    train, _, _ = load_voc(tmp_path, "2012")
    with pytest.raises(ValueError, match=r"b.jpg: cannot decode image") as info:
        list(batches(train, lambda im: torch.zeros(1), batch_size=2))
    assert "\n" not in str(info.value)
