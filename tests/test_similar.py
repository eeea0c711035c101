"""Similar items: each model's definition checked by hand or against numpy, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aerec.cli import main
from aerec.data.interactions import Interactions
from aerec.errors import ConfigError, DataError
from aerec.models import EASE, EDLAE, Blend, MultDAE, MultVAE, Popularity, RecVAE, UAutoRec
from aerec.models.similarity import similarity_definition
from tiny_runs import make_tiny_run, tiny_interactions

#: Users x items of a small catalogue where "a" and "b" always appear together, "c" and "d" often
#: do, and "e" goes with anything.
PAIRED = {
    "u1": "ab", "u2": "abc", "u3": "ab", "u4": "cd", "u5": "cde", "u6": "abe",
    "u7": "cd", "u8": "de", "u9": "abcd",
}


@pytest.fixture(scope="module")
def paired() -> Interactions:
    users = [u for u, items in PAIRED.items() for _ in items]
    items = [i for its in PAIRED.values() for i in its]
    return Interactions.from_arrays(np.array(users), np.array(items))


@pytest.fixture(scope="module")
def tiny() -> Interactions:
    return tiny_interactions()


def _numpy_ease(data: Interactions, lam: float) -> np.ndarray:
    """EASE's B by its textbook formula, in float64."""
    x = data.matrix.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_items_that_always_co_occur_are_each_others_most_similar(paired):
    model = EASE(lam=1.0).fit(paired)
    frame = model.similar_items(["a", "b"], n=1)
    assert frame[["item", "similar_item"]].values.tolist() == [["a", "b"], ["b", "a"]]


def test_ease_scores_are_the_rows_of_b(paired):
    model = EASE(lam=2.0).fit(paired)
    b = _numpy_ease(paired, 2.0)
    cols = {str(i): k for k, i in enumerate(model.item_ids_)}
    frame = model.similar_items("c", n=4)
    assert sorted(frame["similar_item"]) == ["a", "b", "d", "e"]  # "a" and "b" tie: any order
    expected = [b[cols["c"], cols[j]] for j in frame["similar_item"]]
    np.testing.assert_allclose(frame["score"], expected, rtol=1e-5, atol=1e-6)
    assert (np.diff(frame["score"].to_numpy()) <= 0).all()
    assert frame["similar_item"].iloc[0] == "d"  # c's only partner without a or b: u4, u7


def test_edlae_uses_its_own_weights(paired):
    model = EDLAE(lam=1.0, dropout=0.5).fit(paired)
    frame = model.similar_items("a", n=1)
    assert frame["similar_item"].tolist() == ["b"]
    assert frame["score"].iloc[0] == pytest.approx(float(model.weights_[0, 1]), rel=1e-6)


def test_ease_with_max_items_never_returns_or_accepts_unmodelled_items(paired):
    model = EASE(lam=1.0, max_items=3).fit(paired)  # counts: a 5, b 5, c 5, d 5, e 3
    modelled = {str(model.item_ids_[i]) for i in model.items_}
    frame = model.similar_items(sorted(modelled), n=10)
    assert set(frame["similar_item"]) <= modelled
    assert frame.groupby("item").size().tolist() == [2, 2, 2]
    outside = next(str(i) for i in model.item_ids_ if str(i) not in modelled)
    with pytest.raises(DataError, match=f"item ids {outside}: not among the 3 most popular"):
        model.similar_items(outside)


def _numpy_cosine_top(vectors: np.ndarray, col: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n cosine neighbours of row ``col`` of items x d ``vectors``, itself excluded."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit[col]
    sims[col] = -np.inf
    order = np.argsort(-sims, kind="stable")[:n]
    return order, sims[order]


@pytest.mark.parametrize("make, vectors", [
    (lambda: MultDAE(epochs=2, latent=8, device="cpu"),
     lambda m: m.module_.weights[-1].detach().numpy().T),
    (lambda: MultVAE(epochs=2, hidden="16", latent=8, device="cpu"),
     lambda m: m.module_.weights[-1].detach().numpy().T),
    (lambda: RecVAE(epochs=1, hidden=16, latent=8, encoder_layers=2, device="cpu"),
     lambda m: m.module_.decoder_weight.detach().numpy().T),
], ids=["mult-dae", "mult-vae", "recvae"])
def test_decoder_cosine_matches_numpy_on_the_models_weights(tiny, make, vectors):
    model = make().fit(tiny)
    col = 7
    order, sims = _numpy_cosine_top(vectors(model).astype(np.float64), col, 5)
    frame = model.similar_items(model.item_ids_[col], n=5)
    assert frame["similar_item"].tolist() == [str(model.item_ids_[i]) for i in order]
    np.testing.assert_allclose(frame["score"], sims, rtol=1e-5)
    assert "cosine" in similarity_definition(model).lower()


def test_the_item_itself_is_never_returned_even_when_asking_for_every_item(tiny):
    model = MultDAE(epochs=1, latent=8, device="cpu").fit(tiny)
    ids = [str(i) for i in model.item_ids_[:5]]
    frame = model.similar_items(ids, n=1000)
    assert frame.groupby("item").size().tolist() == [len(model.item_ids_) - 1] * 5
    assert not (frame["item"] == frame["similar_item"]).any()
    # each item's rows are sorted by descending score
    assert all((np.diff(g["score"].to_numpy()) <= 0).all() for _, g in frame.groupby("item"))


def test_popularity_gives_the_most_popular_other_items():
    users = ["u1", "u2", "u3", "u4", "u1", "u2", "u3", "u1", "u2", "u1"]
    items = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "d"]  # 4, 3, 2 and 1 users
    model = Popularity().fit(Interactions.from_arrays(np.array(users), np.array(items)))
    frame = model.similar_items(["b", "a"], n=5)
    assert frame["similar_item"].tolist() == ["a", "c", "d", "b", "c", "d"]
    assert frame["score"].tolist() == [4.0, 2.0, 1.0, 3.0, 2.0, 1.0]
    assert "popular" in similarity_definition(model)


def test_blend_with_all_weight_on_one_member_ranks_as_that_member(tiny):
    ease = EASE(lam=10.0).fit(tiny)
    dae = MultDAE(epochs=2, latent=8, device="cpu").fit(tiny)
    blend = Blend.of([ease, dae], weights=(1.0, 0.0))
    assert (blend.similar_items("100", n=8)["similar_item"].tolist()
            == ease.similar_items("100", n=8)["similar_item"].tolist())
    mixed = Blend.of([ease, dae], weights=(0.5, 0.5)).similar_items("100", n=8)
    assert "100" not in set(mixed["similar_item"])


def test_rating_models_refuse_with_one_line(tiny):
    model = UAutoRec(epochs=1, hidden="8", device="cpu").fit(tiny)
    with pytest.raises(ConfigError, match="u-autorec has no definition of similar items"):
        model.similar_items("100")


def test_unknown_and_empty_ids_and_bad_n_are_one_line_errors(paired):
    model = EASE(lam=1.0).fit(paired)
    with pytest.raises(DataError, match=r"^unknown item ids: zz, 42 \(the model knows 5 items\)$"):
        model.similar_items(["a", "zz", 42])
    with pytest.raises(DataError, match="empty"):
        model.similar_items([])
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        model.similar_items("a", n=0)


def test_ids_may_be_numbers_and_titles_are_added_when_known(tiny):
    model = EASE(lam=10.0).fit(tiny)
    frame = model.similar_items(100, n=2, titles=tiny.item_titles)
    assert list(frame.columns) == ["item", "similar_item", "score", "title"]
    assert frame["title"].tolist() == [tiny.item_titles[i] for i in frame["similar_item"]]
    untitled = model.similar_items("100", n=2, titles={})
    assert list(untitled.columns) == ["item", "similar_item", "score"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("similar") / "run", model="mult-dae", epochs=5)


def test_cli_similar_json_matches_the_python_api(tiny_run, capsys):
    assert main(["similar", str(tiny_run), "--item", "100,120", "-n", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "mult-dae" and "cosine" in out["definition"].lower()
    from aerec.models import Recommender

    expected = Recommender.load(tiny_run / "model").similar_items(["100", "120"], n=3)
    for entry in out["items"]:
        rows = expected[expected["item"] == entry["item"]]
        assert [s["similar_item"] for s in entry["similar"]] == rows["similar_item"].tolist()
        assert entry["item"] not in [s["similar_item"] for s in entry["similar"]]
        assert entry["title"] and all(s["title"] for s in entry["similar"])


def test_cli_similar_text_and_errors(tiny_run, capsys):
    assert main(["similar", str(tiny_run), "--item", "100", "-n", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("mult-dae: Cosine")
    assert lines[2] == "similar to 100  Space Saga 1:"
    assert [line.split()[0] for line in lines[3:]] == ["1.", "2."]
    assert main(["similar", str(tiny_run), "--item", "99999"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aerec similar: error: unknown item ids: 99999") and "\n" not in err
    assert main(["similar", str(tiny_run), "--item", "100", "-n", "0"]) == 2
    assert main(["similar", str(tiny_run), "--item", " , "]) == 2
    assert "needs at least one item id" in capsys.readouterr().err
