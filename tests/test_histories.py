"""Histories for recommendations: one builder for the CLI, Python and HTTP; a known user's whole row.

The end-to-end tests train one tiny run per registered model (implicit models on a given split of
the tiny genres, rating models on a random rating split of rated genres) and ask the CLI, Python
and the HTTP service the same questions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import aerec
from aerec.cli import main
from aerec.data.explicit_splits import canonical_fold, random_holdout
from aerec.data.interactions import Interactions
from aerec.data.splits import given_split, strong_generalization
from aerec.errors import DataError
from aerec.histories import finite_top, history_from_items, known_user_history
from aerec.models import REGISTRY, Popularity, Recommender
from aerec.persistence import write_json
from aerec.runs import RUN_FORMAT, load_split, save_split
from aerec.serving import create_app

from aerec.testing import fast_params as _fast_params
from tiny_runs import GENRES, PER_GENRE, item_id, tiny_interactions

with warnings.catch_warnings():  # starlette's notice that its test client will move to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

TITLES = {item_id(g, k): f"{name} {k + 1}" for g, name in enumerate(GENRES) for k in range(PER_GENRE)}


# -- the builder on its own ---------------------------------------------------------------------
class _Implicit:
    implicit = True
    item_ids_ = np.array(["10", "20", "30", "a:b"])
    n_items_ = 4


class _Rating(_Implicit):
    implicit = False
    rating_range_ = (0.5, 4.0)


def test_items_without_a_rating_count_1_or_the_top_rating():
    row, unknown = history_from_items(_Implicit(), ["30", "10", "99"])
    assert row.toarray().tolist() == [[1.0, 0.0, 1.0, 0.0]] and unknown == ["99"]
    row, unknown = history_from_items(_Rating(), ["30", "10:2.5"])
    assert row.toarray().tolist() == [[2.5, 0.0, 4.0, 0.0]] and unknown == []


def test_an_id_holding_a_colon_is_an_id_and_a_rating_after_it_still_works():
    row, _ = history_from_items(_Rating(), ["a:b", "20"])
    assert row.toarray().tolist() == [[0.0, 4.0, 0.0, 4.0]]
    row, _ = history_from_items(_Rating(), ["a:b:1.5"])
    assert row.toarray().tolist() == [[0.0, 0.0, 0.0, 1.5]]


def test_unknown_ids_come_back_once_in_order_and_the_last_rating_wins():
    row, unknown = history_from_items(_Rating(), ["x", "20:1", "y:3", "x", "20:2", "z:top"])
    assert unknown == ["x", "y", "z:top"]
    assert row.toarray().tolist() == [[0.0, 2.0, 0.0, 0.0]]


@pytest.mark.parametrize("entry", ["10:nan", "10:NaN", "10:inf", "10:-inf", "10:1e400", "zz:nan",
                                   "10:1e300", "10:-4e38"])  # the last two overflow float32
def test_non_finite_ratings_are_refused(entry):
    with pytest.raises(DataError, match="must be a finite number"):
        history_from_items(_Rating(), [entry])


def test_a_rating_that_is_no_number_is_refused():
    with pytest.raises(DataError, match=r"item '10:good': the rating after ':' must be a number"):
        history_from_items(_Rating(), ["10:good"])


def test_finite_top_drops_the_history_scored_minus_infinity():
    ids, scores = finite_top(np.array([4, 1, 2, 0]), np.array([2.0, 1.0, -np.inf, np.nan]))
    assert ids.tolist() == [4, 1] and scores.tolist() == [2.0, 1.0]


# -- a known user's history is everything the run holds about them, the test included -----------
def _given_split():
    data = tiny_interactions(n_users=90)
    is_test = np.random.default_rng(5).random(data.nnz) < 0.2
    return given_split(data.mask(~is_test), data.mask(is_test), validation_fraction=0.25, seed=2)


def test_on_a_given_split_a_user_has_the_whole_training_row_and_the_test_rows():
    split = _given_split()
    user = str(split.train.user_ids[0])
    row = split.test.fold_in.user_index[user]
    whole = split.test.fold_in.matrix[row]
    test_rows = split.test.targets.matrix[split.test.targets.user_index[user]]
    history = known_user_history(split, user)
    assert test_rows.nnz >= 1
    assert sorted(history.indices.tolist()) == sorted(whole.indices.tolist()
                                                      + test_rows.indices.tolist())
    # ... which is more than what the models were fitted on: the validation carve too
    carve = split.validation.targets.matrix[split.validation.targets.user_index[user]]
    assert carve.nnz >= 1 and set(carve.indices.tolist()) <= set(history.indices.tolist())
    assert history.nnz == (split.train.matrix[split.train.user_index[user]].nnz + carve.nnz
                           + test_rows.nnz)


def test_on_a_strong_split_held_out_users_have_their_whole_row():
    split = strong_generalization(tiny_interactions(), 30, seed=1)
    trained = str(split.train.user_ids[3])
    assert known_user_history(split, trained).nnz == split.train.matrix[3].nnz
    validating = str(split.validation.fold_in.user_ids[0])
    both = split.validation.fold_in.matrix[0].nnz + split.validation.targets.matrix[0].nnz
    assert known_user_history(split, validating).nnz == both
    tested = str(split.test.fold_in.user_ids[0])
    history = known_user_history(split, tested)
    both = sorted(split.test.fold_in.matrix[0].indices.tolist()
                  + split.test.targets.matrix[0].indices.tolist())
    assert history.indices.tolist() == both
    with pytest.raises(DataError, match="'nobody' is not in this run's data"):
        known_user_history(split, "nobody")


def test_on_u1_a_user_has_every_rating_of_u1_base_and_u1_test(shared_data_dir):
    from aerec.data.readers import read_ml100k

    split = canonical_fold(shared_data_dir / "ml-100k", "u1")
    expected = {}
    for name in ("u1.base", "u1.test"):
        part = read_ml100k(shared_data_dir / "ml-100k" / name)
        row = part.matrix[part.user_index["1"]]
        expected.update({str(part.item_ids[c]): v for c, v in zip(row.indices, row.data)})
    expected = {i: v for i, v in expected.items() if i in set(split.train.item_ids.tolist())}
    history = known_user_history(split, "1")
    got = {str(split.train.item_ids[c]): v for c, v in zip(history.indices, history.data)}
    assert got == expected and len(got) == 272  # user 1's ratings in u1.base and u1.test
    assert split.train.matrix[split.train.user_index["1"]].nnz < len(got)


# -- tiny runs of every model kind ----------------------------------------------------------------
def _tiny_ratings(n_users: int = 150, seed: int = 0) -> Interactions:
    """Users rate 6-12 items of their genre 4 or 5, and 2-4 items of other genres 1 or 2."""
    rng = np.random.default_rng(seed)
    users, items, ratings = [], [], []
    for u in range(n_users):
        genre = u % len(GENRES)
        for g in range(len(GENRES)):
            size = int(rng.integers(6, 13)) if g == genre else int(rng.integers(2, 5))
            for k in rng.choice(PER_GENRE, size=size, replace=False):
                users.append(f"u{u}")
                items.append(item_id(g, int(k)))
                ratings.append(float(rng.integers(4, 6) if g == genre else rng.integers(1, 3)))
    return Interactions.from_arrays(np.array(users), np.array(items), np.array(ratings, np.float32),
                                    item_titles=TITLES)


def _write_run(run_dir: Path, split, model: Recommender, kind: str) -> Path:
    save_split(split, run_dir / "split")
    model.save(run_dir / "model")
    write_json(run_dir / "run.json", {
        "format": RUN_FORMAT, "model": model.name, "params": model.get_params(),
        "data": {"dataset": "tiny-genres"}, "preprocess": {}, "split": {"kind": kind},
        "versions": {"aerec": aerec.__version__},
    })
    return run_dir


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def tiny_run(request, tmp_path_factory) -> Path:
    cls = REGISTRY[request.param]
    if cls.implicit:
        split, kind = _given_split(), "given"
    else:
        split, kind = random_holdout(_tiny_ratings(), test_fraction=0.1, seed=3), "random"
    model = cls(**_fast_params(cls)).fit(split.train, split.validation)
    return _write_run(tmp_path_factory.mktemp("histories") / request.param, split, model, kind)


def _cli(capsys, *args) -> dict:
    assert main(["recommend", *map(str, args), "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def _pairs(recommendations: list[dict]) -> tuple[list[str], list[float]]:
    return [r["item"] for r in recommendations], [r["score"] for r in recommendations]


PLAIN = [item_id(0, 0), item_id(0, 1), item_id(1, 3), "no-such-item"]
RATED = [item_id(0, 0), item_id(0, 1), f"{item_id(0, 2)}:3", "no-such-item"]


@pytest.mark.parametrize("entries", [PLAIN, RATED], ids=["plain", "rated"])
def test_cli_python_and_http_give_the_same_answer(tiny_run, capsys, entries):
    cli = _cli(capsys, tiny_run, "--items", ",".join(entries), "-n", 6)

    model = Recommender.load(tiny_run / "model", device="cpu")
    history, unknown = history_from_items(model, entries)
    ids, scores = model.recommend(history, n=6)
    ids, scores = finite_top(ids[0], scores[0])

    with TestClient(create_app(tiny_run)) as client:
        http = client.post("/recommend", json={"items": entries, "n": 6}).json()

    assert cli["unknown_items"] == http["unknown_items"] == unknown == ["no-such-item"]
    python_items = [str(model.item_ids_[i]) for i in ids]
    assert len(python_items) == 6
    for answer in (cli, http):
        items, got = _pairs(answer["recommendations"])
        assert items == python_items
        np.testing.assert_allclose(got, scores, rtol=1e-5, atol=1e-6)
    if not model.implicit:  # named items count as the top training rating, 102:3 as a 3
        assert history.data.tolist() == ([5.0, 5.0, 3.0] if entries is RATED else [5.0] * 3)


def test_a_known_user_never_gets_their_own_items_back(tiny_run, capsys):
    split = load_split(tiny_run / "split")
    user = str(split.train.user_ids[1])
    whole = {str(split.train.item_ids[c]) for part in (split.test.fold_in, split.test.targets)
             for c in part.matrix[part.user_index[user]].indices}  # the test file's rows too
    assert len(whole) > split.test.fold_in.matrix[split.test.fold_in.user_index[user]].nnz
    n_items = split.train.n_items
    cli = _cli(capsys, tiny_run, "--user", user, "-n", 1000)
    items, scores = _pairs(cli["recommendations"])
    assert not set(items) & whole
    assert all(np.isfinite(scores))
    if tiny_run.name != "popularity":  # every other item gets a finite score
        assert len(items) == n_items - len(whole)
    with TestClient(create_app(tiny_run)) as client:
        body = client.get(f"/users/{user}/recommendations", params={"n": 100}).json()
    assert body["history_size"] == len(whole)
    assert not {r["item"] for r in body["recommendations"]} & whole


# -- the CLI's manners ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def popularity_run(tmp_path_factory) -> Path:
    split = _given_split()
    return _write_run(tmp_path_factory.mktemp("histories") / "pop", split,
                      Popularity().fit(split.train), "given")


@pytest.mark.parametrize("entry", ["101:nan", "101:inf", "101:-Infinity"])
def test_cli_refuses_a_non_finite_rating_on_one_line(popularity_run, capsys, entry):
    assert main(["recommend", str(popularity_run), "--items", f"100,{entry}", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"item '{entry}': the rating after ':' must be a finite number" in err


def test_a_large_n_returns_only_what_can_be_recommended(popularity_run, capsys):
    history = [item_id(g, k) for g in range(3) for k in range(PER_GENRE - 2)]  # 54 of 60
    body = _cli(capsys, popularity_run, "--items", ",".join(history), "-n", 2000)
    assert sorted(r["item"] for r in body["recommendations"]) == sorted(
        item_id(g, k) for g in range(3) for k in (PER_GENRE - 2, PER_GENRE - 1))


def test_plain_output_has_a_column_header(popularity_run, capsys):
    assert main(["recommend", str(popularity_run), "--items", "100,101", "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "item", "score", "title"]
    assert len(lines) == 3 and lines[1].lstrip().startswith("1.")
