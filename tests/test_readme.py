"""The README, run: every fenced ``bash`` and ``python`` block, its size and its links.

What runs, and the few changes made so that it runs in seconds:

* ``python`` blocks are executed in a fresh namespace, in a temporary folder holding ``my.csv``
  (the tiny genres data of ``tests/tiny_runs.py``: items 100..159). The only rewrites allowed are
  those in :data:`PYTHON_REWRITES` (fewer epochs than the paper's 200).
* ``bash`` blocks: each ``aerec ...`` line goes through :func:`aerec.cli.main` in-process, in a
  temporary folder, with ``--set epochs=2`` added to ``aerec train --out`` lines. A block that
  trains on ``ml-100k`` uses the real data when ``AEREC_DATA_DIR`` holds it (MovieLens item ids such
  as ``--items 50,181,1`` exist only there), else the fake ML-100K of ``tests/tiny_runs.py``; lines
  naming ids the fake data lacks are then skipped, and the test says so.
* ``aerec serve`` is only parsed (its options checked): the service itself is started and queried
  by ``tests/test_serving.py``.
* ``pip install`` lines are checked, not run (they need the network): the torch pin is the one of
  ``scripts/setup-env.sh``, the extras exist in ``pyproject.toml``.
* The two set-up commands are checked to be the first two blocks and what CI runs; the main job
  (``scripts/quickstart.sh``) is run once with ``--set epochs=2``, on the real ML-100K.

A command of any other kind makes the test fail: teach this file how to run it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from aerec.cli import build_parser, main
from tiny_runs import GENRES, PER_GENRE, item_id, tiny_interactions, write_fake_ml100k

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 10_000

QUICKSTART = "AEREC_DATA_DIR=../shared/data bash scripts/quickstart.sh"
TESTS = "AEREC_DATA_DIR=../shared/data bash scripts/test.sh"

#: README text -> what runs instead. Only ever fewer epochs: training at the paper's settings
#: takes minutes, and the snippet is otherwise run verbatim.
PYTHON_REWRITES = {"MultVAE()": "MultVAE(epochs=2, seed=1)", '"epochs": 20': '"epochs": 2'}
#: Added to every ``aerec train ... --out`` line, for the same reason.
QUICK_TRAIN = ["--set", "epochs=2"]

#: Item ids of the fake data sets (my.csv and the fake ML-100K).
FAKE_ITEMS = {item_id(g, k) for g in range(len(GENRES)) for k in range(PER_GENRE)}


def blocks(lang: str) -> list[str]:
    """The README's fenced blocks of one language, in order."""
    text = README.read_text(encoding="utf-8")
    return [body for tag, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)
            if tag == lang]


def command_lines(block: str) -> list[list[str]]:
    """The commands of a bash block, as argv lists (continuations joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def real_data_dir() -> Path | None:
    """``AEREC_DATA_DIR`` (absolute) when it holds ML-100K, else None."""
    value = os.environ.get("AEREC_DATA_DIR")
    if value and (Path(value) / "ml-100k" / "u.data").is_file():
        return Path(value).resolve()
    return None


def write_my_csv(folder: Path) -> Path:
    """``my.csv``: the tiny genres data as ``user,item`` rows."""
    data = tiny_interactions()
    rows, cols = data.matrix.nonzero()
    lines = ["user,item", *(f"{data.user_ids[r]},{data.item_ids[c]}"
                            for r, c in zip(rows.tolist(), cols.tolist()))]
    path = folder / "my.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def named_items(argv: list[str]) -> set[str]:
    """Item ids named by ``--items`` / ``--item`` (``ID:RATING`` counts as ID)."""
    ids: set[str] = set()
    for flag, value in zip(argv, argv[1:]):
        if flag in ("--items", "--item"):
            ids |= {part.split(":")[0] for part in value.split(",")}
    return ids


# -- the file itself ------------------------------------------------------------------------------
def test_readme_is_short():
    size = len(README.read_bytes())
    assert size < MAX_BYTES, f"README.md is {size} bytes; move detail to docs/ or benchmarks/"


def test_readme_links_every_doc_and_results_file():
    text = README.read_text(encoding="utf-8")
    targets = set(re.findall(r"\]\(([^)#\s]+)", text))
    pages = [p.relative_to(ROOT).as_posix() for p in (*sorted((ROOT / "docs").glob("*.md")),
                                                      *sorted((ROOT / "benchmarks").glob("RESULTS-*.md")))]
    missing = [page for page in pages if page not in targets]
    assert not missing, f"README.md does not link {missing}"


def test_readme_relative_links_resolve():
    text = README.read_text(encoding="utf-8")
    broken = [target for target in re.findall(r"\]\(([^)#\s]+)", text)
              if "://" not in target and not target.startswith("mailto:")
              and not (README.parent / target).exists()]
    assert not broken, f"README.md links to missing files: {broken}"


# -- set-up ---------------------------------------------------------------------------------------
def test_setup_commands_come_first_and_are_what_ci_runs():
    first = [block.strip() for block in blocks("bash")[:2]]
    assert first == [QUICKSTART, TESTS]
    for command in (QUICKSTART, TESTS):
        assert (ROOT / command.split()[-1]).is_file()
    assert TESTS in (ROOT / ".ci" / "run").read_text()


def test_pip_lines_name_the_pinned_torch_and_existing_extras():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    setup_env = (ROOT / "scripts" / "setup-env.sh").read_text()
    pips = [argv for block in blocks("bash") for argv in command_lines(block)
            if argv[:2] == ["pip", "install"]]
    assert pips, "the README has no install line"
    for argv in pips:
        for spec in argv[2:]:
            if spec == "-e":
                continue
            if spec.startswith("torch=="):
                assert f'"{spec}"' in setup_env, f"{spec} is not the pin of scripts/setup-env.sh"
            else:
                match = re.fullmatch(r"\.\[([\w,-]+)\]", spec)
                assert match, f"unexpected pip argument {spec!r}"
                assert set(match[1].split(",")) <= extras, f"{spec}: extras are {sorted(extras)}"


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    data_dir = real_data_dir()
    if data_dir is None:
        pytest.skip("quickstart.sh recommends for MovieLens ids: needs the real ML-100K "
                    "(set AEREC_DATA_DIR)")
    env = {**os.environ, "AEREC_DATA_DIR": str(data_dir), "RUN_DIR": str(tmp_path / "run"),
           "AEREC_QUICKSTART_ARGS": " ".join(QUICK_TRAIN), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "quickstart.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert done.stdout.count("recommendations for") == 2


# -- snippets and commands ------------------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_my_csv(tmp_path)
    run_python_block(index)


def run_python_block(index: int) -> None:
    """Run one python block in the current folder, then the inline calls on its names."""
    code = blocks("python")[index]
    for text, replacement in PYTHON_REWRITES.items():
        code = code.replace(text, replacement)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md, python block {index + 1}", "exec"), namespace)
    # The calls the prose names in inline code right after the block (save, load) work on its model.
    for call in inline_calls(namespace):
        eval(call, namespace)


#: The folder the README's Python saves a model to; a bash block naming it runs after the python
#: blocks, in their folder.
SAVED_MODEL = "my-model"


def inline_calls(namespace: dict) -> list[str]:
    """Inline-code calls in the README on a name a python block defined (``model.save(...)``)."""
    text = README.read_text(encoding="utf-8")
    return [call for call in re.findall(r"`(\w+\.\w+\([^`]*\))`", text)
            if call.split(".")[0] in namespace]


def aerec_blocks() -> list[str]:
    """Bash blocks past the two set-up commands."""
    return blocks("bash")[2:]


@pytest.mark.parametrize("index", range(len(aerec_blocks())))
def test_bash_block_runs(index, tmp_path, monkeypatch, capsys):
    lines = command_lines(aerec_blocks()[index])
    real = real_data_dir()
    uses_movielens = any("ml-100k" in argv for argv in lines)
    data_dir = real if uses_movielens and real else tmp_path / "data"
    if data_dir != real:
        write_fake_ml100k(data_dir)
    monkeypatch.setenv("AEREC_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    write_my_csv(tmp_path)
    if any(SAVED_MODEL in argv for argv in lines):
        for k in range(len(blocks("python"))):
            run_python_block(k)
        assert (tmp_path / SAVED_MODEL / "model.json").is_file()
    skipped = []
    for argv in lines:
        if argv[:2] == ["pip", "install"]:
            continue  # checked by test_pip_lines_name_the_pinned_torch_and_existing_extras
        assert argv[0] == "aerec", f"test_readme.py cannot run {shlex.join(argv)!r}"
        args = argv[1:]
        if args[0] == "serve":
            build_parser("serve").parse_args(args)  # tests/test_serving.py runs the service
            continue
        if data_dir != real and not named_items(args) <= FAKE_ITEMS:
            skipped.append(shlex.join(argv))
            continue
        if args[0] == "train" and "--out" in args:
            args = args + QUICK_TRAIN
        code = main(args)
        out, err = capsys.readouterr()
        assert code == 0, f"{shlex.join(argv)} exited {code}:\n{out[-2000:]}\n{err[-2000:]}"
    for argv in lines:
        if argv[:2] == ["aerec", "train"] and "--out" in argv:
            run = tmp_path / argv[argv.index("--out") + 1]
            missing = [name for name in run_dir_names() if not (run / name).exists()]
            assert not missing, f"the README says a run directory holds {missing}; {run} does not"
    if skipped:
        pytest.skip(f"needs the real ML-100K (set AEREC_DATA_DIR): {skipped}")


def run_dir_names() -> list[str]:
    """The files the README's sentence "A run directory holds ..." names."""
    text = README.read_text(encoding="utf-8")
    sentence = re.search(r"A run directory holds(.*?)\.\s", text, re.S)
    assert sentence, "the README no longer describes a run directory"
    return [name.rstrip("/") for name in re.findall(r"`([^`]+)`", sentence[1])]
