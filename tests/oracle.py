"""Brute-force float64 reference implementation of every metric, written from docs/definitions.md.

Full N x M matrices, plain numpy, no code shared with the toolkit: the independent oracle the tests
compare against. Only for small sets.
"""
import numpy as np


def sq_dists(a, b):
    """Squared distances (len(a), len(b)) in float64, one row of ``a`` at a time (small memory)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty((a.shape[0], b.shape[0]))
    for i in range(a.shape[0]):
        out[i] = ((a[i][None, :] - b) ** 2).sum(axis=1)
    return out


def knn(x, k):
    """Neighbour indices (n, k) sorted by (distance, index), self excluded by index; squared dists."""
    d = sq_dists(x, x)
    n = len(x)
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k))
    for i in range(n):
        others = np.array([j for j in range(n) if j != i])
        order = np.lexsort((others, d[i, others]))[:k]
        idx[i] = others[order]
        dist[i] = d[i, others[order]]
    return idx, dist


def sq_radii(x, k):
    return knn(x, k)[1][:, k - 1]


def k_occurrence(x, k):
    idx, _ = knn(x, k)
    return np.bincount(idx.ravel(), minlength=len(x))


def all_metrics(real, fake, k=3, dc_k=5, hubs_k=3):
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    d = sq_dists(real, fake)  # (N, M)
    r = sq_radii(real, k)
    s = sq_radii(fake, k)
    r_dc = sq_radii(real, dc_k)
    out = {}
    out["precision"] = np.mean((d <= r[:, None]).any(axis=0))
    out["recall"] = np.mean((d <= s[None, :]).any(axis=1))
    out["density"] = (d < r_dc[:, None]).sum() / (dc_k * len(fake))
    out["coverage"] = np.mean(d.min(axis=1) < r_dc)
    radii = np.sqrt(r)
    kept = np.where(radii <= np.median(radii), radii, 0.0)
    dist = np.sqrt(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = kept[:, None] / dist
    ratio[np.isnan(ratio)] = 0.0
    out["realism"] = ratio.max(axis=0)
    inside = dist < radii[:, None]
    rar = np.where(inside, radii[:, None], np.inf).min(axis=0)
    rar[np.isinf(rar)] = np.nan
    out["rarity"] = rar
    occ_r, occ_f = k_occurrence(real, k), k_occurrence(fake, k)
    hub_r, hub_f = occ_r >= hubs_k, occ_f >= hubs_k
    dh = d[np.ix_(hub_r, hub_f)]
    inside_r, inside_f = (dh <= r[hub_r][:, None]).any(axis=0), (dh <= s[hub_f][None, :]).any(axis=1)
    out["epr_precision"] = inside_r.mean() if inside_r.size else np.nan  # NaN: no hub to average over
    out["epr_recall"] = inside_f.mean() if inside_f.size else np.nan
    out["real_hubs"], out["fake_hubs"] = int(hub_r.sum()), int(hub_f.sum())
    out["occ_real"], out["occ_fake"] = occ_r, occ_f
    out["in_real"] = (d <= r[:, None]).any(axis=0)
    return out
