"""Reference implementation of P-precision and P-recall, for tests/test_ppr.py.

Copied from https://github.com/kdst-team/Probablistic_precision_recall, file metric/pp_pr.py (the
code of Park & Kim, "Probabilistic Precision and Recall Towards Reliable Evaluation of Generative
Models", ICCV 2023): the functions ``get_pairwise_distances``, ``get_average_of_knn_distance``,
``get_scoring_rule_psr`` and ``compute_pprecision_precall``, CPU branches only (the ``gpu`` branches,
the ``gpu`` arguments and the print are removed; nothing else changed). That repository is licensed
under the MIT License, Copyright (c) 2025 KDST:

    Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
    associated documentation files (the "Software"), to deal in the Software without restriction,
    including without limitation the rights to use, copy, modify, merge, publish, distribute,
    sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions: The above copyright notice and this
    permission notice shall be included in all copies or substantial portions of the Software.
    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
    NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
    NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
    DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
    OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

Not part of the toolkit: a test oracle only.
"""
import numpy as np
from sklearn.metrics import pairwise_distances


def get_pairwise_distances(real, fake, jobs = 8):
    pairwise_distance_between_real = pairwise_distances(real, real, n_jobs = jobs, metric = 'l2')
    pairwise_distance_between_fake = pairwise_distances(fake, fake, n_jobs = jobs, metric = 'l2')
    pairwise_distance_between_real_fake = pairwise_distances(real, fake, n_jobs = jobs, metric = 'l2')
    pairwise_distance_between_fake_real = np.transpose(pairwise_distance_between_real_fake)

    return (pairwise_distance_between_real,
           pairwise_distance_between_fake,
           pairwise_distance_between_real_fake,
           pairwise_distance_between_fake_real)

def get_average_of_knn_distance(x, kth):
    indices = np.argpartition(x, kth + 1, axis = -1)[..., :kth+1]
    k_smallests = np.take_along_axis(x, indices, axis = -1)
    kth_values = k_smallests.max(axis = -1)
    k_nearest = np.mean(kth_values)

    return k_nearest

def get_scoring_rule_psr(distance, k_nearest, a):
    out_of_knearest = distance >= a * k_nearest
    f = 1 - distance / (a * k_nearest)
    f[out_of_knearest] = 0.0
    psr = np.prod(1.0 - f, axis = 0)
    return psr

def compute_pprecision_precall(real, fake, a = 1.2, kth = 4):
    pairwise_distance_real, pairwise_distance_fake, distance, distance_t = get_pairwise_distances(real, fake)

    # Calculate maximum distance for f
    k_nearest_x = get_average_of_knn_distance(pairwise_distance_real, kth)
    k_nearest_y = get_average_of_knn_distance(pairwise_distance_fake, kth)

    # Derive PSR scoring rule
    PSR_X = get_scoring_rule_psr(distance, k_nearest_x, a)
    PSR_Y = get_scoring_rule_psr(distance_t, k_nearest_y, a)

    # Calculate P-precision and P-recall
    p_precision = np.mean(1.0 - PSR_X)
    p_recall = np.mean(1.0 - PSR_Y)

    return p_precision, p_recall
