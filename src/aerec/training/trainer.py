"""The one training loop of aerec (nanoGPT-like: linear and readable), shared by every torch model.

A model supplies its network (``_build``), its optimisers (``_make_optimizers``), its evaluation
scores (``_forward_scores``) and what one batch does (``_loss``, or ``training_phases`` for a
schedule of several passes per epoch, as RecVAE's alternating encoder and decoder updates). The
:class:`Trainer` does everything else, once: the epochs and batches, validation after each epoch
and selection of the best epoch, early stopping, the stop on a non-finite loss with the best model
kept, checkpoints and bit-exact resume, data-parallel sharding under ``torchrun``, the progress bar
and the callbacks.

Reproducibility: all randomness comes from two generators made from ``config.seed``, a NumPy one
(user order) and a torch one (initialisation, dropout, noise), so nothing global is touched. The
checkpoint written after each epoch holds both generators' states: resuming from it gives the
same result, bit for bit, as a run that was never interrupted.

Speed: on CUDA the training matrix lives on the GPU and batches are sliced there, and per-batch
figures stay on the device until the epoch ends, so nothing waits for the GPU inside an epoch.
Data-parallel training (:mod:`aerec.distributed`): each process takes its share of every batch's
users, gradients are averaged with weights share / batch, and only rank 0 writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from aerec import distributed as dist
from aerec.device import resolve_device
from aerec.errors import ConfigError, DataError, TrainingDivergedError
from aerec.training.callbacks import Callback, ProgressBar
from aerec.training.checkpoint import restore_checkpoint, save_checkpoint
from aerec.training.state import Phase, TrainResult, TrainState

if TYPE_CHECKING:  # the models import this module, not the other way round
    from aerec.models.base import Recommender
    from aerec.models.torch_base import TorchRecommender


@dataclass(frozen=True)
class Trainer:
    """Runs the training of a model: what a run needs beyond the data.

    Parameters
    ----------
    checkpoint : str or Path, optional
        File the training state is written to after every epoch (atomically), and read from
        when ``resume`` is set.
    resume : bool
        Continue from ``checkpoint``; the result equals an uninterrupted run's, bit for bit.
    progress : bool
        Show a progress bar over epochs on stderr.
    callbacks : sequence of callables
        Each receives the dict of figures of every finished epoch (see
        :mod:`aerec.training.callbacks`).
    patience : int, optional
        Early stopping: end training after this many epochs without a better validation figure
        (the best epoch's model is kept). None (the default, the papers' setting) trains every
        epoch.
    distributed : bool, optional
        Share each batch's users among the processes of ``torch.distributed``; by default when a
        process group of 2 or more is initialised.
    stop_after : int, optional
        End after this many epochs although the model's ``epochs`` is larger: the schedules that
        follow ``epochs`` (Mult-VAE's automatic anneal length) stay those of the full run. The
        refit of a given split repeats its selection run this way, up to the chosen epoch.

    Examples
    --------
    >>> Trainer(progress=True, patience=20).fit(MultVAE(), split.train, split.validation)  # doctest: +SKIP
    """

    checkpoint: str | Path | None = None
    resume: bool = False
    progress: bool = False
    callbacks: Sequence[Callback] = ()
    patience: int | None = None
    distributed: bool | None = None
    stop_after: int | None = None

    def __post_init__(self) -> None:
        if self.stop_after is not None and (isinstance(self.stop_after, bool)
                                            or not isinstance(self.stop_after, int)
                                            or self.stop_after < 1):
            raise ConfigError(f"stop_after must be a positive whole number of epochs, got "
                              f"{self.stop_after!r}")
        if self.patience is not None and (isinstance(self.patience, bool)
                                          or not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"patience must be a positive whole number of epochs, got {self.patience!r}")
        if self.resume and self.checkpoint is None:
            raise ConfigError("resume needs a checkpoint file")

    # -- entry points ---------------------------------------------------------------------------
    def fit(self, model: Recommender, train: Any, validation: Any = None) -> Recommender:
        """Fit ``model`` on ``train`` (selecting on ``validation``) with this trainer's settings.

        The Trainer calls the model's hooks, one way (see :class:`~aerec.models.base.Recommender`):
        ``_begin_fit``; then the loop (:meth:`train`) for a model that learns by epochs, its
        ``_fit_members`` for an ensemble (each member fitted with these settings, without the
        checkpoint), or its ``_fit`` for a closed form (which takes no run options); then
        ``_end_fit``. The loop's :class:`~aerec.training.TrainResult` is the model's
        ``training_``. Returns ``model``.
        """
        data = model._begin_fit(train)
        if model.trains_by_epochs:
            self.train(model, model._training_samples(data.matrix), validation)
        elif hasattr(model, "_fit_members"):
            model._fit_members(data.matrix, validation, self.for_members().fit)
        else:
            model._fit(data.matrix, validation)
        model._end_fit(data)
        return model

    def for_members(self) -> Trainer:
        """The settings for the members of an ensemble: no checkpoint of their own."""
        return replace(self, checkpoint=None, resume=False)

    def train(self, model: TorchRecommender, matrix: sp.csr_matrix,
              validation: Any = None) -> TrainResult:
        """The loop: train ``model`` on ``matrix`` (rows are the samples) epoch by epoch.

        Calls the model's ``_begin_training(state, shape)`` before the first epoch and
        ``_end_training(result)`` after the last (also when interrupted). Returns the result.
        """
        cfg = model.config
        if self.patience is not None and validation is None:
            raise ConfigError("early stopping (patience) needs validation data to watch")
        rank, world_size = self._world(model)
        state = initial_state(model, matrix.shape[1], rank=rank, world_size=world_size)
        if self.resume:
            path = Path(self.checkpoint)
            if not path.exists():
                raise ConfigError(f"cannot resume: no checkpoint at {path}")
            restore_checkpoint(state, path, model.name)
            if state.epoch > cfg.epochs:
                raise DataError(f"{path}: checkpoint after epoch {state.epoch}, but the run has "
                                f"{cfg.epochs} epochs: not a checkpoint of this run")
        model._begin_training(state, matrix.shape)
        stopped_early = False
        callbacks = list(self.callbacks)
        if self.progress and rank == 0:
            callbacks.insert(0, ProgressBar())
        last = cfg.epochs if self.stop_after is None else min(cfg.epochs, self.stop_after)
        for callback in callbacks:
            if hasattr(callback, "on_train_begin"):
                callback.on_train_begin(last, state.epoch)
        try:
            for epoch in range(state.epoch, last):
                if self._patience_exhausted(state):
                    stopped_early = True
                    break
                started = time.perf_counter()
                state.module.train()
                parts = self._train_epoch(model, state, matrix)
                _raise_if_diverged(state)
                train_seconds = time.perf_counter() - started
                record: dict[str, Any] = {"epoch": epoch + 1, **parts}
                if validation is not None:
                    record.update(model._validate(validation, rank, world_size))
                    _track_best(model, state, record)
                record["seconds"] = time.perf_counter() - started
                record["train_seconds"] = train_seconds
                state.history.append(record)
                state.epoch = epoch + 1
                if self.checkpoint is not None and state.rank == 0:
                    save_checkpoint(state, Path(self.checkpoint), model.name)
                for callback in callbacks:
                    callback(record)
        finally:
            if state.best_weights is not None:
                state.module.load_state_dict(state.best_weights)
            state.module.eval()
            result = TrainResult(state.history, state.best_epoch, state.epoch, stopped_early)
            model._end_training(result)
            for callback in callbacks:
                if hasattr(callback, "on_train_end"):
                    callback.on_train_end()
        return result

    # -- one epoch ------------------------------------------------------------------------------
    def _train_epoch(self, model: TorchRecommender, state: TrainState,
                     matrix: sp.csr_matrix) -> dict[str, float]:
        """Every phase of the model's epoch; returns the mean figures of each phase's last pass."""
        parts: dict[str, float] = {}
        for phase in model.training_phases():
            parts.update(self._pass(model, state, matrix, phase))
            if phase.after is not None:
                phase.after(state)
        return parts

    def _pass(self, model: TorchRecommender, state: TrainState, matrix: sp.csr_matrix,
              phase: Phase) -> dict[str, float]:
        """One pass over the samples in a new random order: each batch's updates, then the
        epoch's mean figures."""
        names = list(state.optimizers) if phase.optimizers is None else list(phase.optimizers)
        optimizers = [state.optimizers[name] for name in names]
        sums: dict[str, Any] = {}
        n_batches = 0
        for batch, share in model._batches(state, matrix):
            if batch is None:  # this process's share of a small last batch is empty
                updates: Iterator[tuple[Any, dict[str, Any]]] = iter([(None, {})])
            else:
                updates = phase.steps(state, batch)
            while True:
                with model._autocast(state.device):
                    step = next(updates, None)
                if step is None:
                    break
                loss, figures = step
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                _backward(model, state, loss, share)
                for opt in optimizers:
                    opt.step()
                state.update_count += 1
                for k, v in figures.items():
                    v = v.detach() if isinstance(v, torch.Tensor) else float(v)
                    sums[k] = sums.get(k, 0.0) + (v if share == 1.0 else v * share)
            n_batches += 1
        if state.world_size > 1:
            sums = dist.all_reduce_sums(sums, state.device)
        return {k: float(v) / max(n_batches, 1) for k, v in sums.items()}

    # -- pieces ---------------------------------------------------------------------------------
    def _world(self, model: TorchRecommender) -> tuple[int, int]:
        """(rank, world size) of the data-parallel group this fit uses."""
        if self.distributed is False or (self.distributed is None and not dist.active()):
            return 0, 1
        if not dist.active():
            raise ConfigError("distributed=True needs an initialised torch.distributed process group "
                              "of 2 or more processes (launch with torchrun; see docs/distributed.md)")
        if not model.supports_distributed:
            raise ConfigError(f"{model.name} does not train data-parallel; train it in one process")
        return dist.rank(), dist.world_size()

    def _patience_exhausted(self, state: TrainState) -> bool:
        if self.patience is None or state.best_epoch is None:
            return False
        return state.epoch - state.best_epoch >= self.patience


def initial_state(model: TorchRecommender, n_inputs: int, *, rank: int = 0,
                  world_size: int = 1) -> TrainState:
    """A fresh state: the network drawn from ``config.seed``, its optimisers, both generators."""
    cfg = model.config
    device = resolve_device(cfg.device)
    init_gen = torch.Generator().manual_seed(cfg.seed)
    module = model._build(n_inputs, init_gen).to(device)
    # Every process draws its own dropout and noise; rank 0 draws what a single process does.
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1_000_003 * rank)
    rng = np.random.default_rng(cfg.seed)  # the sample order: the same in every process
    return TrainState(module, model._make_optimizers(module), generator, rng, device,
                      world_size=world_size, rank=rank)


def _backward(model: TorchRecommender, state: TrainState, loss: torch.Tensor | None,
              share: float = 1.0) -> None:
    """``loss.backward()``; data-parallel, the gradients are then averaged over processes with
    weights ``share`` (each process's samples / the batch's), as one process would get them."""
    if state.world_size == 1:
        loss.backward()
        _check_finite(loss, state)
        return
    weighted = 0.0
    if loss is not None:
        weighted = loss.detach() * share
        (loss * share).backward()
    # The weighted losses are summed with the gradients: every process sees the same total, so
    # all stop together if it is not finite.
    total = dist.all_reduce_gradients(list(state.module.parameters()), extra=weighted)
    if not math.isfinite(total):
        _diverged(state, f"{total} at epoch {state.epoch + 1} (update {state.update_count + 1})")


def _check_finite(loss: torch.Tensor, state: TrainState) -> None:
    if loss.device.type != "cpu":
        # Reading the loss would make the host wait for the GPU at every batch: a flag is kept
        # on the device and read once per epoch (_raise_if_diverged).
        flag = ~torch.isfinite(loss.detach())
        state.nonfinite = flag if state.nonfinite is None else state.nonfinite | flag
        return
    if not torch.isfinite(loss).item():
        _diverged(state, f"{loss.item()} at epoch {state.epoch + 1} (update {state.update_count + 1})")


def _raise_if_diverged(state: TrainState) -> None:
    """The once-per-epoch check of the GPU's flag (see ``_check_finite``)."""
    if state.nonfinite is not None:
        bad, state.nonfinite = bool(state.nonfinite.item()), None
        if bad:
            _diverged(state, f"non-finite during epoch {state.epoch + 1}")


def _diverged(state: TrainState, what: str) -> None:
    best = (f"keeping the best model so far (epoch {state.best_epoch})" if state.best_epoch
            else "no model was selected yet")
    raise TrainingDivergedError(
        f"the training loss became {what}; {best}. Lower the learning rate or check the input values.")


def _track_best(model: TorchRecommender, state: TrainState, record: dict[str, Any]) -> None:
    value = record[f"val_{model.selection_metric}"]
    if value is None or math.isnan(value):
        return
    better = state.best_value is None or (
        value > state.best_value if model.selection_larger_is_better else value < state.best_value)
    if better:
        state.best_value = float(value)
        state.best_epoch = record["epoch"]
        state.best_weights = {k: v.detach().clone() for k, v in state.module.state_dict().items()}
