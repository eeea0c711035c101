"""Batch export: ``aerec recommend RUN --all-users --out FILE`` and :mod:`aerec.export`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aerec.cli import main
from aerec.errors import ConfigError
from aerec.export import export_recommendations, split_users
from aerec.histories import known_user_history
from aerec.models import Recommender
from aerec.models.raw_ids import item_filter
from aerec.runs import load_split
from tiny_runs import make_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "run"
    make_tiny_run(path, model="mult-dae", epochs=3)
    return path


@pytest.fixture(scope="module")
def loaded(run):
    return Recommender.load(run / "model", device="cpu"), load_split(run / "split")


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"user": str, "item": str, "score": np.float32})
    return pd.read_parquet(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_of_every_user_equals_per_user_recommend(run, loaded, tmp_path, suffix, capsys):
    model, split = loaded
    out = tmp_path / f"recs{suffix}"
    assert main(["recommend", str(run), "--all-users", "-n", "5", "--out", str(out),
                 "--batch-size", "64", "--quiet"]) == 0
    assert "wrote 1500 rows for 300 users" in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any new file, not 0600
    frame = _read(out)
    assert frame.columns.tolist() == ["user", "rank", "item", "score"]
    assert len(frame) == 300 * 5 and frame["user"].nunique() == 300
    # training users first, then validation and test users, in the split's order
    expected_users = [*split.train.user_ids, *split.validation.fold_in.user_ids,
                      *split.test.fold_in.user_ids]
    assert frame["user"].tolist()[::5] == expected_users
    assert frame["rank"].tolist() == [1, 2, 3, 4, 5] * 300
    for user, rows in frame.groupby("user", sort=False):
        ids, scores = model.recommend(known_user_history(split, user), n=5)
        assert rows["item"].tolist() == model.item_ids_[ids[0]].tolist(), user
        # one row and a batch of 64 take different BLAS paths: equal to the last float32 bit or so
        np.testing.assert_allclose(rows["score"].to_numpy(), scores[0], rtol=1e-6)


def test_export_matches_the_cli_answer_for_single_users(run, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    assert main(["recommend", str(run), "--users", "test", "-n", "4", "--out", str(out),
                 "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 30 * 4
    frame = _read(out)
    for user in frame["user"].unique()[:3]:
        assert main(["recommend", str(run), "--user", user, "-n", "4", "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)["recommendations"]
        rows = frame[frame["user"] == user]
        assert rows["item"].tolist() == [r["item"] for r in answer]
        np.testing.assert_allclose(rows["score"], [r["score"] for r in answer], rtol=1e-6)


def test_user_sets_have_the_histories_of_known_user_history(loaded):
    _, split = loaded
    for which, part in (("train", split.train), ("validation", split.validation.fold_in),
                        ("test", split.test.fold_in)):
        users = split_users(split, which)
        assert users.user_ids.tolist() == part.user_ids.tolist()
        for k in (0, users.n_users - 1):
            expected = known_user_history(split, users.user_ids[k]).toarray()
            np.testing.assert_array_equal(users.matrix[k].toarray(), expected)
    assert split_users(split, "all").n_users == 300
    with pytest.raises(ConfigError, match="valid: all, train, validation, test"):
        split_users(split, "everyone")


def test_filters_in_the_cli_are_honoured_and_unknown_ids_reported(run, loaded, tmp_path, capsys):
    model, _ = loaded
    space = [str(100 + k) for k in range(20)]
    (tmp_path / "allow.txt").write_text("# space films only\n" + "\n".join(space) + "\nnope\n\n")
    (tmp_path / "exclude.txt").write_text("100\n101\ngone\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(run), "--all-users", "-n", "3", "--out", str(out), "--quiet",
                 "--allow-file", str(tmp_path / "allow.txt"),
                 "--exclude-file", str(tmp_path / "exclude.txt")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"aerec recommend: warning: --exclude-file {tmp_path / 'exclude.txt'}: ignored 1 id(s) "
        "the model does not know: gone",
        f"aerec recommend: warning: --allow-file {tmp_path / 'allow.txt'}: ignored 1 id(s) "
        "the model does not know: nope"]
    items = set(_read(out)["item"])
    assert items <= set(space) - {"100", "101"}
    assert main(["recommend", str(run), "--items", "102", "-n", "30", "--json",
                 "--allow-file", str(tmp_path / "allow.txt"),
                 "--exclude-file", str(tmp_path / "exclude.txt")]) == 0
    answer = [r["item"] for r in json.loads(capsys.readouterr().out)["recommendations"]]
    assert sorted(answer) == sorted(set(space) - {"100", "101", "102"})  # all that is left
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert main(["recommend", str(run), "--user", "u1", "--allow-file",
                 str(tmp_path / "empty.txt")]) == 2
    assert "holds no item ids" in capsys.readouterr().err


def test_a_short_allow_list_gives_fewer_rows_not_minus_infinity(loaded, tmp_path):
    model, split = loaded
    users = split_users(split, "test")
    summary = export_recommendations(model, users, tmp_path / "r.parquet", n=10,
                                     item_filter=item_filter(model.item_ids_, allow=["100", "120"]))
    frame = _read(tmp_path / "r.parquet")
    assert summary.rows == len(frame) and np.isfinite(frame["score"]).all()
    assert frame.groupby("user").size().max() <= 2 and set(frame["item"]) <= {"100", "120"}


@pytest.mark.parametrize("args, message", [
    (["--all-users"], "--out goes with --all-users or --users"),
    (["--user", "u1", "--out", "x.csv"], "--out goes with --all-users or --users"),
    (["--all-users", "--out", "recs.txt"], "cannot tell the format from the suffix"),
    (["--all-users", "--out", "recs.csv", "--batch-size", "0"], "batch_size must be a positive"),
])
def test_bad_options_are_one_line_errors(run, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["recommend", str(run), *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_is_one_line_exit_2_and_leaves_nothing(run, tmp_path):
    import subprocess

    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "recs.csv"
    r = subprocess.run([sys.executable, "-m", "aerec.cli", "recommend", str(run), "--all-users",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == (f"aerec recommend: error: --out {out}: {out.parent} is a file, "
                        "not a folder\n")  # found before the run is read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("stage", ["scoring", "writing"])
def test_a_failure_midway_leaves_no_partial_file(loaded, tmp_path, suffix, stage, monkeypatch):
    import aerec.export

    model, split = loaded
    out = tmp_path / f"recs{suffix}"
    out.write_text("the previous export")
    owner = type(model) if stage == "scoring" else aerec.export._Sink
    name = "recommend_filtered" if stage == "scoring" else "write"
    calls = []
    original = getattr(owner, name)

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError(f"{stage} failed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    with pytest.raises(RuntimeError, match=f"{stage} failed"):
        export_recommendations(model, split_users(split), out, n=5, batch_size=50)
    assert out.read_text() == "the previous export"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_parquet_without_pyarrow_is_a_clear_error(loaded, tmp_path, monkeypatch):
    model, split = loaded
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match=r"needs pyarrow: pip install 'aerec\[parquet\]'"):
        export_recommendations(model, split_users(split, "test"), tmp_path / "r.parquet")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arrow", [True, False])
def test_csv_quotes_only_ids_that_need_it_with_or_without_pyarrow(loaded, tmp_path, monkeypatch,
                                                                   arrow):
    import dataclasses

    model, split = loaded
    users = split_users(split, "test")
    odd = users.user_ids.astype(object)
    odd[0] = 'a,"b"'
    if not arrow:
        monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    for i, data in enumerate((users, dataclasses.replace(users, user_ids=odd.astype(str)))):
        out = tmp_path / f"r{i}.csv"
        export_recommendations(model, data, out, n=2, batch_size=10)
        lines = out.read_text().splitlines()
        assert lines[0] == "user,rank,item,score" and len(lines) == 1 + 30 * 2
        frame = _read(out)
        assert frame["user"].tolist() == np.repeat(data.user_ids, 2).tolist()
    assert lines[1].startswith('"a,""b""",1,')
    # Arrow quotes every string of the odd id's batch (user and item), pandas only that id
    assert lines[3].count('"') == (4 if arrow else 0) and '"' not in lines[-1]
