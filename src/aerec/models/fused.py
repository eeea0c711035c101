"""The output layer and the multinomial log-likelihood as one autograd step.

In Mult-VAE / Mult-DAE the last layer's ``batch x items`` logits dominate everything but the matrix
products: ``log_softmax`` writes a second such matrix, the gather's backward a zero-filled third,
``log_softmax``'s backward a fourth. Here the logits buffer is turned, in place, into the gradient
of the loss with respect to the logits, ``softmax(l) * sum(x) - x`` per user, which is all the
backward needs; the three products (logits, gradient of the hidden layer, gradient of the weight)
are issued in the transposes measured fastest (see ``aerec.bench``).

The value is the same sum as ``-(log_softmax(h W + b)[rows, cols] * x).sum()``, computed as
``-(x * (l[rows, cols] - logsumexp(l)[rows])).sum()``: equal up to float rounding.

Under bf16 autocast (``precision="bf16"``) the products take bf16 operands, and the softmax, the
log-sum-exp and the loss stay in fp32.
"""

from __future__ import annotations

import torch

__all__ = ["linear_multinomial_nll"]


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
    @staticmethod
    def forward(ctx, h, weight, bias, rows, cols, x, dtype):  # type: ignore[override]
        with torch.autocast(h.device.type, enabled=False):
            if dtype is not None and dtype != torch.float32:
                hc, wc = h.to(dtype), weight.to(dtype)
                logits = torch.addmm(bias.to(dtype), hc, wc).float()
            else:
                hc, wc = h.float(), weight
                logits = torch.addmm(bias, hc, wc)
            lse = torch.logsumexp(logits, dim=1)
            picked = logits[rows, cols]
            total = -(x * (picked - lse[rows])).sum()
            # d total / d logits = softmax(l) * sum_i x_ui - x_ui, written over the logits:
            # exp(l - lse + log(sum x)) is the first term (rows without items get exp(-inf) = 0).
            x_sum = torch.zeros(logits.shape[0], dtype=logits.dtype, device=logits.device)
            x_sum.index_add_(0, rows, x)
            logits.sub_((lse - x_sum.log()).unsqueeze(1)).exp_()
            logits.index_put_((rows, cols), -x, accumulate=True)
        ctx.save_for_backward(h, wc, logits)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        h, wc, grad_logits = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        scale = grad_total.to(torch.float32)
        g = grad_logits if wc.dtype == torch.float32 else grad_logits.to(wc.dtype)
        if ctx.needs_input_grad[0]:
            grad_h = (g @ wc.t()).float().mul_(scale).to(h.dtype)
        if ctx.needs_input_grad[1]:
            # The scale goes on the small factor (in fp32), not on the (d, items) product.
            grad_w = ((h.float() * scale).to(wc.dtype).t() @ g).float()
        if ctx.needs_input_grad[2]:
            grad_b = grad_logits.sum(0).mul_(scale)
        return grad_h, grad_w, grad_b, None, None, None, None
