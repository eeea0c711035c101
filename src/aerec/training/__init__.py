"""Training: one loop for every torch model (:class:`Trainer`), its state, checkpoints and callbacks.

A model owns its maths (network, optimisers, the loss of one batch); the :class:`Trainer` owns the
run (epochs, batches, validation and selection, early stopping, checkpoints and resume,
data-parallel sharding, the progress bar, callbacks). See ``docs/training.md``.
"""

from aerec.training.callbacks import Callback, ProgressBar, TensorBoardLogger
from aerec.training.state import Phase, TrainResult, TrainState
from aerec.training.trainer import Trainer

__all__ = ["Callback", "Phase", "ProgressBar", "TensorBoardLogger", "TrainResult", "TrainState",
           "Trainer"]
