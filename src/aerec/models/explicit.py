"""Pieces shared by the rating predictors (explicit feedback): AutoRec, the deep autoencoder and
biased matrix factorisation.

* :func:`masked_squared_error`: the loss of every model here counts only the observed ratings; an
  unobserved entry of the output gets no gradient.
* :class:`ExplicitModel`: a mixin for :class:`~aerec.models.base.Recommender` subclasses that
  records the rating range, the global mean and which items have training ratings, evaluates RMSE
  and MAE (:meth:`ExplicitModel.evaluate_ratings`), selects epochs on the validation RMSE (smaller
  is better), and applies the fallback rating.
* :func:`ridge_fold_in`: the closed-form fold-in of a new user for models whose prediction is linear
  in per-user parameters (item-based AutoRec, matrix factorisation).

Fallback rating
---------------
A user who shows no ratings, and an item with no rating in the training data, get the **global
mean of the training ratings** (the AutoRec paper uses a default rating of 3 for such cases; the
mean is the least-squares constant and adapts to half-star scales). Predictions used for RMSE and
MAE are clipped to the training data's rating range.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions, as_interactions
from aerec.errors import EmptyDataError
from aerec.models.sparse import SparseBatch

__all__ = ["ExplicitModel", "masked_squared_error", "ridge_fold_in", "activation"]

#: Entries of the ``(rows, k + 1, k + 1)`` systems solved at once by :func:`ridge_fold_in`.
_RIDGE_CHUNK_ELEMENTS = 1 << 24


def masked_squared_error(output: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Sum of ``(output - rating)^2`` over the observed entries of ``batch`` only.

    Parameters
    ----------
    output : torch.Tensor
        Dense ``(batch rows, columns)`` reconstruction.
    batch : SparseBatch
        The observed ratings (its pattern and values).

    Returns
    -------
    torch.Tensor
        A scalar. Entries of ``output`` outside the pattern do not enter it, so their gradient is
        exactly zero.
    """
    predicted = output[batch.rows, batch.col]
    return ((predicted - batch.values) ** 2).sum()


def activation(name: str):
    """The element-wise function called ``name`` (identity, sigmoid, tanh, relu, elu, selu)."""
    functions = {
        "identity": lambda x: x,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "elu": torch.nn.functional.elu,
        "selu": torch.selu,
    }
    return functions[name]


def ridge_fold_in(
    features: torch.Tensor,
    history: sp.csr_matrix,
    alpha: float | np.ndarray,
    bias_alpha: float | np.ndarray,
    offsets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-user weights ``w`` and bias ``c`` that minimise a ridge objective over the user's ratings.

    For each row ``u`` of ``history`` with observed items ``O_u``::

        sum_{i in O_u} (r_ui - offsets_i - features_i . w - c)^2 + alpha_u ||w||^2 + bias_alpha_u c^2

    solved in closed form (float64). This is the part of a model's training objective that involves
    one user's own parameters when everything else is held fixed, so a new user is folded in by
    exactly the criterion the training users' parameters were fitted by.

    Parameters
    ----------
    features : torch.Tensor
        ``(n_items, k)`` item features (codes of item-based AutoRec, item factors of MF).
    history : scipy.sparse.csr_matrix
        ``(b, n_items)`` ratings of the users to fold in.
    alpha, bias_alpha : float or numpy.ndarray
        Penalties on ``w`` and on ``c``, scalars or one per row. ``alpha`` is raised to at least
        1e-8 so that the system is always solvable.
    offsets : torch.Tensor, optional
        ``(n_items,)`` part of the prediction that does not depend on the user.

    Returns
    -------
    w, c : torch.Tensor
        ``(b, k)`` and ``(b,)`` float64 on the device of ``features``. Rows without ratings get
        zeros.
    """
    device = features.device
    n_rows, k = history.shape[0], features.shape[1]
    feats = torch.cat([features.double(), torch.ones(features.shape[0], 1, device=device,
                                                     dtype=torch.float64)], dim=1)
    off = None if offsets is None else offsets.double()
    alpha = np.broadcast_to(np.maximum(np.asarray(alpha, np.float64), 1e-8), (n_rows,))
    bias_alpha = np.broadcast_to(np.asarray(bias_alpha, np.float64), (n_rows,))
    lengths = np.diff(history.indptr)
    w = torch.zeros(n_rows, k, dtype=torch.float64, device=device)
    c = torch.zeros(n_rows, dtype=torch.float64, device=device)
    # Rows sorted by length are solved in chunks, so that padding stays small and the padded
    # features and the systems of a chunk stay under a fixed number of entries.
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    dim = k + 1
    start = 0
    while start < len(order):
        stop = start + 1
        while (stop < len(order) and (stop - start + 1) * max(int(lengths[order[stop]]), dim) * dim
               <= _RIDGE_CHUNK_ELEMENTS):
            stop += 1
        rows = order[start:stop]
        sol = _solve_chunk(feats, off, history[rows], alpha[rows], bias_alpha[rows])
        index = torch.from_numpy(rows).to(device)
        w[index] = sol[:, :k]
        c[index] = sol[:, k]
        start = stop
    return w, c


def _solve_chunk(feats, offsets, chunk: sp.csr_matrix, alpha, bias_alpha) -> torch.Tensor:
    device = feats.device
    lengths = np.diff(chunk.indptr)
    n, longest, dim = chunk.shape[0], int(lengths.max()), feats.shape[1]
    slot = np.arange(chunk.nnz) - np.repeat(chunk.indptr[:-1], lengths)
    row = np.repeat(np.arange(n), lengths)
    cols = torch.from_numpy(chunk.indices.astype(np.int64)).to(device)
    x = torch.zeros(n, longest, dim, dtype=torch.float64, device=device)
    y = torch.zeros(n, longest, dtype=torch.float64, device=device)
    at = (torch.from_numpy(row).to(device), torch.from_numpy(slot).to(device))
    x[at] = feats[cols]
    target = torch.from_numpy(chunk.data.astype(np.float64)).to(device)
    y[at] = target if offsets is None else target - offsets[cols]
    penalty = np.concatenate([np.repeat(alpha[:, None], dim - 1, 1), bias_alpha[:, None]], axis=1)
    gram = x.transpose(1, 2) @ x + torch.diag_embed(torch.from_numpy(penalty).to(device))
    rhs = (x.transpose(1, 2) @ y.unsqueeze(2)).squeeze(2)
    return torch.linalg.solve(gram, rhs)


class ExplicitModel:
    """Mixin for rating predictors; put it before the model's base class.

    It sets ``implicit = False`` and selection on the validation RMSE (minimised), and adds:

    * ``rating_range_`` (min and max training rating), ``global_mean_`` (the fallback rating) and
      ``item_counts_`` (training ratings per item), recorded by :meth:`fit`;
    * :meth:`evaluate_ratings` (RMSE and MAE of a :class:`~aerec.data.splits.HeldOut`, predictions
      clipped to the rating range) and :meth:`predict` (ratings at given entries);
    * the fallback rating in every score: columns of items without training ratings and rows
      without any rating hold ``global_mean_``.

    Subclasses whose predictions need the training users' own parameters (item-based AutoRec, MF)
    set ``uses_user_ids = True``: the training user ids are then kept (``user_ids_``) and saved, and
    :meth:`_predict_entries` may map held-out rows to training users by id.
    """

    implicit: ClassVar[bool] = False
    selection_metric: ClassVar[str] = "rmse"
    selection_larger_is_better: ClassVar[bool] = False
    uses_user_ids: ClassVar[bool] = False
    #: Users predicted per call of the network when evaluating.
    predict_batch_size: ClassVar[int] = 1024

    def _begin_fit(self, train: Any) -> Interactions:
        """Record the rating statistics of ``train``, then its vocabulary as the base class does."""
        train = as_interactions(train)
        matrix = train.matrix
        if matrix.nnz == 0:
            raise EmptyDataError(f"{self.name}: the training data holds no ratings")
        values = matrix.data.astype(np.float64)
        self.rating_range_ = (float(values.min()), float(values.max()))
        self.global_mean_ = float(values.mean())
        self.item_counts_ = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.int64)
        self.user_ids_ = np.asarray(train.user_ids, dtype=str)
        return super()._begin_fit(train)

    # -- prediction -----------------------------------------------------------------------------
    def score_tensor(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Predicted ratings of every item for each history (batch x items), unclipped.

        Items without training ratings and rows without ratings hold the fallback rating.
        """
        user_items = self._check_batch(user_items)
        scores = super().score_tensor(user_items)
        return self._fill_fallback(scores, user_items)

    def predict(self, fold_in: Interactions | sp.csr_matrix, rows: np.ndarray, cols: np.ndarray,
                *, clip: bool = True) -> np.ndarray:
        """Predicted ratings at the entries ``(rows[j], cols[j])`` given the histories ``fold_in``.

        Parameters
        ----------
        fold_in : Interactions or scipy.sparse.csr_matrix
            ``(n_users, n_items)`` histories; ``rows`` index into it. With an ``Interactions``,
            models with ``uses_user_ids`` recognise training users by id.
        rows, cols : numpy.ndarray
            Entries to predict.
        clip : bool
            Clip to the training rating range.

        Returns
        -------
        numpy.ndarray
            float64 predictions, one per entry.
        """
        self._check_fitted()
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        pred = self._predict_entries(fold_in, rows, cols)
        return np.clip(pred, *self.rating_range_) if clip else pred

    def evaluate_ratings(self, heldout: Any) -> dict[str, float]:
        """RMSE and MAE on ``heldout.targets`` from ``heldout.fold_in``, clipped to the rating range.

        Returns
        -------
        dict
            ``rmse``, ``mae`` and ``n_ratings``.
        """
        from aerec.evaluation import evaluate_ratings

        self._check_fitted()
        fold_in = heldout.fold_in
        return evaluate_ratings(
            lambda _matrix, rows, cols: self._predict_entries(fold_in, rows, cols),
            fold_in, heldout.targets, clip=self.rating_range_,
        )

    def _predict_entries(self, fold_in: Interactions | sp.csr_matrix, rows: np.ndarray,
                         cols: np.ndarray) -> np.ndarray:
        """Unclipped predictions at the given entries: scores of the rows involved, gathered."""
        matrix = fold_in.matrix if isinstance(fold_in, Interactions) else sp.csr_matrix(fold_in)
        pred = np.empty(len(rows), np.float64)
        users, local = np.unique(rows, return_inverse=True)
        for start in range(0, len(users), self.predict_batch_size):
            part = users[start:start + self.predict_batch_size]
            scores = self.score_tensor(matrix[part])
            here = (local >= start) & (local < start + len(part))
            at_rows = torch.from_numpy(local[here] - start).to(scores.device)
            at_cols = torch.from_numpy(cols[here]).to(scores.device)
            pred[here] = scores[at_rows, at_cols].double().cpu().numpy()
        return pred

    def _fill_fallback(self, scores: torch.Tensor, user_items: sp.csr_matrix) -> torch.Tensor:
        unknown = torch.from_numpy(np.flatnonzero(self.item_counts_ == 0)).to(scores.device)
        if len(unknown):
            scores[:, unknown] = self.global_mean_
        empty = torch.from_numpy(np.flatnonzero(np.diff(user_items.indptr) == 0)).to(scores.device)
        if len(empty):
            scores[empty] = self.global_mean_
        return scores

    def _apply_fallback_entries(self, pred: np.ndarray, matrix: sp.csr_matrix, rows: np.ndarray,
                                cols: np.ndarray) -> np.ndarray:
        """The fallback rating at entries of unknown items or of rows without ratings."""
        fallback = (self.item_counts_[cols] == 0) | (np.diff(matrix.indptr)[rows] == 0)
        pred[fallback] = self.global_mean_
        return pred

    def _training_rows(self, fold_in: Interactions | sp.csr_matrix) -> np.ndarray:
        """Training row of each row of ``fold_in`` (by user id), -1 for users not trained on."""
        if not isinstance(fold_in, Interactions):
            return np.full(fold_in.shape[0], -1, np.int64)
        index = {u: i for i, u in enumerate(self.user_ids_.tolist())}
        return np.array([index.get(u, -1) for u in fold_in.user_ids.tolist()], np.int64)

    # -- selection ------------------------------------------------------------------------------
    def _validate(self, validation: Any, rank: int = 0, world_size: int = 1) -> dict[str, float]:
        # Every process evaluates all the validation users (RMSE is cheap): the same figure.
        metrics = self.evaluate_ratings(validation)
        return {"val_rmse": metrics["rmse"], "val_mae": metrics["mae"]}

    # -- persistence ----------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = super()._get_state()
        state["explicit"] = {
            "rating_range": list(self.rating_range_),
            "global_mean": self.global_mean_,
            "item_counts": torch.from_numpy(self.item_counts_),
            "user_ids": self.user_ids_.tolist() if self.uses_user_ids else None,
            "n_users": int(len(self.user_ids_)),
        }
        return state

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        explicit = state["explicit"]
        self.rating_range_ = tuple(float(v) for v in explicit["rating_range"])
        self.global_mean_ = float(explicit["global_mean"])
        self.item_counts_ = explicit["item_counts"].cpu().numpy().astype(np.int64)
        ids = explicit["user_ids"]
        self.user_ids_ = (np.asarray(ids, dtype=str) if ids is not None
                          else np.arange(explicit["n_users"]).astype(str))
        super()._set_state(state, device)
