"""ELSA: Vančura, Alves, Kasalický & Kordík, "Scalable Linear Shallow Autoencoder for
Collaborative Filtering", RecSys 2022 (the authors' package: ``elsarec``).

A low-rank linear autoencoder with EASE's spirit: the item-item weights are ``A A^T - I`` for an
items x rank matrix ``A`` whose rows are normalised to unit length, so that a user's scores are

    s(x) = x A A^T - x,

and the ``- x`` keeps an item from recommending itself (the diagonal of ``A A^T`` is 1, so that of
the weights is 0, EASE's constraint). ``A`` is learned with Adam on the paper's normalised squared
error between the unit-length input and the unit-length output,

    loss(x) = || s(x) / ||s(x)|| - x / ||x|| ||^2 = 2 - 2 cos(s(x), x),

averaged over the users of a batch. Memory is ``O(items x rank)``.

Kept from the paper: the model, the row normalisation, the loss, Adam, Xavier-uniform
initialisation, 20 epochs (the authors' package's), and item embeddings as the rows of ``A``
(similar items: cosine of those rows).

Deviations, each deliberate:

* **the loss is computed without the batch x items output**: ``||s||^2 = z (A^T A) z^T -
  2 <z A^T, x> + ||x||^2`` with ``z = x A``, where ``<z A^T, x>`` needs only the batch's stored
  entries and ``A^T A`` is rank x rank. The value is the paper's loss (to float rounding); the
  cost per batch is ``items x rank^2`` instead of ``batch x items x rank``, and no dense output
  exists, which is what lets ELSA train at a million items;
* the loss sums over items per user (``elsarec`` averages over items too, a constant factor that
  Adam's step size does not see, apart from its epsilon);
* Adam, as the paper says (``elsarec`` uses NAdam), with learning rate 0.03 (``elsarec``: 0.1;
  with Adam, 0.1 ranked 0.318 and 0.03 0.328 NDCG@100 on ml-latest-small, 5 seeds);
* the batch size follows the data (an eighth of the training users, 128 to 1024);
* the model kept is the epoch with the best validation NDCG@100, as for the other torch models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aerec.errors import ConfigError
from aerec.models.budget import format_bytes, parse_memory
from aerec.models.sparse import SparseBatch
from aerec.models.torch_base import TorchRecommender, make_adam
from aerec.training import TrainState

#: Float32 copies of ``A`` the training holds: the parameter, its gradient, Adam's two moments,
#: the normalised copy and its gradient.
COPIES = 6
#: Fixed workspace beside them (the batch, scoring blocks), counted by the memory budget.
WORKSPACE_BYTES = 2**29
#: The rank when neither ``rank`` nor ``memory`` is given, unless :data:`DEFAULT_MEMORY` allows
#: less (56 at a million items: each update costs ``items x rank^2``, and on a CPU a larger
#: default rank there would take hours).
DEFAULT_RANK = 256
DEFAULT_MEMORY = "2GB"
#: Bounds of the default batch size (an eighth of the training users).
MIN_BATCH, MAX_BATCH = 128, 1024


class ELSANet(nn.Module):
    """``A`` (items x rank): maths only."""

    def __init__(self, n_items: int, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        weight = torch.empty(n_items, rank)
        nn.init.xavier_uniform_(weight, generator=generator)
        self.weight = nn.Parameter(weight)

    def normalized(self) -> torch.Tensor:
        """``A`` with unit rows."""
        return F.normalize(self.weight, dim=-1)


@dataclass(frozen=True)
class ELSAConfig:
    """Hyperparameters of ELSA.

    Attributes
    ----------
    rank : int or None
        Columns of ``A``. None: from ``memory`` when given, else 256 or what fits in 2 GB,
        whichever is smaller.
    memory : str or None
        A memory budget for training (``"4GB"``): the rank is the largest multiple of 8 that
        fits (:func:`rank_for_memory`). Ignored when ``rank`` is given.
    lr : float
        Adam's learning rate (default 0.03; the authors' package uses 0.1 with NAdam, which with
        Adam ranked 0.318 against 0.328 on ml-latest-small, 5 seeds).
    batch_size : int or None
        Users per update. None: an eighth of the training users, at least 128 and at most 1024
        (so that small data sets get several updates an epoch, and large ones few ``A^T A``).
    epochs : int
        Passes over the training users (default 20, the authors' package's).
    seed : int
        Initialisation and user order.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """

    rank: int | None = None
    memory: str | None = None
    lr: float = 0.03
    batch_size: int | None = None
    epochs: int = 20
    seed: int = 98765
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}")
        if self.memory is not None:
            parse_memory(self.memory)


def rank_for_memory(budget: int, n_items: int) -> int:
    """The largest rank (a multiple of 8, or below 8 any) whose training fits in ``budget``."""
    per_rank = COPIES * 4 * max(n_items, 1)
    rank = (budget - WORKSPACE_BYTES) // per_rank
    if rank < 1:
        raise ConfigError(f"elsa: a memory budget of {format_bytes(budget)} is too small for "
                          f"{n_items:,} items (rank 1 needs "
                          f"{format_bytes(WORKSPACE_BYTES + per_rank)})")
    return int(rank if rank < 8 else rank - rank % 8)


class ELSA(TorchRecommender):
    """ELSA (Vančura et al. 2022): scores ``x A A^T - x`` with unit rows of ``A``.

    Hyperparameters are the fields of :class:`ELSAConfig`; the module docstring gives the loss
    and the deviations from the paper. Attributes are the torch models' (``module_``,
    ``history_``, ``best_epoch_``) and ``rank_``, the rank used.
    """

    name = "elsa"
    Config = ELSAConfig

    # -- sizes ----------------------------------------------------------------------------------
    def resolve_rank(self, n_items: int) -> int:
        """The rank this model uses on ``n_items`` items."""
        cfg = self.config
        if cfg.rank is not None:
            return int(cfg.rank)
        if cfg.memory is not None:
            return rank_for_memory(parse_memory(cfg.memory), n_items)
        return min(DEFAULT_RANK, rank_for_memory(parse_memory(DEFAULT_MEMORY), n_items))

    def resolved_for(self, train: Any) -> dict[str, Any]:
        """The rank and batch size chosen for the training data ``train``."""
        return {"rank": self.resolve_rank(train.matrix.shape[1]),
                "batch_size": self._batch_size(train.matrix.shape[0])}

    def _batch_size(self, n_rows: int) -> int:
        if self.config.batch_size is not None:
            return int(self.config.batch_size)
        return int(min(MAX_BATCH, max(MIN_BATCH, n_rows // 8)))

    # -- the model hooks ------------------------------------------------------------------------
    def _build(self, n_items: int, generator: torch.Generator) -> nn.Module:
        self.rank_ = self.resolve_rank(n_items)
        return ELSANet(n_items, self.rank_, generator)

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        weight = state["module"]["weight"]
        if weight.ndim != 2 or weight.shape[1] != self.resolve_rank(self.n_items_):
            raise ValueError(f"A has shape {tuple(weight.shape)}, not items x "
                             f"{self.resolve_rank(self.n_items_)} (the rank model.json implies)")
        super()._set_state(state, device)

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        return {"adam": make_adam(module.parameters(), lr=self.config.lr)}

    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters an Optuna ``trial`` suggests for ``aerec tune``."""
        return {"lr": trial.suggest_float("lr", 1e-3, 0.3, log=True),
                "rank": trial.suggest_categorical("rank", [64, 128, 256, 512])}

    def _loss(self, state: TrainState, batch: SparseBatch):
        a = state.module.normalized()
        x = (batch.values != 0).to(a.dtype)  # binarised, as the paper's implicit input
        loss = nmse(a, batch, x)
        return loss, self._figures(state, loss=loss)

    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        a = module.normalized()
        x = (batch.values != 0).to(a.dtype)  # binarised, as in training
        scores = batch.matmul(x, a) @ a.T
        if isinstance(batch, SparseBatch):
            scores[batch.rows, batch.col] -= x  # - x at the stored entries
            return scores
        return scores - x  # a dense batch (the ONNX export's): x is the whole history

    def _item_similarities(self, cols: np.ndarray) -> torch.Tensor:
        """Cosine between the rows of ``A`` (the item embeddings): ``A A^T`` itself, the weight
        item ``i`` gives every other item in ``x A A^T - x``."""
        from aerec.models.similarity import cosine_to

        return cosine_to(self.module_.weight, cols)


def nmse(a: torch.Tensor, batch: SparseBatch, values: torch.Tensor) -> torch.Tensor:
    """The mean over the batch's users of ``||s / ||s|| - x / ||x|| ||^2``, ``s = x A A^T - x``,
    computed through ``A^T A`` (see the module docstring); users with no entries count 0."""
    z = batch.matmul(values, a)  # x A: batch x rank
    gram = a.T @ a
    pred_sq = ((z @ gram) * z).sum(dim=1)  # ||x A A^T||^2
    # <x A A^T, x> over the stored entries only
    per_entry = values * (z[batch.rows] * a[batch.col]).sum(dim=1)
    cross = torch.zeros(batch.n_rows, dtype=z.dtype, device=z.device).index_add_(
        0, batch.rows, per_entry)
    x_sq = torch.zeros_like(cross).index_add_(0, batch.rows, values * values)
    out_sq = (pred_sq - 2.0 * cross + x_sq).clamp_min(1e-12)
    cosine = (cross - x_sq) / (out_sq.sqrt() * x_sq.sqrt().clamp_min(1e-12))
    per_user = torch.where(x_sq > 0, 2.0 - 2.0 * cosine, torch.zeros_like(cosine))
    return per_user.mean()
