"""The names of the ranking metrics, in a module that imports nothing (``aerec evaluate --help``
lists them without loading torch); :mod:`aerec.evaluation` computes them."""

#: Every ranking metric ``evaluate_ranking`` can report.
RANKING_METRICS: tuple[str, ...] = ("recall", "truncated_recall", "ndcg", "precision", "hit_rate",
                                    "mrr", "map", "coverage", "popularity", "novelty")
#: What ``evaluate_ranking`` reports when ``metrics`` is not given (the papers' three).
DEFAULT_RANKING_METRICS: tuple[str, ...] = ("recall", "truncated_recall", "ndcg")
