"""Run directories: typed hyperparameters checked before anything is written, resume of a finished
run, leftovers of interrupted writes, faults (SIGKILL or SIGTERM inside a checkpoint write, a full
disk) followed by a bit-identical resume, early stopping and TensorBoard from the command line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aerec.cli import main
from aerec.run_dir import RunDir

FAST = ["--model", "mult-dae", "--set", "epochs=6", "--set", "batch_size=64", "--set", "latent=8",
        "--quiet"]


def _train(data_dir: Path, *args: str) -> int:
    return main(["train", "--data", "ml-100k", "--data-dir", str(data_dir), *args])


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its SHA-256 and its modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("setting, message", [
    ("epochs=2.5", "epochs must be an integer"),
    ("epochs=1e20", "epochs is too large"),
    ("lr=nan", "lr must be a finite number"),
    ("lr=inf", "lr must be a finite number"),
    ("lr=-1", "lr must be positive"),
    ("lr=0", "lr must be positive"),
    ("seed=-1", "seed must not be negative"),
    ("batch_size=0", "batch_size must be positive"),
    ("dropout=1.5", "dropout"),
    ("epoch=3", "unknown hyperparameter"),
])
def test_a_bad_hyperparameter_is_one_line_and_creates_nothing(tmp_path, fake_data, capsys, setting,
                                                              message):
    out = tmp_path / "run"
    assert _train(fake_data, "--model", "mult-dae", "--set", setting, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--heldout", "inf"], "--heldout"),
    (["--heldout", "-3"], "--heldout"),
    (["--heldout", "2.5"], "--heldout"),
    (["--seed", "-1"], "--seed"),
    (["--min-rating", "nan"], "--min-rating"),
    (["--patience", "0"], "patience"),
])
def test_a_bad_run_option_is_one_line_and_creates_nothing(tmp_path, fake_data, capsys, args, message):
    out = tmp_path / "run"
    assert _train(fake_data, *FAST, *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_integral_floats_are_whole_numbers_and_run_json_is_typed(tmp_path, fake_data):
    out = tmp_path / "run"
    assert _train(fake_data, "--model", "mult-dae", "--set", "epochs=2.0", "--set", "latent=8e0",
                  "--quiet", "--out", str(out)) == 0
    spec = json.loads((out / "run.json").read_text())
    assert spec["params"]["epochs"] == 2 and spec["params"]["latent"] == 8
    assert isinstance(spec["params"]["lr"], float) and spec["params"]["hidden"] == []
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_a_file_in_the_way_is_refused_before_training(tmp_path, fake_data, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model").write_text("not a folder")
    assert _train(fake_data, *FAST, "--out", str(out)) == 2
    assert "model" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["model"]  # nothing else written
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert _train(fake_data, *FAST, "--out", str(not_a_folder)) == 2
    assert "not a folder" in capsys.readouterr().err


def test_resume_of_a_finished_run_changes_no_file(tmp_path, fake_data, capsys):
    out = tmp_path / "run"
    assert _train(fake_data, *FAST, "--out", str(out)) == 0
    before = _digest(out)
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    assert "complete" in capsys.readouterr().out
    assert _digest(out) == before


def test_leftover_temp_files_are_removed_on_resume(tmp_path, fake_data):
    out = tmp_path / "run"
    assert _train(fake_data, *FAST, "--out", str(out)) == 0
    (out / "metrics.json").unlink()  # as if killed before the end
    leftovers = [out / ".checkpoint.safetensors.k2j4_x9a.tmp", out / ".run.json.abcdefgh.tmp",
                 out / "split" / ".train.a1b2c3d4.npz", out / "model" / ".model.json.zz9_8y7x.tmp"]
    for path in leftovers:
        path.write_bytes(b"\0" * 100)
    keep = out / ".my-notes.txt"
    keep.write_text("mine")
    assert sorted(RunDir(out).remove_temp_files()) == sorted(leftovers)
    assert keep.read_text() == "mine"
    for path in leftovers:  # and the command does it on resume
        path.write_bytes(b"\0" * 100)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert not any(p.exists() for p in leftovers) and keep.read_text() == "mine"


# -- faults ---------------------------------------------------------------------------------------
#: Runs ``aerec train`` with the checkpoint writer wrapped: on the checkpoint write number N it
#: writes part of the file, then sends itself SIGNAL (or raises ENOSPC, a full disk).
FAULTY = textwrap.dedent("""
    import errno, os, signal, sys
    import aerec.persistence as persistence
    from aerec.cli import main

    fault, when = sys.argv[1], int(sys.argv[2])
    original = persistence.save_file
    calls = {"n": 0}

    def faulty(tensors, path, metadata=None):
        if str(path).endswith(".tmp") and ".checkpoint.safetensors." in str(path):
            calls["n"] += 1
            if calls["n"] == when:
                with open(path, "wb") as fh:
                    fh.write(b"\\0" * 4096)  # half a checkpoint on disk
                if fault == "enospc":
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
                os.kill(os.getpid(), getattr(signal, fault))
        return original(tensors, path, metadata=metadata)

    persistence.save_file = faulty
    sys.exit(main(sys.argv[3:]))
""")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fake_data) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    assert _train(fake_data, *FAST, "--out", str(out)) == 0
    return out


@pytest.mark.parametrize("fault, when, code", [
    ("SIGKILL", 3, -signal.SIGKILL),
    ("SIGTERM", 5, -signal.SIGTERM),
    ("SIGKILL", 1, -signal.SIGKILL),
    ("enospc", 4, 1),
])
def test_a_fault_inside_a_checkpoint_write_then_resume_is_bit_identical(
        tmp_path, fake_data, uninterrupted, fault, when, code):
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    out = tmp_path / "run"
    args = ["train", "--data", "ml-100k", "--data-dir", str(fake_data), *FAST, "--out", str(out)]
    r = subprocess.run([sys.executable, str(script), fault, str(when), *args], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == code, r.stderr
    assert not (out / "metrics.json").exists()
    if fault == "enospc":
        err = r.stderr.strip()
        assert err.count("\n") == 0 and "No space left" in err and "kept" in err, err
    previous = list(out.glob(".checkpoint.safetensors.*.tmp"))
    if fault != "enospc":
        assert previous  # the half-written checkpoint the fault left
    if when > 1:  # the checkpoint of the epoch before the fault survived whole
        from aerec.persistence import load_state

        assert load_state(out / "checkpoint.safetensors")[0]["epoch"] == when - 1
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert not list(out.rglob("*.tmp"))
    a = load_file(str(uninterrupted / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((uninterrupted / "metrics.json").read_text())
    mb = json.loads((out / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if "seconds" not in k and k != "peak_rss_mb"} == \
        {k: v for k, v in mb.items() if "seconds" not in k and k != "peak_rss_mb"}


# -- run options from the command line ------------------------------------------------------------
def test_patience_from_the_command_line_is_recorded(tmp_path, fake_data):
    out = tmp_path / "run"
    assert _train(fake_data, "--model", "mult-dae", "--set", "epochs=40", "--set", "lr=0.05",
                  "--set", "latent=8", "--patience", "2", "--quiet", "--out", str(out)) == 0
    spec = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert spec["training"] == {"patience": 2, "refit": False, "choose": False}
    assert metrics["stopped_early"] is (metrics["epochs"] < 40)
    if metrics["stopped_early"]:
        assert metrics["epochs"] == metrics["best_epoch"] + 2


def test_log_tensorboard_writes_event_files_into_the_run(tmp_path, fake_data):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert _train(fake_data, *FAST, "--log", "tensorboard", "--out", str(out)) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
