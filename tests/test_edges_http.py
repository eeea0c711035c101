"""Issue 24's corpus over HTTP: the service answers at the edges as the CLI and Python do.

Class 2 (no wrong answer at the edges), class 5 (service hygiene) and class 6 (no silent mistake).
Each refusal is a 4xx with a one-line JSON error naming what was wrong; never a 5xx.
"""

from __future__ import annotations

import warnings

import pytest

from aerec.runs import load_split
from aerec.serving import create_app

from tiny_runs import UNTRAINED_ITEM, make_edge_run

with warnings.catch_warnings():  # starlette's notice that its test client will move to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    return make_edge_run(tmp_path_factory.mktemp("edge-http") / "run")


@pytest.fixture(scope="module")
def client(edge_run):
    with TestClient(create_app(edge_run), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def rating_client(tmp_path_factory):
    run = make_edge_run(tmp_path_factory.mktemp("edge-http-ratings") / "run", ratings=True)
    with TestClient(create_app(run), raise_server_exceptions=False) as c:
        yield c


def _refused(response, status: int, says: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error and "\n" not in error and "Traceback" not in response.text


# -- class 2 and class 6: histories and items at the edges -----------------------------------------
IMPLICIT = [
    # (id, items, part of the error)
    ("zero value", ["101", "100:0"], "value 0 is not positive"),
    ("negative value", ["100:-1"], "value -1 is not positive"),
    ("malformed entry", ["100:5:3"], "'100' is an item, and ':5:3' after it is not ':RATING'"),
    ("malformed entry with text", ["100:a:b"], "is not ':RATING'"),
]


@pytest.mark.parametrize("items, says", [c[1:] for c in IMPLICIT], ids=[c[0] for c in IMPLICIT])
def test_implicit_histories_refused(client, items, says):
    _refused(client.post("/recommend", json={"items": items}), 422, says)


RATINGS = [
    ("far above the scale", ["100:1000"], "rating 1000 is outside the training scale 1 to 5"),
    ("below the scale", ["100:0"], "rating 0 is outside the training scale 1 to 5"),
    ("negative", ["101:4", "100:-5"], "rating -5 is outside the training scale"),
    ("beyond float32", ["100:1e300"], "must be a finite number"),
]


@pytest.mark.parametrize("items, says", [c[1:] for c in RATINGS], ids=[c[0] for c in RATINGS])
def test_ratings_outside_the_training_scale_refused(rating_client, items, says):
    _refused(rating_client.post("/recommend", json={"items": items}), 422, says)


def test_a_rating_on_the_scale_is_answered(rating_client):
    response = rating_client.post("/recommend", json={"items": ["100:5", "101:1"], "n": 3})
    assert response.status_code == 200 and len(response.json()["recommendations"]) == 3


def test_similar_items_of_an_untrained_item_refused(client):
    _refused(client.get(f"/items/{UNTRAINED_ITEM}/similar"), 422, "no training interactions")
    similar = client.get("/items/100/similar", params={"n": 100}).json()["similar"]
    assert similar and UNTRAINED_ITEM not in {s["item"] for s in similar}


def test_a_known_user_never_gets_back_their_test_items(client, edge_run):
    split = load_split(edge_run / "split")
    targets = split.test.targets
    checked = 0
    for row in range(targets.n_users):
        own = set(targets.item_ids[targets.matrix[row].indices].tolist())
        if not own:
            continue
        user = str(targets.user_ids[row])
        body = client.get(f"/users/{user}/recommendations", params={"n": 100}).json()
        assert not {r["item"] for r in body["recommendations"]} & own
        checked += 1
        if checked == 5:
            break
    assert checked == 5


# -- class 5: service hygiene ---------------------------------------------------------------------
def test_a_trailing_slash_is_served_without_a_redirect_from_the_host_header(client):
    response = client.post("/recommend/", json={"items": ["100"], "n": 2},
                           headers={"host": "attacker.example"}, follow_redirects=False)
    assert response.status_code == 200 and "location" not in response.headers
    assert len(response.json()["recommendations"]) == 2


@pytest.mark.parametrize("path", ["/health/", "/items/", "/users/u1/recommendations/",
                                  "/items/100/similar/", "/docs/"])
def test_every_route_is_served_with_a_trailing_slash(client, path):
    response = client.get(path, follow_redirects=False,
                          headers={"host": "attacker.example"})
    assert response.status_code == 200 and "location" not in response.headers
    assert "attacker.example" not in response.text
