"""Typed, flat hyperparameter configurations.

Each model declares a frozen dataclass of its hyperparameters. Values arrive from Python keyword
arguments, from ``--set name=value`` on the command line, or from a run directory's JSON; all three
go through :func:`make_config`, so an unknown name is always an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from aerec.errors import ConfigError


def make_config(config_cls: type, values: dict[str, Any], *, owner: str = "model") -> Any:
    """Build ``config_cls`` from ``values``, converting strings to each field's type.

    Raises
    ------
    ConfigError
        For an unknown name (listing the valid ones) or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for {owner}; "
            f"valid names: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(config_cls)
    converted = {name: _convert(name, value, hints[name]) for name, value in values.items()}
    for name, value in converted.items():
        _check_value(name, value, owner)
    try:
        return config_cls(**converted)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"invalid hyperparameters for {owner}: {exc}") from None


#: Rules every model's hyperparameter of that name obeys, checked before anything is written.
_POSITIVE = ("lr", "batch_size")
#: ``lam``: every model's regularisation weight (L2, or EASE's ridge) is a penalty, never a reward.
_NOT_NEGATIVE = ("epochs", "seed", "lam")
_INT64_MAX = 2**63 - 1


def _check_value(name: str, value: Any, owner: str) -> None:
    """Refuse values no model can use: non-finite numbers, integers beyond int64, a learning rate
    or batch size that is not positive, a negative seed or epoch count."""
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{name} must be a finite number, got {item!r} ({owner})")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > _INT64_MAX:
            raise ConfigError(f"{name} is too large: {item} ({owner})")
    if value is None or isinstance(value, (bool, str, tuple)):
        return
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r} ({owner})")
    if name in _NOT_NEGATIVE and value < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r} ({owner})")


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """Parse ``["epochs=50", "lr=0.001"]`` into a dict of strings."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set expects name=value, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


def _convert(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for arg in non_none:
            try:
                return _convert(name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: cannot convert {value!r}")
    if origin is tuple:
        item_type = args[0] if args else str
        if isinstance(value, str):
            parts = [p for p in value.replace(" ", "").split(",") if p]
        else:
            parts = list(value)
        return tuple(_convert(name, p, item_type) for p in parts)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(as_float)
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if hint is str:
        return str(value)
    return value
