"""The CUDA route (torch code on a GPU) against the float64 oracle and the CPU, on ordinary data and
on every hard case of hubness_pr.engine.hard_cases. Skipped, visibly, where there is no CUDA device;
python -m bench.gpu_check runs them on a GPU (``pytest -m cuda``)."""
import numpy as np
import pytest
import torch

import hubness_pr
from hubness_pr.reports.results import metric_block
from hubness_pr.engine import hard_cases
from tests import oracle
from tests.test_numerics_hard import assert_exact

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA device here; python -m bench.gpu_check runs these on a GPU")]


def test_cuda_results_equal_the_oracle():
    rng = np.random.default_rng(21)
    real = rng.standard_normal((400, 64)).astype(np.float32)
    fake = (rng.standard_normal((350, 64)) * 1.2 + 0.4).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, device="cuda", memory_budget=2**20)
    assert ev.params["device"].startswith("cuda")
    assert_exact(ev, oracle.all_metrics(real, fake))


@pytest.mark.parametrize("name", sorted(hard_cases.all_cases()))
def test_cuda_equals_the_oracle_and_the_cpu_on_hard_cases(name):
    real, fake, options = hard_cases.all_cases()[name]
    for budget in (2**20, hubness_pr.DEFAULT_MEMORY_BUDGET):
        gpu = hubness_pr.evaluate(real=real, fake=fake, device="cuda", memory_budget=budget, **options)
        assert_exact(gpu, oracle.all_metrics(real, fake, **options))
    cpu = hubness_pr.evaluate(real=real, fake=fake, device="cpu", **options)
    same = [hubness_pr.json_safe(metric_block(n, getattr(gpu, n))) for n in ("pr", "dc", "epr")]  # NaN (no hubs) as None
    assert same == [hubness_pr.json_safe(metric_block(n, getattr(cpu, n))) for n in ("pr", "dc", "epr")]
    np.testing.assert_array_equal(gpu.fake_k_occurrence, cpu.fake_k_occurrence)
    np.testing.assert_array_equal(gpu.rarity.scores, cpu.rarity.scores)


def test_cuda_knn_on_ties_and_duplicates():
    for x, k in ((hard_cases.ulp_ties(), 6), (hard_cases.many_duplicates(), 10),
                 (hard_cases.half_integer_grid()[1], 4)):
        g = hubness_pr.nearest_neighbors(x, k, device="cuda", memory_budget=2**20)
        idx, d = oracle.knn(x, k)
        np.testing.assert_array_equal(g.indices, idx)
        np.testing.assert_allclose(g.sq_distances, d, rtol=1e-13)


@pytest.mark.parametrize("name", sorted(hard_cases.all_cases()))
def test_cuda_nearest_reals_equal_the_cpu(name):
    """Memorisation (auth): each fake's two nearest reals and their exact distances, CUDA = CPU, bit for bit."""
    real, fake, _ = hard_cases.all_cases()[name]
    gpu = hubness_pr.evaluate(real=real, fake=fake, metrics="auth", device="cuda", memory_budget=2**20).auth
    cpu = hubness_pr.evaluate(real=real, fake=fake, metrics="auth", device="cpu").auth
    for field in ("nearest_real", "second_real", "nearest_real_distance", "second_real_distance", "authentic"):
        np.testing.assert_array_equal(getattr(gpu, field), getattr(cpu, field), err_msg=field)


def _sized_cases():
    """The hard cases with at least 10 samples a set (ppr's 4-NN and cdc's 5-NN radii exist)."""
    return sorted(name for name, (real, fake, _) in hard_cases.all_cases().items() if min(len(real), len(fake)) >= 10)


def _rider_vs_cpu(device, name):
    """auth beside a full cross pass (the nearest reals ride its tiles) and ppr, cdc: ``device`` = CPU."""
    real, fake, _ = hard_cases.all_cases()[name]
    metrics = "pr,dc,ppr,cdc,auth"
    other = hubness_pr.evaluate(real=real, fake=fake, metrics=metrics, device=device, memory_budget=2**20)
    cpu = hubness_pr.evaluate(real=real, fake=fake, metrics=metrics, device="cpu")
    for field in ("nearest_real", "second_real", "nearest_real_distance", "second_real_distance", "authentic"):
        np.testing.assert_array_equal(getattr(other.auth, field), getattr(cpu.auth, field), err_msg=field)
    assert (other.cdc.density, other.cdc.coverage) == (cpu.cdc.density, cpu.cdc.coverage)
    # ppr's float64 sums of logs follow the tiles' order: equal to rounding, not bit for bit
    assert (other.ppr.precision, other.ppr.recall) == pytest.approx((cpu.ppr.precision, cpu.ppr.recall), rel=1e-12)


@pytest.mark.parametrize("name", _sized_cases())
def test_cuda_riders_and_new_metrics_equal_the_cpu(name):
    _rider_vs_cpu("cuda", name)


def _presets_vs_peers(device):
    """torch-fidelity's and SG2-ADA's presets call torch.cdist on the peers' batch shapes: on one device
    the peers' own code gives the same bits (SG2-ADA: float16 as on its GPUs)."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    from tests.reference_sg2ada import sg2ada_precision_recall

    rng = np.random.default_rng(3)
    real = (rng.standard_normal((900, 64)) * 3 + 5).astype(np.float32)
    fake = (rng.standard_normal((800, 64)) * 3 + 5.2).astype(np.float32)
    on = {key: torch.from_numpy(x).to(device) for key, x in (("real", real), ("fake", fake))}
    got = hubness_pr.evaluate(real=real, fake=fake, metrics="protocol", protocol="sg2ada", device=device).protocol
    want = sg2ada_precision_recall(on["real"], on["fake"])
    assert (got.precision, got.recall) == (want["precision"], want["recall"])
    got = hubness_pr.evaluate(real=real, fake=fake, metrics="protocol", protocol="torch_fidelity", device=device).protocol
    want = prc_features_to_metric(on["fake"], on["real"], prc_neighborhood=3, prc_batch_size=10000,
                                  save_cpu_ram=False, verbose=False)
    assert (got.precision, got.recall) == (want["precision"], want["recall"])


def test_cuda_protocol_presets_equal_the_peers_on_the_gpu():
    _presets_vs_peers("cuda")
