"""The output layer and its likelihood over tiles of items, never holding ``batch x items``.

The item-output models (Mult-VAE, Mult-DAE, RecVAE) end in one linear layer over every item and a
likelihood of the observed entries. Computed whole, the logits of a batch are ``batch x items``
(2 GB for 500 users and a million items in fp32), and their softmax and gradient as much again.
Here the layer and the loss are one autograd step computed over tiles of ``T`` items, as the
exact large-vocabulary losses of language models do (Cut Cross-Entropy, Wijmans et al. 2024; the
fused linear cross-entropy of Liger Kernel):

* forward: for each tile, ``l = h W[:, tile] + b[tile]``; the multinomial likelihood
  ``sum_i x_i l_i - (sum_i x_i) logsumexp(l)`` keeps a running row maximum and a rescaled running
  sum of exponentials (online log-sum-exp); the logistic (``sum softplus(l) - x l``) and Gaussian
  (``sum (x - l)^2 / 2``) likelihoods are plain sums over the tiles;
* backward: each tile's logits are recomputed (one more product than holding them), turned into
  the gradient ``dL/dl`` of the tile, and the tile's share of the three results is added: the
  hidden layer's gradient ``dL/dl W^T``, the weight's columns ``h^T dL/dl`` and the bias. With a
  ``step`` callback (see :class:`aerec.models.item_adam.ItemAdam`), the weight's tile is handed to the
  optimiser at once instead of being written into a ``(d, items)`` gradient.

Memory beyond the parameters: one ``batch x T`` tile (and its bf16 copy), ``T`` chosen so that a
tile of the logits and the weight's slice fit in half the L2 cache (:func:`item_tile`).

The value equals the untiled formula up to float rounding (the sums are taken in another order);
the tests compare it with ``log_softmax`` / ``softplus`` / the squared error on a whole matrix.
Under bf16 autocast the products take bf16 operands; every reduction stays in fp32.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F

__all__ = ["HOLD_LOGITS_BYTES", "Likelihood", "holds_logits", "item_tile", "l2_cache_bytes",
           "large_catalogue", "tiled_output_nll"]

Likelihood = Literal["multinomial", "logistic", "gaussian"]

#: L2 size assumed where the system does not say (bytes).
DEFAULT_L2_BYTES = 1 << 20
#: Bounds of the tile: below 64 items the products are too thin for the BLAS kernels, above 8,192
#: nothing is gained and the tile grows past any cache.
MIN_TILE, MAX_TILE = 64, 8192


#: Up to this size of a batch's fp32 logits the models keep today's untiled path
#: (:mod:`aerec.models.fused` for the multinomial likelihood), which computes each product once;
#: the tiled path computes the logits' product twice (forward and backward) and wins only where
#: holding them costs more than that (see :func:`holds_logits`).
HOLD_LOGITS_BYTES = 256 << 20


def holds_logits(batch: int, n_items: int) -> bool:
    """Whether a batch's ``batch x n_items`` fp32 logits are small enough to be held whole
    (``HOLD_LOGITS_BYTES``) rather than computed in tiles."""
    return 4 * batch * n_items <= HOLD_LOGITS_BYTES


def large_catalogue(batch: int, n_items: int) -> bool:
    """Whether a model's item matrices get no dense gradient: where the logits are tiled
    (not :func:`holds_logits`) and one process trains (data-parallel training sums dense
    gradients). Such a model uses :class:`aerec.models.item_adam.ItemAdam`: a row-sparse input
    layer gradient and, where exact, the output weight stepped tile by tile."""
    from aerec import distributed

    return not holds_logits(batch, n_items) and not distributed.active()


@functools.lru_cache(maxsize=1)
def l2_cache_bytes() -> int:
    """The L2 cache of one core in bytes (Linux sysfs; ``DEFAULT_L2_BYTES`` where unknown)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                text = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
                return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return DEFAULT_L2_BYTES


def item_tile(batch: int, width: int, itemsize: int = 4) -> int:
    """Items per tile: a ``batch x T`` tile of logits and the ``width x T`` slice of the weight
    in one core's L2 cache, rounded down to a multiple of 64 between ``MIN_TILE`` and
    ``MAX_TILE``.

    For 500 users and 600 hidden units with a 2 MiB L2 this is 448 items in fp32 and 896 in bf16.
    Measured on that machine (one thread, forward and backward of the layer at 20,108 and 100,000
    items, tiles of 192, 448, 512, 1,024 and 2,048): in fp32 448 was the fastest at both sizes
    and half the cache (192) 10-16 % slower; in bf16 512-1,024 were within 5 % of the best.
    """
    tile = l2_cache_bytes() // (itemsize * max(batch + width, 1))
    return int(min(MAX_TILE, max(MIN_TILE, tile // 64 * 64)))


def tiled_output_nll(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    x: torch.Tensor,
    likelihood: Likelihood = "multinomial",
    *,
    step: Callable[[int, int, torch.Tensor], None] | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """The negative log-likelihood of a sparse batch under ``h W + b``, summed over its users.

    Parameters
    ----------
    h : torch.Tensor
        ``(batch, d)`` input of the output layer.
    weight, bias : torch.Tensor
        ``(d, items)`` and ``(items,)``.
    rows, cols, x : torch.Tensor
        The batch's stored entries: row, column and value (each pair at most once).
    likelihood : str
        ``multinomial``: ``-sum x log softmax(l)``; ``logistic``: ``sum softplus(l) - x l`` over
        all items; ``gaussian``: ``sum (x - l)^2 / 2`` over all items (x zero off the pattern).
    step : callable, optional
        ``step(start, stop, grad)`` receives the weight's gradient for columns ``start:stop`` in
        the backward pass; the weight then gets no ``.grad`` (its optimiser steps it tile by tile).
    tile : int, optional
        Items per tile (default :func:`item_tile`; tests use small ones).

    Returns
    -------
    torch.Tensor
        The scalar sum (not yet averaged over users).
    """
    dtype = None
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
    low = dtype if dtype is not None and dtype != torch.float32 else None
    if tile is None:
        tile = item_tile(h.shape[0], h.shape[1], 2 if low else 4)
    return _TiledOutputNLL.apply(h, weight, bias, rows, cols, x, likelihood, low, step, int(tile))


class _TiledOutputNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, rows, cols, x, likelihood, low, step, tile):  # type: ignore[override]
        with torch.autocast(h.device.type, enabled=False):
            tiles = _Tiles(h, weight, bias, rows, cols, x, low, tile)
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            if likelihood == "multinomial":
                run_max = torch.full((h.shape[0],), -torch.inf, device=h.device)
                run_sum = torch.zeros(h.shape[0], device=h.device)
                for _, logits, (r, c, v) in tiles:
                    total -= (v * logits[r, c]).sum()
                    new_max = torch.maximum(run_max, logits.amax(dim=1))
                    run_sum.mul_((run_max - new_max).exp_())
                    run_sum += logits.sub_(new_max.unsqueeze(1)).exp_().sum(dim=1)
                    run_max = new_max
                lse = run_max + run_sum.log()
                x_sum = torch.zeros(h.shape[0], device=h.device).index_add_(0, rows, x)
                total += (x_sum * lse).sum()  # users without entries: x_sum = 0
                extra = (lse, x_sum)
            elif likelihood == "logistic":
                for _, logits, (r, c, v) in tiles:
                    total += F.softplus(logits).sum() - (v * logits[r, c]).sum()
                extra = ()
            elif likelihood == "gaussian":
                for _, logits, (r, c, v) in tiles:
                    f = logits[r, c]
                    total += 0.5 * ((logits * logits).sum() - (f * f).sum() + ((v - f) ** 2).sum())
                extra = ()
            else:
                raise ValueError(f"unknown likelihood {likelihood!r}")
        ctx.likelihood, ctx.low, ctx.step, ctx.tile = likelihood, low, step, tile
        ctx.save_for_backward(h, weight, bias, rows, cols, x, *extra)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        h, weight, bias, rows, cols, x, *extra = ctx.saved_tensors
        scale = grad_total.to(torch.float32)
        want_h, want_w, want_b = ctx.needs_input_grad[:3]
        with torch.autocast(h.device.type, enabled=False):
            tiles = _Tiles(h, weight, bias, rows, cols, x, ctx.low, ctx.tile)
            grad_h = torch.zeros(h.shape, dtype=torch.float32, device=h.device) if want_h else None
            grad_w = None
            if want_w and ctx.step is None:
                grad_w = torch.empty(weight.shape, dtype=torch.float32, device=h.device)
            grad_b = torch.empty(bias.shape, dtype=torch.float32, device=h.device) if want_b else None
            if ctx.likelihood == "multinomial":
                lse, x_sum = extra
                shift, factor = lse.unsqueeze(1), x_sum.unsqueeze(1)
            # the scale goes on the small factor h (in fp32), not on the (d, T) products
            hs = (h.float() * scale).to(tiles.h.dtype) if want_w else None
            for (start, stop), g, (r, c, v) in tiles:
                # g: dL/dlogits of the tile, written over the recomputed logits
                if ctx.likelihood == "multinomial":
                    g.sub_(shift).exp_().mul_(factor)
                elif ctx.likelihood == "logistic":
                    g.sigmoid_()
                g.index_put_((r, c), -v, accumulate=True)
                if want_b:
                    grad_b[start:stop] = g.sum(dim=0).mul_(scale)
                gc = g.to(tiles.h.dtype)
                w_t = tiles.weight_tile(start, stop)
                if want_h:
                    grad_h += (gc @ w_t.t()).float()
                if want_w:
                    gw = (hs.t() @ gc).float()
                    if ctx.step is None:
                        grad_w[:, start:stop] = gw
                    else:
                        ctx.step(start, stop, gw)
            if want_h:
                grad_h = grad_h.mul_(scale).to(h.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None


class _Tiles:
    """Iterates over the item tiles of an output layer: ``((start, stop), logits, entries)``
    where ``logits`` is the tile's fresh fp32 ``batch x T`` product (free to overwrite) and
    ``entries`` the ``(row, column in the tile, value)`` of the batch's entries in it."""

    def __init__(self, h, weight, bias, rows, cols, x, low, tile) -> None:
        self.h = h.to(low) if low is not None else h.float()
        self.weight, self.bias, self.low, self.tile = weight, bias, low, tile
        # entries ordered by column: each tile's entries are one slice of them
        order = torch.argsort(cols, stable=True)
        self.rows, self.cols, self.x = rows[order], cols[order], x[order].float()
        starts = torch.arange(0, weight.shape[1] + tile, tile, device=cols.device)
        self.bounds = torch.searchsorted(self.cols, starts).tolist()

    def weight_tile(self, start: int, stop: int) -> torch.Tensor:
        w = self.weight[:, start:stop]
        return w.to(self.low) if self.low is not None else w

    def __iter__(self):
        n_items = self.weight.shape[1]
        for k, start in enumerate(range(0, n_items, self.tile)):
            stop = min(start + self.tile, n_items)
            b = self.bias[start:stop].float()
            if self.low is None:
                logits = torch.addmm(b, self.h, self.weight[:, start:stop])
            else:
                logits = (self.h @ self.weight_tile(start, stop)).float().add_(b)
            lo, hi = self.bounds[k], self.bounds[k + 1]
            entries = (self.rows[lo:hi], self.cols[lo:hi] - start, self.x[lo:hi])
            yield (start, stop), logits, entries
