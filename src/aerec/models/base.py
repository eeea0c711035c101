"""The base class every aerec model derives from.

In the spirit of *implicit* and scikit-learn: the constructor only stores hyperparameters (as a typed
config dataclass), ``fit`` learns and returns ``self``, learned state ends in ``_``, and every model
scores a *batch* of users from their item histories alone (fold-in), so users the model never saw
are scored like any other.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import make_config
from aerec.data.interactions import Interactions, as_interactions
from aerec.errors import DataError, NotFittedError
from aerec.models.raw_ids import RawIdMixin
from aerec.models.similarity import SimilarItemsMixin


class Recommender(RawIdMixin, SimilarItemsMixin):
    """Base class: hyperparameters in ``config``, ``fit`` / ``score`` / ``recommend`` / ``save``.

    Subclasses set ``name`` (the registry key), ``Config`` (a dataclass of hyperparameters with
    defaults), ``implicit`` (whether the model wants binarised input) and implement ``_score``,
    the two persistence hooks ``_get_state`` / ``_set_state``, and either ``_fit`` (a closed form,
    fitted in one call) or, for models that learn by epochs, the hooks of
    :class:`~aerec.models.torch_base.TorchRecommender` that :class:`aerec.training.Trainer` calls.

    The contract points one way: the Trainer calls the model's hooks, in this order, and the
    model never calls the Trainer:

    1. ``_begin_fit(train)``: the model records the training vocabulary; returns the data;
    2. ``_fit(matrix, validation)`` (closed forms), ``_fit_members(matrix, validation,
       fit_member)`` (ensembles, which fit each member with the run's options), or the training
       loop with its hooks (``trains_by_epochs``);
    3. ``_end_fit(data)``: the model keeps what it needs of its training users.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    #: True for models of implicit feedback (ranked by Recall / NDCG); False for rating predictors.
    implicit: ClassVar[bool] = True
    #: Whether a given split's refit on the whole training rows applies (False where the model
    #: itself is chosen on the validation carve, as a blend's weights are).
    refittable: ClassVar[bool] = True
    #: Whether the model learns by epochs in the Trainer's loop (the torch models); the others
    #: are fitted in one call of ``_fit`` and take no run options.
    trains_by_epochs: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.config = self._make_config(params)

    def _make_config(self, params: dict[str, Any]) -> Any:
        """``Config`` from ``params``, checked and converted; a value that needed no conversion
        is kept as the very object given (scikit-learn's ``clone`` checks identity)."""
        config = make_config(self.Config, params, owner=self.name or type(self).__name__)
        given = {k: v for k, v in params.items()
                 if type(v) is type(getattr(config, k)) and v == getattr(config, k)}
        return dataclasses.replace(config, **given) if given else config

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, train: Interactions | sp.csr_matrix | Any, validation: Any = None, *,
            progress: bool | None = None) -> Recommender:
        """Learn from ``train``; ``validation`` is a :class:`HeldOut` for selection.

        Parameters
        ----------
        train : Interactions, scipy.sparse matrix or data frame
            An :class:`Interactions`, a users x items scipy.sparse matrix, or a pandas DataFrame
            of interactions (columns found by their common names, see
            :meth:`Interactions.from_pandas`).
        validation : HeldOut, optional
            Held-out users that select the best epoch.
        progress : bool, optional
            A progress bar over epochs on stderr (models that train by epochs). ``None``, the
            default, shows it when a terminal or a notebook is attached
            (:func:`aerec.terminal.interactive`); ``False`` never.

        Other run options (a checkpoint to resume from, callbacks, early stopping) belong to
        :class:`aerec.training.Trainer`: ``Trainer(patience=20).fit(model, train, validation)``.

        Returns
        -------
        self
        """
        from aerec.terminal import interactive
        from aerec.training import Trainer

        show = interactive() if progress is None else bool(progress)
        return Trainer(progress=show).fit(self, train, validation)

    # -- the hooks Trainer.fit calls ------------------------------------------------------------
    def _begin_fit(self, train: Any) -> Interactions:
        """Record the training data's item vocabulary; returns the data as :class:`Interactions`."""
        data = as_interactions(train)
        self.item_ids_ = data.item_ids
        self.n_items_ = data.n_items
        # training users per item: the popularity fallback of a history with no known item
        self.item_counts_ = np.bincount(data.matrix.indices, minlength=data.n_items)
        from aerec.models.storage import untrained_items

        self.untrained_items_ = untrained_items(data.item_ids, self.item_counts_)
        return data

    def _fit(self, matrix: sp.csr_matrix, validation: Any) -> None:
        """Learn from the CSR ``matrix`` in one call (closed-form models)."""
        raise NotImplementedError

    def _end_fit(self, data: Interactions) -> None:
        """After learning: keep the training users for ``recommend_users`` (in memory, not saved
        with the model)."""
        self.set_known_users(data)

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
        ids, scores = self._top_n(user_items, n, exclude_seen=exclude_seen)
        return ids.cpu().numpy(), scores.cpu().numpy()

    def _top_n(self, user_items: sp.csr_matrix, n: int, *, exclude_seen: bool = True,
               blocked: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, scores)`` of the top ``n`` items of each row (at most all the items), with the
        history (``exclude_seen``) and the ``blocked`` items (bool, ``(items,)`` or ``(batch,
        items)``) given ``-inf``. Here from the whole score matrix; models that can rank without it
        override this (the item-output models rank over item tiles)."""
        self._check_fitted()
        scores = self.score_tensor(user_items).float()
        if exclude_seen and user_items.nnz:
            rows = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
            scores[torch.from_numpy(rows), torch.from_numpy(user_items.indices.astype(np.int64))] = (
                -torch.inf
            )
        if blocked is not None:
            scores.masked_fill_(torch.from_numpy(blocked).to(scores.device), -torch.inf)
        top = torch.topk(scores, min(int(n), scores.shape[1]), dim=1)
        return top.indices, top.values

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

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters by name, as scikit-learn's estimators give them.

        The values are the model's own (a tuple stays a tuple), so that ``sklearn.base.clone``
        finds the constructor kept them unchanged; :func:`aerec.config.config_to_dict` gives
        the JSON form.

        Parameters
        ----------
        deep : bool
            Accepted for scikit-learn's protocol; a model holds no nested estimators, so it
            changes nothing.
        """
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}

    def set_params(self, **params: Any) -> Recommender:
        """Change hyperparameters, checked as the constructor checks them; returns ``self``.

        A fitted model keeps what it learned until it is fitted again.

        Raises
        ------
        ConfigError
            For an unknown name (listing the valid ones) or a value that cannot be used; the
            model is then left unchanged.
        """
        self.config = self._make_config({**self.get_params(), **params})
        return self

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
