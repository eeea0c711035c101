"""Sparse LDL^T factors of ``X^T X + lam I`` for SANSA (:mod:`aerec.models.sansa`).

Three steps, each in memory that follows the non-zeros kept, never ``items^2``:

1. :func:`gramian` builds the lower triangle of ``A = X^T X + lam I`` a block of item rows at a
   time, keeping in each row at most ``cap`` off-diagonal entries, those of largest
   ``|A_ij| / sqrt(A_ii A_jj)`` (the strongest co-occurrences whatever the items' popularity).
2. A fill-reducing order, then a factorisation ``P A P^T = L D L^T`` with ``L`` unit lower
   triangular: :func:`exact_ldl` (``qdldl``: approximate minimum degree order, exact factor) where
   a dense factor would fit, or :func:`incomplete_ldl` (most popular items first, a
   left-looking incomplete factor of the unit-diagonal scaled matrix keeping the ``cap`` largest
   entries of each column of ``L``),
   retried with a growing diagonal shift when a pivot breaks down.
3. :func:`prune_columns` keeps the largest entries of each column of a CSC matrix (the exact
   factor is cut to the model's density this way).

The kernels are compiled by numba (a pip wheel); the exact factor is qdldl's C code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from aerec.errors import TrainingDivergedError

log = logging.getLogger(__name__)

#: Entries of the sparse product one block of the Gram matrix may hold at once (about 16 bytes
#: each while scipy forms it).
GRAM_BLOCK_ENTRIES = 40_000_000


@dataclass
class Factor:
    """``P A P^T = (I + N) diag(d) (I + N)^T``: ``N`` strictly lower (CSC), ``perm`` = P's order.

    ``A`` at row/column ``perm[k]`` is at row/column ``k`` of the factorised matrix.
    """

    strict_lower: sp.csc_matrix
    d: np.ndarray
    perm: np.ndarray
    shift: float
    exact: bool
    compensated: bool = False


# -- the Gram matrix ----------------------------------------------------------------------------
def gramian(x: sp.csr_matrix, lam: float, cap: int | None) -> sp.csc_matrix:
    """The lower triangle (with the diagonal) of ``X^T X + lam I`` as CSC, float64.

    With ``cap``, each item keeps its diagonal and the ``cap`` off-diagonal entries of its row of
    largest normalised magnitude; an entry stays when either of its two items kept it, so the
    result is symmetric with at most ``2 cap`` off-diagonal entries per item on average. The
    product is formed a block of items at a time, so that at most about
    :data:`GRAM_BLOCK_ENTRIES` entries exist before pruning.
    """
    xc = sp.csc_matrix(x, dtype=np.float64)
    xt = xc.T.tocsr()  # items x users
    n = xc.shape[1]
    diag = np.asarray(xc.multiply(xc).sum(axis=0)).ravel()
    # Upper bound of each item row's product entries: the sum of its users' history lengths.
    user_len = np.diff(sp.csr_matrix(x).indptr).astype(np.float64)
    work = xt @ user_len
    scale = 1.0 / np.sqrt(np.maximum(diag, 1e-12))
    parts, start = [], 0
    while start < n:
        stop = start + 1
        total = work[start]
        while stop < n and total + work[stop] <= GRAM_BLOCK_ENTRIES:
            total += work[stop]
            stop += 1
        block = (xt[start:stop] @ xc).tocsr()  # rows start:stop of X^T X
        if cap is not None:
            block.sort_indices()
            indptr, indices, data = _strongest(block.indptr.astype(np.int64), block.indices,
                                               block.data, start, scale, int(cap))
            block = sp.csr_matrix((data, indices, indptr), shape=(stop - start, n))
        parts.append(block)
        start = stop
    kept = sp.vstack(parts, format="csr")
    del parts
    if cap is not None:
        kept = kept.maximum(kept.T)  # entries are co-occurrence counts: max is the union
    lower = sp.tril(kept, format="csc")
    del kept
    lower.sort_indices()
    lower.setdiag(lower.diagonal() + lam)
    return lower


@numba.njit(cache=True)
def _strongest(indptr, indices, data, offset, scale, cap):  # pragma: no cover - compiled
    """Keep, in each block row ``r`` (item ``offset + r``), the diagonal and the ``cap``
    off-diagonal entries of largest ``|a| * scale_i * scale_j``; columns stay sorted."""
    rows = len(indptr) - 1
    out_ptr = np.zeros(rows + 1, np.int64)
    out_idx = np.empty(len(indices), np.int32)
    out_val = np.empty(len(indices), np.float64)
    pos = 0
    for r in range(rows):
        item = offset + r
        lo, hi = indptr[r], indptr[r + 1]
        if hi - lo <= cap + 1:
            for t in range(lo, hi):
                out_idx[pos] = indices[t]
                out_val[pos] = data[t]
                pos += 1
        else:
            strength = np.empty(hi - lo)
            for t in range(lo, hi):
                c = indices[t]
                # the diagonal always stays: rank it first
                strength[t - lo] = np.inf if c == item else abs(data[t]) * scale[c] * scale[item]
            keep = np.sort(np.argsort(-strength, kind="mergesort")[:cap + 1])
            for t in keep:
                out_idx[pos] = indices[lo + t]
                out_val[pos] = data[lo + t]
                pos += 1
        out_ptr[r + 1] = pos
    return out_ptr, out_idx[:pos].copy(), out_val[:pos].copy()


# -- factorisations -------------------------------------------------------------------------------
def exact_ldl(lower: sp.csc_matrix) -> Factor:
    """The exact ``LDL^T`` of the symmetric matrix whose lower triangle is ``lower`` (qdldl, with
    its approximate-minimum-degree order)."""
    import qdldl

    upper = sp.csc_matrix(lower.T)  # qdldl reads the upper triangle
    try:
        solver = qdldl.Solver(upper, upper=True)
    except ValueError as exc:
        raise TrainingDivergedError(f"sansa: the exact LDL^T failed ({exc}); raise lam") from None
    strict, d, perm = solver.factors()
    strict = sp.csc_matrix(strict)
    strict.sort_indices()
    perm = np.asarray(perm, np.int64)
    if not np.all(d > 0):
        raise TrainingDivergedError("sansa: X^T X + lam I has a non-positive pivot; raise lam")
    return Factor(strict, np.asarray(d, np.float64), perm, 0.0, True)


def fill_order(lower: sp.csc_matrix) -> np.ndarray:
    """Items by decreasing diagonal (popularity), ties by index.

    Measured on ML-100K against reverse Cuthill-McKee and the natural order
    (``docs/linear.md``): with the most popular items first, the incomplete factor of the
    unit-diagonal matrix never broke down and the model ranked best (NDCG@100 0.398 against
    0.319 and 0.333 at 119 entries per column); the others needed diagonal shifts of 0.26-1.0.
    """
    return np.argsort(-lower.diagonal(), kind="stable").astype(np.int64)


def incomplete_ldl(lower: sp.csc_matrix, cap: int, shift_step: float = 1e-3,
                   shift_growth: float = 2.0, max_tries: int = 30,
                   order: np.ndarray | None = None) -> Factor:
    """An incomplete ``LDL^T`` keeping at most ``cap`` entries in each column of ``L``.

    Dropping entries can make a pivot non-positive. The first retry compensates each dropped
    entry ``e_ij`` on both diagonals (Jennings & Malik 1977: ``A + E`` stays positive definite,
    so it cannot break down in exact arithmetic); should rounding still break it, the
    factorisation restarts on ``A + shift diag(A)``, the shift starting at ``shift_step`` and
    multiplied by ``shift_growth`` at each breakdown (SANSA's own remedy, which on the
    synthetic 20,000-item data of ``docs/linear.md`` needed a shift of 2.0 and ranked 0.34 where
    the compensation ranked 0.36).
    """
    perm = fill_order(lower) if order is None else order
    full = (lower + sp.triu(lower.T, k=1)).tocsr()
    permuted = sp.tril(full[perm][:, perm], format="csc")
    del full
    permuted.sort_indices()
    n = permuted.shape[0]
    # Factorise the unit-diagonal S A S (S = diag(A)^-1/2), so that the entries kept are the
    # largest relative to their items' own weight, not the most popular items' entries; then
    # L = S^-1 L_s S and D = D_s / s^2 factorise A itself.
    s = 1.0 / np.sqrt(permuted.diagonal())
    scaled = sp.csc_matrix(sp.diags(s) @ permuted @ sp.diags(s))
    scaled.sort_indices()
    del permuted
    args = (scaled.indptr.astype(np.int64), scaled.indices.astype(np.int64),
            scaled.data.astype(np.float64), n, int(cap))
    shift, compensate = 0.0, False
    for _ in range(max_tries):
        indptr, indices, data, d, failed = _ildl(*args, shift, compensate)
        if failed < 0:
            strict = sp.csc_matrix((data, indices, indptr), shape=(n, n))
            strict = sp.csc_matrix(sp.diags(1.0 / s) @ strict @ sp.diags(s))
            return Factor(strict, d / (s * s), perm, shift, False, compensate)
        if not compensate:
            compensate = True
            log.info("sansa: pivot %d broke down; retrying with dropped entries compensated", failed)
            continue
        shift = shift_step if shift == 0.0 else shift * shift_growth
        log.info("sansa: pivot %d broke down; retrying with diagonal shift %.3g", failed, shift)
    raise TrainingDivergedError(f"sansa: the incomplete factorisation broke down {max_tries} times "
                                f"(last diagonal shift {shift:.3g}); raise lam or the density")


@numba.njit(cache=True)
def _ildl(indptr, indices, data, n, cap, shift, compensate):  # pragma: no cover - compiled
    """Left-looking incomplete LDL^T of a CSC lower triangle (diagonal first in each column).

    Column ``j`` of ``L`` is ``A[j:, j]`` minus ``L[j:, k] d_k L[j, k]`` over the earlier columns
    ``k`` with ``L[j, k] != 0``, found through linked lists (each finished column waits in the
    list of the next row it has an entry in). Only the ``cap`` largest entries are kept.
    Returns ``(indptr, indices, data, d, failed)``, ``failed`` the first broken pivot or -1.
    """
    lp = np.zeros(n + 1, np.int64)
    li = np.empty(n * cap if n * cap > 0 else 1, np.int32)
    lx = np.empty(n * cap if n * cap > 0 else 1, np.float64)
    d = np.empty(n)
    w = np.zeros(n)
    mark = np.full(n, -1, np.int64)
    pattern = np.empty(n, np.int64)
    head = np.full(n, -1, np.int64)
    link = np.full(n, -1, np.int64)
    nxt = np.zeros(n, np.int64)
    extra = np.zeros(n)
    pos = 0
    for j in range(n):
        cnt = 0
        diag = 0.0
        for t in range(indptr[j], indptr[j + 1]):
            i = indices[t]
            if i == j:
                diag = data[t]
            elif i > j:
                mark[i] = j
                pattern[cnt] = i
                cnt += 1
                w[i] = data[t]
        wj = diag * (1.0 + shift) + extra[j]
        k = head[j]
        while k != -1:
            k_next = link[k]
            p0 = nxt[k]
            f = lx[p0] * d[k]
            wj -= f * lx[p0]
            for t in range(p0 + 1, lp[k + 1]):
                i = li[t]
                if mark[i] != j:
                    mark[i] = j
                    pattern[cnt] = i
                    cnt += 1
                    w[i] = 0.0
                w[i] -= f * lx[t]
            p0 += 1
            if p0 < lp[k + 1]:
                nxt[k] = p0
                r = li[p0]
                link[k] = head[r]
                head[r] = k
            k = k_next
        if cnt > cap:
            strength = np.empty(cnt)
            for t in range(cnt):
                strength[t] = abs(w[pattern[t]])
            order = np.argsort(-strength, kind="mergesort")
            keep = np.sort(pattern[:cnt][order[:cap]])
            if compensate:
                # Jennings-Malik: a dropped entry e_ij moves |e_ij| onto both diagonals, so that
                # the matrix factorised stays positive definite (no breakdown, no global shift)
                for t in order[cap:]:
                    i = pattern[t]
                    extra[i] += abs(w[i])
                    wj += abs(w[i])
        else:
            keep = np.sort(pattern[:cnt])
        if not wj > 1e-10 * diag:
            return lp, li[:pos].copy(), lx[:pos].copy(), d, j
        d[j] = wj
        start = pos
        for i in keep:
            if w[i] != 0.0:
                li[pos] = i
                lx[pos] = w[i] / wj
                pos += 1
        for t in range(cnt):
            w[pattern[t]] = 0.0
        lp[j + 1] = pos
        if pos > start:
            nxt[j] = start
            r = li[start]
            link[j] = head[r]
            head[r] = j
    return lp, li[:pos].copy(), lx[:pos].copy(), d, -1


# -- pruning ----------------------------------------------------------------------------------
def prune_columns(m: sp.csc_matrix, cap: int) -> sp.csc_matrix:
    """``m`` with at most ``cap`` entries (the largest in magnitude) in each column."""
    m = sp.csc_matrix(m)
    m.sort_indices()
    counts = np.diff(m.indptr)
    if counts.size == 0 or counts.max() <= cap:
        return m
    indptr, indices, data = _prune(m.indptr.astype(np.int64), m.indices, m.data, int(cap))
    out = sp.csc_matrix((data, indices, indptr), shape=m.shape)
    return out


@numba.njit(cache=True)
def _prune(indptr, indices, data, cap):  # pragma: no cover - compiled
    cols = len(indptr) - 1
    out_ptr = np.zeros(cols + 1, np.int64)
    total = 0
    for c in range(cols):
        total += min(indptr[c + 1] - indptr[c], cap)
    out_idx = np.empty(total, indices.dtype)
    out_val = np.empty(total, data.dtype)
    pos = 0
    for c in range(cols):
        lo, hi = indptr[c], indptr[c + 1]
        if hi - lo <= cap:
            for t in range(lo, hi):
                out_idx[pos] = indices[t]
                out_val[pos] = data[t]
                pos += 1
        else:
            chosen = np.sort(np.argsort(-np.abs(data[lo:hi]), kind="mergesort")[:cap])
            for t in chosen:
                out_idx[pos] = indices[lo + t]
                out_val[pos] = data[lo + t]
                pos += 1
        out_ptr[c + 1] = pos
    return out_ptr, out_idx, out_val
