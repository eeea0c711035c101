"""Compare finished runs: a table of model, dataset, test metrics with standard errors and time.

Each run directory is read as it was written (``run.json``, ``metrics.json``); nothing is
recomputed. :func:`format_table` gives aligned plain text or Markdown, and
:func:`aerec.plots.plot_comparison` a bar plot of one metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from aerec.persistence import read_json
from aerec.run_spec import RunSpec
from aerec.runs import read_run

#: Shown by default, when some run has them: ranking metrics (implicit models) ...
RANKING_METRICS = ("ndcg@100", "truncated_recall@20", "truncated_recall@50")
#: ... and rating metrics (explicit models).
RATING_METRICS = ("rmse", "mae")


@dataclass
class RunSummary:
    """What a report shows of one run directory."""

    run_dir: Path
    label: str
    model: str
    dataset: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the run has test metrics."""
        return bool(self.metrics)

    @property
    def total_seconds(self) -> float | None:
        return self.metrics.get("total_seconds")


def summarize_run(run_dir: str | Path, label: str | None = None) -> RunSummary:
    """Read one run directory (``ConfigError`` when it is not one)."""
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    metrics_file = run_dir / "metrics.json"
    metrics = read_json(metrics_file, expect=dict) if metrics_file.exists() else {}
    return RunSummary(run_dir, label or run_dir.name, spec.model, dataset_name(spec),
                      metrics, dict(spec.params))


def dataset_name(spec: RunSpec) -> str:
    """A short name of a run's data: the dataset, else the training file's name."""
    if spec.data.dataset is not None:
        return spec.data.dataset
    return Path(spec.data.train).name


def compare_runs(run_dirs: Sequence[str | Path]) -> list[RunSummary]:
    """Summaries of several runs, labelled by directory name (by path where names repeat)."""
    paths = [Path(p) for p in run_dirs]
    names = [p.name for p in paths]
    return [summarize_run(p, p.name if names.count(p.name) == 1 else str(p)) for p in paths]


def default_metrics(summaries: Sequence[RunSummary]) -> list[str]:
    """The metrics worth a column: the usual ranking and rating metrics some run has."""
    present = {k for s in summaries for k in s.metrics}
    return [m for m in (*RANKING_METRICS, *RATING_METRICS) if m in present]


def format_value(metrics: dict[str, Any], name: str) -> str:
    """``0.4312 ± 0.0051``, or ``-`` when the run has no such metric."""
    value = metrics.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    se = metrics.get(f"{name}_se")
    return f"{value:.4f}" + (f" ± {se:.4f}" if isinstance(se, (int, float)) else "")


def format_seconds(seconds: float | None) -> str:
    """``42.1 s``, ``12m 05s`` or ``3h 02m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def table_rows(summaries: Sequence[RunSummary], metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, as text cells."""
    header = ["run", "model", "dataset", *metrics, "epochs", "time"]
    rows = []
    for s in summaries:
        epochs = s.metrics.get("epochs")
        best = s.metrics.get("best_epoch")
        epochs_text = "-" if epochs is None else (f"{epochs} (best {best})" if best else str(epochs))
        time_text = format_seconds(s.total_seconds) if s.finished else "unfinished"
        rows.append([s.label, s.model, s.dataset, *(format_value(s.metrics, m) for m in metrics),
                     epochs_text, time_text])
    return header, rows


def format_table(summaries: Sequence[RunSummary], metrics: Sequence[str] | None = None, *,
                 markdown: bool = False) -> str:
    """The comparison table as aligned text, or as a Markdown table.

    Parameters
    ----------
    summaries : sequence of RunSummary
        From :func:`compare_runs`.
    metrics : sequence of str, optional
        Metric names (keys of ``metrics.json``); default :func:`default_metrics`.
    markdown : bool
        A GitHub-flavoured Markdown table instead of plain columns.
    """
    metrics = list(metrics) if metrics is not None else default_metrics(summaries)
    header, rows = table_rows(summaries, metrics)
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
