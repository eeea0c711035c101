"""Figures as PNG files: a run's training curves and a bar plot comparing runs (``aerec[plot]``).

matplotlib is imported only when a figure is drawn, and only through its object-oriented API
(``matplotlib.figure.Figure``), so no pyplot state, no global backend choice and no display is
involved: the figures render headless with Agg wherever they are drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from aerec.extras import require

if TYPE_CHECKING:  # pragma: no cover
    from aerec.reports import RunSummary

#: Figures that are not a loss part: plotted on their own panels, or not at all.
_NOT_LOSS = {"epoch", "beta", "kl", "seconds", "train_seconds"}
_LABELS = {"loss": "loss", "nll": "reconstruction (NLL)", "kl": "KL", "beta": "beta"}


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (the ``plot`` extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    require("matplotlib", "plot", "plotting")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, *, title: str = "",
                 best_epoch: int | None = None) -> Path:
    """Draw a run's per-epoch curves to a PNG file.

    Panels (each only when the history has its figures): the loss and its parts; KL and the KL
    weight beta; the validation metrics; seconds per epoch. A dashed line marks ``best_epoch``.

    Parameters
    ----------
    history : sequence of dict
        One record per epoch, as ``history.json`` holds them (``epoch``, ``loss``, ``nll``,
        ``kl``, ``beta``, ``val_<metric>``, ``seconds``, ...).
    path : str or Path
        The PNG file to write.
    title : str
        Figure title.
    best_epoch : int, optional
        The epoch whose weights were kept.

    Returns
    -------
    Path
        ``path``.
    """
    keys = [k for k in dict.fromkeys(k for rec in history for k in rec)
            if any(_is_number(rec.get(k)) for rec in history)]
    panels = [
        ("loss", [k for k in keys if k not in _NOT_LOSS and not k.startswith("val_")]),
        ("KL and beta", [k for k in ("kl", "beta") if k in keys]),
        ("validation", [k for k in keys if k.startswith("val_") and not k.endswith("n_users")]),
        ("seconds per epoch", [k for k in ("seconds",) if k in keys]),
    ]
    panels = [(name, series) for name, series in panels if series]
    columns = 2 if len(panels) > 2 else max(len(panels), 1)
    rows = -(-max(len(panels), 1) // columns)
    fig = _figure(5.0 * columns, 3.3 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for spare in axes[len(panels):] if panels else ():
        spare.set_visible(False)
    from matplotlib.ticker import MaxNLocator

    epochs = [rec.get("epoch", i + 1) for i, rec in enumerate(history)]
    for ax, (name, series) in zip(axes, panels):
        for key in series:
            points = [(e, rec[key]) for e, rec in zip(epochs, history) if _is_number(rec.get(key))]
            if not points:
                continue
            xs, ys = zip(*points)
            twin = name == "KL and beta" and key == "beta" and "kl" in series
            target = ax.twinx() if twin else ax
            target.plot(xs, ys, marker="." if len(xs) < 30 else None,
                        color="tab:orange" if twin else None,
                        label=_LABELS.get(key, key.removeprefix("val_")))
            if twin:
                target.set_ylabel("beta")
                target.legend(loc="lower right", fontsize="small")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "seconds per epoch":
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if not panels:
        axes[0].text(0.5, 0.5, "no epochs recorded", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return _save_png(fig, path)


def write_history_plot(path: str | Path, history: Sequence[dict[str, Any]],
                       title: str = "", best_epoch: int | None = None) -> Path | None:
    """The curves of ``history`` at ``path`` when matplotlib is installed and there is a history;
    ``None`` (and nothing written) otherwise."""
    if not matplotlib_available() or not history:
        return None
    return plot_history(history, path, title=title, best_epoch=best_epoch)


def plot_comparison(summaries: Sequence[RunSummary], metric: str, path: str | Path) -> Path:
    """A horizontal bar per run of ``metric``, with its standard error as an error bar.

    Runs without the metric are left out.
    """
    rows = [(s.label, s.metrics[metric], s.metrics.get(f"{metric}_se") or 0.0)
            for s in summaries if _is_number(s.metrics.get(metric))]
    fig = _figure(7.0, 1.2 + 0.45 * max(len(rows), 1))
    ax = fig.subplots()
    if rows:
        labels, values, errors = zip(*rows)
        positions = list(range(len(rows)))[::-1]  # first run on top
        ax.barh(positions, values, xerr=errors, color="tab:blue", alpha=0.8, capsize=3)
        ax.set_yticks(positions, labels)
        for y, v, e in zip(positions, values, errors):
            ax.text(v + e, y, f"  {v:.4f}", va="center", ha="left", fontsize="small")
        ax.margins(x=0.15)
    else:
        ax.text(0.5, 0.5, f"no run has {metric}", ha="center", va="center")
    ax.set_xlabel(f"{metric} (± standard error)")
    ax.grid(axis="x", alpha=0.3)
    return _save_png(fig, path)


def _save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically: a reader (or a full disk) never sees half an image."""
    import io

    from aerec.persistence import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
