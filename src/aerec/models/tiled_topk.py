"""The top ``n`` items of ``h W + b`` over tiles of items, never holding ``batch x items`` scores.

Scoring a batch of 1,000 users over a million items would hold 4 GB of scores for a top 100.
Here the output layer is computed one tile of items at a time; each tile's seen and blocked items
are set to ``-inf``, its top ``n`` taken and merged with the running top ``n``. A tile holds at most
``SCORE_BLOCK_BYTES`` of scores; when all the items fit in one tile (a single user, or any batch
of a small catalogue) it is one product and one ``topk``, as scoring everything.

The items and scores equal ``topk`` over the whole masked score matrix, up to the order of equal
scores.
"""

from __future__ import annotations

import torch

from aerec.models.tiled_loss import MIN_TILE

__all__ = ["SCORE_BLOCK_BYTES", "score_tile", "tiled_top_k"]

#: Most bytes of fp32 scores computed at once (32 MiB: the whole million items for 8 users).
SCORE_BLOCK_BYTES = 32 << 20


def score_tile(batch: int) -> int:
    """Items per tile for ``batch`` users: ``SCORE_BLOCK_BYTES`` of fp32 scores, at least
    ``MIN_TILE``."""
    return max(MIN_TILE, SCORE_BLOCK_BYTES // (4 * max(batch, 1)))


@torch.no_grad()
def tiled_top_k(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    n: int,
    seen: tuple[torch.Tensor, torch.Tensor] | None = None,
    blocked: torch.Tensor | None = None,
    tile: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``n`` columns of ``h @ weight + bias`` per row, leaving out ``seen`` and ``blocked``.

    Parameters
    ----------
    h : torch.Tensor
        ``(batch, d)`` input of the output layer.
    weight, bias : torch.Tensor
        ``(d, items)`` and ``(items,)``.
    n : int
        Items per row (at most the number of items).
    seen : (rows, cols), optional
        Entries left out of each row's ranking (a user's history).
    blocked : torch.Tensor, optional
        Boolean ``(items,)`` or ``(batch, items)``: items left out (for every row, or per row).
    tile : int, optional
        Items per tile (default :func:`score_tile`).

    Returns
    -------
    ids, scores : torch.Tensor
        ``(batch, n)`` column indices, best first, and their fp32 scores (``-inf`` where a row has
        fewer than ``n`` items left).
    """
    n_items = weight.shape[1]
    n = min(int(n), n_items)
    tile = score_tile(h.shape[0]) if tile is None else int(tile)
    rows = cols = None
    if seen is not None and seen[0].numel():
        order = torch.argsort(seen[1], stable=True)
        rows, cols = seen[0][order], seen[1][order]
        bounds = torch.searchsorted(
            cols, torch.arange(0, n_items + tile, tile, device=cols.device)).tolist()
    best_scores = best_ids = None
    for k, start in enumerate(range(0, n_items, tile)):
        stop = min(start + tile, n_items)
        scores = torch.addmm(bias[start:stop], h, weight[:, start:stop]).float()
        if rows is not None and bounds[k + 1] > bounds[k]:
            lo, hi = bounds[k], bounds[k + 1]
            scores[rows[lo:hi], cols[lo:hi] - start] = -torch.inf
        if blocked is not None:
            scores.masked_fill_(blocked[..., start:stop], -torch.inf)
        top = torch.topk(scores, min(n, stop - start), dim=1)
        ids = top.indices.add_(start)
        if best_scores is None:
            best_scores, best_ids = top.values, ids
            continue
        both = torch.cat([best_scores, top.values], dim=1)
        merged = torch.topk(both, min(n, both.shape[1]), dim=1)  # tiles shorter than n: fewer
        best_ids = torch.cat([best_ids, ids], dim=1).gather(1, merged.indices)
        best_scores = merged.values
    return best_ids, best_scores
