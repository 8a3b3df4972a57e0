"""HyP² trust checks: damaged checkpoints and foreign files, duplicate label rows, options checked against the
checkpoint, option messages, the original's Flickr order, the empty-label count (in process, tiny mosaics)."""
import json
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hubness_pr.commands.retrieval import main
from hubness_pr.hyp2.datasets import load_flickr, load_nuswide, load_voc

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dataset", "mosaic", "--backbone", "pixels", "--hash_bit", "16", "--mosaic_counts", "60,10,30,10",
        "--no-progress", "-q"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("hyp2_ckpt")
    assert main([*TINY, "--epochs", "1", "--output", str(out)]) == 0
    return out / "checkpoint.pt"


def run_test(args, capsys):
    capsys.readouterr()
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err.strip().splitlines()


def damaged(payload):
    """Damages of a checkpoint whose metadata stays right: name -> (change, fragment of the error line)."""
    first = next(iter(payload["network"]))
    weight = next(k for k, v in payload["network"].items() if v.ndim == 2)

    def with_network(change):
        def apply(p):
            p["network"] = dict(p["network"])
            change(p["network"])
        return apply

    return {
        "wrong shape": (with_network(lambda n: n.__setitem__(weight, n[weight][:, :-1].clone())),
                        f"network entry '{weight}' has shape"),
        "transposed": (with_network(lambda n: n.__setitem__(weight, n[weight].t().contiguous())),
                       f"network entry '{weight}' has shape"),
        "missing key": (with_network(lambda n: n.pop(first)), f"network has no '{first}'"),
        "unknown key": (with_network(lambda n: n.__setitem__("extra.weight", torch.zeros(3))), "unknown entry"),
        "NaN weights": (with_network(lambda n: n.__setitem__(weight, torch.full_like(n[weight], float("nan")))),
                        "holds NaN or infinite"),
        "inf weights": (with_network(lambda n: n[weight].__setitem__((0, 0), float("inf"))), "holds NaN or infinite"),
        "integer tensor": (with_network(lambda n: n.__setitem__(weight, n[weight].long())), "is torch.int64"),
        "string entry": (with_network(lambda n: n.__setitem__(weight, "garbage")), "is not a tensor"),
        "empty network": (lambda p: p.__setitem__("network", {}), "network has no"),
        "network not a dict": (lambda p: p.__setitem__("network", [1, 2]), "'network' is list"),
        "proxies shape": (lambda p: p.__setitem__("proxies", p["proxies"][:, :8].clone()), "proxies of shape (10, 8)"),
        "proxies NaN": (lambda p: p["proxies"].__setitem__((1, 1), float("nan")), "proxies hold NaN"),
        "no history": (lambda p: p.pop("history"), "'history' is missing"),
        "config not a dict": (lambda p: p.__setitem__("config", "x"), "'config' is str"),
        "config without epochs": (lambda p: p["config"].pop("epochs"), "config has no 'epochs'"),
        "epoch a string": (lambda p: p.__setitem__("epoch", "3"), "'epoch' is str"),
    }


def test_damaged_state_dict_is_one_line(checkpoint, tmp_path, capsys):
    cases = damaged(torch.load(checkpoint, weights_only=True))
    for name, (change, fragment) in cases.items():
        payload = torch.load(checkpoint, weights_only=True)
        change(payload)
        path = tmp_path / "bad.pt"
        torch.save(payload, path)
        status, err = run_test([*TINY, "--test", "--checkpoint", str(path), "--output", str(tmp_path / "o")], capsys)
        assert status == 1 and len(err) == 1, (name, err)
        assert "damaged checkpoint" in err[0] and fragment in err[0], (name, err)
        assert not (tmp_path / "o" / "metrics.json").exists()


def test_truncated_and_garbled_files_are_one_line(checkpoint, tmp_path, capsys):
    data = checkpoint.read_bytes()
    rng = np.random.default_rng(0)
    garbled = bytearray(data)
    with zipfile.ZipFile(checkpoint) as archive:  # overwrite the bytes of the largest stored tensor
        info = max(archive.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    garbled[start:start + info.file_size] = rng.integers(0, 256, info.file_size, dtype=np.uint8).tobytes()
    variants = {"half": data[:len(data) // 2], "one byte short": data[:-1], "empty": b"", "header only": data[:64],
                "garbled tensor bytes": bytes(garbled), "random bytes": rng.integers(0, 256, 4096, np.uint8).tobytes()}
    for name, content in variants.items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(content)
        status, err = run_test([*TINY, "--test", "--checkpoint", str(path), "--no_save"], capsys)
        assert status == 1 and len(err) == 1 and str(path) in err[0], (name, err)
        assert "checkpoint" in err[0], (name, err)


@pytest.mark.parametrize("content", [{"a": 1}, [1, 2, 3], "text", {"format": "hyp2 checkpoint v1"}])
def test_plain_pickle_is_refused_before_unpickling(content, tmp_path, capsys):
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as handle:
        pickle.dump(content, handle)
    status, err = run_test([*TINY, "--test", "--checkpoint", str(path), "--no_save"], capsys)
    assert status == 1 and err == [f"retrieval.py: error: {path}: not a HyP² checkpoint (not a torch.save zip "
                                   f"archive: another format, such as a plain pickle, or a truncated file)"]


def test_torch_zip_of_other_objects_is_one_line(tmp_path, capsys):
    path = tmp_path / "obj.pt"
    torch.save({"format": "hyp2 checkpoint v1", "obj": zipfile.ZipInfo("x")}, path)  # not loadable weights-only
    status, err = run_test([*TINY, "--test", "--checkpoint", str(path), "--no_save"], capsys)
    assert status == 1 and len(err) == 1 and "objects or pickle instructions other than" in err[0], err
    torch.save({"a": torch.zeros(2)}, path)
    status, err = run_test([*TINY, "--test", "--checkpoint", str(path), "--no_save"], capsys)
    assert status == 1 and err == [f"retrieval.py: error: {path}: not a HyP² checkpoint of this toolkit"]


def test_plain_pickle_prints_no_warning_before_the_line(tmp_path):
    path = tmp_path / "plain.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"a": 1}, handle, protocol=4)
    proc = subprocess.run([sys.executable, "-W", "default", str(ROOT / "retrieval.py"), *TINY, "--test",
                           "--checkpoint", str(path), "--no_save"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"retrieval.py: error: {path}: not a HyP² checkpoint (not a torch.save "
                                        f"zip archive: another format, such as a plain pickle, or a truncated file)"]


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_torch_zip_of_a_newer_pickle_protocol_warns_nothing(protocol, tmp_path, capsys):
    path = tmp_path / "p.pt"
    torch.save({"a": torch.zeros(2)}, path, pickle_protocol=protocol)  # torch.load warns about protocols > 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, err = run_test([*TINY, "--test", "--checkpoint", str(path), "--no_save"], capsys)
    assert status == 1 and len(err) == 1 and err[0].startswith(f"retrieval.py: error: {path}: not a HyP² checkpoint")
    assert [str(w.message) for w in caught] == []


def test_undamaged_checkpoint_still_loads(checkpoint, tmp_path, capsys):
    payload = torch.load(checkpoint, weights_only=True)
    torch.save(payload, tmp_path / "copy.pt")  # a re-save of the same content is accepted
    status, err = run_test([*TINY, "--test", "--checkpoint", str(tmp_path / "copy.pt"), "--no_save"], capsys)
    assert status == 0 and err == []


# ------------------------------------------------------------------------------- duplicate label rows

def label_line(name, row):
    return f"{name} " + " ".join(map(str, row)) + "\n"


def duplicate_cases():
    """(dataset maker, the list file, how to list an item twice) for every HyP² list file that names items."""
    from tests.test_hyp2_datasets import write_flickr, write_image, write_voc

    def voc(root, year, image_set, sets):
        write_voc(root, year, sets)
        return root / "VOCdevkit" / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt"

    def nuswide(root, listing):
        rng = np.random.default_rng(1)
        for name in ("train.txt", "database.txt", "test.txt"):
            lines = []
            for i in range(5):
                image = f"images/{name[:2]}_{i}.jpg"
                write_image(root / image, i)
                lines.append(label_line(image, (rng.random(21) < 0.3).astype(int)))
            (root / name).write_text("".join(lines))
        return root / listing

    def flickr(root):
        write_flickr(root, n=20)
        return root / "img.txt"

    return {
        "voc2007 trainval": (lambda r: voc(r, "2007", "trainval", {"trainval": {"a": [("cat", 0)], "b": [("dog", 0)],
                                                                              "c": [("cow", 0)]},
                                                                 "test": {"d": [("car", 0)], "e": [("bus", 0)]}}),
                             lambda r: load_voc(r, "2007")),
        "voc2012 val": (lambda r: voc(r, "2012", "val", {"train": {"a": [("cat", 0)], "b": [("dog", 0)]},
                                                         "val": {"c": [("cow", 0)], "d": [("car", 0)],
                                                                 "e": [("bus", 0)]}}),
                        lambda r: load_voc(r, "2012")),
        "nuswide train": (lambda r: nuswide(r, "train.txt"), lambda r: load_nuswide(r)),
        "nuswide database": (lambda r: nuswide(r, "database.txt"), lambda r: load_nuswide(r)),
        "nuswide test": (lambda r: nuswide(r, "test.txt"), lambda r: load_nuswide(r)),
        "flickr img.txt": (flickr, lambda r: load_flickr(r, num_query=4, num_train=6)),
    }


@pytest.mark.parametrize("case", sorted(duplicate_cases()))
@pytest.mark.parametrize("where", ["next line", "far line", "same labels", "other labels"])
def test_an_item_listed_twice_is_refused_naming_the_row(case, where, tmp_path):
    make, load = duplicate_cases()[case]
    listing = make(tmp_path)
    lines = listing.read_text().splitlines(keepends=True)
    load(tmp_path)  # the lists as written load
    first = {"next line": 1, "far line": 0, "same labels": 2, "other labels": 1}[where]
    copy = lines[first]
    if where == "other labels" and len(copy.split()) > 2:  # the name again with other labels
        tokens = copy.split()
        copy = " ".join([tokens[0]] + ["1" if t == "0" else "0" for t in tokens[1:]]) + "\n"
    at = first + 1 if where == "next line" else len(lines)
    lines.insert(at, copy)
    if listing.name == "img.txt":  # flickr: keep the label rows aligned with the names
        targets = (tmp_path / "targets.txt").read_text().splitlines(keepends=True)
        targets.insert(at, targets[first])
        (tmp_path / "targets.txt").write_text("".join(targets))
    listing.write_text("\n" + "".join(lines))  # a blank first line: line numbers count every line
    name = copy.split()[0]
    with pytest.raises(ValueError) as info:
        load(tmp_path)
    message = str(info.value)
    assert message == (f"{listing}:{at + 2}: {name!r} is listed again (first on line {first + 2}); "
                       f"each item must appear once"), message


def test_features_label_file_with_a_name_twice_is_one_line(tmp_path, capsys):
    from hubness_pr.io.store import save_features
    rng = np.random.default_rng(0)
    paths = [f"x/{i:02d}.png" for i in range(40)]
    save_features(tmp_path / "f.npz", rng.normal(size=(40, 8)).astype(np.float32), paths=paths)
    rows = [label_line(p, (rng.random(4) < 0.5).astype(int)) for p in paths]
    rows.insert(30, label_line(paths[7], [1, 0, 0, 1]))
    (tmp_path / "l.txt").write_text("".join(rows))
    (tmp_path / "s.json").write_text(
        '{"train": %s, "database": %s, "query": %s}' % tuple(str(x).replace("'", '"') for x in
                                                              (paths[:30], paths[:35], paths[35:])))
    status, err = run_test(["--dataset", "features", "--features", str(tmp_path / "f.npz"), "--labels",
                            str(tmp_path / "l.txt"), "--split", str(tmp_path / "s.json"), "--hash_bit", "12",
                            "--no_save", "-q"], capsys)
    assert status == 1 and err == [f"retrieval.py: error: {tmp_path / 'l.txt'}:31: 'x/07.png' is listed again "
                                   f"(first on line 8); each item must appear once"]


# --------------------------------------------------------------------- --test takes the checkpoint's options

def test_test_with_the_checkpoint_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*TINY, "--epochs", "2", "--seed", "3", "--beta", "0.25", "--rate", "0.03", "--retrieve", "20"]
    assert main(args) == 0  # no --output: result/mosaic-pixels-16bit
    trained = json.loads((tmp_path / "result" / "mosaic-pixels-16bit" / "metrics.json").read_text())
    ckpt = tmp_path / "result" / "mosaic-pixels-16bit" / "checkpoint.pt"
    moved = tmp_path / "elsewhere" / "model.pt"
    moved.parent.mkdir()
    moved.write_bytes(ckpt.read_bytes())
    capsys.readouterr()
    assert main(["--test", "--checkpoint", str(moved), "-q", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    metrics = json.loads((moved.parent / "metrics.json").read_text())  # the checkpoint's folder by default
    assert out[0] == f"map: {trained['map']:.6f}" and metrics["map"] == trained["map"] and metrics["R"] == 20
    for key in ("dataset", "backbone", "hash_bit", "beta", "seed", "epochs", "rate", "n_train", "n_query"):
        assert metrics[key] == trained[key], key
    assert (moved.parent / "codes.npz").exists()


@pytest.mark.parametrize("option, value, held", [
    ("--dataset", "voc2007", "mosaic"), ("--backbone", "alexnet", "pixels"), ("--hash_bit", "32", "16"),
    ("--beta", "0", "0.5"), ("--epochs", "50", "1"), ("--rate", "0.5", "0.02"), ("--lr", "0.5", "0.02"),
    ("--seed", "4", "0"), ("--val_size", "7", "its default"), ("--num_query", "9", "1000"),
    ("--num_train", "9", "4000"), ("--mosaic_source", "fashion", "digits"), ("--mosaic_counts", "61,10,30,10",
                                                                              "60,10,30,10"),
    ("--eval_every", "2", "5")])
def test_an_option_given_with_test_must_agree(option, value, held, checkpoint, tmp_path, capsys):
    status, err = run_test(["--test", "--checkpoint", str(checkpoint), "--no_save", "-q", option, value], capsys)
    assert status == 1 and err == [f"retrieval.py: error: {option} {value}: the checkpoint {checkpoint} was trained "
                                   f"with {option} {held}; with --test, leave the option out or give the "
                                   f"checkpoint's value"], err


def test_options_that_agree_and_evaluation_options_are_accepted(checkpoint, capsys):
    status, err = run_test([*TINY, "--mosaic_counts", "60, 10,30,10", "--beta", "0.50", "--lr", "0.02", "--test",
                            "--checkpoint", str(checkpoint), "--no_save", "--retrieve", "7", "--batch_size", "3",
                            "--memory_budget", "1"], capsys)
    assert status == 0 and err == []


def test_default_output_is_per_dataset_backbone_and_bits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for bits in ("12", "16"):
        assert main([*TINY[:4], "--hash_bit", bits, *TINY[6:], "--epochs", "1"]) == 0
    a, b = (torch.load(tmp_path / "result" / f"mosaic-pixels-{k}bit" / "checkpoint.pt", weights_only=True)
            for k in (12, 16))
    assert (a["hash_bit"], b["hash_bit"]) == (12, 16)  # neither replaced the other
    capsys.readouterr()
    assert main([*TINY[:4], "--hash_bit", "12", "--test", "-q", "--no-progress"]) == 0  # finds its own checkpoint
    assert json.loads((tmp_path / "result" / "mosaic-pixels-12bit" / "metrics.json").read_text())["mode"] == "test"


def test_a_data_path_given_with_test_is_used_and_said(caplog):
    from types import SimpleNamespace
    from hubness_pr.commands.retrieval import apply_checkpoint_options
    payload = {"dataset": "features", "backbone": "mlp", "hash_bit": 12, "beta": 0.5, "seed": 0, "lr": 0.02,
               "config": {"features": "old/f.npz", "labels": "l.txt", "split": "s.json", "data": None,
                          "retrieve": 5, "batch_size": 100, "epochs": 3}}
    args = SimpleNamespace(dataset="voc2007", backbone=None, hash_bit=48, beta=0.5, seed=0, lr=None, epochs=100,
                           features="new/f.npz", labels=None, split=None, data=None, flickr_order=None, retrieve=0,
                           batch_size=7)
    with caplog.at_level("WARNING"):
        apply_checkpoint_options(args, {"features", "batch_size"}, payload, "c.pt")
    assert (args.dataset, args.backbone, args.hash_bit, args.epochs) == ("features", "mlp", 12, 3)
    assert (args.features, args.labels, args.split, args.retrieve, args.batch_size) == ("new/f.npz", "l.txt",
                                                                                        "s.json", 5, 7)
    assert caplog.messages == ["--features new/f.npz: the checkpoint was trained with --features old/f.npz"]


# ------------------------------------------------------------------------------------ option messages

def numeric_options():
    from hubness_pr.commands.retrieval import build_parser
    return sorted(a.option_strings[0] for a in build_parser()._actions
                  if a.option_strings and a.type is not None and a.option_strings[0].startswith("--"))


@pytest.mark.parametrize("option", numeric_options())
@pytest.mark.parametrize("value", ["-1", "abc", ""])
def test_every_typed_option_names_itself(option, value, capsys):
    status, err = run_test([*TINY, option, value, "--no_save"], capsys)
    assert status == 2 and len(err) == 1 and err[0].startswith(f"retrieval.py: error: argument {option}: "), err


@pytest.mark.parametrize("option, value, fragment", [
    ("--hash_bit", "0", "must be 1 to 256, got 0"), ("--hash_bit", "257", "must be 1 to 256, got 257"),
    ("--seed", "-1", "must be 0 to 4294967295, got -1"), ("--seed", str(2**32), "must be 0 to 4294967295"),
    ("--seed", "1.5", "expected an integer"), ("--epochs", "0", "must be >= 1"), ("--rate", "0", "must be > 0"),
    ("--rate", "nan", "must be > 0"), ("--lr", "inf", "must be > 0"), ("--beta", "-0.1", "must be >= 0"),
    ("--memory_budget", "0", "must be > 0"), ("--mosaic_counts", "1,2,3", "expected four positive integers"),
    ("--mosaic_counts", "1,2,3,0", "expected four positive integers"), ("--batch_size", "0", "must be >= 1")])
def test_bounds_of_numeric_options(option, value, fragment, capsys):
    status, err = run_test([*TINY, option, value, "--no_save"], capsys)
    assert status == 2 and len(err) == 1 and f"argument {option}: {fragment}" in err[0], err


# ------------------------------------------------------------------------- the original's Flickr order

def original_order_file(path, n, seed=5):
    """A file in the original's flickr.txt format: json.dumps of a permutation of range(n) (its dataset.py)."""
    perm = np.random.default_rng(seed).permutation(n).tolist()
    path.write_text(json.dumps(perm))
    return perm


@pytest.mark.parametrize("form", ["json", "index lines", "name lines"])
def test_flickr_order_gives_the_original_split(form, tmp_path):
    from tests.test_hyp2_datasets import write_flickr
    names, labels = write_flickr(tmp_path / "flickr", n=24)
    perm = original_order_file(tmp_path / "flickr.txt", 24)
    if form == "index lines":
        (tmp_path / "flickr.txt").write_text("\n".join(map(str, perm)) + "\n\n")
    elif form == "name lines":
        (tmp_path / "flickr.txt").write_text("\n".join(names[i] for i in perm) + "\n")
    train, database, query = load_flickr(tmp_path / "flickr", num_query=5, num_train=7,
                                         order_path=tmp_path / "flickr.txt", seed=123)
    data = np.array(names)  # the original: data[perm[:num_query]], then train, then the rest
    assert query.names == data[perm[:5]].tolist() and train.names == data[perm[5:12]].tolist()
    assert database.names == data[perm[12:]].tolist()
    assert np.array_equal(query.labels, labels[perm[:5]]) and np.array_equal(database.labels, labels[perm[12:]])
    split = json.loads((tmp_path / "flickr" / "hyp2_split.json").read_text())
    assert split["order"] == str(tmp_path / "flickr.txt") and "seed" not in split
    again = load_flickr(tmp_path / "flickr", num_query=5, num_train=7, order_path=tmp_path / "flickr.txt")
    assert again[2].names == query.names  # the split written is the order's: accepted again


def test_flickr_order_never_replaces_another_split(tmp_path):
    from tests.test_hyp2_datasets import write_flickr
    write_flickr(tmp_path / "flickr", n=24)
    load_flickr(tmp_path / "flickr", num_query=5, num_train=7, seed=0)  # a seeded split on disk
    before = (tmp_path / "flickr" / "hyp2_split.json").read_text()
    original_order_file(tmp_path / "flickr.txt", 24)
    with pytest.raises(ValueError, match=r"hyp2_split.json: holds another split than --flickr_order .*flickr.txt"):
        load_flickr(tmp_path / "flickr", num_query=5, num_train=7, order_path=tmp_path / "flickr.txt")
    assert (tmp_path / "flickr" / "hyp2_split.json").read_text() == before
    train, _, query = load_flickr(tmp_path / "flickr", tmp_path / "other.json", num_query=5, num_train=7,
                                  order_path=tmp_path / "flickr.txt")
    assert len(query) == 5 and len(train) == 7


@pytest.mark.parametrize("content, fragment", [
    ("[0, 1, 2, 3, 3, 5]", "entry 4: image 'im4.jpg' (index 3) again, first at entry 3"),
    ("[0, 1, 2, 3, 4, 6]", "entry 5: 6 is neither an index below 6"),
    ("[0, 1, 2, 3, -4, 5]", "entry 4: -4 is neither"),
    ("[0, 1, 2, 3, 4.0, 5]", "entry 4: 4.0 is neither"),
    ("[0, 1, 2, 3, 4]", "5 entries, img.txt lists 6 images"),
    ("[0, 1, 2,", "not a JSON list"),
    ("im1.jpg\nim2.jpg\nim9.jpg\n", "line 3: 'im9.jpg' is neither"),
    ("0\n1\n2\n3\n4\n\n1\n", "line 7: image 'im2.jpg' (index 1) again, first at line 2"),
])
def test_bad_flickr_order_is_one_line(content, fragment, tmp_path):
    from tests.test_hyp2_datasets import write_flickr
    write_flickr(tmp_path / "flickr", n=6)
    (tmp_path / "order.txt").write_text(content)
    with pytest.raises(ValueError) as info:
        load_flickr(tmp_path / "flickr", num_query=1, num_train=2, order_path=tmp_path / "order.txt")
    assert str(info.value).startswith(f"--flickr_order {tmp_path / 'order.txt'}: ") and fragment in str(info.value)
    assert "\n" not in str(info.value) and not (tmp_path / "flickr" / "hyp2_split.json").exists()


def test_retrieval_with_flickr_order(tmp_path, capsys):
    from tests.test_hyp2_datasets import write_flickr
    names, _ = write_flickr(tmp_path / "flickr", n=40)
    perm = original_order_file(tmp_path / "flickr.txt", 40)
    args = ["--dataset", "flickr", "--data", str(tmp_path / "flickr"), "--flickr_order", str(tmp_path / "flickr.txt"),
            "--num_query", "6", "--num_train", "20", "--backbone", "pixels", "--hash_bit", "16", "--epochs", "1",
            "--output", str(tmp_path / "out"), "-q", "--no-progress"]
    assert main(args) == 0
    split = json.loads((tmp_path / "flickr" / "hyp2_split.json").read_text())
    assert split["query"] == [names[i] for i in perm[:6]]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["n_query"], metrics["n_train"] + metrics["n_val"], metrics["n_database"]) == (6, 20, 14)
    assert main(["--test", "--checkpoint", str(tmp_path / "out" / "checkpoint.pt"), "--no_save", "-q"]) == 0


# --------------------------------------------------------------------------------- empty-label count

def test_items_without_labels_are_counted_once(tmp_path, caplog):
    from hubness_pr.hyp2.datasets import load_dataset
    from tests.test_hyp2_datasets import write_voc
    trainval = {f"{i:06d}": [("cat", 0)] for i in range(20)}
    trainval.update({"000003": [], "000011": []})  # two trainval images without objects
    write_voc(tmp_path, "2007", {"trainval": trainval, "test": {"t1": [], "t2": [("dog", 0)], "t3": []}})
    with caplog.at_level("WARNING", logger="hubness_pr.hyp2.datasets"):
        data = load_dataset("voc2007", data=tmp_path, val_size=5, seed=1)
    assert data.train.names != data.database.names  # the empty items are in database and in train or val
    want_items = 2 + 2  # each trainval image once (train or val, and database), each test image once
    assert caplog.messages == [f"voc2007: {want_items} items carry no label, 2 of them queries (a query without "
                               f"labels scores AP 0)"]
    brute = {n for s in (data.train, data.val, data.database, data.query)
             for n, row in zip(s.names, s.labels) if row.sum() == 0}
    assert len(brute) == want_items
