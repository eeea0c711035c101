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

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

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
    #: Held (flock) by the process that trains the run.
    LOCK = ".lock"
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
    def check_new(self, *, overwrite: bool = False) -> None:
        """Refuse, before any work, a place where a new run cannot be written. An empty folder,
        a half-made run (this layout's entries only, no ``run.json``) and, with ``overwrite``, a
        whole run are accepted (:meth:`clear` empties them).

        A folder that holds anything else (the user's own files, or a symlink) is never written
        into, so that no file of the user's is replaced.

        Raises
        ------
        ConfigError
            When the path is a file, already holds a run (without ``overwrite``), holds entries
            that are not a run's, or cannot be written (a name too long, a read-only file system,
            no permission).
        """
        from aerec.paths import check_writable_run_dir

        check_writable_run_dir(self.path, subdirs=())
        if self.path.is_symlink():
            raise ConfigError(f"--out {self.path}: is a symbolic link; name a new folder for the "
                              "run")
        if self.exists() and not overwrite:
            raise ConfigError(f"{self.path} already holds a run; use --resume {self.path} to "
                              "continue it, --overwrite to replace it, or choose another --out")
        if not self.path.exists():
            return
        # Without run.json only what write_run puts there first (split/) marks a half-made run:
        # a metrics.json or model/ alone may be anybody's.
        allowed = None if self.exists() else {self.SPLIT, self.LOCK}
        foreign = sorted(entry.name for entry in self.path.iterdir()
                         if not self._is_layout_entry(entry, allowed))
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise ConfigError(f"--out {self.path}: the folder holds files that are not an aerec "
                              f"run's ({shown}); nothing was written: choose a new or empty "
                              "folder")
        if self.exists():
            self.read_spec()  # an aerec run, not a file of that name: only then is it replaced

    def clear(self) -> None:
        """Empty a folder that :meth:`check_new` accepted (a half-made run, or a run to
        overwrite)."""
        import shutil

        if not self.path.is_dir():
            return
        for entry in self.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _is_layout_entry(self, entry: Path, allowed: set[str] | None = None) -> bool:
        """Whether ``entry`` (in the run's folder) is one this layout writes, of the right kind
        (among the names ``allowed``, by default all)."""
        names = allowed or {self.RUN, self.SPLIT, self.CHECKPOINT, self.SELECTION,
                            self.REFIT_CHECKPOINT, self.MODEL, self.HISTORY, self.HISTORY_PLOT,
                            self.METRICS, self.BETA_SEARCH, self.BETA_SEARCH_PLOT,
                            self.TENSORBOARD, self.LOCK}
        if entry.is_symlink():
            return False
        if entry.name in names:
            return entry.is_dir() == (entry.name in self._FOLDERS)
        return bool(_TEMP_FILE.match(entry.name)) and entry.is_file()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock (``.lock``) while training into it: a second process training the
        same run is refused at once, in one line. The kernel releases the lock on every exit,
        a crash or a kill included."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / self.LOCK, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"{self.path}: another aerec process is training this run "
                                  "(it holds .lock); wait for it to finish") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
