"""EDLAE: Steck, "Autoencoders that don't overfit towards the Identity", NeurIPS 2020.

EASE (:mod:`aerec.models.ease`) with the L2 penalty that dropout on the input implies. Training a
linear autoencoder on inputs whose entries are dropped with probability ``p`` (and the others
scaled by ``1 / (1 - p)``) is, in expectation, least squares with the item-dependent penalty

    Lambda = p / (1 - p) * diag(G) + lam * I,      G = X^T X,

so an item's column of ``B`` is held back in proportion to its popularity ``G_jj``. The paper's
"emphasized" denoising counts the loss on the dropped entries only; for the full-rank model this
keeps an item from predicting itself, EASE's zero diagonal, and the solution is EASE's formula
with ``Lambda`` in place of ``lam * I``:

    P = (G + Lambda)^-1,   B_ij = -P_ij / P_jj  (i != j),   B_jj = 0.

Kept from the paper: the dropout-derived penalty, full emphasis (zero diagonal), the closed form
solved in float64. Not implemented: the paper's low-rank variant (a separate, iterative model).
Everything else is EASE's: the solve in one dense items x items matrix (only the penalty on its
diagonal differs), the memory check, ``max_items``, scoring, fold-in (see ``docs/ease.md``).

The paper tunes ``p`` and ``lam`` per data set; the defaults ``p = 0.67`` and ``lam = 100`` are
what 5-fold cross-validation over the training and validation users
(:func:`aerec.cross_validation.cross_validate`, grid p in {0.33, 0.5, 0.67} x lam in {100, 250,
500}) chose in 8 of 10 splits of ML-100K and ml-latest-small (``benchmarks/RESULTS-peers.md``).
Near that choice the cross-validated NDCG@100 is flat to about 0.001, so tune on larger data sets.
With ``dropout = 0`` the model is EASE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aerec.models.ease import EASE, EASEConfig


@dataclass(frozen=True)
class EDLAEConfig(EASEConfig):
    """Hyperparameters of EDLAE.

    Attributes
    ----------
    lam : float
        The constant part of the L2 weight (default 100).
    dropout : float
        Input dropout probability ``p`` in [0, 1); the penalty on item ``j`` grows by
        ``p / (1 - p) * G_jj`` (default 0.67).
    max_items : int or None
        As for EASE: restrict the model to this many of the most popular training items.
    """

    lam: float = 100.0
    dropout: float = 0.67

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")


class EDLAE(EASE):
    """EDLAE (Steck 2020): EASE with the item-dependent penalty of input dropout.

    Hyperparameters are the fields of :class:`EDLAEConfig`; see the module docstring for the
    formula. Attributes are EASE's (``weights_``, ``items_``).
    """

    name = "edlae"
    Config = EDLAEConfig

    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters an Optuna ``trial`` suggests for ``aerec tune``."""
        return {"lam": trial.suggest_float("lam", 1.0, 1e4, log=True),
                "dropout": trial.suggest_float("dropout", 0.0, 0.9)}

    def _penalty(self, gram_diagonal: np.ndarray) -> np.ndarray:
        """``lam + p / (1 - p) * G_jj`` for each modelled item ``j``."""
        p = self.config.dropout
        return self.config.lam + p / (1.0 - p) * np.asarray(gram_diagonal, np.float64)
