"""A blend of recommenders: the weighted sum of their per-user standardised scores.

Blending models that err differently is the oldest reliable gain in collaborative filtering (the
Netflix Prize was won by blends: Koren, "The BellKor Solution to the Netflix Grand Prize", 2009).
Here the members are fitted on the same training users, and each user's scores from each member
are standardised over the items (mean 0, standard deviation 1, the user's own row) before they are
weighted, so that a linear model's scores and a network's logits meet on one scale; the ranking of
one member alone is unchanged by that.

The weights lie on the simplex (non-negative, summing to 1). Left unset, they are chosen on the
validation users: every point of a grid of step ``weight_step`` is tried and the one of highest
validation NDCG@100 is kept, as the iterative models keep their epoch. Without validation users
the members get equal weights. Every member folds in, so the blend does too.

One caveat of that choice: a member that picked its own epoch on the same validation users
(Mult-DAE, Mult-VAE, RecVAE) looks better there than it will on new users, so it tends to get
more weight than it should. On the peers benchmark (``benchmarks/RESULTS-peers.md``) EDLAE +
Mult-DAE gained +0.0086 NDCG@100 over EDLAE alone on ML-100K but lost 0.0022 on ml-latest-small,
where Mult-DAE is far weaker and was still given 0.7 to 0.8 of the weight on 3 of 5 splits.

Members are named in ``members`` and built at their own defaults (``device`` is passed to those
that take one). For members with other hyperparameters, or fitted another way (for example a
closed-form model refitted after cross-validation), :meth:`Blend.of` blends fitted models.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import config_to_dict
from aerec.errors import ConfigError
from aerec.metrics import _hits, _ndcg, _top_k
from aerec.models.base import Recommender

#: The validation metric that picks the weights, as it picks the iterative models' epoch.
SELECTION_K = 100
#: Users per batch when the weights are chosen: bounds memory to a few batch x items matrices.
SELECTION_BATCH = 1000


@dataclass(frozen=True)
class BlendConfig:
    """Hyperparameters of a blend.

    Attributes
    ----------
    members : tuple of str
        Registered implicit-feedback models, each built at its defaults (default EDLAE and
        Mult-DAE, the best pair on ML-100K in the peers benchmark).
    weights : tuple of float
        One non-negative weight per member, summing to 1; empty (the default) chooses them on
        validation.
    weight_step : float
        Step of the grid over the simplex searched for the weights (default 0.1; 66 points for
        three members).
    device : str
        Passed to the members that have a ``device`` hyperparameter.
    """

    members: tuple[str, ...] = ("edlae", "mult-dae")
    weights: tuple[float, ...] = ()
    weight_step: float = 0.1
    device: str = "auto"

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("a blend needs at least two members")
        if "blend" in self.members:
            raise ValueError("a blend cannot be a member of a blend")
        if self.weights:
            _check_weights(self.weights, len(self.members))
        steps = 1 / self.weight_step if self.weight_step > 0 else 0
        if not (0 < self.weight_step <= 0.5 and abs(steps - round(steps)) < 1e-9):
            raise ValueError("weight_step must divide 1 into whole steps, e.g. 0.1, 0.05 or 0.25")


class Blend(Recommender):
    """Weighted sum of the members' per-user standardised scores.

    Attributes
    ----------
    members_ : list of Recommender
        The fitted members, in the order of ``members``.
    weights_ : numpy.ndarray
        ``(n_members,)`` float64 weights on the simplex.
    weight_search_ : list of dict
        When the weights were chosen on validation: every grid point's ``weights`` and its
        validation ``ndcg@100``.
    """

    name = "blend"
    refittable = False  # its weights are chosen on the validation carve
    Config = BlendConfig

    @classmethod
    def of(cls, models: list[Recommender], weights: tuple[float, ...] | None = None,
           validation: Any = None, *, weight_step: float = 0.1) -> Blend:
        """Blend models that are already fitted.

        Parameters
        ----------
        models : list of Recommender
            Fitted implicit-feedback models over the same items, in the same column order.
        weights : tuple of float, optional
            One per model, on the simplex; when omitted they are chosen on ``validation`` (a
            :class:`~aerec.data.splits.HeldOut`), or equal without it.
        validation : HeldOut, optional
            Users who choose the weights.
        weight_step : float
            Step of the weight grid.

        Returns
        -------
        Blend
            A fitted blend; the models are used as they are, not copied.
        """
        for model in models:
            model._check_fitted()
            _check_ranks_items(type(model))
        blend = cls(members=tuple(m.name for m in models), weights=tuple(weights or ()),
                    weight_step=weight_step)
        first = models[0]
        for model in models[1:]:
            if model.n_items_ != first.n_items_ or list(model.item_ids_) != list(first.item_ids_):
                raise ConfigError(f"{model.name} and {first.name} were fitted on different items")
        blend.item_ids_, blend.n_items_ = first.item_ids_, first.n_items_
        blend.members_ = list(models)
        blend._set_weights(validation)
        return blend

    # -- fitting ------------------------------------------------------------------------------
    def _fit_members(self, matrix: sp.csr_matrix, validation: Any,
                     fit_member: Callable[[Recommender, Any, Any], Recommender]) -> None:
        """Fit every member with ``fit_member`` (the run's Trainer, without its checkpoint, so
        that its progress bar, callbacks and early stopping reach the members that train by
        epochs), then choose the weights on ``validation``."""
        from aerec.models import get_model_class

        members = []
        for name in self.config.members:
            cls = _check_ranks_items(get_model_class(name))
            has_device = "device" in cls.Config.__dataclass_fields__
            members.append(cls(**({"device": self.config.device} if has_device else {})))
        for member in members:
            fit_member(member, matrix, validation)
            member.item_ids_ = self.item_ids_  # the raw ids, which fit() saw only as a matrix
        self.members_ = members
        self._set_weights(validation)

    def _set_weights(self, validation: Any) -> None:
        n = len(self.config.members)
        self.weight_search_: list[dict[str, Any]] = []
        if self.config.weights:
            self.weights_ = np.asarray(self.config.weights, np.float64)
        elif validation is None:
            self.weights_ = np.full(n, 1.0 / n)
        else:
            self.weights_ = self._choose_weights(validation)

    def _choose_weights(self, validation: Any) -> np.ndarray:
        """The grid point of the simplex with the highest validation NDCG@100."""
        fold_in, targets = validation.fold_in.matrix, validation.targets.matrix
        grid = simplex_grid(len(self.members_), self.config.weight_step)
        totals = np.zeros(len(grid))
        users = np.flatnonzero(np.diff(targets.indptr) > 0)
        if len(users) == 0:
            raise ConfigError("the validation users have no targets to choose the weights on")
        for start in range(0, len(users), SELECTION_BATCH):
            rows = users[start:start + SELECTION_BATCH]
            batch = self._check_batch(fold_in[rows])
            standardised = _on_one_device([standardise(m.score_tensor(batch))
                                           for m in self.members_])
            for g, weights in enumerate(grid):
                top = _top_k(_combine(standardised, weights), SELECTION_K, batch, overwrite=True)
                hits, n_relevant = _hits(top, targets[rows])
                totals[g] += _ndcg(hits, n_relevant).sum()
        means = totals / len(users)
        self.weight_search_ = [{"weights": w.tolist(), f"ndcg@{SELECTION_K}": float(v)}
                               for w, v in zip(grid, means)]
        return grid[int(np.argmax(means))]

    # -- scoring ------------------------------------------------------------------------------
    def _score(self, user_items: sp.csr_matrix) -> torch.Tensor:
        parts = [standardise(m.score_tensor(user_items))
                 for m, w in zip(self.members_, self.weights_) if w > 0]
        return _combine(_on_one_device(parts), self.weights_[self.weights_ > 0])

    # -- persistence --------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "weights": torch.from_numpy(self.weights_.copy()),
            "members": [{"model": m.name, "params": config_to_dict(m.config),
                         "state": m._get_state()}
                        for m in self.members_],
        }

    def _set_state(self, state: dict[str, Any], device: str) -> None:
        from aerec.models import get_model_class

        members = []
        for saved in state["members"]:
            member = get_model_class(saved["model"])(**saved["params"])
            member.item_ids_, member.n_items_ = self.item_ids_, self.n_items_
            member._set_state(saved["state"], device)
            members.append(member)
        self.members_ = members
        self.weights_ = state["weights"].double().cpu().numpy()
        self.weight_search_ = []

    def _item_similarities(self, cols: np.ndarray) -> torch.Tensor:
        """The members' similarities, each row standardised (the item itself left out) and
        weighted with the blend's weights, as its scores are."""
        from aerec.models.similarity import without_self

        parts = [standardise(without_self(m._item_similarities(cols).float().cpu(), cols))
                 for m, w in zip(self.members_, self.weights_) if w > 0]
        return _combine(parts, self.weights_[self.weights_ > 0])


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """Each row shifted and scaled to mean 0 and standard deviation 1 over its finite entries.

    Entries of ``-inf`` (items a member never recommends, such as those outside EASE's
    ``max_items``) stay ``-inf``; a row of equal scores becomes zeros.
    """
    scores = scores.float()
    finite = torch.isfinite(scores)
    count = finite.sum(1, keepdim=True).clamp(min=1)
    values = torch.where(finite, scores, torch.zeros_like(scores))
    mean = values.sum(1, keepdim=True) / count
    centred = torch.where(finite, scores - mean, torch.zeros_like(scores))
    std = (centred.square().sum(1, keepdim=True) / count).sqrt()
    z = centred / torch.where(std > 0, std, torch.ones_like(std))
    return torch.where(finite, z, torch.full_like(z, -torch.inf))


def simplex_grid(n: int, step: float) -> list[np.ndarray]:
    """Every weight vector of ``n`` non-negative multiples of ``step`` that sum to 1."""
    k = round(1 / step)
    return [np.asarray(c, np.float64) / k for c in _compositions(n, k)]


def _compositions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    for cut in itertools.combinations(range(k + n - 1), n - 1):
        bounds = (-1, *cut, k + n - 1)
        yield tuple(b - a - 1 for a, b in zip(bounds, bounds[1:]))


def _on_one_device(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    # Members may sit on different devices (EASE always scores on the CPU): meet on the first's.
    return [p.to(parts[0].device) for p in parts]


def _combine(parts: list[torch.Tensor], weights: np.ndarray) -> torch.Tensor:
    out = torch.zeros_like(parts[0])
    for part, weight in zip(parts, weights):
        if weight > 0:  # 0 * -inf would be NaN
            out += float(weight) * part
    return out


def _check_ranks_items(cls: type[Recommender]) -> type[Recommender]:
    if not cls.implicit:
        raise ConfigError(f"{cls.name} predicts ratings; a blend ranks items (implicit models)")
    return cls


def _check_weights(weights: tuple[float, ...], n: int) -> None:
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} members")
    if min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"weights must be non-negative and sum to 1, got {list(weights)}")
