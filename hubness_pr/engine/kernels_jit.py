"""The jitted code of :mod:`hubness_pr.engine.kernels` (numba), imported on first use so that a run that
needs no fused kernel (a GPU run, a tiny set) never imports numba. See hubness_pr/engine/kernels.py."""
import numba
import numpy as np

from hubness_pr.engine.reductions import (COL_OP, COL_OUT, COL_SIDE, COL_SLOT, COL_STRICT, COL_THR_SIDE, OP_ANY, OP_ARGMAX,
                                          OP_LOGSUM, OP_MIN, OP_SUM, SIDE_REAL)


def _jit(fn):
    """Compile in nopython mode without the GIL; cache on disk where numba finds a writable place
    (beside this file, else the user's cache folder), else compile in each process."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy")(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, error_model="numpy")(fn)

@_jit
def _sq(a, b, t):
    d = np.float64(a[t]) - np.float64(b[t])
    return d * d

@_jit
def _exact_pair(a, b, buf):
    """sum((a - b)**2) in float64, added as a fixed binary tree in ``buf`` (float64, the
    power-of-two length p >= len(a)): the bits of :func:`hubness_pr.engine.distances.tree_sum`.
    The tree's first levels are formed as the squares are (two levels; three where len(a) == p),
    without writing the squares out: the same additions in the same order (a padded square is 0,
    and x + 0 is x), fewer passes over ``buf``."""
    n = a.shape[0]
    p = buf.shape[0]
    if p >= 8 and n == p:  # three levels: t, t + 4e, t + 2e, t + 6e | t + e, t + 5e, t + 3e, t + 7e
        e = p // 8
        for t in range(e):
            s0 = (_sq(a, b, t) + _sq(a, b, t + 4 * e)) + (_sq(a, b, t + 2 * e) + _sq(a, b, t + 6 * e))
            s1 = (_sq(a, b, t + e) + _sq(a, b, t + 5 * e)) + (_sq(a, b, t + 3 * e) + _sq(a, b, t + 7 * e))
            buf[t] = s0 + s1
        h = e // 2
    elif p >= 4:  # two levels; p / 2 < n <= p, so t, t + q < n and the upper quarters may be padding
        q = p // 4
        m2 = min(q, n - 2 * q)
        m3 = max(0, min(q, n - 3 * q))
        for t in range(m3):
            buf[t] = (_sq(a, b, t) + _sq(a, b, t + 2 * q)) + (_sq(a, b, t + q) + _sq(a, b, t + 3 * q))
        for t in range(m3, m2):
            buf[t] = (_sq(a, b, t) + _sq(a, b, t + 2 * q)) + _sq(a, b, t + q)
        for t in range(m2, q):
            buf[t] = _sq(a, b, t) + _sq(a, b, t + q)
        h = q // 2
    else:
        for t in range(n):
            buf[t] = _sq(a, b, t)
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
def _cross_kernel(g, xs, ids, norms, thr_r, thr_c, table, bands, far, scal, span, out_r, out_c):
    """Rows span[0]..span[1] of one real x fake tile: every reduction of the packed ``table``
    (:func:`hubness_pr.engine.reductions.pack`: op, result side, threshold side, threshold slot, strict,
    output slot) for each pair.

    ``g``: the float32 Gram tile; ``xs = (xa, xb)`` the original rows, ``ids = (ri, cj, ra, cb)``:
    the tile's samples (indices into the full sets) and their rows ``xa[ra[i]]``, ``xb[cb[j]]``;
    ``norms = (na, nb)`` float32 squared screen norms; ``thr_r`` (p x row slots) and ``thr_c``
    (column slots x q): float64 thresholds in frame units; ``bands = (row slots, column slots,
    inside row slots, inside column slots)``: the thresholds whose screening band re-measures a pair,
    and those inside which (plus the band) every pair is re-measured (a ``logsum`` value); ``far = (row_far, col_far)``: float32 bounds above every
    decisive threshold's band (a pair beyond both decides nothing); ``scal = (eps, abs_tol,
    sq_scale)``; ``span = (r0, r1, same_set)`` (same set: rows and columns are one set, ``cj``
    contiguous, each sample's pair with itself skipped). Outputs (float64): ``out_r`` (row outputs x
    p; this thread's rows only), ``out_c`` (column outputs x q; this thread's own copy); an argmax
    (realism) takes two column outputs: the ratio and the real's index. Realism's ratios are
    ``rt / float64(screen)``, or ``rt / exact`` for a re-measured pair, the bits of the torch route.
    Returns the number of pairs re-measured exactly."""
    xa, xb = xs
    ri, cj, ra, cb = ids
    na, nb = norms
    band_r, band_c, in_r, in_c = bands
    row_far, col_far = far
    eps, abs_tol, sq_scale = scal[0], scal[1], scal[2]
    r0, r1, same_set = span[0], span[1], span[2]
    q = g.shape[1]
    n_entries = table.shape[0]
    rt_slot = -1  # the argmax entry (realism) is also served on the fast path
    rt_out = -1
    for t in range(n_entries):
        if table[t, COL_OP] == OP_ARGMAX:
            rt_slot = table[t, COL_SLOT]
            rt_out = table[t, COL_OUT]
    use_rt = rt_slot >= 0
    refined = 0
    buf = np.empty(_tree_length(xa.shape[1]), dtype=np.float64)
    for i in range(r0, r1):
        nai = np.float64(na[i])
        rt = thr_r[i, rt_slot] if use_rt else 0.0
        far_i = row_far[i]
        jself = ri[i] - cj[0] if same_set != 0 else -1
        for j in range(q):
            if j == jself:
                continue
            d = _screen(g, na, nb, i, j)
            if d > far_i and d > col_far[j]:
                # the common case: no threshold decides anything; d > 0. Realism: a multiplication
                # skips the pairs that cannot win (the factor covers the rounding of both sides)
                if use_rt:
                    d64 = np.float64(d)
                    best = out_c[rt_out, j]
                    if rt > best * d64 * 0.999:
                        ratio = rt / d64
                        if ratio > best:
                            out_c[rt_out, j] = ratio
                            out_c[rt_out + 1, j] = ri[i]
                continue
            e = np.float64(d)
            tol = eps * (nai + np.float64(nb[j])) + abs_tol
            near = e <= tol
            for s in band_r:
                if abs(e - thr_r[i, s]) <= tol:
                    near = True
            for s in band_c:
                if abs(e - thr_c[s, j]) <= tol:
                    near = True
            for s in in_r:  # a logsum value reads the exact distance of every pair inside
                if e <= thr_r[i, s] + tol:
                    near = True
            for s in in_c:
                if e <= thr_c[s, j] + tol:
                    near = True
            if near:
                e = _exact_pair(xa[ra[i]], xb[cb[j]], buf) * sq_scale
                refined += 1
            for t in range(n_entries):
                op = table[t, COL_OP]
                thr = thr_r[i, table[t, COL_SLOT]] if table[t, COL_THR_SIDE] == SIDE_REAL else thr_c[table[t, COL_SLOT], j]
                o = table[t, COL_OUT]
                if op == OP_ARGMAX:
                    if e > 0.0:
                        ratio = thr / e
                    elif thr > 0.0:
                        ratio = np.inf
                    else:
                        ratio = 0.0  # 0/0: a pruned ball at distance 0
                    if ratio > out_c[o, j]:
                        out_c[o, j] = ratio
                        out_c[o + 1, j] = ri[i]
                    continue
                if not (e < thr if table[t, COL_STRICT] != 0 else e <= thr):
                    continue
                if table[t, COL_SIDE] == SIDE_REAL:
                    _update(out_r, o, i, op, thr, e)
                else:
                    _update(out_c, o, j, op, thr, e)
    return refined

@_jit
def _update(out, o, at, op, thr, e):
    """One pair inside a ball: ``any`` sets, ``sum`` counts, ``min`` keeps the smaller threshold,
    ``logsum`` adds ``0.5 log(e / thr)`` (``e``: the pair's exact squared distance, re-measured)."""
    if op == OP_ANY:
        out[o, at] = 1.0
    elif op == OP_SUM:
        out[o, at] += 1.0
    elif op == OP_MIN:
        if thr < out[o, at]:
            out[o, at] = thr
    elif op == OP_LOGSUM:
        out[o, at] += 0.5 * np.log(e / thr)

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

def _jit_reassoc(fn):
    """:func:`_jit` allowing the reassociation of float additions, for a sum LLVM may then vectorise:
    its order is fixed by the compiled code (the same on every call on one machine), not by threads."""
    try:
        return numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc"})(fn)
    except RuntimeError:  # no cache locator (see _jit)
        return numba.njit(nogil=True, error_model="numpy", fastmath={"reassoc"})(fn)

@_jit_reassoc
def _kernel_sums_kernel(g, ua, ub, na, nb, inv_scale, inv_dim, neg_inv_2s2, kind, diag, width,
                        colsum, colsq, rowpart, start, stop):
    """Column blocks of ``width`` whose first column lies in [start, stop) of one Gram tile: each
    column's sum and sum of squares of the kernel values over the tile's rows, and each row's sum over
    the block (``rowpart[i, block]``), the pair ``j == i + diag`` (a sample with itself) left out.

    Each pair's kernel value is formed in float64 from the float32 screen product ``g[i, j]`` (frame
    units): ``kind`` 0, the cubic polynomial of ``x.y = g / scale + ua[i] + ub[j]``; 1, the Gaussian of
    ``(|a|^2 + |b|^2 - 2 g) / scale`` (at least 0). The loops are branch-free and the block's column
    sums are local arrays, so LLVM vectorises them; a row's sum over a block is reassociated (the
    order is the compiled code's, the same on every call on one machine). The blocks are fixed by
    ``width`` alone, so the bits do not depend on how threads share them."""
    p, q = g.shape
    first = (start + width - 1) // width
    for b in range(first, (stop + width - 1) // width):
        j0 = b * width
        w = min(q, j0 + width) - j0
        cs = np.zeros(w)
        cq = np.zeros(w)
        ubb = ub[j0:j0 + w]
        nbb = nb[j0:j0 + w]
        for i in range(p):
            gi = g[i, j0:j0 + w]
            skip = i + diag - j0
            r = 0.0
            if kind == 0:
                ua_i = ua[i]
                for t in range(w):
                    v = (np.float64(gi[t]) * inv_scale + ua_i + ubb[t]) * inv_dim + 1.0
                    v = v * v * v if t != skip else 0.0
                    r += v
                    cs[t] += v
                    cq[t] += v * v
            else:
                na_i = np.float64(na[i])
                for t in range(w):
                    d2 = (na_i + np.float64(nbb[t]) - 2.0 * np.float64(gi[t])) * inv_scale
                    v = np.exp(max(d2, 0.0) * neg_inv_2s2) if t != skip else 0.0
                    r += v
                    cs[t] += v
                    cq[t] += v * v
            rowpart[i, b] = r
        colsum[j0:j0 + w] += cs
        colsq[j0:j0 + w] += cq

@_jit
def _top2_kernel(g, na, nb, t1, t2, r0, r1):
    """Rows r0..r1 of a real x fake Gram tile: each column's two smallest screened squared distances
    (of the multiset: a value twice fills both), merged into ``t1 <= t2`` (float32 (q,))."""
    for i in range(r0, r1):
        for j in range(g.shape[1]):  # branch-free (min/max: the same two values), so it vectorises
            d = _screen(g, na, nb, i, j)
            low = t1[j]
            t2[j] = min(t2[j], max(low, d))
            t1[j] = min(low, d)

@_jit
def _band_kernel(g, na, nb, bound, out_i, out_j, r0, r1):
    """Rows r0..r1 of a Gram tile: the entries whose screen is ``<= bound[j]``, row-major, written to
    ``out_i``, ``out_j`` while they have room; returns how many there are (room or not)."""
    n = 0
    cap = out_i.shape[0]
    q = g.shape[1]
    for i in range(r0, r1):
        hit = False
        for j in range(q):  # does the row hold any? branch-free, so it vectorises: most rows hold none
            hit |= _screen(g, na, nb, i, j) <= bound[j]
        if not hit:
            continue
        for j in range(q):
            if _screen(g, na, nb, i, j) <= bound[j]:
                if n < cap:
                    out_i[n] = i
                    out_j[n] = j
                n += 1
    return n
