"""The output layer and the multinomial log-likelihood as one autograd step.

In Mult-VAE / Mult-DAE the last layer's ``batch x items`` logits dominate everything but the matrix
products: ``log_softmax`` writes a second such matrix, the gather's backward a zero-filled third,
``log_softmax``'s backward a fourth. Here the logits buffer is turned, in place, into the gradient
of the loss with respect to the logits, ``softmax(l) * sum(x) - x`` per user, which is all the
backward needs; the three products (logits, gradient of the hidden layer, gradient of the weight)
are issued in the orientation measured fastest for the precision (see ``_LinearMultinomialNLL``
and ``aerec.bench.layout_rates``) and, in fp32 on the CPU, in tiles of items (see ``ITEM_TILE``).

The value is the same sum as ``-(log_softmax(h W + b)[rows, cols] * x).sum()``, computed as
``-(x * (l[rows, cols] - logsumexp(l)[rows])).sum()``, with one exponential per logit and no
temporary of the logits' size: equal up to float rounding.

Under bf16 autocast (``precision="bf16"``) the products take bf16 operands, and the softmax, the
log-sum-exp and the loss stay in fp32.
"""

from __future__ import annotations

import torch

__all__ = [
    "ITEM_TILE", "MIN_ROWS_TO_TILE_SCORES", "item_tiles", "linear_multinomial_nll",
    "tiled_decoder_scores",
]

# Items per tile of the output layer's fp32 products on the CPU. One product over all 20,108
# items of the ML-20M shape ran at 100-130 GFLOP/s here, the same product issued in tiles of
# 256-1,024 items at 150-185 (about the 2048^2 floor's rate): a tile's slice of the weight (600 x 512
# floats, 1.2 MB) and of the output stay in cache while the BLAS kernel sweeps the batch. See
# benchmarks/RESULTS-speed.md.
ITEM_TILE = 512


def item_tiles(n_items: int, tile: int | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive tiles covering ``range(n_items)``, ``ITEM_TILE`` long by
    default."""
    tile = ITEM_TILE if tile is None else tile
    return [(start, min(start + tile, n_items)) for start in range(0, n_items, tile)]


#: Rows from which scoring is tiled: below it one product was faster (2 ms against 4 for a single
#: user at the ML-20M shape, 9.1 against 9.7 ms for 32 users), from 64 users up the tiles were.
MIN_ROWS_TO_TILE_SCORES = 64


def tiled_decoder_scores(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``h @ weight + bias`` for scoring (no autograd), in tiles of items on the CPU in fp32 for
    batches of at least ``MIN_ROWS_TO_TILE_SCORES`` users.

    Parameters
    ----------
    h : torch.Tensor
        ``(batch, d)`` input of the output layer.
    weight, bias : torch.Tensor
        ``(d, items)`` and ``(items,)``.

    Returns
    -------
    torch.Tensor
        ``(batch, items)`` scores, equal to ``torch.addmm(bias, h, weight)`` up to float rounding.
    """
    builds_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (h, weight, bias))
    fp32_cpu = h.device.type == "cpu" and h.dtype == weight.dtype == torch.float32
    small = h.shape[0] < MIN_ROWS_TO_TILE_SCORES
    if builds_graph or small or not fp32_cpu or torch.is_autocast_enabled("cpu"):
        return torch.addmm(bias, h, weight)
    out = torch.empty(h.shape[0], weight.shape[1], dtype=h.dtype)
    for start, stop in item_tiles(weight.shape[1]):
        torch.addmm(bias[start:stop], h, weight[:, start:stop], out=out[:, start:stop])
    return out


def linear_multinomial_nll(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    x: torch.Tensor,
) -> torch.Tensor:
    """``-sum_u sum_i x_ui log softmax(h W + b)_ui`` over the stored entries of a sparse batch.

    Parameters
    ----------
    h : torch.Tensor
        ``(batch, d)`` input of the output layer.
    weight, bias : torch.Tensor
        ``(d, items)`` and ``(items,)``.
    rows, cols, x : torch.Tensor
        The batch's stored entries: row, column and value (each pair at most once).

    Returns
    -------
    torch.Tensor
        The scalar sum (not yet averaged over users).
    """
    dtype = None
    device_type = h.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    return _LinearMultinomialNLL.apply(h, weight, bias, rows, cols, x, dtype)


class _LinearMultinomialNLL(torch.autograd.Function):
    # How the products are issued was chosen by their measured rates on the CPU (see
    # aerec.bench.layout_rates and benchmarks/RESULTS-speed.md). In fp32 the products that write
    # a wide batch x items (or hidden x items) matrix ran at ~65% of the floor's rate when issued
    # over all items at once, and at about the floor's rate in tiles of ITEM_TILE items. So on the
    # CPU in fp32 the logits are computed items x batch, W^T h^T, tile by tile, and the weight's
    # gradient tile by tile straight into W's layout; the hidden layer's gradient, which reduces
    # over the items, is one product. In bf16 one product each, batch x items, was fastest, as on
    # the GPU (where the layouts run alike). The softmax reduces along the items' dimension in
    # either orientation.

    @staticmethod
    def forward(ctx, h, weight, bias, rows, cols, x, dtype):  # type: ignore[override]
        low = dtype is not None and dtype != torch.float32
        items_first = not low and h.device.type == "cpu"
        with torch.autocast(h.device.type, enabled=False):
            hc = h.to(dtype) if low else h.float()
            wc = weight.to(dtype) if low else weight
            b = bias.to(wc.dtype)
            if items_first:
                logits, items_dim, entries = _items_first_logits(hc, wc, b), 0, (cols, rows)
            else:
                logits, items_dim, entries = torch.addmm(b.unsqueeze(0), hc, wc), 1, (rows, cols)
            picked = logits[entries].float()
            # In bf16, everything from here is fp32: torch's CPU kernels that reduce or convert
            # bf16 on the fly are several times slower than one conversion and fp32 kernels.
            e = logits.float() if low else logits
            del logits
            # One exp per logit, in place: e = exp(l - max), s = sum(e), lse = max + log(s).
            # (torch.logsumexp would allocate a temporary of the logits' size and exponentiate
            # again.)
            row_max = e.amax(dim=items_dim, keepdim=True)
            e.sub_(row_max).exp_()
            s = e.sum(dim=items_dim)
            lse = row_max.squeeze(items_dim) + s.log()
            total = -(x * (picked - lse[rows])).sum()
            # d total / d logits = softmax(l) * sum_i x_ui - x_ui, written over e.
            x_sum = torch.zeros(s.shape[0], dtype=e.dtype, device=e.device)
            x_sum.index_add_(0, rows, x)
            e.mul_((x_sum / s).unsqueeze(items_dim))
            e.index_put_(entries, -x.to(e.dtype), accumulate=True)
            grad_b = e.sum(dim=1 - items_dim)  # the bias's gradient, while e is fp32
            g = e.to(wc.dtype) if low else e  # the backward products' operand
            del e
        ctx.items_first = items_first
        ctx.save_for_backward(h, wc, g, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        h, wc, g, grad_b = ctx.saved_tensors
        grad_h = grad_w = None
        scale = grad_total.to(torch.float32)
        g_batch_first = g.t() if ctx.items_first else g
        if ctx.needs_input_grad[0]:
            # One product: it reduces over the items, and ran as fast whole as in tiles.
            grad_h = (g_batch_first @ wc.t()).float().mul_(scale).to(h.dtype)
        if ctx.needs_input_grad[1]:
            # The scale goes on the small factor (in fp32), not on the (d, items) product.
            hs = (h.float() * scale).to(wc.dtype)
            if ctx.items_first:
                grad_w = _items_first_weight_grad(hs, g)
            else:
                grad_w = (hs.t() @ g).float()
        return grad_h, grad_w, grad_b * scale, None, None, None, None


def _items_first_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``(h @ weight + bias).t()`` as a contiguous ``(items, batch)`` matrix, tile by tile."""
    logits = torch.empty(weight.shape[1], h.shape[0], dtype=h.dtype)
    h_t = h.t()
    for start, stop in item_tiles(weight.shape[1]):
        torch.addmm(bias[start:stop].unsqueeze(1), weight[:, start:stop].t(), h_t,
                    out=logits[start:stop])
    return logits


def _items_first_weight_grad(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``h^T @ g^T``, the ``(d, items)`` weight gradient from the ``(items, batch)`` logits
    gradient ``g``, tile by tile straight into the weight's layout."""
    grad_w = torch.empty(h.shape[1], g.shape[0], dtype=g.dtype)
    h_t = h.t()
    for start, stop in item_tiles(g.shape[0]):
        torch.mm(h_t, g[start:stop].t(), out=grad_w[:, start:stop])
    return grad_w
