"""Random requests to every endpoint: the service answers 2xx or 4xx with a JSON error, never 5xx."""

from __future__ import annotations

import json
import math
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
        assert set(answer) == {"recommendations", "unknown_items", "unknown_exclude",
                               "unknown_allow", "note", "fallback"}


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
@given(item=st.one_of(st.sampled_from(["100", "101", "159"]), st.text(min_size=1, max_size=250)),
       n=st.one_of(st.integers(-10, 200), st.text(max_size=10)))
def test_similar_items_never_fail(client, item, n):
    response = client.get(f"/items/{quote(item, safe='')}/similar", params={"n": n})
    _check(response)
    if response.status_code == 200:
        similar = response.json()["similar"]
        assert len(similar) <= int(n) and all(math.isfinite(s["score"]) for s in similar)
        assert item not in {s["item"] for s in similar}


@SETTINGS
@given(user=st.sampled_from(["u0", "u1", "nobody"]),
       params=st.lists(st.tuples(st.sampled_from(["exclude", "allow", "n"]), st.text(max_size=30)),
                       max_size=6))
def test_user_filters_never_fail(client, user, params):
    response = client.get(f"/users/{user}/recommendations", params=params)
    _check(response)
    if response.status_code == 200:
        given = {k: [i for key, v in params if key == k for i in v.split(",") if i]
                 for k in ("exclude", "allow")}
        items = {r["item"] for r in response.json()["recommendations"]}
        assert not items & set(given["exclude"])
        if any(key == "allow" for key, _ in params):
            assert items <= set(given["allow"])


@SETTINGS
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       path=st.sampled_from(["/", "/health", "/recommend", "/items", "/users/u1/recommendations",
                             "/items/100/similar", "/static/app.js", "/docs", "/openapi.json"]),
       body=st.binary(max_size=50))
def test_any_method_on_any_endpoint_never_fails(client, method, path, body):
    response = client.request(method, path, content=body if method not in ("GET", "HEAD") else None)
    assert response.status_code < 500


# -- any text JSON can carry, ratings, and what a 200 promises --------------------------------------
#: Every code point, lone surrogates included (JSON's "\ud800" escapes can carry them).
_every_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
any_text = st.one_of(  # surrogates are rare among all code points: half the cases hold one
    st.text(_every_char, max_size=12),
    st.builds("{}{}{}".format, st.text(_every_char, max_size=5), _surrogate,
              st.text(_every_char, max_size=5)),
)
known = st.sampled_from(["100", "101", "120", "159"])
ratings = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e999", "5", "0", "-1"]),
                    any_text)
entries = st.one_of(known, any_text, st.integers(-(2**70), 2**70),
                    st.builds(lambda i, r: f"{i}:{r}", known | any_text, ratings))


#: Every item id of the tiny run.
TINY_ITEMS = {str(i) for i in range(100, 160)}
filter_ids = st.lists(st.one_of(known, any_text, st.integers(-(2**70), 2**70)), max_size=10)


@SETTINGS
@given(items=st.lists(known, min_size=1, max_size=3), exclude=st.none() | filter_ids,
       allow=st.none() | filter_ids, n=st.integers(1, 100))
def test_any_filters_are_honoured_or_refused_with_a_4xx(client, items, exclude, allow, n):
    request = {"items": items, "n": n, **({} if exclude is None else {"exclude": exclude}),
               **({} if allow is None else {"allow": allow})}
    response = client.post("/recommend", content=json.dumps(request).encode(),
                           headers={"content-type": "application/json"})
    _check(response)
    if response.status_code != 200:
        return
    answer = response.json()
    got = {r["item"] for r in answer["recommendations"]}
    assert not got & ({str(i) for i in exclude or ()} | set(items))
    if allow is not None:
        assert got <= {str(i) for i in allow}
        assert (answer["note"] != "") == (not {str(i) for i in allow} & TINY_ITEMS)
    assert set(answer["unknown_exclude"]) <= {str(i) for i in exclude or ()}


@SETTINGS
@given(items=st.lists(entries, max_size=20), n=st.integers(1, 100))
def test_any_history_gets_200_with_finite_scores_or_a_4xx(client, items, n):
    # json.dumps escapes what has no UTF-8 form, as a browser's JSON.stringify does
    body = json.dumps({"items": items, "n": n}).encode()
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    _check(response)
    if response.status_code != 200:
        return
    answer = response.json()
    recs = answer["recommendations"]
    assert len(recs) <= n
    assert all(math.isfinite(r["score"]) for r in recs)
    named = {str(i) for i in items} | {str(i).rpartition(":")[0] for i in items}
    assert not {r["item"] for r in recs} & named & {"100", "101", "120", "159"}
    assert set(answer["unknown_items"]) <= named


@SETTINGS
@given(item=any_text)
def test_any_single_id_is_answered_200_or_4xx_and_echoed_intact(client, item):
    body = json.dumps({"items": [item], "n": 3}).encode()
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    _check(response)
    if response.status_code == 200 and item not in {"100", "101", "120", "159"}:
        assert response.json()["unknown_items"] in ([item], [item.rpartition(":")[0]])
