"""The shared PyTorch training loop: epochs, model selection on validation, checkpoints, resume.

One linear loop (nanoGPT-like) serves every torch model. A model supplies its network
(``_build``), its optimisers (``_make_optimizers``) and its loss on one sparse batch (``_loss``);
models with another schedule (RecVAE's alternating updates) override ``_train_epoch``.

Reproducibility: all randomness comes from two generators made in ``fit`` from ``config.seed``, a
NumPy one (user order) and a torch one (initialisation, dropout, noise), so nothing global is
touched. A checkpoint written after each epoch holds the weights, the optimisers, the update
counter, the best weights so far, the history and both generators' states: resuming from it gives
the same result, bit for bit, as a run that was never interrupted.

Speed (see ``benchmarks/RESULTS-speed.md``): Adam is the fused single-pass kernel where torch has
one (it rounds differently from the multi-pass one by about one unit in the last place); on CUDA
the training matrix lives on the GPU and batches are sliced there, and the per-batch figures stay
on the device until the epoch ends, so nothing waits for the GPU inside an epoch. Precision
(``config.precision``, where a model has it) runs ``_loss`` and ``_forward_scores`` under bf16
autocast. Data-parallel training (``aerec.distributed``): each process takes its share of every
batch's users, gradients are averaged with weights share / batch, and only rank 0 writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from aerec import distributed as dist
from aerec.device import resolve_device
from aerec.errors import ConfigError, TrainingDivergedError
from aerec.models.base import Recommender
from aerec.models.sparse import SparseBatch, TorchCSR
from aerec.persistence import load_state, save_state
from aerec.hardware import autocast

CHECKPOINT_NAME = "checkpoint.safetensors"

#: A callback receives the dict of one epoch's figures (loss parts, validation metrics, seconds).
Callback = Callable[[dict[str, Any]], None]

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
    device_matrix: TorchCSR | None = None
    #: Data-parallel group size and this process's rank (1 and 0 without ``aerec.distributed``).
    world_size: int = 1
    rank: int = 0
    #: On the GPU, whether a loss of this epoch was not finite (read once per epoch).
    nonfinite: torch.Tensor | None = None


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
    #: Whether the model trains data-parallel. By default only models that keep the shared
    #: ``_train_epoch`` do: an overriding loop must shard its batches with ``_batches`` and
    #: call ``_backward`` before it sets this.
    supports_distributed: ClassVar[bool | None] = None

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
        distributed: bool | None = None,
    ) -> None:
        """Train; ``distributed`` (default: when a process group of 2+ is initialised) shares
        each batch's users among the processes of ``torch.distributed``."""
        cfg = self.config
        self.train_matrix_shape_ = matrix.shape
        ckpt = None if run_dir is None else Path(run_dir) / CHECKPOINT_NAME
        rank, world_size = self._world(distributed)
        self._group = (rank, world_size)
        state = self._initial_state(matrix.shape[1], rank=rank, world_size=world_size)
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
                self._raise_if_diverged(state)
                train_seconds = time.perf_counter() - started
                record: dict[str, Any] = {"epoch": epoch + 1, **parts}
                if validation is not None:
                    record.update(self._validate(validation))
                    self._track_best(state, record)
                record["seconds"] = time.perf_counter() - started
                record["train_seconds"] = train_seconds
                state.history.append(record)
                state.epoch = epoch + 1
                if ckpt is not None and state.rank == 0:
                    self._save_checkpoint(state, ckpt)
                for callback in callbacks:
                    callback(record)
        finally:
            if state.best_weights is not None:
                state.module.load_state_dict(state.best_weights)
            state.module.eval()
            self.best_epoch_ = state.best_epoch
            self.epochs_trained_ = state.epoch
            self._group = (0, 1)

    def _initial_state(self, n_items: int, *, rank: int = 0, world_size: int = 1) -> TrainState:
        cfg = self.config
        device = resolve_device(cfg.device)
        init_gen = torch.Generator().manual_seed(cfg.seed)
        module = self._build(n_items, init_gen).to(device)
        # Every process draws its own dropout and noise; rank 0 draws what a single process does.
        generator = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 1_000_003 * rank)
        rng = np.random.default_rng(cfg.seed)  # the user order: the same in every process
        return TrainState(module, self._make_optimizers(module), generator, rng, device,
                          world_size=world_size, rank=rank)

    def _world(self, distributed: bool | None) -> tuple[int, int]:
        """(rank, world size) of the data-parallel group this fit uses."""
        if distributed is False or (distributed is None and not dist.active()):
            return 0, 1
        if not dist.active():
            raise ConfigError("distributed=True needs an initialised torch.distributed process group "
                              "of 2 or more processes (launch with torchrun; see docs/distributed.md)")
        supported = self.supports_distributed
        if supported is None:
            supported = type(self)._train_epoch is TorchRecommender._train_epoch
        if not supported:
            raise ConfigError(f"{self.name} has its own training loop, which does not train "
                              "data-parallel; train it in one process")
        return dist.rank(), dist.world_size()

    def _train_epoch(
        self, state: TrainState, matrix: sp.csr_matrix, *, progress: bool = False
    ) -> dict[str, float]:
        """One pass over the users in a random order; returns the epoch's mean loss parts."""
        sums: dict[str, Any] = {}
        n_batches = 0
        for batch, share in self._batches(state, matrix):
            if batch is not None:
                with self._autocast(state.device):
                    loss, parts = self._loss(state, batch)
            else:  # this process's share of a small last batch is empty
                loss, parts = None, {}
            for opt in state.optimizers.values():
                opt.zero_grad(set_to_none=True)
            self._backward(state, loss, share)
            for opt in state.optimizers.values():
                opt.step()
            state.update_count += 1
            for k, v in parts.items():
                v = v.detach() if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums.get(k, 0.0) + (v if share == 1.0 else v * share)
            n_batches += 1
        return self._epoch_means(state, sums, n_batches)

    # -- pieces of the loop that overriding loops reuse ---------------------------------------
    def _batches(
        self, state: TrainState, matrix: sp.csr_matrix
    ) -> Iterator[tuple[SparseBatch | None, float]]:
        """The epoch's batches in a new random order of the users, each with its weight.

        Draws one permutation from ``state.rng``, cuts it into ``config.batch_size`` users, sorts
        each batch's rows. Data-parallel, each process gets its contiguous share of every batch
        and the weight ``share / batch`` (None when its share is empty); otherwise weight 1.
        On CUDA the rows are sliced from a copy of ``matrix`` on the GPU (no copy per batch).
        """
        order = state.rng.permutation(matrix.shape[0])
        size = self.config.batch_size
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

    def _backward(self, state: TrainState, loss: torch.Tensor | None, share: float = 1.0) -> None:
        """``loss.backward()``; data-parallel, the gradients are then averaged over processes with
        weights ``share`` (each process's users / the batch's), as one process would get them."""
        if state.world_size == 1:
            loss.backward()
            self._check_finite(loss, state)
            return
        weighted = 0.0
        if loss is not None:
            weighted = loss.detach() * share
            (loss * share).backward()
        # The weighted losses are summed with the gradients: every process sees the same total,
        # so all stop together if it is not finite.
        total = dist.all_reduce_gradients(list(state.module.parameters()), extra=weighted)
        if not math.isfinite(total):
            self._diverged(state, f"{total} at epoch {state.epoch + 1} (update {state.update_count + 1})")

    def _epoch_means(self, state: TrainState, sums: dict[str, Any], n_batches: int) -> dict[str, float]:
        """Per-batch figures summed over the epoch -> their means (over processes too)."""
        if state.world_size > 1:
            sums = dist.all_reduce_sums(sums, state.device)
        return {k: float(v) / max(n_batches, 1) for k, v in sums.items()}

    def _autocast(self, device: torch.device):
        """bf16 autocast when ``config.precision == "bf16"`` and the device has fast bf16 (see
        :mod:`aerec.hardware`); a no-op context otherwise. Any model whose config has a
        ``precision`` field gets it in the shared loop and in scoring."""
        return autocast(device, getattr(self.config, "precision", "fp32"))

    def _figures(self, state: TrainState, **values: Any) -> dict[str, Any]:
        """A batch's figures for logging: floats on the CPU; 0-d tensors on the GPU, where a
        float would make the host wait for the GPU at every batch."""
        if state.device.type == "cpu":
            return {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in values.items()}
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in values.items()}

    def _check_finite(self, loss: torch.Tensor, state: TrainState) -> None:
        if loss.device.type != "cpu":
            # Reading the loss would make the host wait for the GPU at every batch: a flag is
            # kept on the device and read once per epoch (_raise_if_diverged).
            flag = ~torch.isfinite(loss.detach())
            state.nonfinite = flag if state.nonfinite is None else state.nonfinite | flag
            return
        if not torch.isfinite(loss).item():
            self._diverged(state, f"{loss.item()} at epoch {state.epoch + 1} "
                                  f"(update {state.update_count + 1})")

    def _raise_if_diverged(self, state: TrainState) -> None:
        """The once-per-epoch check of the GPU's flag (see ``_check_finite``)."""
        if state.nonfinite is not None:
            bad, state.nonfinite = bool(state.nonfinite.item()), None
            if bad:
                self._diverged(state, f"non-finite during epoch {state.epoch + 1}")

    def _diverged(self, state: TrainState, what: str) -> None:
        best = (
            f"keeping the best model so far (epoch {state.best_epoch})"
            if state.best_epoch else "no model was selected yet"
        )
        raise TrainingDivergedError(
            f"the training loss became {what}; {best}. Lower the learning rate or check "
            "the input values."
        )

    def _validate(self, validation: Any) -> dict[str, float]:
        from aerec.evaluation import evaluate_ranking

        fold_in, targets = validation.fold_in.matrix, validation.targets.matrix
        rank, world_size = getattr(self, "_group", (0, 1))
        if world_size > 1:  # each process ranks its share of the users; the means are pooled
            rows = np.arange(fold_in.shape[0])[rank::world_size]
            fold_in, targets = fold_in[rows], targets[rows]
        metrics = evaluate_ranking(
            self.score_tensor, fold_in, targets,
            ks=self.validation_ks, batch_size=max(self.config.batch_size, 1000),
        )
        if world_size > 1:
            metrics = dist.pool_means(metrics, self.device_)
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
            batch = SparseBatch.from_csr(user_items, self.device_)
            with self._autocast(self.device_):
                return self._forward_scores(self.module_, batch)
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
