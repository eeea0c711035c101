"""Bad input over HTTP: every case gets the 4xx it should, with a one-line JSON error, never a 5xx.

The corpus covers request bodies, paths, query strings and methods. Each case names the status it
must get and a piece of the error message, so that a case answered for the wrong reason fails.
"""

from __future__ import annotations

import json
import warnings

import pytest

from aerec.serving import create_app
from aerec.serving.app import MAX_BODY_BYTES, MAX_FILTER, MAX_HISTORY, MAX_ID_LENGTH

from tiny_runs import make_tiny_run

with warnings.catch_warnings():  # starlette's notice that its test client will move to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

JSON = "application/json"
OBJECT = "expected a JSON object"
ITEM_TYPE = "an item id must be a string or an integer"
FINITE = "the rating after ':' must be a finite number"
NOT_ALLOWED = "Method Not Allowed"

BODIES = [
    # (id, raw body, content type, status, part of the error)
    ("truncated", b'{"items": ["1"', JSON, 400, "malformed JSON"),
    ("trailing-comma", b'{"items": ["1"],}', JSON, 400, "malformed JSON"),
    ("single-quotes", b"{'items': ['1']}", JSON, 400, "malformed JSON"),
    ("invalid-utf8", b'{"items": ["\xff\xfe"]}', JSON, 400, "error parsing the body"),
    ("deep-nesting", b"[" * 100_000, JSON, 400, "error parsing the body"),
    ("array", b"[1, 2]", JSON, 422, OBJECT),
    ("empty", b"", JSON, 422, OBJECT),
    ("null", b"null", JSON, 422, OBJECT),
    ("string", b'"50"', JSON, 422, OBJECT),
    ("number", b"42", JSON, 422, OBJECT),
    ("no-items", b'{"n": 3}', JSON, 422, "items: Field required"),
    ("items-string", b'{"items": "100"}', JSON, 422, "items: Input should be a valid list"),
    ("items-object", b'{"items": {"100": 1}}', JSON, 422, "items: Input should be a valid list"),
    ("items-null", b'{"items": null}', JSON, 422, "items: Input should be a valid list"),
    ("item-float", b'{"items": [1.5]}', JSON, 422, ITEM_TYPE),
    ("item-bool", b'{"items": [true]}', JSON, 422, ITEM_TYPE),
    ("item-null", b'{"items": [null]}', JSON, 422, ITEM_TYPE),
    ("item-list", b'{"items": [["100"]]}', JSON, 422, ITEM_TYPE),
    ("item-object", b'{"items": [{"id": "100"}]}', JSON, 422, ITEM_TYPE),
    ("item-nan-literal", b'{"items": [NaN]}', JSON, 422, ITEM_TYPE),
    ("item-empty", b'{"items": [""]}', JSON, 422, "an item id must have 1 to"),
    ("item-too-long", json.dumps({"items": ["7" * (MAX_ID_LENGTH + 1)]}).encode(), JSON, 422,
     "an item id must have 1 to"),
    ("lone-high-surrogate", b'{"items": ["\\ud800"]}', JSON, 422, "valid Unicode text"),
    ("lone-low-surrogate", b'{"items": ["100", "x\\udfffy"]}', JSON, 422, "valid Unicode text"),
    ("rating-nan", b'{"items": ["100:nan"]}', JSON, 422, FINITE),
    ("rating-inf", b'{"items": ["100:inf"]}', JSON, 422, FINITE),
    ("rating-minus-infinity", b'{"items": ["100:-Infinity"]}', JSON, 422, FINITE),
    ("rating-overflow", b'{"items": ["100:1e999"]}', JSON, 422, FINITE),
    ("rating-word", b'{"items": ["100:great"]}', JSON, 422, "the rating after ':' must be a number"),
    ("unknown-item-nan", b'{"items": ["no-such:nan"]}', JSON, 422, FINITE),
    ("n-zero", b'{"items": ["1"], "n": 0}', JSON, 422, "n: Input should be greater than or equal to 1"),
    ("n-negative", b'{"items": ["1"], "n": -5}', JSON, 422, "greater than or equal to 1"),
    ("n-too-large", b'{"items": ["1"], "n": 101}', JSON, 422, "less than or equal to 100"),
    ("n-huge", b'{"items": ["1"], "n": 100000000000000000000000}', JSON, 422, "n: "),
    ("n-string", b'{"items": ["1"], "n": "5"}', JSON, 422, "n: Input should be a valid integer"),
    ("n-float", b'{"items": ["1"], "n": 2.5}', JSON, 422, "n: Input should be a valid integer"),
    ("n-bool", b'{"items": ["1"], "n": true}', JSON, 422, "n: Input should be a valid integer"),
    ("n-null", b'{"items": ["1"], "n": null}', JSON, 422, "n: Input should be a valid integer"),
    ("n-infinity", b'{"items": ["1"], "n": 1e400}', JSON, 422, "n: Input should be a valid integer"),
    ("extra-field", b'{"items": ["1"], "top": 5}', JSON, 422, "top: Extra inputs are not permitted"),
    ("too-many-items", json.dumps({"items": ["1"] * (MAX_HISTORY + 1)}).encode(), JSON, 422,
     f"List should have at most {MAX_HISTORY} items"),
    ("too-large", b'{"items": ["' + b"1" * (MAX_BODY_BYTES + 10) + b'"]}', JSON, 413,
     "request body larger than"),
    # business filters: the same id rules as the history, and a bounded length
    ("exclude-string", b'{"items": ["1"], "exclude": "100"}', JSON, 422,
     "exclude: Input should be a valid list"),
    ("allow-object", b'{"items": ["1"], "allow": {"100": true}}', JSON, 422,
     "allow: Input should be a valid list"),
    ("allow-number", b'{"items": ["1"], "allow": 100}', JSON, 422, "allow: Input should be a valid list"),
    ("exclude-float", b'{"items": ["1"], "exclude": ["100", 1.5]}', JSON, 422, f"exclude.1: {ITEM_TYPE}"),
    ("exclude-bool", b'{"items": ["1"], "exclude": [false]}', JSON, 422, f"exclude.0: {ITEM_TYPE}"),
    ("allow-null-id", b'{"items": ["1"], "allow": [null]}', JSON, 422, f"allow.0: {ITEM_TYPE}"),
    ("allow-nested", b'{"items": ["1"], "allow": [["100"]]}', JSON, 422, f"allow.0: {ITEM_TYPE}"),
    ("allow-empty-id", b'{"items": ["1"], "allow": [""]}', JSON, 422,
     "allow.0: an item id must have 1 to"),
    ("exclude-too-long-id", json.dumps({"items": ["1"], "exclude": ["7" * (MAX_ID_LENGTH + 1)]}).encode(),
     JSON, 422, "exclude.0: an item id must have 1 to"),
    ("exclude-lone-surrogate", b'{"items": ["1"], "exclude": ["\\ud800"]}', JSON, 422,
     "exclude.0: an item id must be valid Unicode text"),
    ("allow-lone-surrogate", b'{"items": ["1"], "allow": ["100", "a\\udc00"]}', JSON, 422,
     "allow.1: an item id must be valid Unicode text"),
    ("exclude-huge", json.dumps({"items": ["1"], "exclude": ["1"] * (MAX_FILTER + 1)}).encode(), JSON,
     422, f"exclude: List should have at most {MAX_FILTER} items"),
    ("allow-huge", json.dumps({"items": ["1"], "allow": list(range(MAX_FILTER + 1))}).encode(), JSON,
     422, f"allow: List should have at most {MAX_FILTER} items"),
    ("filter-misspelt", b'{"items": ["1"], "excludes": ["100"]}', JSON, 422,
     "excludes: Extra inputs are not permitted"),
    ("text-plain", b'{"items": ["1"]}', "text/plain", 422, OBJECT),
    ("form", b"items=1&n=2", "application/x-www-form-urlencoded", 422, OBJECT),
    ("no-content-type", b'{"items": ["1"]}', "", 422, OBJECT),
]

URLS = [
    # (id, method, url, status, part of the error)
    ("unknown-user", "GET", "/users/nobody/recommendations", 404, "'nobody' is not in this run's data"),
    ("nul-user", "GET", "/users/%00/recommendations", 404, "is not in this run's data"),
    ("bad-utf8-user", "GET", "/users/%ff%fe/recommendations", 404, "is not in this run's data"),
    ("long-user", "GET", f"/users/{'u' * (MAX_ID_LENGTH + 1)}/recommendations", 422,
     "user_id: String should have at most"),
    ("unknown-page", "GET", "/no/such/page", 404, "Not Found"),
    ("unknown-static", "GET", "/static/no-such-file.js", 404, "Not Found"),
    ("unknown-docs-asset", "GET", "/docs/assets/no-such-file.js", 404, "Not Found"),
    ("encoded-traversal", "GET", "/static/..%2f..%2fpyproject.toml", 404, "Not Found"),
    ("redoc-is-off", "GET", "/redoc", 404, "Not Found"),
    ("limit-zero", "GET", "/items?limit=0", 422, "limit: Input should be greater than or equal to 1"),
    ("limit-negative", "GET", "/items?limit=-1", 422, "limit: Input should be greater than"),
    ("limit-too-large", "GET", "/items?limit=101", 422, "limit: Input should be less than or equal"),
    ("limit-word", "GET", "/items?limit=many", 422, "limit: Input should be a valid integer"),
    ("limit-float", "GET", "/items?limit=2.5", 422, "limit: Input should be a valid integer"),
    ("limit-huge", "GET", "/items?limit=99999999999999999999999", 422, "limit: "),
    ("query-too-long", "GET", "/items?q=" + "x" * (MAX_ID_LENGTH + 1), 422,
     "q: String should have at most"),
    ("n-zero-user", "GET", "/users/u1/recommendations?n=0", 422, "n: Input should be greater"),
    ("n-word-user", "GET", "/users/u1/recommendations?n=ten", 422, "n: Input should be a valid integer"),
    ("n-nul-user", "GET", "/users/u1/recommendations?n=%00", 422, "n: Input should be a valid integer"),
    ("n-too-large-user", "GET", "/users/u1/recommendations?n=1000", 422, "n: Input should be less"),
    # similar items
    ("similar-unknown-item", "GET", "/items/nope/similar", 404, "'nope' is not in this run's data"),
    ("similar-nul-item", "GET", "/items/%00/similar", 404, "is not in this run's data"),
    ("similar-surrogate-item", "GET", "/items/%ED%A0%80/similar", 404, "is not in this run's data"),
    ("similar-long-item", "GET", f"/items/{'7' * (MAX_ID_LENGTH + 1)}/similar", 422,
     "item_id: String should have at most"),
    ("similar-n-zero", "GET", "/items/100/similar?n=0", 422, "n: Input should be greater than or equal to 1"),
    ("similar-n-too-large", "GET", "/items/100/similar?n=101", 422, "n: Input should be less than or equal"),
    ("similar-n-word", "GET", "/items/100/similar?n=ten", 422, "n: Input should be a valid integer"),
    ("similar-n-float", "GET", "/items/100/similar?n=2.5", 422, "n: Input should be a valid integer"),
    ("similar-n-huge", "GET", "/items/100/similar?n=99999999999999999999999", 422, "n: "),
    ("post-similar", "POST", "/items/100/similar", 405, NOT_ALLOWED),
    # a known user's filters, in the query string
    ("user-exclude-long-id", "GET", f"/users/u1/recommendations?exclude=1,{'7' * (MAX_ID_LENGTH + 1)}",
     422, "exclude: id 2: an item id must have 1 to"),
    ("user-allow-huge", "GET", "/users/u1/recommendations?allow=" + ",".join(["1"] * (MAX_FILTER + 1)),
     422, f"allow: List should have at most {MAX_FILTER} items"),
    ("user-allow-repeated-long-id", "GET",
     f"/users/u1/recommendations?allow=100&allow=101,{'7' * (MAX_ID_LENGTH + 1)}", 422,
     "allow: id 3: an item id must have 1 to"),
    ("user-filter-unknown-user", "GET", "/users/nobody/recommendations?exclude=100", 404,
     "'nobody' is not in this run's data"),
    ("get-recommend", "GET", "/recommend", 405, NOT_ALLOWED),
    ("put-recommend", "PUT", "/recommend", 405, NOT_ALLOWED),
    ("delete-items", "DELETE", "/items", 405, NOT_ALLOWED),
    ("patch-health", "PATCH", "/health", 405, NOT_ALLOWED),
    ("post-health", "POST", "/health", 405, NOT_ALLOWED),
    ("post-user", "POST", "/users/u1/recommendations", 405, NOT_ALLOWED),
    ("put-page", "PUT", "/", 405, NOT_ALLOWED),
    ("delete-docs", "DELETE", "/docs", 405, NOT_ALLOWED),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    run = make_tiny_run(tmp_path_factory.mktemp("bad-http") / "run", epochs=2)
    with TestClient(create_app(run), raise_server_exceptions=False) as c:
        yield c


def _check(response, status: int, says: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert says in payload["error"], payload
    assert "\n" not in payload["error"] and "Traceback" not in response.text
    assert isinstance(payload["problems"], list)


@pytest.mark.parametrize(("body", "content_type", "status", "says"),
                         [case[1:] for case in BODIES], ids=[case[0] for case in BODIES])
def test_bad_bodies(client, body, content_type, status, says):
    headers = {"content-type": content_type} if content_type else {}
    _check(client.post("/recommend", content=body, headers=headers), status, says)


@pytest.mark.parametrize(("method", "url", "status", "says"),
                         [case[1:] for case in URLS], ids=[case[0] for case in URLS])
def test_bad_paths_queries_and_methods(client, method, url, status, says):
    _check(client.request(method, url), status, says)


def test_the_corpus_is_as_large_as_promised():
    assert len(BODIES) + len(URLS) >= 100
