"""The model side of every torch model: network, optimisers, the loss of one batch, scoring.

A subclass supplies its network (``_build``), its optimisers (``_make_optimizers``), its loss on
one sparse batch (``_loss``) and its evaluation scores (``_forward_scores``); a model with another
schedule than one pass stepping every optimiser (RecVAE's alternating updates, the deep
autoencoder's re-feeding step) describes it in ``training_phases`` / ``_steps``. The run itself
(epochs, selection, checkpoints, resume, progress, callbacks) belongs to
:class:`aerec.training.Trainer`, which ``fit`` uses with its default settings.

Precision (``config.precision``, where a model has it) runs the loss and ``_forward_scores`` under
bf16 autocast. Adam is the fused single-pass kernel where torch has one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from aerec import distributed as dist
from aerec.device import resolve_device
from aerec.hardware import autocast
from aerec.models.base import Recommender
from aerec.models.sparse import SparseBatch, TorchCSR
from aerec.training import Phase, TrainResult, TrainState

#: Arithmetic of the matrix products: fp32, or bf16 operands under autocast (softmax, losses and
#: the optimiser stay fp32).
Precision = Literal["fp32", "bf16"]


def make_adam(params: Any, lr: float, **kwargs: Any) -> torch.optim.Adam:
    """Adam with torch's fused single-pass kernel when it has one for the parameters' device.

    The default (multi-pass "foreach") kernel reads and writes the optimiser state about ten
    times per step; on the CPU, with Mult-VAE's 24M parameters, that was 15-20% of an epoch.
    The fused kernel computes the same update, rounded differently (about 1 ulp).
    """
    params = list(params)
    device = params[0].device.type if params else "cpu"
    fused = device in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)


class TorchRecommender(Recommender):
    """A recommender whose parameters are learned by :class:`aerec.training.Trainer`.

    The ``Config`` of a subclass must have the fields ``epochs``, ``batch_size``, ``seed`` and
    ``device``.
    """

    #: Metric of the validation set that picks the epoch kept, and whether larger is better.
    selection_metric: ClassVar[str] = "ndcg@100"
    selection_larger_is_better: ClassVar[bool] = True
    #: The cut-offs computed on validation each epoch.
    validation_ks: ClassVar[tuple[int, ...]] = (100,)
    #: Whether the model trains data-parallel (each process takes a share of every batch).
    supports_distributed: ClassVar[bool] = True
    trains_by_epochs: ClassVar[bool] = True

    # -- what a subclass supplies ---------------------------------------------------------------
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

    def training_phases(self) -> list[Phase]:
        """The passes of one epoch: by default one pass that steps every optimiser."""
        return [Phase(self._steps)]

    def _steps(self, state: TrainState, batch: Any) -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
        """The updates of one batch, as ``(loss, figures)``: by default one, on ``_loss``."""
        yield self._loss(state, batch)

    # -- the hooks of the training loop (called by aerec.training.Trainer, in this order) -------
    def _training_samples(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """The matrix whose rows the loop iterates (by default the users' rows)."""
        return matrix

    def _begin_training(self, state: TrainState, samples_shape: tuple[int, int]) -> None:
        """Before the first epoch: adopt the network, device and history of the loop's state (so
        that validation scores with the current weights) and the training shape (Mult-VAE's
        anneal length depends on the number of samples)."""
        self.train_matrix_shape_ = samples_shape
        self.module_, self.device_, self.history_ = state.module, state.device, state.history

    def _end_training(self, result: TrainResult) -> None:
        """After the last epoch (also after an interruption): keep the loop's result."""
        self.training_ = result
        self.best_epoch_ = result.best_epoch
        self.epochs_trained_ = result.epochs_trained
        self.stopped_early_ = result.stopped_early

    def _batches(
        self, state: TrainState, matrix: sp.csr_matrix
    ) -> Iterator[tuple[SparseBatch | None, float]]:
        """The epoch's batches in a new random order of the rows, each with its weight.

        Draws one permutation from ``state.rng``, cuts it into ``config.batch_size`` rows, sorts
        each batch's rows. Data-parallel, each process gets its contiguous share of every batch
        and the weight ``share / batch`` (None when its share is empty); otherwise weight 1.
        On CUDA the rows are sliced from a copy of ``matrix`` on the GPU (no copy per batch).
        """
        order = state.rng.permutation(matrix.shape[0])
        size = self._batch_size(matrix.shape[0])
        cuda = state.device.type == "cuda"
        if cuda and (state.device_matrix is None or state.device_matrix.shape != matrix.shape):
            state.device_matrix = TorchCSR.from_scipy(matrix, state.device)
        for start in range(0, len(order), size):
            rows = np.sort(order[start:start + size])
            n_batch = len(rows)
            if state.world_size > 1:
                rows = dist.shard(rows, state.rank, state.world_size)
            share = 1.0 if state.world_size == 1 else len(rows) / n_batch
            if len(rows) == 0:
                yield None, 0.0
            elif cuda:
                yield state.device_matrix.batch(rows), share
            else:
                yield SparseBatch.from_csr(matrix[rows], state.device), share

    def _batch_size(self, n_rows: int) -> int:
        """Rows per training batch for a matrix of ``n_rows`` rows: ``config.batch_size`` (a
        model whose batch size follows the data, as ELSA's default, overrides this)."""
        return self.config.batch_size

    def _autocast(self, device: torch.device):
        """bf16 autocast when ``config.precision == "bf16"`` and the device has fast bf16 (see
        :mod:`aerec.hardware`); a no-op context otherwise."""
        return autocast(device, getattr(self.config, "precision", "fp32"))

    def _figures(self, state: TrainState, **values: Any) -> dict[str, Any]:
        """A batch's figures for logging: floats on the CPU; 0-d tensors on the GPU, where a
        float would make the host wait for the GPU at every batch."""
        if state.device.type == "cpu":
            return {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in values.items()}
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in values.items()}

    def _validate(self, validation: Any, rank: int = 0, world_size: int = 1) -> dict[str, float]:
        """Validation figures of the current network (``val_`` + metric name); data-parallel,
        each process ranks its share of the users and the means are pooled."""
        from aerec.evaluation import evaluate_ranking

        fold_in, targets = validation.fold_in.matrix, validation.targets.matrix
        if world_size > 1:
            rows = np.arange(fold_in.shape[0])[rank::world_size]
            fold_in, targets = fold_in[rows], targets[rows]
        metrics = evaluate_ranking(
            self.score_tensor, fold_in, targets,
            ks=self.validation_ks, batch_size=max(self._batch_size(fold_in.shape[0]), 1000),
        )
        if world_size > 1:
            metrics = dist.pool_means(metrics, self.device_)
        return {f"val_{k}": v for k, v in metrics.items() if not k.endswith("_se")}

    # -- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        was_training = self.module_.training
        self.module_.eval()
        try:
            batch = SparseBatch.from_csr(user_items, self.device_)
            with self._autocast(self.device_):
                return self._forward_scores(self.module_, batch)
        finally:
            self.module_.train(was_training)

    def _output_layer(self, module: nn.Module, batch: SparseBatch
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """For a network whose scores are one linear layer over the items: the evaluation-mode
        input ``h`` of that layer and its ``(d, items)`` weight and bias, so that ranking runs
        over item tiles (:func:`aerec.models.tiled_topk.tiled_top_k`). Not overridden: the whole
        score matrix is ranked."""
        return None

    @torch.no_grad()
    def _top_n(self, user_items: sp.csr_matrix, n: int, *, exclude_seen: bool = True,
               blocked: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from aerec.models.tiled_topk import tiled_top_k

        if type(self)._output_layer is TorchRecommender._output_layer:
            return super()._top_n(user_items, n, exclude_seen=exclude_seen, blocked=blocked)
        self._check_fitted()
        was_training = self.module_.training
        self.module_.eval()
        try:
            batch = SparseBatch.from_csr(user_items, self.device_)
            with self._autocast(self.device_):
                layer = self._output_layer(self.module_, batch)
                seen = (batch.rows, batch.col) if exclude_seen else None
                mask = None if blocked is None else torch.from_numpy(blocked).to(self.device_)
                return tiled_top_k(*layer, n, seen=seen, blocked=mask)
        finally:
            self.module_.train(was_training)

    # -- persistence hooks ----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {"module": self.module_.state_dict()}

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        self.device_ = resolve_device(device if device != "auto" else self.config.device)
        self.module_ = self._build(self.n_items_, torch.Generator().manual_seed(0))
        self.module_.load_state_dict(state["module"])
        self.module_.to(self.device_).eval()
