"""End-to-end command line: train, evaluate, recommend, resume after SIGKILL, errors on one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aerec.cli import main
from aerec.config import config_to_dict
from aerec.models import MultDAE


def aerec(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aerec.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory, shared_data_dir):
    run = tmp_path_factory.mktemp("runs") / "dae"
    code = main(["train", "--data", "ml-100k", "--data-dir", str(shared_data_dir), "--model",
                 "mult-dae", "--out", str(run), "--set", "epochs=5", "--quiet", "--json"])
    assert code == 0
    return run


def test_train_writes_metrics_with_every_key(ml100k_run):
    metrics = json.loads((ml100k_run / "metrics.json").read_text())
    for k in (10, 20, 50, 100):
        for name in ("recall", "truncated_recall", "ndcg"):
            assert 0.0 <= metrics[f"{name}@{k}"] <= 1.0
            assert metrics[f"{name}@{k}_se"] > 0.0
    assert metrics["epochs"] == 5 and metrics["seconds_per_epoch"] > 0
    assert 1 <= metrics["best_epoch"] <= 5
    # ML-100K, ratings > 3.5, users >= 5, 10% held out: about 94 test users
    assert 80 <= metrics["n_users"] <= 95
    assert metrics["ndcg@100"] > 0.15  # a random ranking scores about 0.03
    spec = json.loads((ml100k_run / "run.json").read_text())
    # every hyperparameter stored typed, the defaults too
    assert spec["model"] == "mult-dae" and spec["params"] == config_to_dict(MultDAE(epochs=5).config)
    assert spec["params"]["epochs"] == 5 and spec["training"] == {"patience": None, "refit": False,
                                                                       "choose": False}
    assert spec["split"] == {"kind": "strong", "seed": 98765, "n_heldout": 0.1, "test_prop": 0.2}
    assert len(json.loads((ml100k_run / "history.json").read_text())) == 5


def test_evaluate_reproduces_the_saved_metrics_exactly(ml100k_run, capsys):
    assert main(["evaluate", str(ml100k_run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    saved = json.loads((ml100k_run / "metrics.json").read_text())
    for key, value in again.items():
        assert saved[key] == value, key


def test_recommend_for_a_user_and_for_an_unseen_history(ml100k_run, capsys):
    assert main(["recommend", str(ml100k_run), "--user", "1", "-n", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["recommendations"]) == 5
    assert all(r["title"] for r in out["recommendations"])
    assert main(["recommend", str(ml100k_run), "--items", "50,181,99999", "-n", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    items = [r["item"] for r in out["recommendations"]]
    assert out["unknown_items"] == ["99999"]
    assert len(items) == 10 and not {"50", "181"} & set(items)
    assert main(["recommend", str(ml100k_run), "--items", "50,181", "-n", "3"]) == 0
    text = capsys.readouterr().out
    assert text.count("\n") == 4 and "(19" in text  # a header, then titles with their year


def test_unknown_hyperparameter_is_one_line_with_valid_names(tmp_path, shared_data_dir):
    r = aerec("train", "--data", "ml-100k", "--data-dir", str(shared_data_dir), "--model",
              "mult-vae", "--out", str(tmp_path / "r"), "--set", "epoch=3")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "epoch" in r.stderr and "valid names:" in r.stderr and "anneal_cap" in r.stderr


def test_bad_data_file_names_file_and_line(tmp_path):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,rating\n1,10,5\n2,11,five\n")
    r = aerec("train", "--train", str(bad), "--test", str(bad), "--format", "csv",
              "--user-col", "user", "--item-col", "item", "--rating-col", "rating",
              "--model", "mult-dae", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ratings.csv" in r.stderr and "line 3" in r.stderr and "rating" in r.stderr


def test_run_directory_is_never_overwritten(ml100k_run):
    r = aerec("train", "--data", "ml-100k", "--model", "mult-dae", "--out", str(ml100k_run))
    assert r.returncode == 2 and "--resume" in r.stderr


def test_resume_after_sigkill_gives_the_same_model_bit_for_bit(tmp_path, shared_data_dir):
    args = ["--data", "ml-100k", "--data-dir", str(shared_data_dir), "--model", "mult-vae",
            "--set", "epochs=10", "--set", "anneal_epochs=5", "--quiet"]
    assert aerec("train", *args, "--out", str(tmp_path / "full")).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "aerec.cli", "train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoint.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and json.loads(_meta(ckpt))["epoch"] >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "metrics.json").exists()
    r = aerec("train", "--resume", str(killed), "--quiet")
    assert r.returncode == 0, r.stderr
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "full" / "metrics.json").read_text())
    mb = json.loads((killed / "metrics.json").read_text())
    assert ma["ndcg@100"] == mb["ndcg@100"] and ma["best_epoch"] == mb["best_epoch"]


def _meta(path: Path) -> str:
    """The epoch counter of a checkpoint, read from its JSON skeleton without loading tensors."""
    from aerec.persistence import load_state

    try:
        state, _ = load_state(path)
    except Exception:
        return '{"epoch": 0}'
    return json.dumps({"epoch": state["epoch"]})


def test_given_split_in_lightgcn_format(tmp_path):
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    lines_train, lines_test = [], []
    for u in range(30):
        items = [(u * 7 + k) % 40 for k in range(8)]
        lines_train.append(" ".join(map(str, [u, *items[:6]])))
        lines_test.append(" ".join(map(str, [u, *items[6:]])))
    train.write_text("\n".join(lines_train) + "\n")
    test.write_text("\n".join(lines_test) + "\n")
    run = tmp_path / "run"
    code = main(["train", "--train", str(train), "--test", str(test), "--format", "lightgcn",
                 "--model", "mult-dae", "--out", str(run), "--set", "epochs=2", "--quiet"])
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_users"] == 30
    assert json.loads((run / "run.json").read_text())["split"]["kind"] == "given"


# -- the top-level handler: one line and a fitting exit status, never a traceback ---------------
def _failing_report(monkeypatch, exc: BaseException) -> None:
    import aerec.cli.report

    def handler(args):
        print("a first line of output")
        raise exc

    monkeypatch.setattr(aerec.cli.report, "run", handler)


@pytest.mark.parametrize("exc, code, words", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (MemoryError("Unable to allocate 7.3 TiB for an array"), 1, "out of memory (Unable to allocate"),
    (OSError(28, "No space left on device", "/data/run/model.json"), 1,
     "/data/run/model.json: No space left on device (files aerec writes are replaced whole"),
    (PermissionError(13, "Permission denied", "/data/run"), 2, "/data/run: Permission denied"),
    (OSError(36, "File name too long", "/x/" + "n" * 300), 2, "File name too long"),
    (OSError(18, "Invalid cross-device link", "/a", None, "/b"), 2, "/a -> /b: Invalid cross-device"),
])
def test_errors_of_the_system_are_one_line_with_a_fitting_status(monkeypatch, capsys, exc, code,
                                                                 words):
    _failing_report(monkeypatch, exc)
    assert main(["report", "RUN"]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    _failing_report(monkeypatch, BrokenPipeError(32, "Broken pipe"))
    assert main(["report", "RUN"]) == 141
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_ends_quietly_in_a_real_pipe(tmp_path):
    # `aerec ... | head` where head has already gone: the output is written at the final flush,
    # which must happen inside the handler, not at interpreter exit.
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run([sys.executable, "-m", "aerec.cli", "data", "synth", "--users", "20",
                           "--items", "10", "--interactions", "100", "--out",
                           str(tmp_path / "s.csv")], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(write)
    assert done.returncode == 141 and done.stderr == ""


@pytest.mark.parametrize("argv", [
    [], ["train"], ["evaluate"], ["recommend"],
    ["data", "synth"], ["bench", "epoch"], ["tune"], ["report"], ["serve"],
], ids=lambda a: " ".join(a) or "aerec")
def test_help_imports_neither_torch_nor_numpy(argv):
    code = ("import sys\nfrom aerec.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'pandas') if m in sys.modules),"
            " file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.startswith("usage: aerec")
    assert done.stderr.strip() == "[]"


def test_an_argument_error_imports_no_torch():
    code = ("import sys\nfrom aerec.cli import main\ntry:\n    main(['tune', '--trials', 'x'])\n"
            "except SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"] and "invalid int value" in done.stderr
