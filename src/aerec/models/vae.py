"""Mult-VAE and Mult-DAE: Liang, Krishnan, Hoffman & Jebara, "Variational Autoencoders for
Collaborative Filtering", WWW 2018 (arXiv:1802.05814), following the authors' reference code.

What is kept from the paper and its code, and tested:

* input: each user's row L2-normalised, then dropout with keep probability 0.5 (inverted dropout,
  so kept values are scaled by 1/0.5), applied in training only;
* Mult-VAE: encoder I-600-200 with tanh, whose last layer is one 600 x 400 matrix whose two halves
  are the mean and the log-variance (as the reference builds it); z = mean + eps * std with
  eps ~ N(0, I) in training, z = mean in evaluation; decoder 200-600-I with tanh between layers;
* Mult-DAE: I-200-I with tanh;
* weights Xavier-uniform, biases truncated normal with std 0.001 (as the reference);
* loss: negative log-likelihood averaged over the users of a batch, plus beta * KL for the VAE,
  plus ``lam / batch_size * sum ||W||^2`` over the weight matrices (the reference passes
  lam / batch_size to an L2 regulariser that halves, then doubles it); the paper's lam is 0.01 for
  the DAE and 0 for the VAE;
* beta = min(anneal_cap, updates / total_anneal_steps), counted per update across epochs and never
  reset; cap 0.2. The reference notebook's 200,000 anneal steps were chosen for ML-20M, where 200
  epochs are 46,800 updates: beta climbs through most of training and reaches the cap near epoch
  170, the regime the paper describes ("anneal the KL term slowly over a large number of gradient
  updates"). The default ``total_anneal_steps="auto"`` keeps that ratio on any data: the anneal
  length is ``epochs x batches per epoch x 200,000 / 46,800``, so beta reaches the cap at the same
  share of training (85.5 %) whatever the data size, batch size or epoch count; on the ML-20M shape
  it is the notebook's 200,000 exactly. ``total_anneal_steps=200000`` reproduces the notebook on
  any data (on ML-100K it leaves beta below 0.002: an almost unregularised autoencoder);
  ``anneal_epochs`` states the anneal length in epochs instead;
* Adam with learning rate 1e-3, batches of 500 users, 200 epochs, and the model kept is the one of
  the epoch with the best validation NDCG@100;
* likelihood: multinomial (default), Gaussian (unit variance) or logistic, as the paper compares.

Deliberate deviations, each equal to the reference up to float rounding: the first layer
multiplies the sparse batch directly (the reference densifies each batch); the multinomial
likelihood is computed together with the output layer (``aerec.models.fused``), as
``x * (logit - logsumexp)`` rather than ``x * log_softmax``; Adam is torch's fused kernel. With
``precision="bf16"`` the matrix products take bf16 operands (softmax, KL and losses stay fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from aerec.models.sparse import SparseBatch
from aerec.models.fused import linear_multinomial_nll, tiled_decoder_scores
from aerec.models.item_adam import ItemAdam
from aerec.models.tiled_loss import holds_logits, large_catalogue, tiled_output_nll
from aerec.models.torch_base import Precision, TorchRecommender, make_adam
from aerec.training import TrainState

Likelihood = Literal["multinomial", "gaussian", "logistic"]

#: The reference notebook's anneal steps over its updates on ML-20M (200 epochs of 234 batches of
#: 500 users): ``total_anneal_steps="auto"`` keeps this ratio on any data.
PAPER_ANNEAL_RATIO = 200_000 / 46_800


class AutoencoderNet(nn.Module):
    """The network of Mult-VAE / Mult-DAE: maths only.

    Parameters
    ----------
    dims : tuple of int
        Layer sizes of the whole autoencoder, ``(I, *encoder_hidden, latent, *decoder_hidden, I)``.
    latent_index : int
        Position of the latent layer in ``dims``.
    variational : bool
        The encoder's last layer gives a mean and a log-variance (twice the latent size).
    """

    def __init__(self, dims: tuple[int, ...], latent_index: int, variational: bool,
                 generator: torch.Generator, row_sparse_input: bool = False) -> None:
        super().__init__()
        self.dims = tuple(dims)
        self.row_sparse_input = row_sparse_input
        self.latent_index = latent_index
        self.variational = variational
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            if variational and i == latent_index - 1:
                d_out *= 2  # mean and log-variance side by side, as the reference code
            w = torch.empty(d_in, d_out)
            nn.init.xavier_uniform_(w, generator=generator)
            b = torch.empty(d_out)
            nn.init.trunc_normal_(b, std=0.001, a=-0.002, b=0.002, generator=generator)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def encode(self, batch: SparseBatch, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder on the (normalised, dropped-out) values of a sparse batch: (mean, logvar)."""
        h = batch.matmul(values, self.weights[0], row_sparse_grad=self.row_sparse_input)
        h = h + self.biases[0]
        for i in range(1, self.latent_index):
            h = torch.tanh(h)
            h = torch.addmm(self.biases[i], h, self.weights[i])
        if not self.variational:
            return torch.tanh(h), None
        latent = self.dims[self.latent_index]
        return h[:, :latent], h[:, latent:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder: latent codes to item logits."""
        return tiled_decoder_scores(self.decode_hidden(z), self.weights[-1], self.biases[-1])

    def decode_hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder up to the input of its last layer (``z`` itself when it has one layer)."""
        h = z
        for i in range(self.latent_index, len(self.weights) - 1):
            h = torch.tanh(torch.addmm(self.biases[i], h, self.weights[i]))
        return h

    def weight_norm_sq(self) -> torch.Tensor:
        """Sum of the squared weights (biases excluded), for the L2 penalty."""
        return sum((w * w).sum() for w in self.weights)


@dataclass(frozen=True)
class MultVAEConfig:
    """Hyperparameters of Mult-VAE (defaults: the paper's)."""

    hidden: tuple[int, ...] = (600,)
    latent: int = 200
    dropout: float = 0.5
    likelihood: Likelihood = "multinomial"
    anneal_cap: float = 0.2
    total_anneal_steps: int | Literal["auto"] = "auto"
    anneal_epochs: float | None = None
    lam: float = 0.0
    lr: float = 1e-3
    batch_size: int = 500
    epochs: int = 200
    seed: int = 98765
    device: str = "auto"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.batch_size < 1 or self.epochs < 0 or self.latent < 1:
            raise ValueError("batch_size and latent must be positive, epochs not negative")
        if self.anneal_cap < 0 or (self.total_anneal_steps != "auto" and self.total_anneal_steps < 0):
            raise ValueError("anneal_cap and total_anneal_steps must not be negative")


@dataclass(frozen=True)
class MultDAEConfig:
    """Hyperparameters of Mult-DAE (defaults: the paper's)."""

    hidden: tuple[int, ...] = ()
    latent: int = 200
    dropout: float = 0.5
    likelihood: Likelihood = "multinomial"
    lam: float = 0.01
    lr: float = 1e-3
    batch_size: int = 500
    epochs: int = 200
    seed: int = 98765
    device: str = "auto"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.batch_size < 1 or self.epochs < 0 or self.latent < 1:
            raise ValueError("batch_size and latent must be positive, epochs not negative")


class _MultAutoencoder(TorchRecommender):
    variational: bool = False

    def _build(self, n_items: int, generator: torch.Generator) -> nn.Module:
        cfg = self.config
        hidden = tuple(cfg.hidden)
        dims = (n_items, *hidden, cfg.latent, *reversed(hidden), n_items)
        return AutoencoderNet(dims, len(hidden) + 1, self.variational, generator,
                              row_sparse_input=large_catalogue(cfg.batch_size, n_items))

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        if module.row_sparse_input:
            return {"adam": ItemAdam(module.parameters(), lr=self.config.lr)}
        return {"adam": make_adam(module.parameters(), lr=self.config.lr)}

    def _output_step(self, state: TrainState):
        """The output weight's in-backward Adam step (:meth:`ItemAdam.tile_step`) where it is
        exact: ItemAdam, and no L2 penalty giving that weight a second gradient."""
        opt = state.optimizers.get("adam")
        if isinstance(opt, ItemAdam) and self.config.lam == 0:
            return opt.tile_step(state.module.weights[-1])
        return None

    def _input_values(self, batch: SparseBatch, state: TrainState | None) -> torch.Tensor:
        """Row-L2-normalised values, with inverted dropout in training."""
        norms = batch.row_l2_norms().clamp_min(1e-12)  # as tf.nn.l2_normalize's epsilon
        values = batch.values / norms[batch.rows]
        if state is not None and self.config.dropout > 0:
            keep = 1.0 - self.config.dropout
            mask = torch.bernoulli(torch.full_like(values, keep), generator=state.generator)
            values = values * mask / keep
        return values

    def _neg_log_likelihood(self, logits: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        """Negative log-likelihood of the batch's observed values, averaged over users."""
        x = batch.values
        if self.config.likelihood == "multinomial":
            log_probs = F.log_softmax(logits, dim=1)
            total = -(log_probs[batch.rows, batch.col] * x).sum()
        elif self.config.likelihood == "gaussian":
            # sum over all items of (x - f)^2 / 2, with x zero off the pattern
            f_obs = logits[batch.rows, batch.col]
            total = 0.5 * ((logits * logits).sum() - (f_obs * f_obs).sum() + ((x - f_obs) ** 2).sum())
        else:  # logistic: sum over all items of softplus(f) - x * f
            total = F.softplus(logits).sum() - (logits[batch.rows, batch.col] * x).sum()
        return total / batch.n_rows

    def _decoded_nll(self, module: AutoencoderNet, z: torch.Tensor, batch: SparseBatch,
                     step=None) -> torch.Tensor:
        """``_neg_log_likelihood(module.decode(z), batch)``, equal up to float rounding: over item
        tiles (:mod:`aerec.models.tiled_loss`) when the batch's logits are too large to hold,
        otherwise whole, the multinomial one with the output layer in one step
        (:mod:`aerec.models.fused`). ``step``: the tiled path's in-backward step of the output
        weight (see ``_output_step``)."""
        if not holds_logits(batch.n_rows, module.dims[-1]):
            total = tiled_output_nll(module.decode_hidden(z), module.weights[-1], module.biases[-1],
                                     batch.rows, batch.col, batch.values, self.config.likelihood,
                                     step=step)
            return total / batch.n_rows
        if self.config.likelihood != "multinomial":
            return self._neg_log_likelihood(module.decode(z), batch)
        total = linear_multinomial_nll(module.decode_hidden(z), module.weights[-1],
                                       module.biases[-1], batch.rows, batch.col, batch.values)
        return total / batch.n_rows

    def _l2_penalty(self, module: AutoencoderNet) -> torch.Tensor:
        if self.config.lam == 0:
            # 0 * ||W||^2 adds exact zeros to the loss and the gradients; skipping it saves two
            # passes over every weight matrix per batch (Mult-VAE's default).
            return torch.zeros((), device=module.weights[0].device)
        return (self.config.lam / self.config.batch_size) * module.weight_norm_sq()

    def _item_similarities(self, cols) -> torch.Tensor:  # cols: numpy int array
        """Cosine between the items' vectors in the decoder's output layer (the columns of
        ``weights[-1]``, hidden x items).

        Not the fold-in of the item alone: those scores carry the output bias, one popularity
        profile for every item, and on ML-100K their top 10 were near the popularity list (lift
        about 2 against 3.6 to 4.3 for the cosine; docs/similar-and-export.md).
        """
        from aerec.models.similarity import cosine_to

        return cosine_to(self.module_.weights[-1].T, cols)


class MultVAE(_MultAutoencoder):
    """Mult-VAE (Liang et al. 2018) with the paper's and its reference code's settings.

    See the module docstring for every detail kept from the paper. Hyperparameters are the fields
    of :class:`MultVAEConfig`.
    """

    name = "mult-vae"
    Config = MultVAEConfig
    variational = True

    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters an Optuna ``trial`` suggests for ``aerec tune``."""
        return {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.8),
            "anneal_cap": trial.suggest_float("anneal_cap", 0.0, 1.0),
            "anneal_epochs": trial.suggest_float("anneal_epochs", 1.0, 100.0, log=True),
            "latent": trial.suggest_categorical("latent", [50, 100, 200, 400]),
            "hidden": trial.suggest_categorical("hidden", ["300", "600", "600,300"]),
        }

    def anneal_steps(self, n_users: int) -> int:
        """Updates over which beta grows from 0 to 1 (then capped at ``anneal_cap``), for
        ``n_users`` training users."""
        cfg = self.config
        batches = -(-n_users // cfg.batch_size)
        if cfg.anneal_epochs is not None:
            return max(1, round(cfg.anneal_epochs * batches))
        if cfg.total_anneal_steps == "auto":
            return max(1, round(cfg.epochs * batches * PAPER_ANNEAL_RATIO))
        return cfg.total_anneal_steps

    def resolved_params(self, n_users: int) -> dict:
        """Settings that depend on the data, as they resolve for ``n_users`` training users."""
        return {"total_anneal_steps": self.anneal_steps(n_users)}

    def beta(self, update_count: int, n_users: int) -> float:
        """The KL weight at a given update: min(anneal_cap, updates / total_anneal_steps)."""
        steps = self.anneal_steps(n_users)
        if steps <= 0:
            return self.config.anneal_cap
        return min(self.config.anneal_cap, update_count / steps)

    def _loss(self, state: TrainState, batch: SparseBatch):
        module = state.module
        mu, logvar = module.encode(batch, self._input_values(batch, state))
        mu, logvar = mu.float(), logvar.float()  # bf16 autocast: noise and KL stay in fp32
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(std.shape, generator=state.generator, device=std.device, dtype=std.dtype)
        nll = self._decoded_nll(module, mu + eps * std, batch, self._output_step(state))
        kl = (0.5 * (-logvar + torch.exp(logvar) + mu * mu - 1.0)).sum(dim=1).mean()
        beta = self.beta(state.update_count, self.train_matrix_shape_[0])
        loss = nll + beta * kl + self._l2_penalty(module)
        return loss, self._figures(state, loss=loss, nll=nll, kl=kl, beta=beta)

    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        mu, _ = module.encode(batch, self._input_values(batch, None))
        return module.decode(mu)

    def _output_layer(self, module: nn.Module, batch: SparseBatch):
        mu, _ = module.encode(batch, self._input_values(batch, None))
        return module.decode_hidden(mu), module.weights[-1], module.biases[-1]


class MultDAE(_MultAutoencoder):
    """Mult-DAE (Liang et al. 2018): I-200-I, tanh, input dropout 0.5, L2 weight lam / batch.

    Hyperparameters are the fields of :class:`MultDAEConfig`.
    """

    name = "mult-dae"
    Config = MultDAEConfig
    variational = False

    @staticmethod
    def search_space(trial) -> dict:
        """Hyperparameters an Optuna ``trial`` suggests for ``aerec tune``."""
        return {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.8),
            "lam": trial.suggest_float("lam", 1e-5, 1.0, log=True),
            "latent": trial.suggest_categorical("latent", [100, 200, 400, 600]),
        }

    def _loss(self, state: TrainState, batch: SparseBatch):
        module = state.module
        h, _ = module.encode(batch, self._input_values(batch, state))
        nll = self._decoded_nll(module, h, batch, self._output_step(state))
        loss = nll + self._l2_penalty(module)
        return loss, self._figures(state, loss=loss, nll=nll)

    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        h, _ = module.encode(batch, self._input_values(batch, None))
        return module.decode(h)

    def _output_layer(self, module: nn.Module, batch: SparseBatch):
        h, _ = module.encode(batch, self._input_values(batch, None))
        return module.decode_hidden(h), module.weights[-1], module.biases[-1]
