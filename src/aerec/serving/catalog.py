"""The items of a served model: raw id look-ups, titles, popularity and title search.

Histories are built by :mod:`aerec.histories`, as the CLI builds them; :attr:`Catalog.index` saves
it rebuilding the id look-up for every request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aerec.histories import finite_top


class Catalog:
    """Item ids, titles and popularity of a served model: id look-ups and title search."""

    def __init__(self, item_ids: np.ndarray, titles: dict[str, str], counts: np.ndarray) -> None:
        self.item_ids = np.asarray(item_ids).astype(str)
        self.titles = [titles.get(i, "") for i in self.item_ids.tolist()]
        self.index = {item: k for k, item in enumerate(self.item_ids.tolist())}
        #: training users per item (ModelSource.item_counts), which orders the search
        self.counts = np.asarray(counts, np.int64)
        self._by_popularity = np.argsort(-self.counts, kind="stable")
        # titles (the id for an item without one), lower case, in popularity order
        self._haystack = np.array(
            [(self.titles[k] or self.item_ids[k]).lower() for k in self._by_popularity.tolist()]
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def describe(self, cols: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        """Recommendation records for item columns and their scores, finite scores only.

        The history comes back from ``recommend`` scored ``-inf`` when ``n`` exceeds the items
        left to recommend; it is dropped here, as the CLI drops it (:func:`finite_top`).
        """
        cols, scores = finite_top(cols, scores)
        return [{"item": str(self.item_ids[c]), "score": float(s), "title": self.titles[c]}
                for c, s in zip(cols.tolist(), scores.tolist())]

    def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Items whose title holds every word of ``query`` (any case), most popular first.

        An item whose id is ``query`` comes first; items without a title are matched by id.
        """
        words = query.lower().split()
        if not words:
            cols = self._by_popularity[:limit]
        else:
            match = np.ones(len(self._haystack), bool)
            for word in words:  # every word somewhere in the title, in any order
                match &= np.char.find(self._haystack, word) >= 0
            cols = self._by_popularity[np.flatnonzero(match)]
            exact = self.index.get(query.strip())
            if exact is not None:  # an item's id puts that item first
                cols = np.concatenate([[exact], cols[cols != exact]])
            cols = cols[:limit]
        return [{"item": str(self.item_ids[c]), "title": self.titles[c], "count": int(self.counts[c])}
                for c in cols.tolist()]
