"""EASE: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019 (arXiv:1905.03375).

An item-item linear autoencoder in closed form. With the Gram matrix ``G = X^T X`` of the binary
users x items training matrix and ``P = (G + lam * I)^-1``, the weights are

    B = I - P * diag(1 / diag(P)),   i.e.  B_ij = -P_ij / P_jj  (i != j),  B_jj = 0,

the minimiser of ``||X - X B||_F^2 + lam ||B||_F^2`` subject to ``diag(B) = 0``. A user's scores are
their history times ``B``, so any history (a user never seen in training) is scored at once: the
model folds in by construction.

Kept from the paper: the zero-diagonal constraint, the closed form, the solve in float64 (Steck's
code also inverts in float64; the Gram matrix of a large data set is badly conditioned in float32)
wherever it fits in memory, the scores ``x B``. Where it does not, ``precision="auto"`` (the
default) solves in float32, half the memory, and says so (``precision`` in :class:`EASEConfig`). The default ``lam = 500`` is the paper's value for ML-20M; a smaller data set
may prefer a smaller value, to be tuned on validation.

Deliberate choices, not in the paper:

* **One dense items x items matrix at the peak** (see ``docs/ease.md``). The Gram matrix is built a
  block of rows at a time into one float64 buffer, of which only the lower triangle is written;
  LAPACK factorises (``potrf``) and inverts (``potri``) it in that buffer; then ``B`` is formed a
  block of rows at a time and written, in float32, into the first half of the same memory, whose
  second half is handed back to the operating system. Beside the buffer the fit holds a few blocks
  of rows (:data:`BLOCK_BYTES` each) and copies of the sparse data. At 40,981 items that is
  12.5 GiB for the buffer, where the previous code (torch's Cholesky calls, which work in a
  temporary of the matrix's size, and a separate float32 ``B``) needed up to three such matrices.
* before any allocation the memory the fit needs is estimated (:func:`memory_needed`) and
  compared with what the machine has; when it does not fit, fitting stops with a message naming
  both figures and the ``max_items`` setting that restricts the model to the most popular items.
  Items outside that set are never recommended (their score is ``-inf``) and do not contribute to
  the scores of the others.
* the weights are kept in float32 for scoring.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.synth_spec import available_memory  # shared with the synthetic-data check
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models.base import Recommender
from aerec.models.sparse import csr_times_dense

#: Dense items x items matrices the fit holds at once: the one buffer that is the Gram matrix,
#: then its Cholesky factor, then the inverse, then (in its first half) ``B`` in float32.
DENSE_MATRICES = 1
#: Bytes of one workspace block: the Gram matrix is built, and ``B`` formed, this many rows at a
#: time (``BLOCK_BYTES // (8 * items)`` rows, so the blocks stay this size at any item count) ...
BLOCK_BYTES = 128 * 2**20
#: ... and in at least this many blocks, so that a small matrix's workspace (and the square
#: temporaries of a block's diagonal part) stay a fraction of it.
MIN_BLOCKS = 8
#: Workspace blocks counted by the memory check: while the Gram matrix is built, a block's sparse
#: product (up to 16 bytes an entry: two blocks) and its dense copy (one); while ``B`` is formed, a
#: float64 block (one); one more for margin.
WORKSPACE_BLOCKS = 4
#: Bytes each stored interaction costs during the fit: the binarised copy of the training matrix
#: (float32), and the float64 CSC copy and its transpose that the Gram matrix is built from.
SPARSE_BYTES_PER_ENTRY = 4 + 4 + 2 * (8 + 4)
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
        the others are never recommended. For item counts whose items x items matrix does not fit
        in memory.
    precision : {"auto", "fp64", "fp32"}
        Arithmetic of the solve. ``fp64`` (Steck's) holds one float64 items x items matrix,
        ``fp32`` one float32 matrix, half the memory; ``auto`` (the default) takes fp64 where it
        fits in the memory available and fp32 otherwise, with a :class:`PrecisionNotice` saying
        so. The model's ``precision_`` and a run's ``run.json`` (``resolved``) record the choice.
    """

    lam: float = 500.0
    max_items: int | None = None
    precision: Literal["auto", "fp64", "fp32"] = "auto"

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise ValueError("lam must be positive (G + lam I must be invertible)")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError("max_items must be a positive integer or None")


# -- memory -------------------------------------------------------------------------------------
def block_rows(n_items: int) -> int:
    """Rows of the items x items matrix in one workspace block (at least 1)."""
    n = max(int(n_items), 1)
    return max(1, min(-(-n // MIN_BLOCKS), BLOCK_BYTES // (8 * n)))


def memory_needed(n_items: int, nnz: int = 0, dtype: Any = np.float64) -> int:
    """Bytes the fit for ``n_items`` items and ``nnz`` training interactions needs.

    One dense ``n_items x n_items`` matrix in ``dtype`` (float64: the solve's precision), plus
    :data:`WORKSPACE_BLOCKS` float64 blocks of :func:`block_rows` rows, plus
    :data:`SPARSE_BYTES_PER_ENTRY` bytes per interaction for the sparse copies.
    """
    n = int(n_items)
    dense = n * n * np.dtype(dtype).itemsize
    workspace = WORKSPACE_BLOCKS * block_rows(n) * n * 8
    return dense + workspace + int(nnz) * SPARSE_BYTES_PER_ENTRY


def largest_fitting(available: int, nnz: int = 0, dtype: Any = np.float64) -> int:
    """The largest item count whose fit fits in ``available`` bytes (0 if none)."""
    available = int(available)
    if memory_needed(1, nnz, dtype) > available:
        return 0
    lo, hi = 1, 2
    while memory_needed(hi, nnz, dtype) <= available:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # memory_needed grows with n: memory_needed(lo) fits, (hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if memory_needed(mid, nnz, dtype) <= available else (lo, mid)
    return lo


class PrecisionNotice(UserWarning):
    """``precision="auto"`` solved EASE in float32: float64 would not fit in memory."""


_DTYPES = {"fp64": np.float64, "fp32": np.float32}


def check_memory(n_items: int, available: int | None = None, nnz: int = 0,
                 precision: str = "fp64", model: str = "EASE") -> str:
    """The precision the fit of ``n_items`` items (``nnz`` interactions) takes: ``precision``
    itself, or for ``"auto"`` fp64 where it fits in memory and fp32 otherwise.

    ``available`` defaults to :func:`available_memory`; when that is unknown nothing is checked
    (and ``auto`` is fp64).

    Raises
    ------
    ConfigError
        When the precision asked for (for ``auto``: either) does not fit: one line naming the
        memory each precision needs, the largest catalogue each allows on this machine, and the
        models that fit (``sansa``, ``elsa``, or ``max_items``).
    """
    if available is None:
        available = available_memory()
    wanted = ("fp64", "fp32") if precision == "auto" else (precision,)
    if available is None:
        return wanted[0]
    for choice in wanted:
        if memory_needed(n_items, nnz, _DTYPES[choice]) <= available:
            return choice
    gib = {c: memory_needed(n_items, nnz, _DTYPES[c]) / _GIB for c in ("fp64", "fp32")}
    most = {c: largest_fitting(available, nnz, _DTYPES[c]) for c in ("fp64", "fp32")}
    first = wanted[0]
    other = "fp32" if first == "fp64" else "fp64"
    name = {"fp64": "float64", "fp32": "float32"}
    raise ConfigError(
        f"{model} needs about {gib[first]:.1f} GiB for {n_items:,} items (one dense {n_items:,} x "
        f"{n_items:,} {name[first]} matrix and workspace; {gib[other]:.1f} GiB in {name[other]}) "
        f"but only {available / _GIB:.1f} GiB of memory is available, where at most "
        f"{most['fp64']:,} items fit in float64 and {most['fp32']:,} in float32; use --model sansa "
        f"or --model elsa (memory linear in the items), or restrict it to the most popular items "
        f"with --set max_items=N (N <= {most[wanted[-1]]:,} fits now)"
    )


def _allocate(n: int, dtype: Any) -> np.ndarray:
    """A C-ordered ``n x n`` array on its own anonymous memory map.

    Its own mapping, not the heap, so that :func:`_release_tail` can hand part of it back to the
    operating system. The pages are zero until written and take no memory until touched.
    """
    dtype = np.dtype(dtype)
    size = max(n * n * dtype.itemsize, 1)
    if hasattr(mmap, "MAP_ANONYMOUS"):  # private: Python's default anonymous map is shared
        # memory, whose pages madvise(MADV_DONTNEED) would not free
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    else:
        buffer = mmap.mmap(-1, size)
    return np.frombuffer(buffer, dtype=dtype, count=n * n).reshape(n, n)


def _release_tail(array: np.ndarray, keep_bytes: int) -> bool:
    """Hand back to the OS the pages of ``array``'s memory map after its first ``keep_bytes``.

    Returns False (and does nothing) when ``array`` is not on a map of :func:`_allocate` or the
    platform has no ``madvise``. The pages stay mapped: touching them again reads zeros.
    """
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    if base is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    start = np.frombuffer(base, dtype=np.uint8, count=1).ctypes.data
    offset = array.ctypes.data - start + keep_bytes
    offset = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages only
    if offset < len(base):
        base.madvise(mmap.MADV_DONTNEED, offset, len(base) - offset)
    return True


# -- the Gram matrix ------------------------------------------------------------------------------
def gram_matrix(matrix: sp.spmatrix, dtype: Any = np.float64) -> np.ndarray:
    """``X^T X`` as a new C-ordered items x items array of which the lower triangle (with the
    diagonal) is written, and above it only the diagonal blocks; the rest is zero, untouched
    memory.

    Built a block of rows at a time (:func:`block_rows`): the sparse product of a whole data set
    can hold nearly items^2 entries at 12 or more bytes each; block by block, only one block's
    sparse product and its dense copy exist beside the result. The products are summed in
    float64 (counts of co-occurrences, exact) and stored in ``dtype``.
    """
    x = sp.csc_matrix(matrix, dtype=np.float64)
    xt = x.T.tocsr()  # items x users: a block of rows of X^T is a cheap slice
    n = x.shape[1]
    gram = _allocate(n, dtype)
    rows = block_rows(n)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        # rows start:stop, columns up to the diagonal block: the lower triangle
        gram[start:stop, :stop] = (xt[start:stop] @ x[:, :stop]).toarray()
    return gram


# -- LAPACK in place ----------------------------------------------------------------------------
def _mkl() -> ctypes.CDLL | None:
    """PyTorch's own library, when it carries MKL's LAPACK with 64-bit integers (x86 builds)."""
    if getattr(_mkl, "cached", False):
        return _mkl.lib
    lib = None
    name = {"darwin": "libtorch_cpu.dylib", "win32": "torch_cpu.dll"}.get(sys.platform,
                                                                       "libtorch_cpu.so")
    try:
        candidate = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", name))
        for routine in ("dpotrf_64_", "dpotri_64_", "spotrf_64_", "spotri_64_"):
            getattr(candidate, routine)
        lib = candidate
    except (OSError, AttributeError):
        pass
    _mkl.lib, _mkl.cached = lib, True
    return lib


def _lapack(routine: str, a: np.ndarray) -> int:
    """Run ``potrf`` or ``potri`` on ``a`` in place; returns LAPACK's ``info``.

    ``a`` is C-ordered and symmetric, and only its lower triangle is read and written: to LAPACK,
    which reads memory column by column, that is the upper triangle (``uplo = 'U'``) of the same
    matrix. Both routines work in the matrix's own memory, with no temporary of its size.

    MKL's routines are called through PyTorch's library (the LAPACK that the previous torch code
    called, with 64-bit integers: ``n * n`` passes 2^31 above 46,340 items). Not SciPy's: its
    bundled multi-threaded OpenBLAS 0.3.31 crashed (SIGSEGV) in ``dpotrf``, and in plain
    ``dgemm``, above about 16,000 items on this project's AMD EPYC machines. SciPy is the fallback
    where PyTorch carries no MKL (ARM, macOS), through its in-place (``overwrite_a``) wrappers.
    """
    if not (a.flags.c_contiguous and a.flags.writeable and a.ndim == 2
            and a.shape[0] == a.shape[1] and a.dtype in (np.float32, np.float64)):
        raise ValueError("expected a writable C-ordered square float32 or float64 matrix")
    prefix = "d" if a.dtype == np.float64 else "s"
    lib = _mkl()
    if lib is not None:
        n, info = ctypes.c_int64(a.shape[0]), ctypes.c_int64(0)
        getattr(lib, f"{prefix}{routine}_64_")(
            ctypes.c_char_p(b"U"), ctypes.byref(n), a.ctypes.data_as(ctypes.c_void_p),
            ctypes.byref(n), ctypes.byref(info))
        return int(info.value)
    from scipy.linalg import lapack

    fn = getattr(lapack, f"{prefix}{routine}")
    kwargs = {"clean": 0, "overwrite_a": 1} if routine == "potrf" else {"overwrite_c": 1}
    out, info = fn(a.T, lower=0, **kwargs)  # a.T: the same memory, Fortran-ordered
    if not np.shares_memory(out, a):  # not in place after all: correct, with a transient copy
        a.T[...] = out
    return int(info)


def factorise(gram: np.ndarray, penalty: float | np.ndarray) -> np.ndarray:
    """Add ``penalty`` to the diagonal of ``gram`` and overwrite its lower triangle with the
    Cholesky factor of ``gram + diag(penalty)``; returns ``gram``."""
    n = gram.shape[0]
    gram.reshape(-1)[:: n + 1] += np.asarray(penalty, dtype=gram.dtype)  # a view: in place
    info = _lapack("potrf", gram)
    if info != 0:
        raise TrainingDivergedError(
            f"EASE: G + lam I is not positive definite (LAPACK info {info}); raise lam"
        )
    return gram


def invert(factor: np.ndarray) -> np.ndarray:
    """Overwrite the Cholesky factor (lower triangle) with the lower triangle of the inverse
    ``P`` of the matrix it factorises; returns ``factor``."""
    info = _lapack("potri", factor)
    if info != 0:
        raise TrainingDivergedError(f"EASE: the inverse failed (LAPACK info {info}); raise lam")
    return factor


def weights_from_inverse(p: np.ndarray) -> np.ndarray:
    """``B`` from the lower triangle of ``P``, written in float32 over ``p``'s own memory.

    ``B[r, c] = -P[r, c] / P[c, c]`` with a zero diagonal. Rows are formed a block at a time and
    the float32 rows ``r`` go to bytes ``4 r n`` onwards of the buffer: the first half of a float64
    buffer, the same place in a float32 one. Why this is safe: block ``[a, b)`` reads rows ``a..b``
    of ``P`` left of and on the diagonal, and the entries right of the diagonal from rows ``>= b``
    (``P`` is symmetric; its rows after the block are intact), all into the workspace before
    writing; it writes bytes below ``4 b n``, which hold float64 rows below ``b / 2``, rows
    that no later block reads. Half of a float64 buffer, the second, is then handed back to the
    operating system (when it is on a map of :func:`_allocate`): ``B`` ends as one float32 matrix,
    never held beside a float64 one. The simpler alternative, a separate float32 ``B`` written
    while ``P`` is still held, would be a second matrix at half size, 6.3 GiB at 40,981 items.

    Returns the C-ordered float32 ``(n, n)`` ``B``, a view of ``p``'s memory.
    """
    n = p.shape[0]
    scale = -1.0 / p.reshape(-1)[:: n + 1].astype(np.float64)  # column c of B: -P[:, c] / P[c, c]
    if p.dtype == np.float32:
        out = p
    else:
        out = p.reshape(-1).view(np.float32)[: n * n].reshape(n, n)
    rows = block_rows(n)
    work = torch.empty((rows, n), dtype=torch.float64)
    tp = torch.from_numpy(p)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        w = work[: stop - start]
        w[:, :start].copy_(tp[start:stop, :start])
        w[:, stop:].copy_(tp[stop:, start:stop].T)  # torch: a blocked, threaded transpose
        lower = torch.tril(tp[start:stop, start:stop])  # its upper part: from the lower
        w[:, start:stop] = lower
        w[:, start:stop] += torch.tril(lower, -1).T
        wn = w.numpy()
        wn *= scale
        wn[np.arange(stop - start), np.arange(start, stop)] = 0.0
        out[start:stop] = wn  # float32, over memory no later block reads (see above)
    del tp
    if p.dtype == np.float64:
        _release_tail(p, n * n * 4)
    return out


def ease_weights(gram: np.ndarray, lam: float | np.ndarray) -> np.ndarray:
    """The EASE weights ``B`` from a Gram matrix; ``gram``'s memory becomes ``B``'s.

    ``gram`` is a C-ordered float64 (or float32) items x items array whose lower triangle holds
    ``X^T X`` (as :func:`gram_matrix` returns it; a full symmetric matrix will do). Returns float32
    ``B`` with ``B_ij = -P_ij / P_jj`` and a zero diagonal, where ``P = (gram + diag(lam))^-1``:
    ``lam`` is one L2 weight for every item (EASE) or a vector of one weight per item (EDLAE,
    :mod:`aerec.models.edlae`). The result is a view of ``gram``'s memory, which is no longer the
    Gram matrix.
    """
    return weights_from_inverse(invert(factorise(gram, lam)))


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

    def _fit(self, matrix: sp.csr_matrix, validation: Any = None) -> None:
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
        precision = check_memory(x.shape[1], nnz=x.nnz, precision=self.config.precision,
                                 model=self.name.upper())
        if precision != self.config.precision:
            if precision == "fp32":
                warnings.warn(f"{self.name}: float64 would not fit in memory at {x.shape[1]:,} "
                              "items; solving in float32 (precision=auto)", PrecisionNotice,
                              stacklevel=2)
        self.precision_ = precision
        self.weights_ = None  # a refit must not hold the old B beside the new buffer
        gram = gram_matrix(x, dtype=_DTYPES[precision])
        del x
        penalty = self._penalty(np.diagonal(gram).copy())
        self.weights_ = torch.from_numpy(ease_weights(gram, penalty))
        self.items_ = items

    def resolved_for(self, train: Any) -> dict[str, Any]:
        """The precision ``auto`` takes on this machine for ``train`` (fp64 where it fits)."""
        if self.config.precision != "auto":
            return {}
        x = train.matrix
        n = x.shape[1] if self.config.max_items is None else min(x.shape[1], self.config.max_items)
        try:
            return {"precision": check_memory(n, nnz=x.nnz, precision="auto",
                                              model=self.name.upper())}
        except ConfigError:
            return {}  # the fit says why, in one line

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

    def _item_similarities(self, cols: np.ndarray) -> torch.Tensor:
        """Row ``i`` of the item-item weights ``B``: the score a history of item ``i`` alone gives
        every item, so EASE's similar items are what it would recommend next to ``i``.

        No second definition is needed: ``x B`` is the model, and for a one-item history it is
        that item's row (see docs/similar-and-export.md).
        """
        from aerec.models.similarity import weight_rows

        return weight_rows(self, cols)
