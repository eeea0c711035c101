"""EASE: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019 (arXiv:1905.03375).

An item-item linear autoencoder in closed form. With the Gram matrix ``G = X^T X`` of the binary
users x items training matrix and ``P = (G + lam * I)^-1``, the weights are

    B = I - P * diag(1 / diag(P)),   i.e.  B_ij = -P_ij / P_jj  (i != j),  B_jj = 0,

the minimiser of ``||X - X B||_F^2 + lam ||B||_F^2`` subject to ``diag(B) = 0``. A user's scores are
their history times ``B``, so any history (a user never seen in training) is scored at once: the
model folds in by construction.

Kept from the paper: the zero-diagonal constraint, the closed form, the solve in float64 (Steck's
code also inverts in float64; the Gram matrix of a large data set is badly conditioned in float32),
the scores ``x B``. The default ``lam = 500`` is the paper's value for ML-20M; a smaller data set
may prefer a smaller value, to be tuned on validation.

Deliberate choices, not in the paper:

* ``G + lam I`` is symmetric positive definite (``lam > 0``), so it is inverted through its
  Cholesky factor (LAPACK ``potrf``, then the inverse from the factor), written back into the
  Gram matrix's memory: two or three dense float64 items x items matrices at the peak (see
  :data:`DENSE_MATRICES`); the weights are kept in float32 for scoring.
* before any allocation the memory the solve needs is estimated (:func:`memory_needed`) and
  compared with what the machine has; when it does not fit, fitting stops with a message naming
  both figures and the ``max_items`` setting that restricts the model to the most popular items.
  Items outside that set are never recommended (their score is ``-inf``) and do not contribute to
  the scores of the others.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models.base import Recommender
from aerec.models.sparse import csr_times_dense

#: Dense items x items float64 matrices the fit may hold at once. The solve itself needs two (the
#: Gram matrix, overwritten, and the temporary that torch's Cholesky calls work in), but at 20,000
#: items the peak measured 6.6 GB in one run and 9.7 GB in another with the same code: when the
#: allocator cannot reuse the freed temporary in place, a third appears. The estimate is the
#: larger one.
DENSE_MATRICES = 3
_BYTES = 8  # float64
_GIB = 2**30


@dataclass(frozen=True)
class EASEConfig:
    """Hyperparameters of EASE.

    Attributes
    ----------
    lam : float
        L2 weight lambda on ``B`` (default 500, the paper's value for ML-20M).
    max_items : int or None
        Restrict the model to this many of the most popular training items (None: all items);
        the others are never recommended. For item counts whose items x items matrices do not fit
        in memory.
    """

    lam: float = 500.0
    max_items: int | None = None

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise ValueError("lam must be positive (G + lam I must be invertible)")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError("max_items must be a positive integer or None")


def memory_needed(n_items: int) -> int:
    """Bytes the solve for ``n_items`` items needs: ``n_items**2 * 8 * DENSE_MATRICES``."""
    return int(n_items) ** 2 * _BYTES * DENSE_MATRICES


def largest_fitting(available: int) -> int:
    """The largest item count whose solve fits in ``available`` bytes."""
    return math.isqrt(max(int(available), 0) // (_BYTES * DENSE_MATRICES))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None if unknown."""
    meminfo = Path("/proc/meminfo")
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_items: int, available: int | None = None) -> None:
    """Raise ConfigError when solving for ``n_items`` items would not fit in memory.

    ``available`` defaults to :func:`available_memory`; when that is unknown nothing is checked.
    """
    if available is None:
        available = available_memory()
    if available is None:
        return
    needed = memory_needed(n_items)
    if needed > available:
        fits = largest_fitting(available)
        raise ConfigError(
            f"EASE needs about {needed / _GIB:.1f} GiB for {n_items:,} items ({DENSE_MATRICES} dense "
            f"{n_items:,} x {n_items:,} float64 matrices) but only {available / _GIB:.1f} GiB of "
            f"memory is available; restrict it to the most popular items with --set "
            f"max_items=N (N <= {fits:,} fits now)"
        )


def gram_matrix(matrix: sp.csr_matrix, block: int = 2048) -> np.ndarray:
    """Dense float64 ``X^T X`` (Fortran order: a block of columns is contiguous), built a block
    of columns at a time.

    The sparse product of a whole data set can hold nearly items^2 entries at 12 bytes each;
    block by block, only one block's sparse product exists beside the dense result.
    """
    x = sp.csc_matrix(matrix, dtype=np.float64)
    xt = x.T.tocsr()
    n = x.shape[1]
    gram = np.empty((n, n), dtype=np.float64, order="F")
    for start in range(0, n, block):
        stop = min(start + block, n)
        gram[:, start:stop] = (xt @ x[:, start:stop]).toarray()
    return gram


def ease_weights(gram: np.ndarray, lam: float | np.ndarray) -> np.ndarray:
    """The EASE weights ``B`` from a Gram matrix; ``gram`` is overwritten (used as workspace).

    Returns float32 ``B`` with ``B_ij = -P_ij / P_jj`` and a zero diagonal, where
    ``P = (gram + diag(lam))^-1``: ``lam`` is one L2 weight for every item (EASE) or a vector of
    one weight per item (EDLAE, :mod:`aerec.models.edlae`).
    """
    # The Gram matrix is symmetric, so a Fortran-ordered one seen transposed is the same matrix,
    # C-contiguous: torch works on gram's own memory.
    a = torch.from_numpy(gram.T if gram.flags.f_contiguous else np.ascontiguousarray(gram))
    a.diagonal().add_(torch.as_tensor(lam, dtype=a.dtype))
    # Cholesky factor, then the inverse from it, with PyTorch's LAPACK (MKL on x86).
    # Not SciPy's: its bundled multi-threaded OpenBLAS 0.3.31 crashed (SIGSEGV) in dpotrf, and in
    # plain dgemm, on matrices above about 16,000 items on this project's AMD EPYC machines.
    info = torch.empty((), dtype=torch.int32)
    torch.linalg.cholesky_ex(a, out=(a, info))
    if int(info) != 0:
        raise TrainingDivergedError(
            f"EASE: G + lam I is not positive definite (LAPACK info {int(info)}); raise lam"
        )
    # Into gram's memory again: torch works in a temporary of the same size and copies back
    # (without out= the inverse would be a third matrix held beside the other two).
    torch.cholesky_inverse(a, out=a)
    diag = a.diagonal().clone()
    a.div_(diag.neg_())  # column j divided by -P_jj
    a.diagonal().zero_()
    return a.to(torch.float32).numpy()


class EASE(Recommender):
    """EASE (Steck 2019): closed-form item-item autoencoder with a zero diagonal.

    Hyperparameters are the fields of :class:`EASEConfig`. See the module docstring for the
    formula, what is kept from the paper and the memory check.

    Attributes
    ----------
    weights_ : torch.Tensor
        ``(m, m)`` float32 ``B`` over the modelled items (m = n_items_ unless ``max_items``).
    items_ : numpy.ndarray or None
        Column indices of the modelled items (ascending), or None when all items are modelled.
    """

    name = "ease"
    Config = EASEConfig

    def _fit(self, matrix: sp.csr_matrix, validation: Any = None, **kwargs: Any) -> None:
        # Binarise: EASE's Gram matrix is of the 0/1 interaction matrix.
        x = matrix.copy()
        x.data = (x.data != 0).astype(np.float32)
        x.eliminate_zeros()
        items = None
        max_items = self.config.max_items
        if max_items is not None and max_items < x.shape[1]:
            counts = np.bincount(x.indices, minlength=x.shape[1])
            # Stable sort: among equally popular items the lower index is kept.
            items = np.sort(np.argsort(-counts, kind="stable")[:max_items]).astype(np.int64)
            x = x[:, items]
        check_memory(x.shape[1])
        gram = gram_matrix(x)
        weights = ease_weights(gram, self._penalty(np.diag(gram)))
        self.weights_ = torch.from_numpy(weights)
        self.items_ = items

    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters an Optuna ``trial`` suggests for ``aerec tune``."""
        return {"lam": trial.suggest_float("lam", 1.0, 1e4, log=True)}

    def _penalty(self, gram_diagonal: np.ndarray) -> float | np.ndarray:
        """The L2 weight on each item's column of ``B``: lambda for every item."""
        return self.config.lam

    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        x = user_items if self.items_ is None else user_items[:, self.items_]
        x = x.tocsr()
        x.sort_indices()
        scores = csr_times_dense(  # x B, with the history binarised as in the fit
            torch.from_numpy(x.indptr.astype(np.int64)), torch.from_numpy(x.indices.astype(np.int64)),
            torch.from_numpy((x.data != 0).astype(np.float32)), self.weights_)
        if self.items_ is None:
            return scores
        full = torch.full((user_items.shape[0], self.n_items_), -torch.inf)
        full[:, torch.from_numpy(self.items_)] = scores
        return full

    def _get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"weights": self.weights_}
        state["items"] = None if self.items_ is None else torch.from_numpy(self.items_)
        return state

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        self.weights_ = state["weights"].float().cpu()
        items = state.get("items")
        self.items_ = None if items is None else items.cpu().numpy().astype(np.int64)
