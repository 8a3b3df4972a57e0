"""HyP² loss (Xu et al., ACM MM 2022), as JerryXu0129/HyP2-Loss ``model.py`` computes it.

For a batch of network outputs x (B, K), multi-hot labels y (B, C) and learnable class proxies
P (C, K), with cos = normalize(x) normalize(P)^T (B, C):

* proxy term = mean of (1 - cos) over the entries with y = 1
  + mean of max(0, cos - zeta) over the entries with y = 0 (two separate means);
* pair term (beta > 0) = beta * mean of max(0, cos(x_i, x_j) - zeta) over the ordered pairs (i, j)
  of samples that both carry at least two labels and whose label sets are disjoint; 0 without
  such a pair.

loss = proxy term + pair term; beta = 0 is the plain multi-label proxy loss. One difference from
the original: a mean over an empty set is 0 here (the original divides by zero and returns NaN
for a batch with no positive, or no negative, label entry).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossTerms(NamedTuple):
    total: torch.Tensor
    proxy: torch.Tensor
    pair: torch.Tensor


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; 0 (keeping the graph) when the mask is empty."""
    count = mask.sum()
    return torch.where(mask, values, torch.zeros_like(values)).sum() / count.clamp(min=1)


def hyp2_loss(outputs: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, zeta: float,
              beta: float = 0.5) -> LossTerms:
    """HyP² loss of ``outputs`` (B, K) against ``proxies`` (C, K) for multi-hot ``labels`` (B, C)."""
    if outputs.ndim != 2 or proxies.ndim != 2 or labels.shape != (outputs.shape[0], proxies.shape[0]) \
            or outputs.shape[1] != proxies.shape[1]:
        raise ValueError(f"shapes do not fit: outputs {tuple(outputs.shape)}, proxies {tuple(proxies.shape)}, "
                         f"labels {tuple(labels.shape)}; expected (B, K), (C, K), (B, C)")
    positive = labels > 0
    x = F.normalize(outputs.float(), p=2, dim=1)
    cos = x @ F.normalize(proxies.float(), p=2, dim=1).T
    proxy = _masked_mean(1 - cos, positive) + _masked_mean(F.relu(cos - zeta), ~positive)
    pair = proxy.new_zeros(())
    if beta > 0:
        multi = positive.sum(dim=1) > 1
        y = positive[multi].float()
        disjoint = (y @ y.T) == 0
        if disjoint.any():
            xm = x[multi]
            pair = beta * _masked_mean(F.relu(xm @ xm.T - zeta), disjoint)
    return LossTerms(proxy + pair, proxy, pair)


class HyP2Loss(torch.nn.Module):
    """The loss with its learnable proxies (C, K): Kaiming-normal, ``mode='fan_out'`` (std sqrt(2 / C)),
    drawn from ``seed`` without touching the global random state."""

    def __init__(self, num_classes: int, hash_bit: int, zeta: float, beta: float = 0.5, seed: int = 0):
        super().__init__()
        if beta < 0:
            raise ValueError(f"--beta must be >= 0, got {beta}")
        self.zeta, self.beta = float(zeta), float(beta)
        self.proxies = torch.nn.Parameter(torch.empty(num_classes, hash_bit))
        torch.nn.init.kaiming_normal_(self.proxies, mode="fan_out",
                                      generator=torch.Generator().manual_seed(int(seed)))

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        return hyp2_loss(outputs, self.proxies, labels, self.zeta, self.beta)
