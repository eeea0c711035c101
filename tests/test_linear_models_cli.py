"""SANSA and ELSA through the run layer, the CLI and the HTTP service, as every model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aerec.cli import main
from aerec.models import Recommender
from aerec.run_dir import RunDir
from tiny_runs import PER_GENRE, item_id, make_tiny_run

PARAMS = {"sansa": {"lam": 10.0, "density": 0.2}, "elsa": {"rank": 8, "epochs": 5, "device": "cpu"}}


@pytest.fixture(scope="module", params=sorted(PARAMS))
def run(request, tmp_path_factory):
    name = request.param
    return make_tiny_run(tmp_path_factory.mktemp(name) / "run", model=name, params=PARAMS[name])


def test_the_resolved_size_follows_the_runs_training_data(run):
    # what aerec.runs.new_run writes into run.json as "resolved"
    from aerec.models import get_model_class
    from aerec.runs import load_split

    spec = RunDir(run).read_spec()
    train = load_split(run / "split").train
    resolved = get_model_class(spec["model"])(**spec["params"]).resolved_for(train)
    if spec["model"] == "sansa":
        assert resolved == {"density": 0.2, "per_item": 12, "exact": True}
    else:
        assert resolved == {"rank": 8, "batch_size": 128}


def test_a_genre_history_gets_the_genre(run):
    model = Recommender.load(run / "model", device="cpu")
    recs = model.recommend_items([item_id(0, k) for k in range(4)], n=5)
    genre = {item_id(0, k) for k in range(PER_GENRE)}
    assert set(recs["item"]) <= genre, recs


def test_all_users_export_and_similar(run, tmp_path, capsys):
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(run), "--all-users", "-n", "3", "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out, dtype={"user": str, "item": str})
    assert len(frame) == 300 * 3 and frame["user"].nunique() == 300
    capsys.readouterr()
    assert main(["similar", str(run), "--item", item_id(0, 0), "-n", "3", "--json"]) == 0
    similar = json.loads(capsys.readouterr().out)["items"][0]["similar"]
    assert len(similar) == 3 and item_id(0, 0) not in [s["similar_item"] for s in similar]


def test_served_recommendations_equal_the_model(run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aerec.serving import create_app

    history = [item_id(1, k) for k in range(3)]
    with TestClient(create_app(run)) as client:
        body = client.post("/recommend", json={"items": history, "n": 4}).json()
        bad = client.post("/recommend", json={"items": "not a list", "n": 4})
    model = Recommender.load(run / "model", device="cpu")
    expected = model.recommend_items(history, n=4)["item"].tolist()
    assert [r["item"] for r in body["recommendations"]] == expected
    assert bad.status_code == 422
