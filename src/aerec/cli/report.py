"""``aerec report RUN_DIR [RUN_DIR ...]``: a table comparing runs, as text, Markdown and a bar plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aerec.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="compare runs: test metrics with standard errors, time",
        description="Print a table of model, dataset, test metrics (± standard error), epochs and "
        "training time for each run directory; optionally write it as Markdown and draw a bar "
        "plot of one metric (the plot needs: pip install 'aerec[plot]').",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--metrics", metavar="M,M,...",
                   help="metrics to show (default: ndcg@100, truncated_recall@20 and @50, or "
                   "rmse and mae, whichever the runs have)")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--plot", metavar="PNG", help="also draw a bar plot of one metric")
    p.add_argument("--plot-metric", metavar="M",
                   help="the metric of the bar plot (default: the first shown)")
    p.add_argument("--json", action="store_true", help="print the runs' metrics as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aerec.paths import check_writable_file

    # Where the outputs go is checked before any run is read. A report's table and plot are
    # meant to be redrawn in place as runs are added, so they replace what is there.
    if args.markdown:
        check_writable_file(args.markdown, option="--markdown", overwrite=True)
    if args.plot:
        check_writable_file(args.plot, option="--plot", overwrite=True)
    from aerec.persistence import atomic_write_bytes
    from aerec.reports import compare_runs, default_metrics, format_table

    summaries = compare_runs(args.run_dirs)
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    else:
        metrics = default_metrics(summaries)
    # A name no run has is a typo, not an empty column.
    present = {k for summary in summaries for k in summary.metrics if not k.endswith("_se")}
    for option, names in (("--metrics", metrics if args.metrics else []),
                          ("--plot-metric", [args.plot_metric] if args.plot_metric else [])):
        unknown = [m for m in names if m not in present]
        if unknown:
            raise ConfigError(f"{option}: no run has the metric {unknown[0]!r}; the runs have "
                              f"{', '.join(sorted(present)) or 'no metrics'}")
    if args.json:
        print(json.dumps([{"run": str(s.run_dir), "model": s.model, "dataset": s.dataset,
                           "metrics": s.metrics} for s in summaries], indent=2))
    else:
        print(format_table(summaries, metrics), end="")
    if args.markdown:
        atomic_write_bytes(Path(args.markdown), format_table(summaries, metrics, markdown=True).encode())
        print(f"wrote {args.markdown}")
    if args.plot:
        metric = args.plot_metric or (metrics[0] if metrics else None)
        if metric is None:
            raise ConfigError("no metric to plot: pass --plot-metric NAME")
        from aerec.plots import plot_comparison

        plot_comparison(summaries, metric, args.plot)
        print(f"wrote {args.plot}")
    return 0
