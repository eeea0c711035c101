"""Bad-input corpus of the command line: each case must end with exit status 2 and ONE line on
stderr that names the file, field or option at fault, and never a traceback.

The cases damage a copy of a small, correct EASE run directory (model files, split files, run.json,
metrics), give options that cannot work (output paths, synthetic sizes) and tuning storages that
cannot be opened. They run in-process through :func:`aerec.cli.main`; a few run as subprocesses to
see what a user sees (the top-level handler, a closed pipe).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import aerec
import aerec.persistence
from aerec.cli import main
from aerec.data.splits import strong_generalization
from aerec.persistence import write_json
from aerec.runs import save_split, train_run

from tiny_runs import tiny_interactions

RUN_FORMAT = "aerec-run"
LONG_NAME = "n" * 256  # one byte over the limit of every common file system


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A trained EASE run on the tiny genres data (a fraction of a second to train)."""
    run = tmp_path_factory.mktemp("good") / "run"
    save_split(strong_generalization(tiny_interactions(), 30, seed=1), run / "split")
    write_json(run / "run.json", {
        "format": RUN_FORMAT, "model": "ease", "params": {"lam": 50.0},
        "data": {"dataset": "tiny-genres"}, "preprocess": {},
        "split": {"kind": "strong", "n_heldout": 30, "seed": 1},
        "versions": {"aerec": aerec.__version__}})
    train_run(run)
    return run


@pytest.fixture
def run(good_run, tmp_path) -> Path:
    """A fresh copy of the good run, for one case to damage."""
    return Path(shutil.copytree(good_run, tmp_path / "run"))


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *names: str) -> str:
    """Exit status 2, one line on stderr, no traceback, and each of ``names`` in the line."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert code == 2, (code, err)
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# -- model.json -----------------------------------------------------------------------------------
def _edit_model_json(edit: Callable[[dict], object]) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = run / "model" / "model.json"
        meta = json.loads(path.read_text())
        result = edit(meta)
        path.write_text(json.dumps(meta if result is None else result))
        return ("model.json",)
    return damage


def _write_model_json(text: str | bytes) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = run / "model" / "model.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ("model.json",)
    return damage


def _model_json_to(target: str) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = run / "model" / "model.json"
        path.unlink()
        if target == "dir":
            path.mkdir()
        elif target != "missing":
            path.symlink_to(target)
        return ("model.json",)
    return damage


def _field(name: str, value: object) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        meta[name] = value
    return edit


MODEL_JSON_CASES = {
    "a list": _edit_model_json(lambda m: [m]),
    "a string": _edit_model_json(lambda m: "ease"),
    "null": _write_model_json("null"),
    "a number": _write_model_json("3"),
    "truncated JSON": _write_model_json('{"format": "aerec-model", "model": '),
    "empty file": _write_model_json(""),
    "not UTF-8": _write_model_json(b"\xff\xfe\x00garbage"),
    "nested too deeply": _write_model_json("[" * 200_000),
    "no model key": _edit_model_json(lambda m: m.pop("model")),
    "no params key": _edit_model_json(lambda m: m.pop("params")),
    "no item_ids key": _edit_model_json(lambda m: m.pop("item_ids")),
    "no n_items key": _edit_model_json(lambda m: m.pop("n_items")),
    "no format key": _edit_model_json(lambda m: m.pop("format")),
    "unknown model": _edit_model_json(_field("model", "no-such-model")),
    "model a number": _edit_model_json(_field("model", 7)),
    "params a list": _edit_model_json(_field("params", [50.0])),
    "params unknown key": _edit_model_json(lambda m: m["params"].update(bogus=1)),
    "params wrong type": _edit_model_json(lambda m: m["params"].update(lam="much")),
    "params nested object": _edit_model_json(lambda m: m["params"].update(lam={"a": 1})),
    "n_items a string": _edit_model_json(_field("n_items", "60")),
    "n_items zero": _edit_model_json(_field("n_items", 0)),
    "n_items negative": _edit_model_json(_field("n_items", -5)),
    "n_items true": _edit_model_json(_field("n_items", True)),
    "n_items a float": _edit_model_json(_field("n_items", 60.5)),
    "item_ids too short": _edit_model_json(lambda m: m["item_ids"].pop()),
    "item_ids too long": _edit_model_json(lambda m: m["item_ids"].append("999")),
    "item_ids duplicated": _edit_model_json(lambda m: m["item_ids"].__setitem__(1, m["item_ids"][0])),
    "item_ids numbers": _edit_model_json(lambda m: m.__setitem__("item_ids", list(range(60)))),
    "item_ids an object": _edit_model_json(_field("item_ids", {"a": "b"})),
    "item_ids null": _edit_model_json(_field("item_ids", None)),
    "format of another tool": _edit_model_json(_field("format", "keras")),
    "format_version newer": _edit_model_json(_field("format_version", 99)),
    "format_version a string": _edit_model_json(_field("format_version", "1")),
    "n_items and ids larger than the weights": _edit_model_json(
        lambda m: m.update(n_items=61, item_ids=m["item_ids"] + ["999"])),
    "model of another kind than the weights": _edit_model_json(
        lambda m: m.update(model="mult-dae", params={})),
    "a link to /dev/zero": _model_json_to("/dev/zero"),
    "a link to nothing": _model_json_to("/nonexistent/model.json"),
    "a folder": _model_json_to("dir"),
    "missing": _model_json_to("missing"),
}


@pytest.mark.parametrize("damage", MODEL_JSON_CASES.values(), ids=MODEL_JSON_CASES.keys())
def test_damaged_model_json(run, capsys, damage):
    names = damage(run)
    assert_one_line(*cli(capsys, "evaluate", run), *names)


def test_model_json_over_the_size_limit(run, capsys, monkeypatch):
    monkeypatch.setattr(aerec.persistence, "MAX_JSON_BYTES", 100)
    line = assert_one_line(*cli(capsys, "evaluate", run))
    assert "larger than" in line and ".json" in line


def test_model_json_fifo_is_refused_without_waiting(run, capsys):
    path = run / "model" / "model.json"
    path.unlink()
    os.mkfifo(path)  # opening it would wait for a writer for ever
    assert_one_line(*cli(capsys, "evaluate", run), "model.json", "not a regular file")


@pytest.mark.parametrize("field, value, words", [
    ("n_items", "60", ("'n_items'", "integer")),
    ("item_ids", None, ("'item_ids'", "JSON array")),
    ("model", 7, ("'model'", "string")),
])
def test_model_json_messages_name_the_field_and_the_type(run, capsys, field, value, words):
    _edit_model_json(_field(field, value))(run)
    assert_one_line(*cli(capsys, "evaluate", run), "model.json", *words)


def test_duplicated_item_ids_name_the_item(run, capsys):
    _edit_model_json(lambda m: m["item_ids"].__setitem__(1, m["item_ids"][0]))(run)
    first = json.loads((run / "model" / "model.json").read_text())["item_ids"][0]
    assert_one_line(*cli(capsys, "evaluate", run), "item_ids", f"'{first}' more than once")


# -- model.safetensors ----------------------------------------------------------------------------
def _weights(run: Path) -> Path:
    return run / "model" / "model.safetensors"


def _save_weights(tensors: dict, skeleton: object = None, meta: object = None,
                  raw: dict | None = None) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        metadata = raw if raw is not None else {
            "skeleton": json.dumps(skeleton if skeleton is not None else
                                   {"__dict__": [["weights", {"__tensor__": "s.weights"}],
                                                 ["items", None]]}),
            "meta": json.dumps(meta if meta is not None else {"model": "ease"})}
        save_file(tensors(run) if callable(tensors) else tensors, str(_weights(run)),
                  metadata=metadata)
        return ("model.safetensors",)
    return damage


def _scaled(value: float) -> Callable[[Path], dict]:
    def tensors(run: Path) -> dict:
        weights = load_file(str(_weights(run)))["s.weights"]
        return {"s.weights": torch.full_like(weights, value)}
    return tensors


def _raw_weights(data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = _weights(run)
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)
        return ("model.safetensors",)
    return damage


GOOD_WEIGHTS = {"s.weights": torch.zeros(60, 60)}
WEIGHTS_CASES = {
    "random bytes": _raw_weights(os.urandom(4096)),
    "empty": _raw_weights(b""),
    "truncated": _raw_weights(lambda b: b[: len(b) // 2]),
    "header only": _raw_weights(lambda b: b[:8]),
    "no skeleton": _save_weights(GOOD_WEIGHTS, raw={"meta": "{}"}),
    "no metadata": _save_weights(GOOD_WEIGHTS, raw={}),
    "skeleton not JSON": _save_weights(GOOD_WEIGHTS, raw={"skeleton": "{not json", "meta": "{}"}),
    "skeleton names a missing tensor": _save_weights(
        GOOD_WEIGHTS, skeleton={"__dict__": [["weights", {"__tensor__": "s.nope"}]]}),
    "skeleton tensor reference not a string": _save_weights(
        GOOD_WEIGHTS, skeleton={"__dict__": [["weights", {"__tensor__": [1]}]]}),
    "skeleton __dict__ not pairs": _save_weights(GOOD_WEIGHTS, skeleton={"__dict__": [1, 2, 3]}),
    "skeleton key a list": _save_weights(
        GOOD_WEIGHTS, skeleton={"__dict__": [[["k"], {"__tensor__": "s.weights"}]]}),
    "skeleton a list": _save_weights(GOOD_WEIGHTS, skeleton=[{"__tensor__": "s.weights"}]),
    "skeleton without the weights": _save_weights(GOOD_WEIGHTS, skeleton={"__dict__": []}),
    "meta a list": _save_weights(GOOD_WEIGHTS, meta=[1]),
    "tensor of the wrong shape": _save_weights({"s.weights": torch.zeros(59, 59)}),
    "tensor of one dimension": _save_weights({"s.weights": torch.zeros(60)}),
    "weights all NaN": _save_weights(_scaled(float("nan"))),
    "weights infinite": _save_weights(_scaled(float("inf"))),
}


@pytest.mark.parametrize("damage", WEIGHTS_CASES.values(), ids=WEIGHTS_CASES.keys())
def test_damaged_model_weights(run, capsys, damage):
    names = damage(run)
    assert_one_line(*cli(capsys, "evaluate", run), *names)


def test_nan_weights_are_refused_at_load_with_a_reason(run, capsys):
    _save_weights(_scaled(float("nan")))(run)
    assert_one_line(*cli(capsys, "evaluate", run), "model.safetensors", "NaN")


@pytest.mark.parametrize("what", ["missing", "a folder"])
def test_missing_model_weights(run, capsys, what):
    _weights(run).unlink()
    if what == "a folder":
        _weights(run).mkdir()
    assert_one_line(*cli(capsys, "evaluate", run), "model.safetensors")


# -- split files ----------------------------------------------------------------------------------
def _npz(name: str, **arrays) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = run / "split" / f"{name}.npz"
        good = dict(np.load(path, allow_pickle=False))
        np.savez(path, **{**good, **arrays})
        return (f"{name}.npz",)
    return damage


def _npz_drop(name: str, key: str) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = run / "split" / f"{name}.npz"
        good = dict(np.load(path, allow_pickle=False))
        good.pop(key)
        np.savez(path, **good)
        return (f"{name}.npz",)
    return damage


def _replace(relative: str, content: bytes | str | None = None, *,
             link: str | None = None) -> Callable[[Path], tuple[str, ...]]:
    """Damage: replace a file of the run by ``content`` or a link (or remove it: neither)."""
    def damage(run: Path) -> tuple[str, ...]:
        path = run / relative
        path.unlink()
        if link is not None:
            path.symlink_to(link)
        elif content is not None:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        return (path.name,)
    return damage


def _split_file(name: str, content: bytes | None) -> Callable[[Path], tuple[str, ...]]:
    def damage(run: Path) -> tuple[str, ...]:
        path = run / "split" / name
        path.unlink()
        if content is not None:
            path.write_bytes(content)
        return (name,)
    return damage


SPLIT_CASES = {
    "train.npz missing": _split_file("train.npz", None),
    "test_targets.npz missing": _split_file("test_targets.npz", None),
    "npz random bytes": _split_file("test_fold_in.npz", os.urandom(2048)),
    "npz empty": _split_file("test_fold_in.npz", b""),
    "npz object array": _npz("test_targets", data=np.array([{"a": 1}, None], dtype=object)),
    "npz another sparse format": _npz("test_targets", format=np.array("csc")),
    "npz without indptr": _npz_drop("test_targets", "indptr"),
    "npz without format": _npz_drop("test_fold_in", "format"),
    "npz inconsistent indptr": _npz("test_targets", indptr=np.array([0, 5, 2], np.int32)),
    "npz column out of range": _npz("test_fold_in", indices=np.full(1, 10_000, np.int32),
                                    data=np.ones(1, np.float32),
                                    indptr=np.r_[np.zeros(30, np.int32), 1].astype(np.int32)),
    "npz NaN values": _npz("test_fold_in", data=np.full(1, np.nan, np.float32),
                           indices=np.zeros(1, np.int32),
                           indptr=np.r_[np.zeros(30, np.int32), 1].astype(np.int32)),
    "npz string values": _npz("test_fold_in", data=np.array(["x"]), indices=np.zeros(1, np.int32),
                              indptr=np.r_[np.zeros(30, np.int32), 1].astype(np.int32)),
    "npz shape of three dimensions": _npz("test_targets", shape=np.array([30, 60, 2])),
    "npz negative shape": _npz("test_targets", shape=np.array([-30, 60])),
    "ids.json missing": _split_file("ids.json", None),
    "ids.json not JSON": _split_file("ids.json", b"{'kind': "),
    "ids.json a link to /dev/zero": _replace("split/ids.json", link="/dev/zero"),
}


@pytest.mark.parametrize("damage", SPLIT_CASES.values(), ids=SPLIT_CASES.keys())
def test_damaged_split(run, capsys, damage):
    names = damage(run)
    assert_one_line(*cli(capsys, "evaluate", run), *names)


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"kind": "strong"}', b'"ids"'],
                         ids=["a list", "fields missing", "a string"])
def test_ids_json_of_the_wrong_type(run, capsys, content):
    (run / "split" / "ids.json").write_bytes(content)
    assert_one_line(*cli(capsys, "evaluate", run), "ids.json")


# -- run directories ------------------------------------------------------------------------------
RUN_CASES = {
    "run.json a list": _replace("run.json", "[]"),
    "run.json a string": _replace("run.json", '"run"'),
    "run.json not JSON": _replace("run.json", "{"),
    "run.json missing": _replace("run.json"),
    "run.json of another tool": _replace("run.json", '{"format": "x"}'),
    "run.json a link to /dev/zero": _replace("run.json", link="/dev/zero"),
}


@pytest.mark.parametrize("damage", RUN_CASES.values(), ids=RUN_CASES.keys())
def test_damaged_run_json(run, capsys, damage):
    names = damage(run)
    assert_one_line(*cli(capsys, "evaluate", run), *names)


@pytest.mark.parametrize("what", ["missing", "a file"])
def test_run_directory_that_is_not_one(tmp_path, capsys, what):
    path = tmp_path / "run"
    if what == "a file":
        path.write_text("x")
    assert_one_line(*cli(capsys, "evaluate", path), str(path))


# -- checkpoints (aerec train --resume) -----------------------------------------------------------
@pytest.fixture(scope="module")
def torch_run(tmp_path_factory) -> Path:
    """A Mult-DAE run of two epochs on the tiny data, with its checkpoint."""
    from tiny_runs import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("dae") / "run", model="mult-dae", epochs=2)


@pytest.fixture
def interrupted(torch_run, tmp_path) -> Path:
    """A copy of the Mult-DAE run that looks interrupted: a checkpoint, no model, no metrics."""
    run = Path(shutil.copytree(torch_run, tmp_path / "run"))
    (run / "metrics.json").unlink()
    shutil.rmtree(run / "model")
    return run


def _edit_checkpoint(edit: Callable[[dict], None], meta: dict | None = None):
    def damage(run: Path) -> None:
        from aerec.persistence import load_state, save_state

        state, saved = load_state(run / "checkpoint.safetensors")
        edit(state)
        save_state(run / "checkpoint.safetensors", state, metadata=meta or saved)
    return damage


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda state: state.__setitem__(key, value)


CHECKPOINT_CASES = {
    "random bytes": _replace("checkpoint.safetensors", os.urandom(3000)),
    "empty": _replace("checkpoint.safetensors", b""),
    "generator state too short": _edit_checkpoint(
        lambda st: st.__setitem__("generator", st["generator"][:100].clone())),
    "generator state a number": _edit_checkpoint(_set("generator", 3)),
    "epoch a string": _edit_checkpoint(_set("epoch", "three")),
    "update count a list": _edit_checkpoint(_set("update_count", [1])),
    "history an object": _edit_checkpoint(_set("history", {"a": 1})),
    "numpy state of another generator": _edit_checkpoint(
        lambda st: st["rng"].__setitem__("bit_generator", "MT19937")),
    "weights of another shape": _edit_checkpoint(
        lambda st: st["module"].__setitem__("weights.0", torch.zeros(3, 3))),
    "a weight missing": _edit_checkpoint(lambda st: st["module"].pop("biases.1")),
    "optimiser state missing": _edit_checkpoint(_set("optimizers", {})),
    "checkpoint of another model": _edit_checkpoint(lambda st: None, meta={"model": "mult-vae"}),
}


@pytest.mark.parametrize("damage", CHECKPOINT_CASES.values(), ids=CHECKPOINT_CASES.keys())
def test_damaged_checkpoint_on_resume(interrupted, capsys, damage):
    damage(interrupted)
    assert_one_line(*cli(capsys, "train", "--resume", interrupted, "--quiet"),
                    "checkpoint.safetensors")
    assert not (interrupted / "model").exists()  # refused, not trained from a wrong state


# -- aerec report: its runs and its outputs -------------------------------------------------------
@pytest.mark.parametrize("content", ["[1, 2]", "{", '"metrics"'], ids=["list", "broken", "string"])
def test_report_with_damaged_metrics(run, capsys, content):
    (run / "metrics.json").write_text(content)
    assert_one_line(*cli(capsys, "report", run), "metrics.json")


def _report_output(option: str, make: Callable[[Path], Path]):
    def case(run: Path, tmp_path: Path) -> tuple[list[str], tuple[str, ...]]:
        target = make(tmp_path)
        return ["report", str(run), option, str(target)], (option,)
    return case


def _a_file(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "file").write_text("x")
    return tmp / "file"


def _folder(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def _folder_holding_a_file(tmp: Path, name: str) -> Path:
    folder = _folder(tmp / "out")
    (folder / name).write_text("x")
    return folder


def _dangling_link(tmp: Path) -> Path:
    link = _folder(tmp) / "link"
    link.symlink_to(tmp / "gone" / "x")
    return link


REPORT_OUTPUT_CASES = {
    "--markdown a folder": _report_output("--markdown", _folder),
    "--markdown under a file": _report_output("--markdown", lambda tmp: _a_file(tmp) / "t.md"),
    "--markdown name too long": _report_output("--markdown", lambda tmp: tmp / LONG_NAME),
    "--markdown folder name too long": _report_output(
        "--markdown", lambda tmp: tmp / LONG_NAME / "t.md"),
    "--markdown /dev/null": _report_output("--markdown", lambda tmp: Path("/dev/null")),
    "--plot a folder": _report_output("--plot", _folder),
    "--plot under a file": _report_output("--plot", lambda tmp: _a_file(tmp) / "p.png"),
    "--plot name too long": _report_output("--plot", lambda tmp: tmp / (LONG_NAME + ".png")),
    "--plot in a link to nothing": _report_output("--plot", lambda tmp: _dangling_link(tmp) / "p.png"),
}


@pytest.mark.parametrize("case", REPORT_OUTPUT_CASES.values(), ids=REPORT_OUTPUT_CASES.keys())
def test_report_outputs_that_cannot_be_written(run, tmp_path, capsys, case):
    argv, names = case(run, tmp_path / "out")  # a folder apart from the run
    assert_one_line(*cli(capsys, *argv), *names)


@pytest.fixture
def read_only(monkeypatch):
    """Make the file system of one folder look read-only (as a read-only mount answers)."""
    real = os.statvfs
    folders: list[Path] = []

    class ReadOnly:
        def __init__(self, result) -> None:
            self._result = result
            self.f_flag = result.f_flag | os.ST_RDONLY

        def __getattr__(self, name):
            return getattr(self._result, name)

    def statvfs(path):
        result = real(path)
        inside = any(Path(path).resolve().is_relative_to(f) for f in folders)
        return ReadOnly(result) if inside else result

    monkeypatch.setattr(os, "statvfs", statvfs)
    return folders


@pytest.mark.parametrize("option, name", [("--plot", "p.png"), ("--markdown", "t.md")])
def test_report_output_on_a_read_only_file_system(run, tmp_path, capsys, read_only, option, name):
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only.append(folder.resolve())
    line = assert_one_line(*cli(capsys, "report", run, option, folder / name), option)
    assert "read-only" in line


# -- aerec data synth -----------------------------------------------------------------------------
SYNTH_CASES = {
    "absurd users": (["--users", "1000000000000", "--items", "100", "--interactions",
                      "10000000000000"], ("GiB", "memory")),
    "absurd items": (["--users", "10", "--items", "1000000000000", "--interactions", "100"],
                     ("GiB", "memory")),
    "absurd interactions": (["--shape", "netflix", "--interactions", "1000000000000"],
                            ("interactions",)),
    "zero users": (["--users", "0", "--items", "10", "--interactions", "10"], ("n_users",)),
    "more interactions than cells": (["--users", "10", "--items", "10", "--interactions", "101"],
                                     ("between",)),
    "min-user above items": (["--users", "10", "--items", "3", "--interactions", "40",
                              "--min-user", "0"], ("min_user",)),
    "affinity above one": (["--shape", "ml-100k", "--affinity", "2"], ("affinity",)),
    "lightgcn with ratings": (["--shape", "ml-100k", "--format", "lightgcn", "--explicit"],
                              ("lightgcn",)),
}


@pytest.mark.parametrize("argv, names", SYNTH_CASES.values(), ids=SYNTH_CASES.keys())
def test_synth_sizes_and_options_refused_up_front(tmp_path, capsys, argv, names):
    out = tmp_path / "s.csv"
    assert_one_line(*cli(capsys, "data", "synth", "--out", out, *argv), *names)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary


SYNTH_OUT_CASES = {
    "a folder": lambda tmp: tmp,
    "under a file": lambda tmp: _a_file(tmp) / "s.csv",
    "name too long": lambda tmp: tmp / (LONG_NAME + ".csv"),
    "unknown suffix": lambda tmp: tmp / "s.xyz",
}


@pytest.mark.parametrize("make", SYNTH_OUT_CASES.values(), ids=SYNTH_OUT_CASES.keys())
def test_synth_out_that_cannot_be_written(tmp_path, capsys, make):
    out = make(tmp_path)
    assert_one_line(*cli(capsys, "data", "synth", "--shape", "ml-100k", "--out", out), "s"
                    if out == tmp_path else out.name[:40])


# -- aerec tune: storages and --out ---------------------------------------------------------------
def _tune(fake_data: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", "--data", "ml-100k", "--data-dir", str(fake_data), "--heldout", "30",
            "--model", "ease", "--trials", "2", "--out", str(out), "--no-retrain", "--quiet",
            *extra]


def _random_db(tmp: Path) -> str:
    (tmp / "random.db").write_bytes(os.urandom(4096))
    return f"sqlite:///{tmp / 'random.db'}"


STORAGE_CASES = {
    "missing folder": (lambda tmp: f"sqlite:///{tmp / 'nope' / 'study.db'}", ("does not exist",)),
    "a folder": (lambda tmp: f"sqlite:///{tmp}", ("is a folder",)),
    "unknown scheme": (lambda tmp: "foo://host/db", ("unknown database kind",)),
    "driver not installed (postgresql)": (lambda tmp: "postgresql://user:secret@localhost/db",
                                          ("not installed",)),
    "driver not installed (mysql)": (lambda tmp: "mysql://user@localhost/db", ("not installed",)),
    "random bytes": (_random_db, ("not an SQLite database",)),
    "not a URL": (lambda tmp: "study.db", ("not a database URL",)),
}


@pytest.mark.parametrize("url, words", STORAGE_CASES.values(), ids=STORAGE_CASES.keys())
def test_tuning_storage_that_cannot_be_opened(fake_data, tmp_path, capsys, url, words):
    pytest.importorskip("optuna")
    line = assert_one_line(*cli(capsys, *_tune(fake_data, tmp_path / "study", "--storage",
                                                url(tmp_path))), "--storage", *words)
    assert "secret" not in line  # a password in the URL is never shown
    assert not (tmp_path / "study" / "split").exists()  # refused before the data was split


TUNE_OUT_CASES = {
    "a file": lambda tmp: _a_file(tmp),
    "holds a file named split": lambda tmp: _folder_holding_a_file(tmp, "split"),
    "holds a file named best": lambda tmp: _folder_holding_a_file(tmp, "best"),
    "name too long": lambda tmp: tmp / LONG_NAME,
}


@pytest.mark.parametrize("make", TUNE_OUT_CASES.values(), ids=TUNE_OUT_CASES.keys())
def test_tune_out_that_cannot_be_written(fake_data, tmp_path, capsys, make):
    pytest.importorskip("optuna")
    assert_one_line(*cli(capsys, *_tune(fake_data, make(tmp_path))), "--out")


# -- aerec train --out ----------------------------------------------------------------------------
TRAIN_OUT_CASES = {
    "a file": lambda tmp: _a_file(tmp),
    "/dev/null": lambda tmp: Path("/dev/null"),
    "holds a file named model": lambda tmp: _folder_holding_a_file(tmp, "model"),
    "holds a file named split": lambda tmp: _folder_holding_a_file(tmp, "split"),
    "under a file": lambda tmp: _a_file(tmp) / "run",
    "name too long": lambda tmp: tmp / LONG_NAME,
}


@pytest.mark.parametrize("make", TRAIN_OUT_CASES.values(), ids=TRAIN_OUT_CASES.keys())
def test_train_out_that_cannot_be_written_is_refused_before_training(fake_data, tmp_path, capsys,
                                                                     make):
    out = make(tmp_path)
    code, err = cli(capsys, "train", "--data", "ml-100k", "--data-dir", fake_data, "--heldout",
                    "30", "--model", "ease", "--out", out, "--quiet")
    assert_one_line(code, err, str(out)[:60])
    assert not (tmp_path / "out" / "model").is_dir()


# -- operating-system errors anywhere in a command ------------------------------------------------
@pytest.mark.parametrize("code, reason", [
    (errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system"),
    (errno.ENAMETOOLONG, "File name too long"), (errno.ENOTDIR, "Not a directory"),
])
def test_os_errors_while_writing_are_one_line_naming_the_path(run, tmp_path, capsys, monkeypatch,
                                                              code, reason):
    target = tmp_path / "t.md"

    def fail(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(aerec.persistence, "atomic_write_bytes", fail)
    assert_one_line(*cli(capsys, "report", run, "--markdown", target), str(target), reason)


def test_no_permission_to_write_is_refused_before_reading_the_runs(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    real = os.access
    # Tests may run as root, for whom every folder is writable: ask os.access to say no.
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder
                        else real(p, mode, **kw))
    line = assert_one_line(*cli(capsys, "report", tmp_path / "no-run", "--markdown",
                                folder / "t.md"), "--markdown", str(folder))
    assert "permission" in line


# -- what a user sees: the console script in a subprocess -----------------------------------------
def _aerec(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "aerec.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_subprocess_damaged_model_is_one_line(run):
    _save_weights(_scaled(float("nan")))(run)
    done = _aerec("evaluate", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "model.safetensors" in done.stderr


def test_subprocess_absurd_synth_is_one_line(tmp_path):
    done = _aerec("data", "synth", "--users", "100", "--items", "100000000000",
                  "--interactions", "1000", "--out", str(tmp_path / "s.csv"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "GiB" in done.stderr


def test_subprocess_storage_of_random_bytes_is_one_line(fake_data, tmp_path):
    pytest.importorskip("optuna")
    done = _aerec(*_tune(fake_data, tmp_path / "study", "--storage", _random_db(tmp_path)))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "random.db" in done.stderr


# -- the hand-kept list of model names -----------------------------------------------------------
def test_model_names_of_the_command_line_are_the_registry():
    from aerec.cli.common import MODEL_NAMES
    from aerec.models import REGISTRY

    assert sorted(MODEL_NAMES) == sorted(REGISTRY)


# -- the checks behind the refusals ---------------------------------------------------------------
def test_memory_estimate_of_a_hand_computed_shape():
    from aerec.data.synth_spec import Shape, check_memory, memory_estimate

    shape = Shape(100_000, 20_000, 5_000_000, explicit=False)
    # A chunk of 16,384 users holds twice their share: 2 x ceil(5e6 x 16384 / 1e5) interactions.
    chunk = 2 * 819_200
    assert memory_estimate(shape, in_memory=False) == 128 * 20_000 + 64 * 100_000 + 128 * chunk
    assert memory_estimate(shape, in_memory=True) == (128 * 20_000 + 64 * 100_000 + 128 * chunk
                                                      + 16 * 5_000_000 + 8 * 100_000)
    check_memory(shape, in_memory=True, available=2**30)
    with pytest.raises(aerec.errors.ConfigError, match=r"need about 286 MiB of memory; 100 MiB"):
        check_memory(shape, in_memory=True, available=100 * 2**20)


def test_check_writable_run_dir_accepts_new_and_existing_folders(tmp_path):
    from aerec.paths import check_writable_run_dir

    assert check_writable_run_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    (tmp_path / "old" / "model").mkdir(parents=True)
    assert check_writable_run_dir(tmp_path / "old") == tmp_path / "old"


@pytest.mark.parametrize("make, words", [
    (lambda tmp: _a_file(tmp), "is a file, not a folder"),
    (lambda tmp: Path("/dev/null"), "is a file, not a folder"),
    (lambda tmp: _folder_holding_a_file(tmp, "model"), "is a file where the run's model/"),
    (lambda tmp: _folder_holding_a_file(tmp, "split"), "is a file where the run's split/"),
    (lambda tmp: _a_file(tmp) / "run", "is a file, not a folder"),
    (lambda tmp: tmp / LONG_NAME / "run", "has 256 bytes; file systems allow 255"),
    (lambda tmp: _dangling_link(tmp) / "run", "is a link to nothing"),
])
def test_check_writable_run_dir_refuses(tmp_path, make, words):
    from aerec.errors import ConfigError
    from aerec.paths import check_writable_run_dir

    with pytest.raises(ConfigError, match=f"^--out .*{words}|^--out: .*{words}"):
        check_writable_run_dir(make(tmp_path))


def test_check_writable_run_dir_refuses_a_read_only_file_system(tmp_path, read_only):
    from aerec.errors import ConfigError
    from aerec.paths import check_writable_run_dir

    read_only.append(tmp_path.resolve())
    with pytest.raises(ConfigError, match="is on a read-only file system"):
        check_writable_run_dir(tmp_path / "run")
