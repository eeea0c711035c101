"""Issue 24's corpus, command line and Python: nothing lost, no wrong answer at the edges.

One table of cases per class of the issue (1: never destroy a user's file; 2: no wrong answer at
the edges; 4: every input error is one line, exit 2, in bounded memory; 5: service hygiene; 6: no
silent mistake, no misleading message). A refusal must be exit status 2 and one line on stderr
naming what is at fault, with no traceback; an accepted edge must give the right answer.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aerec.cli import main
from aerec.errors import ConfigError, DataError

from tiny_runs import UNTRAINED_ITEM, make_edge_run, write_fake_ml100k

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_run(tmp_path_factory) -> Path:
    """EASE on a given split whose test file names an item no training line holds."""
    return make_edge_run(tmp_path_factory.mktemp("edge") / "run")


@pytest.fixture(scope="module")
def rating_run(tmp_path_factory) -> Path:
    """A deep autoencoder on ratings 1 to 5, on the same kind of split."""
    return make_edge_run(tmp_path_factory.mktemp("edge-ratings") / "run", ratings=True)


@pytest.fixture
def run(edge_run, tmp_path) -> Path:
    return Path(shutil.copytree(edge_run, tmp_path / "run"))


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, *names: str) -> str:
    """Exit status 2, one line on stderr, no traceback, each of ``names`` in it."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and code == 2, (code, err)
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _a_user_with_test_rows(run: Path) -> tuple[str, set[str]]:
    """A user of the run with test targets, and every item the run holds for them."""
    from aerec.runs import load_split

    split = load_split(run / "split")
    targets = split.test.targets
    row = int(np.flatnonzero(np.diff(targets.matrix.indptr) > 0)[0])
    user = str(targets.user_ids[row])
    items = set()
    for part in (split.train, split.validation.fold_in, split.validation.targets,
                 split.test.fold_in, targets):
        if user in part.user_index:
            r = part.user_index[user]
            items |= {str(part.item_ids[c]) for c in part.matrix[r].indices}
    return user, items


# == class 1: never destroy a user's file =========================================================
def _existing(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_text("user,item\nmine,mine\n")
    path.chmod(0o644)
    return path


CLASS_1 = {
    "recommend --out existing.csv": lambda run, tmp: (
        ["recommend", run, "--all-users", "-n", "2", "--out", _existing(tmp, "e.csv")], "e.csv"),
    "recommend --out existing.parquet": lambda run, tmp: (
        ["recommend", run, "--users", "test", "--out", _existing(tmp, "e.parquet")], "e.parquet"),
    "recommend --out the run's own split file": lambda run, tmp: (
        ["recommend", run, "--all-users", "--out", run / "run.json"], "run.json"),
    "data synth --out existing": lambda run, tmp: (
        ["data", "synth", "--shape", "ml-100k", "--out", _existing(tmp, "s.csv")], "s.csv"),
}


@pytest.mark.parametrize("case", CLASS_1.values(), ids=CLASS_1.keys())
def test_class1_an_existing_file_is_refused_and_left_as_it_was(run, tmp_path, capsys, case):
    argv, name = case(run, tmp_path)
    target = Path(argv[argv.index("--out") + 1])
    before = target.read_bytes()
    code, _, err = cli(capsys, *argv)
    one_line(code, err, "--out", name, "--overwrite")
    assert target.read_bytes() == before
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_class1_overwrite_replaces_the_file_and_keeps_its_mode(run, tmp_path, capsys):
    target = _existing(tmp_path, "e.csv")
    code, out, _ = cli(capsys, "recommend", run, "--all-users", "-n", "2", "--out", target,
                       "--overwrite", "--quiet")
    assert code == 0 and "wrote" in out
    assert target.read_text().startswith("user,rank,item,score\n")
    assert target.stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600


def test_class1_a_folder_as_out_is_refused_before_the_run_is_read(run, tmp_path, capsys,
                                                                  monkeypatch):
    import aerec.runs

    def never(*args, **kwargs):
        raise AssertionError("the run was read (and every user scored) before --out was checked")

    monkeypatch.setattr(aerec.runs, "load_run", never)
    for out in (tmp_path, tmp_path / "recs.xyz"):
        code, _, err = cli(capsys, "recommend", run, "--all-users", "--out", out)
        one_line(code, err, str(out))


def test_class1_check_writable_file_is_the_one_rule(tmp_path):
    from aerec.paths import check_writable_file

    existing = _existing(tmp_path, "x.csv")
    with pytest.raises(ConfigError, match="the file exists; pass --overwrite"):
        check_writable_file(existing, option="--out", overwrite=False)
    assert check_writable_file(existing, option="--out", overwrite=True) == existing
    assert check_writable_file(tmp_path / "new.csv", option="--out", overwrite=False)
    with pytest.raises(ConfigError, match="is a folder"):
        check_writable_file(tmp_path, option="--out", overwrite=True)


def test_class1_atomic_writes_keep_the_mode_of_the_file_they_replace(tmp_path):
    from aerec.persistence import atomic_write_bytes

    path = tmp_path / "shared.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_bytes(path, b"[]")
    assert path.read_bytes() == b"[]" and path.stat().st_mode & 0o777 == 0o640


# == class 2: no wrong answer at the edges ========================================================
def test_class2_a_known_user_never_gets_back_an_item_of_their_own(run, capsys):
    user, theirs = _a_user_with_test_rows(run)
    code, out, _ = cli(capsys, "recommend", run, "--user", user, "-n", 1000, "--json")
    assert code == 0
    got = {r["item"] for r in json.loads(out)["recommendations"]}
    assert got and not got & theirs


def test_class2_the_export_excludes_every_item_of_each_user_and_says_so(run, tmp_path, capsys):
    from aerec.runs import load_split

    out_file = tmp_path / "all.csv"
    code, out, _ = cli(capsys, "recommend", run, "--all-users", "-n", 60, "--out", out_file,
                       "--quiet")
    assert code == 0 and "test targets included" in out
    split = load_split(run / "split")
    rows = pd.read_csv(out_file, dtype=str)
    pairs = set(zip(rows["user"], rows["item"]))
    for part in (split.train, split.validation.targets, split.test.targets):
        coo = part.matrix.tocoo()
        own = set(zip(part.user_ids[coo.row].tolist(), part.item_ids[coo.col].tolist()))
        assert not pairs & own


def test_class2_python_known_users_of_a_run_never_get_their_own_items(edge_run):
    from aerec.export import split_users
    from aerec.models import Recommender
    from aerec.runs import load_split

    user, theirs = _a_user_with_test_rows(edge_run)
    model = Recommender.load(edge_run / "model", device="cpu")
    model.set_known_users(split_users(load_split(edge_run / "split")))  # as docs/ says
    got = set(model.recommend_users([user], n=1000)["item"])
    assert got and not got & theirs


def test_class2_evaluation_still_hides_the_test_targets(run, capsys, monkeypatch):
    import aerec.histories

    # evaluation folds in each part's fold_in: the histories that include the targets are
    # never read by it
    monkeypatch.setattr(aerec.histories, "history_parts", lambda split: pytest.fail("read"))
    code, out, _ = cli(capsys, "evaluate", run, "--json")
    assert code == 0 and 0 < json.loads(out)["recall@20"] < 1


@pytest.mark.parametrize("entry, words", [
    ("100:1000", "rating 1000 is outside the training scale 1 to 5"),
    ("100:0.5", "rating 0.5 is outside the training scale"),
    ("100:-3", "rating -3 is outside the training scale"),
    ("100:5:3", "is not ':RATING'"),
    ("100:1e300", "must be a finite number"),
])
def test_class2_rating_histories_outside_the_scale_are_refused(rating_run, capsys, entry, words):
    code, _, err = cli(capsys, "recommend", rating_run, "--items", f"101,{entry}")
    one_line(code, err, words)


def test_class2_python_refuses_ratings_outside_the_scale(rating_run):
    from aerec.models import Recommender

    model = Recommender.load(rating_run / "model", device="cpu")
    with pytest.raises(DataError, match="outside the training scale 1 to 5"):
        model.recommend_items({"100": 1000.0})
    assert len(model.recommend_items({"100": 5.0}, n=3)) == 3


def test_class2_similar_items_of_an_untrained_item_are_refused_everywhere(edge_run, capsys):
    from aerec.models import Recommender

    code, _, err = cli(capsys, "similar", edge_run, "--item", UNTRAINED_ITEM)
    one_line(code, err, UNTRAINED_ITEM, "no training interactions")
    model = Recommender.load(edge_run / "model", device="cpu")
    with pytest.raises(DataError, match="no training interactions"):
        model.similar_items([UNTRAINED_ITEM])
    # ... and it is never the answer for another item
    assert UNTRAINED_ITEM not in set(model.similar_items(["100"], n=100)["similar_item"])


def test_class2_a_rating_beyond_float32_is_refused_naming_its_line(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("user,item,rating\n1,10,4\n2,10,1e300\n3,11,2\n")
    test = tmp_path / "test.csv"
    test.write_text("user,item,rating\n1,11,4\n")
    code, _, err = cli(capsys, "train", "--train", train, "--test", test, "--model", "ease",
                       "--out", tmp_path / "run", "--quiet")
    one_line(code, err, "train.csv", "line 3", "rating", "too large")


def _lightgcn_pair(folder: Path) -> tuple[Path, Path]:
    """60 users of 8 items each (0..39), 6 in train.txt and 2 in test.txt; every fourth user's
    test line also names one of the items 40..42, which no training line holds (15 in all)."""
    rng = np.random.default_rng(0)
    train, test = [], []
    for u in range(60):
        items = rng.choice(40, size=8, replace=False).tolist()
        train.append(" ".join(map(str, [u, *items[:6]])))
        test.append(" ".join(map(str, [u, *items[6:], *([40 + u % 3] if u % 4 == 0 else [])])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder / "train.txt", folder / "test.txt"


def test_class2_a_lightgcn_split_with_unseen_test_items_trains_and_counts_them(tmp_path, capsys):
    train, test = _lightgcn_pair(tmp_path)
    code, out, err = cli(capsys, "train", "--train", train, "--test", test, "--format",
                         "lightgcn", "--model", "ease", "--choose", "false", "--out",
                         tmp_path / "run", "--quiet")
    assert code == 0 and "recall@20" in out
    assert "15 test interactions are on 3 items without training interactions" in err
    assert err.startswith("aerec train: warning:") and len(err.strip().splitlines()) == 1
    ids = json.loads((tmp_path / "run" / "split" / "ids.json").read_text())
    assert ids["params"]["test_interactions_untrained_item"] == 15
    assert {"40", "41", "42"} <= set(ids["item_ids"])  # in the targets, as LightGCN counts them


def test_class2_unseen_test_items_can_be_dropped_instead(tmp_path):
    from aerec.data.readers import read_lightgcn
    from aerec.data.splits import given_split

    train_path, test_path = _lightgcn_pair(tmp_path)
    train = read_lightgcn(train_path)
    test = read_lightgcn(test_path, user_ids=train.user_ids)
    dropped = given_split(train, test, unseen_test_items="drop")
    assert dropped.params["test_interactions_dropped_item"] == 15
    assert dropped.train.n_items == 40
    with pytest.warns(UserWarning, match="15 test interactions"):
        kept = given_split(train, test, unseen_test_items="keep")
    assert kept.train.n_items == 43 and kept.test.targets.nnz == dropped.test.targets.nnz + 15
    with pytest.raises(ConfigError, match="unseen_test_items must be one of"):
        given_split(train, test, unseen_test_items="ignore")


# == class 4: every OS and input error is one line, exit 2, in bounded memory =====================
def _binary(tmp: Path) -> Path:
    path = tmp / "ids.txt"
    path.write_bytes(b"100\n\x00\x01\x02\x89PNG")
    return path


def _parquet_truncated(tmp: Path) -> Path:
    path = tmp / "train.parquet"
    pd.DataFrame({"user": ["1", "2"] * 50, "item": [str(i) for i in range(100)]}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:300])
    return path


CLASS_4 = {
    "--allow-file /dev/zero": lambda run, tmp: (
        ["recommend", run, "--items", "100", "--allow-file", "/dev/zero"], ("/dev/zero",
                                                                           "not a regular file")),
    "--exclude-file binary": lambda run, tmp: (
        ["recommend", run, "--items", "100", "--exclude-file", _binary(tmp)], ("binary",)),
    "--allow-file a folder": lambda run, tmp: (
        ["recommend", run, "--items", "100", "--allow-file", tmp], ("is a folder",)),
    "--allow-file not UTF-8": lambda run, tmp: (
        ["recommend", run, "--items", "100", "--allow-file", _write(tmp / "l.txt", b"100\n\xff\n")],
        ("line 2", "UTF-8")),
    "--train /dev/zero": lambda run, tmp: (
        ["train", "--train", "/dev/zero", "--test", "/dev/zero", "--format", "csv", "--model",
         "ease", "--out", tmp / "r"], ("/dev/zero", "not a regular file")),
    "--train binary csv": lambda run, tmp: (
        ["train", "--train", _write(tmp / "t.csv", b"user,item\n\x00\x00\n"), "--test",
         _write(tmp / "u.csv", b"user,item\n1,2\n"), "--model", "ease", "--out", tmp / "r"],
        ("t.csv", "binary")),
    "truncated parquet": lambda run, tmp: (
        ["train", "--train", _parquet_truncated(tmp), "--test", _write(tmp / "u.csv",
                                                                       b"user,item\n1,2\n"),
         "--model", "ease", "--out", tmp / "r"], ("train.parquet", "not a readable Parquet")),
    "synth NaN exponent": lambda run, tmp: (
        ["data", "synth", "--shape", "ml-100k", "--item-exponent", "nan", "--out", tmp / "s.csv"],
        ("item_exponent",)),
    "synth inf offset": lambda run, tmp: (
        ["data", "synth", "--shape", "ml-100k", "--item-offset", "inf", "--out", tmp / "s.csv"],
        ("item_offset",)),
    "synth inf exponent": lambda run, tmp: (
        ["data", "synth", "--shape", "ml-100k", "--item-exponent", "inf", "--out", tmp / "s.csv"],
        ("item_exponent",)),
    "synth NaN sigma": lambda run, tmp: (
        ["data", "synth", "--shape", "ml-100k", "--activity-sigma", "nan", "--out", tmp / "s.csv"],
        ("activity_sigma",)),
    "synth too steep to sample": lambda run, tmp: (
        ["data", "synth", "--users", "500", "--items", "300", "--interactions", "4000",
         "--item-exponent", "10", "--item-offset", "0", "--out", tmp / "s.csv"], ("too steep",)),
    "bench eval --k 0": lambda run, tmp: (
        ["bench", "eval", "--items", "50", "--users", "10", "--k", "0"], ("--k",)),
    "bench epoch --gemm-size 0": lambda run, tmp: (
        ["bench", "epoch", "--gemm-size", "0"], ("--gemm-size",)),
    "bench epoch --gemm-size -5": lambda run, tmp: (
        ["bench", "epoch", "--gemm-size", "-5"], ("--gemm-size", "-5")),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", CLASS_4.values(), ids=CLASS_4.keys())
def test_class4_input_errors_are_one_line(run, tmp_path, capsys, case):
    argv, names = case(run, tmp_path)
    code, _, err = cli(capsys, *argv, *(["--quiet"] if argv[0] == "train" else []))
    one_line(code, err, *names)


def test_class4_id_list_over_the_size_limit(run, tmp_path, capsys, monkeypatch):
    import aerec.input_files

    monkeypatch.setattr(aerec.input_files, "MAX_ID_LIST_BYTES", 8)
    code, _, err = cli(capsys, "recommend", run, "--items", "100", "--allow-file",
                       _write(tmp_path / "a.txt", b"100\n101\n102\n"))
    one_line(code, err, "a.txt", "at most")


@pytest.fixture(scope="module")
def fake_ml100k(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    write_fake_ml100k(directory)
    return directory


def _tune(data: Path, out: Path, *extra: str) -> list:
    return ["tune", "--data", "ml-100k", "--data-dir", data, "--heldout", "30", "--model", "ease",
            "--trials", "1", "--out", out, "--no-retrain", "--quiet", *extra]


@pytest.mark.parametrize("extra, names", [
    (["--storage", "redis://localhost:6379/0"], ("--storage", "redis://", "cannot be used")),
    (["--sampler-seed", "-1"], ("--sampler-seed", "-1")),
    (["--sampler-seed", str(2**32)], ("--sampler-seed",)),
], ids=["redis storage", "sampler seed -1", "sampler seed 2**32"])
def test_class4_tune_options_refused_before_the_data_is_split(fake_ml100k, tmp_path, capsys,
                                                              extra, names):
    pytest.importorskip("optuna")
    code, _, err = cli(capsys, *_tune(fake_ml100k, tmp_path / "study", *extra))
    one_line(code, err, *names)
    assert not (tmp_path / "study" / "split").exists()


def test_class4_a_new_sqlite_schema_is_created_under_a_lock(tmp_path):
    from aerec.study_storage import schema_lock

    url = f"sqlite:///{tmp_path / 'study.db'}"
    with schema_lock(url):
        # a second session's lock on the same database must wait
        with open(tmp_path / "study.db.lock", "a") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "study.db.lock", "a") as other:  # released on leaving
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_class4_the_schema_is_only_ever_created_under_the_lock(tmp_path, monkeypatch):
    """Two tunes started together raced to create a new database's tables: every opening of
    the storage (the early check and the study's) must hold the lock."""
    optuna = pytest.importorskip("optuna")
    from aerec.study_storage import check_storage, open_study, storage_errors

    url = f"sqlite:///{tmp_path / 'study.db'}"
    real = optuna.storages.get_storage
    opened = []

    def get_storage(storage):
        with open(tmp_path / "study.db.lock", "a") as other:
            with pytest.raises(BlockingIOError):  # another session would wait here
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        opened.append(storage)
        return real(storage)

    monkeypatch.setattr(optuna.storages, "get_storage", get_storage)
    check_storage(url)
    with storage_errors(url):
        open_study(url, "study", "maximize", None)
    assert [s for s in opened if isinstance(s, str)] == [url, url]  # (and optuna's own calls)


def test_class4_allow_file_dev_zero_in_bounded_memory_and_time(edge_run):
    """The issue's acceptance case: under a 4 GB address-space limit, exit 2 within 60 s."""
    limit = 4 * 2**30

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "aerec.cli", "recommend", str(edge_run), "--items", "100",
         "--allow-file", "/dev/zero"], capture_output=True, text=True, timeout=60,
        preexec_fn=bounded, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "aerec recommend: error: /dev/zero: not a regular file (a device, FIFO or socket is "
        "never read)"]
    assert time.monotonic() - started < 60  # timeout= above enforces it; said for the reader


# == class 5: service hygiene =====================================================================
def test_class5_a_port_in_use_is_one_line_before_the_model_is_loaded(edge_run, capsys,
                                                                     monkeypatch):
    import socket

    pytest.importorskip("uvicorn")
    import aerec.serving

    monkeypatch.setattr(aerec.serving, "create_app", lambda *a, **k: pytest.fail("loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli(capsys, "serve", edge_run, "--port", port)
    one_line(code, err, f"--port {port}", "in use")


@pytest.mark.parametrize("host, words", [
    ("nohost.invalid", "not an address of this machine"),
    ("192.0.2.1", "not one of this machine's"),  # TEST-NET-1: never a local address
])
def test_class5_a_host_that_cannot_be_listened_on_is_one_line(edge_run, capsys, host, words):
    pytest.importorskip("uvicorn")
    code, _, err = cli(capsys, "serve", edge_run, "--host", host, "--port", "0")
    one_line(code, err, f"--host {host}", words)


def test_class5_every_interface_is_warned_about(edge_run, capsys, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(sockets))
    code, out, err = cli(capsys, "serve", edge_run, "--host", "0.0.0.0", "--port", "0")
    assert code == 0 and len(served) == 1 and "serving" in out
    assert "listens on every network interface" in err and len(err.strip().splitlines()) == 1


# == class 6: no silent mistake, no misleading message ============================================
@pytest.mark.parametrize("entry, words", [
    ("100:0", "value 0 is not positive"),
    ("100:-2", "value -2 is not positive"),
    ("100:5:3", "'100' is an item, and ':5:3' after it is not ':RATING'"),
])
def test_class6_implicit_histories_and_malformed_entries_are_refused(edge_run, capsys, entry,
                                                                     words):
    code, _, err = cli(capsys, "recommend", edge_run, "--items", f"101,{entry}")
    one_line(code, err, words)


def test_class6_python_refuses_non_positive_implicit_values(edge_run):
    from aerec.models import Recommender

    model = Recommender.load(edge_run / "model", device="cpu")
    with pytest.raises(DataError, match="is not positive"):
        model.recommend_items({"100": -1.0})


def test_class6_an_unknown_device_is_not_blamed_on_the_weights(edge_run, capsys):
    line = one_line(*_code_err(cli(capsys, "recommend", edge_run, "--items", "100", "--device",
                                   "tpu")), "unknown device 'tpu'")
    assert "safetensors" not in line


def _code_err(result: tuple[int, str, str]) -> tuple[int, str]:
    return result[0], result[2]


@pytest.mark.parametrize("option", ["--metrics", "--plot-metric"])
def test_class6_report_of_a_metric_no_run_has_is_refused(edge_run, capsys, option):
    (edge_run / "metrics.json").exists() or (edge_run / "metrics.json").write_text(
        json.dumps({"recall@20": 0.5}))
    code, _, err = cli(capsys, "report", edge_run, option, "bogus")
    one_line(code, err, option, "'bogus'")


def test_class6_an_id_is_the_same_whatever_the_other_rows():
    from aerec.data.interactions import Interactions

    def ids(items):
        return Interactions.from_pandas(pd.DataFrame({"user": list(range(len(items))),
                                                      "item": items})).item_ids.tolist()

    assert ids([5.0, 6.0]) == ["5", "6"]
    assert ids([5.0, 6.5]) == ["5", "6.5"]  # was '5.0' beside 6.5
    assert ids([5.0, "x"]) == ["5", "x"]


def test_class6_tuple_ids_are_ids():
    from aerec.data.interactions import Interactions

    frame = pd.DataFrame({"user": [(1, 2), (1, 3), (2, 2)], "item": [(1, "a"), (2, "b"), (1, "a")]})
    data = Interactions.from_pandas(frame)
    assert data.item_ids.tolist() == ["(1, 'a')", "(2, 'b')"] and data.n_users == 3


def test_class6_warnings_are_one_line_without_source(tmp_path, capsys):
    import warnings

    from aerec.cli import _one_line_warning

    show = _one_line_warning("train")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        warnings.warn("two\n  lines", UserWarning)
    err = capsys.readouterr().err
    assert err == "aerec train: warning: two lines\n"
