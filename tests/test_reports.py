"""Run reports: the comparison table (known values), Markdown, bar plot, training curves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aerec.cli import main
from aerec.extras import MissingExtraError
from aerec.persistence import read_json, write_json
from aerec.plots import plot_comparison, plot_history, write_history_plot
from aerec.reports import (compare_runs, default_metrics, format_seconds, format_table,
                           format_value, summarize_run)
from aerec.runs import RUN_FORMAT

from tiny_runs import make_tiny_run

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path: Path, model: str, dataset: str, metrics: dict | None) -> Path:
    """A run directory with hand-written metrics (no training)."""
    write_json(path / "run.json", {"format": RUN_FORMAT, "model": model, "params": {},
                                   "data": {"dataset": dataset}, "split": {"kind": "strong"}})
    if metrics is not None:
        write_json(path / "metrics.json", metrics)
    return path


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [
        fake_run(tmp_path / "vae", "mult-vae", "ml-20m", {
            "ndcg@100": 0.42625, "ndcg@100_se": 0.00214, "truncated_recall@20": 0.39512,
            "truncated_recall@20_se": 0.0031, "truncated_recall@50": 0.53701,
            "truncated_recall@50_se": 0.0029, "epochs": 200, "best_epoch": 187,
            "total_seconds": 4321.0}),
        fake_run(tmp_path / "dae", "mult-dae", "ml-20m", {
            "ndcg@100": 0.4197, "ndcg@100_se": 0.0021, "truncated_recall@20": 0.387,
            "truncated_recall@20_se": 0.003, "epochs": 200, "best_epoch": 90,
            "total_seconds": 905.4}),
        fake_run(tmp_path / "wip", "mult-vae", "ml-1m", None),
    ]


def test_values_carry_their_standard_error():
    assert format_value({"ndcg@100": 0.42625, "ndcg@100_se": 0.00214}, "ndcg@100") == "0.4263 ± 0.0021"
    assert format_value({"rmse": 0.9}, "rmse") == "0.9000"
    assert format_value({}, "rmse") == "-"
    assert format_value({"rmse": float("nan")}, "rmse") == "-"


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (42.14, "42.1 s"), (725.0, "12m 05s"), (10920.0, "3h 02m"), (59.96, "60.0 s")])
def test_durations_read_naturally(seconds, text):
    assert format_seconds(seconds) == text


EXPECTED_PLAIN = (
    "run  model     dataset         ndcg@100  truncated_recall@20  truncated_recall@50          epochs        time\n"
    "---  --------  -------  ---------------  -------------------  -------------------  --------------  ----------\n"
    "vae  mult-vae  ml-20m   0.4263 ± 0.0021      0.3951 ± 0.0031      0.5370 ± 0.0029  200 (best 187)      1h 12m\n"
    "dae  mult-dae  ml-20m   0.4197 ± 0.0021      0.3870 ± 0.0030                    -   200 (best 90)     15m 05s\n"
    "wip  mult-vae  ml-1m                  -                    -                    -               -  unfinished\n"
)


def test_plain_table(runs):
    assert format_table(compare_runs(runs)) == EXPECTED_PLAIN


def test_markdown_table(runs):
    assert format_table(compare_runs(runs[:2]), ["ndcg@100"], markdown=True) == (
        "| run | model | dataset | ndcg@100 | epochs | time |\n"
        "|---|---|---|---:|---:|---:|\n"
        "| vae | mult-vae | ml-20m | 0.4263 ± 0.0021 | 200 (best 187) | 1h 12m |\n"
        "| dae | mult-dae | ml-20m | 0.4197 ± 0.0021 | 200 (best 90) | 15m 05s |\n"
    )


def test_default_metrics_follow_what_the_runs_have(tmp_path, runs):
    assert default_metrics(compare_runs(runs)) == [
        "ndcg@100", "truncated_recall@20", "truncated_recall@50"]
    rating = fake_run(tmp_path / "autorec", "i-autorec", "ml-1m", {"rmse": 0.831, "mae": 0.65})
    assert default_metrics(compare_runs([rating])) == ["rmse", "mae"]
    assert default_metrics(compare_runs([runs[0], rating])) == [
        "ndcg@100", "truncated_recall@20", "truncated_recall@50", "rmse", "mae"]


def test_runs_with_the_same_folder_name_are_told_apart(tmp_path):
    a = fake_run(tmp_path / "a" / "run", "mult-vae", "x", {})
    b = fake_run(tmp_path / "b" / "run", "mult-dae", "y", {})
    assert [s.label for s in compare_runs([a, b])] == [str(a), str(b)]
    assert summarize_run(a).dataset == "x" and not summarize_run(a).finished


def test_report_command_writes_markdown_and_a_bar_plot(runs, tmp_path, capsys):
    md, png = tmp_path / "out" / "report.md", tmp_path / "out" / "ndcg.png"
    assert main(["report", *map(str, runs), "--markdown", str(md), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(EXPECTED_PLAIN)
    assert md.read_text() == format_table(compare_runs(runs), markdown=True)
    assert png.read_bytes()[:8] == PNG


def test_report_command_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not" in capsys.readouterr().err


def test_bar_plot_without_the_metric_still_draws(runs, tmp_path):
    path = plot_comparison(compare_runs(runs), "rmse", tmp_path / "rmse.png")
    assert path.read_bytes()[:8] == PNG


def test_history_plot_of_any_figures(tmp_path):
    history = [{"epoch": e, "loss": 10.0 / e, "nll": 9.0 / e, "kl": 0.1 * e, "beta": min(0.2, 0.05 * e),
                "val_ndcg@100": 0.1 * e, "val_n_users": 30, "seconds": 0.5, "note": "text"}
               for e in range(1, 6)]
    assert plot_history(history, tmp_path / "h.png", best_epoch=5).read_bytes()[:8] == PNG
    only_rmse = [{"epoch": 1, "val_rmse": 0.9}, {"epoch": 2, "val_rmse": float("nan")}]
    assert plot_history(only_rmse, tmp_path / "r.png").read_bytes()[:8] == PNG
    assert plot_history([], tmp_path / "empty.png").read_bytes()[:8] == PNG


def test_without_matplotlib_runs_skip_the_plot_and_commands_name_the_extra(monkeypatch, runs, tmp_path,
                                                                         capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert write_history_plot(tmp_path / "history.png", [{"epoch": 1, "loss": 1.0}]) is None
    assert not (tmp_path / "history.png").exists()
    with pytest.raises(MissingExtraError, match=r"pip install 'aerec\[plot\]'"):
        plot_comparison(compare_runs(runs), "ndcg@100", tmp_path / "x.png")
    assert main(["report", str(runs[0]), "--plot", str(tmp_path / "x.png")]) == 2
    assert "aerec[plot]" in capsys.readouterr().err


def test_a_trained_run_writes_its_history_and_curves(tmp_path):
    run = make_tiny_run(tmp_path / "run", epochs=3)
    history = read_json(run / "history.json")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert {"loss", "nll", "kl", "beta", "val_ndcg@100", "seconds"} <= set(history[0])
    assert (run / "history.png").read_bytes()[:8] == PNG
    summary = summarize_run(run)
    assert (summary.model, summary.dataset, summary.metrics["epochs"]) == ("mult-vae", "tiny-genres", 3)
