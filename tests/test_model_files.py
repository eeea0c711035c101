"""Model files from someone else: whatever ``model.json`` holds, loading gives the model or a
DataError naming the file, never another exception (property tests with Hypothesis)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerec.data.splits import strong_generalization
from aerec.errors import DataError
from aerec.models import EASE, Recommender
from aerec.models.storage import first_non_finite, load_model

from tiny_runs import tiny_interactions

#: Any value JSON can carry (NaN and infinities included: Python's json writes and reads them).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20,
)
FIELDS = ["format", "format_version", "model", "params", "n_items", "item_ids", "item_titles",
          "versions"]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A fitted EASE model saved in a folder; the tests overwrite its model.json."""
    split = strong_generalization(tiny_interactions(), 30, seed=1)
    folder = tmp_path_factory.mktemp("model") / "model"
    EASE(lam=50.0).fit(split.train).save(folder)
    return folder


@pytest.fixture(scope="module")
def good_meta(saved) -> dict:
    return json.loads((saved / "model.json").read_text())


@pytest.fixture
def folder(saved, tmp_path_factory) -> Path:
    return Path(shutil.copytree(saved, tmp_path_factory.mktemp("copy") / "model"))


def _load_or_data_error(folder: Path) -> Recommender | None:
    try:
        return load_model(folder, device="cpu")
    except DataError as exc:
        assert "model" in str(exc) and "\n" not in str(exc)
        return None


@SETTINGS
@given(value=JSON_VALUES)
def test_any_json_value_as_model_json_is_a_data_error(folder, value):
    (folder / "model.json").write_text(json.dumps(value))
    with pytest.raises(DataError, match="model.json"):
        load_model(folder, device="cpu")


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_as_model_json_are_a_data_error(folder, data):
    (folder / "model.json").write_bytes(data)
    with pytest.raises(DataError, match="model.json"):
        load_model(folder, device="cpu")


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES | st.just("remove"))
def test_one_field_replaced_loads_or_is_a_data_error(folder, good_meta, field, value):
    meta = dict(good_meta)
    if value == "remove":
        meta.pop(field)
    else:
        meta[field] = value
    (folder / "model.json").write_text(json.dumps(meta))
    model = _load_or_data_error(folder)
    if model is not None:  # a value that happens to be valid: the model works
        scores = model.score(sp.csr_matrix((1, model.n_items_), dtype=np.float32))
        assert scores.shape == (1, len(good_meta["item_ids"])) and not np.isnan(scores).any()


@SETTINGS
@given(ids=st.lists(st.text(max_size=4), min_size=0, max_size=70))
def test_item_ids_that_do_not_match_the_weights_are_refused(folder, good_meta, ids):
    meta = {**good_meta, "item_ids": ids, "n_items": len(ids)}
    (folder / "model.json").write_text(json.dumps(meta))
    model = _load_or_data_error(folder)
    # Only 60 distinct ids can fit the 60 x 60 weights.
    assert (model is not None) == (len(ids) == 60 and len(set(ids)) == 60)


def test_the_unchanged_folder_loads_and_scores_as_saved(saved):
    split = strong_generalization(tiny_interactions(), 30, seed=1)
    original = EASE(lam=50.0).fit(split.train)
    loaded = load_model(saved, device="cpu")
    history = split.test.fold_in.matrix
    assert np.array_equal(loaded.score(history), original.score(history))


def test_first_non_finite_names_the_tensor():
    state = {"a": torch.ones(2), "b": [torch.zeros(3), {"c": torch.tensor([1.0, float("nan")])}],
             "steps": torch.tensor([3]), "note": "x"}
    assert first_non_finite(state) == "b.1.c"
    state["b"][1]["c"] = torch.ones(2)
    assert first_non_finite(state) is None
    assert first_non_finite({"w": torch.tensor([-float("inf")])}) == "w"


def test_titles_travel_with_the_model(saved, good_meta, folder):
    # Saved: every item's title, so a loaded model names its recommendations without the data.
    split = strong_generalization(tiny_interactions(), 30, seed=1)
    titles = split.train.item_titles
    assert good_meta["item_titles"] == {i: titles[i] for i in good_meta["item_ids"]}
    loaded = load_model(saved, device="cpu")
    frame = loaded.recommend_items([good_meta["item_ids"][0]], n=3)
    assert frame["title"].tolist() == [titles[i] for i in frame["item"]]
    # A model file without titles (written before they were kept) loads, and has none.
    (folder / "model.json").write_text(json.dumps(
        {k: v for k, v in good_meta.items() if k != "item_titles"}))
    untitled = load_model(folder, device="cpu")
    assert not getattr(untitled, "item_titles_", None)
    assert untitled.recommend_items([good_meta["item_ids"][0]], n=3).columns.tolist() == [
        "item", "score"]


@pytest.mark.parametrize("titles, message", [
    (["Alpha"], "must be an object"),
    ({"x": 3}, "must map item ids to strings"),
    ({"no such item": "Alpha"}, "'no such item', which item_ids does not list"),
])
def test_bad_titles_are_named(folder, good_meta, titles, message):
    (folder / "model.json").write_text(json.dumps({**good_meta, "item_titles": titles}))
    with pytest.raises(DataError, match="item_titles") as error:
        load_model(folder, device="cpu")
    assert message in str(error.value)
