"""The HTTP service: answers with known content, errors that say what was wrong, batching."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.sparse as sp

with warnings.catch_warnings():  # starlette's notice that its test client will move to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

import aerec
from aerec.histories import known_user_history
from aerec.models import Recommender
from aerec.persistence import write_json
from aerec.runs import load_split, train_run
from aerec.serving import create_app
from aerec.serving.app import MAX_HISTORY, MAX_N, NOTHING_ALLOWED
from aerec.serving.batching import MicroBatcher

from tiny_runs import PER_GENRE, item_id, make_tiny_run

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("serving") / "run")


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir)) as c:
        yield c


@pytest.fixture(scope="module")
def model(run_dir) -> Recommender:
    return Recommender.load(run_dir / "model", device="cpu")


def space(*ks: int) -> list[str]:
    return [item_id(0, k) for k in ks]


def test_health_describes_the_model(client):
    assert client.get("/health").json() == {
        "status": "ok", "model": "mult-vae", "dataset": "tiny-genres", "n_items": 60,
        "n_users": 240, "version": aerec.__version__,
    }


def test_recommend_finds_the_rest_of_the_genre(client, model):
    history = space(0, 1, 2)
    body = client.post("/recommend", json={"items": history, "n": 10}).json()
    recs = body["recommendations"]
    assert body["unknown_items"] == []
    assert len(recs) == 10
    # A history of space films: the other space films (17 of them) fill the top 10.
    assert all(r["title"].startswith("Space Saga") for r in recs), [r["title"] for r in recs]
    assert not {r["item"] for r in recs} & set(history)
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    # The same answer as the model called directly.
    cols = [model.item_ids_.tolist().index(i) for i in history]
    row = sp.csr_matrix((np.ones(3, np.float32), (np.zeros(3, int), cols)), shape=(1, 60))
    ids, direct = model.recommend(row, n=10)
    assert [r["item"] for r in recs] == [str(model.item_ids_[i]) for i in ids[0]]
    np.testing.assert_allclose(scores, direct[0], rtol=1e-5)


def test_numbers_and_strings_name_the_same_items(client):
    as_text = client.post("/recommend", json={"items": ["100", "101"], "n": 5}).json()
    as_numbers = client.post("/recommend", json={"items": [100, 101], "n": 5}).json()
    assert as_text == as_numbers


def test_unknown_items_are_listed_once_in_order_not_dropped(client):
    body = client.post("/recommend", json={"items": ["nope", "100", "9999", "nope"], "n": 3}).json()
    assert body["unknown_items"] == ["nope", "9999"]
    assert len(body["recommendations"]) == 3
    assert "100" not in {r["item"] for r in body["recommendations"]}


def test_n_larger_than_the_unseen_items_returns_all_unseen(client):
    history = [item_id(g, k) for g in range(3) for k in range(PER_GENRE - 1)]  # 57 of 60 items
    recs = client.post("/recommend", json={"items": history, "n": MAX_N}).json()["recommendations"]
    assert sorted(r["item"] for r in recs) == sorted(item_id(g, PER_GENRE - 1) for g in range(3))


def test_user_recommendations_use_the_stored_history(client, model, run_dir):
    split = load_split(run_dir / "split")
    user = str(split.train.user_ids[0])
    history = known_user_history(split, user)
    body = client.get(f"/users/{user}/recommendations", params={"n": 4}).json()
    ids, scores = model.recommend(history, n=4)
    assert body["user"] == user and body["history_size"] == history.nnz
    assert [r["item"] for r in body["recommendations"]] == [str(model.item_ids_[i]) for i in ids[0]]
    np.testing.assert_allclose([r["score"] for r in body["recommendations"]], scores[0], rtol=1e-5)
    seen = {str(model.item_ids_[i]) for i in history.indices}
    assert not seen & {r["item"] for r in body["recommendations"]}


def test_unknown_user_is_a_404_that_says_so(client):
    response = client.get("/users/nobody/recommendations")
    assert response.status_code == 404
    assert "'nobody' is not in this run's data" in response.json()["error"]


def test_item_search_matches_every_word_most_popular_first(client, run_dir):
    items = client.get("/items", params={"q": "SAGA 1", "limit": 50}).json()["items"]
    # "Space Saga 1" and "Space Saga 10" .. "Space Saga 19"
    assert sorted(i["title"] for i in items) == sorted(
        ["Space Saga 1"] + [f"Space Saga {k}" for k in range(10, 20)])
    counts = [i["count"] for i in items]
    assert counts == sorted(counts, reverse=True)
    train = load_split(run_dir / "split").train
    column = train.item_index[items[0]["item"]]
    assert items[0]["count"] == int((train.matrix[:, column] != 0).sum())


def test_empty_search_lists_the_most_popular_items(client, run_dir):
    items = client.get("/items", params={"limit": 5}).json()["items"]
    train = load_split(run_dir / "split").train
    counts = np.bincount(train.matrix.indices, minlength=train.n_items)
    assert [i["count"] for i in items] == sorted(counts.tolist(), reverse=True)[:5]
    assert client.get("/items", params={"q": "no such film"}).json() == {"items": []}


def test_an_item_id_finds_that_item_first(client):
    items = client.get("/items", params={"q": "105", "limit": 3}).json()["items"]
    assert items == [{"item": "105", "title": "Space Saga 6", "count": items[0]["count"]}]


@pytest.mark.parametrize(("body", "status", "says"), [
    (b'{"items": ["1"', 400, "malformed JSON"),
    (b"[1, 2]", 422, "expected a JSON object"),
    (b"", 422, "expected a JSON object"),
    (b'{"n": 3}', 422, "items: Field required"),
    (b'{"items": "100"}', 422, "items: Input should be a valid list"),
    (b'{"items": [1.5]}', 422, "items.0: an item id must be a string or an integer"),
    (b'{"items": [true]}', 422, "items.0: an item id must be a string or an integer"),
    (b'{"items": [""]}', 422, "items.0: an item id must have 1 to"),
    (b'{"items": ["1"], "n": 0}', 422, "n: Input should be greater than or equal to 1"),
    (b'{"items": ["1"], "n": 101}', 422, "n: Input should be less than or equal to 100"),
    (b'{"items": ["1"], "n": "5"}', 422, "n: Input should be a valid integer"),
    (b'{"items": ["1"], "n": 2.5}', 422, "n: Input should be a valid integer"),
    (b'{"items": ["1"], "top": 5}', 422, "top: Extra inputs are not permitted"),
    (json.dumps({"items": ["1"] * (MAX_HISTORY + 1)}).encode(), 422,
     f"items: List should have at most {MAX_HISTORY} items"),
    (b'{"items": ["' + b"1" * 300_000 + b'"]}', 413, "request body larger than"),
])
def test_bad_recommend_requests_get_a_4xx_that_says_what_was_wrong(client, body, status, says):
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    payload = response.json()
    assert says in payload["error"], payload
    assert "Traceback" not in response.text


@pytest.mark.parametrize(("url", "says"), [
    ("/items?limit=0", "limit: Input should be greater than or equal to 1"),
    ("/items?limit=many", "limit: Input should be a valid integer"),
    ("/items?q=" + "x" * 201, "q: String should have at most 200 characters"),
    ("/users/u1/recommendations?n=-1", "n: Input should be greater than or equal to 1"),
])
def test_bad_queries_get_a_422(client, url, says):
    response = client.get(url)
    assert response.status_code == 422
    assert says in response.json()["error"]


def test_unknown_route_is_a_json_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404 and response.json()["error"] == "Not Found"


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/recommend", "/users/{user_id}/recommendations", "/items",
            "/items/{item_id}/similar"} <= set(paths)
    assert {"exclude", "allow"} <= {p["name"] for p in
                                     paths["/users/{user_id}/recommendations"]["get"]["parameters"]}
    assert "422" in paths["/recommend"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_demo_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js">' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_concurrent_requests_get_the_answers_of_single_requests(run_dir):
    app = create_app(run_dir, max_wait_ms=50)
    histories = [[item_id(g, k), item_id(g, k + 1)] for g in range(3) for k in range(0, 12, 2)]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            together = await asyncio.gather(
                *(c.post("/recommend", json={"items": h, "n": 5}) for h in histories))
            alone = [await c.post("/recommend", json={"items": h, "n": 5}) for h in histories]
        await app.state.batcher.close()
        return [r.json() for r in together], [r.json() for r in alone]

    together, alone = asyncio.run(main())
    for a, b in zip(together, alone):
        assert [r["item"] for r in a["recommendations"]] == [r["item"] for r in b["recommendations"]]
        np.testing.assert_allclose([r["score"] for r in a["recommendations"]],
                                   [r["score"] for r in b["recommendations"]], rtol=1e-5)
    batcher = app.state.batcher
    assert batcher.jobs == 2 * len(histories)
    assert batcher.batches < batcher.jobs  # the concurrent ones shared batches


# -- the micro-batcher on its own ----------------------------------------------------------------
def _echo_scorer(calls):
    def score(histories, n):
        calls.append(histories.shape[0])
        first = histories.indices[histories.indptr[:-1]].astype(np.int64)  # each row's first column
        ids = np.repeat(first[:, None], n, axis=1)
        return ids, ids.astype(np.float32)
    return score


def _row(col: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(1, np.float32), ([0], [col])), shape=(1, 10))


def test_batcher_sends_a_full_batch_at_once_and_routes_each_answer():
    calls: list[int] = []
    batcher = MicroBatcher(_echo_scorer(calls), max_batch=4, max_wait=60.0)

    async def main():
        answers = await asyncio.gather(*(batcher.submit(_row(c), n=1 + c % 3) for c in range(8)))
        await batcher.close()
        return answers

    answers = asyncio.run(main())  # would take two minutes if full batches waited
    assert calls == [4, 4]
    for c, (ids, scores) in enumerate(answers):
        assert ids.tolist() == [c] * (1 + c % 3) and scores.tolist() == [float(c)] * (1 + c % 3)


def test_batcher_without_wait_scores_a_lone_request_alone():
    calls: list[int] = []
    batcher = MicroBatcher(_echo_scorer(calls), max_batch=64, max_wait=0.0)

    async def main():
        ids, _ = await batcher.submit(_row(7), n=2)
        await batcher.close()
        return ids

    assert asyncio.run(main()).tolist() == [7, 7]
    assert calls == [1]


def test_batcher_passes_a_scoring_error_to_every_waiting_request():
    def broken(histories, n):
        raise RuntimeError("scorer failed")

    batcher = MicroBatcher(broken, max_batch=3, max_wait=60.0)

    async def main():
        results = await asyncio.gather(*(batcher.submit(_row(c), 1) for c in range(3)),
                                       return_exceptions=True)
        await batcher.close()
        return results

    assert [str(r) for r in asyncio.run(main())] == ["scorer failed"] * 3


def test_batcher_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda h, n: None, max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(lambda h, n: None, max_wait=-1)


# -- packaging: nothing at import, a clear message without the extra -----------------------------
def test_importing_the_package_starts_nothing():
    code = "import sys, aerec.serving; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_missing_extra_names_it(monkeypatch, run_dir):
    from aerec.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'aerec\[serve\]'"):
        create_app(run_dir)


def test_serve_command_refuses_a_missing_run(tmp_path, capsys):
    from aerec.cli import main

    assert main(["serve", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no such run or model directory" in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_answers_over_http(run_dir):
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aerec.cli", "serve", str(run_dir),
                             "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.2)
        assert health["model"] == "mult-vae"
        body = httpx.post(f"http://127.0.0.1:{port}/recommend",
                          json={"items": space(0, 1, 2), "n": 3}, timeout=10).json()
        assert all(r["title"].startswith("Space Saga") for r in body["recommendations"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- hardening: odd text, offline docs, headers -------------------------------------------------
def test_a_lone_surrogate_in_an_item_id_is_a_422_not_a_500(client):
    response = client.post("/recommend", content=b'{"items": ["\\ud800", "100"]}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "items.0: an item id must be valid Unicode text" in response.json()["error"]


def test_any_unicode_id_comes_back_unknown_and_intact(client):
    odd = ["\u00e9t\u00e9", "\U0001f3ac", "a\u0000b", "\u202eevil", "50:4:x", "50:4"]
    body = client.post("/recommend", json={"items": [*odd, "100"], "n": 2}).json()
    assert body["unknown_items"] == [*odd[:5], "50"]


@pytest.mark.parametrize("entry", ["100:nan", "100:Infinity", "100:1e999", "100:much"])
def test_a_rating_that_is_not_a_finite_number_is_a_422(client, entry):
    response = client.post("/recommend", json={"items": [entry], "n": 2})
    assert response.status_code == 422
    assert response.json()["error"].startswith(f"items: item '{entry}': the rating after ':'")


def test_a_rating_in_a_posted_history_is_used(client, model):
    # 5, not 1: an unrated item already counts 1 in an implicit history, so "100:1" would pass
    # even if the rating were dropped.
    rated = client.post("/recommend", json={"items": ["100:5", "101"], "n": 5}).json()
    plain = client.post("/recommend", json={"items": ["100", "101"], "n": 5}).json()
    cols = [model.item_ids_.tolist().index(i) for i in ("100", "101")]
    row = sp.csr_matrix((np.array([5, 1], np.float32), (np.zeros(2, int), cols)), shape=(1, 60))
    ids, scores = model.recommend(row, n=5)
    assert [r["item"] for r in rated["recommendations"]] == [str(model.item_ids_[i]) for i in ids[0]]
    assert [r["score"] for r in rated["recommendations"]] == pytest.approx(scores[0].tolist())
    assert [r["score"] for r in rated["recommendations"]] != [
        r["score"] for r in plain["recommendations"]]


def test_docs_are_served_from_local_files(client):
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "<script>" not in page.text  # no inline script: the page's CSP forbids it
    for url in urls:
        assert client.get(url).status_code == 200, url
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN page is off


def test_favicon_is_an_icon_not_a_404(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg")


@pytest.mark.parametrize("method, url", [
    ("GET", "/"), ("GET", "/health"), ("GET", "/docs"), ("GET", "/static/app.js"),
    ("GET", "/no/such/page"), ("POST", "/recommend"), ("GET", "/items?limit=0"),
    ("GET", "/items/100/similar"), ("GET", "/items/nope/similar"), ("GET", "/items/100/similar?n=0"),
])
def test_every_answer_has_the_security_headers(client, method, url):
    response = client.request(method, url)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_demo_page_policy_allows_its_own_files_only(client):
    policy = client.get("/").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["connect-src"] == "'self'"
    assert "unsafe" not in policy
    page = client.get("/").text
    assert "<script>" not in page and "style=" not in page  # nothing inline to allow
    api = client.get("/health").headers["content-security-policy"]
    assert api == "default-src 'none'; frame-ancestors 'none'"


def test_ml100k_fold_runs_keep_their_titles(shared_data_dir):
    from aerec.data.explicit_splits import canonical_fold
    from aerec.serving.catalog import Catalog

    split = canonical_fold(shared_data_dir / "ml-100k", "u1")
    counts = np.bincount(split.train.matrix.indices, minlength=split.train.n_items)
    catalog = Catalog(split.train.item_ids, split.train.item_titles, counts)
    found = [i["title"] for i in catalog.search("star", 20)]
    assert "Star Wars (1977)" in found


# -- similar items --------------------------------------------------------------------------------
def test_similar_items_of_a_space_film_are_space_films(client, model):
    body = client.get("/items/100/similar", params={"n": 10}).json()
    assert body["item"] == "100" and body["title"] == "Space Saga 1"
    assert body["definition"].startswith("Cosine between the items' vectors")
    similar = body["similar"]
    assert len(similar) == 10 and "100" not in {s["item"] for s in similar}
    space_films = [s for s in similar if s["title"].startswith("Space Saga")]
    assert len(space_films) >= 9, [s["title"] for s in similar]
    # the model's own answer, titles from the run's data
    direct = model.similar_items("100", n=10)
    assert [s["item"] for s in similar] == direct["similar_item"].tolist()
    np.testing.assert_allclose([s["score"] for s in similar], direct["score"], rtol=1e-6)
    assert all(s["title"] == f"Space Saga {int(s['item']) - 99}" for s in space_films)


def test_similar_items_of_an_unknown_item_are_a_404(client):
    response = client.get("/items/nope/similar")
    assert response.status_code == 404
    assert response.json()["error"].startswith("item 'nope' is not in this run's data")


def test_similar_n_beyond_the_items_gives_every_other_item(client):
    similar = client.get("/items/100/similar", params={"n": MAX_N}).json()["similar"]
    assert sorted(s["item"] for s in similar) == sorted(
        item_id(g, k) for g in range(3) for k in range(PER_GENRE) if (g, k) != (0, 0))


@pytest.fixture(scope="module")
def other_runs(run_dir, tmp_path_factory) -> dict[str, Path]:
    """Runs of the popularity baseline and a rating model on the tiny run's split."""
    runs = {}
    for name, params in (("popularity", {}), ("u-autorec", {"epochs": 2, "device": "cpu"})):
        dest = tmp_path_factory.mktemp(name) / "run"
        shutil.copytree(run_dir / "split", dest / "split")
        spec = json.loads((run_dir / "run.json").read_text())
        write_json(dest / "run.json", {**spec, "model": name, "params": params})
        train_run(dest)
        runs[name] = dest
    return runs


def test_popularity_falls_back_to_the_most_popular_other_items(other_runs, run_dir):
    with TestClient(create_app(other_runs["popularity"])) as c:
        body = c.get("/items/101/similar", params={"n": 5}).json()
    counts = np.bincount(load_split(run_dir / "split").train.matrix.indices, minlength=60)
    ids = load_split(run_dir / "split").train.item_ids
    expected = [(str(ids[k]), float(counts[k])) for k in np.argsort(-counts, kind="stable")
                if str(ids[k]) != "101"][:5]
    assert [(s["item"], s["score"]) for s in body["similar"]] == expected
    assert "most popular" in body["definition"]


def test_a_rating_model_refuses_similar_items_with_a_422(other_runs):
    with TestClient(create_app(other_runs["u-autorec"])) as c:
        response = c.get("/items/100/similar")
        assert response.status_code == 422
        assert response.json()["error"].startswith("u-autorec has no definition of similar items")
        assert c.post("/recommend", json={"items": ["100"], "n": 2}).status_code == 200


# -- business filters ------------------------------------------------------------------------------
def test_filters_are_honoured_exactly_and_match_python(client, model):
    history = space(0, 1, 2)
    allow = space(*range(5, 13)) + [item_id(1, 0)]
    exclude = space(6, 7) + [item_id(2, 0)]
    body = client.post("/recommend", json={"items": history, "n": MAX_N, "exclude": exclude,
                                           "allow": allow}).json()
    got = [r["item"] for r in body["recommendations"]]
    assert sorted(got) == sorted(set(allow) - set(exclude))  # every allowed item, nothing else
    direct = model.recommend_items(history, n=MAX_N, exclude=exclude, allow=allow)
    assert got == direct["item"].tolist()
    np.testing.assert_allclose([r["score"] for r in body["recommendations"]], direct["score"],
                               rtol=1e-5)
    assert body["unknown_exclude"] == body["unknown_allow"] == [] and body["note"] == ""


def test_the_history_is_excluded_even_when_allowed(client):
    body = client.post("/recommend", json={"items": space(0, 1), "n": 5,
                                           "allow": space(0, 1, 2)}).json()
    assert [r["item"] for r in body["recommendations"]] == space(2)


def test_unknown_filter_ids_are_reported_once_in_order(client):
    body = client.post("/recommend", json={
        "items": space(0), "n": 3, "exclude": ["zz", 101, "zz", "x:1"],
        "allow": ["yy", *space(1, 2, 3, 4), "yy", 7]}).json()
    assert body["unknown_exclude"] == ["zz", "x:1"] and body["unknown_allow"] == ["yy", "7"]
    assert [r["item"] for r in body["recommendations"]] != []
    assert {r["item"] for r in body["recommendations"]} <= set(space(2, 3, 4))


@pytest.mark.parametrize("allow", [[], ["nope", "never"]])
def test_an_allow_list_without_a_known_item_gives_an_empty_answer_that_says_why(client, allow):
    response = client.post("/recommend", json={"items": space(0), "n": 5, "allow": allow,
                                               "exclude": ["gone"]})
    assert response.status_code == 200
    assert response.json() == {"recommendations": [], "unknown_items": [], "note": NOTHING_ALLOWED,
                               "unknown_exclude": ["gone"], "unknown_allow": allow,
                               "fallback": None}


def test_user_filters_come_as_query_parameters(client, model, run_dir):
    split = load_split(run_dir / "split")
    user = str(split.train.user_ids[0])  # u0: a space-films user
    history = known_user_history(split, user)
    unseen = [str(model.item_ids_[c]) for c in range(60) if c not in set(history.indices)]
    allow, exclude = unseen[:6], unseen[1:3]
    url = f"/users/{user}/recommendations"
    commas = client.get(url, params={"n": 10, "allow": ",".join(allow + ["qq"]),
                                     "exclude": ",".join(exclude)}).json()
    repeated = client.get(url, params=[("n", 10), *(("allow", a) for a in allow + ["qq"]),
                                       *(("exclude", e) for e in exclude)]).json()
    assert commas == repeated
    direct = model.recommend_items(
        [str(model.item_ids_[c]) for c in history.indices], n=10, exclude=exclude, allow=allow)
    assert [r["item"] for r in commas["recommendations"]] == direct["item"].tolist()
    assert commas["unknown_allow"] == ["qq"] and commas["note"] == ""
    nothing = client.get(url, params={"allow": ""}).json()
    assert nothing["recommendations"] == [] and nothing["note"] == NOTHING_ALLOWED


def test_concurrent_filtered_requests_keep_their_own_filters(run_dir):
    app = create_app(run_dir, max_wait_ms=50)
    requests = [{"items": space(k), "n": 4} for k in range(4)]
    requests += [{"items": space(k), "n": 4, "allow": space(k + 1, k + 2, k + 3)} for k in range(4)]
    requests += [{"items": space(k), "n": 4, "exclude": space(*range(k + 1, 12))} for k in range(4)]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            together = await asyncio.gather(*(c.post("/recommend", json=r) for r in requests))
            alone = [await c.post("/recommend", json=r) for r in requests]
        await app.state.batcher.close()
        return [r.json() for r in together], [r.json() for r in alone]

    together, alone = asyncio.run(main())
    for request, a, b in zip(requests, together, alone):
        items = [r["item"] for r in a["recommendations"]]
        assert items == [r["item"] for r in b["recommendations"]]
        if "allow" in request:
            assert sorted(items) == sorted(request["allow"])
        assert not set(items) & set(request.get("exclude", []))
    assert app.state.batcher.batches < app.state.batcher.jobs


def test_batcher_passes_masks_only_when_a_request_has_one():
    seen: list[object] = []

    def score(histories, n, blocked=None):
        seen.append(None if blocked is None else blocked.tolist())
        ids = np.zeros((histories.shape[0], n), np.int64)
        return ids, ids.astype(np.float32)

    batcher = MicroBatcher(score, max_batch=2, max_wait=60.0)
    mask = np.array([True] + [False] * 9)

    async def main():
        await asyncio.gather(batcher.submit(_row(1), 1), batcher.submit(_row(2), 1))
        await asyncio.gather(batcher.submit(_row(1), 1), batcher.submit(_row(2), 1, mask))
        await batcher.close()

    asyncio.run(main())
    assert seen == [None, [[False] * 10, mask.tolist()]]


def test_an_unexpected_error_is_a_json_500_with_the_security_headers(run_dir):
    # Starlette answers an unhandled exception from its outermost layer, outside the middleware
    # that adds the headers to every other answer: the handler must add them itself.
    app = create_app(run_dir)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (RuntimeError)", "problems": []}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "traceback" not in response.text.lower() and "a bug" not in response.text
