"""RecVAE: Shenbin, Alekseev, Tutubalina, Malykh & Nikolenko, "RecVAE: a New Variational
Autoencoder for Top-N Recommendations with Implicit Feedback", WSDM 2020 (arXiv:1912.11160),
following the structure of the authors' public PyTorch code.

What is kept from the paper and its code, and tested:

* encoder: the user's row L2-normalised (plus 1e-10 on the norm), inverted dropout 0.5 in the
  encoder phases only, then 5 densely connected layers of 600 units,
  ``h_k = LayerNorm(swish(W_k h_{k-1} + b_k + h_1 + ... + h_{k-1}))`` (LayerNorm epsilon 0.1, as the
  code), and two linear heads for the mean and the log-variance of a 200-dimensional latent;
* decoder: one linear layer, latent to item logits, multinomial likelihood;
* composite prior, per latent dimension: the mixture
  ``3/20 N(0, 1) + 3/4 q_old(z | x) + 1/10 N(0, e^10)`` where ``q_old`` is the posterior of a
  frozen copy of the encoder, refreshed after every encoder phase;
* KL weight ``beta(x) = gamma * |x|`` (gamma 0.005, |x| the user's interaction count), or a
  constant ``beta`` when one is given; the KL term is the one-sample estimate
  ``log q(z|x) - log p(z)`` summed over dimensions, as the code;
* alternating updates: per epoch, ``encoder_epochs`` (3) passes that update only the encoder,
  then the prior copy is refreshed, then ``decoder_epochs`` (1) pass that updates only the decoder,
  without input dropout; each part has its own Adam (learning rate 5e-4); batches of 500 users;
  50 epochs; the model kept is the one of the epoch with the best validation NDCG@100;
* initialisation as PyTorch's ``nn.Linear`` default (weights and biases uniform in
  ``+-1/sqrt(fan_in)``), drawn from the model's own generator; the prior's encoder copy starts as a
  separately initialised encoder, as in the authors' code, until the first refresh.

Deliberate deviations: the first layer multiplies the sparse batch directly (the code densifies
each batch); in the encoder phases the decoder's weights are used detached and in the decoder
phase the encoder runs without a graph and the KL term (which does not depend on the decoder) is
not computed, so no gradient is computed that the phase would throw away (the updates are the
same). One aerec epoch is one outer iteration of the authors' loop (3 encoder passes + 1 decoder
pass), so ``seconds_per_epoch`` covers four passes over the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aerec.models.sparse import SparseBatch
from aerec.models.item_adam import ItemAdam
from aerec.models.tiled_loss import holds_logits, large_catalogue, tiled_output_nll
from aerec.models.torch_base import TorchRecommender
from aerec.training import Phase, TrainState

#: Mixture weights of the composite prior: standard normal, previous posterior, wide normal.
PRIOR_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)
#: Log-variance of the wide ("uniform-like") component of the composite prior.
WIDE_LOGVAR = 10.0
_LOG_2PI = math.log(2 * math.pi)


def log_normal(x: torch.Tensor, mu: torch.Tensor | float, logvar: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log-density of ``N(mu, exp(logvar))`` at ``x``."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return -0.5 * (logvar + _LOG_2PI + (x - mu) ** 2 / torch.exp(logvar))


def composite_prior_log_density(
    z: torch.Tensor, post_mu: torch.Tensor, post_logvar: torch.Tensor
) -> torch.Tensor:
    """Elementwise log-density of RecVAE's composite prior at ``z`` (batch x latent).

    ``post_mu`` / ``post_logvar`` are the previous encoder's posterior for the same users.
    """
    parts = torch.stack([
        log_normal(z, 0.0, 0.0) + math.log(PRIOR_WEIGHTS[0]),
        log_normal(z, post_mu, post_logvar) + math.log(PRIOR_WEIGHTS[1]),
        log_normal(z, 0.0, WIDE_LOGVAR) + math.log(PRIOR_WEIGHTS[2]),
    ], dim=-1)
    return torch.logsumexp(parts, dim=-1)


def _uniform_linear(d_in: int, d_out: int, generator: torch.Generator) -> tuple[nn.Parameter, nn.Parameter]:
    """Weight (d_in x d_out) and bias drawn as nn.Linear's default: U(-1/sqrt(d_in), 1/sqrt(d_in))."""
    bound = 1.0 / math.sqrt(d_in)
    w = torch.empty(d_in, d_out).uniform_(-bound, bound, generator=generator)
    b = torch.empty(d_out).uniform_(-bound, bound, generator=generator)
    return nn.Parameter(w), nn.Parameter(b)


class RecVAEEncoder(nn.Module):
    """Densely connected encoder with LayerNorm and swish: maths only.

    Parameters
    ----------
    n_items, hidden, latent, n_layers : int
        Input size, width of every hidden layer, latent size, number of hidden layers.
    generator : torch.Generator
        Source of the initial weights.
    """

    def __init__(self, n_items: int, hidden: int, latent: int, n_layers: int,
                 generator: torch.Generator, ln_eps: float = 0.1,
                 row_sparse_input: bool = False) -> None:
        super().__init__()
        self.latent = latent
        self.row_sparse_input = row_sparse_input
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in in [n_items] + [hidden] * (n_layers - 1):
            w, b = _uniform_linear(d_in, hidden, generator)
            self.weights.append(w)
            self.biases.append(b)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden, eps=ln_eps) for _ in range(n_layers))
        # Mean and log-variance heads, drawn one after the other as two nn.Linear layers would be.
        w_mu, b_mu = _uniform_linear(hidden, latent, generator)
        w_lv, b_lv = _uniform_linear(hidden, latent, generator)
        self.head_weight = nn.Parameter(torch.cat([w_mu, w_lv], dim=1))
        self.head_bias = nn.Parameter(torch.cat([b_mu, b_lv]))

    def forward(self, batch: SparseBatch, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | x) for the input ``values`` on ``batch``'s pattern."""
        first = batch.matmul(values, self.weights[0], row_sparse_grad=self.row_sparse_input)
        h = self.norms[0](F.silu(first + self.biases[0]))
        skip = h  # sum of all earlier layers' outputs (dense connections)
        for i in range(1, len(self.weights)):
            h = self.norms[i](F.silu(torch.addmm(self.biases[i], h, self.weights[i]) + skip))
            skip = skip + h
        out = torch.addmm(self.head_bias, h, self.head_weight)
        return out[:, : self.latent], out[:, self.latent :]


class RecVAENet(nn.Module):
    """Encoder, the frozen encoder copy behind the composite prior, and the linear decoder."""

    def __init__(self, n_items: int, hidden: int, latent: int, n_layers: int,
                 generator: torch.Generator, row_sparse_input: bool = False) -> None:
        super().__init__()
        self.encoder = RecVAEEncoder(n_items, hidden, latent, n_layers, generator,
                                     row_sparse_input=row_sparse_input)
        self.prior_encoder = RecVAEEncoder(n_items, hidden, latent, n_layers, generator)
        self.prior_encoder.requires_grad_(False)
        self.decoder_weight, self.decoder_bias = _uniform_linear(latent, n_items, generator)

    def decode(self, z: torch.Tensor, *, detach: bool = False) -> torch.Tensor:
        """Item logits; ``detach`` uses the weights as constants (no gradient for them)."""
        w, b = self.decoder_weight, self.decoder_bias
        if detach:
            w, b = w.detach(), b.detach()
        return torch.addmm(b, z, w)

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [self.decoder_weight, self.decoder_bias]

    @torch.no_grad()
    def update_prior(self) -> None:
        """Copy the current encoder into the prior's frozen encoder."""
        for dst, src in zip(self.prior_encoder.parameters(), self.encoder.parameters()):
            dst.copy_(src)


@dataclass(frozen=True)
class RecVAEConfig:
    """Hyperparameters of RecVAE (defaults: the authors' code).

    Attributes
    ----------
    hidden, latent, encoder_layers : int
        Width of the encoder's layers (600), latent size (200), number of dense layers (5).
    dropout : float
        Input dropout of the encoder phases (0.5).
    gamma : float
        KL weight per interaction: a user with n items gets ``gamma * n`` (0.005).
    beta : float or None
        A constant KL weight instead of ``gamma * n`` (None: use gamma).
    encoder_epochs, decoder_epochs : int
        Passes of each phase per epoch (3 and 1).
    lr : float
        Learning rate of both Adams (5e-4).
    batch_size, epochs : int
        Users per batch (500) and epochs (50).
    """

    hidden: int = 600
    latent: int = 200
    encoder_layers: int = 5
    dropout: float = 0.5
    gamma: float = 0.005
    beta: float | None = None
    encoder_epochs: int = 3
    decoder_epochs: int = 1
    lr: float = 5e-4
    batch_size: int = 500
    epochs: int = 50
    seed: int = 98765
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if min(self.hidden, self.latent, self.encoder_layers, self.batch_size) < 1:
            raise ValueError("hidden, latent, encoder_layers and batch_size must be positive")
        if self.encoder_epochs < 1 or self.decoder_epochs < 1 or self.epochs < 0:
            raise ValueError("encoder_epochs and decoder_epochs must be positive, epochs not negative")
        if self.gamma < 0 or (self.beta is not None and self.beta < 0):
            raise ValueError("gamma and beta must not be negative")


class RecVAE(TorchRecommender):
    """RecVAE (Shenbin et al. 2020): composite prior, user-scaled KL weight, alternating updates.

    See the module docstring for every detail kept from the paper. Hyperparameters are the fields
    of :class:`RecVAEConfig`.
    """

    name = "recvae"
    Config = RecVAEConfig
    #: Not data-parallel (its two optimisers' alternating passes are not sharded).
    supports_distributed = False

    def _build(self, n_items: int, generator: torch.Generator) -> nn.Module:
        cfg = self.config
        return RecVAENet(n_items, cfg.hidden, cfg.latent, cfg.encoder_layers, generator,
                         row_sparse_input=large_catalogue(cfg.batch_size, n_items))

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        lr = self.config.lr
        if module.encoder.row_sparse_input:
            # no item-sized gradient: the encoder's first layer row-sparse, the decoder stepped
            # tile by tile (aerec.models.item_adam)
            return {"encoder": ItemAdam(module.encoder.parameters(), lr=lr),
                    "decoder": ItemAdam(module.decoder_parameters(), lr=lr)}
        return {
            "encoder": torch.optim.Adam(module.encoder.parameters(), lr=lr),
            "decoder": torch.optim.Adam(module.decoder_parameters(), lr=lr),
        }

    # -- pieces of the loss -------------------------------------------------------------------
    def _input_values(self, batch: SparseBatch, state: TrainState | None) -> torch.Tensor:
        """Row-L2-normalised values, with inverted dropout when ``state`` is given."""
        # The reference adds 1e-10 to the norm; a floor does the same for every non-empty row
        # (a norm of 1 or more is unchanged by either) and keeps an empty row at zero in an ONNX
        # export, whose graph optimiser drops the addition and then divides 0 by 0.
        values = batch.values / batch.row_l2_norms().clamp_min(1e-10)[batch.rows]
        if state is not None and self.config.dropout > 0:
            keep = 1.0 - self.config.dropout
            mask = torch.bernoulli(torch.full_like(values, keep), generator=state.generator)
            values = values * mask / keep
        return values

    def kl_weight(self, batch: SparseBatch) -> torch.Tensor:
        """Per-user KL weight: ``gamma * (sum of the user's values)``, or the constant ``beta``."""
        if self.config.beta is not None:
            return torch.full((batch.n_rows,), float(self.config.beta), device=batch.values.device)
        counts = torch.zeros(batch.n_rows, device=batch.values.device, dtype=batch.values.dtype)
        counts.index_add_(0, batch.rows, batch.values)
        return self.config.gamma * counts

    @staticmethod
    def _sample(mu: torch.Tensor, logvar: torch.Tensor, state: TrainState) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=state.generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    @staticmethod
    def _neg_log_likelihood(logits: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        return -(log_probs[batch.rows, batch.col] * batch.values).sum() / batch.n_rows

    def _decoded_nll(self, net: RecVAENet, z: torch.Tensor, batch: SparseBatch, *,
                     detach: bool = False, step=None) -> torch.Tensor:
        """``_neg_log_likelihood(net.decode(z, detach=detach), batch)``, over item tiles
        (:mod:`aerec.models.tiled_loss`, equal up to float rounding) when the batch's logits are
        too large to hold; ``step`` there steps the decoder's weight in the backward."""
        if holds_logits(batch.n_rows, net.decoder_weight.shape[1]):
            return self._neg_log_likelihood(net.decode(z, detach=detach), batch)
        w, b = net.decoder_weight, net.decoder_bias
        if detach:
            w, b = w.detach(), b.detach()
        total = tiled_output_nll(z, w, b, batch.rows, batch.col, batch.values, step=step)
        return total / batch.n_rows

    def _encoder_loss(self, state: TrainState, batch: SparseBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative ELBO with the composite prior; gradients reach the encoder only."""
        net = state.module
        mu, logvar = net.encoder(batch, self._input_values(batch, state))
        z = self._sample(mu, logvar, state)
        nll = self._decoded_nll(net, z, batch, detach=True)
        with torch.no_grad():
            old_mu, old_logvar = net.prior_encoder(batch, self._input_values(batch, None))
        log_q = log_normal(z, mu, logvar)
        log_p = composite_prior_log_density(z, old_mu, old_logvar)
        kl = ((log_q - log_p).sum(dim=1) * self.kl_weight(batch)).mean()
        loss = nll + kl
        return loss, {"loss": loss.item(), "nll": nll.item(), "kl": kl.item()}

    def _decoder_loss(self, state: TrainState, batch: SparseBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative log-likelihood of a posterior sample (no input dropout); decoder only."""
        net = state.module
        with torch.no_grad():
            mu, logvar = net.encoder(batch, self._input_values(batch, None))
            z = self._sample(mu, logvar, state)
        opt = state.optimizers["decoder"]
        step = opt.tile_step(net.decoder_weight) if isinstance(opt, ItemAdam) else None
        nll = self._decoded_nll(net, z, batch, step=step)
        return nll, {"decoder_nll": nll.item()}

    # -- the alternating schedule ---------------------------------------------------------------
    def training_phases(self) -> list[Phase]:
        """``encoder_epochs`` passes stepping the encoder, the prior refreshed after the last of
        them, then ``decoder_epochs`` passes stepping the decoder."""
        cfg = self.config
        encoder = Phase(self._encoder_steps, optimizers=("encoder",))
        last_encoder = Phase(self._encoder_steps, optimizers=("encoder",),
                             after=lambda state: state.module.update_prior())
        decoder = Phase(self._decoder_steps, optimizers=("decoder",))
        return [encoder] * (cfg.encoder_epochs - 1) + [last_encoder] + [decoder] * cfg.decoder_epochs

    def _encoder_steps(self, state: TrainState, batch: SparseBatch):
        yield self._encoder_loss(state, batch)

    def _decoder_steps(self, state: TrainState, batch: SparseBatch):
        yield self._decoder_loss(state, batch)

    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        mu, _ = module.encoder(batch, self._input_values(batch, None))
        return module.decode(mu)

    def _output_layer(self, module: nn.Module, batch: SparseBatch):
        mu, _ = module.encoder(batch, self._input_values(batch, None))
        return mu, module.decoder_weight, module.decoder_bias

    def _item_similarities(self, cols) -> torch.Tensor:  # cols: numpy int array
        """Cosine between the items' vectors in the linear decoder (the columns of
        ``decoder_weight``, latent x items), for the reason Mult-VAE's docstring gives.
        """
        from aerec.models.similarity import cosine_to

        return cosine_to(self.module_.decoder_weight.T, cols)
