"""Streaming batches of a split: images decoded and prepared in DataLoader workers, or feature rows.

Training batches flip each image horizontally with probability 1/2, decided by a generator seeded
with (seed, epoch, item): the same flips and the same order whatever the number of workers. A
decoding error is carried back to the main process and raised there as one ValueError naming the
file (the DataLoader would wrap it in a multi-line traceback).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hubness_pr.errors import InputError
from hubness_pr.hyp2.splits import Split


class _Prepared(Dataset):
    def __init__(self, split: Split, prepare, flip: bool, seed: int, epoch: int):
        self.split, self.prepare, self.flip, self.seed, self.epoch = split, prepare, flip, seed, epoch

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        try:
            image = self.split.source.read(i)
        except InputError as exc:  # an image that cannot be read; any other exception stops the run
            return i, None, exc  # (picklable with its fields, from a worker process)
        if self.flip and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            image = image[:, ::-1]
        return i, self.prepare(np.ascontiguousarray(image)), None


def _collate(items):
    errors = [e for _, x, e in items if x is None]
    if errors:
        return None, None, errors[0]
    return [i for i, _, _ in items], torch.stack([x for _, x, _ in items]), None


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a permutation drawn from (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 104729]).permutation(n)


def batches(split: Split, prepare, *, batch_size: int, order=None, train: bool = False, seed: int = 0,
            epoch: int = 0, num_workers: int = 0):
    """Yield ``(indices, inputs, labels)`` (CPU tensors) over ``split`` in ``order`` (default: as stored)."""
    order = np.arange(len(split)) if order is None else np.asarray(order)
    labels = torch.from_numpy(split.labels)
    if split.features is not None:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield idx.tolist(), torch.from_numpy(split.features[idx]), labels[idx]
        return
    chunks = [order[s:s + batch_size].tolist() for s in range(0, len(order), batch_size)]
    loader = DataLoader(_Prepared(split, prepare, train, seed, epoch), batch_sampler=chunks, num_workers=num_workers,
                        collate_fn=_collate)
    for idx, inputs, error in loader:
        if error is not None:
            raise error.located()  # the reader's InputError, its file and role kept
        yield idx, inputs, labels[idx]
