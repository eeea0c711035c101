"""Sparse batches on the torch side: the first layer multiplies a sparse batch by a dense weight.

No dense users x items matrix is built for the input: a batch stays CSR, and the gradient of the
first layer's weight is the transposed batch times the output gradient, computed from a transpose
prepared once per batch (a permutation of the stored values), which is faster on the CPU than
letting autograd transpose a CSR tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch


@dataclass
class SparseBatch:
    """A CSR batch (rows x items) as torch tensors, with what the transpose needs.

    ``values`` are the stored values (ratings or ones); ``rows`` gives each value's row.
    """

    crow: torch.Tensor
    col: torch.Tensor
    rows: torch.Tensor
    values: torch.Tensor
    t_crow: torch.Tensor
    t_col: torch.Tensor
    t_perm: torch.Tensor
    shape: tuple[int, int]

    @classmethod
    def from_csr(cls, matrix: sp.csr_matrix, device: torch.device | str = "cpu") -> SparseBatch:
        """Convert a (sorted, canonical) scipy CSR batch and move it to ``device``."""
        n_rows, n_cols = matrix.shape
        indptr = matrix.indptr.astype(np.int64, copy=False)
        indices = matrix.indices.astype(np.int64, copy=False)
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
        # Stable sort by column gives the CSC order; within a column rows stay ascending.
        perm = np.argsort(indices, kind="stable")
        t_crow = np.zeros(n_cols + 1, np.int64)
        np.cumsum(np.bincount(indices, minlength=n_cols), out=t_crow[1:])

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device, non_blocking=True)

        return cls(
            crow=put(indptr), col=put(indices), rows=put(rows),
            values=put(matrix.data.astype(np.float32, copy=False)),
            t_crow=put(t_crow), t_col=put(rows[perm]), t_perm=put(perm), shape=(n_rows, n_cols),
        )

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    def row_l2_norms(self) -> torch.Tensor:
        """L2 norm of each row's stored values."""
        sq = torch.zeros(self.n_rows, device=self.values.device, dtype=self.values.dtype)
        sq.index_add_(0, self.rows, self.values * self.values)
        return sq.sqrt()

    def matmul(self, values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``X @ weight`` where X has this batch's pattern and the given ``values``."""
        return _SparseMatmul.apply(weight, values, self)


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, values, batch):  # type: ignore[override]
        x = torch.sparse_csr_tensor(
            batch.crow, batch.col, values, batch.shape, check_invariants=False
        )
        ctx.batch = batch
        ctx.save_for_backward(values)
        return torch.sparse.mm(x, weight)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (values,) = ctx.saved_tensors
        b = ctx.batch
        grad_weight = None
        if ctx.needs_input_grad[0]:
            xt = torch.sparse_csr_tensor(
                b.t_crow, b.t_col, values[b.t_perm], (b.shape[1], b.shape[0]), check_invariants=False
            )
            grad_weight = torch.sparse.mm(xt, grad_out.contiguous())
        return grad_weight, None, None
