"""StyleGAN2-ADA's precision/recall steps, written out for the tests.

NVlabs/stylegan2-ada-pytorch ``metrics/precision_recall.py`` is under the NVIDIA Source Code License,
so it is not copied here; this module performs the same steps in the same torch calls on features
already extracted, with one process (``num_gpus = 1``, ``rank = 0``):

* both feature sets cast to float16;
* distances of a block of rows to all columns by ``torch.cdist`` on 3-D inputs, the columns zero-padded
  to a multiple of their number of batches (``((n - 1) // col_batch_size + 1)``), split by ``chunk``,
  the padding's columns dropped afterwards;
* for each manifold row, the (nhood_size + 1)-th smallest distance (``kthvalue`` in float32), kept in
  float16;
* a probe is inside when some manifold distance is ``<=`` that row's value; precision: fakes probed
  against the real manifold, recall: reals against the fake manifold; the fraction as a float32 mean.
"""
import torch


def _distance_rows(rows, cols, col_batch_size):
    n = cols.shape[0]
    batches = (n - 1) // col_batch_size + 1
    padded = torch.nn.functional.pad(cols, [0, 0, 0, -n % batches])
    parts = [torch.cdist(rows.unsqueeze(0), part.unsqueeze(0))[0] for part in padded.chunk(batches)]
    return torch.cat(parts, dim=1)[:, :n]


def sg2ada_precision_recall(real, fake, nhood_size=3, row_batch_size=10000, col_batch_size=10000):
    real = torch.as_tensor(real).to(torch.float16)
    fake = torch.as_tensor(fake).to(torch.float16)
    out = {}
    for name, manifold, probes in (("precision", real, fake), ("recall", fake, real)):
        kth = torch.cat([_distance_rows(block, manifold, col_batch_size).to(torch.float32)
                         .kthvalue(nhood_size + 1).values.to(torch.float16)
                         for block in manifold.split(row_batch_size)])
        inside = torch.cat([(_distance_rows(block, manifold, col_batch_size) <= kth).any(dim=1)
                            for block in probes.split(row_batch_size)])
        out[name] = float(inside.to(torch.float32).mean())
    return out
