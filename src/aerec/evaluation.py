"""Evaluation protocols: fold-in ranking (Liang et al. 2018) and rating prediction error.

Ranking follows the strong-generalization protocol of "Variational Autoencoders for Collaborative
Filtering": a model sees each held-out user's fold-in items, scores every item, the fold-in items
are removed from the ranking, and the top K are compared with the user's target items. Users are
processed in batches, so memory is bounded by one ``batch x items`` score matrix.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.metrics import _hits, _ndcg, _recall, _top_k, _truncated_recall, mae, rmse, summarize

__all__ = ["evaluate_ranking", "evaluate_ratings"]

ScoreFn = Callable[[sp.csr_matrix], "torch.Tensor | np.ndarray"]
PredictFn = Callable[[sp.csr_matrix, np.ndarray, np.ndarray], "torch.Tensor | np.ndarray"]


def evaluate_ranking(
    score_fn: ScoreFn,
    fold_in: sp.spmatrix | Interactions,
    targets: sp.spmatrix | Interactions,
    ks: tuple[int, ...] = (10, 20, 50, 100),
    batch_size: int = 1000,
    progress: bool = False,
) -> dict[str, float]:
    """Rank all items for each user from the fold-in items and score the top K against targets.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(batch)`` takes a ``(b, n_items)`` CSR batch of fold-in rows (values as stored,
        so ratings for explicit data) and returns ``(b, n_items)`` scores as a numpy array or a
        torch tensor on any device. A tensor stays on its device: masking and top-k run there and
        only the ``(b, max(ks))`` indices come to the CPU. The returned scores may be overwritten.
    fold_in, targets : scipy.sparse matrix or Interactions
        ``(n_users, n_items)`` with rows aligned: the items a user shows the model, which are
        never ranked, and the relevant items (every stored non-zero entry) it should find.
    ks : tuple of int
        Cut-offs; the top ``max(ks)`` is computed once and sliced. A cut-off larger than the
        number of items ranks all of them.
    batch_size : int
        Users scored per call of ``score_fn``.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    dict of str to float
        For each K: ``recall@K`` (hits / #targets), ``truncated_recall@K`` (hits /
        min(K, #targets), the paper's Recall@K) and ``ndcg@K``, each averaged over users, with
        ``<name>_se``, the standard error ``std(ddof=0) / sqrt(n_users)``; and ``n_users``, the
        number of users with at least one target. Users without targets are neither scored nor
        counted.

    See Also
    --------
    aerec.metrics.top_k, aerec.metrics.recall_at_k, aerec.metrics.truncated_recall_at_k,
    aerec.metrics.ndcg_at_k, aerec.metrics.summarize
    """
    fold_in, targets = _aligned(fold_in, targets)
    ks = _check_ks(ks)
    _check_batch_size(batch_size)
    k_max = max(ks)
    n_targets = np.diff(targets.indptr)
    users = np.flatnonzero(n_targets > 0)

    metrics = {"recall": _recall, "truncated_recall": _truncated_recall, "ndcg": _ndcg}
    per_user: dict[str, list[np.ndarray]] = {f"{name}@{k}": [] for k in ks for name in metrics}
    for rows in _batches(users, batch_size, progress):
        batch_fold_in = fold_in[rows]
        scores = score_fn(batch_fold_in)
        _check_scores(scores, (len(rows), fold_in.shape[1]))
        top = _top_k(scores, k_max, batch_fold_in, overwrite=True)
        if isinstance(top, torch.Tensor):
            top = top.cpu().numpy()
        hits, n_relevant = _hits(top, targets[rows])
        for k in ks:
            for name, metric in metrics.items():
                per_user[f"{name}@{k}"].append(metric(hits[:, :k], n_relevant))

    result = summarize({name: _concat(parts) for name, parts in per_user.items()})
    result["n_users"] = int(len(users))
    return result


def evaluate_ratings(
    predict_fn: PredictFn,
    fold_in: sp.spmatrix | Interactions,
    targets: sp.spmatrix | Interactions,
    *,
    clip: tuple[float, float] | None = (1.0, 5.0),
) -> dict[str, float]:
    """RMSE and MAE of predicted ratings on the stored entries of ``targets``.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(fold_in, rows, cols)`` returns the predicted rating of each target entry
        ``(rows[j], cols[j])`` as a 1-D array or tensor. ``fold_in`` is the whole ``(n_users,
        n_items)`` fold-in CSR and ``rows`` index into it, so a model that needs the full matrix
        (an item-based AutoRec) can use it; batching, if needed, is up to ``predict_fn``.
    fold_in, targets : scipy.sparse matrix or Interactions
        ``(n_users, n_items)`` with rows aligned; the stored non-zero values of ``targets`` are
        the true ratings.
    clip : tuple of float or None
        Predictions are clipped to ``[low, high]`` before scoring (the rating scale, as the
        AutoRec paper does); None keeps them as they are.

    Returns
    -------
    dict of str to float
        ``rmse``, ``mae`` and ``n_ratings`` (the number of target entries scored).
    """
    fold_in, targets = _aligned(fold_in, targets)
    coo = targets.tocoo()
    nonzero = coo.data != 0
    rows = coo.row[nonzero].astype(np.int64)
    cols = coo.col[nonzero].astype(np.int64)
    truth = coo.data[nonzero].astype(np.float64)
    if len(truth) == 0:
        raise ValueError("targets hold no ratings; there is nothing to evaluate")
    pred = predict_fn(fold_in, rows, cols)
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    pred = np.asarray(pred, np.float64).reshape(-1)
    if len(pred) != len(truth):
        raise ValueError(f"predict_fn returned {len(pred)} predictions for {len(truth)} target entries")
    if clip is not None:
        low, high = clip
        if not low <= high:
            raise ValueError(f"clip must be (low, high) with low <= high, got {clip!r}")
        pred = np.clip(pred, low, high)
    return {"rmse": rmse(pred, truth), "mae": mae(pred, truth), "n_ratings": int(len(truth))}


# -- helpers ----------------------------------------------------------------------------------
def _as_csr(data: sp.spmatrix | Interactions, name: str) -> sp.csr_matrix:
    if isinstance(data, Interactions):
        return data.matrix
    if sp.issparse(data):
        return data.tocsr()
    raise TypeError(
        f"{name} must be a scipy sparse matrix or an aerec Interactions, got {type(data).__name__}"
    )


def _aligned(
    fold_in: sp.spmatrix | Interactions, targets: sp.spmatrix | Interactions
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Both as CSR, after checking that their rows and columns mean the same users and items."""
    if isinstance(fold_in, Interactions) and isinstance(targets, Interactions):
        if not np.array_equal(fold_in.user_ids, targets.user_ids):
            raise ValueError("fold_in and targets hold different users (or the same in another order)")
        if not np.array_equal(fold_in.item_ids, targets.item_ids):
            raise ValueError("fold_in and targets have different item vocabularies")
    a, b = _as_csr(fold_in, "fold_in"), _as_csr(targets, "targets")
    if a.shape != b.shape:
        raise ValueError(f"fold_in has shape {a.shape} but targets have shape {b.shape}")
    return a, b


def _check_ks(ks: tuple[int, ...]) -> tuple[int, ...]:
    ks = tuple(ks) if not isinstance(ks, (int, np.integer)) else (ks,)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _check_scores(scores: object, shape: tuple[int, int]) -> None:
    if not isinstance(scores, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"score_fn must return a numpy array or torch tensor, got {type(scores).__name__}"
        )
    if tuple(scores.shape) != shape:
        raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for a batch of shape {shape}")


def _batches(users: np.ndarray, batch_size: int, progress: bool):
    starts = range(0, len(users), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="evaluating", unit="batch")
    for start in starts:
        yield users[start : start + batch_size]


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)
