"""The layout of a run directory: the one place that names its files.

::

    run.json                what was run: model, typed hyperparameters, data, preprocessing, split,
                            training options, versions
    split/                  the split as CSR .npz files plus ids.json (vocabularies, titles)
    checkpoint.safetensors  training state after the last finished epoch (for --resume)
    selection.json          with a refit (given splits): the epoch chosen on validation, the
                            validation history; refit-checkpoint.safetensors: the refit's state
    model/                  the selected model (model.json + model.safetensors)
    history.json            one record per epoch (history.png: its curves, with matplotlib)
    metrics.json            test metrics, seconds_per_epoch, epochs; its presence means "complete"
    beta_search.json        Mult-VAE's beta search, when one was run (beta_search.png: its curve)
    tensorboard/            event files of ``--log tensorboard``
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aerec.errors import ConfigError
from aerec.persistence import read_json, write_json

#: The ``format`` entry of every run.json.
RUN_FORMAT = "aerec-run"
#: Names of the temporary files of aerec.persistence's atomic writes (``.NAME.XXXXXXXX.tmp``;
#: ``.STEM.XXXXXXXX.npz`` for the split's matrices): a process killed mid-write leaves one behind.
_TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|npz)$")


class RunDir:
    """Paths of one run directory, and the reading and writing of its ``run.json``.

    Parameters
    ----------
    path : str or Path
        The run directory.
    """

    RUN = "run.json"
    SPLIT = "split"
    CHECKPOINT = "checkpoint.safetensors"
    SELECTION = "selection.json"
    REFIT_CHECKPOINT = "refit-checkpoint.safetensors"
    MODEL = "model"
    HISTORY = "history.json"
    HISTORY_PLOT = "history.png"
    METRICS = "metrics.json"
    BETA_SEARCH = "beta_search.json"
    BETA_SEARCH_PLOT = "beta_search.png"
    TENSORBOARD = "tensorboard"
    #: Entries that must be folders (everything else in the layout is a file).
    _FOLDERS = (SPLIT, MODEL, TENSORBOARD)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths ------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.path / self.RUN

    @property
    def split(self) -> Path:
        return self.path / self.SPLIT

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def selection(self) -> Path:
        return self.path / self.SELECTION

    @property
    def refit_checkpoint(self) -> Path:
        return self.path / self.REFIT_CHECKPOINT

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def history_plot(self) -> Path:
        return self.path / self.HISTORY_PLOT

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def beta_search(self) -> Path:
        return self.path / self.BETA_SEARCH

    @property
    def beta_search_plot(self) -> Path:
        return self.path / self.BETA_SEARCH_PLOT

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    # -- state ------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether a run was prepared here (its run.json exists)."""
        return self.run_json.exists()

    def is_complete(self) -> bool:
        """Whether the run finished: its model was saved and its test metrics written."""
        return self.metrics.is_file() and self.model.is_dir()

    def can_resume(self) -> bool:
        """Whether a checkpoint of an interrupted training (or refit) is there."""
        return self.checkpoint.is_file() or self.refit_checkpoint.is_file()

    def read_spec(self) -> dict[str, Any]:
        """The run's ``run.json``, checked to be an aerec run."""
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: no such run directory")
        spec = read_json(self.run_json)
        if not isinstance(spec, dict) or spec.get("format") != RUN_FORMAT:
            raise ConfigError(f"{self.run_json}: not an aerec run")
        return spec

    def write_spec(self, spec: dict[str, Any]) -> None:
        """Write ``run.json`` (atomically); ``spec`` gets the ``format`` entry."""
        write_json(self.run_json, {"format": RUN_FORMAT, **{k: v for k, v in spec.items()
                                                             if k != "format"}})

    # -- checks and cleaning ----------------------------------------------------------------------
    def check_new(self) -> None:
        """Refuse, before any work, a place where a new run cannot be written.

        Raises
        ------
        ConfigError
            When the path is a file, already holds a run, or holds an entry of the layout of the
            wrong kind (a *file* named ``model``, a folder named ``metrics.json``), or cannot be
            written (a name too long, a read-only file system, no permission).
        """
        from aerec.paths import check_writable_run_dir

        check_writable_run_dir(self.path, subdirs=())
        if self.exists():
            raise ConfigError(f"{self.path} already holds a run; use --resume {self.path} to "
                              "continue it or choose another --out")
        if not self.path.exists():
            return
        for name in (self.SPLIT, self.CHECKPOINT, self.SELECTION, self.REFIT_CHECKPOINT,
                     self.MODEL, self.HISTORY, self.METRICS, self.TENSORBOARD):
            entry = self.path / name
            folder = name in self._FOLDERS
            if entry.exists() and entry.is_dir() != folder:
                kind = "file" if folder else "folder"
                raise ConfigError(f"{entry}: a {kind} is in the way of the run's {name}; "
                                  "remove it or choose another --out")

    def remove_temp_files(self) -> list[Path]:
        """Delete what interrupted atomic writes left (the run's folder, split/ and model/).

        Returns
        -------
        list of Path
            The files removed.
        """
        removed = []
        for folder in (self.path, self.split, self.model):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if _TEMP_FILE.match(entry.name) and entry.is_file() and not entry.is_symlink():
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
        return removed
