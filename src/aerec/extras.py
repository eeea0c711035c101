"""Optional extras: import a package that only some commands need, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from aerec.errors import AerecError


class MissingExtraError(AerecError, ImportError):
    """A feature needs an optional dependency that is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"optuna"``.
    extra : str
        The aerec extra that installs it: ``serve``, ``tune`` or ``plot``.
    feature : str
        What needs it, for the message (``"aerec tune"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{feature} needs the optional package {module.split('.')[0]!r}; "
            f"install it with: pip install 'aerec[{extra}]'"
        ) from None
