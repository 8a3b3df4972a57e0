"""The metric registry and the planner: a metric is one declaration; evaluate plans the passes from
the declarations (hubness_pr/metrics/registry.py, hubness_pr/metrics/evaluation.py)."""
from dataclasses import dataclass

import numpy as np
import pytest

import hubness_pr
from hubness_pr.metrics import registry
from hubness_pr.metrics.evaluation import Plan
from hubness_pr.metrics.registry import REGISTRY, Metric, Options, register
from tests import oracle


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register(Metric("pr", lambda p: None))
    assert REGISTRY["pr"].doc == "improved precision and recall"  # the first stays


def test_unknown_radii_are_refused(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", {})
    with pytest.raises(ValueError, match="unknown radii"):
        register(Metric("x", lambda p: None, real_radii=("k2",)))


def test_metrics_follow_the_declared_order_and_defaults():
    assert hubness_pr.METRICS == ("epr", "pr", "dc", "realism", "rarity", "hubness", "prcover", "ppr", "cdc", "fd", "kid",
                                  "cmmd", "auth", "ct", "protocol")
    assert hubness_pr.DEFAULT_METRICS == hubness_pr.METRICS[:6]
    ev = hubness_pr.evaluate(real=np.eye(8, dtype=np.float32), fake=np.eye(8, dtype=np.float32)[::-1].copy(),
                             metrics="dc,pr", k=2, dc_k=2)
    assert list(ev.results) == ["pr", "dc"] and ev.epr is None and ev.hubness_real is None


@pytest.mark.parametrize("names, real_ks, fake_ks, cross, hub_only", [
    (("epr",), (3,), (3,), True, True),            # eP&R alone: real hubs x fake hubs only
    (("epr", "dc"), (3, 5), (3,), True, False),    # beside a full metric: one full pass
    (("hubness",), (3,), (3,), False, False),      # no cross pass at all
    (("dc",), (5,), (), True, False),              # no fake k-NN pass
    (("prcover",), (9,), (9,), True, False),       # k' = 3k in both sets
    (("ppr",), (4,), (4,), True, False),           # P-P&R: ppr_k = 4 radii in both sets
    (("cdc", "pr"), (3, 5), (3,), True, False),    # clipped density/coverage: real radii at dc_k
    (("fd", "kid", "cmmd"), (), (), False, False),  # moments and kernel sums only: no k-NN pass
])
def test_the_planner_derives_the_passes_from_the_declarations(names, real_ks, fake_ks, cross, hub_only):
    plan = Plan.of(names, Options(k=3, dc_k=5, hubs_k=3, prcover_c=3))
    assert (plan.real_ks, plan.fake_ks, plan.cross, plan.hub_only) == (real_ks, fake_ks, cross, hub_only)
    assert hubness_pr.real_knn_needs(names, k=3, dc_k=5) == (max(real_ks, default=0), real_ks)


@dataclass(frozen=True)
class Crowded:
    fraction: float
    k: int


def test_a_new_cross_metric_is_one_declaration(monkeypatch, kernel_route):
    """A metric declared here (nowhere else): the fraction of fakes inside at least two real dc balls,
    from the density reduction; the planner runs it, the report shows its block; equal to the brute force."""
    def finish(p):
        return Crowded(fraction=float(np.mean(p.cross["dens"] >= 2)), k=p.options.dc_k)

    monkeypatch.setitem(REGISTRY, "crowded", Metric(
        "crowded", finish, real_radii=("dc_k",), cross=lambda p: ({"dens"}, {"r_dc": p.real_graph.sq_radii(p.options.dc_k)}),
        default=False, order=95))
    rng = np.random.default_rng(3)
    real = rng.standard_normal((120, 6)).astype(np.float32)
    fake = (rng.standard_normal((90, 6)) + 0.3).astype(np.float32)
    ev = hubness_pr.evaluate(real=real, fake=fake, metrics="crowded,pr", dc_k=4, route=kernel_route)
    r2 = oracle.sq_radii(real, 4)
    d2 = oracle.sq_dists(real, fake)
    want = float(np.mean((d2 < r2[:, None]).sum(axis=0) >= 2))
    assert 0.05 < want < 0.95  # the case tells something
    assert ev.crowded == Crowded(fraction=want, k=4)
    assert hubness_pr.to_dict(ev)["crowded"] == {"fraction": want} and list(ev.results) == ["pr", "crowded"]


def test_the_planner_collects_moment_and_kernel_needs():
    plan = Plan.of(("pr", "fd", "kid", "cmmd"), Options())
    assert plan.moments and plan.kernels == ("gauss", "poly3") and plan.real_ks == (3,)
    assert Plan.of(("kid",), Options(kid_subsets=10)).kernels == ()  # subsets: no full-set kernel pass
    assert not Plan.of(("pr",), Options()).moments
