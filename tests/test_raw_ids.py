"""Raw ids in and out: ``recommend_items``, ``recommend_users``, exclude / allow filters."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, DataError, NotFittedError
from aerec.models import EASE, MultDAE, Popularity, Recommender
from aerec.models.raw_ids import UnknownIdsWarning, _history_row, item_filter
from tiny_runs import tiny_interactions


@pytest.fixture(scope="module")
def tiny():
    return tiny_interactions()


@pytest.fixture(scope="module")
def ease(tiny):
    return EASE().fit(tiny)


@pytest.fixture
def popular():
    """Four items watched by 4, 3, 2 and 1 users: popularity scores them 4, 3, 2, 1."""
    users = ["u1", "u2", "u3", "u4", "u1", "u2", "u3", "u1", "u2", "u1"]
    items = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "d"]
    data = Interactions.from_arrays(np.array(users), np.array(items),
                                    item_titles={"a": "Alpha", "b": "Beta"})
    return Popularity().fit(data), data


def _quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownIdsWarning)
        return call(*args, **kwargs)


@pytest.mark.parametrize("make", [lambda: EASE(), lambda: MultDAE(epochs=2, batch_size=64, seed=0)])
def test_recommend_items_equals_batch_recommend_mapped_through_item_ids(tiny, make):
    model = make().fit(tiny)
    for history in (["100", "101", "105"], ["125"], ["141", "100", "122", "159"]):
        frame = model.recommend_items(history, n=7)
        row, unknown = _history_row(model, history)
        ids, scores = model.recommend(row, n=7)
        assert unknown == []
        assert frame["item"].tolist() == model.item_ids_[ids[0]].tolist()
        np.testing.assert_array_equal(frame["score"].to_numpy(), scores[0])
        assert not set(history) & set(frame["item"])


def test_hand_computed_ranking_with_exclude_and_allow(popular):
    model, _ = popular
    frame = model.recommend_items(["a"], n=2)
    assert frame["item"].tolist() == ["b", "c"] and frame["score"].tolist() == [3.0, 2.0]
    # titles come from the data fit saw, or from set_known_users
    model.set_known_users(popular[1])
    frame = model.recommend_items(["a"], n=3, exclude=["b"])
    assert frame["item"].tolist() == ["c", "d"]  # fewer rows than n: nothing else is left
    assert frame["title"].tolist() == ["", ""]
    assert model.recommend_items(["c"], n=5, allow=["b", "a"])["title"].tolist() == ["Alpha", "Beta"]
    # exclude wins over allow; the history is never recommended
    assert model.recommend_items(["a"], n=5, allow=["a", "b", "d"], exclude=["b"])["item"].tolist() == ["d"]


def test_allow_and_exclude_are_honoured_exactly_on_a_learned_model(ease, tiny):
    rng = np.random.default_rng(0)
    items = tiny.item_ids
    scores = ease.score(_history_row(ease, ["100", "101"])[0])[0]
    for _ in range(5):
        allow = rng.choice(items, size=25, replace=False).tolist()
        exclude = rng.choice(items, size=15, replace=False).tolist()
        frame = ease.recommend_items(["100", "101"], n=10, exclude=exclude, allow=allow)
        candidates = [i for i in allow if i not in exclude and i not in ("100", "101")]
        best = sorted((scores[tiny.item_index[i]] for i in candidates), reverse=True)[:10]
        # the best allowed scores, each the item's own (items of other genres may tie)
        assert set(frame["item"]) <= set(candidates) and len(frame) == 10
        assert frame["score"].tolist() == best
        assert frame["score"].tolist() == [scores[tiny.item_index[i]] for i in frame["item"]]


def test_unknown_ids_are_reported_and_dropped(ease):
    with pytest.warns(UnknownIdsWarning, match=r"items: nope.*exclude: gone.*allow: zz"):
        frame = ease.recommend_items(["100", "nope"], n=3, exclude=["gone", "101"],
                                     allow=["101", "102", "103", "104", "zz"])
    assert frame.attrs == {"unknown_items": ["nope"], "unknown_exclude": ["gone"],
                           "unknown_allow": ["zz"], "fallback": None}
    assert sorted(frame["item"]) == ["102", "103", "104"]  # 101 excluded, 100 the history
    with pytest.raises(DataError, match="no id of the history is a known item.*nope, 42"):
        ease.recommend_items(["nope", 42], n=3)
    with pytest.raises(DataError, match="no id of the allow list"):
        ease.recommend_items(["100"], n=3, allow=["zz"])


@pytest.mark.parametrize("history, n, error, message", [
    ([], 10, DataError, "history is empty"),
    (None, 10, DataError, "history is empty"),
    (["100"], 0, ConfigError, "n must be a positive integer, got 0"),
    (["100"], -3, ConfigError, "got -3"),
    (["100"], True, ConfigError, "got True"),
    (["100"], 2.5, ConfigError, "got 2.5"),
    ({"100": float("nan")}, 5, DataError, "item '100': rating nan is not a finite number"),
    ([("100", float("inf"))], 5, DataError, "rating inf is not a finite number"),
    ({"100": "five"}, 5, DataError, "rating 'five' is not a number"),
    ([("100", 1, 2)], 5, DataError, "give an id or an"),
])
def test_bad_input_is_a_one_line_error(ease, history, n, error, message):
    with pytest.raises(error, match=message) as info:
        ease.recommend_items(history, n=n)
    assert "\n" not in str(info.value)


def test_histories_as_ids_dicts_and_pairs_with_defaults_by_model_kind(ease):
    class Rating:
        implicit = False
        rating_range_ = (0.5, 5.0)
        item_ids_ = np.array(["10", "20", "30"])
        n_items_ = 3

        def _item_index(self) -> dict[str, int]:
            return {"10": 0, "20": 1, "30": 2}

    row, unknown = _history_row(Rating(), ["30", ("10", 2.5), "99"])
    assert row.toarray().tolist() == [[2.5, 0.0, 5.0]] and unknown == ["99"]
    assert _history_row(Rating(), {"20": 1, "30": 4})[0].toarray().tolist() == [[0.0, 1.0, 4.0]]
    row, _ = _history_row(ease, "105")  # one id on its own, not its characters
    assert row.indices.tolist() == [ease.item_ids_.tolist().index("105")]
    assert row.data.tolist() == [1.0]


def test_recommend_users_equals_recommend_on_their_training_rows(ease, tiny, tmp_path):
    fitted = EASE().fit(tiny.matrix)  # fit keeps its training users
    assert fitted.recommend_users(["0"], n=2)["user"].tolist() == ["0", "0"]
    fitted.save(tmp_path / "m")
    with pytest.raises(NotFittedError, match="set_known_users"):  # a loaded model keeps none
        EASE.load(tmp_path / "m").recommend_users(["0"])
    ease.set_known_users(tiny)
    with pytest.warns(UnknownIdsWarning, match="users: ghost"):
        frame = ease.recommend_users(["u7", "ghost", "u3", "u7"], n=4)
    assert frame.attrs["unknown_users"] == ["ghost"]
    assert frame.columns.tolist() == ["user", "rank", "item", "score", "title"]
    assert frame["user"].tolist() == ["u7"] * 4 + ["u3"] * 4  # a repeated id answered once
    assert frame["rank"].tolist() == [1, 2, 3, 4] * 2
    rows = [tiny.user_index["u7"], tiny.user_index["u3"]]
    ids, scores = ease.recommend(tiny.matrix[rows], n=4)
    assert frame["item"].tolist() == ease.item_ids_[ids.ravel()].tolist()
    np.testing.assert_array_equal(frame["score"].to_numpy(), scores.ravel())
    assert frame["title"].iloc[0] == tiny.item_titles[frame["item"].iloc[0]]
    with pytest.raises(DataError, match="no user ids given"):
        ease.recommend_users([])
    with pytest.raises(DataError, match="no id of the user list is a known training user"):
        _quiet(ease.recommend_users, ["ghost"])


def test_recommend_users_in_batches_with_a_filter(ease, tiny, monkeypatch):
    import aerec.models.raw_ids as raw_ids

    ease.set_known_users(tiny)
    whole = ease.recommend_users(list(tiny.user_ids), n=3, exclude=["100", "120", "140"])
    monkeypatch.setattr(raw_ids, "_USER_BATCH", 7)
    batched = ease.recommend_users(list(tiny.user_ids), n=3, exclude=["100", "120", "140"])
    assert whole.equals(batched) and len(whole) == 3 * tiny.n_users
    assert not {"100", "120", "140"} & set(whole["item"])


def test_a_loaded_model_keeps_no_users_until_given_them(ease, tiny, tmp_path):
    ease.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    with pytest.raises(NotFittedError, match="holds no training users"):
        loaded.recommend_users(["u1"])
    loaded.set_known_users(tiny)
    ease.set_known_users(tiny)
    assert loaded.recommend_users(["u1"], n=5).equals(ease.recommend_users(["u1"], n=5))
    with pytest.raises(DataError, match="not the model's items"):
        loaded.set_known_users(tiny.select_items(np.arange(10)))


def test_item_filter_masks():
    ids = np.array(["a", "b", "c", "d"])
    assert item_filter(ids).blocked is None
    f = item_filter(ids, exclude=["b", "x"], allow=["a", "b", "c"])
    assert f.blocked.tolist() == [False, True, False, True]
    assert f.unknown_exclude == ["x"] and f.unknown_allow == []


def test_titles_for_an_ml100k_run(tmp_path, shared_data_dir):
    from aerec.cli import main
    from aerec.runs import load_split

    run = tmp_path / "pop"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(shared_data_dir), "--model",
                 "popularity", "--out", str(run), "--quiet"]) == 0
    model = Recommender.load(run / "model")
    split = load_split(run / "split")
    model.set_known_users(split.train)
    frame = model.recommend_items(["50", "181"], n=5)  # Star Wars, Return of the Jedi
    assert frame.columns.tolist() == ["item", "score", "title"]
    assert all(frame["title"]) and frame["title"].tolist() == [
        split.train.item_titles[i] for i in frame["item"]]
    assert model.item_titles_["50"] == "Star Wars (1977)"
    user = split.train.user_ids[0]
    assert all(model.recommend_users([user], n=3)["title"])
