"""The popularity baseline: every user gets the items most users of the training data chose.

It ignores the user's history (apart from leaving it out of the ranking, as every model's
evaluation does), so any model worth its training time must beat it; every results table shows it
as the floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aerec.models.base import Recommender


@dataclass(frozen=True)
class PopularityConfig:
    """The popularity baseline has no hyperparameters."""


class Popularity(Recommender):
    """Scores each item by the number of training users who interacted with it.

    Attributes
    ----------
    counts_ : torch.Tensor
        ``(n_items,)`` float32: training users per item (stored non-zero entries per column).
    """

    name = "popularity"
    Config = PopularityConfig

    def _fit(self, matrix: sp.csr_matrix, validation: Any = None) -> None:
        # Count users, not the sum of values: with explicit input a 5-star item is not "more
        # popular" than one rated 1 by as many users.
        counts = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float32)
        self.counts_ = torch.from_numpy(counts)

    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        # A real copy per row: callers (evaluation) may write -inf into the scores in place.
        return self.counts_.unsqueeze(0).repeat(user_items.shape[0], 1)

    def _get_state(self) -> dict[str, Any]:
        return {"counts": self.counts_}

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        self.counts_ = state["counts"].float().cpu()

    def _item_similarities(self, cols: np.ndarray) -> torch.Tensor:
        """The training user count of every item: the most popular other items, the same list
        for every item (the baseline has nothing item-specific to offer)."""
        return self.counts_.expand(len(cols), -1)
