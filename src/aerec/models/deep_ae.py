"""The deep autoencoder of Kuchaiev & Ginsburg, "Training Deep AutoEncoders for Collaborative
Filtering" (arXiv:1708.01715, 2017), following the authors' code (github.com/NVIDIA/DeepRecommender).

What is kept from the paper and its code, and tested:

* user-based: each user's vector of item ratings is one sample; missing ratings are zeros;
* encoder ``n -> hidden[0] -> ... -> hidden[-1]`` (default 512-512-1024, the paper's best on
  Netflix) and a mirrored decoder back to ``n``; SELU by default (ELU, ReLU, sigmoid, tanh
  selectable) after every layer, the decoder's last included (the code's default
  ``last_layer_activations=True``; ``last_layer_activation=False`` leaves the output linear);
* dropout on the code layer only (default drop probability 0.8, the paper's);
* an optional constrained decoder: decoder layer ``l`` reuses the transpose of encoder layer
  ``L - l`` (its own biases);
* weights Xavier-uniform, biases zero;
* masked mean squared error: ``sum over observed (r - f(r))^2 / number observed`` per batch;
* SGD with momentum 0.9 (the paper's, learning rate 0.005, batches of 128) or Adam; weight decay is
  the optimiser's L2 (the code passes it to the optimiser);
* dense re-feeding (``refeed=True``, the paper's "iterative output re-feeding", once per batch):
  after the step on the sparse input ``x``, ``y = f(x)`` (the output of that very forward pass,
  detached) is a new dense example, input and target at once, and a second step is taken on the
  masked MSE of ``f(y)`` against ``y`` (every entry of ``y`` that is non-zero counts, i.e. all of
  them in practice). The paper's argument: for a perfect ``f``, ``f(y) = y`` must hold, so the
  fixed-point condition is free extra training data.

Deviations: the learning-rate schedule of the code's momentum optimiser (halving at fixed epochs)
is not applied (the epoch kept is chosen on validation RMSE instead); everything is float32 (the
code uses float16 on GPU). The fallback rating (training mean) covers users without ratings and
items without training ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from aerec.models.explicit import ExplicitModel, activation, masked_squared_error
from aerec.models.sparse import SparseBatch
from aerec.models.torch_base import TorchRecommender, make_adam
from aerec.training import TrainState

Activation = Literal["selu", "elu", "relu", "sigmoid", "tanh"]


class DeepAutoencoderNet(nn.Module):
    """Encoder / decoder stack with code-layer dropout and optional tied weights: maths only.

    Parameters
    ----------
    n_items : int
        Input and output size.
    hidden : tuple of int
        Encoder layer sizes; the last one is the code. The decoder mirrors them.
    kind : str
        Activation after every layer.
    last_layer_activation : bool
        Apply the activation to the output layer too.
    constrained : bool
        The decoder reuses the transposed encoder weights.
    generator : torch.Generator
        Source of the initial weights.
    """

    def __init__(self, n_items: int, hidden: tuple[int, ...], kind: str, last_layer_activation: bool,
                 constrained: bool, generator: torch.Generator) -> None:
        super().__init__()
        sizes = (n_items, *hidden)
        self.kind = kind
        self.last_layer_activation = last_layer_activation
        self.constrained = constrained
        self.encoder_weights = nn.ParameterList(
            [_xavier(d_in, d_out, generator) for d_in, d_out in zip(sizes[:-1], sizes[1:])])
        self.encoder_biases = nn.ParameterList([nn.Parameter(torch.zeros(d)) for d in sizes[1:]])
        back = sizes[::-1]
        self.decoder_weights = nn.ParameterList(
            [] if constrained else
            [_xavier(d_in, d_out, generator) for d_in, d_out in zip(back[:-1], back[1:])])
        self.decoder_biases = nn.ParameterList([nn.Parameter(torch.zeros(d)) for d in back[1:]])

    def encode(self, x: torch.Tensor | tuple[SparseBatch, torch.Tensor]) -> torch.Tensor:
        """Codes of a dense batch, or of ``(sparse batch, its values)``."""
        act = activation(self.kind)
        if isinstance(x, tuple):
            batch, values = x
            h = act(batch.matmul(values, self.encoder_weights[0]) + self.encoder_biases[0])
        else:
            h = act(torch.addmm(self.encoder_biases[0], x, self.encoder_weights[0]))
        for w, b in zip(self.encoder_weights[1:], self.encoder_biases[1:]):
            h = act(torch.addmm(b, h, w))
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Output (batch x items) of codes."""
        act = activation(self.kind)
        weights = ([w.T for w in reversed(self.encoder_weights)] if self.constrained
                   else list(self.decoder_weights))
        last = len(weights) - 1
        for i, (w, b) in enumerate(zip(weights, self.decoder_biases)):
            z = torch.addmm(b, z, w)
            if i < last or self.last_layer_activation:
                z = act(z)
        return z


def _xavier(d_in: int, d_out: int, generator: torch.Generator) -> nn.Parameter:
    w = torch.empty(d_in, d_out)
    nn.init.xavier_uniform_(w, generator=generator)
    return nn.Parameter(w)


@dataclass(frozen=True)
class DeepAEConfig:
    """Hyperparameters of the deep autoencoder (defaults: the paper's best Netflix model).

    Parameters
    ----------
    hidden : tuple of int
        Encoder sizes, the last being the code (``"512,512,1024"``).
    activation : str
        selu (default), elu, relu, sigmoid or tanh.
    last_layer_activation : bool
        Apply the activation to the output layer (the authors' code does by default).
    dropout : float
        Drop probability on the code layer.
    constrained : bool
        Tie the decoder to the transposed encoder weights.
    refeed : bool
        Dense re-feeding: a second step per batch on ``y = f(x)`` as input and target.
    optimizer : str
        ``momentum`` (SGD, momentum 0.9) or ``adam``.
    lr, momentum, weight_decay : float
        Optimiser settings (weight decay is L2 in the optimiser, as in the authors' code).
    batch_size : int
        Users per step.
    epochs : int
        Passes over the users; the epoch with the lowest validation RMSE is kept.
    """

    hidden: tuple[int, ...] = (512, 512, 1024)
    activation: Activation = "selu"
    last_layer_activation: bool = True
    dropout: float = 0.8
    constrained: bool = False
    refeed: bool = True
    optimizer: Literal["momentum", "adam"] = "momentum"
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 100
    seed: int = 98765
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("hidden must list at least one positive layer size")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("batch_size and lr must be positive; epochs, weight_decay not negative")


class DeepAutoencoder(ExplicitModel, TorchRecommender):
    """Deep autoencoder for ratings (Kuchaiev & Ginsburg 2017), with dense re-feeding.

    See the module docstring for every detail kept from the paper. Hyperparameters are the fields
    of :class:`DeepAEConfig`. A user is scored from their ratings alone, so new users fold in
    without retraining.
    """

    name = "deep-ae"
    Config = DeepAEConfig
    #: Not data-parallel: the re-feeding step's dense input would have to be shared too.
    supports_distributed = False

    def _build(self, n_items: int, generator: torch.Generator) -> nn.Module:
        cfg = self.config
        return DeepAutoencoderNet(n_items, tuple(cfg.hidden), cfg.activation,
                                  cfg.last_layer_activation, cfg.constrained, generator)

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        if cfg.optimizer == "adam":
            return {"adam": make_adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}
        return {"momentum": torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                            weight_decay=cfg.weight_decay)}

    # -- one step each --------------------------------------------------------------------------
    def _code_dropout(self, codes: torch.Tensor, state: TrainState | None) -> torch.Tensor:
        p = self.config.dropout
        if state is None or p == 0:
            return codes
        keep = torch.bernoulli(torch.full_like(codes, 1.0 - p), generator=state.generator)
        return codes * keep / (1.0 - p)

    def _sparse_loss(self, state: TrainState, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        module = state.module
        output = module.decode(self._code_dropout(module.encode((batch, batch.values)), state))
        n_obs = max(batch.values.numel(), 1)
        return masked_squared_error(output, batch) / n_obs, output

    def refeed_loss(self, state: TrainState, y: torch.Tensor) -> torch.Tensor:
        """Masked MSE of ``f(y)`` against ``y`` over the non-zero entries of ``y`` (the refeed step)."""
        module = state.module
        output = module.decode(self._code_dropout(module.encode(y), state))
        mask = (y != 0).to(y.dtype)
        return (((output - y) * mask) ** 2).sum() / mask.sum().clamp_min(1.0)

    def _steps(self, state: TrainState, batch: SparseBatch):
        """A step on the sparse batch, then (if ``refeed``) a step on its dense output."""
        loss, output = self._sparse_loss(state, batch)
        yield loss, {"loss": loss.item()}
        if self.config.refeed:
            second = self.refeed_loss(state, output.detach())
            yield second, {"refeed_loss": second.item()}

    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        return module.decode(module.encode((batch, batch.values)))
