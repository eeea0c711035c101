"""A full disk on every write path of a run: one line, exit 1, earlier files kept, and the same
command (``--out`` for a half-made run, ``--resume`` after it) finishes the run as if nothing had
happened.

The fault is injected where the kernel would report it: ``os.fsync`` of the atomic write's
temporary file (JSON, the split's ``.npz``), and inside safetensors' own writer, which reports a
full disk as ``SafetensorError ... (os error 28)`` (a real full tmpfs gave exactly that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from aerec.cli import main

FAST = ["--model", "mult-dae", "--set", "epochs=3", "--set", "batch_size=64", "--set",
        "latent=8", "--set", "device=cpu", "--quiet"]

FULL_DISK = textwrap.dedent("""
    import errno, os, sys
    import aerec.persistence as persistence
    from safetensors import SafetensorError
    from aerec.cli import main

    target = sys.argv[1]
    fsync, save_file = os.fsync, persistence.save_file

    def full_fsync(fd):
        if target in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return fsync(fd)

    def full_save_file(tensors, path, metadata=None):
        if target in str(path):
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")
        return save_file(tensors, path, metadata=metadata)

    os.fsync, persistence.save_file = full_fsync, full_save_file
    sys.exit(main(sys.argv[2:]))
""")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fake_data) -> dict:
    out = tmp_path_factory.mktemp("full") / "run"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(fake_data), *FAST,
                 "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("target", [
    ".train.",               # split/train.npz
    ".ids.json.",            # split/ids.json
    ".run.json.",            # run.json
    ".checkpoint.safetensors.",
    ".model.safetensors.",   # model/ (safetensors' own writer)
    ".model.json.",
    ".history.json.",
    ".metrics.json.",
])
def test_a_full_disk_anywhere_is_one_line_and_the_same_command_finishes(
        tmp_path, fake_data, uninterrupted, target):
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    out = tmp_path / "run"
    args = ["train", "--data", "ml-100k", "--data-dir", str(fake_data), *FAST]
    r = subprocess.run([sys.executable, str(script), target, *args, "--out", str(out)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = r.stderr.strip()
    assert r.returncode == 1, err
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert "No space left on device" in err and "kept" in err, err
    assert not (out / "metrics.json").exists()
    assert not list(out.rglob("*.tmp")), "a temporary file was left"
    if (out / "run.json").exists():
        again = ["train", "--resume", str(out), "--quiet"]
    else:  # the run was being prepared: the same --out takes the half-made folder
        again = [*args, "--out", str(out)]
    assert main(again) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("ndcg@100", "recall@20", "recall@50"):
        assert metrics[key] == uninterrupted[key], key
