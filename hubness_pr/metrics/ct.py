"""C_T, the data-copying test statistic (Meehan, Chaudhuri & Dasgupta, AISTATS 2020, "A non-parametric
test to detect data-copying in generative models"), as dgm-eval computes it (``metrics/ct.py``,
from casey-meehan/data-copying).

With T the training (``real``) set, P_n a held-out real test set (``real_test``) and Q_m the fakes:

1. where dim > 64, all three sets are projected on the first 64 principal components of T (PCA fitted
   on T);
2. T is partitioned into 3 cells by k-means (``n_init=10``); P_n and Q_m are assigned to the nearest
   centre;
3. in each cell pi, the distances of P_n's and Q_m's samples to their nearest training sample *of that
   cell* (L(P_n), L(Q_m)) give the Mann-Whitney U statistic of L(Q_m) against L(P_n), Z-scored as
   ``Z_u = (U - (n m / 2 - 0.5)) / sqrt(n m (n + m + 1) / 12)`` (n, m: the cell's test and fake counts);
4. C_T is the average of Z_u over the cells holding more than ``tau = 20 / M`` of the fakes, weighted
   by the fraction of test samples in each cell.

C_T << 0: the fakes are closer to the training samples than held-out real samples are (data copying);
C_T >> 0: underfitting. Reproduced from dgm-eval: the fixed 3 cells and 64 components, tau, the
continuity term of the mean, the untied standard deviation, nearest neighbours within a cell only.
Corrected: PCA and k-means are seeded (``ct_seed``; dgm-eval leaves them unseeded, so its value changes
from run to run), a cell without test or training samples is one line (InputError) for every cell
(dgm-eval raises an IndexError or ValueError depending on which cell), no cell with enough fakes gives
NaN (dgm-eval: NaN with a warning), nothing is printed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hubness_pr.errors import InputError
from hubness_pr.metrics.registry import Metric, Passes, register

CELLS = 3          # dgm-eval's k-means cells
COMPONENTS = 64    # dgm-eval's PCA components (applied where dim exceeds them)
MIN_FAKES = 20     # a cell counts when it holds more than MIN_FAKES / M of the fakes (dgm-eval's tau)


@dataclass(frozen=True)
class DataCopying:
    """C_T (``value``), the number of cells that entered it, and the Z_u of each cell (NaN: too few
    fakes for the cell to count; the held-out set's size is the run's ``params['n_real_test']``)."""

    value: float
    cells_used: int
    cell_z: tuple


def _numpy(x) -> np.ndarray:
    """A feature set of the run (a tensor, or rows read from a file) as a float32 array."""
    if not isinstance(x, (torch.Tensor, np.ndarray)):  # hubness_pr.engine.mapped.MappedRows
        x = x[0:x.shape[0]]
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def z_u(test: np.ndarray, fake: np.ndarray, train: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of the fakes' against the test samples' distances to their nearest
    training sample (dgm-eval's ``Zu``)."""
    from scipy.stats import mannwhitneyu
    from sklearn.neighbors import NearestNeighbors

    m, n = fake.shape[0], test.shape[0]
    nn = NearestNeighbors(n_neighbors=1).fit(train)
    l_fake = nn.kneighbors(X=fake, n_neighbors=1)[0][:, 0]
    l_test = nn.kneighbors(X=test, n_neighbors=1)[0][:, 0]
    u = mannwhitneyu(l_fake, l_test, alternative="less").statistic
    return float((u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12))


def c_t(train: np.ndarray, test: np.ndarray, fake: np.ndarray, seed: int = 0) -> DataCopying:
    """C_T of ``fake`` (M, dim) against the training set ``train`` (N, dim) with the held-out real
    ``test`` set (n_test, dim) (module docstring); arrays as given (float32 features: float32 PCA)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    if train.shape[1] > COMPONENTS:
        if train.shape[0] < COMPONENTS:
            raise InputError(f"C_T projects the features on {COMPONENTS} principal components of the real set, "
                             f"which needs at least {COMPONENTS} real samples; got {train.shape[0]}", role="real")
        pca = PCA(n_components=COMPONENTS, random_state=seed).fit(train)
        train, test, fake = pca.transform(train), pca.transform(test), pca.transform(fake)
    if train.shape[0] < CELLS:
        raise InputError(f"C_T partitions the real set into {CELLS} cells; got {train.shape[0]} real samples",
                         role="real")
    km = KMeans(n_clusters=CELLS, n_init=10, random_state=seed).fit(train)
    t_cells, p_cells, q_cells = km.predict(train), km.predict(test), km.predict(fake)
    m, n = fake.shape[0], test.shape[0]
    tau = MIN_FAKES / m
    weights, zs = [], []
    for c in range(CELLS):
        p_c, q_c, t_c = test[p_cells == c], fake[q_cells == c], train[t_cells == c]
        if len(p_c) == 0 or len(t_c) == 0:
            raise InputError(f"C_T: cell {c} of {CELLS} (k-means of the real set) holds no held-out real sample "
                             f"(real_test has {n}); give a larger real_test", role="real_test")
        if len(q_c) / m > tau:
            zs.append(z_u(p_c, q_c, t_c))
            weights.append(len(p_c) / n)
        else:
            zs.append(float("nan"))
    w = np.array(weights)
    used = np.array([z for z in zs if not np.isnan(z)])
    value = float(w.dot(used) / w.sum()) if w.size else float("nan")
    return DataCopying(value=value, cells_used=int(w.size), cell_z=tuple(zs))


def _finish(p: Passes) -> DataCopying:
    return c_t(_numpy(p.real_x), _numpy(p.options.real_test), _numpy(p.fake_x), p.options.ct_seed)


register(Metric("ct", _finish, default=False, order=87,
                params=lambda o: {"ct_seed": o.ct_seed, "n_real_test": None if o.real_test is None
                                  else int(o.real_test.shape[0])},
                doc="C_T data-copying statistic (needs real_test)"))
