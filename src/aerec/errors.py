"""Typed errors of aerec.

Every error that bad input can cause is a subclass of :class:`AerecError`, so that the CLI can print
it on one line and exit non-zero instead of showing a traceback. Errors about data say *where* the
problem is: the file, the line number (1-based, as an editor shows it) and the field.
"""

from __future__ import annotations

from pathlib import Path


class AerecError(Exception):
    """Base class of the errors aerec raises on purpose."""


class DataError(AerecError, ValueError):
    """Input data that cannot be used, with its location.

    Parameters
    ----------
    message : str
        What was wrong and, where possible, what to do about it.
    path : str or Path, optional
        The file that holds the bad data.
    line : int, optional
        The 1-based line number in ``path``.
    field : str, optional
        The column or field name.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ParseError(DataError):
    """A line or value of a data file that does not follow its format."""


class EmptyDataError(DataError):
    """No interactions are left (an empty file, or everything filtered away)."""


class EmptyHistoryError(DataError):
    """A history to recommend for holds no item the model knows (it is empty, or every id is
    unknown). Recommending anyway needs an explicit fallback (``fallback="popularity"``)."""


class DownloadError(AerecError):
    """A data set could not be downloaded, verified or extracted."""


class ConfigError(AerecError, ValueError):
    """An unknown or invalid hyperparameter, option or run directory."""


class NotFittedError(AerecError, RuntimeError):
    """A model was used before ``fit`` or ``load``."""


class TrainingDivergedError(AerecError, RuntimeError):
    """The training loss became NaN or infinite."""
