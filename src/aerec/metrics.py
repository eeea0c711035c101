"""Ranking and rating metrics as pure functions: top-k ids and held-out matrices in, numbers out.

The ranking metrics follow the definitions of Liang et al. (2018), "Variational Autoencoders for
Collaborative Filtering" (WWW), and of RecBole / LightGCN where the two differ:

* ``recall_at_k``: hits@K / #targets (RecBole, LightGCN).
* ``truncated_recall_at_k``: hits@K / min(K, #targets), which the Mult-VAE paper calls Recall@K
  (it reaches 1 whenever the top K are all relevant).
* ``ndcg_at_k``: binary gain, discount 1 / log2(rank + 1) for ranks 1..K, normalised by the
  DCG of an ideal list with min(#targets, K) relevant items first.

The metrics practitioners report beside them (docs/metrics.md gives every formula and its source):

* ``precision_at_k``: hits@K / K; ``hit_rate_at_k``: 1 if any target is in the top K;
  ``mrr_at_k``: 1 / rank of the first hit (0 without one);
* ``map_at_k``: the sum of precision@r over the ranks r of the hits, divided by
  min(K, #targets) (RecBole's MAP@K; ranx and trec_eval divide by #targets instead);
* ``item_coverage``: the share of the catalogue that appears in anyone's top K;
* ``average_popularity_at_k`` and ``novelty_at_k``: the mean training popularity, and the mean
  self-information -log2(popularity), of a user's top K, from :func:`item_popularity`.

Every per-user function of the targets returns NaN for users without targets; :func:`summarize`
skips NaN, so such users are excluded from the means (the Mult-VAE reference code has no such
users because it splits only users with at least five items).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "top_k",
    "recall_at_k",
    "truncated_recall_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "map_at_k",
    "item_coverage",
    "item_popularity",
    "average_popularity_at_k",
    "novelty_at_k",
    "summarize",
    "rmse",
    "mae",
]


# -- top-k ------------------------------------------------------------------------------------
def top_k(
    scores: torch.Tensor | np.ndarray,
    k: int,
    exclude: sp.spmatrix | None = None,
) -> torch.Tensor | np.ndarray:
    """Indices of the ``k`` highest scores of each row, best first.

    Parameters
    ----------
    scores : torch.Tensor or numpy.ndarray
        ``(batch, n_items)`` scores. A tensor stays on its device: masking and selection run
        there, and the result is a tensor on that device.
    k : int
        How many items to return per row. Clamped to ``n_items``.
    exclude : scipy.sparse matrix, optional
        ``(batch, n_items)``; every stored non-zero entry is an item that must not be ranked (the
        fold-in items). Its score is set to ``-inf`` (on a copy; ``scores`` is not modified), so
        it appears only when a row has fewer than ``k`` other items.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        ``(batch, min(k, n_items))`` int64 item indices sorted by descending score. Ties are
        broken by the lower item index, on every device, so that numpy, CPU and CUDA agree.

    Raises
    ------
    ValueError
        If ``k < 1``, the shapes disagree, or a score is NaN.
    """
    return _top_k(scores, k, exclude, overwrite=False)


def _top_k(
    scores: torch.Tensor | np.ndarray, k: int, exclude: sp.spmatrix | None, *, overwrite: bool
) -> torch.Tensor | np.ndarray:
    """:func:`top_k`, allowed to write the exclusions into ``scores`` when ``overwrite``.

    Copying a large CPU batch costs about as much as the selection itself, so the evaluation
    loop, which owns the scores it gets back, skips the copy.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(scores, torch.Tensor):
        return _top_k_torch(scores, int(k), exclude, overwrite)
    return _top_k_numpy(np.asarray(scores), int(k), exclude, overwrite)


def _excluded_coords(exclude: sp.spmatrix, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if not sp.issparse(exclude):
        raise TypeError(f"exclude must be a scipy sparse matrix, got {type(exclude).__name__}")
    if exclude.shape != shape:
        raise ValueError(f"exclude has shape {exclude.shape} but scores have shape {shape}")
    csr = exclude.tocsr()
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    nonzero = csr.data != 0
    return rows[nonzero], csr.indices[nonzero].astype(np.int64)


def _check_scores(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(f"scores must be 2-D (batch x items), got shape {tuple(shape)}")


_NAN_MESSAGE = "scores contain NaN; the model has probably diverged"


def _top_k_numpy(
    scores: np.ndarray, k: int, exclude: sp.spmatrix | None, overwrite: bool
) -> np.ndarray:
    _check_scores(scores.shape)
    batch, n_items = scores.shape
    k = min(k, n_items)
    if k == 0:
        return np.zeros((batch, 0), np.int64)
    dtype = scores.dtype if scores.dtype.kind == "f" else np.float64
    # A view (a slice or a broadcast) may share memory with the caller's data.
    writable = overwrite and scores.flags.writeable and scores.base is None
    s = scores.astype(dtype, copy=exclude is not None and not writable)
    if exclude is not None:
        rows, cols = _excluded_coords(exclude, scores.shape)
        s[rows, cols] = -np.inf
    if np.isnan(s).any():
        raise ValueError(_NAN_MESSAGE)
    kth = np.partition(s, n_items - k, axis=1)[:, n_items - k, None]
    chosen = _choose(s > kth, s == kth, k)
    return _order(s, np.nonzero(chosen)[1].reshape(batch, k))


def _top_k_torch(
    scores: torch.Tensor, k: int, exclude: sp.spmatrix | None, overwrite: bool
) -> torch.Tensor:
    _check_scores(tuple(scores.shape))
    batch, n_items = scores.shape
    k = min(k, n_items)
    if k == 0:
        return torch.zeros((batch, 0), dtype=torch.int64, device=scores.device)
    s = (scores if scores.is_floating_point() else scores.double()).detach()
    if exclude is not None:
        rows, cols = _excluded_coords(exclude, tuple(scores.shape))
        index = (torch.from_numpy(rows).to(s.device), torch.from_numpy(cols).to(s.device))
        minus_inf = torch.tensor(float("-inf"), dtype=s.dtype, device=s.device)
        # A view (an expanded or sliced tensor) shares memory with the caller's data, and a
        # tensor in an autograd graph may be needed by backward: both are copied.
        if overwrite and scores._base is None and not scores.requires_grad:
            s.index_put_(index, minus_inf)
        else:
            s = s.index_put(index, minus_inf)
    # One value past the k-th tells whether the top-k set is unique; torch.topk sorts NaN first.
    values, idx = torch.topk(s, min(k + 1, n_items), dim=1)
    if torch.isnan(values[:, 0]).any():
        raise ValueError(_NAN_MESSAGE)
    idx = idx[:, :k]
    if k < n_items:
        # torch.topk picks among items tied with the k-th value in an unspecified order (CPU and
        # CUDA differ); only those rare rows are redone by comparison, lowest index first.
        ambiguous = torch.nonzero(values[:, k - 1] == values[:, k])[:, 0]
        if len(ambiguous):
            idx = idx.clone()
            idx[ambiguous] = _lowest_index_ties(s[ambiguous], values[ambiguous], idx[ambiguous], k)
    return _order(s, idx.sort(dim=1).values)


def _lowest_index_ties(s: torch.Tensor, values: torch.Tensor, idx: torch.Tensor,
                       k: int) -> torch.Tensor:
    """The top ``k`` of rows whose k-th and (k+1)-th best scores tie: the items ``torch.topk``
    found above the k-th value, then the tied items of lowest index.

    Only the (few) tied entries are ranked, so a batch of bf16 scores, where most rows tie at the
    boundary, costs one comparison pass rather than a cumulative sum over every item.
    """
    kth = values[:, k - 1 : k]
    above = values[:, :k] > kth  # everything above the k-th value is among topk's first k
    need = k - above.sum(1)
    tie_rows, tie_cols = torch.nonzero(s == kth, as_tuple=True)  # ascending columns in each row
    counts = torch.bincount(tie_rows, minlength=s.shape[0])
    row_start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(tie_rows), device=s.device) - row_start[tie_rows]
    keep = rank < need[tie_rows]
    above_rows, above_pos = torch.nonzero(above, as_tuple=True)
    rows = torch.cat([above_rows, tie_rows[keep]])
    cols = torch.cat([idx[above_rows, above_pos], tie_cols[keep]])
    return cols[torch.argsort(rows, stable=True)].view(-1, k)


def _order(s, cols):
    """Sort ``cols`` (ascending in each row) by descending score; a stable sort keeps ties in index
    order. Works on numpy arrays and torch tensors alike."""
    if isinstance(s, torch.Tensor):
        order = torch.sort(s.gather(1, cols), dim=1, descending=True, stable=True).indices
        return cols.gather(1, order)
    order = np.argsort(-np.take_along_axis(s, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1).astype(np.int64)


def _choose(above, tied, k: int):
    """Mask of exactly ``k`` items per row: all above the k-th value, then ties by lowest index.

    Works on numpy arrays and torch tensors alike. The cumulative sum that ranks ties is computed
    only for the rows where ties straddle the boundary, which are rare with real scores, so that
    no batch-sized int64 array is built in the common case.
    """
    need = k - above.sum(1)
    chosen = above | tied
    ambiguous = tied.sum(1) > need
    if ambiguous.any():
        tie_rank = tied[ambiguous].cumsum(1)
        chosen[ambiguous] = above[ambiguous] | (tied[ambiguous] & (tie_rank <= need[ambiguous, None]))
    return chosen


# -- per-user ranking metrics -----------------------------------------------------------------
def recall_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """Recall@K as in RecBole and LightGCN: hits in the top K divided by the number of targets.

    Parameters
    ----------
    topk : numpy.ndarray or torch.Tensor
        ``(batch, K)`` distinct item indices per user, best first (as :func:`top_k` returns).
    targets : scipy.sparse matrix
        ``(batch, n_items)``; stored non-zero entries are the relevant items.

    Returns
    -------
    numpy.ndarray
        ``(batch,)`` float64; NaN for users without targets.
    """
    return _recall(*_hits(topk, targets))


def truncated_recall_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """Recall@K of the Mult-VAE paper: hits in the top K divided by min(K, number of targets).

    Parameters and return value are those of :func:`recall_at_k`.
    """
    return _truncated_recall(*_hits(topk, targets))


def ndcg_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """NDCG@K with binary gains and discount 1 / log2(rank + 1), ranks counted from 1.

    The ideal DCG sums the discounts of the first min(number of targets, K) ranks.
    Parameters and return value are those of :func:`recall_at_k`.
    """
    return _ndcg(*_hits(topk, targets))


def precision_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """Precision@K: hits in the top K divided by K.

    K is the length of the list, ``topk.shape[1]`` (shorter than the cut-off only when there are
    fewer items than that). Parameters and return value are those of :func:`recall_at_k`.
    """
    return _precision(*_hits(topk, targets))


def hit_rate_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """Hit rate@K (HR@K): 1 if at least one target is in the top K, else 0.

    Parameters and return value are those of :func:`recall_at_k`.
    """
    return _hit_rate(*_hits(topk, targets))


def mrr_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """Reciprocal rank@K: 1 / rank of the first target in the top K (ranks from 1), 0 without one.

    Its mean over users is MRR@K. Parameters and return value are those of :func:`recall_at_k`.
    """
    return _mrr(*_hits(topk, targets))


def map_at_k(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> np.ndarray:
    """Average precision@K, whose mean over users is MAP@K.

    ``AP@K = sum over ranks r <= K holding a target of precision@r, divided by min(K, #targets)``.
    The denominator min(K, #targets) (RecBole's, and that of most recommender papers) makes a
    list of K targets score 1 even when the user has more than K; ranx and trec_eval divide by
    #targets, so their value is this one times ``min(K, #targets) / #targets``.
    Parameters and return value are those of :func:`recall_at_k`.
    """
    return _map(*_hits(topk, targets))


def item_coverage(topk: np.ndarray | torch.Tensor, n_items: int) -> float:
    """Item coverage@K: the share of the ``n_items`` catalogue in at least one user's top K.

    Parameters
    ----------
    topk : numpy.ndarray or torch.Tensor
        ``(n_users, K)`` item indices, one row per user the list was made for.
    n_items : int
        The size of the catalogue.

    Returns
    -------
    float
        In [0, 1]; NaN when ``topk`` has no rows. It is one number for the whole user set, so it
        has no standard error.
    """
    topk = _as_ids(topk, n_items)
    if topk.shape[0] == 0:
        return float("nan")
    return float(_recommended(topk, n_items).mean())


def item_popularity(train: sp.spmatrix) -> np.ndarray:
    """The share of training users who interacted with each item: ``pop_i / n_users``.

    Parameters
    ----------
    train : scipy.sparse matrix
        ``(n_users, n_items)`` training interactions; every stored non-zero entry counts once.

    Returns
    -------
    numpy.ndarray
        ``(n_items,)`` float64 in [0, 1]; 0 for an item nobody had.
    """
    if not sp.issparse(train):
        raise TypeError(f"train must be a scipy sparse matrix, got {type(train).__name__}")
    n_users, n_items = train.shape
    if n_users == 0:
        raise ValueError("train has no users; item popularity is undefined")
    csr = sp.csr_matrix(train, copy=True)
    csr.sum_duplicates()
    counts = np.bincount(csr.indices[csr.data != 0], minlength=n_items)
    return counts / n_users


def average_popularity_at_k(topk: np.ndarray | torch.Tensor,
                            item_popularity: np.ndarray) -> np.ndarray:
    """Average popularity@K: the mean popularity of a user's top K items.

    Parameters
    ----------
    topk : numpy.ndarray or torch.Tensor
        ``(batch, K)`` item indices per user.
    item_popularity : numpy.ndarray
        ``(n_items,)`` share of training users per item, as :func:`item_popularity` returns.
        Multiplied by the number of training users, the result is RecBole's AveragePopularity
        (Abdollahpouri et al.'s ARP), which counts users.

    Returns
    -------
    numpy.ndarray
        ``(batch,)`` float64.
    """
    popularity = _check_popularity(item_popularity)
    return _mean_over_list(_as_ids(topk, len(popularity)), popularity)


def novelty_at_k(topk: np.ndarray | torch.Tensor, item_popularity: np.ndarray) -> np.ndarray:
    """Novelty@K: the mean self-information ``-log2(pop_i / n_users)`` of a user's top K items.

    The definition of Zhou et al. (2010, PNAS) and of Kaminskas & Bridge (2016, ACM TiiS): an
    item every training user had scores 0 bits, one that 1 in 1,024 had scores 10. An item that
    no training user had would score infinity; it is counted as the least popular item that
    someone had (1 / n_users when some item has a single user), so that one such item does not
    make the mean infinite. Strong-generalization splits keep only items of training users, so
    there it never applies.

    Parameters and return value are those of :func:`average_popularity_at_k`.
    """
    popularity = _check_popularity(item_popularity)
    return _mean_over_list(_as_ids(topk, len(popularity)), _self_information(popularity))


# The metrics from the ``(batch, K)`` relevance of the top K and the targets per user.
def _recall(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return _divide(hits.sum(1), n_relevant)


def _truncated_recall(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return _divide(hits.sum(1), np.minimum(hits.shape[1], n_relevant))


def _ndcg(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = hits @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_relevant, k)]
    return _divide(dcg, ideal)


def _precision(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return _divide(hits.sum(1), np.where(n_relevant > 0, hits.shape[1], 0))


def _hit_rate(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return _divide(hits.any(1), np.where(n_relevant > 0, 1, 0))


def _mrr(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    # argmax finds the first hit; a row without one gets 0 through the any() factor.
    first = hits.argmax(1) + 1.0 if hits.shape[1] else np.ones(len(hits))
    return _divide(hits.any(1) / first, np.where(n_relevant > 0, 1, 0))


def _map(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    precision_at_rank = np.cumsum(hits, 1) / np.arange(1, k + 1, dtype=np.float64)
    return _divide((precision_at_rank * hits).sum(1), np.minimum(k, n_relevant))


# The popularity metrics from the ``(batch, K)`` ids of the top K and a value per item.
def _mean_over_list(topk: np.ndarray, per_item: np.ndarray) -> np.ndarray:
    if topk.shape[1] == 0:
        return np.full(topk.shape[0], np.nan)
    return per_item[topk].mean(1)


def _self_information(popularity: np.ndarray) -> np.ndarray:
    seen = popularity[popularity > 0]
    if len(seen) == 0:
        raise ValueError("item_popularity is zero for every item; novelty is undefined")
    return -np.log2(np.maximum(popularity, seen.min()))


def _check_popularity(item_popularity: np.ndarray) -> np.ndarray:
    popularity = np.asarray(item_popularity, np.float64)
    if popularity.ndim != 1:
        raise ValueError(
            f"item_popularity must be 1-D (one value per item), got shape {popularity.shape}"
        )
    if not np.all((popularity >= 0) & (popularity <= 1)):
        raise ValueError(
            "item_popularity must be shares of training users in [0, 1] "
            "(aerec.metrics.item_popularity(train) computes them)"
        )
    return popularity


def _recommended(topk: np.ndarray, n_items: int) -> np.ndarray:
    """``(n_items,)`` bool: which items appear anywhere in ``topk``."""
    mask = np.zeros(n_items, bool)
    mask[topk.ravel()] = True
    return mask


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is 0 (users without targets)."""
    numerator = np.asarray(numerator, np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


def _hits(topk: np.ndarray | torch.Tensor, targets: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """``(batch, K)`` float64 relevance of each recommended item and the targets per user.

    Membership is looked up with a binary search over the (row, item) keys of the targets, so no
    dense matrix is built.
    """
    if not sp.issparse(targets):
        raise TypeError(f"targets must be a scipy sparse matrix, got {type(targets).__name__}")
    batch, n_items = targets.shape
    topk = _as_ids(topk, n_items)
    if topk.shape[0] != batch:
        raise ValueError(f"topk has {topk.shape[0]} rows but targets have {batch}")
    coo = targets.tocoo()
    nonzero = coo.data != 0
    t_rows = coo.row[nonzero].astype(np.int64)
    keys = np.sort(t_rows * n_items + coo.col[nonzero])
    n_relevant = np.bincount(t_rows, minlength=batch)
    if len(keys) == 0:
        return np.zeros(topk.shape, np.float64), n_relevant
    query = np.arange(batch, dtype=np.int64)[:, None] * n_items + topk
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (keys[pos] == query).astype(np.float64), n_relevant


def _as_ids(topk: np.ndarray | torch.Tensor, n_items: int) -> np.ndarray:
    """``topk`` as a 2-D numpy integer array of indices in ``[0, n_items)``, or a ValueError."""
    if isinstance(topk, torch.Tensor):
        topk = topk.detach().cpu().numpy()
    topk = np.asarray(topk)
    if topk.ndim != 2 or topk.dtype.kind not in "iu":
        raise ValueError(
            f"topk must be a 2-D integer array, got {topk.dtype} of shape {topk.shape}"
        )
    if topk.size and (topk.min() < 0 or topk.max() >= n_items):
        raise ValueError(f"topk holds item indices outside [0, {n_items})")
    return topk


# -- aggregation ------------------------------------------------------------------------------
def summarize(per_user: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean and standard error of each per-user metric.

    Parameters
    ----------
    per_user : mapping of str to numpy.ndarray
        One value per user for each metric; NaN (a user without targets) is skipped.

    Returns
    -------
    dict of str to float
        ``name`` -> mean and ``name + "_se"`` -> standard error, computed as
        ``std(ddof=0) / sqrt(n)`` over the ``n`` non-NaN users, as the Mult-VAE reference code
        reports it. Both are NaN when no user has a value.
    """
    out: dict[str, float] = {}
    for name, values in per_user.items():
        values = np.asarray(values, np.float64).ravel()
        values = values[~np.isnan(values)]
        if len(values) == 0:
            out[name], out[f"{name}_se"] = float("nan"), float("nan")
            continue
        out[name] = float(values.mean())
        out[f"{name}_se"] = float(values.std(ddof=0) / np.sqrt(len(values)))
    return out


# -- rating metrics ---------------------------------------------------------------------------
def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error between two 1-D arrays of the same, non-zero length."""
    pred, truth = _pair(pred, truth)
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error between two 1-D arrays of the same, non-zero length."""
    pred, truth = _pair(pred, truth)
    return float(np.mean(np.abs(pred - truth)))


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    pred = np.asarray(pred, np.float64)
    truth = np.asarray(truth, np.float64)
    if pred.ndim != 1 or truth.ndim != 1 or pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must be 1-D of equal length, got {pred.shape} and {truth.shape}"
        )
    if len(pred) == 0:
        raise ValueError("pred and truth are empty; there is nothing to score")
    return pred, truth
