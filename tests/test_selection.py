"""Hyperparameters chosen on validation: what is tried, what is chosen, and that the test is never read."""

from __future__ import annotations

import numpy as np
import pytest

from aerec.data.interactions import Interactions
from aerec.data.splits import given_split
from aerec.errors import ConfigError
from aerec.models import EASE
from aerec.runs import evaluate_model
from aerec.selection import (LAM_GRID, choose_hyperparameters, choose_on_split, chosen_names,
                             has_choice, validation_figure)
from tiny_runs import tiny_interactions


def _splits(n_users: int = 160):
    """One given split with its real test rows, and the same with the test rows replaced by
    noise: random items for the same users, as many as there were."""
    data = tiny_interactions(n_users=n_users, seed=3)
    is_test = np.random.default_rng(5).random(data.nnz) < 0.2
    train, test = data.mask(~is_test), data.mask(is_test)
    rng = np.random.default_rng(11)
    users, _ = test.matrix.nonzero()
    pairs = sorted({(int(u), int(i)) for u, i in zip(users, rng.integers(0, data.n_items, len(users)))})
    noise = Interactions.from_arrays(test.user_ids[[u for u, _ in pairs]],
                                     test.item_ids[[i for _, i in pairs]],
                                     user_ids=test.user_ids, item_ids=test.item_ids)
    return (given_split(train, test, validation_fraction=0.2, seed=4),
            given_split(train, noise, validation_fraction=0.2, seed=4))


SMALL = {
    "ease": {},
    "edlae": {},
    "mult-vae": {"epochs": 6, "hidden": (20,), "latent": 8, "batch_size": 40},
    "recvae": {"epochs": 2, "hidden": 20, "latent": 8, "encoder_layers": 2, "batch_size": 40},
}


@pytest.mark.parametrize("model", sorted(SMALL))
def test_the_choice_never_reads_the_test_rows(model):
    real, noise = _splits()
    ease = EASE().fit(real.train)
    assert evaluate_model(ease, real.test)["ndcg@20"] > evaluate_model(ease, noise.test)["ndcg@20"] + 0.1
    a = choose_on_split(model, SMALL[model], real)
    b = choose_on_split(model, SMALL[model], noise)
    assert a.chosen == b.chosen
    assert tuple(a.chosen) == chosen_names(model)
    assert a.to_json()["params"] == b.to_json()["params"]  # every value tried, every figure
    assert len(next(iter(a.to_json()["params"].values()))["tried"]) >= 3


def test_ease_takes_the_best_lam_of_the_path_and_its_figures_are_the_fits():
    split, _ = _splits()
    choice = choose_on_split("ease", {}, split)
    record = choice.to_json()["params"]["lam"]
    assert choice.method in ("path:users", "path:items")
    assert set(LAM_GRID) | {500.0} <= set(record["tried"])
    assert record["tried"] == sorted(record["tried"])
    best = int(np.argmax(record["validation"]))
    assert choice.chosen == {"lam": record["tried"][best]} and record["chosen"] == record["tried"][best]
    assert 0 < best < len(record["tried"]) - 1  # inside the path, not at an edge
    for lam in (record["tried"][best], 10.0, 3000.0):
        fit = EASE(lam=lam).fit(split.train)
        figure = validation_figure(fit.score_tensor, split.validation)
        assert record["validation"][record["tried"].index(lam)] == pytest.approx(figure, abs=1e-6)
    assert choice.fitted.config.lam == choice.chosen["lam"]
    assert choice.seconds > 0 and choice.fit_seconds > 0


def test_edlae_chooses_lam_then_dropout_at_that_lam():
    split, _ = _splits()
    choice = choose_on_split("edlae", {"dropout": 0.5}, split)
    params = choice.to_json()["params"]
    assert list(params) == ["lam", "dropout"]
    assert 0.5 in params["dropout"]["tried"] and 100.0 in params["lam"]["tried"]
    assert choice.chosen == {"lam": params["lam"]["chosen"], "dropout": params["dropout"]["chosen"]}
    assert params["dropout"]["chosen"] == params["dropout"]["tried"][int(np.argmax(
        params["dropout"]["validation"]))]
    assert choice.fitted.config.dropout == choice.chosen["dropout"]


def test_where_the_path_does_not_fit_a_coarse_search_of_full_fits():
    split, _ = _splits()
    choice = choose_on_split("ease", {"lam": 200.0}, split, available=1000)
    assert choice.method == "fits"
    record = choice.to_json()["params"]["lam"]
    assert record["tried"] == [50.0, 200.0, 800.0]
    for lam, figure in zip(record["tried"], record["validation"]):
        fit = EASE(lam=lam).fit(split.train)
        assert figure == pytest.approx(validation_figure(fit.score_tensor, split.validation))


def test_mult_vae_chooses_the_beta_of_the_best_epoch_annealed_to_one():
    split, _ = _splits()
    choice = choose_on_split("mult-vae", SMALL["mult-vae"], split)
    record = choice.to_json()["params"]["anneal_cap"]
    assert len(record["tried"]) == 6 and max(record["tried"]) <= 1.0
    assert choice.chosen["anneal_epochs"] == 6.0  # the search's anneal length, for the retraining
    assert record["chosen"] == choice.chosen["anneal_cap"] == record["tried"][
        int(np.argmax(record["validation"]))]


def test_recvae_chooses_gamma_on_a_grid_around_the_default():
    split, _ = _splits()
    choice = choose_on_split("recvae", {**SMALL["recvae"], "gamma": 0.01}, split)
    record = choice.to_json()["params"]["gamma"]
    assert record["tried"] == [0.005, 0.01, 0.02]
    assert choice.fitted.config.gamma == choice.chosen["gamma"] == record["chosen"]


def test_bad_calls_name_what_is_wrong():
    split, _ = _splits(60)
    assert has_choice("ease") and not has_choice("mult-dae") and chosen_names("mult-dae") == ()
    with pytest.raises(ConfigError, match="nothing to choose for 'mult-dae'"):
        choose_on_split("mult-dae", {}, split)
    with pytest.raises(ConfigError, match="validation"):
        choose_hyperparameters("ease", {}, split.train, None)
    with pytest.raises(ConfigError, match="NAME@K"):
        choose_on_split("ease", {}, split, metric="ndcg")
    with pytest.raises(ConfigError, match="unknown hyperparameter.*gamma"):
        choose_on_split("ease", {"gamma": 1.0}, split)  # before any work
