"""What the training loop carries from one epoch to the next, and what a model's epoch is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn


@dataclass
class TrainState:
    """Everything the loop carries from one epoch to the next (and into a checkpoint)."""

    module: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    rng: np.random.Generator
    device: torch.device
    epoch: int = 0
    update_count: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The training matrix on the device (CUDA), made on first use; not checkpointed.
    device_matrix: Any = None
    #: Data-parallel group size and this process's rank (1 and 0 without ``aerec.distributed``).
    world_size: int = 1
    rank: int = 0
    #: On the GPU, whether a loss of this epoch was not finite (read once per epoch).
    nonfinite: torch.Tensor | None = None


@dataclass(frozen=True)
class TrainResult:
    """What one training of the loop gave (handed to the model's ``_end_training`` hook).

    Attributes
    ----------
    history : list of dict
        One record per epoch: the training figures, the validation figures, the seconds.
    best_epoch : int or None
        The epoch (1-based) with the best validation figure, whose weights the model keeps;
        None without validation (the last epoch's weights are kept).
    epochs_trained : int
        Epochs run, those of a resumed checkpoint included.
    stopped_early : bool
        Whether early stopping ended the run before its last epoch.
    """

    history: list[dict[str, Any]]
    best_epoch: int | None
    epochs_trained: int
    stopped_early: bool


@dataclass(frozen=True)
class Phase:
    """One pass over the training data within an epoch.

    Most models have one phase per epoch that steps every optimiser. RecVAE's epoch is several:
    passes that step only the encoder, then passes that step only the decoder.

    Attributes
    ----------
    steps : callable
        ``steps(state, batch)`` yields ``(loss, figures)`` once per optimiser update on the batch
        (the deep autoencoder's dense re-feeding yields twice).
    optimizers : tuple of str or None
        Names of the optimisers this phase zeroes and steps; None for all.
    after : callable or None
        Called with the state once the pass is over (RecVAE refreshes its prior there).
    """

    steps: Callable[..., Any]
    optimizers: tuple[str, ...] | None = None
    after: Callable[[TrainState], None] | None = None
