"""Shared fixtures: the metric tests run on both tile routes (hubness_pr.engine.kernels). Under pytest-xdist
(``-n``, see pytest.ini) each worker computes with its share of the cores, not all of them."""
import os

import pytest
import torch

from hubness_pr.engine import context, kernels

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture(params=["fused", "torch"])
def kernel_route(request, monkeypatch):
    """Run the test once with the fused CPU kernels (numba) and once with the torch route; returns the
    route, for tests that pass ``route=`` (or a RunContext) to the library explicitly.

    The library's calls in the test that name no route run on it too (``hubness_pr.engine.context.DEFAULT_ROUTE``,
    the route of a context built without one), and the metric command's ``--route`` default
    (``HUBNESS_KERNELS``, read by hubness_pr/commands/metrics.py only) is set for tests that run the command. The
    fused route is taken whatever the size (small runs would take torch's)."""
    if request.param == "fused":
        assert kernels.available(), "numba is a requirement: the fused route must be testable"
    monkeypatch.setattr(context, "DEFAULT_ROUTE", request.param)
    monkeypatch.setenv("HUBNESS_KERNELS", request.param)
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _summary_cache_in_a_temporary_folder(tmp_path_factory):
    """The metric command's k-NN summary cache goes to a temporary folder, not the user's ~/.cache."""
    os.environ["HUBNESS_CACHE"] = str(tmp_path_factory.mktemp("hubness-cache"))
    yield


@pytest.fixture(autouse=True)
def _torch_threads_do_not_leak():
    """A test (or the library under it) that changes torch's thread count puts it back: later tests on
    the same worker must not run with another setting."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    torch.set_num_threads(before)
    assert after == before, f"torch.set_num_threads leaked out of the test: {before} -> {after}"
