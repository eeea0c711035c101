"""AutoRec: Sedhain, Menon, Sanner & Xie, "AutoRec: Autoencoders Meet Collaborative Filtering",
WWW 2015 (companion volume).

The model, as in the paper: each sample is one partially observed vector of ratings ``r`` (an
item's ratings by every user for I-AutoRec, a user's ratings of every item for U-AutoRec), and::

    h(r) = f(W . g(V r + mu) + b)

with ``g`` the hidden activation (sigmoid by default, 500 units) and ``f`` the identity, the pair the
paper finds best. The objective counts only observed ratings and adds L2 weight decay on the two
weight matrices::

    sum over observed (r - h(r))^2  +  lam / 2 * (||W||_F^2 + ||V||_F^2)

and the prediction of user ``u`` for item ``i`` is ``h(r_i)_u`` (I-AutoRec) or ``h(r_u)_i``
(U-AutoRec). Missing input entries are zeros (the ratings start at 0.5 or 1, so zero means
"unobserved").

Optimisation: the paper uses resilient propagation (RProp) or L-BFGS on full batches. Here Adam on
mini-batches of 256 is the default (on ML-100K u1 it reached a validation RMSE of 0.902, full-batch
RProp 0.904); ``optimizer="rprop"`` with ``batch_size`` at least the number of samples is the
paper's full-batch RProp. Each batch's
loss is ``(squared error of the batch + lam / 2 * (batch / samples) * (||W||^2 + ||V||^2))`` divided
by the expected number of ratings in the batch, so one epoch's losses add up to the paper's
objective divided by the number of ratings, and the logged ``mse`` is the training MSE.

Fold-in (users the model was not trained on)
--------------------------------------------
* U-AutoRec scores any user from their ratings alone: one forward pass; a new user and a training
  user with the same ratings get the same predictions.
* I-AutoRec has a weight column (encoder) and a weight row plus bias (decoder) per *training user*,
  so a new user has no coordinate. The strategy used: keep the item codes ``g(V r_i + mu)`` of the
  training data fixed and give the new user the decoder row ``w`` and bias ``c`` that minimise the
  AutoRec objective restricted to them, ``sum_{i rated} (r_ui - w . code_i - c)^2 + lam / 2
  ||w||^2``, plus ``lam / 2 (c - mean training bias)^2``: a ridge regression, solved in closed form
  (:meth:`IAutoRec.fold_in`). Why: it is the user-specific part of the very objective the
  training users' rows were fitted by, it needs no retraining and costs one small linear solve
  per user. The bias term is the one addition: without it a user whose few ratings are all equal
  would be fitted by the bias alone and get that rating for every item; with it the fit also uses
  the item codes. The new user's ratings do not enter the item codes (there is no encoder column
  for them). Training users are recognised by id when the histories come with ids
  (:meth:`~aerec.models.explicit.ExplicitModel.evaluate_ratings`, :meth:`predict` with an
  ``Interactions``): they are scored through their own output coordinate, with their shown
  history replacing their training ratings in the item vectors, as the paper evaluates.
  :meth:`score_tensor` and ``recommend`` receive bare histories and treat every row as new.

Initialisation (the paper gives none): weights Xavier-uniform, biases zero. (Starting the output
biases at the training mean converges in a third of the epochs but to a worse validation RMSE on
ML-100K, 0.906 against 0.902, so it is not done.)

Options beyond the single-hidden-layer model: ``hidden="500,250,500"`` stacks hidden layers (the
paper's "deep extension"; every hidden layer uses ``g``, the output stays linear) and
``input_dropout`` drops observed inputs in training (a denoising variant, not in the paper; off by
default).

Deviations from the paper: Adam by default (RProp selectable, L-BFGS not offered); the fallback
for items without training ratings and for users without ratings is the training mean (the paper:
3); the epoch kept is the one with the lowest validation RMSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from aerec.data.interactions import Interactions
from aerec.models.explicit import ExplicitModel, activation, masked_squared_error, ridge_fold_in
from aerec.models.sparse import SparseBatch
from aerec.models.torch_base import TorchRecommender, make_adam
from aerec.training import TrainState

Activation = Literal["sigmoid", "identity", "tanh", "relu", "elu", "selu"]


class AutoRecNet(nn.Module):
    """``h(r) = W . g(V r + mu) + b`` on sparse input vectors of length ``n_inputs``: maths only.

    With more than one hidden size (the paper's deep extension, e.g. 500-250-500) the hidden layers
    are stacked, each followed by ``g``; the output layer stays linear. The decoder weight is kept
    as one row per output coordinate (``n_inputs x hidden[-1]``): for I-AutoRec, one row per
    training user, the row a new user's fold-in solves for.
    """

    def __init__(self, n_inputs: int, hidden: tuple[int, ...], hidden_activation: str,
                 generator: torch.Generator, input_dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_activation = hidden_activation
        self.input_dropout = input_dropout
        sizes = (n_inputs, *hidden)
        self.encoder_weights = nn.ParameterList()
        self.encoder_biases = nn.ParameterList()
        for d_in, d_out in zip(sizes[:-1], sizes[1:]):
            self.encoder_weights.append(_xavier(d_in, d_out, generator))
            self.encoder_biases.append(nn.Parameter(torch.zeros(d_out)))
        self.decoder_weight = _xavier(n_inputs, hidden[-1], generator)
        self.decoder_bias = nn.Parameter(torch.zeros(n_inputs))

    def encode(self, batch: SparseBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes of the last hidden layer (batch x hidden[-1]); ``generator`` turns on the input
        dropout (training only)."""
        act = activation(self.hidden_activation)
        values = batch.values
        if generator is not None and self.input_dropout > 0:
            keep = 1.0 - self.input_dropout
            values = values * torch.bernoulli(torch.full_like(values, keep), generator=generator) / keep
        h = act(batch.matmul(values, self.encoder_weights[0]) + self.encoder_biases[0])
        for w, b in zip(self.encoder_weights[1:], self.encoder_biases[1:]):
            h = act(torch.addmm(b, h, w))
        return h

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``W code + b`` (batch x n_inputs)."""
        return F.linear(codes, self.decoder_weight, self.decoder_bias)

    def forward(self, batch: SparseBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.encode(batch, generator))

    def weight_norm_sq(self) -> torch.Tensor:
        """Sum of the squared weights, ``||W||_F^2 + ||V||_F^2`` (biases are not penalised, as in
        the paper)."""
        return sum((w * w).sum() for w in self.encoder_weights) + \
            (self.decoder_weight * self.decoder_weight).sum()


def _xavier(d_in: int, d_out: int, generator: torch.Generator) -> nn.Parameter:
    w = torch.empty(d_in, d_out)
    nn.init.xavier_uniform_(w, generator=generator)
    return nn.Parameter(w)


@dataclass(frozen=True)
class AutoRecConfig:
    """Hyperparameters of AutoRec (defaults: the paper's architecture; ``lam`` and the Adam settings
    chosen on the validation RMSE of ML-100K u1, see ``benchmarks/RESULTS-explicit.md``).

    Parameters
    ----------
    hidden : tuple of int
        Hidden units (the paper: 500); several sizes stack hidden layers (the paper's deep
        extension, e.g. ``"500,250,500"``).
    activation : str
        Hidden activation ``g``: sigmoid (the paper's best), identity, tanh, relu, elu, selu.
    lam : float
        L2 weight decay lambda of the objective ``SSE + lam / 2 (||W||^2 + ||V||^2)``.
    input_dropout : float
        Drop probability of each observed input rating in training (0, the paper's model, turns
        it off; a denoising option, not in the paper).
    optimizer : str
        ``adam`` or ``rprop`` (the paper's; use full batches).
    lr : float
        Learning rate (Adam's step size, RProp's initial step).
    batch_size : int
        Samples (items for I-AutoRec, users for U-AutoRec) per update.
    epochs : int
        Passes over the samples; the epoch with the lowest validation RMSE is kept.
    """

    hidden: tuple[int, ...] = (500,)
    activation: Activation = "sigmoid"
    lam: float = 200.0
    input_dropout: float = 0.0
    optimizer: Literal["adam", "rprop"] = "adam"
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 120
    seed: int = 98765
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError("hidden sizes and batch_size must be positive, epochs not negative")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError("input_dropout must be in [0, 1)")
        if self.lam < 0 or self.lr <= 0:
            raise ValueError("lam must not be negative and lr must be positive")


class _AutoRec(ExplicitModel, TorchRecommender):
    Config = AutoRecConfig

    def _build(self, n_inputs: int, generator: torch.Generator) -> nn.Module:
        cfg = self.config
        return AutoRecNet(n_inputs, tuple(cfg.hidden), cfg.activation, generator, cfg.input_dropout)

    def _make_optimizers(self, module: nn.Module) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        if cfg.optimizer == "rprop":
            return {"rprop": torch.optim.Rprop(module.parameters(), lr=cfg.lr)}
        return {"adam": make_adam(module.parameters(), lr=cfg.lr)}

    def _training_samples(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """The rows the training loop iterates (one rating vector each): the users' rows."""
        return self._samples(matrix)

    def _samples(self, samples: sp.csr_matrix) -> sp.csr_matrix:
        self.n_samples_ = samples.shape[0]
        self.ratings_per_sample_ = samples.nnz / max(samples.shape[0], 1)
        return samples

    def _loss(self, state: TrainState, batch: SparseBatch) -> tuple[torch.Tensor, dict[str, float]]:
        module = state.module
        # A dense reconstruction, masked: on the CPU one matrix product beats gathering the
        # decoder rows of each observed entry by 2-5x at MovieLens densities (1-5 %).
        sse = masked_squared_error(module(batch, state.generator), batch)
        share = batch.n_rows / self.n_samples_
        penalty = 0.5 * self.config.lam * share * module.weight_norm_sq()
        loss = (sse + penalty) / (self.ratings_per_sample_ * batch.n_rows)
        n_obs = max(batch.values.numel(), 1)
        return loss, {"loss": loss.item(), "mse": sse.item() / n_obs}


class UAutoRec(_AutoRec):
    """User-based AutoRec (U-AutoRec): each user's vector of item ratings is one sample.

    See the module docstring for the model and its objective; hyperparameters are the fields of
    :class:`AutoRecConfig`. A user is scored from their ratings alone, so new users fold in
    without retraining.
    """

    name = "u-autorec"


    def _forward_scores(self, module: nn.Module, batch: SparseBatch) -> torch.Tensor:
        return module(batch)


class IAutoRec(_AutoRec):
    """Item-based AutoRec (I-AutoRec): each item's vector of user ratings is one sample.

    See the module docstring for the model, its objective and how a new user is folded in (a
    closed-form ridge fit of the user's decoder row on the fixed item codes). The training ratings
    are kept with the model (``train_matrix_``): they are the input of every prediction.
    """

    name = "i-autorec"
    uses_user_ids = True

    def _training_samples(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        # I-AutoRec's samples are the items: one vector of ratings over the training users each.
        self.train_matrix_ = _canonical(matrix)
        return self._samples(_canonical(matrix.T.tocsr()))

    def _build(self, n_inputs: int, generator: torch.Generator) -> nn.Module:
        # The input of I-AutoRec is a vector over the training users, whatever the caller passes
        # (the shared loader passes the number of items).
        return super()._build(self.train_matrix_.shape[0], generator)

    # -- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def item_codes(self, user_items: sp.csr_matrix | None = None) -> torch.Tensor:
        """Codes ``g(V r_i + mu)`` of every item (items x hidden) from the training ratings, or from
        ``user_items`` (all users, training order) when given."""
        matrix = self.train_matrix_ if user_items is None else user_items
        items = _canonical(matrix.T.tocsr())
        parts = [self.module_.encode(SparseBatch.from_csr(items[s:s + 4096], self.device_))
                 for s in range(0, items.shape[0], 4096)]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.hidden[-1])

    @torch.no_grad()
    def fold_in(self, user_items: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder rows ``w`` (b x hidden) and biases ``c`` (b,) of new users (ridge fold-in).

        Minimises, over each row of ``user_items`` with the training item codes fixed::

            sum_{i rated} (r_ui - w . code_i - c)^2 + lam / 2 ||w||^2 + lam / 2 (c - mean_bias)^2

        where ``mean_bias`` is the mean decoder bias of the training users. Ratings of items
        without training ratings are left out (their codes carry no information).
        """
        user_items = self._check_batch(user_items)
        known = self.item_counts_ > 0
        history = user_items.multiply(known[None, :].astype(np.float32)).tocsr()
        history.eliminate_zeros()
        codes = self.item_codes()
        prior = self.module_.decoder_bias.mean()
        # (lam = 0 leaves the minimum-norm fit, not the bias alone)
        half_lam = max(0.5 * self.config.lam, 1e-8)
        w, c = ridge_fold_in(codes, history, half_lam, half_lam,
                             offsets=torch.full((codes.shape[0],), float(prior), device=codes.device))
        return w, c + float(prior)

    @torch.no_grad()
    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        w, c = self.fold_in(user_items)
        codes = self.item_codes().double()
        return (w @ codes.T + c[:, None]).float()

    def _predict_entries(self, fold_in: Interactions | sp.csr_matrix, rows: np.ndarray,
                         cols: np.ndarray) -> np.ndarray:
        matrix = fold_in.matrix if isinstance(fold_in, Interactions) else sp.csr_matrix(fold_in)
        train_rows = self._training_rows(fold_in)
        known = train_rows[rows] >= 0
        pred = np.empty(len(rows), np.float64)
        if (~known).any():
            pred[~known] = super()._predict_entries(matrix, rows[~known], cols[~known])
        if known.any():
            inputs = self._inputs_with(matrix, train_rows)
            pred[known] = self._network_entries(inputs, train_rows[rows[known]], cols[known])
        return self._apply_fallback_entries(pred, matrix, rows, cols)

    def _inputs_with(self, matrix: sp.csr_matrix, train_rows: np.ndarray) -> sp.csr_matrix:
        """The training ratings with each known user's row replaced by their shown history."""
        n_train = self.train_matrix_.shape[0]
        mine = np.flatnonzero(train_rows >= 0)
        keep = np.ones(n_train, np.float32)
        keep[train_rows[mine]] = 0.0
        moved = sp.csr_matrix(
            (np.ones(len(mine), np.float32), (train_rows[mine], mine)), shape=(n_train, matrix.shape[0])
        )
        inputs = sp.diags(keep) @ self.train_matrix_ + moved @ matrix.astype(np.float32)
        return _canonical(inputs.tocsr())

    @torch.no_grad()
    def _network_entries(self, inputs: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``h(r_i)_u`` at the entries (users[j], items[j]), with item vectors from ``inputs``."""
        self.module_.eval()
        by_item = _canonical(inputs.T.tocsr())
        wanted, local = np.unique(items, return_inverse=True)
        out = np.empty(len(items), np.float64)
        step = max(1, self.predict_batch_size)
        for start in range(0, len(wanted), step):
            part = wanted[start:start + step]
            rec = self.module_(SparseBatch.from_csr(by_item[part], self.device_))
            here = (local >= start) & (local < start + len(part))
            at = (torch.from_numpy(local[here] - start).to(rec.device),
                  torch.from_numpy(users[here]).to(rec.device))
            out[here] = rec[at].double().cpu().numpy()
        return out

    # -- persistence ------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        state = super()._get_state()
        m = self.train_matrix_
        state["train_matrix"] = {
            "indptr": torch.from_numpy(m.indptr.astype(np.int64)),
            "indices": torch.from_numpy(m.indices.astype(np.int64)),
            "data": torch.from_numpy(m.data.astype(np.float32)),
            "shape": [int(s) for s in m.shape],
        }
        return state

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        tm = state["train_matrix"]
        self.train_matrix_ = sp.csr_matrix(
            (tm["data"].numpy(), tm["indices"].numpy().astype(np.int32), tm["indptr"].numpy()),
            shape=tuple(tm["shape"]),
        )
        super()._set_state(state, device)


def _canonical(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = matrix.tocsr().astype(np.float32, copy=False)
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    return matrix
