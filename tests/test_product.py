"""Python and the CLI as one product, and real shop exports (issue 23, parts 4 and 6).

A model saved from Python is opened by ``recommend``, ``similar``, ``serve`` and ``export``; an
empty or all-unknown history has one answer in Python, the CLI and HTTP; ``get_params`` /
``set_params`` follow scikit-learn; ``fit`` shows progress where someone watches; a shop's
export (ISO date-times, ``customer_id`` / ``product_id``, an items table, repeated pairs) trains;
and every file written is readable under the user's umask.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aerec.cli import main
from aerec.config import config_to_dict
from aerec.data.interactions import Interactions
from aerec.data.readers import read_table
from aerec.errors import ConfigError, DataError, EmptyHistoryError, ParseError
from aerec.models import REGISTRY, MultDAE, Recommender

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

N_ITEMS = 60


def sku(k: int) -> str:
    return f"SKU-{k:05d}"


def orders(n_customers: int = 240, seed: int = 0) -> pd.DataFrame:
    """Customers who buy mostly within one of three groups of 20 products; every 10th customer
    has only 2 purchases. String ids, ISO date-times as a shop writes them."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2026-01-01 00:00:00")
    for c in range(n_customers):
        size = 2 if c % 10 == 0 else int(rng.integers(6, 12))
        group = c % 3
        for k in rng.choice(20, size=size, replace=False):
            when = start + pd.Timedelta(seconds=int(rng.integers(0, 10**7)))
            rows.append((f"C{c:05d}", sku(20 * group + int(k)), when.strftime("%Y-%m-%d %H:%M:%S")))
    return pd.DataFrame(rows, columns=["customer_id", "product_id", "purchased_at"])


def items_table() -> pd.DataFrame:
    kinds = ("Green tea", "Fountain pen", "Wool sock")
    return pd.DataFrame({"product_id": [sku(k) for k in range(N_ITEMS)],
                         "name": [f"{kinds[k // 20]} {k % 20 + 1}" for k in range(N_ITEMS)],
                         "price": np.arange(N_ITEMS) * 1.5})


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saved_dae(tmp_path_factory) -> tuple[MultDAE, Path]:
    """A MultDAE fitted from a DataFrame with string ids and saved with model.save."""
    import torch

    torch.set_num_threads(1)
    model = MultDAE(epochs=3, seed=1).fit(orders()[["customer_id", "product_id"]], progress=False)
    path = tmp_path_factory.mktemp("model") / "M"
    model.save(path)
    return model, path


# -- a model directory is served ------------------------------------------------------------------
def test_a_model_saved_from_python_recommends_from_the_cli(saved_dae, capsys):
    model, path = saved_dae
    code, out, err = run_cli(capsys, "recommend", path, "--items", f"{sku(1)},{sku(2)}", "-n", 5,
                             "--json")
    assert code == 0, err
    answer = json.loads(out)
    expected = model.recommend_items([sku(1), sku(2)], n=5)
    assert [r["item"] for r in answer["recommendations"]] == expected["item"].tolist()
    assert [r["score"] for r in answer["recommendations"]] == pytest.approx(
        expected["score"].tolist(), rel=1e-5)
    assert all(r["item"].startswith("SKU-") for r in answer["recommendations"])
    assert answer["fallback"] is None and answer["unknown_items"] == []
    # the text form names the raw ids too
    code, out, _ = run_cli(capsys, "recommend", path, "--items", f"{sku(1)},{sku(2)}", "-n", 5)
    assert code == 0 and expected["item"].iloc[0] in out


def test_a_model_saved_from_python_finds_similar_items(saved_dae, capsys):
    model, path = saved_dae
    code, out, err = run_cli(capsys, "similar", path, "--item", sku(1), "-n", 4, "--json")
    assert code == 0, err
    similar = json.loads(out)["items"][0]["similar"]
    expected = model.similar_items([sku(1)], n=4)
    assert [s["similar_item"] for s in similar] == expected["similar_item"].tolist()
    assert sku(1) not in {s["similar_item"] for s in similar}


@pytest.mark.parametrize("who", [["--user", "C00001"], ["--all-users", "--out", "x.csv"],
                                 ["--users", "test", "--out", "x.csv"]])
def test_a_model_directory_says_that_users_need_a_run(saved_dae, capsys, who):
    _, path = saved_dae
    code, _, err = run_cli(capsys, "recommend", path, *who)
    assert code == 2 and err.count("\n") == 1
    assert "is a model directory (model.save): it keeps no users" in err
    assert "needs a run directory" in err and "--items" in err


def test_a_folder_that_is_neither_a_run_nor_a_model_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "similar", tmp_path, "--item", "1")
    assert code == 2 and err.count("\n") == 1
    assert "neither a run directory (run.json" in err and "model directory (model.json" in err


def test_a_model_directory_exports_to_onnx(saved_dae, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    _, path = saved_dae
    code, out, err = run_cli(capsys, "export", path, "--out", tmp_path / "m.onnx")
    assert code == 0, err
    assert (tmp_path / "m.onnx").stat().st_size > 1000 and "mult-dae" in out


@pytest.fixture(scope="module")
def model_client(saved_dae):
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    from aerec.serving import create_app

    with TestClient(create_app(saved_dae[1])) as client:
        yield client


def test_a_model_directory_is_served(saved_dae, model_client):
    model, path = saved_dae
    health = model_client.get("/health").json()
    assert health["n_users"] == 0 and health["n_items"] == N_ITEMS
    assert health["dataset"] == f"{path.name} (model directory)"
    body = model_client.post("/recommend", json={"items": [sku(1), sku(2)], "n": 5}).json()
    assert [r["item"] for r in body["recommendations"]] == \
        model.recommend_items([sku(1), sku(2)], n=5)["item"].tolist()
    user = model_client.get("/users/C00001/recommendations")
    assert user.status_code == 404 and "model directory, which keeps no users" in user.json()["error"]
    # the search orders by the counts the model saved: the most bought product first
    first = model_client.get("/items", params={"limit": 1}).json()["items"][0]
    assert first["item"] == sku(int(np.argmax(model.item_counts_)))
    assert first["count"] == int(model.item_counts_.max())


# -- an empty or all-unknown history: one answer everywhere ---------------------------------------
def _popular(model: Recommender, n: int) -> list[str]:
    order = np.argsort(-np.asarray(model.item_counts_), kind="stable")[:n]
    return [str(model.item_ids_[k]) for k in order]


def test_item_counts_are_the_training_users_per_item_and_are_saved(saved_dae):
    model, path = saved_dae
    data = Interactions.from_pandas(orders()[["customer_id", "product_id"]])
    np.testing.assert_array_equal(model.item_counts_, np.diff(data.matrix.tocsc().indptr))
    np.testing.assert_array_equal(Recommender.load(path).item_counts_, model.item_counts_)


@pytest.mark.parametrize("history", [[], ["nope", "gone"]])
def test_python_refuses_a_history_with_no_known_item_unless_asked(saved_dae, history):
    model, _ = saved_dae
    with pytest.raises(EmptyHistoryError, match='fallback="popularity" recommends the most'):
        model.recommend_items(history, n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = model.recommend_items(history, n=3, fallback="popularity")
    assert frame["item"].tolist() == _popular(model, 3)
    assert frame["score"].tolist() == sorted(model.item_counts_.tolist(), reverse=True)[:3]
    assert frame.attrs["fallback"] == "popularity"
    assert model.recommend_items([sku(1)], n=3, fallback="popularity").attrs["fallback"] is None
    with pytest.raises(ConfigError, match="fallback must be None or one of popularity"):
        model.recommend_items([sku(1)], n=3, fallback="random")


def test_the_popularity_fallback_keeps_the_filters(saved_dae):
    model, _ = saved_dae
    top = _popular(model, 2)
    frame = model.recommend_items([], n=2, fallback="popularity", exclude=[top[0]])
    assert frame["item"].tolist()[0] == top[1]


def test_the_cli_refuses_a_history_with_no_known_item_unless_asked(saved_dae, capsys):
    model, path = saved_dae
    code, out, err = run_cli(capsys, "recommend", path, "--items", "nope,gone")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no id of the history is a known item of the model (unknown: nope, gone)" in err
    assert "--fallback popularity recommends the most popular items instead" in err
    code, out, err = run_cli(capsys, "recommend", path, "--items", "nope", "-n", 3,
                             "--fallback", "popularity", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["fallback"] == "popularity"
    assert [r["item"] for r in answer["recommendations"]] == _popular(model, 3)
    code, out, _ = run_cli(capsys, "recommend", path, "--items", "nope", "-n", 3,
                           "--fallback", "popularity")
    assert "the most popular items instead (--fallback popularity" in out


def test_http_refuses_a_history_with_no_known_item_unless_asked(saved_dae, model_client):
    model, _ = saved_dae
    for items in ([], ["nope"]):
        response = model_client.post("/recommend", json={"items": items, "n": 3})
        assert response.status_code == 422
        assert '"fallback": "popularity" recommends the most popular' in response.json()["error"]
    body = model_client.post("/recommend", json={"items": ["nope"], "n": 3,
                                                 "fallback": "popularity"}).json()
    assert body["fallback"] == "popularity" and body["unknown_items"] == ["nope"]
    assert [r["item"] for r in body["recommendations"]] == _popular(model, 3)
    bad = model_client.post("/recommend", json={"items": ["nope"], "fallback": "random"})
    assert bad.status_code == 422 and "fallback" in bad.json()["error"]


def test_the_cli_knows_the_fallbacks_of_the_models():
    from aerec.cli import recommend
    from aerec.models import raw_ids

    assert recommend.FALLBACKS == raw_ids.FALLBACKS


# -- scikit-learn's parameter protocol ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_get_params_and_set_params_follow_scikit_learn(name):
    cls = REGISTRY[name]
    model = cls()
    params = model.get_params(deep=False)
    assert params == model.get_params() == model.get_params(deep=True)
    # what sklearn.base.clone does: rebuild from the parameters, which must come back as given
    twin = cls(**params)
    assert all(twin.get_params(deep=False)[k] is v for k, v in params.items())
    assert config_to_dict(twin.config) == config_to_dict(model.config)


def test_set_params_returns_the_model_and_checks_like_the_constructor():
    model = MultDAE(epochs=5)
    assert model.set_params(epochs=7, lr=0.01) is model
    assert model.get_params()["epochs"] == 7 and model.get_params()["lr"] == 0.01
    assert model.set_params(hidden="300,100").get_params()["hidden"] == (300, 100)
    with pytest.raises(ConfigError, match="unknown hyperparameter.*epoch\\b.*valid names"):
        model.set_params(epoch=3)
    with pytest.raises(ConfigError, match="lr must be positive"):
        model.set_params(lr=-1.0)
    assert model.get_params()["lr"] == 0.01  # unchanged by the refused call


def test_sklearn_clone_copies_the_parameters_not_the_fit(saved_dae):
    clone = pytest.importorskip("sklearn.base").clone
    model, _ = saved_dae
    copy = clone(model)
    assert type(copy) is MultDAE and copy.get_params() == model.get_params()
    assert not hasattr(copy, "n_items_")
    for cls in REGISTRY.values():
        assert clone(cls()).get_params() == cls().get_params()


# -- progress where someone watches -------------------------------------------------------------
def _fit_stderr(capsys, **kwargs) -> str:
    data = Interactions.from_pandas(orders(60)[["customer_id", "product_id"]])
    MultDAE(epochs=2, batch_size=30).fit(data, **kwargs)
    return capsys.readouterr().err


def test_fit_shows_progress_when_watched_and_never_when_told(capsys, monkeypatch):
    import aerec.terminal

    monkeypatch.setattr(aerec.terminal, "interactive", lambda: False)
    assert "epoch" not in _fit_stderr(capsys)  # redirected stderr: no bar
    assert "2/2" in _fit_stderr(capsys, progress=True)
    monkeypatch.setattr(aerec.terminal, "interactive", lambda: True)
    assert "2/2" in _fit_stderr(capsys)
    assert _fit_stderr(capsys, progress=False) == ""


def test_interactive_means_a_terminal_or_a_notebook(monkeypatch):
    from aerec.terminal import interactive

    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert interactive()
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not interactive()
    notebook = types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "IPython", notebook)
    assert interactive()
    terminal_shell = types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "IPython", terminal_shell)
    assert not interactive()


# -- files readable under the umask ---------------------------------------------------------------
@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_of_the_umask(tmp_path, umask, mask, mode):
    import scipy.sparse as sp
    import torch

    from aerec.persistence import atomic_write_bytes, save_csr, save_state, write_json

    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    save_state(tmp_path / "c.safetensors", {"w": torch.zeros(2)})
    save_csr(tmp_path / "d.npz", sp.csr_matrix(np.eye(2, dtype=np.float32)))
    for name in ("a.json", "b.bin", "c.safetensors", "d.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


# -- a shop's export ------------------------------------------------------------------------------
def test_iso_date_times_in_a_csv_are_read_as_in_parquet(tmp_path):
    times = ["2026-01-01 00:09:19", "2026-01-01T00:09:19Z", "2026-01-01T02:09:19+02:00",
             "2026-01-02"]
    frame = pd.DataFrame({"user": ["a", "b", "c", "d"], "item": ["x", "x", "y", "y"],
                          "timestamp": times})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    expected = [1767226159, 1767226159, 1767226159, 1767312000]
    for name in ("t.csv", "t.tsv"):
        assert read_table(tmp_path / name).timestamps.tolist() == expected
    assert Interactions.from_pandas(frame).timestamps.tolist() == expected
    pytest.importorskip("pyarrow")
    as_dates = frame.assign(timestamp=pd.to_datetime(
        ["2026-01-01 00:09:19", "2026-01-01 00:09:19", "2026-01-01 00:09:19", "2026-01-02"],
        format="ISO8601"))
    as_dates.to_parquet(tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet").timestamps.tolist() == expected


def test_integer_timestamps_of_a_table_still_read_as_seconds(tmp_path):
    (tmp_path / "t.csv").write_text("user,item,timestamp\na,x,5\nb,y,4.0\n")
    assert read_table(tmp_path / "t.csv").timestamps.tolist() == [5, 4]


@pytest.mark.parametrize("bad, line, message", [
    ("yesterday", 3, "timestamp 'yesterday' is neither an integer nor an ISO 8601 date-time"),
    ("2026-01-01 25:99", 3, "timestamp '2026-01-01 25:99' in row 2 is not a valid ISO 8601"),
    ("7", 3, "timestamp '7' in row 2 is neither an integer nor an ISO 8601"),
])
def test_a_bad_date_time_names_its_line_or_row(tmp_path, bad, line, message):
    (tmp_path / "t.csv").write_text(f"user,item,timestamp\na,x,2026-01-01\nb,y,{bad}\n")
    with pytest.raises(ParseError, match=message) as info:
        read_table(tmp_path / "t.csv")
    if "row" not in message:
        assert info.value.line == line and info.value.field == "timestamp"


def test_shop_column_names_are_found(tmp_path):
    frame = pd.DataFrame({"Customer_ID": ["c1", "c1", "c2"], "SKU": ["p1", "p2", "p1"],
                          "order_date": ["2026-01-01", "2026-01-02", "2026-01-03"],
                          "qty": [2, 1, 3]})
    frame.to_csv(tmp_path / "o.csv", index=False)
    for data in (read_table(tmp_path / "o.csv"), Interactions.from_pandas(frame)):
        assert data.user_ids.tolist() == ["c1", "c2"] and data.item_ids.tolist() == ["p1", "p2"]
        assert not data.explicit  # quantities are the values of implicit data
        assert data.matrix.toarray().tolist() == [[2, 1], [3, 0]]
        assert data.timestamps.tolist()[0] == 1767225600


@pytest.mark.parametrize("columns", [("client_id", "article_id", "created_at"),
                                     ("customer", "product", "purchased_at")])
def test_more_shop_column_names_are_found(columns):
    frame = pd.DataFrame({columns[0]: ["c1"], columns[1]: ["p1"], columns[2]: ["2026-01-01"]})
    data = Interactions.from_pandas(frame)
    assert data.user_ids.tolist() == ["c1"] and data.timestamps.tolist() == [1767225600]


def test_a_quantity_is_not_looked_for_beside_a_rating():
    frame = pd.DataFrame({"user": ["a"], "item": ["x"], "rating": [4.0], "quantity": [3]})
    data = Interactions.from_pandas(frame)
    assert data.explicit and data.matrix.toarray().tolist() == [[4.0]]
    with pytest.raises(DataError, match="name a rating or a quantity, not both"):
        Interactions.from_pandas(frame, rating="rating", quantity="quantity")


def test_a_negative_quantity_names_its_line(tmp_path):
    (tmp_path / "o.csv").write_text("user,item,quantity\na,x,1\nb,y,-2\n")
    with pytest.raises(ParseError, match="quantity -2 is negative") as info:
        read_table(tmp_path / "o.csv")
    assert info.value.line == 3


@pytest.mark.parametrize("policy, value", [("last", 1.0), ("sum", 6.0), ("max", 3.0)])
def test_duplicates_of_a_table_follow_the_policy(tmp_path, policy, value):
    (tmp_path / "o.csv").write_text("user,item,quantity,ts\na,x,2,1\na,x,3,2\na,x,1,3\n")
    data = read_table(tmp_path / "o.csv", duplicates=policy)
    assert data.matrix.toarray().tolist() == [[value]] and data.timestamps.tolist() == [3]


def test_duplicates_error_names_the_file(tmp_path):
    (tmp_path / "o.csv").write_text("user,item\na,x\na,x\n")
    with pytest.raises(DataError, match=r"o\.csv: the \(user, item\) pair \('a', 'x'\) occurs"):
        read_table(tmp_path / "o.csv", duplicates="error")


def test_an_items_table_names_the_items(tmp_path):
    from aerec.data.item_table import read_item_table

    items_table().to_csv(tmp_path / "items.csv", index=False)
    names = read_item_table(tmp_path / "items.csv")
    assert names[sku(0)] == "Green tea 1" and names[sku(59)] == "Wool sock 20"
    data = Interactions.from_pandas(orders()[["customer_id", "product_id"]], items=items_table())
    assert data.item_titles[sku(21)] == "Fountain pen 2"
    assert set(data.item_titles) == set(data.item_ids.tolist())


@pytest.mark.parametrize("text, message", [
    ("product_id,price\nSKU-1,3\n", "no item name column: call it one of name, title"),
    ("colour,name\nred,Tea\n", "no item id column"),
    ("sku,name\nSKU-1,Tea\nSKU-2,Pen\nSKU-1,Cup\n", r"line 4, field 'sku': item 'SKU-1' is "
                                                     r"listed twice \(first on line 2\)"),
])
def test_a_bad_items_table_is_one_line(tmp_path, text, message):
    from aerec.data.item_table import read_item_table

    (tmp_path / "items.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_item_table(tmp_path / "items.csv")


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory) -> Path:
    """``aerec train --data orders.csv --item-table items.csv --model ease --out R`` under
    umask 022, with repeated purchases summed."""
    folder = tmp_path_factory.mktemp("shop")
    frame = orders()
    pd.concat([frame, frame.iloc[:5]]).to_csv(folder / "orders.csv", index=False)
    items_table().to_csv(folder / "items.csv", index=False)
    old = os.umask(0o022)
    try:
        code = main(["train", "--data", str(folder / "orders.csv"), "--item-table",
                     str(folder / "items.csv"), "--duplicates", "sum", "--model", "ease",
                     "--out", str(folder / "R")])
    finally:
        os.umask(old)
    assert code == 0
    return folder / "R"


def test_a_shop_export_trains_and_recommends_by_name(shop_run, capsys):
    capsys.readouterr()
    # C00001 has at least 5 purchases, C00010 only 2: both are recommended for, by name
    for customer in ("C00001", "C00010"):
        code, out, err = run_cli(capsys, "recommend", shop_run, "--user", customer, "-n", 5)
        assert code == 0, err
        names = [line.split(None, 3)[3] for line in out.splitlines()[1:]]
        assert len(names) == 5 and all(n.startswith("Fountain pen") for n in names), out
    spec = json.loads((shop_run / "run.json").read_text())
    assert spec["data"]["duplicates"] == "sum"
    assert spec["data"]["item_table"].endswith("items.csv")


def test_every_file_of_a_run_is_readable_by_others(shop_run):
    files = [p for p in shop_run.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


def test_a_shop_run_serves_item_names(shop_run):
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    from aerec.serving import create_app

    with TestClient(create_app(shop_run)) as client:
        body = client.post("/recommend", json={"items": [sku(40), sku(41)], "n": 3}).json()
        assert all(r["title"].startswith("Wool sock") for r in body["recommendations"]), body
        found = client.get("/items", params={"q": "green tea 3"}).json()["items"]
        assert found[0]["item"] == sku(2)


def test_duplicates_go_with_files_not_data_sets(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", "ml-100k", "--duplicates", "sum",
                           "--model", "ease", "--out", tmp_path / "R")
    assert code == 2 and "--duplicates applies to files of interactions" in err
    assert not (tmp_path / "R" / "run.json").exists()


def test_a_date_time_after_integer_timestamps_names_its_line(tmp_path):
    (tmp_path / "t.csv").write_text("user,item,timestamp\na,x,5\nb,y,2026-01-01\n")
    with pytest.raises(ParseError, match="timestamp '2026-01-01' is not an integer") as info:
        read_table(tmp_path / "t.csv")
    assert info.value.line == 3


@pytest.mark.parametrize("counts, message", [([1, 2], "must be a list of 60 counts"),
                                             ([-1] * N_ITEMS, "must hold non-negative integers")])
def test_damaged_item_counts_in_model_json_are_one_line(saved_dae, tmp_path, counts, message):
    import shutil

    _, path = saved_dae
    copy = tmp_path / "M"
    shutil.copytree(path, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["item_counts"] = counts
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"field 'item_counts': {message}"):
        Recommender.load(copy)
