"""Random requests to every endpoint: the service answers 2xx or 4xx with a JSON error, never 5xx."""

from __future__ import annotations

import json
import warnings
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerec.serving import create_app

from tiny_runs import make_tiny_run

with warnings.catch_warnings():  # starlette's notice that its test client will move to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    run = make_tiny_run(tmp_path_factory.mktemp("hypothesis") / "run", epochs=3)
    with TestClient(create_app(run), raise_server_exceptions=False) as c:
        yield c


json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
item_ids = st.one_of(st.sampled_from(["100", "101", "159", "0"]), st.integers(), st.text(max_size=40),
                     json_scalars)
recommend_bodies = st.one_of(
    st.fixed_dictionaries({"items": st.lists(item_ids, max_size=30)},
                          optional={"n": json_scalars | st.integers(-5, 200),
                                    "extra": json_values}),
    st.fixed_dictionaries({"items": json_values, "n": json_values}),
    json_values,
)
raw_bodies = st.one_of(
    recommend_bodies.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    # non-standard JSON that Python's encoder writes for floats beyond JSON
    st.sampled_from([b'{"items": [NaN], "n": Infinity}', b'{"items": ["1"], "n": 1e400}']),
)
content_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data", "", "application/json; charset=latin-1"])


def _check(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and body["error"]
        assert "Traceback" not in response.text


@SETTINGS
@given(body=raw_bodies, content_type=content_types)
def test_recommend_never_fails_on_random_bodies(client, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/recommend", content=body, headers=headers)
    _check(response)
    if response.status_code == 200:
        answer = response.json()
        assert set(answer) == {"recommendations", "unknown_items"}


@SETTINGS
@given(body=recommend_bodies)
def test_recommend_never_fails_on_random_json(client, body):
    _check(client.post("/recommend", json=body))


@SETTINGS
@given(q=st.text(max_size=250), limit=st.one_of(st.integers(-10, 200), st.text(max_size=10)),
       other=st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=2))
def test_item_search_never_fails(client, q, limit, other):
    _check(client.get("/items", params={**other, "q": q, "limit": limit}))


@SETTINGS
@given(user=st.one_of(st.sampled_from(["u0", "u1", "u299"]), st.text(min_size=1, max_size=250)),
       n=st.one_of(st.integers(-10, 200), st.text(max_size=10)))
def test_user_recommendations_never_fail(client, user, n):
    _check(client.get(f"/users/{quote(user, safe='')}/recommendations", params={"n": n}))


@SETTINGS
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       path=st.sampled_from(["/", "/health", "/recommend", "/items", "/users/u1/recommendations",
                             "/static/app.js", "/docs", "/openapi.json"]),
       body=st.binary(max_size=50))
def test_any_method_on_any_endpoint_never_fails(client, method, path, body):
    response = client.request(method, path, content=body if method not in ("GET", "HEAD") else None)
    assert response.status_code < 500
