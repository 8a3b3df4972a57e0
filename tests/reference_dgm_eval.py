"""dgm-eval's AuthPct, C_T and precision/recall/density/coverage, copied for the tests
(github.com/layer6ai-labs/dgm-eval at commit 74c79f7527fbf38fdccfbac51f25d759bc02ab07):
dgm_eval/metrics/authpct.py, dgm_eval/metrics/ct.py and dgm_eval/metrics/prdc.py, unchanged below the
first marker except that the files are concatenated and their imports merged; below the last marker,
the lines of ``compute_scores`` in dgm_eval/__main__.py that draw its subsets and call ``compute_prdc``
(wrapped in a function, ``args`` replaced by its parameters).

MIT License, Copyright (c) 2023 Layer 6 AI: Permission is hereby granted, free of charge, to any
person obtaining a copy of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights to use, copy, modify,
merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to
whom the Software is furnished to do so, subject to the following conditions: The above copyright
notice and this permission notice shall be included in all copies or substantial portions of the
Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.

The tests seed its unseeded PCA and KMeans by replacing the module names ``PCA`` and ``KMeans``.
"""
# ---- dgm_eval/metrics/authpct.py ----
#https://github.com/marcojira/fls/blob/main/metrics/AuthPct.py
import torch  # noqa: E402

def compute_authpct(train_feat, gen_feat):
    with torch.no_grad():
        train_feat = torch.tensor(train_feat, dtype=torch.float32)
        gen_feat = torch.tensor(gen_feat, dtype=torch.float32)
        real_dists = torch.cdist(train_feat, train_feat)

        # Hacky way to get it to ignore distance to self in nearest neighbor calculation
        real_dists.fill_diagonal_(float("inf"))
        gen_dists = torch.cdist(train_feat, gen_feat)

        real_min_dists = real_dists.min(axis=0)
        gen_min_dists = gen_dists.min(dim=0)

        # For every synthetic point, find its closest real point, d1
        # Then, for that real point, find its closest real point(not itself), d2
        # if d2<d1, then its authentic
        authen = real_min_dists.values[gen_min_dists.indices] < gen_min_dists.values
        authpct = (100 * torch.sum(authen) / len(authen)).item()
    return authpct

# ---- dgm_eval/metrics/ct.py ----
# Taken from https://github.com/casey-meehan/data-copying
import numpy as np
from sklearn.neighbors import NearestNeighbors as NN
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
import sys

def preprcoess_ct(train_feat, test_feat, gen_feat):
    if train_feat.shape[1] > 64:
        print(f'running pca for CT score to take first 64 components out of {train_feat.shape[1]}', file=sys.stderr)
        pca_xf = PCA(n_components=64).fit(train_feat)

        train_feat = pca_xf.transform(train_feat)
        test_feat = pca_xf.transform(test_feat)
        gen_feat = pca_xf.transform(gen_feat)

        del pca_xf
    return train_feat, test_feat, gen_feat

def Zu(Pn, Qm, T):
    """Extracts distances to training nearest neighbor
    L(P_n), L(Q_m), and runs Z-scored Mann Whitney U-test.
    For the global test, this is used on the samples within each cell.
    Inputs:
        Pn: (n X d) np array representing test sample of
            length n (with dimension d)
        Qm: (m X d) np array representing generated sample of
            length n (with dimension d)
        T: (l X d) np array representing training sample of
            length l (with dimension d)
    Ouptuts:
        Zu: Z-scored U value. A large value >>0 indicates
            underfitting by Qm. A small value <<0 indicates.
    """
    m = Qm.shape[0]
    n = Pn.shape[0]

    # fit NN model to training sample to get distances to test and generated samples
    T_NN = NN(n_neighbors=1).fit(T)
    LQm, _ = T_NN.kneighbors(X=Qm, n_neighbors=1)
    LPn, _ = T_NN.kneighbors(X=Pn, n_neighbors=1)

    # Get Mann-Whitney U score and manually Z-score it using the conditions of null hypothesis H_0
    u, _ = mannwhitneyu(LQm, LPn, alternative="less")
    mean = (n * m / 2) - 0.5  # 0.5 is continuity correction
    std = np.sqrt(n * m * (n + m + 1) / 12)
    Z_u = (u - mean) / std
    return Z_u


def Zu_cells(Pn, Pn_cells, Qm, Qm_cells, T, T_cells):
    """Collects the Zu statistic in each of k cells.
    There should be >0 test (Pn) and train (T) samples in each of the cells.
    Inputs:
        Pn: (n X d) np array representing test sample of length
            n (with dimension d)
        Pn_cells: (1 X n) np array of integers indicating which
            of the k cells each sample belongs to
        Qm: (m X d) np array representing generated sample of
            length n (with dimension d)
        Qm_cells: (1 X m) np array of integers indicating which of the
            k cells each sample belongs to
        T: (l X d) np array representing training sample of
            length l (with dimension d)
        T_cells: (1 X l) np array of integers indicating which of the
            k cells each sample belongs to
    Outputs:
        Zus: length k np array, where entry i indicates the Zu score for cell i
    """
    # assume cells are labeled 0 to k-1
    k = len(np.unique(Pn_cells))
    Zu_cells = np.zeros(k)

    # get samples in each cell and collect Zu
    for i in range(k):
        Pn_cell_i = Pn[Pn_cells == i]
        Qm_cell_i = Qm[Qm_cells == i]
        T_cell_i = T[T_cells == i]
        # check that the cell has test and training samples present
        if len(Pn_cell_i) * len(T_cell_i) == 0:
            raise ValueError(
                "Cell {:n} lacks test samples and/or training samples. Consider reducing the number of cells in partition.".format(
                    i
                )
            )

        # if there are no generated samples present, add a 0 for Zu. This cell will be excluded in \Pi_\tau
        if len(Qm_cell_i) > 0:
            Zu_cells[i] = Zu(Pn_cell_i, Qm_cell_i, T_cell_i)
        else:
            Zu_cells[i] = 0
            print("cell {:n} unrepresented by Qm".format(i), file=sys.stderr)

    return Zu_cells


def C_T(Pn, Pn_cells, Qm, Qm_cells, T, T_cells, tau):
    """Runs C_T test given samples and their respective cell labels.
    The C_T statistic is a weighted average of the in-cell Zu statistics, weighted
    by the share of test samples (Pn) in each cell. Cells with an insufficient number
    of generated samples (Qm) are not included in the statistic.
    Inputs:
        Pn: (n X d) np array representing test sample of length
            n (with dimension d)
        Pn_cells: (1 X n) np array of integers indicating which
            of the k cells each sample belongs to
        Qm: (m X d) np array representing generated sample of
            length n (with dimension d)
        Qm_cells: (1 X m) np array of integers indicating which of the
            k cells each sample belongs to
        T: (l X d) np array representing training sample of
            length l (with dimension d)
        T_cells: (1 X l) np array of integers indicating which of the
            k cells each sample belongs to
        tau: (scalar between 0 and 1) fraction of Qm samples that a
            cell needs to be included in C_T statistic.
    Outputs:
        C_T: The C_T statistic for the three samples Pn, Qm, T
    """

    m = Qm.shape[0]
    n = Pn.shape[0]
    k = np.max(np.unique(T_cells)) + 1  # number of cells

    # First, determine which of the cells have sufficient generated samples (Qm(pi) > tau)
    labels, cts = np.unique(Qm_cells, return_counts=True)
    Qm_cts = np.zeros(k)
    Qm_cts[labels.astype(int)] = cts  # put in order of cell label
    Qm_of_pi = Qm_cts / m
    Pi_tau = (
        Qm_of_pi > tau
    )  # binary array selecting which cells have sufficient samples

    # Get the fraction of test samples in each cell Pn(pi)
    labels, cts = np.unique(Pn_cells, return_counts=True)
    Pn_cts = np.zeros(k)
    Pn_cts[labels.astype(int)] = cts  # put in order of cell label
    Pn_of_pi = Pn_cts / n

    # Now get the in-cell Zu scores
    Zu_scores = Zu_cells(Pn, Pn_cells, Qm, Qm_cells, T, T_cells)

    # compute C_T:
    C_T = Pn_of_pi[Pi_tau].dot(Zu_scores[Pi_tau]) / np.sum(Pn_of_pi[Pi_tau])

    return C_T

def compute_CTscore(train_feat, test_feat, gen_feat):
    train_feat, test_feat, gen_feat = preprcoess_ct(train_feat, test_feat, gen_feat)
    print('running kmeans for CT score', file=sys.stderr)
    km_clf = KMeans(n_clusters=3, n_init=10).fit(train_feat)

    T_labels = km_clf.predict(train_feat)
    Pn_labels = km_clf.predict(test_feat)
    Qm_labels = km_clf.predict(gen_feat)

    print('calculating CT score', file=sys.stderr)
    C_T_score = C_T(
        test_feat,
        Pn_labels,
        gen_feat,
        Qm_labels,
        train_feat,
        T_labels,
        tau=20 / len(gen_feat),
    )

    return C_T_score


def compute_CTscore_mem(train_feat, test_feat, gen_feat):
    # Swap the training and generated sets
    return compute_CTscore(gen_feat, test_feat, train_feat)


def compute_CTscore_mode(train_feat, test_feat, gen_feat):
    # Split the test set and use half as a training set
    test_feat1, test_feat2 = np.array_split(test_feat, 2)
    return compute_CTscore(test_feat1, test_feat2, gen_feat)


# ---- dgm_eval/metrics/prdc.py ----
"""
prdc from https://github.com/clovaai/generative-evaluation-prdc 
Copyright (c) 2020-present NAVER Corp.
MIT license
Modified to also report realism score from https://arxiv.org/abs/1904.06991
"""
import sklearn.metrics  # noqa: E402 (numpy and sys: imported above)

__all__ = ['compute_prdc']


def compute_pairwise_distance(data_x, data_y=None):
    """
    Args:
        data_x: numpy.ndarray([N, feature_dim], dtype=np.float32)
        data_y: numpy.ndarray([N, feature_dim], dtype=np.float32)
    Returns:
        numpy.ndarray([N, N], dtype=np.float32) of pairwise distances.
    """
    if data_y is None:
        data_y = data_x
    dists = sklearn.metrics.pairwise_distances(
        data_x, data_y, metric='euclidean', n_jobs=8)
    return dists


def get_kth_value(unsorted, k, axis=-1):
    """
    Args:
        unsorted: numpy.ndarray of any dimensionality.
        k: int
    Returns:
        kth values along the designated axis.
    """
    indices = np.argpartition(unsorted, k, axis=axis)[..., :k]
    k_smallests = np.take_along_axis(unsorted, indices, axis=axis)
    kth_values = k_smallests.max(axis=axis)
    return kth_values


def compute_nearest_neighbour_distances(input_features, nearest_k):
    """
    Args:
        input_features: numpy.ndarray([N, feature_dim], dtype=np.float32)
        nearest_k: int
    Returns:
        Distances to kth nearest neighbours.
    """
    distances = compute_pairwise_distance(input_features)
    radii = get_kth_value(distances, k=nearest_k + 1, axis=-1)
    return radii


def compute_prdc(real_features, fake_features, nearest_k, realism=False):
    """
    Computes precision, recall, density, and coverage given two manifolds.

    Args:
        real_features: numpy.ndarray([N, feature_dim], dtype=np.float32)
        fake_features: numpy.ndarray([N, feature_dim], dtype=np.float32)
        nearest_k: int.
    Returns:
        dict of precision, recall, density, and coverage.
    """

    print('Num real: {} Num fake: {}'
          .format(real_features.shape[0], fake_features.shape[0]), file=sys.stderr)

    real_nearest_neighbour_distances = compute_nearest_neighbour_distances(
        real_features, nearest_k)
    fake_nearest_neighbour_distances = compute_nearest_neighbour_distances(
        fake_features, nearest_k)
    distance_real_fake = compute_pairwise_distance(
        real_features, fake_features)

    precision = (
            distance_real_fake <
            np.expand_dims(real_nearest_neighbour_distances, axis=1)
    ).any(axis=0).mean()

    recall = (
            distance_real_fake <
            np.expand_dims(fake_nearest_neighbour_distances, axis=0)
    ).any(axis=1).mean()

    density = (1. / float(nearest_k)) * (
            distance_real_fake <
            np.expand_dims(real_nearest_neighbour_distances, axis=1)
    ).sum(axis=0).mean()

    coverage = (
            distance_real_fake.min(axis=1) <
            real_nearest_neighbour_distances
    ).mean()

    d = dict(precision=precision, recall=recall,
                density=density, coverage=coverage)

    if realism:
        """
        Large errors, even if they are rare, would undermine the usefulness of the metric.
        We tackle this problem by discarding half of the hyperspheres with the largest radii.
        In other words, the maximum in Equation 3 is not taken over all φr ∈ Φr but only over 
        those φr whose associated hypersphere is smaller than the median.
        """
        mask = real_nearest_neighbour_distances < np.median(real_nearest_neighbour_distances)

        d['realism'] = (
                np.expand_dims(real_nearest_neighbour_distances[mask], axis=1)/distance_real_fake[mask]
        ).max(axis=0)

    return d


# ---- dgm_eval/__main__.py, compute_scores (the 'prdc' branch) ----
def compute_scores_prdc(reps, nearest_k=5, reduced_n=10000, metrics=("prdc",)):
    scores = {}
    if 'prdc' in metrics:
        print("Computing precision, recall, density, and coverage \n", file=sys.stderr)
        reduced_n = min(reduced_n, reps[0].shape[0], reps[1].shape[0])
        inds0 = np.random.choice(reps[0].shape[0], reduced_n, replace=False)

        inds1 = np.arange(reps[1].shape[0])
        if 'realism' not in metrics:
            # Realism is returned for each sample, so do not shuffle if this metric is desired.
            # Else filenames and realism scores will not align
            inds1 = np.random.choice(inds1, min(inds1.shape[0], reduced_n), replace=False)

        prdc_dict = compute_prdc(
            reps[0][inds0],
            reps[1][inds1],
            nearest_k=nearest_k,
            realism=True if 'realism' in metrics else False)
        scores = dict(scores, **prdc_dict)
    return scores
