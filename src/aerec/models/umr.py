"""A sparse approximate inverse of a unit lower triangular matrix by residual minimisation (UMR).

SANSA (Spišák et al., RecSys 2023, section 3.3) approximates ``K = L^-1`` column by column: each
column ``k_j`` (unit diagonal, entries below it) minimises ``||L k_j - e_j||_2`` over sparse
vectors of at most ``cap`` entries. With ``L = I + N`` and ``K = I + M`` (``N``, ``M`` strictly
lower), the residual of column ``j`` is ``r_j = e_j - L k_j = -(n_j + m_j + N m_j)``; one
minimal-residual step moves ``m_j`` along ``p_j`` (the residual, cut to its largest entries) by
the step ``alpha_j = <r_j, L p_j> / ||L p_j||^2`` that minimises the new residual's norm, then cuts
``m_j`` back to ``cap`` entries. The start is the first Neumann term, ``M = -N`` cut to ``cap``.

Columns are independent, so they are processed in blocks with scipy's sparse products: memory is
the blocks' products beside ``N`` and ``M``, never ``items^2``.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from aerec.models.sparse_ldl import prune_columns

log = logging.getLogger(__name__)

#: Product entries one block of columns may create (``cap x`` the entries of ``N`` it reads).
BLOCK_ENTRIES = 30_000_000


def umr_inverse(strict_lower: sp.csc_matrix, cap: int, steps: int = 3) -> tuple[sp.csc_matrix, float]:
    """``M`` (strictly lower CSC, at most ``cap`` entries a column) with ``(I + N)^-1 ~ I + M``.

    Returns ``M`` and the relative residual ``||I - L K||_F / sqrt(n)`` after the last step.
    """
    n_mat = sp.csc_matrix(strict_lower, dtype=np.float64)
    n = n_mat.shape[0]
    m_mat = prune_columns(-n_mat, cap)
    residual = float("nan")
    for step in range(steps):
        m_mat, residual = _step(n_mat, m_mat, cap)
        log.info("sansa: UMR step %d of %d, residual %.4g", step + 1, steps, residual)
    if steps == 0:
        residual = _residual_norm(n_mat, m_mat)
    return m_mat, residual / max(np.sqrt(n), 1.0)


def _blocks(n_mat: sp.csc_matrix, m_mat: sp.csc_matrix, cap: int):
    """Column ranges whose products stay near :data:`BLOCK_ENTRIES` entries."""
    n = m_mat.shape[1]
    # entries of N @ M[:, j] are at most sum over m_j's rows of N's column counts
    per_col = np.diff(n_mat.indptr).astype(np.float64)
    cost = (sp.csc_matrix((per_col[m_mat.indices] + 1.0, m_mat.indices, m_mat.indptr),
                          shape=m_mat.shape).sum(axis=0).A1 + per_col + 1.0) * 2
    start = 0
    while start < n:
        stop, total = start + 1, cost[start]
        while stop < n and total + cost[stop] <= BLOCK_ENTRIES:
            total += cost[stop]
            stop += 1
        yield start, stop
        start = stop


def _step(n_mat: sp.csc_matrix, m_mat: sp.csc_matrix, cap: int) -> tuple[sp.csc_matrix, float]:
    parts, sq = [], 0.0
    for start, stop in _blocks(n_mat, m_mat, cap):
        mc = m_mat[:, start:stop]
        r = -(n_mat[:, start:stop] + mc + n_mat @ mc)  # e_j - L k_j, strictly lower
        r = sp.csc_matrix(r)
        r.eliminate_zeros()
        p = prune_columns(r, cap)
        lp = sp.csc_matrix(p + n_mat @ p)
        num = np.asarray(r.multiply(lp).sum(axis=0)).ravel()
        den = np.asarray(lp.multiply(lp).sum(axis=0)).ravel()
        alpha = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        updated = prune_columns(mc + p @ sp.diags(alpha), cap)
        # the residual norm after the step, before the cut (the cut moves it a little)
        sq += float(r.multiply(r).sum() - np.sum(alpha * num))
        parts.append(updated)
    out = sp.hstack(parts, format="csc")
    out.sort_indices()
    return out, float(np.sqrt(max(sq, 0.0)))


def _residual_norm(n_mat: sp.csc_matrix, m_mat: sp.csc_matrix) -> float:
    r = n_mat + m_mat + n_mat @ m_mat
    return float(np.sqrt(r.multiply(r).sum()))
