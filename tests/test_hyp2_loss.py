"""HyP² loss against a brute-force loop reimplementation (values and gradients) and the original's formula."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hubness_pr.hyp2.loss import HyP2Loss, hyp2_loss


def brute_force_loss(x, proxies, y, zeta, beta):
    """The definition, entry by entry and pair by pair, in float64 (differentiable)."""
    batch, classes = len(y), len(y[0])
    unit = [x[i] / x[i].norm() for i in range(batch)]
    centre = [proxies[c] / proxies[c].norm() for c in range(classes)]
    pos, neg = [], []
    for i in range(batch):
        for c in range(classes):
            cos = (unit[i] * centre[c]).sum()
            if y[i][c]:
                pos.append(1 - cos)
            else:
                neg.append(torch.clamp(cos - zeta, min=0))
    proxy = (sum(pos) / len(pos) if pos else 0) + (sum(neg) / len(neg) if neg else 0)
    multi = [i for i in range(batch) if sum(y[i]) >= 2]
    pairs = [(i, j) for i in multi for j in multi if not any(y[i][c] and y[j][c] for c in range(classes))]
    pair = 0
    if beta > 0 and pairs:
        pair = beta * sum(torch.clamp((unit[i] * unit[j]).sum() - zeta, min=0) for i, j in pairs) / len(pairs)
    return proxy + pair, proxy, pair


def original_forward(x, proxies, batch_y, threshold, beta):
    """JerryXu0129/HyP2-Loss model.py HyP.forward, with its globals as arguments."""
    P_one_hot = batch_y
    cos = F.normalize(x, p=2, dim=1).mm(F.normalize(proxies, p=2, dim=1).T)
    pos = 1 - cos
    neg = F.relu(cos - threshold)
    P_num = len(P_one_hot.nonzero())
    N_num = len((P_one_hot == 0).nonzero())
    pos_term = torch.where(P_one_hot == 1, pos, torch.zeros_like(cos)).sum() / P_num
    neg_term = torch.where(P_one_hot == 0, neg, torch.zeros_like(cos)).sum() / N_num
    if beta > 0:
        index = batch_y.sum(dim=1) > 1
        y_ = batch_y[index].float()
        x_ = x[index]
        cos_sim = y_.mm(y_.T)
        if len((cos_sim == 0).nonzero()) == 0:
            reg_term = 0
        else:
            x_sim = F.normalize(x_, p=2, dim=1).mm(F.normalize(x_, p=2, dim=1).T)
            neg = beta * F.relu(x_sim - threshold)
            reg_term = torch.where(cos_sim == 0, neg, torch.zeros_like(x_sim)).sum() / len((cos_sim == 0).nonzero())
    else:
        reg_term = 0
    return pos_term + neg_term + reg_term


def batch(seed, batch_size=12, classes=5, bits=16, max_labels=3):
    rng = np.random.default_rng(seed)
    y = np.zeros((batch_size, classes), np.float32)
    for i in range(batch_size):
        y[i, rng.choice(classes, size=rng.integers(1, max_labels + 1), replace=False)] = 1
    x = rng.normal(size=(batch_size, bits))
    p = rng.normal(size=(classes, bits))
    multi = np.flatnonzero(y.sum(1) >= 2)
    disjoint = [(i, j) for i in multi for j in multi if not (y[i] @ y[j])]
    if disjoint:  # one disjoint pair points the same way: its hinge is active whatever zeta < 1
        i, j = disjoint[0]
        x[j] = x[i] + 0.05 * rng.normal(size=bits)
    return x, p, y


def compare(x, p, y, zeta, beta):
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    pt = torch.tensor(p, dtype=torch.float32, requires_grad=True)
    terms = hyp2_loss(xt, pt, torch.tensor(y), zeta, beta)
    terms.total.backward()
    xr = torch.tensor(xt.detach().numpy(), dtype=torch.float64, requires_grad=True)
    pr = torch.tensor(pt.detach().numpy(), dtype=torch.float64, requires_grad=True)
    total, proxy, pair = brute_force_loss(xr, pr, y.astype(bool).tolist(), zeta, beta)
    total.backward()
    for ours, theirs in zip(terms, (total, proxy, pair)):
        assert ours.item() == pytest.approx(float(torch.as_tensor(theirs).detach()), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pt.grad.numpy(), pr.grad.numpy(), rtol=1e-4, atol=1e-6)
    return terms


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zeta, beta", [(0.0, 0.5), (-0.25, 0.5), (1 / 3, 2.0), (0.0, 0.0)])
def test_matches_brute_force_with_pairs(seed, zeta, beta):
    x, p, y = batch(seed)
    multi = y[y.sum(1) >= 2]
    assert ((multi @ multi.T) == 0).any()  # the batch has qualifying pairs
    terms = compare(x, p, y, zeta, beta)
    assert (terms.pair.item() > 0) == (beta > 0)


def test_no_qualifying_pair_gives_zero_pair_term():
    x, p, _ = batch(7)
    y = np.zeros((12, 5), np.float32)
    y[:, 0] = 1  # every sample shares class 0: no disjoint pair
    y[::2, 1] = 1
    assert compare(x, p, y, 0.0, 0.5).pair.item() == 0.0
    y1 = np.eye(5, dtype=np.float32)[np.arange(12) % 5]  # single labels only: no sample qualifies
    assert compare(x, p, y1, 0.0, 0.5).pair.item() == 0.0


def test_pair_term_counts_only_samples_with_two_labels():
    x, p, _ = batch(3, batch_size=4)
    y = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], np.float32)
    # only (0, 1) and (1, 0) qualify: sample 2 and 3 have one label
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = 0.5 * max(0.0, unit[0] @ unit[1] - (-0.5))
    assert compare(x, p, y, -0.5, 0.5).pair.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_equals_the_original_formula(seed):
    x, p, y = batch(seed)
    xt, pt, yt = (torch.tensor(a, dtype=torch.float32) for a in (x, p, y))
    for beta in (0.0, 0.5):
        ours = hyp2_loss(xt, pt, yt, 0.2, beta).total
        assert ours.item() == pytest.approx(float(original_forward(xt, pt, yt, 0.2, beta)), rel=1e-6)


def test_empty_positive_or_negative_set_is_zero_not_nan():
    x, p, _ = batch(0, batch_size=3)
    for y in (np.zeros((3, 5), np.float32), np.ones((3, 5), np.float32)):
        terms = compare(x, p, y, 0.0, 0.5)
        assert math.isfinite(terms.total.item())


def test_proxies_kaiming_fan_out_and_seeded():
    a, b, c = HyP2Loss(20, 4096, 0.0, seed=1), HyP2Loss(20, 4096, 0.0, seed=1), HyP2Loss(20, 4096, 0.0, seed=2)
    assert torch.equal(a.proxies, b.proxies) and not torch.equal(a.proxies, c.proxies)
    assert a.proxies.std().item() == pytest.approx(math.sqrt(2 / 20), rel=0.02)  # fan_out = C
    assert abs(a.proxies.mean().item()) < 0.01
    state = torch.random.get_rng_state()
    HyP2Loss(20, 48, 0.0, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # global generator untouched


def test_bad_shapes_and_beta():
    with pytest.raises(ValueError, match="shapes do not fit"):
        hyp2_loss(torch.zeros(4, 8), torch.zeros(3, 8), torch.zeros(4, 5), 0.0)
    with pytest.raises(ValueError, match="--beta must be >= 0"):
        HyP2Loss(3, 8, 0.0, beta=-1)
