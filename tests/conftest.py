"""Shared fixtures: the metric tests run on both tile routes (hubness.kernels)."""
import pytest

from hubness import kernels


@pytest.fixture(params=["fused", "torch"])
def kernel_route(request, monkeypatch):
    """Run the test once with the fused CPU kernels (numba) and once with the torch route."""
    if request.param == "fused":
        assert kernels.numba is not None, "numba is a requirement: the fused route must be testable"
        monkeypatch.delenv("HUBNESS_KERNELS", raising=False)
    else:
        monkeypatch.setenv("HUBNESS_KERNELS", "torch")
    return request.param
