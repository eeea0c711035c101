"""SANSA: Spišák, Bartyzal & Tomáš, "Scalable Approximate NonSymmetric Autoencoder for
Collaborative Filtering", RecSys 2023 (arXiv:2308.09811).

EASE (:mod:`aerec.models.ease`) with the dense inverse ``P = (X^T X + lam I)^-1`` replaced by a
sparse approximation, so that the model is two sparse matrices and the fit's memory follows
their non-zeros, never ``items^2``:

1. ``A = X^T X + lam I`` in a fill-reducing order ``P A P^T = L D L^T`` (:mod:`aerec.models.sparse_ldl`);
2. ``L`` cut to the target density, and ``K ~ L^-1`` approximated, sparse at the same density, by
   residual minimisation (UMR, :mod:`aerec.models.umr`);
3. ``A^-1 ~ P^T K^T D^-1 K P`` and, as in EASE, ``B = I - A^-1 diag(1 / diag(A^-1))``: a user's
   scores are ``x B = x - (x W1) W2`` with ``W1 = P^T K^T`` and ``W2 = D^-1 K P diag(1 / diag)``,
   where ``diag_j = sum_i K_ij^2 / d_i`` is the diagonal of the approximate inverse itself, so
   that ``B``'s diagonal is zero exactly, as EASE's.

Kept from the paper: the LDL^T of the ordered Gram matrix, exact where it fits and incomplete
(with a diagonal shift retried on breakdown) where it does not, the sparse approximate inverse of
the unit triangular factor by residual minimisation at a prescribed density, the two-matrix model
and its scores. ``density`` is the paper's: non-zeros of each sparse matrix over ``items^2``.

Deviations, each deliberate:

* **ordering**: the exact path uses qdldl's approximate minimum degree (AMD) order, the
  incomplete path the most popular items first (measured best of three orders on ML-100K); the
  paper orders with COLAMD through CHOLMOD, which no pip wheel exposes with its factor (see
  ``docs/linear.md`` for the libraries measured);
* **breakdown**: the incomplete factor is first retried with its dropped entries compensated on
  the diagonal (Jennings & Malik), and only then with the paper's growing diagonal shift, which
  on clustered synthetic data needed a shift of 2.0 and ranked lower
  (:func:`aerec.models.sparse_ldl.incomplete_ldl`);
* **the incomplete factor works on the unit-diagonal matrix** ``S A S`` so that what it keeps is
  large relative to the items' own weight, and keeps twice the model's entries per column;
* **exact where a dense factor would fit**: the exact path (qdldl) is taken when the worst-case,
  dense, factor of ``items`` columns takes at most :data:`EXACT_MAX_BYTES`; qdldl has no
  supernodes, so above that the incomplete path is faster as well as bounded;
* **the Gram matrix is pruned** on the incomplete path: each item keeps its ``cap`` strongest
  co-occurrences (normalised by the items' counts), as the paper's incomplete factoriser works
  on a sparsified Gram matrix;
* **the cut keeps a fixed number of entries per column** (``density x items``), not a global
  threshold, so that memory is known before the fit;
* **UMR**: starts from the first Neumann term ``I - N`` and takes ``umr_steps`` minimal-residual
  steps along the residual cut to the column's budget; the paper alternates pattern scans with
  fine-tuning steps on a fixed pattern.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.synth_spec import available_memory
from aerec.errors import ConfigError
from aerec.models.base import Recommender
from aerec.models.budget import format_bytes, parse_memory
from aerec.models.sparse_ldl import exact_ldl, gramian, incomplete_ldl, prune_columns
from aerec.models.umr import umr_inverse

log = logging.getLogger(__name__)

#: Non-zeros per item column of each sparse matrix when neither ``density`` nor ``memory`` is
#: given (density ``300 / items``, capped at 1), unless :data:`DEFAULT_MEMORY` allows fewer.
DEFAULT_PER_ITEM = 300
#: The memory budget of the default density: above it, the default density is the one that fits.
DEFAULT_MEMORY = "4GB"
#: On the incomplete path, the Gram matrix keeps this many times, and the factor this many times,
#: the model's entries per column before the factor is cut to them.
GRAM_FACTOR = 4
FACTOR_FACTOR = 2
#: The exact factor is used when a dense lower triangle of ``items`` columns (12 bytes an entry)
#: is at most this large: about 13,000 items.
EXACT_MAX_BYTES = 2**30
#: Bytes the fit holds per kept entry of a column (the Gram matrix, the factor, ``M``, the
#: blocks' products and the two float32 matrices of the model, measured on the incomplete path).
BYTES_PER_ENTRY = 250
#: Bytes per training interaction (the binarised copy, its CSC and transposed float64 copies).
BYTES_PER_INTERACTION = 48
#: Fixed workspace: the blocks of the Gram and UMR products.
WORKSPACE_BYTES = 2**30


@dataclass(frozen=True)
class SANSAConfig:
    """Hyperparameters of SANSA.

    Attributes
    ----------
    lam : float
        L2 weight lambda (default 500, EASE's default, so that the two compare at one setting).
    density : float or None
        Non-zeros of each of the two sparse matrices over ``items^2`` (the paper's density),
        in (0, 1]. None: from ``memory`` when given, else ``300 / items`` (capped at 1) or what
        fits in 4 GB, whichever is smaller.
    memory : str or None
        A memory budget for the fit (``"4GB"``, ``"512MiB"``): the density is the largest that
        fits (see :func:`density_for_memory`). Ignored when ``density`` is given.
    factorization : {"auto", "exact", "incomplete"}
        ``auto``: exact where a dense factor would take at most 1 GiB, incomplete otherwise.
    umr_steps : int
        Residual-minimisation steps of the approximate inverse (default 3).
    """

    lam: float = 500.0
    density: float | None = None
    memory: str | None = None
    factorization: Literal["auto", "exact", "incomplete"] = "auto"
    umr_steps: int = 3

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise ValueError("lam must be positive (X^T X + lam I must be positive definite)")
        if self.density is not None and not 0 < self.density <= 1:
            raise ValueError(f"density must be in (0, 1], got {self.density!r}")
        if self.memory is not None:
            parse_memory(self.memory)
        if self.umr_steps < 0:
            raise ValueError("umr_steps must not be negative")


def memory_needed(n_items: int, per_item: int, nnz: int = 0) -> int:
    """Bytes the incomplete fit is estimated to need for ``per_item`` entries per column."""
    return int(n_items * per_item * BYTES_PER_ENTRY + nnz * BYTES_PER_INTERACTION
               + WORKSPACE_BYTES)


def density_for_memory(budget: int, n_items: int, nnz: int = 0) -> float:
    """The largest density whose fit is estimated to fit in ``budget`` bytes (ConfigError when
    not even one entry per column does)."""
    spare = budget - memory_needed(n_items, 0, nnz)
    per_item = min(n_items, spare // max(n_items * BYTES_PER_ENTRY, 1))
    if per_item < 1:
        raise ConfigError(
            f"sansa: a memory budget of {format_bytes(budget)} is too small for {n_items:,} items "
            f"and {nnz:,} interactions (at least {format_bytes(memory_needed(n_items, 1, nnz))})")
    return per_item / n_items


class SANSA(Recommender):
    """SANSA (Spišák et al. 2023): EASE through a sparse approximate inverse.

    Hyperparameters are the fields of :class:`SANSAConfig`; the module docstring gives the
    method and every deviation from the paper.

    Attributes
    ----------
    w1_, w2_ : scipy.sparse.csr_matrix
        float32 items x items: the scores of histories ``x`` are ``x - (x w1_) w2_``.
    density_ : float
        The density used (resolved from ``memory`` or the default when not given).
    exact_ : bool
        Whether the factor was exact (before its cut to the density).
    residual_ : float
        ``||I - L K||_F / sqrt(items)`` of the approximate inverse.
    """

    name = "sansa"
    Config = SANSAConfig

    # -- sizes ----------------------------------------------------------------------------------
    def resolve_density(self, n_items: int, nnz: int = 0) -> float:
        """The density this model uses on ``n_items`` items (``nnz`` training interactions)."""
        cfg = self.config
        if cfg.density is not None:
            return float(cfg.density)
        if cfg.memory is not None:
            return density_for_memory(parse_memory(cfg.memory), n_items, nnz)
        by_memory = density_for_memory(parse_memory(DEFAULT_MEMORY), n_items, nnz)
        return min(1.0, DEFAULT_PER_ITEM / max(n_items, 1), by_memory)

    def resolved_for(self, train: Any) -> dict[str, Any]:
        """The density (and entries per column) chosen for the training data ``train``."""
        matrix = train.matrix
        density = self.resolve_density(matrix.shape[1], matrix.nnz)
        per_item = _per_item(density, matrix.shape[1])
        return {"density": density, "per_item": per_item,
                "exact": self._exact(matrix.shape[1])}

    def _exact(self, n_items: int) -> bool:
        mode = self.config.factorization
        if mode != "auto":
            return mode == "exact"
        return n_items * (n_items + 1) // 2 * 12 <= EXACT_MAX_BYTES

    # -- fitting --------------------------------------------------------------------------------
    def _fit(self, matrix: sp.csr_matrix, validation: Any = None) -> None:
        x = matrix.copy()
        x.data = (x.data != 0).astype(np.float32)
        x.eliminate_zeros()
        n = x.shape[1]
        self.density_ = self.resolve_density(n, x.nnz)
        cap = _per_item(self.density_, n)
        self.exact_ = self._exact(n)
        _check_memory(n, cap, x.nnz, self.exact_)
        self.w1_ = self.w2_ = None  # a refit must not hold the old model beside the new one
        if self.exact_:
            factor = exact_ldl(gramian(x, self.config.lam, None))
            strict = prune_columns(factor.strict_lower, cap)
        else:
            # More entries in the Gram matrix and the factor than in the model, cut at the end:
            # on ML-100K, at 119 entries a column, Gram and factor kept at 1x / 1x ranked at
            # NDCG@100 0.31, at 4x (Gram) / 2x (factor) at 0.43 (exact factor, cut: 0.456).
            factor = incomplete_ldl(gramian(x, self.config.lam, GRAM_FACTOR * cap),
                                    FACTOR_FACTOR * cap)
            strict = prune_columns(factor.strict_lower, cap)
        del x
        m, self.residual_ = umr_inverse(strict, cap, self.config.umr_steps)
        del strict
        log.info("sansa: %s factor, density %.3g (%d per item), UMR residual %.3g",
                 "exact" if self.exact_ else "incomplete", self.density_, cap, self.residual_)
        self.w1_, self.w2_ = _model_matrices(m, factor.d, factor.perm)

    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters an Optuna ``trial`` suggests for ``aerec tune``."""
        return {"lam": trial.suggest_float("lam", 1.0, 1e4, log=True)}

    # -- scoring --------------------------------------------------------------------------------
    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        x = user_items.copy()
        x.data = (x.data != 0).astype(np.float32)  # binarised, as in the fit
        s = (x @ self.w1_) @ self.w2_
        out = torch.from_numpy(np.asarray(x.toarray(), np.float32))
        out -= torch.from_numpy(s.toarray().astype(np.float32, copy=False))
        return out

    def _item_similarities(self, cols: np.ndarray) -> torch.Tensor:
        """Row ``i`` of the weights ``B = I - A^-1 diag(1 / diag(A^-1))`` of the approximate
        inverse: the scores a history of item ``i`` alone gives every item, as for EASE."""
        rows = sp.csr_matrix((np.ones(len(cols), np.float32), (np.arange(len(cols)), cols)),
                             shape=(len(cols), self.n_items_))
        return self._score(rows)

    # -- persistence ----------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for name, mat in (("w1", self.w1_), ("w2", self.w2_)):
            state[f"{name}_indptr"] = torch.from_numpy(mat.indptr.astype(np.int64))
            state[f"{name}_indices"] = torch.from_numpy(mat.indices.astype(np.int32))
            state[f"{name}_data"] = torch.from_numpy(mat.data.astype(np.float32))
        state["density"] = torch.tensor([self.density_], dtype=torch.float64)
        state["exact"] = torch.tensor([int(self.exact_)], dtype=torch.int64)
        state["residual"] = torch.tensor([self.residual_], dtype=torch.float64)
        return state

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        n = int(self.n_items_)
        mats = []
        for name in ("w1", "w2"):
            indptr = state[f"{name}_indptr"].numpy()
            indices = state[f"{name}_indices"].numpy()
            data = state[f"{name}_data"].numpy()
            if len(indptr) != n + 1 or len(indices) != len(data) or indptr[-1] != len(data) \
                    or np.any(np.diff(indptr) < 0) or (len(indices) and (
                        indices.min() < 0 or indices.max() >= n)):
                raise ValueError(f"{name} is not a CSR matrix of {n} x {n}")
            mats.append(sp.csr_matrix((data, indices, indptr), shape=(n, n)))
        self.w1_, self.w2_ = mats
        self.density_ = float(state["density"][0])
        self.exact_ = bool(state["exact"][0])
        self.residual_ = float(state["residual"][0])


def _per_item(density: float, n_items: int) -> int:
    """Entries kept per column of each matrix for ``density`` (at least 1)."""
    return max(1, min(n_items, math.ceil(density * n_items)))


def _check_memory(n_items: int, cap: int, nnz: int, exact: bool) -> None:
    available = available_memory()
    if available is None:
        return
    needed = memory_needed(n_items, cap, nnz)
    if exact:
        needed = max(needed, n_items * (n_items + 1) // 2 * 12 * 3 + nnz * BYTES_PER_INTERACTION)
    if needed > available:
        fits = density_for_memory(available, n_items, nnz) if available > memory_needed(
            n_items, 1, nnz) else 0.0
        raise ConfigError(
            f"sansa needs about {format_bytes(needed)} at density {cap / n_items:.3g} for "
            f"{n_items:,} items but {format_bytes(available)} is available; lower it with "
            f"--set density=D (D <= {fits:.3g} fits) or --set memory=SIZE")


def _model_matrices(m: sp.csc_matrix, d: np.ndarray, perm: np.ndarray
                    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``W1 = P^T K^T`` and ``W2 = D^-1 K P diag(1 / diag(A^-1))`` in the items' own order."""
    n = m.shape[0]
    k = (sp.identity(n, format="csc") + m).tocsc()
    inv_d = 1.0 / d
    # diag of K^T D^-1 K: column j of K, squared, weighted by 1 / d_i
    diag = np.asarray(k.multiply(k).T @ inv_d).ravel()
    # permuted position of each original item: item perm[p] sits at p
    position = np.empty_like(perm)
    position[perm] = np.arange(n)
    # x_orig W1 = x_perm K^T: row i of W1 is row position[i] of K^T
    w1 = sp.csr_matrix(k.T)[position]
    # scores_perm = y D^-1 K diag(1 / diag); then original column i is permuted column position[i]
    w2 = sp.diags(inv_d) @ sp.csr_matrix(k) @ sp.diags(1.0 / diag)
    w2 = sp.csr_matrix(w2)[:, position]
    w1, w2 = w1.astype(np.float32), w2.astype(np.float32)
    w1.sort_indices()
    w2.sort_indices()
    return sp.csr_matrix(w1), sp.csr_matrix(w2)
