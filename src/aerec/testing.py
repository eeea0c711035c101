"""The contract every aerec model keeps, as checks a new model runs with one call.

As LensKit ships ``lenskit.testing``: a model added to aerec (or written in your own package on top
of :class:`aerec.models.base.Recommender`) is checked by ::

    from aerec.testing import check_recommender
    check_recommender(MyModel, {"epochs": 30})

Each model learns a "checkerboard": two groups of users who each like one half of the items. A
model that works recommends a new user, whom it never saw, items of the half that user's history is
in. Beyond that, the checks are the promises of the base class: hyperparameters typed and checked
(an unknown name lists the valid ones), use before ``fit`` a typed error, batch scores equal to
one user at a time, the history left out of recommendations, save and load bit-identical without
pickle, the scikit-learn parameter protocol, a wrong-shaped input refused in one line, and, for
models that train by epochs, a resume from a checkpoint equal bit for bit to an uninterrupted run.

Nothing here needs pytest: a failed check raises ``AssertionError`` naming the check and the model.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp

from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, DataError, NotFittedError

__all__ = ["check_recommender", "checkerboard", "fast_params", "CHECKS", "N_USERS", "N_ITEMS"]

N_USERS, N_ITEMS = 60, 24

#: Settings of the built-in models on top of the generic fast ones (:func:`fast_params`).
OVERRIDES: dict[str, dict[str, Any]] = {
    "recvae": {"hidden": 32, "epochs": 15},  # one width, not a tuple; 3 + 1 passes per epoch
    "ease": {"lam": 1.0},  # lam must be positive
    "edlae": {"lam": 1.0},
    "sansa": {"lam": 1.0},
    "elsa": {"rank": 8, "lr": 0.05},
    # batches count ratings here, and with lam = 0 the fold-in of a user who gave one rating to
    # everything is that rating for every item
    "biased-mf": {"lam": 0.02, "batch_size": 128, "factors": 8},
}


def fast_params(cls: type) -> dict[str, Any]:
    """Small settings that let a model learn the checkerboard in a second: the generic ones its
    config has, plus the model's entry of :data:`OVERRIDES`."""
    names = {f.name for f in dataclasses.fields(cls.Config)}
    wanted = {"epochs": 40, "batch_size": 16, "lr": 0.01, "device": "cpu", "hidden_size": 32,
              "latent": 16, "hidden": (32,), "lam": 0.0}
    params = {k: v for k, v in wanted.items() if k in names}
    return params | OVERRIDES.get(cls.name, {})


def checkerboard(explicit: bool = False, seed: int = 0) -> Interactions:
    """Two groups of users, each liking one half of the items (implicit: 70 % of them; explicit:
    60 % rated, 5 stars in their half and 1 elsewhere)."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for u in range(N_USERS):
        for i in range(N_ITEMS):
            liked = (i < N_ITEMS // 2) == (u % 2 == 0)
            if explicit:
                if rng.random() < 0.6:
                    rows.append(u), cols.append(i), vals.append(5.0 if liked else 1.0)
            elif liked and rng.random() < 0.7:
                rows.append(u), cols.append(i), vals.append(1.0)
    m = sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))
    return Interactions(m, np.arange(N_USERS).astype(str), np.arange(N_ITEMS).astype(str), None,
                        explicit)


def history(items: list[int], value: float = 1.0) -> sp.csr_matrix:
    """One user's history over the checkerboard's items."""
    return sp.csr_matrix(
        (np.full(len(items), value, np.float32), (np.zeros(len(items), int), items)),
        shape=(1, N_ITEMS))


# -- the checks (each takes the fitted model, its data and the class's settings) ------------------
def _a_new_user_gets_items_of_their_half(model, data, params) -> None:
    if not model.implicit:
        # rating models: a new user who rated the first half 5 is predicted higher there
        scores = model.score(history([0, 1, 2, 3], 5.0))[0]
        assert scores[4:12].mean() > scores[12:].mean(), scores
        return
    ids, _ = model.recommend(history([0, 1, 2]), n=5)
    if model.name == "popularity":
        return  # the floor: it ignores the history by design
    assert set(ids[0]) <= set(range(N_ITEMS // 2)), ids
    ids, _ = model.recommend(history([20, 21, 22]), n=5)
    assert set(ids[0]) <= set(range(N_ITEMS // 2, N_ITEMS)), ids


def _recommend_excludes_the_history(model, data, params) -> None:
    histories = data.matrix[:10]
    n = N_ITEMS - int(np.diff(histories.indptr).max())  # every item a user has not seen
    ids, scores = model.recommend(histories, n=n)
    for row, top in enumerate(ids):
        assert not set(top) & set(data.matrix[row].indices), (row, top)
        assert np.all(np.diff(scores[row]) <= 0), scores[row]


def _batch_scores_equal_one_user_at_a_time(model, data, params) -> None:
    batch = model.score(data.matrix[:12])
    single = np.vstack([model.score(data.matrix[i:i + 1]) for i in range(12)])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)


def _save_load_scores_bit_identically(model, data, params) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m")
        for f in (Path(tmp) / "m").iterdir():
            head = f.read_bytes()[:2]
            assert head not in (b"\x80\x04", b"\x80\x02"), f"{f.name} looks like a pickle"
        loaded = type(model).load(Path(tmp) / "m", device="cpu")
    assert np.array_equal(model.score(data.matrix), loaded.score(data.matrix))
    assert loaded.get_params() == model.get_params()
    assert list(loaded.item_ids_) == list(model.item_ids_)


def _parameters_follow_scikit_learn(model, data, params) -> None:
    again = type(model)(**model.get_params())
    assert again.get_params() == model.get_params()
    assert not hasattr(again, "n_items_"), "a model built from get_params() must be unfitted"


def _a_wrong_shaped_history_is_refused_in_one_line(model, data, params) -> None:
    wrong = sp.csr_matrix((1, N_ITEMS + 3), dtype=np.float32)
    try:
        model.score(wrong)
    except DataError as exc:
        assert "\n" not in str(exc) and str(N_ITEMS) in str(exc), str(exc)
    else:
        raise AssertionError("a history with the wrong number of items was accepted")


def _resume_is_bit_identical(model, data, params) -> None:
    from aerec.models.torch_base import TorchRecommender
    from aerec.training import Trainer

    if not isinstance(model, TorchRecommender):
        return  # closed form: nothing to resume
    cls = type(model)
    settings = {**params, "epochs": 3}
    with tempfile.TemporaryDirectory() as tmp:
        full = Trainer(checkpoint=Path(tmp) / "a").fit(cls(**settings), data)

        def interrupt(record: dict) -> None:
            if record["epoch"] == 2:
                raise KeyboardInterrupt

        try:
            Trainer(checkpoint=Path(tmp) / "b", callbacks=[interrupt]).fit(cls(**settings), data)
        except KeyboardInterrupt:
            pass
        resumed = Trainer(checkpoint=Path(tmp) / "b", resume=True).fit(cls(**settings), data)
    assert np.array_equal(full.score(data.matrix), resumed.score(data.matrix)), \
        "a resumed run scores differently from an uninterrupted one"


#: Every check, by name, in the order :func:`check_recommender` runs them.
CHECKS: dict[str, Callable[[Any, Interactions, dict], None]] = {
    "a new user gets items of their half": _a_new_user_gets_items_of_their_half,
    "recommend excludes the history": _recommend_excludes_the_history,
    "batch scores equal one user at a time": _batch_scores_equal_one_user_at_a_time,
    "save / load scores bit-identically, without pickle": _save_load_scores_bit_identically,
    "parameters follow scikit-learn": _parameters_follow_scikit_learn,
    "a wrong-shaped history is refused in one line": _a_wrong_shaped_history_is_refused_in_one_line,
    "resume is bit-identical": _resume_is_bit_identical,
}


def check_recommender(cls: type, params: Mapping[str, Any] | None = None, *,
                      only: tuple[str, ...] | None = None) -> None:
    """Run the contract of aerec's models on ``cls``.

    Parameters
    ----------
    cls : type
        A :class:`~aerec.models.base.Recommender` subclass.
    params : mapping, optional
        Hyperparameters that let it learn the checkerboard quickly (default
        :func:`fast_params`).
    only : tuple of str, optional
        Names of :data:`CHECKS` to run (default all).

    Raises
    ------
    AssertionError
        Naming the check that failed and the model.
    """
    params = dict(fast_params(cls) if params is None else params)
    _check_before_fit(cls)
    data = checkerboard(explicit=not cls.implicit)
    model = cls(**params)
    fitted = model.fit(data)
    assert fitted is model, f"{cls.__name__}.fit must return self"
    for name, check in CHECKS.items():
        if only is not None and name not in only:
            continue
        try:
            check(model, data, params)
        except AssertionError as exc:
            raise AssertionError(f"{cls.__name__}: {name}: {exc}") from exc


def _check_before_fit(cls: type) -> None:
    try:
        cls(not_a_parameter=1)
    except ConfigError as exc:
        assert "valid names" in str(exc), f"{cls.__name__}: the error must list the valid names"
    else:
        raise AssertionError(f"{cls.__name__}: an unknown hyperparameter was accepted")
    try:
        cls().score(history([0]))
    except NotFittedError:
        pass
    else:
        raise AssertionError(f"{cls.__name__}: scoring before fit must raise NotFittedError")
