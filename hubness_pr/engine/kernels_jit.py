"""The jitted code of :mod:`hubness_pr.engine.kernels` (numba), imported on first use so that a run that
needs no fused kernel (a GPU run, a tiny set) never imports numba. See hubness_pr/engine/kernels.py."""
import numba
import numpy as np

from hubness_pr.engine.kernels import DC, FAKE_HUBS, PRECISION, RARITY, REAL_HUBS, REALISM, RECALL


def _jit(fn):
    """Compile in nopython mode without the GIL; cache on disk where numba finds a writable place
    (beside this file, else the user's cache folder), else compile in each process."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy")(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, error_model="numpy")(fn)

@_jit
def _exact_pair(a, b, buf):
    """sum((a - b)**2) in float64, added as a fixed binary tree in ``buf`` (float64, the
    power-of-two length >= len(a)): the bits of :func:`hubness_pr.engine.distances.tree_sum`."""
    n = a.shape[0]
    p = buf.shape[0]
    for t in range(n):
        d = np.float64(a[t]) - np.float64(b[t])
        buf[t] = d * d
    for t in range(n, p):
        buf[t] = 0.0
    h = p // 2
    while h >= 1:
        for t in range(h):
            buf[t] += buf[t + h]
        h //= 2
    return buf[0]

@_jit
def _exact_pairs_kernel(x, i, y, j, out, start, stop):
    buf = np.empty(_tree_length(x.shape[1]), dtype=np.float64)
    for t in range(start, stop):
        out[t] = _exact_pair(x[i[t]], y[j[t]], buf)

@_jit
def _tree_length(n):
    p = 1
    while p < n:
        p *= 2
    return p

@_jit
def _screen(g, na, nb, i, j):
    """The float32 screen of one pair, as the torch route forms it: (-2 g + |a|^2) + |b|^2, >= 0."""
    d = (np.float32(-2.0) * g[i, j] + na[i]) + nb[j]
    return d if d > np.float32(0.0) else np.float32(0.0)

@_jit
def _cross_kernel(g, xa, xb, ri, cj, ra, cb, na, nb, eps, abs_tol, sq_scale, flags, same_set, r_pr, r_dc, r_rt,
                  r_hub, s_pr, s_hub, row_far, col_far, r0, r1, in_fake, in_fhub, covered, in_real, in_rhub, rarity, dens,
                  realism, realism_index):
    """Rows r0..r1 of one real x fake tile; row outputs at [i], column outputs (this thread's own
    copies) at [j]. ``ri``/``cj`` are the tile's samples (indices into the full sets) and
    ``xa[ra[i]]``/``xb[cb[j]]`` their original rows (the full arrays with ``ra = ri``, or the tile's
    blocks); thresholds are float64 in frame units; realism ratios are float64:
    ``r_rt / float64(screen)``, or ``r_rt / exact`` for a re-measured pair, the same bits as the
    torch route's; ``row_far``/``col_far`` float32 bounds above every threshold's band. Returns
    the number of pairs re-measured exactly. ``same_set``: rows and columns are one set (``cj``
    contiguous) and each sample's pair with itself is skipped."""
    q = g.shape[1]
    use_r = (flags & (PRECISION | RARITY | REAL_HUBS)) != 0
    use_s = (flags & (RECALL | FAKE_HUBS)) != 0
    use_dc = (flags & DC) != 0
    use_rt = (flags & REALISM) != 0
    refined = 0
    buf = np.empty(_tree_length(xa.shape[1]), dtype=np.float64)
    for i in range(r0, r1):
        nai = np.float64(na[i])
        rp = r_pr[i] if use_r else -np.inf
        rd = r_dc[i] if use_dc else -np.inf
        rh = r_hub[i] if (flags & REAL_HUBS) != 0 else -np.inf
        rt = r_rt[i] if use_rt else 0.0
        far = row_far[i]
        jself = ri[i] - cj[0] if same_set else -1
        hit_s = False
        hit_sh = False
        cov = False
        for j in range(q):
            if j == jself:
                continue
            d = _screen(g, na, nb, i, j)
            if d > far and d > col_far[j]:
                # the common case: no threshold decides anything; d > 0. Realism: a multiplication
                # skips the pairs that cannot win (the factor covers the rounding of both sides)
                d64 = np.float64(d)
                if use_rt and rt > realism[j] * d64 * 0.999:
                    ratio = rt / d64
                    if ratio > realism[j]:
                        realism[j] = ratio
                        realism_index[j] = ri[i]
                continue
            e = np.float64(d)
            tol = eps * (nai + np.float64(nb[j])) + abs_tol
            if e <= tol or abs(e - rp) <= tol or abs(e - rd) <= tol or (use_s and abs(e - s_pr[j]) <= tol):
                e = _exact_pair(xa[ra[i]], xb[cb[j]], buf) * sq_scale
                refined += 1
            if e <= rp:
                if (flags & PRECISION) != 0:
                    in_real[j] = True
                if (flags & RARITY) != 0 and e < rp and rp < rarity[j]:
                    rarity[j] = rp
            if e <= rh:
                in_rhub[j] = True
            if use_s:
                if (flags & RECALL) != 0 and e <= s_pr[j]:
                    hit_s = True
                if (flags & FAKE_HUBS) != 0 and e <= s_hub[j]:
                    hit_sh = True
            if e < rd:
                dens[j] += 1
                cov = True
            if use_rt:
                if e > 0.0:
                    ratio = rt / e
                elif rt > 0.0:
                    ratio = np.inf
                else:
                    ratio = 0.0  # 0/0: a pruned ball at distance 0
                if ratio > realism[j]:
                    realism[j] = ratio
                    realism_index[j] = ri[i]
        if hit_s:
            in_fake[i] = True
        if hit_sh:
            in_fhub[i] = True
        if cov:
            covered[i] = True
    return refined

@_jit
def _worst(bd):
    w = 0
    for t in range(1, bd.shape[0]):
        if bd[t] > bd[w]:
            w = t
    return w

@_jit
def _knn_rows_kernel(g, nr, nc, row_offset, col_offset, best_d, best_i, r0, r1):
    """Row side of a within-set tile: candidates of samples row_offset + i, i in r0..r1."""
    for i in range(r0, r1):
        bd = best_d[row_offset + i]
        bi = best_i[row_offset + i]
        self_j = row_offset + i - col_offset  # self, by index (may lie outside the tile)
        w = _worst(bd)
        wv = bd[w]
        for j in range(g.shape[1]):
            d = _screen(g, nr, nc, i, j)
            if d < wv and j != self_j:
                bd[w] = d
                bi[w] = col_offset + j
                w = _worst(bd)
                wv = bd[w]

@_jit
def _knn_cols_kernel(g, nr, nc, row_offset, col_offset, best_d, best_i, c0, c1):
    """Column side of a tile: candidates of samples col_offset + j, j in c0..c1."""
    width = c1 - c0
    worst = np.empty(width, dtype=np.int64)
    worst_v = np.empty(width, dtype=np.float32)
    for j in range(c0, c1):
        w = _worst(best_d[col_offset + j])
        worst[j - c0] = w
        worst_v[j - c0] = best_d[col_offset + j, w]
    for i in range(g.shape[0]):
        for j in range(c0, c1):
            d = _screen(g, nr, nc, i, j)
            if d < worst_v[j - c0]:
                bd = best_d[col_offset + j]
                bd[worst[j - c0]] = d
                best_i[col_offset + j, worst[j - c0]] = row_offset + i
                w = _worst(bd)
                worst[j - c0] = w
                worst_v[j - c0] = bd[w]
