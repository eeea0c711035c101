"""What ``recommend``, ``similar``, ``serve`` and ``export`` open: a run or a model directory.

A *run directory* (``aerec train``, :func:`aerec.runs.train_run`) holds the model, the split and
``run.json``: it knows its users and what each one already has. A *model directory*
(``model.save(DIR)`` from Python: ``model.json`` and ``model.safetensors``) holds the model alone:
its items, their titles and how many training users had each (the popularity fallback), but no
users, so recommendations for a user by id need a run directory; any history of item ids works
with both. :func:`open_model_source` tells the two apart in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np

from aerec.data.splits import Split
from aerec.errors import ConfigError
from aerec.models import Recommender
from aerec.run_spec import RunSpec

__all__ = ["ModelSource", "open_model_source"]

#: The file that makes a folder a model directory (written last by ``model.save``).
MODEL_JSON = "model.json"


@dataclass(frozen=True)
class ModelSource:
    """A loaded model and, for a run directory, its run.

    Attributes
    ----------
    path : Path
        The directory opened.
    model : Recommender
        The run's selected model, or the saved model.
    spec : RunSpec or None
        The run's spec (``run.json``); None for a model directory.
    split : Split or None
        The run's split; None for a model directory.
    """

    path: Path
    model: Recommender
    spec: RunSpec | None = None
    split: Split | None = None

    @property
    def is_run(self) -> bool:
        """Whether this is a run directory (it knows its users)."""
        return self.split is not None

    @property
    def titles(self) -> dict[str, str]:
        """Raw item id -> title (empty when the data had none)."""
        if self.split is not None:
            return self.split.train.item_titles
        return dict(getattr(self.model, "item_titles_", None) or {})

    @property
    def n_users(self) -> int:
        """Training users of a run; 0 for a model directory, which keeps none."""
        return self.split.train.n_users if self.split is not None else 0

    def item_counts(self) -> np.ndarray:
        """Training users per item, as the model saved them (the rows it learned, so they match
        its popularity fallback); for a model saved before the counts were kept, the run's
        training rows, or zeros."""
        counts = getattr(self.model, "item_counts_", None)
        if counts is not None:
            return np.asarray(counts, np.int64)
        if self.split is not None:
            matrix = self.split.train.matrix
            return np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.int64)
        return np.zeros(self.model.n_items_, np.int64)

    def dataset(self) -> str:
        """A short name of the data: the run's data set or file, else the model directory's name."""
        if self.spec is not None:
            from aerec.reports import dataset_name

            return dataset_name(self.spec)
        return f"{self.path.name} (model directory)"

    def require_run(self, what: str) -> Split:
        """The split, or a one-line error saying that ``what`` needs a run directory."""
        if self.split is None:
            raise ConfigError(
                f"{self.path} is a model directory (model.save): it keeps no users, so {what} "
                "needs a run directory (aerec train --out DIR); give a history of item ids "
                "instead (--items)")
        return self.split


def open_model_source(path: str | Path, device: str = "auto") -> ModelSource:
    """Open a run directory (``run.json``) or a model directory (``model.json``).

    Raises
    ------
    ConfigError
        When ``path`` is not a folder, or holds neither.
    DataError
        When the model or run files are damaged (see :func:`aerec.models.storage.load_model`).
    """
    from aerec.run_dir import RunDir
    from aerec.runs import load_run

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run or model directory")
    if RunDir(path).exists():
        spec, split, model = load_run(path, device=device)
        return ModelSource(path, model, spec, split)
    if (path / MODEL_JSON).exists():
        return ModelSource(path, Recommender.load(path, device=device))
    raise ConfigError(f"{path}: neither a run directory (run.json, from aerec train) nor a model "
                      f"directory ({MODEL_JSON}, from model.save)")
