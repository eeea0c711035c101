"""The one data type at aerec's core: a users x items CSR matrix with its id vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from aerec.errors import DataError, EmptyDataError


@dataclass(frozen=True, eq=False)
class Interactions:
    """User-item interactions as a CSR matrix plus the raw ids of its rows and columns.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix
        ``(n_users, n_items)`` float32, canonical (sorted indices, no duplicates). Its values are
        the ratings for explicit data and ones for implicit data.
    user_ids, item_ids : numpy.ndarray of str
        Raw id of each row and column (``user_ids[u]`` is the id of row ``u``).
    timestamps : numpy.ndarray of int64, optional
        One Unix timestamp per stored value, aligned with ``matrix.data``.
    explicit : bool
        Whether ``matrix.data`` holds ratings (True) or presence (False).
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    explicit: bool = True
    item_titles: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.matrix
        if not sp.issparse(m) or m.format != "csr":
            raise TypeError("Interactions.matrix must be a scipy.sparse CSR matrix")
        if m.dtype != np.float32:
            raise TypeError(f"Interactions.matrix must be float32, got {m.dtype}")
        if m.shape != (len(self.user_ids), len(self.item_ids)):
            raise DataError(
                f"matrix shape {m.shape} does not match {len(self.user_ids)} user ids "
                f"and {len(self.item_ids)} item ids"
            )
        if self.timestamps is not None and len(self.timestamps) != m.nnz:
            raise DataError("timestamps must hold one value per stored interaction")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        *,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        item_titles: dict[str, str] | None = None,
    ) -> Interactions:
        """Build from parallel arrays of raw ids (one entry per interaction).

        ``users`` and ``items`` hold raw ids (any type; they are turned into strings). When
        ``user_ids`` / ``item_ids`` are given they fix the vocabulary and its order, and every id
        must be in it; otherwise ids are sorted (numerically when all are integers). Duplicate
        (user, item) pairs must have been resolved before (see
        :func:`aerec.data.preprocess.drop_duplicates`).
        """
        users = _as_id_strings(users)
        items = _as_id_strings(items)
        if len(users) == 0:
            raise EmptyDataError("no interactions")
        u_vocab = _vocabulary(users) if user_ids is None else _as_id_strings(user_ids)
        i_vocab = _vocabulary(items) if item_ids is None else _as_id_strings(item_ids)
        rows = _lookup(u_vocab, users, "user")
        cols = _lookup(i_vocab, items, "item")
        explicit = ratings is not None
        values = np.ones(len(rows), np.float32) if ratings is None else np.asarray(ratings, np.float32)
        return cls.from_indices(
            rows, cols, values, timestamps, user_ids=u_vocab, item_ids=i_vocab,
            explicit=explicit, item_titles=item_titles or {},
        )

    @classmethod
    def from_indices(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        timestamps: np.ndarray | None,
        *,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        explicit: bool,
        item_titles: dict[str, str] | None = None,
    ) -> Interactions:
        """Build from row / column indices into given vocabularies (no duplicate pairs)."""
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        shape = (len(user_ids), len(item_ids))
        # Sort by (row, col) once so that timestamps stay aligned with the CSR values. A stable
        # argsort of one combined key gives lexsort's order 3-5x faster (ML-20M: 20M pairs).
        order = np.argsort(rows * max(shape[1], 1) + cols, kind="stable")
        rows, cols = rows[order], cols[order]
        if len(rows) > 1 and np.any((rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])):
            raise DataError("duplicate (user, item) pairs; resolve them with drop_duplicates first")
        indptr = np.zeros(shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
        matrix = sp.csr_matrix(
            (np.asarray(values, np.float32)[order], cols.astype(np.int32), indptr), shape=shape
        )
        ts = None if timestamps is None else np.asarray(timestamps, np.int64)[order]
        return cls(matrix, np.asarray(user_ids), np.asarray(item_ids), ts, explicit, item_titles or {})

    # -- views ----------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return self.matrix.nnz

    @cached_property
    def user_index(self) -> dict[str, int]:
        """Raw user id -> row."""
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Raw item id -> column."""
        return {u: i for i, u in enumerate(self.item_ids.tolist())}

    def binary(self) -> sp.csr_matrix:
        """The matrix with every stored value set to 1 (float32)."""
        m = self.matrix.copy()
        m.data = np.ones_like(m.data)
        return m

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """``(rows, cols, values, timestamps)`` of the stored interactions, in CSR order."""
        coo = self.matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data, self.timestamps

    def select_users(self, rows: np.ndarray) -> Interactions:
        """A new Interactions with the given rows (in that order), same item vocabulary."""
        rows = np.asarray(rows, np.int64)
        matrix = self.matrix[rows]
        matrix.sort_indices()
        ts = None
        if self.timestamps is not None:
            ts = np.concatenate(
                [self.timestamps[self.matrix.indptr[r]:self.matrix.indptr[r + 1]] for r in rows]
            ) if len(rows) else np.zeros(0, np.int64)
        return Interactions(matrix.astype(np.float32), self.user_ids[rows], self.item_ids, ts,
                            self.explicit, self.item_titles)

    def select_items(self, cols: np.ndarray) -> Interactions:
        """A new Interactions keeping only the given columns (in that order), same users."""
        cols = np.asarray(cols, np.int64)
        rows, c, values, ts = self.to_arrays()
        new_col = np.full(self.n_items, -1, np.int64)
        new_col[cols] = np.arange(len(cols))
        keep = new_col[c] >= 0
        return Interactions.from_indices(
            rows[keep], new_col[c[keep]], values[keep], None if ts is None else ts[keep],
            user_ids=self.user_ids, item_ids=self.item_ids[cols], explicit=self.explicit,
            item_titles=self.item_titles,
        )

    def mask(self, keep: np.ndarray) -> Interactions:
        """A new Interactions keeping the stored interactions where ``keep`` (CSR order) is True."""
        rows, cols, values, ts = self.to_arrays()
        keep = np.asarray(keep, bool)
        return Interactions.from_indices(
            rows[keep], cols[keep], values[keep], None if ts is None else ts[keep],
            user_ids=self.user_ids, item_ids=self.item_ids, explicit=self.explicit,
            item_titles=self.item_titles,
        )

    def __repr__(self) -> str:
        kind = "explicit" if self.explicit else "implicit"
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} {kind})"


def _as_id_strings(ids: np.ndarray) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(str)
    if arr.dtype.kind == "f":
        # Integral floats (as pandas reads an int column with gaps) print without ".0".
        if np.all(np.mod(arr, 1) == 0):
            return arr.astype(np.int64).astype(str)
        return arr.astype(str)
    return arr.astype(str)


def _vocabulary(ids: np.ndarray) -> np.ndarray:
    uniq = np.unique(ids)
    try:
        return uniq[np.argsort(uniq.astype(np.int64), kind="stable")]
    except ValueError:
        return uniq


def _lookup(vocab: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    order = np.argsort(vocab, kind="stable")
    pos = np.searchsorted(vocab[order], ids)
    pos = np.clip(pos, 0, len(vocab) - 1)
    found = vocab[order][pos] == ids
    if not np.all(found):
        missing = ids[~found][:5].tolist()
        raise DataError(f"{what} ids not in the vocabulary: {missing}")
    return order[pos]
