"""Protocol presets (hubness_pr/metrics/protocols.py): each equal to its peer's computation on the same
features, to the last bit: prdc (the registry package), dgm-eval (its seeded subset draws from numpy's
global generator, then prdc's arithmetic on them: tests/reference_dgm_eval_procedure.py), torch-fidelity
(the registry package) and StyleGAN2-ADA (its steps written out, float16 on the CPU:
tests/reference_sg2ada.py). The sets: random, integer grids (exact ties at every ball's border, where
'<' and '<=' differ) and duplicates.

dgm-eval's code (layer6ai-labs/dgm-eval, MIT) is not copied here: tests/reference_dgm_eval_procedure.py
follows its steps in code of our own (the draws with ``np.random.choice``, reals first; its
``metrics/prdc.py`` computes what the prdc package computes, so that package is called on the drawn
rows). Its equality with dgm-eval's code itself was checked when that module replaced a copy of the
code: the same precision, recall, density and coverage to the bit (largest difference 0.0) and the same
drawn indices on 45 draws (random, integer grids, duplicates, 300-d, unequal sizes from 150 x 1,000 to
900 x 200; reduced_n 100 to 333 below the sets' sizes and the default 10,000 above them, and 10,000 on
sets of 10,100 to 10,500 rows; k 3 and 5; seeds 0, 1, 2, 7, 8, 42 and 13,579)."""
import contextlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.commands.metrics import main
from hubness_pr.errors import InputError
from hubness_pr.metrics import protocols
from tests.cases import duplicate_sets, grid_sets, random_sets
from tests.cli_helpers import call
from tests.reference_dgm_eval_procedure import subset_prdc
from tests.reference_sg2ada import sg2ada_precision_recall

CASES = {
    "random": lambda: random_sets(1, 700, 560, 24),
    "grid": lambda: grid_sets(2, 500, 430, 3),
    "duplicates": lambda: duplicate_sets(3, 420, 390, 16),
    "wide": lambda: random_sets(4, 300, 340, 300, shift=0.05, scale=1.0),
}


def ours(real, fake, name, **options):
    return hubness_pr.evaluate(real=real, fake=fake, metrics="protocol", protocol=name, **options).results["protocol"]


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tile", [4096, 97])
def test_prdc_preset_equals_compute_prdc(case, tile, monkeypatch):
    from prdc import compute_prdc

    monkeypatch.setattr(protocols, "SKLEARN_TILE", tile)  # tiles far smaller than the sets give the same values
    real, fake = CASES[case]()
    got = ours(real, fake, "prdc")
    want = quiet(compute_prdc, real, fake, nearest_k=5)
    assert (got.precision, got.recall, got.density, got.coverage) == tuple(
        float(want[key]) for key in ("precision", "recall", "density", "coverage"))
    assert got.f_score is None and (got.n_real_used, got.n_fake_used) == (len(real), len(fake))


@pytest.mark.parametrize("case", CASES)
def test_dgm_eval_preset_equals_its_prdc_on_its_seeded_subsets(case, monkeypatch):
    real, fake = CASES[case]()
    for reduced, seed in ((protocols.DGM_EVAL_SUBSET, 13579), (250, 7)):  # the default (min(N, M)) and smaller
        monkeypatch.setitem(protocols.PRESETS, "dgm_eval", replace(protocols.PRESETS["dgm_eval"], subset=reduced))
        got = ours(real, fake, "dgm_eval", protocol_seed=seed)
        want = subset_prdc(real, fake, seed=seed, nearest_k=5, reduced_n=reduced)
        assert (got.precision, got.recall, got.density, got.coverage) == tuple(
            want[key] for key in ("precision", "recall", "density", "coverage")), (reduced, seed)
        assert got.n_real_used == got.n_fake_used == min(reduced, len(real), len(fake))
    other = ours(real, fake, "dgm_eval", protocol_seed=8)
    assert (other.precision, other.recall) != (got.precision, got.recall)  # the seed picks the subsets


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch", [10000, 128])
def test_torch_fidelity_preset_equals_its_prc(case, batch, monkeypatch):
    from torch_fidelity.metric_prc import prc_features_to_metric

    monkeypatch.setattr(protocols, "PEER_BATCH", batch)
    real, fake = CASES[case]()
    got = ours(real, fake, "torch_fidelity")
    for save_ram in (False, True):  # its two code paths (input1: generated, input2: real)
        want = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=3,
                                      prc_batch_size=batch, save_cpu_ram=save_ram, verbose=False)
        assert (got.precision, got.recall, got.f_score) == (want["precision"], want["recall"], want["f_score"])
    assert got.density is None and got.coverage is None


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch", [10000, 150])
def test_sg2ada_preset_equals_its_float16_steps(case, batch, monkeypatch):
    monkeypatch.setattr(protocols, "PEER_BATCH", batch)  # 150: padded, uneven column chunks
    real, fake = CASES[case]()
    got = ours(real, fake, "sg2ada")
    want = sg2ada_precision_recall(real, fake, nhood_size=3, row_batch_size=batch, col_batch_size=batch)
    assert (got.precision, got.recall) == (want["precision"], want["recall"])


def test_the_presets_differ_where_their_conventions_do():
    """On an integer grid every ball has points on its border: '<' (prdc) and '<=' (torch-fidelity,
    the toolkit's P&R) give different numbers; float16 rounding (SG2-ADA) moves near-border points."""
    real, fake = grid_sets(2, 500, 430, 3)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="pr", k=5)
    strict = ours(real, fake, "prdc")
    assert strict.precision < ev.pr.precision  # the border points are out under '<'
    tf = ours(real, fake, "torch_fidelity")
    exact = hubness_pr.evaluate(real=real, fake=fake, metrics="pr", k=3).pr
    # '<=' and k=3 as the toolkit's P&R, and a grid's distances exact in float32: the same counts (torch's
    # float32 mean of the flags differs from the float64 one in its 8th digit)
    assert (tf.precision, tf.recall) == pytest.approx((exact.precision, exact.recall), rel=1e-7)
    rng = np.random.default_rng(5)
    # norms near 50: |x|^2 ~ 2,000, where float16's step is 1 or 2 (torch.cdist forms it): distances move ~0.1 %
    real = (rng.standard_normal((600, 64)) * 3 + 5).astype(np.float32)
    fake = (rng.standard_normal((500, 64)) * 3 + 5).astype(np.float32)
    half = ours(real, fake, "sg2ada")
    full = hubness_pr.evaluate(real=real, fake=fake, metrics="pr").pr
    assert (half.precision, half.recall) != (full.precision, full.recall)


def test_bad_protocol_requests_are_one_line_errors(tmp_path):
    real, fake = random_sets(0, 60, 50, 8)
    with pytest.raises(InputError, match="unknown protocol"):
        ours(real, fake, "nope")
    with pytest.raises(InputError, match="needs a preset"):
        hubness_pr.evaluate(real=real, fake=fake, metrics="protocol")
    with pytest.raises(InputError, match="at least k \\+ 1 = 6 fake"):
        ours(real, fake[:5], "prdc")
    with pytest.raises(InputError, match="overflow float16"):
        ours(real * 3000, fake * 3000, "sg2ada")  # distances beyond float16's range
    with pytest.raises(InputError, match="overflow float16"):
        ours(real * 1e5, fake, "sg2ada")  # the features themselves
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    r = call(main, tmp_path / "r.npy", tmp_path / "f.npy", "--metrics", "protocol")
    assert r.returncode != 0 and "--protocol" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = call(main, tmp_path / "r.npy", tmp_path / "f.npy", "--protocol", "prdcx")
    assert r.returncode != 0 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_the_command_prints_and_records_the_protocol(tmp_path):
    from prdc import compute_prdc

    real, fake = random_sets(6, 200, 180, 12)
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    out = tmp_path / "out.json"
    r = call(main, tmp_path / "r.npy", tmp_path / "f.npy", "--metrics", "pr", "--protocol", "prdc", "--json", out)
    assert r.returncode == 0, r.stderr
    want = quiet(compute_prdc, real, fake, nearest_k=5)
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines() if line.startswith("protocol."))
    assert lines["protocol.name"] == "prdc" and float(lines["protocol.density"]) == pytest.approx(want["density"], abs=5e-7)
    data = json.loads(out.read_text())
    assert data["protocol"]["coverage"] == float(want["coverage"]) and "pr" in data
    assert data["params"]["protocol"]["boundary"] == "<" and data["params"]["protocol"]["k"] == 5
    assert data["params"]["metrics"] == ["pr", "protocol"]


def test_memory_mapped_inputs_give_the_same_numbers(tmp_path):
    real, fake = random_sets(9, 400, 380, 20)
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    mapped = [np.load(tmp_path / name, mmap_mode="r") for name in ("r.npy", "f.npy")]
    for name in ("dgm_eval", "sg2ada"):
        want = ours(real, fake, name, protocol_seed=3)
        got = ours(*mapped, name, protocol_seed=3)
        assert got == want


def test_the_neighbourhood_size_can_be_set_as_each_peer_allows():
    from prdc import compute_prdc
    from torch_fidelity.metric_prc import prc_features_to_metric

    real, fake = CASES["duplicates"]()
    got = ours(real, fake, "prdc", protocol_k=3)
    want = quiet(compute_prdc, real, fake, nearest_k=3)
    assert (got.precision, got.density) == (float(want["precision"]), float(want["density"]))
    assert (got.precision, got.density) != astuple_pd(ours(real, fake, "prdc"))
    got = ours(real, fake, "torch_fidelity", protocol_k=5)
    want = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=5,
                                  prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    assert (got.precision, got.recall) == (want["precision"], want["recall"])
    got = ours(real, fake, "sg2ada", protocol_k=5)
    want = sg2ada_precision_recall(real, fake, nhood_size=5)
    assert (got.precision, got.recall) == (want["precision"], want["recall"])
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="protocol", protocol="sg2ada", protocol_k=5)
    assert ev.params["protocol"]["k"] == 5


def astuple_pd(result):
    return result.precision, result.density


def _ranked(group):
    real, fake = CASES["duplicates"]()
    out = []
    for name in protocols.PRESETS:
        r = hubness_pr.evaluate(real=real, fake=fake, metrics="pr,protocol", protocol=name, group=group).results
        out.append([r["protocol"].precision, r["protocol"].recall, r["pr"].precision])
    return out


def test_two_gloo_ranks_give_one_process_numbers(tmp_path):
    """Under torchrun every rank computes the preset (it needs no collective) beside the ranks' shared
    passes, and gets one process's numbers."""
    from tests import ranks

    single = ranks.single(_ranked)
    assert ranks.on_ranks(_ranked, 2, tmp_path) == [single, single]


def test_compare_shows_the_presets_and_their_numbers(tmp_path):
    real, fake = random_sets(7, 150, 140, 10)
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    log = tmp_path / "runs.jsonl"
    for name in ("prdc", "sg2ada"):
        r = call(main, tmp_path / "r.npy", tmp_path / "f.npy", "--metrics", "pr", "--protocol", name, "--log", log)
        assert r.returncode == 0, r.stderr
    r = call(main, "compare", log)
    assert r.returncode == 0, r.stderr
    header, first, second = r.stdout.splitlines()[:3]
    assert "protocol.name" in header and "protocol.precision" in header and "protocol.recall" in header
    assert "prdc" in first and "sg2ada" in second
