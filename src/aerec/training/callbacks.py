"""Callbacks: functions that receive the figures of each finished epoch.

A callback is any callable taking one dict, the epoch's record (``epoch``, the loss parts, the
validation metrics such as ``val_ndcg@100``, ``seconds``). It may also have ``on_train_begin(total,
first)`` (epochs in all, and the first one this call will run, more than 1 after a resume) and
``on_train_end()``; the :class:`~aerec.training.Trainer` calls them when they exist::

    from aerec import MultDAE
    from aerec.training import Trainer

    best = []

    def keep_best(record):
        best.append(record["val_ndcg@100"])

    Trainer(callbacks=[keep_best]).fit(MultDAE(epochs=20), split.train, split.validation)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from aerec.errors import ConfigError

#: A callback receives the dict of one epoch's figures.
Callback = Callable[[dict[str, Any]], None]

#: The figures the progress bar shows, when a record has them.
_SHOWN = ("loss", "val_ndcg@100", "val_rmse", "beta")


class ProgressBar:
    """A tqdm bar over epochs (on stderr) that shows the latest loss and validation figure."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, total: int, first: int = 0) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=first, unit="epoch", file=sys.stderr,
                        dynamic_ncols=True)

    def __call__(self, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        shown = {k: f"{v:.4g}" for k, v in record.items() if k in _SHOWN and isinstance(v, float)}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoardLogger:
    """Writes every number of each epoch's record as a TensorBoard scalar (needs ``tensorboard``:
    ``pip install 'aerec[tensorboard]'``).

    Parameters
    ----------
    log_dir : str or Path
        Folder of the event files (``tensorboard --logdir`` it).
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("TensorBoard logging needs the tensorboard package: "
                              "pip install 'aerec[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for name, value in record.items():
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, float(value), step)
        self.writer.flush()

    def on_train_end(self) -> None:
        self.writer.close()
