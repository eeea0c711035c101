"""The base class every aerec model derives from.

In the spirit of *implicit* and scikit-learn: the constructor only stores hyperparameters (as a typed
config dataclass), ``fit`` learns and returns ``self``, learned state ends in ``_``, and every model
scores a *batch* of users from their item histories alone (fold-in), so users the model never saw
are scored like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import config_to_dict, make_config
from aerec.data.interactions import Interactions, as_interactions
from aerec.errors import DataError, NotFittedError
from aerec.models.raw_ids import RawIdMixin
from aerec.models.similarity import SimilarItemsMixin


class Recommender(RawIdMixin, SimilarItemsMixin):
    """Base class: hyperparameters in ``config``, ``fit`` / ``score`` / ``recommend`` / ``save``.

    Subclasses set ``name`` (the registry key), ``Config`` (a dataclass of hyperparameters with
    defaults), ``implicit`` (whether the model wants binarised input) and implement ``_fit``,
    ``_score`` and the two persistence hooks ``_get_state`` / ``_set_state``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    #: True for models of implicit feedback (ranked by Recall / NDCG); False for rating predictors.
    implicit: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self.config = make_config(self.Config, params, owner=self.name or type(self).__name__)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, train: Interactions | sp.csr_matrix | Any, validation: Any = None) -> Recommender:
        """Learn from ``train``; ``validation`` is a :class:`HeldOut` for selection.

        ``train`` is an :class:`Interactions`, a users x items scipy.sparse matrix, or a pandas
        DataFrame of interactions (columns found by their common names, see
        :meth:`Interactions.from_pandas`).

        Run options (a checkpoint to resume from, a progress bar, callbacks, early stopping)
        belong to :class:`aerec.training.Trainer`: ``Trainer(progress=True).fit(model, train,
        validation)``.

        Returns
        -------
        self
        """
        from aerec.training import Trainer

        return self._fit_with(Trainer(), train, validation)

    def _fit_with(self, trainer: Any, train: Any, validation: Any) -> Recommender:
        """``fit`` with a given :class:`~aerec.training.Trainer` (what ``Trainer.fit`` calls)."""
        data = as_interactions(train)
        self.item_ids_ = data.item_ids
        self.n_items_ = data.n_items
        self._fit(data.matrix, validation, trainer)
        # recommend_users() for the training users (kept in memory, not saved with the model)
        self.set_known_users(data)
        return self

    def _fit(self, matrix: sp.csr_matrix, validation: Any, trainer: Any) -> None:
        """Learn from the CSR ``matrix``; models that train by epochs hand it to ``trainer``."""
        raise NotImplementedError

    # -- scoring --------------------------------------------------------------------------------
    def score_tensor(self, user_items: sp.csr_matrix) -> torch.Tensor:
        """Scores of every item for each row of ``user_items`` (batch x items), as a tensor.

        Higher is better. The tensor may live on the model's device.
        """
        self._check_fitted()
        user_items = self._check_batch(user_items)
        return self._score(user_items)

    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        raise NotImplementedError

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores (batch x items) for the histories in ``user_items``."""
        return self.score_tensor(user_items).float().cpu().numpy()

    def recommend(
        self, user_items: sp.csr_matrix, n: int = 10, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for each row of ``user_items``.

        Parameters
        ----------
        user_items : scipy.sparse.csr_matrix
            Histories (batch x items), in the column order of the training data.
        n : int
            Number of items per user.
        exclude_seen : bool
            Leave each user's history out of the ranking.

        Returns
        -------
        ids, scores : numpy.ndarray
            ``(batch, n)`` item column indices sorted by descending score, and their scores.
        """
        user_items = self._check_batch(user_items)
        scores = self.score_tensor(user_items).float()
        if exclude_seen and user_items.nnz:
            rows = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
            scores[torch.from_numpy(rows), torch.from_numpy(user_items.indices.astype(np.int64))] = (
                -torch.inf
            )
        n = min(int(n), scores.shape[1])
        top = torch.topk(scores, n, dim=1)
        return top.indices.cpu().numpy(), top.values.cpu().numpy()

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model to a directory: ``model.json`` and ``model.safetensors``."""
        from aerec.models.storage import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> Recommender:
        """Load a model saved by :meth:`save` (any registered class when called on the base)."""
        from aerec.models.storage import load_model

        model = load_model(path, device=device)
        if cls is not Recommender and not isinstance(model, cls):
            raise DataError(f"{path}: holds a {model.name} model, not {cls.name}")
        return model

    def _get_state(self) -> dict[str, Any]:
        """Learned tensors and values (JSON-able or tensors) that rebuild the fitted model."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-ready dict."""
        return config_to_dict(self.config)

    def resolved_params(self, n_users: int) -> dict[str, Any]:
        """Settings that resolve from the data (Mult-VAE's automatic anneal length), for a
        training set of ``n_users`` users; recorded in a run's ``run.json``."""
        return {}

    def resolved_for(self, train: Interactions) -> dict[str, Any]:
        """Settings that resolve from the training data ``train`` (its users and items: SANSA's
        density and ELSA's rank from a memory budget); by default :meth:`resolved_params`."""
        return self.resolved_params(train.n_users)

    # -- checks -------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{self.name} is not fitted: call fit() or load() first")

    def _check_batch(self, user_items: Any) -> sp.csr_matrix:
        self._check_fitted()
        if isinstance(user_items, Interactions):
            user_items = user_items.matrix
        if not sp.issparse(user_items):
            raise TypeError("user_items must be a scipy.sparse matrix (users x items)")
        if user_items.shape[1] != self.n_items_:
            raise DataError(
                f"user_items has {user_items.shape[1]} columns; the model knows {self.n_items_} items"
            )
        user_items = user_items.tocsr().astype(np.float32, copy=False)
        if not user_items.has_sorted_indices:
            user_items = user_items.sorted_indices()
        return user_items

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
