"""dgm-eval's AuthPct, C_T and subset precision/recall/density/coverage, as procedures of our own.

The reference code (layer6ai-labs/dgm-eval at 74c79f7, MIT: ``dgm_eval/metrics/authpct.py``,
``dgm_eval/metrics/ct.py`` and the ``prdc`` branch of ``compute_scores`` in ``dgm_eval/__main__.py``)
is not copied here: the three functions below follow its steps in code of our own, with the same
arithmetic wherever it decides a number (which distances, in which precision, which comparison):

* :func:`authpct`: float32 ``torch.cdist`` of the reals to themselves (the diagonal, a real's own
  distance, excluded by index) and of the reals to the fakes, in that orientation; each fake's nearest
  real; the fake is authentic when that real's nearest other real is strictly closer (``<``) than the
  fake; the percentage in float32 (``100 * count / M``, as torch divides an integer tensor).
* :func:`ct_score`: where dim > 64, sklearn PCA to 64 components fitted on the training set; sklearn
  k-means, 3 cells, ``n_init=10``, fitted on the training set, every set assigned by ``predict``; in
  each cell the sklearn 1-NN distances of the cell's test samples and fakes to the cell's training
  samples, the Mann-Whitney U of the fakes (their rank sum in the pooled sample, ties averaged, less
  m (m + 1) / 2: what scipy's ``mannwhitneyu`` returns), Z-scored as
  ``(U - (n m / 2 - 0.5)) / sqrt(n m (n + m + 1) / 12)``; the cells holding more than ``tau = 20 / M``
  of the fakes averaged, weighted by their share of the test samples. A cell without test or training
  samples raises ValueError (dgm-eval: a ValueError or an IndexError, depending on the cell).
* :func:`subset_prdc`: ``min(reduced_n, N, M)`` reals and as many fakes drawn without replacement by
  ``np.random.choice`` from numpy's global generator, reals first, then prdc's arithmetic on those
  rows (sklearn ``pairwise_distances``, radius: the (k+1)-th smallest distance of a row that holds the
  self distance, ``<``): dgm-eval's ``metrics/prdc.py`` computes what the registry package prdc 0.2
  computes (it only prints elsewhere and can add a realism score, not used here), so that package is
  called.

The seeding this project adds: dgm-eval leaves PCA, k-means and numpy's global generator unseeded;
here PCA and k-means take ``random_state=seed`` (the toolkit's ``ct_seed``) and the global generator is
seeded by ``np.random.seed(seed)`` before the draws (the toolkit's ``protocol_seed``), its previous
state restored afterwards.

Its equality with dgm-eval's code itself was checked when this module replaced a copy of that code,
both run on the same inputs: the same values to the bit (largest difference 0.0) for AuthPct on 30
pairs (random, duplicates, integer grids, a common offset, the hard cases of hubness_pr.engine.hard_cases;
sizes 2 x 1 to 1,200 x 900 and 300 x 1,000, dim 1 to 300), for C_T on 27 triples (dim 2 to 200, with
and without PCA, copying and not, integer grids, duplicates, unequal sizes, cells left out by tau, no
cell kept, seeds 0 to 3), and for precision, recall, density and coverage on 45 draws, with the same
drawn indices (random, integer grids, duplicates, 300-d, unequal sizes; reduced_n 100 to 333 below the
sets' sizes, the default 10,000 above them and on sets of 10,100 to 10,500 rows; k 3 and 5; seeds 0,
1, 2, 7, 8, 42 and 13,579)."""
import contextlib
import io

import numpy as np
import torch

CELLS = 3          # k-means cells
COMPONENTS = 64    # PCA components, applied where the features have more dimensions
MIN_FAKES = 20     # tau = MIN_FAKES / M
SUBSET = 10000     # dgm-eval's --reduced_n default


def authpct(real, fake) -> float:
    """Percentage of fakes whose nearest real has its own nearest other real strictly closer than the
    fake is (float32 distances of ``torch.cdist``, reals as rows)."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    with torch.no_grad():
        within = torch.cdist(r, r)
        within.fill_diagonal_(float("inf"))   # the self pair does not count
        gap_of_real = within.min(dim=0).values   # column j: real j's nearest other real
        across = torch.cdist(r, f)            # (N, M)
        d_fake, nearest = across.min(dim=0)
        count = int((gap_of_real[nearest] < d_fake).sum())
    return float(np.float32(100 * count) / np.float32(f.shape[0]))


def _z_score(test, fake, train) -> float:
    """One cell's Z-scored Mann-Whitney U of the fakes' against the test samples' distances to the
    cell's nearest training sample."""
    from scipy.stats import rankdata
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=1).fit(train)
    to_fake = index.kneighbors(X=fake, n_neighbors=1)[0][:, 0]
    to_test = index.kneighbors(X=test, n_neighbors=1)[0][:, 0]
    m, n = len(to_fake), len(to_test)
    ranks = rankdata(np.concatenate([to_fake, to_test]))
    u = ranks[:m].sum() - m * (m + 1) / 2
    centre = n * m / 2 - 0.5
    spread = np.sqrt(n * m * (n + m + 1) / 12)
    return (u - centre) / spread


def ct_score(train, test, fake, seed: int = 0) -> float:
    """C_T of ``fake`` against the training set ``train`` with the held-out ``test`` set, PCA and k-means
    seeded by ``seed``."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    sets = [train, test, fake]
    if train.shape[1] > COMPONENTS:
        projection = PCA(n_components=COMPONENTS, random_state=seed).fit(train)
        sets = [projection.transform(x) for x in sets]
    cells = KMeans(n_clusters=CELLS, n_init=10, random_state=seed).fit(sets[0])
    labels = [cells.predict(x) for x in sets]
    (t, p, q), (t_cell, p_cell, q_cell) = sets, labels
    n, m = len(p), len(q)
    test_share = np.bincount(p_cell, minlength=CELLS) / n
    fake_share = np.bincount(q_cell, minlength=CELLS) / m
    for c in range(CELLS):
        if not (np.any(p_cell == c) and np.any(t_cell == c)):
            raise ValueError(f"cell {c} holds no test or no training sample")
    kept = [c for c in range(CELLS) if fake_share[c] > MIN_FAKES / m]
    if not kept:
        return float("nan")
    z = np.array([_z_score(p[p_cell == c], q[q_cell == c], t[t_cell == c]) for c in kept])
    weight = test_share[kept]
    return float(weight.dot(z) / np.sum(weight))


def subset_rows(n_real: int, n_fake: int, seed: int, reduced_n: int = SUBSET):
    """(real rows, fake rows): ``min(reduced_n, n_real, n_fake)`` of each, without replacement, from
    numpy's global generator seeded by ``seed``, reals first (``choice`` of ``n`` and of ``arange(n)``
    draw the same permutation); the generator's state is put back afterwards."""
    size = min(reduced_n, n_real, n_fake)
    before = np.random.get_state()
    try:
        np.random.seed(seed)
        real_rows = np.random.choice(n_real, size, replace=False)
        fake_rows = np.random.choice(n_fake, size, replace=False)
    finally:
        np.random.set_state(before)
    return real_rows, fake_rows


def subset_prdc(real, fake, seed: int, nearest_k: int = 5, reduced_n: int = SUBSET) -> dict:
    """dgm-eval's precision, recall, density and coverage (floats) on the seeded subsets."""
    from prdc import compute_prdc

    real_rows, fake_rows = subset_rows(real.shape[0], fake.shape[0], seed, reduced_n)
    with contextlib.redirect_stdout(io.StringIO()):   # prdc prints the set sizes
        values = compute_prdc(real[real_rows], fake[fake_rows], nearest_k=nearest_k)
    return {key: float(value) for key, value in values.items()}
