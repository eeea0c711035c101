"""EASE and EDLAE at many penalties from one factorisation: the regularisation path.

EASE (:mod:`aerec.models.ease`) and EDLAE (:mod:`aerec.models.edlae`) share one closed form: with
the Gram matrix ``G = X^T X`` of the binary training matrix and a penalty vector ``e`` (``lam`` for
every item in EASE; ``lam + p / (1 - p) * G_jj`` in EDLAE),

    P = (G + diag(e))^-1,    B = I - P diag(1 / diag(P)),

so a history ``h`` scores ``h B = h - (h P) / diag(P)``. Choosing ``lam`` (or EDLAE's ``p``) on
validation needs ``h P`` and ``diag(P)`` for many penalties, not ``B`` itself. Two ways give them
for every value of one hyperparameter at little more than the cost of one factorisation:

* **items side**: one eigendecomposition ``A = V diag(s) V^T`` of an
  items x items matrix, after which ``(A + t I)^-1 = V diag(1 / (s + t)) V^T`` for every ``t``.
  Varying ``lam`` at a fixed dropout: ``A = G + q diag(G)`` with ``q = p / (1 - p)`` (``q = 0``:
  EASE) and ``t = lam``. Varying EDLAE's ``p`` at a fixed ``lam``: with ``S = diag(G)^(-1/2)``,
  ``G + lam I + q diag(G) = S^-1 (S (G + lam I) S + q I) S^-1``, so ``A = S (G + lam I) S`` and
  ``t = q``, and ``P = S (A + q I)^-1 S``.
* **users side** (a wide catalogue, where the items x items solve is the cost): the push-through identity (Woodbury)
  ``(X^T X + E)^-1 = E^-1 - E^-1 X^T (I + X E^-1 X^T)^-1 X E^-1`` with ``E = diag(e)``. For
  EASE's ``lam`` (``E = lam I``) one eigendecomposition ``X X^T = U diag(s) U^T`` serves every
  value: ``P = (I - Y^T diag(1 / (s + lam)) Y) / lam`` with ``Y = U^T X``. For EDLAE's penalty,
  not a multiple of ``I``, it takes one users x users Cholesky factorisation per value.

:func:`path_flops` estimates both; ``side="auto"`` takes the cheaper. Items never seen in training (``G_jj = 0``) have zero rows and columns in ``G``; their column and
row of ``B`` are zero whatever their penalty, so the items-side ``p`` path gives them ``G_jj = 1``
(for the scaling) without changing ``B``.

The eigendecomposition and the solves are in float64 (as EASE's fit); the products with the
histories that score the validation users may be float32 (``dtype``), which is enough to rank
items and halves their cost. :meth:`RegularisationPath.weights` gives ``B`` in float64, equal to
a direct fit's to float64 rounding (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

__all__ = ["RegularisationPath", "path_memory", "path_flops", "fit_flops", "dropout_weight"]

Side = Literal["auto", "items", "users"]


def dropout_weight(dropout: float) -> float:
    """``q = p / (1 - p)``: the factor of ``G_jj`` in EDLAE's penalty for input dropout ``p``."""
    return float(dropout) / (1.0 - float(dropout))


def _side(n_users: int, n_items: int, side: Side, woodbury: bool = False) -> str:
    """``side``, or where ``auto``, the side whose path costs fewer operations."""
    if side == "auto":
        users = path_flops(n_users, n_items, n_users, 12, "users", woodbury)
        return "users" if users < path_flops(n_users, n_items, n_users, 12, "items") else "items"
    if side not in ("items", "users"):
        raise ValueError(f"side must be 'auto', 'items' or 'users', not {side!r}")
    return side


def path_memory(n_users: int, n_items: int, side: Side = "auto", woodbury: bool = False) -> int:
    """Bytes a path holds at its peak, besides the sparse data.

    Items side: the matrix, its eigenvectors, LAPACK's workspace (about two more such matrices)
    and the eigenvectors in the products' dtype: five ``n x n`` float64 matrices. Users side:
    the users x users system and three ``users x items`` float64 matrices (the scaled data, its
    solve and the solve in the products' dtype).
    """
    m, n = int(n_users), int(n_items)
    if _side(m, n, side, woodbury) == "items":
        return 5 * n * n * 8
    return (m * m + 3 * m * n) * 8


def fit_flops(n_items: int) -> float:
    """Floating-point operations of one EASE fit: Cholesky factor and inverse, about ``n^3``."""
    return float(n_items) ** 3


def path_flops(n_users: int, n_items: int, n_scored: int, n_values: int,
               side: Side = "auto", woodbury: bool = False) -> float:
    """Floating-point operations of a path of ``n_values`` values scoring ``n_scored`` users.

    Items side: the eigendecomposition (about ``4 n^3``, measured against one fit on ML-100K)
    and, per value, the product ``(h V) diag V^T`` (``2 u n^2``). Users side: for EASE's ``lam``,
    the eigendecomposition of ``X X^T`` (``4 m^3``), ``Y = U^T X`` (``2 m^2 n``) and per value
    the product with the histories (``2 u m n``); with ``woodbury`` (EDLAE's penalty), per value
    the Cholesky factor (``m^3 / 3``), the solve for ``n`` right-hand sides (``2 m^2 n``) and the
    product.
    """
    m, n, u, k = float(n_users), float(n_items), float(n_scored), int(n_values)
    if side == "auto":
        side = _side(int(m), int(n), "auto", woodbury)
    if side == "items":
        return 4 * n ** 3 + k * 2 * u * n * n
    if woodbury:
        return k * (m ** 3 / 3 + 2 * m * m * n + 2 * u * m * n)
    return 4 * m ** 3 + 2 * m * m * n + k * 2 * u * m * n


@dataclass(frozen=True)
class _Inverse:
    """``P`` at one value: its diagonal and a function ``h -> h P`` (dense)."""

    diagonal: np.ndarray
    left: Any


class RegularisationPath:
    """EASE / EDLAE inverses ``P`` for every value of ``lam`` or of EDLAE's ``dropout``.

    Parameters
    ----------
    matrix : scipy.sparse matrix
        ``users x items`` training matrix; binarised as EASE's fit does.
    vary : {"lam", "dropout"}
        The hyperparameter whose values :meth:`scores` and :meth:`weights` take; the other one
        is fixed at ``lam`` or ``dropout``.
    lam : float
        The fixed ``lam`` when ``vary="dropout"`` (ignored otherwise).
    dropout : float
        The fixed EDLAE dropout ``p`` when ``vary="lam"`` (0: EASE).
    side : {"auto", "items", "users"}
        Which factorisation (module docstring); ``auto`` takes the one of fewer operations
        (:func:`path_flops`): the users side where the users are much fewer than the items.
    dtype : numpy dtype
        Of the products that score histories (float32 by default; float64 for exact checks).
    """

    def __init__(self, matrix: sp.spmatrix, vary: Literal["lam", "dropout"] = "lam", *,
                 lam: float = 500.0, dropout: float = 0.0, side: Side = "auto",
                 dtype: Any = np.float32) -> None:
        if vary not in ("lam", "dropout"):
            raise ValueError(f"vary must be 'lam' or 'dropout', not {vary!r}")
        if not 0 <= dropout < 1 or not lam > 0:
            raise ValueError("dropout must be in [0, 1) and lam positive")
        x = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        x.data = (x.data != 0).astype(np.float64)
        x.eliminate_zeros()
        self.vary, self.lam, self.dropout = vary, float(lam), float(dropout)
        self.dtype = np.dtype(dtype)
        woodbury = vary == "dropout" or dropout > 0  # a penalty that is not a multiple of I
        self.side = _side(*x.shape, side, woodbury)
        self.n_items = x.shape[1]
        self.gram_diagonal_ = np.asarray(x.multiply(x).sum(axis=0)).ravel()
        self._x = x
        self._dual = None
        if self.side == "items":
            self._decompose(x)
        elif vary == "lam" and self.dropout == 0:
            self._decompose_users(x)

    # -- items side: one eigendecomposition ---------------------------------------------------
    def _decompose(self, x: sp.csr_matrix) -> None:
        g = (x.T @ x).toarray()
        diag = self.gram_diagonal_
        if self.vary == "lam":
            g[np.diag_indices_from(g)] += dropout_weight(self.dropout) * diag
            scale = None
        else:
            g[np.diag_indices_from(g)] += self.lam
            scale = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))  # unseen items: B unchanged
            g *= scale[:, None]
            g *= scale[None, :]
        values, vectors = sla.eigh(g, overwrite_a=True, check_finite=False, driver="evd")
        del g
        self._values = values
        self._scale = scale
        self._vectors = vectors.astype(self.dtype, copy=False)
        self._squares = np.square(vectors)  # diag(P) = squares @ (1 / (s + t)), in float64

    def _shift(self, value: float) -> float:
        return float(value) if self.vary == "lam" else dropout_weight(value)

    def _items_inverse(self, value: float) -> _Inverse:
        t = self._shift(value)
        w = 1.0 / (self._values + t)
        if np.any(self._values + t <= 0):
            raise ValueError(f"{self.vary} = {value}: G + penalty is not positive definite")
        diagonal = self._squares @ w
        scale = self._scale
        if scale is not None:
            diagonal = diagonal * scale * scale
        v, w_d = self._vectors, w.astype(self.dtype)
        scale_d = None if scale is None else scale.astype(self.dtype)

        def left(h: sp.csr_matrix) -> np.ndarray:
            h = h if scale_d is None else h @ sp.diags(scale_d)
            out = ((h @ v) * w_d) @ v.T
            return out if scale_d is None else out * scale_d

        return _Inverse(diagonal, left)

    # -- users side -------------------------------------------------------------------------------
    def _decompose_users(self, x: sp.csr_matrix) -> None:
        """EASE's lam path: ``X X^T = U diag(s) U^T`` once; with ``Y = U^T X``,
        ``P = (I - Y^T diag(1 / (s + lam)) Y) / lam`` (push-through identity)."""
        k = (x @ x.T).toarray()
        values, vectors = sla.eigh(k, overwrite_a=True, check_finite=False, driver="evd")
        y = np.asarray((x.T @ vectors).T)  # U^T X, users x items, dense
        self._dual = (values, y.astype(self.dtype, copy=False), np.square(y))

    def _users_eig_inverse(self, lam: float) -> _Inverse:
        if not lam > 0:
            raise ValueError(f"lam = {lam} is out of range")
        values, y, squares = self._dual
        w = 1.0 / (values + lam)
        diagonal = (1.0 - squares.T @ w) / lam
        w_d, y_t = w.astype(self.dtype), y.T

        def left(h: sp.csr_matrix) -> np.ndarray:
            out = -(((h @ y_t) * w_d) @ y)
            out += h.toarray()
            out /= lam
            return out

        return _Inverse(diagonal, left)

    def penalty(self, value: float) -> np.ndarray:
        """EDLAE's (or EASE's) penalty vector ``e`` at ``value`` of the varied hyperparameter."""
        lam, p = (value, self.dropout) if self.vary == "lam" else (self.lam, value)
        if not lam > 0 or not 0 <= p < 1:
            raise ValueError(f"{self.vary} = {value} is out of range")
        return float(lam) + dropout_weight(p) * self.gram_diagonal_

    def _users_inverse(self, value: float) -> _Inverse:
        x = self._x
        inv_e = 1.0 / self.penalty(value)
        xe = x @ sp.diags(inv_e)  # X E^-1
        system = (xe @ x.T).toarray()
        system[np.diag_indices_from(system)] += 1.0  # I + X E^-1 X^T, eigenvalues >= 1
        factor = sla.cho_factor(system, lower=True, overwrite_a=True, check_finite=False)
        solved = sla.cho_solve(factor, xe.toarray(), overwrite_b=True, check_finite=False)
        diagonal = inv_e - np.asarray(xe.multiply(solved).sum(axis=0)).ravel()
        solved_d = solved.astype(self.dtype, copy=False)
        del solved
        xt = x.T.tocsr().astype(self.dtype)
        inv_e_d = sp.diags(inv_e.astype(self.dtype))

        def left(h: sp.csr_matrix) -> np.ndarray:
            he = h @ inv_e_d
            return he.toarray() - (he @ xt).toarray() @ solved_d

        return _Inverse(diagonal, left)

    # -- public ---------------------------------------------------------------------------------
    def inverse(self, value: float) -> _Inverse:
        """``diag(P)`` and ``h -> h P`` at ``value`` of the varied hyperparameter."""
        if self.side == "items":
            return self._items_inverse(value)
        if self._dual is not None:
            return self._users_eig_inverse(float(value))
        return self._users_inverse(value)

    def scorer(self, value: float):
        """A function ``h -> h B`` (dense ``(b, n_items)`` array) at ``value``."""
        inverse = self.inverse(value)
        inv_diag = (1.0 / inverse.diagonal).astype(self.dtype)

        def score(h: sp.spmatrix) -> np.ndarray:
            h = sp.csr_matrix(h, dtype=self.dtype, copy=True)
            h.data = (h.data != 0).astype(self.dtype)  # binarised, as EASE scores
            out = inverse.left(h)
            out *= -inv_diag
            out += h.toarray()
            return out

        return score

    def weights(self, value: float) -> np.ndarray:
        """``B`` at ``value`` as a dense ``(n, n)`` array (float64 when ``dtype`` is)."""
        identity = sp.identity(self.n_items, format="csr")
        b = self.scorer(value)(identity)
        b[np.diag_indices_from(b)] = 0.0  # exactly, as the direct fit writes it
        return b
