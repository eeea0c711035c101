"""The output layer and the multinomial log-likelihood as one autograd step.

In Mult-VAE / Mult-DAE the last layer's ``batch x items`` logits dominate everything but the matrix
products: ``log_softmax`` writes a second such matrix, the gather's backward a zero-filled third,
``log_softmax``'s backward a fourth. Here the logits buffer is turned, in place, into the gradient
of the loss with respect to the logits, ``softmax(l) * sum(x) - x`` per user, which is all the
backward needs; the three products (logits, gradient of the hidden layer, gradient of the weight)
are issued in the transposes measured fastest (see ``aerec.bench``).

The value is the same sum as ``-(log_softmax(h W + b)[rows, cols] * x).sum()``, computed as
``-(x * (l[rows, cols] - logsumexp(l)[rows])).sum()``, with one exponential per logit and no
temporary of the logits' size: equal up to float rounding.

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
        low = dtype is not None and dtype != torch.float32
        with torch.autocast(h.device.type, enabled=False):
            hc = h.to(dtype) if low else h.float()
            wc = weight.to(dtype) if low else weight
            logits = torch.addmm(bias.to(wc.dtype), hc, wc)
            picked = logits[rows, cols].float()
            # One exp per logit, in place: e = exp(l - max), s = sum(e), lse = max + log(s).
            # (torch.logsumexp would allocate a batch x items temporary and exponentiate again.)
            # In bf16 the subtraction also converts to fp32, in the same pass.
            row_max = logits.amax(dim=1, keepdim=True).float()
            e = torch.sub(logits, row_max) if low else logits.sub_(row_max)
            del logits
            e.exp_()
            s = e.sum(dim=1)
            lse = row_max.squeeze(1) + s.log()
            total = -(x * (picked - lse[rows])).sum()
            # d total / d logits = softmax(l) * sum_i x_ui - x_ui, written over e (in bf16 into a
            # bf16 buffer, the operand the backward products take).
            x_sum = torch.zeros(e.shape[0], dtype=e.dtype, device=e.device)
            x_sum.index_add_(0, rows, x)
            scale = (x_sum / s).unsqueeze(1)
            g = torch.mul(e, scale, out=torch.empty_like(e, dtype=wc.dtype)) if low else e.mul_(scale)
            del e
            g.index_put_((rows, cols), -x.to(g.dtype), accumulate=True)
        ctx.save_for_backward(h, wc, g)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        h, wc, g = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        scale = grad_total.to(torch.float32)
        if ctx.needs_input_grad[0]:
            grad_h = (g @ wc.t()).float().mul_(scale).to(h.dtype)
        if ctx.needs_input_grad[1]:
            # The scale goes on the small factor (in fp32), not on the (d, items) product.
            grad_w = ((h.float() * scale).to(wc.dtype).t() @ g).float()
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(0, dtype=torch.float32).mul_(scale)
        return grad_h, grad_w, grad_b, None, None, None, None
