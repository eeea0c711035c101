"""Sparse batches on the torch side: the first layer multiplies a sparse batch by a dense weight.

No dense users x items matrix is built for the input: a batch stays CSR, and the gradient of the
first layer's weight is the transposed batch times the output gradient, computed from a transpose
prepared once per batch (a permutation of the stored values), which is faster on the CPU than
letting autograd transpose a CSR tensor. Both products run as ``embedding_bag`` (weighted sums of
rows), see ``_SparseMatmul``.

:class:`TorchCSR` keeps a whole matrix on a device (the GPU) and slices batches of rows there, so
that training on CUDA copies nothing per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F


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
        # Stable sort by column gives the CSC order; within a column rows stay ascending. NumPy
        # sorts 16-bit keys by radix, ~10x faster than int64 keys (a stable sort has one answer).
        keys = indices.astype(np.uint16) if n_cols <= 2**16 else indices
        perm = np.argsort(keys, kind="stable")
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

    def matmul(self, values: torch.Tensor, weight: torch.Tensor, *,
               row_sparse_grad: bool = False) -> torch.Tensor:
        """``X @ weight`` where X has this batch's pattern and the given ``values``.

        ``row_sparse_grad``: the weight's gradient is a sparse COO tensor holding only the rows
        of the batch's items (for :class:`aerec.models.item_adam.ItemAdam`), not a dense
        ``items x d`` matrix that is zero elsewhere.
        """
        return _SparseMatmul.apply(weight, values, self, row_sparse_grad)


class TorchCSR:
    """A whole CSR matrix as torch tensors on a device, cut into :class:`SparseBatch` es there.

    The row pointers are also kept on the host, so that a batch's size is known without asking
    the device (which would make the host wait for it).
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device | str) -> None:
        self.shape = matrix.shape
        self.device = torch.device(device)
        self.host_counts = np.diff(matrix.indptr).astype(np.int64)
        self.indptr = torch.from_numpy(matrix.indptr.astype(np.int64)).to(self.device)
        self.indices = torch.from_numpy(matrix.indices.astype(np.int64)).to(self.device)
        self.data = torch.from_numpy(matrix.data.astype(np.float32, copy=False)).to(self.device)

    @classmethod
    def from_scipy(cls, matrix: sp.csr_matrix, device: torch.device | str) -> TorchCSR:
        """Copy a canonical (sorted indices) scipy CSR matrix to ``device``."""
        return cls(matrix, device)

    def batch(self, rows: np.ndarray) -> SparseBatch:
        """The rows ``rows`` (ascending) as a batch, equal to ``SparseBatch.from_csr(m[rows])``."""
        dev = self.device
        n_rows, n_cols = len(rows), self.shape[1]
        host_counts = self.host_counts[rows]
        nnz = int(host_counts.sum())
        rows_t = _to_device(rows.astype(np.int64, copy=False), dev)
        counts = _to_device(host_counts, dev)
        crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=dev)
        torch.cumsum(counts, 0, out=crow[1:])
        local = torch.repeat_interleave(torch.arange(n_rows, device=dev), counts, output_size=nnz)
        pos = self.indptr[rows_t][local] + torch.arange(nnz, device=dev) - crow[local]
        col = self.indices[pos]
        perm = torch.sort(col, stable=True).indices
        # Counted with index_add_: bincount would read the largest column back to the host.
        per_col = torch.zeros(n_cols, dtype=torch.int64, device=dev)
        per_col.index_add_(0, col, torch.ones_like(col))
        t_crow = torch.zeros(n_cols + 1, dtype=torch.int64, device=dev)
        torch.cumsum(per_col, 0, out=t_crow[1:])
        return SparseBatch(
            crow=crow, col=col, rows=local, values=self.data[pos],
            t_crow=t_crow, t_col=local[perm], t_perm=perm, shape=(n_rows, n_cols),
        )


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda":
        # From pinned memory the copy is queued without waiting for the GPU.
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def csr_times_dense(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                    dense: torch.Tensor) -> torch.Tensor:
    """``X @ dense`` for the CSR matrix ``X`` given by its row pointers, columns and values.

    Each of X's rows is a bag of ``dense``'s rows weighted by its values, which is what
    ``embedding_bag`` sums: no sparse tensor type is needed, and on the CPU it is 2-5x faster than
    ``torch.sparse.mm`` on a CSR tensor. Rows with no entries give zeros.
    """
    return F.embedding_bag(col, dense, crow[:-1], mode="sum",
                           per_sample_weights=values.to(dense.dtype))


class _SparseMatmul(torch.autograd.Function):
    """``X @ W`` and ``X^T @ G`` with :func:`csr_times_dense`: each of X's rows is a bag of item
    rows of W, and each of X^T's rows (an item) a bag of rows of G. It sums each row in the same
    (stored) order as a CSR product; products of values other than 1 may round differently (fused
    multiply-add or not), so results agree to float rounding."""

    @staticmethod
    def forward(ctx, weight, values, batch, row_sparse_grad=False):  # type: ignore[override]
        ctx.batch, ctx.row_sparse_grad = batch, row_sparse_grad
        ctx.save_for_backward(values)
        # The weighted sums have no bf16 kernel on the CPU, and this layer's share of the work is
        # small: it stays fp32 under autocast.
        with torch.autocast(weight.device.type, enabled=False):
            return csr_times_dense(batch.crow, batch.col, values, weight)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (values,) = ctx.saved_tensors
        b = ctx.batch
        grad_weight = None
        if ctx.needs_input_grad[0] and ctx.row_sparse_grad:
            # the bags of the items present only: one gradient row each
            counts = b.t_crow[1:] - b.t_crow[:-1]
            used = torch.nonzero(counts).squeeze(1)
            if len(used):
                rows = F.embedding_bag(b.t_col, grad_out.contiguous(), b.t_crow[used], mode="sum",
                                       per_sample_weights=values[b.t_perm].to(grad_out.dtype))
            else:
                rows = grad_out.new_zeros(0, grad_out.shape[1])
            grad_weight = torch.sparse_coo_tensor(used.unsqueeze(0), rows, (b.shape[1], rows.shape[1]),
                                                  is_coalesced=True, check_invariants=False)
        elif ctx.needs_input_grad[0]:
            grad_weight = csr_times_dense(b.t_crow, b.t_col, values[b.t_perm],
                                          grad_out.contiguous())
        return grad_weight, None, None, None
