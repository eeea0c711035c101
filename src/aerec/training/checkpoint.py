"""Checkpoints of a :class:`~aerec.training.state.TrainState`: everything needed to resume a run
so that it ends bit for bit as a run that was never interrupted (weights, optimisers, the update
counter, the best weights so far, the history and both random generators' states)."""

from __future__ import annotations

from pathlib import Path

from aerec.errors import ConfigError, DataError
from aerec.persistence import first_line, load_state, save_state
from aerec.training.state import TrainState


def save_checkpoint(state: TrainState, path: Path, model_name: str) -> None:
    """Atomically write ``state`` to ``path`` (safetensors, no pickle)."""
    save_state(path, {
        "module": state.module.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
        "generator": state.generator.get_state(),
        "rng": state.rng.bit_generator.state,
        "epoch": state.epoch,
        "update_count": state.update_count,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "best_weights": state.best_weights,
        "history": state.history,
    }, metadata={"model": model_name})


def restore_checkpoint(state: TrainState, path: Path, model_name: str) -> None:
    """Load a checkpoint written by :func:`save_checkpoint` into ``state`` (in place)."""
    saved, meta = load_state(path)
    if meta.get("model") != model_name:
        raise ConfigError(f"{path}: checkpoint of {meta.get('model')!r}, not {model_name!r}")
    try:
        state.module.load_state_dict(saved["module"])
        for name, opt in state.optimizers.items():
            opt.load_state_dict(saved["optimizers"][name])
        state.generator.set_state(saved["generator"].cpu())
        state.rng.bit_generator.state = saved["rng"]
        state.epoch = int(saved["epoch"])
        state.update_count = int(saved["update_count"])
        state.best_value = saved["best_value"]
        state.best_epoch = saved["best_epoch"]
        best = saved["best_weights"]
        state.best_weights = None if best is None else {k: v.to(state.device) for k, v in best.items()}
        history = saved["history"]
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise TypeError("its history is not a list of epoch records")
        if state.epoch < 0 or state.epoch != len(history):
            raise ValueError(f"its epoch ({state.epoch}) does not match its history "
                             f"({len(history)} epochs)")
        state.history[:] = history
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # A checkpoint that parses but does not fit this model (another size, a field of the
        # wrong type, a generator state of the wrong length).
        raise DataError(f"{path}: not a checkpoint of this run ({first_line(exc)})") from None
