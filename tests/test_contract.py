"""The contract of :mod:`aerec.testing` run over every registered model (in the spirit of
implicit's shared test mixin and LensKit's ``lenskit.testing``): one fit per model on the
checkerboard, then every check of :data:`aerec.testing.CHECKS` on it."""

from __future__ import annotations

import pytest

from aerec.models import REGISTRY
from aerec.testing import CHECKS, check_recommender, checkerboard, fast_params


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def fitted(request):
    cls = REGISTRY[request.param]
    data = checkerboard(explicit=not cls.implicit)
    params = fast_params(cls)
    return cls(**params).fit(data), data, params


@pytest.mark.parametrize("check", list(CHECKS))
def test_every_model_keeps_the_contract(fitted, check):
    model, data, params = fitted
    CHECKS[check](model, data, params)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_unknown_names_and_use_before_fit_are_typed_errors(name):
    check_recommender(REGISTRY[name], only=())


def test_a_broken_model_fails_the_contract():
    """The checks can fail: a model whose batch scores depend on the other users is caught."""
    from aerec.models import Popularity

    class Leaky(Popularity):
        name = "popularity"

        def _score(self, user_items):
            scores = super()._score(user_items)
            return scores + float(user_items.shape[0])  # depends on the batch size

    with pytest.raises(AssertionError, match="batch scores equal one user at a time"):
        check_recommender(Leaky, {})
