"""Items similar to a given item: the public ``similar_items`` and the maths the models share.

Every ranking model says what "similar" means for it in one method, ``_item_similarities(cols)``,
which returns a ``(len(cols), n_items)`` float32 tensor, higher meaning more similar and ``-inf``
meaning "never similar" (for instance an item EASE does not model). The definitions, in short
(each model's method says why):

==================  ==========================================================================
EASE, EDLAE         row ``i`` of the item-item weights ``B``: the scores a history of item ``i``
                    alone would give every other item
Mult-VAE, Mult-DAE  cosine between the columns of the decoder's output layer (item vectors)
RecVAE              cosine between the columns of the linear decoder (item vectors)
Popularity          the most popular other items (the same list for every item)
Blend               the members' similarities, each standardised per row, weighted as its scores
==================  ==========================================================================

Rating predictors (AutoRec, the deep autoencoder, biased MF) have no definition and say so.

:class:`SimilarItemsMixin` turns raw item ids into columns, calls the hook, leaves the item itself
out and returns a DataFrame. This module imports no model module, so every model module may
import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aerec.errors import ConfigError, DataError
from aerec.models.raw_ids import check_n, shown_ids

if TYPE_CHECKING:
    import pandas as pd

#: Columns of the DataFrame ``similar_items`` returns (``title`` only when titles are known).
COLUMNS = ("item", "similar_item", "score")


class SimilarItemsMixin:
    """Adds :meth:`similar_items` to a recommender; models override ``_item_similarities``."""

    def similar_items(self, item_ids: Any, n: int = 10, *,
                      titles: Mapping[str, str] | None = None) -> pd.DataFrame:
        """The ``n`` items most similar to each of ``item_ids``, never the item itself.

        What "similar" means depends on the model: see :func:`similarity_definition` and
        ``docs/similar-and-export.md``.

        Parameters
        ----------
        item_ids : str, int or iterable of them
            Raw item ids, as in the training data (``"50"`` or ``50``).
        n : int
            Similar items per item; fewer when the model has fewer candidates.
        titles : mapping of str to str, optional
            Raw item id -> title; defaults to the model's ``item_titles_`` where it has them.

        Returns
        -------
        pandas.DataFrame
            One row per (item, similar item), each item's rows by descending ``score``: columns
            ``item``, ``similar_item``, ``score`` and, when titles are known, ``title``. Items
            without training interactions are never among the similar items.

        Raises
        ------
        DataError
            When ``item_ids`` is empty, holds ids the model does not know, or ids of items
            without training interactions (``untrained_items_``: the model learned nothing
            about them, and its answer would be arbitrary).
        ConfigError
            When ``n`` is below 1 or the model defines no similarity (rating predictors).
        """
        import pandas as pd  # here: importing aerec.models need not load pandas

        self._check_fitted()
        n = check_n(n)
        ids, cols = self._item_columns(item_ids)
        sims = without_self(self._item_similarities(cols).float().cpu(), cols)
        untrained = getattr(self, "untrained_items_", None)
        if untrained:  # nor is an item without training interactions ever an answer
            index = self._item_index()
            sims[:, torch.tensor([index[i] for i in untrained], dtype=torch.int64)] = -torch.inf
        top = torch.topk(sims, min(n, sims.shape[1]), dim=1)
        if titles is None:
            titles = getattr(self, "item_titles_", None) or {}
        keep = np.isfinite(top.values.numpy())  # -inf: items the model never calls similar
        similar = np.asarray(self.item_ids_, str)[top.indices.numpy()[keep]]
        frame = pd.DataFrame({
            "item": np.repeat(np.asarray(ids, str), keep.sum(axis=1)),
            "similar_item": similar,
            "score": top.values.numpy()[keep].astype(np.float32),
        })
        if titles:
            frame["title"] = [titles.get(i, "") for i in similar]
        return frame

    def _item_similarities(self, cols: np.ndarray) -> torch.Tensor:
        """Similarities of the items at columns ``cols`` to every item (len(cols) x n_items)."""
        raise ConfigError(
            f"{self.name} has no definition of similar items (rating predictors do not rank "
            "items); use a ranking model such as ease, mult-vae or recvae"
        )

    def _item_columns(self, item_ids: Any) -> tuple[list[str], np.ndarray]:
        """Raw ids (deduplicated, in order) and their columns; DataError naming unknown ids."""
        if isinstance(item_ids, (str, bytes, int, np.integer)):
            item_ids = [item_ids]
        if not isinstance(item_ids, Iterable):
            raise DataError(f"item_ids must be an item id or a list of them, not {item_ids!r}")
        ids = list(dict.fromkeys(str(i).strip() for i in item_ids))
        if not ids:
            raise DataError("item_ids is empty: name at least one item")
        index = self._item_index()  # RawIdMixin's, cached: not rebuilt per request
        unknown = [i for i in ids if i not in index]
        if unknown:
            raise DataError(f"unknown item ids: {shown_ids(unknown)} (the model knows "
                            f"{len(index):,} items)")
        # None for a model loaded from a file written before aerec kept the list
        untrained = [i for i in ids if i in (getattr(self, "untrained_items_", None) or ())]
        if untrained:
            raise DataError(f"item ids {shown_ids(untrained)}: no training interactions, so the "
                            "model learned nothing to call them similar by")
        return ids, np.array([index[i] for i in ids], dtype=np.int64)


def similarity_definition(model: Any) -> str:
    """One sentence saying what "similar" means for ``model`` (its hook's docstring summary, as
    plain text)."""
    doc = type(model)._item_similarities.__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")


def cosine_to(vectors: torch.Tensor, cols: np.ndarray) -> torch.Tensor:
    """Cosine similarity of the rows ``cols`` of ``vectors`` (items x d) to every row.

    A zero vector (an item the model never learned anything for) has similarity 0 to all.
    """
    vectors = vectors.detach().float().cpu()
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit[torch.from_numpy(np.asarray(cols, np.int64))] @ unit.T


def weight_rows(model: Any, cols: np.ndarray) -> torch.Tensor:
    """Rows ``cols`` of an item-item model's ``weights_`` over all ``n_items_`` columns.

    With ``items_`` (EASE's ``max_items``) the weights cover only the modelled items: the others
    get ``-inf``, and asking about one of them is a DataError, since it has no row.
    """
    weights, items = model.weights_, model.items_
    if items is None:
        return weights[torch.from_numpy(np.asarray(cols, np.int64))].float().clone()
    position = np.full(model.n_items_, -1, np.int64)
    position[items] = np.arange(len(items))
    rows = position[cols]
    if (rows < 0).any():
        outside = ", ".join(str(model.item_ids_[c]) for c in np.asarray(cols)[rows < 0])
        raise DataError(f"item ids {outside}: not among the {len(items):,} most popular items "
                        f"that {model.name} models (max_items), so they have no similar items")
    out = torch.full((len(cols), model.n_items_), -torch.inf)
    out[:, torch.from_numpy(items)] = weights[torch.from_numpy(rows)].float()
    return out


def without_self(sims: torch.Tensor, cols: np.ndarray) -> torch.Tensor:
    """``sims`` (a copy) with each query item's own entry set to ``-inf``."""
    sims = sims.clone()
    sims[torch.arange(len(cols)), torch.from_numpy(np.asarray(cols, np.int64))] = -torch.inf
    return sims

