"""Evaluation protocols: fold-in ranking (Liang et al. 2018) and rating prediction error.

Ranking follows the strong-generalization protocol of "Variational Autoencoders for Collaborative
Filtering": a model sees each held-out user's fold-in items, scores every item, the fold-in items
are removed from the ranking, and the top K are compared with the user's target items. Users are
processed in batches, so memory is bounded by one ``batch x items`` score matrix.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.interactions import Interactions
from aerec.metric_names import DEFAULT_RANKING_METRICS, RANKING_METRICS
from aerec.metrics import (
    _check_popularity,
    _hit_rate,
    _hits,
    _map,
    _mean_over_list,
    _mrr,
    _ndcg,
    _precision,
    _recall,
    _recommended,
    _self_information,
    _top_k,
    _truncated_recall,
    mae,
    rmse,
    summarize,
)
from aerec.models.budget import score_rows

__all__ = ["evaluate_ranking", "evaluate_ratings", "RANKING_METRICS", "DEFAULT_RANKING_METRICS"]

# Metrics of the hits in the top K (per user, with a standard error).
_HIT_METRICS = {
    "recall": _recall,
    "truncated_recall": _truncated_recall,
    "ndcg": _ndcg,
    "precision": _precision,
    "hit_rate": _hit_rate,
    "mrr": _mrr,
    "map": _map,
}
# Metrics of the recommended items' training popularity (per user, with a standard error).
_POPULARITY_METRICS = ("popularity", "novelty")

#: Every metric name ``evaluate_ranking(metrics=...)`` accepts; ``coverage`` is one number for
#: all users (no standard error), ``popularity`` and ``novelty`` need ``item_popularity``.
assert RANKING_METRICS == (*_HIT_METRICS, "coverage", *_POPULARITY_METRICS)  # one list of names

ScoreFn = Callable[[sp.csr_matrix], "torch.Tensor | np.ndarray"]
PredictFn = Callable[[sp.csr_matrix, np.ndarray, np.ndarray], "torch.Tensor | np.ndarray"]


def evaluate_ranking(
    score_fn: ScoreFn,
    fold_in: sp.spmatrix | Interactions,
    targets: sp.spmatrix | Interactions,
    ks: tuple[int, ...] = (10, 20, 50, 100),
    batch_size: int = 1000,
    progress: bool = False,
    *,
    metrics: tuple[str, ...] | None = None,
    item_popularity: np.ndarray | None = None,
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
        Users scored per call of ``score_fn``; fewer where a batch's float32 scores would pass
        :data:`aerec.models.budget.SCORE_BLOCK_BYTES` (at a million items, 67 users a call).
    progress : bool
        Show a progress bar over batches.
    metrics : sequence of str, optional
        Which metrics to report, from :data:`RANKING_METRICS`: ``recall``, ``truncated_recall``,
        ``ndcg``, ``precision``, ``hit_rate``, ``mrr``, ``map`` (denominator min(K, #targets)),
        ``coverage``, ``popularity`` and ``novelty``. Default: recall, truncated_recall and ndcg.
    item_popularity : numpy.ndarray, optional
        ``(n_items,)`` share of training users per item (:func:`aerec.metrics.item_popularity`
        of the training matrix); needed for ``popularity`` and ``novelty`` only.

    Returns
    -------
    dict of str to float
        For each K, in the order of ``metrics``: ``<name>@K`` averaged over users with
        ``<name>@K_se``, the standard error ``std(ddof=0) / sqrt(n_users)``, except
        ``coverage@K`` (the share of the catalogue in anyone's top K), which has none; then
        ``n_users``, the number of users with at least one target. By default these are
        ``recall@K`` (hits / #targets), ``truncated_recall@K`` (hits / min(K, #targets), the
        paper's Recall@K) and ``ndcg@K``. Users without targets are neither scored nor counted.

    See Also
    --------
    aerec.metrics.top_k, aerec.metrics.recall_at_k, aerec.metrics.truncated_recall_at_k,
    aerec.metrics.ndcg_at_k, aerec.metrics.map_at_k, aerec.metrics.novelty_at_k,
    aerec.metrics.summarize
    """
    fold_in, targets = _aligned(fold_in, targets)
    ks = _check_ks(ks)
    _check_batch_size(batch_size)
    names = _check_metrics(metrics)
    n_items = fold_in.shape[1]
    batch_size = score_rows(n_items, batch_size)
    per_item = _per_item_values(names, item_popularity, n_items)
    k_max = max(ks)
    n_targets = np.diff(targets.indptr)
    users = np.flatnonzero(n_targets > 0)

    hit_metrics = {name: _HIT_METRICS[name] for name in names if name in _HIT_METRICS}
    per_user: dict[str, list[np.ndarray]] = {
        f"{name}@{k}": [] for k in ks for name in names if name != "coverage"
    }
    covered = {k: np.zeros(n_items, bool) for k in ks} if "coverage" in names else {}
    for rows in _batches(users, batch_size, progress):
        batch_fold_in = fold_in[rows]
        scores = score_fn(batch_fold_in)
        _check_scores(scores, (len(rows), n_items))
        top = _top_k(scores, k_max, batch_fold_in, overwrite=True)
        if isinstance(top, torch.Tensor):
            top = top.cpu().numpy()
        if hit_metrics:
            hits, n_relevant = _hits(top, targets[rows])
        for k in ks:
            for name, metric in hit_metrics.items():
                per_user[f"{name}@{k}"].append(metric(hits[:, :k], n_relevant))
            for name, values in per_item.items():
                per_user[f"{name}@{k}"].append(_mean_over_list(top[:, :k], values))
            if covered:
                covered[k] |= _recommended(top[:, :k], n_items)

    summary = summarize({name: _concat(parts) for name, parts in per_user.items()})
    return _report(ks, names, summary, covered, int(len(users)))


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


def _report(ks: tuple[int, ...], names: tuple[str, ...], summary: dict[str, float],
            covered: dict[int, np.ndarray], n_users: int) -> dict[str, Any]:
    """The result, grouped by K and then in the order of ``names``; coverage has no ``_se``."""
    result: dict[str, Any] = {}
    for k in ks:
        for name in names:
            key = f"{name}@{k}"
            if name == "coverage":
                result[key] = float(covered[k].mean()) if n_users else float("nan")
            else:
                result[key], result[f"{key}_se"] = summary[key], summary[f"{key}_se"]
    result["n_users"] = n_users
    return result


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


def _check_metrics(metrics: tuple[str, ...] | None) -> tuple[str, ...]:
    """The metric names asked for, in order, without repeats; a ValueError lists the valid ones."""
    if metrics is None:
        return DEFAULT_RANKING_METRICS
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [name for name in names if name not in RANKING_METRICS]
    if unknown or not names:
        what = f"unknown metric {unknown[0]!r}" if unknown else "metrics is empty"
        raise ValueError(f"{what}; valid names: {', '.join(RANKING_METRICS)}")
    return tuple(dict.fromkeys(names))


def _per_item_values(names: tuple[str, ...], item_popularity: np.ndarray | None,
                     n_items: int) -> dict[str, np.ndarray]:
    """The per-item value whose mean over a top K each popularity metric in ``names`` reports."""
    wanted = [name for name in names if name in _POPULARITY_METRICS]
    if not wanted:
        return {}
    if item_popularity is None:
        raise ValueError(
            f"{wanted[0]} needs item_popularity "
            "(aerec.metrics.item_popularity of the training matrix)"
        )
    popularity = _check_popularity(item_popularity)
    if len(popularity) != n_items:
        raise ValueError(
            f"item_popularity has {len(popularity)} items but the matrices have {n_items}"
        )
    return {name: popularity if name == "popularity" else _self_information(popularity)
            for name in wanted}


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
