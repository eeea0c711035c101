"""The HTTP service: answers with known content, errors that say what was wrong, batching."""

from __future__ import annotations

import asyncio
import json
import os
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
from aerec.models import Recommender
from aerec.runs import load_split, user_history
from aerec.serving import create_app
from aerec.serving.app import MAX_HISTORY, MAX_N
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
    history = user_history(split, user).matrix
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
    assert {"/health", "/recommend", "/users/{user_id}/recommendations", "/items"} <= set(paths)
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
    assert "no such run directory" in err and "Traceback" not in err


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
