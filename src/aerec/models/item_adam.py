"""Adam for models with item-sized matrices, without an item-sized gradient.

At a million items, Mult-VAE's two item matrices (input and output, 600 x 1M) are 2.4 GB each in
fp32, and torch's Adam holds a gradient and two moments of each: eight such copies, 19 GB. Two of
the copies are not needed:

* **the input layer's gradient** is non-zero only on the rows of the items a batch holds; the
  sparse first layer (:class:`aerec.models.sparse.SparseBatch`) can return it as a row-sparse
  tensor, and :meth:`ItemAdam.step` applies it. This is *exact*: Adam with a zero gradient row
  still decays that row's moments and still moves its parameters (``m / sqrt(v)`` is not zero
  once the row has been seen), so every row is updated, as torch's dense Adam does; only the
  gradient is sparse. (A "lazy" Adam that updates only the batch's rows, as
  ``torch.optim.SparseAdam``, would save the full pass over the moments but is *not* Adam: the
  rows a batch misses keep stale moments and do not move. It is not used.)
* **the output layer's gradient** is produced tile by tile in the backward of the tiled output
  layer (:mod:`aerec.models.tiled_loss`); :meth:`ItemAdam.tile_step` gives it a callback that
  applies Adam to each tile at once, so the ``(d, items)`` gradient never exists. Exact when that
  layer's loss is the weight's only gradient (no L2 penalty on it, one backward per step): the
  update of a column needs only that column's gradient and moments.

Both keep torch's state layout (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter), so the
optimiser's ``state_dict`` saves and resumes as ``torch.optim.Adam``'s. The arithmetic is Adam's
(bias-corrected, ``eps`` added to ``sqrt(v_hat)``); it is rounded differently from torch's fused
kernel (a few ulp), so it is used only where the memory is needed (see
:func:`aerec.models.tiled_loss.holds_logits`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

__all__ = ["ItemAdam"]

#: Rows of an item matrix updated at a time by the row-sparse step: bounds its temporaries.
ROW_CHUNK = 65_536


class ItemAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (fused kernel where torch has one) that also takes row-sparse
    gradients and steps chosen matrices tile by tile in the backward pass.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        All the parameters, as for ``torch.optim.Adam``.
    lr : float
        Learning rate.
    betas, eps : see ``torch.optim.Adam``.
        (No weight decay, amsgrad or maximize: the two extra paths do not implement them.)
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        params = list(params)
        fused = bool(params) and params[0].device.type in ("cpu", "cuda")
        super().__init__(params, lr=lr, betas=betas, eps=eps, fused=fused or None)

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _group(self, p: torch.Tensor) -> dict[str, Any]:
        return next(g for g in self.param_groups if any(q is p for q in g["params"]))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step: dense gradients through torch's kernel, row-sparse ones here."""
        sparse = [p for g in self.param_groups for p in g["params"]
                  if p.grad is not None and p.grad.is_sparse]
        grads = [p.grad for p in sparse]
        for p in sparse:
            p.grad = None  # torch's Adam refuses sparse gradients; they are applied below
        loss = super().step(closure)
        for p, grad in zip(sparse, grads):
            self._row_sparse_step(p, grad.coalesce())
            p.grad = grad
        return loss

    def _row_sparse_step(self, p: torch.Tensor, grad: torch.Tensor) -> None:
        """Adam on every row of ``p`` with the gradient zero outside ``grad``'s rows."""
        group, state = self._group(p), self._state(p)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step_size, bc2_sqrt = _corrections(group, float(state["step"]))
        rows, values = grad.indices()[0], grad.values()
        bounds = torch.searchsorted(rows, torch.arange(0, p.shape[0] + ROW_CHUNK, ROW_CHUNK,
                                                       device=rows.device)).tolist()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        for k, start in enumerate(range(0, p.shape[0], ROW_CHUNK)):
            stop = min(start + ROW_CHUNK, p.shape[0])
            m_c, v_c = m[start:stop], v[start:stop]
            m_c.mul_(beta1)
            v_c.mul_(beta2)
            lo, hi = bounds[k], bounds[k + 1]
            if hi > lo:
                local, g = rows[lo:hi] - start, values[lo:hi]
                m_c.index_add_(0, local, g, alpha=1 - beta1)
                v_c.index_add_(0, local, g * g, alpha=1 - beta2)
            denom = v_c.sqrt().div_(bc2_sqrt).add_(group["eps"])
            p[start:stop].addcdiv_(m_c, denom, value=-step_size)

    def tile_step(self, p: torch.nn.Parameter) -> Callable[[int, int, torch.Tensor], None]:
        """A callback ``(start, stop, grad)`` that applies Adam to columns ``start:stop`` of the
        ``(d, items)`` matrix ``p`` with that tile's gradient; the tiles of one backward pass
        come in order from column 0, which starts a new step.

        ``p`` then must get no other gradient (its ``.grad`` stays None, and :meth:`step` skips it).
        """
        group = self._group(p)

        @torch.no_grad()
        def apply(start: int, stop: int, grad: torch.Tensor) -> None:
            state = self._state(p)
            if start == 0:
                state["step"] += 1
            beta1, beta2 = group["betas"]
            step_size, bc2_sqrt = _corrections(group, float(state["step"]))
            m = state["exp_avg"][:, start:stop]
            v = state["exp_avg_sq"][:, start:stop]
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = v.sqrt().div_(bc2_sqrt).add_(group["eps"])
            p[:, start:stop].addcdiv_(m, denom, value=-step_size)

        return apply


def _corrections(group: dict[str, Any], step: float) -> tuple[float, float]:
    """Adam's step size ``lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)``."""
    beta1, beta2 = group["betas"]
    return group["lr"] / (1 - beta1 ** step), math.sqrt(1 - beta2 ** step)
