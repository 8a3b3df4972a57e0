"""Training with HyP² loss, encoding and evaluation, as the original ``retrieval.py`` trains:

SGD (momentum 0.9, weight decay 5e-4) over two groups, the network at its lr and the proxies at
``rate``; StepLR(step 10 epochs, gamma 0.5) stepped once an epoch. Every ``eval_every`` epochs and
after the last, the validation queries are ranked against the database without them; the best
validation mAP@R (strictly better than every earlier one) keeps its weights (``on_best`` is called, e.g. to
write the checkpoint). The test queries are never looked at while training.

A trailing training batch of a single sample is left out of its epoch (batch norm cannot train on one).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from hubness_pr.errors import InputError
from hubness_pr.hyp2.batches import batches, epoch_order
from hubness_pr.hyp2.splits import RetrievalData, Split
from hubness_pr.hyp2.loss import HyP2Loss
from hubness_pr.hyp2.networks import HashNetwork
from hubness_pr.hyp2.ranking import DEFAULT_MEMORY_MIB, RetrievalScores, hash_codes, retrieval_scores

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 100
    rate: float = 0.02           # proxies' lr
    lr: float | None = None      # network lr; None: the network's default
    beta: float = 0.5
    seed: int = 0
    eval_every: int = 5
    num_workers: int = 0
    device: str = "cpu"
    memory_mib: float = DEFAULT_MEMORY_MIB
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_size: int = 10
    gamma: float = 0.5


@dataclass
class TrainResult:
    state: dict = field(repr=False)        # best network state (CPU)
    proxies: torch.Tensor = field(repr=False)
    best_epoch: int = 0
    val_map: float = float("nan")
    history: list = field(default_factory=list)


def encode(network: HashNetwork, split: Split, *, device="cpu", batch_size: int = 100, num_workers: int = 0,
           progress: bool | None = None, desc: str = "encode") -> np.ndarray:
    """Network outputs (n, K) float32 of every item of ``split``, in order, in eval mode."""
    module = network.module.to(device).eval()
    out = np.empty((len(split), network.hash_bit), np.float32)
    with torch.inference_mode(), tqdm(total=len(split), desc=desc, unit="item", leave=False,
                                      disable=None if progress is None else not progress) as bar:
        for idx, inputs, _ in batches(split, network.prepare, batch_size=batch_size, num_workers=num_workers):
            out[idx] = module(inputs.to(device)).float().cpu().numpy()
            if not np.isfinite(out[idx]).all():  # NaN would be coded +1 silently
                raise InputError(f"{desc}: the network's outputs are not finite (item {split.names[int(idx[0])]!r} and "
                                 f"its batch); its weights are damaged or training diverged")
            bar.update(len(idx))
    return out


def evaluate(network: HashNetwork, query: Split, database: Split, R: int, *, topn=(), device="cpu",
             batch_size: int = 100, num_workers: int = 0, memory_mib: float = DEFAULT_MEMORY_MIB,
             progress: bool | None = None):
    """(scores, query codes, database codes): Hamming ranking of ``database`` for every item of ``query``."""
    kwargs = dict(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    q = hash_codes(encode(network, query, desc="encode queries", **kwargs))
    db = hash_codes(encode(network, database, desc="encode database", **kwargs))
    scores: RetrievalScores = retrieval_scores(q, db, query.labels, database.labels, R, topn=topn,
                                               memory_mib=memory_mib)
    return scores, q, db


def train(network: HashNetwork, data: RetrievalData, zeta: float, config: TrainConfig, *,
          progress: bool | None = None, on_best=None, on_epoch=None) -> TrainResult:
    """Train ``network`` on ``data.train``, choose the epoch on ``data.val``; the best weights come back.
    ``on_best(result, history)`` is called at each new best, ``on_epoch(history)`` after each epoch.
    Dropout draws from ``config.seed``; the caller's global random state is left as it was."""
    device = torch.device(config.device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(config.seed)
        return _train(network, data, zeta, config, device, progress, on_best, on_epoch)


def _train(network, data, zeta, config, device, progress, on_best, on_epoch) -> TrainResult:
    module = network.module.to(device)
    criterion = HyP2Loss(data.num_classes, network.hash_bit, zeta, config.beta, config.seed).to(device)
    lr = network.lr if config.lr is None else config.lr
    optimizer = torch.optim.SGD([{"params": [p for p in module.parameters() if p.requires_grad], "lr": lr},
                                 {"params": criterion.parameters(), "lr": config.rate}],
                                momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    val_db = data.validation_database()
    val_R = min(data.R, len(val_db))
    best = TrainResult(state={}, proxies=criterion.proxies.detach().cpu().clone(), best_epoch=0, val_map=-math.inf)
    history = []
    n = len(data.train)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        module.train()
        order = epoch_order(n, config.seed, epoch)
        if n % config.batch_size == 1 and n > 1:
            order = order[:-1]
        totals = np.zeros(3)
        lrs = [group["lr"] for group in optimizer.param_groups]
        with tqdm(total=len(order), desc=f"epoch {epoch}/{config.epochs}", unit="item", leave=False,
                  disable=None if progress is None else not progress) as bar:
            for idx, inputs, labels in batches(data.train, network.prepare, batch_size=config.batch_size,
                                               order=order, train=True, seed=config.seed, epoch=epoch,
                                               num_workers=config.num_workers):
                terms = criterion(module(inputs.to(device)), labels.to(device))
                if not torch.isfinite(terms.total):
                    raise InputError(f"training diverged in epoch {epoch} (loss {terms.total.item()}); "
                                     f"try a lower --lr or --rate")
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
                totals += [t.item() * len(idx) for t in terms]
                bar.update(len(idx))
                bar.set_postfix(loss=f"{terms.total.item():.4f}")
        scheduler.step()
        entry = {"epoch": epoch, "loss": totals[0] / len(order), "proxy_term": totals[1] / len(order),
                 "pair_term": totals[2] / len(order), "lr_network": lrs[0], "lr_proxies": lrs[1],
                 "train_seconds": time.perf_counter() - started}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            scores, _, _ = evaluate(network, data.val, val_db, val_R, device=device, batch_size=config.batch_size,
                                    num_workers=config.num_workers, memory_mib=config.memory_mib, progress=progress)
            entry.update(val_map=scores.map, val_R=scores.R)
            if scores.map > best.val_map:
                best = TrainResult(state={k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
                                   proxies=criterion.proxies.detach().cpu().clone(), best_epoch=epoch,
                                   val_map=scores.map, history=history)
                entry["best"] = True
                if on_best is not None:
                    on_best(best, [*history, entry])
            log.info("epoch %d/%d: loss %.4f, val mAP@%d %.4f (best %.4f, epoch %d)", epoch, config.epochs,
                     entry["loss"], scores.R, scores.map, best.val_map, best.best_epoch)
        history.append(entry)
        if on_epoch is not None:
            on_epoch(history)
    best.history = history
    return best
