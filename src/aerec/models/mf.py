"""Biased matrix factorisation, the baseline of every rating table: Koren, Bell & Volinsky, "Matrix
Factorization Techniques for Recommender Systems", IEEE Computer 2009.

``r_ui ~ mu + b_u + b_i + p_u . q_i`` with ``mu`` the training mean (fixed), fitted by minimising::

    sum over training ratings (r_ui - prediction)^2 + lam (||p_u||^2 + ||q_i||^2 + b_u^2 + b_i^2)

(the penalty inside the sum, once per rating, as in the paper). Training uses the shared torch loop
(epochs, validation RMSE selection, checkpoints, resume); one epoch is a pass over the training
*ratings* in a random order in mini-batches, each batch's loss being the mean of the summand above.

Fold-in: a user the model was not trained on gets the ``p_u``, ``b_u`` that minimise the same
objective with the item parameters fixed, a ridge regression on the user's ratings with penalty
``lam * n_u`` (closed form; :func:`~aerec.models.explicit.ridge_fold_in`). Training users are
recognised by id where histories come with ids (evaluation) and use their own parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from aerec.data.interactions import Interactions
from aerec.models.explicit import ExplicitModel, ridge_fold_in
from aerec.models.torch_base import TorchRecommender, make_adam
from aerec.training import TrainState


class BiasedMFNet(nn.Module):
    """``mu + b_u + b_i + p_u . q_i`` for given (user, item) index pairs: maths only."""

    def __init__(self, n_users: int, n_items: int, factors: int, global_mean: float,
                 init_std: float, generator: torch.Generator) -> None:
        super().__init__()
        self.user_factors = nn.Parameter(torch.randn(n_users, factors, generator=generator) * init_std)
        self.item_factors = nn.Parameter(torch.randn(n_items, factors, generator=generator) * init_std)
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors[users] * self.item_factors[items]).sum(dim=1)
        return self.global_mean + self.user_bias[users] + self.item_bias[items] + dot

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``||p_u||^2 + ||q_i||^2 + b_u^2 + b_i^2`` of each (user, item) pair."""
        p, q = self.user_factors[users], self.item_factors[items]
        return ((p * p).sum(1) + (q * q).sum(1) + self.user_bias[users] ** 2
                + self.item_bias[items] ** 2)


@dataclass(frozen=True)
class BiasedMFConfig:
    """Hyperparameters of biased MF (defaults chosen on the validation RMSE of ML-100K u1).

    Parameters
    ----------
    factors : int
        Latent dimensions.
    lam : float
        Penalty per rating on the four parameter groups it touches.
    optimizer : str
        ``adam`` or ``sgd`` (plain stochastic gradient descent, as in the paper).
    lr : float
        Learning rate.
    init_std : float
        Standard deviation of the initial factors (biases start at zero).
    batch_size : int
        Ratings per step.
    epochs : int
        Passes over the ratings; the epoch with the lowest validation RMSE is kept.
    """

    factors: int = 64
    lam: float = 0.1
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.002
    init_std: float = 0.1
    batch_size: int = 1024
    epochs: int = 40
    seed: int = 98765
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.factors < 1 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError("factors and batch_size must be positive, epochs not negative")
        if self.lam < 0 or self.lr <= 0 or self.init_std < 0:
            raise ValueError("lam and init_std must not be negative and lr must be positive")


class BiasedMF(ExplicitModel, TorchRecommender):
    """Biased matrix factorisation (Koren et al. 2009), the rating baseline.

    See the module docstring for the objective and the fold-in of new users. Hyperparameters are
    the fields of :class:`BiasedMFConfig`.
    """

    name = "biased-mf"
    Config = BiasedMFConfig
    uses_user_ids = True
    #: Not data-parallel: its batches are ratings, not users.
    supports_distributed = False

    def _build(self, n_items: int, generator: torch.Generator) -> nn.Module:
        cfg = self.config
        return BiasedMFNet(len(self.user_ids_), n_items, cfg.factors, self.global_mean_,
                           cfg.init_std, generator)

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        if cfg.optimizer == "sgd":
            return {"sgd": torch.optim.SGD(module.parameters(), lr=cfg.lr)}
        return {"adam": make_adam(module.parameters(), lr=cfg.lr)}

    def _training_samples(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        # The batches are ratings (see _batches), kept for the time of the training only.
        coo = matrix.tocoo()
        self._ratings = (coo.row.astype(np.int64), coo.col.astype(np.int64),
                         coo.data.astype(np.float32))
        return matrix

    def _end_training(self, result: Any) -> None:
        self.__dict__.pop("_ratings", None)
        super()._end_training(result)

    def _batches(self, state: TrainState, matrix: sp.csr_matrix):
        """An epoch is a pass over the training *ratings* in a random order: each batch is
        ``(users, items, ratings)`` index tensors."""
        users, items, ratings = self._ratings
        order = state.rng.permutation(len(ratings))
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start:start + self.config.batch_size]
            yield tuple(torch.from_numpy(a[idx]).to(state.device)
                        for a in (users, items, ratings)), 1.0

    def _steps(self, state: TrainState, batch: tuple[torch.Tensor, ...]):
        u, i, r = batch
        err = (state.module(u, i) - r) ** 2
        loss = (err + self.config.lam * state.module.penalty(u, i)).mean()
        yield loss, {"loss": loss.item(), "mse": err.mean().item()}

    # -- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def fold_in(self, user_items: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors ``p`` (b x factors) and biases ``b_u`` (b,) of new users, by ridge regression
        with the item parameters fixed (penalty ``lam * n_u``)."""
        user_items = self._check_batch(user_items)
        known = (self.item_counts_ > 0).astype(np.float32)
        history = user_items.multiply(known[None, :]).tocsr()
        history.eliminate_zeros()
        module = self.module_
        penalty = self.config.lam * np.diff(history.indptr)
        return ridge_fold_in(module.item_factors, history, penalty, penalty,
                             offsets=module.global_mean + module.item_bias)

    @torch.no_grad()
    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        p, b = self.fold_in(user_items)
        module = self.module_
        fixed = (module.global_mean + module.item_bias).double()
        return (p @ module.item_factors.double().T + b[:, None] + fixed[None, :]).float()

    @torch.no_grad()
    def _predict_entries(self, fold_in: Interactions | sp.csr_matrix, rows: np.ndarray,
                         cols: np.ndarray) -> np.ndarray:
        matrix = fold_in.matrix if isinstance(fold_in, Interactions) else sp.csr_matrix(fold_in)
        train_rows = self._training_rows(fold_in)
        known = train_rows[rows] >= 0
        pred = np.empty(len(rows), np.float64)
        if (~known).any():
            pred[~known] = super()._predict_entries(matrix, rows[~known], cols[~known])
        if known.any():
            users = torch.from_numpy(train_rows[rows[known]]).to(self.device_)
            items = torch.from_numpy(cols[known]).to(self.device_)
            pred[known] = self.module_(users, items).double().cpu().numpy()
        return self._apply_fallback_entries(pred, matrix, rows, cols)
