"""Shared fixtures: the metric tests run on both tile routes (hubness.kernels)."""
import pytest

from hubness import kernels


@pytest.fixture(params=["fused", "torch"])
def kernel_route(request, monkeypatch):
    """Run the test once with the fused CPU kernels (numba) and once with the torch route."""
    if request.param == "fused":
        assert kernels.available(), "numba is a requirement: the fused route must be testable"
        monkeypatch.setenv("HUBNESS_KERNELS", "fused")  # whatever the size (small runs take torch's)
    else:
        monkeypatch.setenv("HUBNESS_KERNELS", "torch")
    return request.param
