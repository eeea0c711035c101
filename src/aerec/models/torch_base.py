"""The shared PyTorch training loop: epochs, model selection on validation, checkpoints, resume.

One linear loop (nanoGPT-like) serves every torch model. A model supplies its network
(``_build``), its optimisers (``_make_optimizers``) and its loss on one sparse batch (``_loss``);
models with another schedule (RecVAE's alternating updates) override ``_train_epoch``.

Reproducibility: all randomness comes from two generators made in ``fit`` from ``config.seed``, a
NumPy one (user order) and a torch one (initialisation, dropout, noise), so nothing global is
touched. A checkpoint written after each epoch holds the weights, the optimisers, the update
counter, the best weights so far, the history and both generators' states: resuming from it gives
the same result, bit for bit, as a run that was never interrupted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from aerec.device import resolve_device
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models.base import Recommender
from aerec.models.sparse import SparseBatch
from aerec.persistence import load_state, save_state

CHECKPOINT_NAME = "checkpoint.safetensors"

#: A callback receives the dict of one epoch's figures (loss parts, validation metrics, seconds).
Callback = Callable[[dict[str, Any]], None]


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


class TorchRecommender(Recommender):
    """A recommender whose parameters are learned by the shared torch loop.

    The ``Config`` of a subclass must have the fields ``epochs``, ``batch_size``, ``seed`` and
    ``device``.
    """

    #: Metric of the validation set that picks the epoch kept, and whether larger is better.
    selection_metric: ClassVar[str] = "ndcg@100"
    selection_larger_is_better: ClassVar[bool] = True
    #: The cut-offs computed on validation each epoch.
    validation_ks: ClassVar[tuple[int, ...]] = (100,)

    # -- hooks for subclasses -----------------------------------------------------------------
    def _build(self, n_items: int, generator: torch.Generator) -> nn.Module:
        raise NotImplementedError

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def _loss(
        self, state: TrainState, batch: SparseBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (a scalar tensor) and the figures to log for it."""
        raise NotImplementedError

    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        """Evaluation-mode scores (batch x items) of the network."""
        raise NotImplementedError

    # -- training -----------------------------------------------------------------------------
    def _fit(
        self,
        matrix: sp.csr_matrix,
        validation: Any = None,
        *,
        run_dir: str | Path | None = None,
        resume: bool = False,
        callbacks: tuple[Callback, ...] | list[Callback] = (),
        progress: bool = False,
    ) -> None:
        cfg = self.config
        self.train_matrix_shape_ = matrix.shape
        ckpt = None if run_dir is None else Path(run_dir) / CHECKPOINT_NAME
        state = self._initial_state(matrix.shape[1])
        if resume:
            if ckpt is None or not ckpt.exists():
                raise ConfigError(f"cannot resume: no checkpoint at {ckpt}")
            self._restore_checkpoint(state, ckpt)
        self.module_ = state.module
        self.device_ = state.device
        self.history_ = state.history
        try:
            for epoch in range(state.epoch, cfg.epochs):
                started = time.perf_counter()
                state.module.train()
                parts = self._train_epoch(state, matrix, progress=progress)
                train_seconds = time.perf_counter() - started
                record: dict[str, Any] = {"epoch": epoch + 1, **parts}
                if validation is not None:
                    record.update(self._validate(validation))
                    self._track_best(state, record)
                record["seconds"] = time.perf_counter() - started
                record["train_seconds"] = train_seconds
                state.history.append(record)
                state.epoch = epoch + 1
                if ckpt is not None:
                    self._save_checkpoint(state, ckpt)
                for callback in callbacks:
                    callback(record)
        finally:
            if state.best_weights is not None:
                state.module.load_state_dict(state.best_weights)
            state.module.eval()
            self.best_epoch_ = state.best_epoch
            self.epochs_trained_ = state.epoch

    def _initial_state(self, n_items: int) -> TrainState:
        cfg = self.config
        device = resolve_device(cfg.device)
        init_gen = torch.Generator().manual_seed(cfg.seed)
        module = self._build(n_items, init_gen).to(device)
        generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        rng = np.random.default_rng(cfg.seed)
        return TrainState(module, self._make_optimizers(module), generator, rng, device)

    def _train_epoch(
        self, state: TrainState, matrix: sp.csr_matrix, *, progress: bool = False
    ) -> dict[str, float]:
        """One pass over the users in a random order; returns the epoch's mean loss parts."""
        order = state.rng.permutation(matrix.shape[0])
        sums: dict[str, float] = {}
        n_batches = 0
        for start in range(0, len(order), self.config.batch_size):
            rows = np.sort(order[start:start + self.config.batch_size])
            batch = SparseBatch.from_csr(matrix[rows], state.device)
            loss, parts = self._loss(state, batch)
            for opt in state.optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            self._check_finite(loss, state)
            for opt in state.optimizers.values():
                opt.step()
            state.update_count += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n_batches += 1
        return {k: v / max(n_batches, 1) for k, v in sums.items()}

    def _check_finite(self, loss: torch.Tensor, state: TrainState) -> None:
        if not torch.isfinite(loss).item():
            best = (
                f"keeping the best model so far (epoch {state.best_epoch})"
                if state.best_epoch else "no model was selected yet"
            )
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} at epoch {state.epoch + 1} "
                f"(update {state.update_count + 1}); {best}. Lower the learning rate or check "
                "the input values."
            )

    def _validate(self, validation: Any) -> dict[str, float]:
        from aerec.evaluation import evaluate_ranking

        metrics = evaluate_ranking(
            self.score_tensor, validation.fold_in.matrix, validation.targets.matrix,
            ks=self.validation_ks, batch_size=max(self.config.batch_size, 1000),
        )
        return {f"val_{k}": v for k, v in metrics.items() if not k.endswith("_se")}

    def _track_best(self, state: TrainState, record: dict[str, Any]) -> None:
        value = record[f"val_{self.selection_metric}"]
        if value is None or math.isnan(value):
            return
        better = state.best_value is None or (
            value > state.best_value if self.selection_larger_is_better else value < state.best_value
        )
        if better:
            state.best_value = float(value)
            state.best_epoch = record["epoch"]
            state.best_weights = {
                k: v.detach().clone() for k, v in state.module.state_dict().items()
            }

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        was_training = self.module_.training
        self.module_.eval()
        try:
            return self._forward_scores(self.module_, SparseBatch.from_csr(user_items, self.device_))
        finally:
            self.module_.train(was_training)

    # -- checkpoints --------------------------------------------------------------------------
    def _save_checkpoint(self, state: TrainState, path: Path) -> None:
        save_state(path, {
            "module": state.module.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
            "generator": state.generator.get_state(),
            "rng": state.rng.bit_generator.state,
            "epoch": state.epoch,
            "update_count": state.update_count,
            "best_value": state.best_value,
            "best_epoch": state.best_epoch,
            "best_weights": state.best_weights,
            "history": state.history,
        }, metadata={"model": self.name})

    def _restore_checkpoint(self, state: TrainState, path: Path) -> None:
        saved, meta = load_state(path)
        if meta.get("model") != self.name:
            raise ConfigError(f"{path}: checkpoint of {meta.get('model')!r}, not {self.name!r}")
        state.module.load_state_dict(saved["module"])
        for name, opt in state.optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        state.generator.set_state(saved["generator"].cpu())
        state.rng.bit_generator.state = saved["rng"]
        state.epoch = saved["epoch"]
        state.update_count = saved["update_count"]
        state.best_value = saved["best_value"]
        state.best_epoch = saved["best_epoch"]
        bw = saved["best_weights"]
        state.best_weights = None if bw is None else {k: v.to(state.device) for k, v in bw.items()}
        state.history[:] = saved["history"]

    # -- persistence hooks ----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {"module": self.module_.state_dict()}

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        self.device_ = resolve_device(device if device != "auto" else self.config.device)
        self.module_ = self._build(self.n_items_, torch.Generator().manual_seed(0))
        self.module_.load_state_dict(state["module"])
        self.module_.to(self.device_).eval()
