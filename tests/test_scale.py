"""Sets larger than memory: .npy inputs are memory-mapped and read tile by tile, screen frames make no
copy of a set, and results equal those of in-memory arrays."""
import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.io.store import load_features
from hubness_pr.engine.frame import ScreenRows, SetStats, choose_frame
from hubness_pr.engine import hard_cases

pytestmark = pytest.mark.usefixtures("kernel_route")


@pytest.mark.parametrize("case", ["ordinary", "offset"])
def test_memory_mapped_inputs_give_identical_results(tmp_path, case):
    if case == "offset":
        real, fake = hard_cases.offset(10.0)
    else:
        rng = np.random.default_rng(3)
        real, fake = (rng.standard_normal((400, 24)).astype(np.float32),
                      (rng.standard_normal((350, 24)) + 0.2).astype(np.float32))
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    r, f = load_features(tmp_path / "real.npy"), load_features(tmp_path / "fake.npy")
    assert isinstance(r.features, np.memmap) and not r.features.flags.writeable
    mapped = hubness_pr.evaluate(real=r.features, fake=f.features, memory_budget=2**20)
    in_memory = hubness_pr.evaluate(real=real, fake=fake, memory_budget=2**20)
    assert (mapped.pr, mapped.dc, mapped.epr) == (in_memory.pr, in_memory.dc, in_memory.epr)
    np.testing.assert_array_equal(mapped.realism.scores, in_memory.realism.scores)
    np.testing.assert_array_equal(mapped.rarity.scores, in_memory.rarity.scores)
    np.testing.assert_array_equal(mapped.fake_k_occurrence, in_memory.fake_k_occurrence)


def test_a_centred_frame_transforms_blocks_without_copying_the_set():
    real, _ = hard_cases.offset(10.0)
    x = torch.from_numpy(real)
    stats = SetStats.of(x)
    frame = choose_frame([x], [stats])
    rows, norms = frame.screen(x)
    assert isinstance(rows, ScreenRows) and rows.x is x  # a view that transforms on demand
    block = rows[10:20]
    want = ((real[10:20].astype(np.float64) - frame.centre.numpy()) * 2.0**frame.exponent).astype(np.float32)
    np.testing.assert_array_equal(block.numpy(), want)
    np.testing.assert_array_equal(rows[torch.tensor([3, 7])].numpy(), rows[3:8].numpy()[[0, 4]])
    screened = ((real.astype(np.float64) - frame.centre.numpy()) * 2.0**frame.exponent).astype(np.float32)
    np.testing.assert_allclose(norms.numpy(), (screened.astype(np.float64) ** 2).sum(axis=1), rtol=1e-6)
