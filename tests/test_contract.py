"""Contract tests run over every registered model (in the spirit of implicit's shared test mixin).

Each model learns a "checkerboard": two groups of users who each like one half of the items. A model
that works recommends a new user, whom it never saw, items of the half that user's history is in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, NotFittedError
from aerec.models import REGISTRY

N_USERS, N_ITEMS = 60, 24

#: Per-model settings on top of the generic fast ones.
OVERRIDES = {
    "recvae": {"hidden": 32, "epochs": 15},  # one width, not a tuple; 3 + 1 passes per epoch
    "ease": {"lam": 1.0},  # lam must be positive
    "edlae": {"lam": 1.0},
    "sansa": {"lam": 1.0},
    "elsa": {"rank": 8, "lr": 0.05},
    # batches count ratings here, and with lam = 0 the fold-in of a user who gave one rating to
    # everything is that rating for every item
    "biased-mf": {"lam": 0.02, "batch_size": 128, "factors": 8},
}


def _fast_params(cls) -> dict:
    """Small settings that let every model learn the checkerboard in a second."""
    names = {f.name for f in dataclasses.fields(cls.Config)}
    wanted = {"epochs": 40, "batch_size": 16, "lr": 0.01, "device": "cpu", "hidden_size": 32,
              "latent": 16, "hidden": (32,), "lam": 0.0}
    params = {k: v for k, v in wanted.items() if k in names}
    return params | OVERRIDES.get(cls.name, {})


def _checkerboard(explicit: bool) -> Interactions:
    rng = np.random.default_rng(0)
    rows, cols, vals = [], [], []
    for u in range(N_USERS):
        half = u % 2
        for i in range(N_ITEMS):
            liked = (i < N_ITEMS // 2) == (half == 0)
            if explicit:
                if rng.random() < 0.6:
                    rows.append(u), cols.append(i), vals.append(5.0 if liked else 1.0)
            elif liked and rng.random() < 0.7:
                rows.append(u), cols.append(i), vals.append(1.0)
    m = sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))
    return Interactions(m, np.arange(N_USERS).astype(str), np.arange(N_ITEMS).astype(str), None,
                        explicit)


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def fitted(request):
    cls = REGISTRY[request.param]
    data = _checkerboard(explicit=not cls.implicit)
    return cls(**_fast_params(cls)).fit(data), data


def _history(items: list[int], value: float = 1.0) -> sp.csr_matrix:
    return sp.csr_matrix(
        (np.full(len(items), value, np.float32), (np.zeros(len(items), int), items)),
        shape=(1, N_ITEMS),
    )


def test_a_new_user_gets_items_of_their_half(fitted):
    model, _ = fitted
    if not model.implicit:
        # rating models: a new user who rated the first half 5 is predicted higher there
        scores = model.score(_history([0, 1, 2, 3], 5.0))[0]
        assert scores[4:12].mean() > scores[12:].mean()
        return
    ids, _ = model.recommend(_history([0, 1, 2]), n=5)
    if model.name == "popularity":
        return  # the floor: it ignores the history by design
    assert set(ids[0]) <= set(range(N_ITEMS // 2)), ids
    ids, _ = model.recommend(_history([20, 21, 22]), n=5)
    assert set(ids[0]) <= set(range(N_ITEMS // 2, N_ITEMS)), ids


def test_recommend_excludes_the_history(fitted):
    model, data = fitted
    histories = data.matrix[:10]
    n = N_ITEMS - int(np.diff(histories.indptr).max())  # every item a user has not seen
    ids, scores = model.recommend(histories, n=n)
    for row, top in enumerate(ids):
        assert not set(top) & set(data.matrix[row].indices)
        assert np.all(np.diff(scores[row]) <= 0)


def test_batch_scores_equal_one_user_at_a_time(fitted):
    model, data = fitted
    batch = model.score(data.matrix[:12])
    single = np.vstack([model.score(data.matrix[i:i + 1]) for i in range(12)])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)


def test_save_load_scores_bit_identically(fitted, tmp_path):
    model, data = fitted
    model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m", device="cpu")
    assert np.array_equal(model.score(data.matrix), loaded.score(data.matrix))
    assert loaded.get_params() == model.get_params()
    assert list(loaded.item_ids_) == list(model.item_ids_)


def test_model_files_hold_no_pickle(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "m")
    for f in (tmp_path / "m").iterdir():
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"\x80\x02", f"{f} looks like a pickle"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_unknown_hyperparameter_lists_valid_names(name):
    with pytest.raises(ConfigError, match="valid names: .*seed|valid names"):
        REGISTRY[name](not_a_parameter=1)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_use_before_fit_is_a_typed_error(name):
    with pytest.raises(NotFittedError):
        REGISTRY[name]().score(_history([0]))
