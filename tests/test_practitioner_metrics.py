"""Precision, hit rate, MRR, MAP, coverage, popularity and novelty: hand-computed cases, their
standard errors, ``evaluate_ranking(metrics=...)``, ``aerec evaluate --ks --metrics``, and a
cross-check of the ranking metrics against ranx on random data.

The hand case: three users, six items, K = 3 (and K = 1), ranks counted from 1.

    user  top 3     targets       hits   P@3   HR@3  RR@3  AP@3 = sum P@r at hits / min(3, #t)
    0     0 1 2     {1, 4}        . x .  1/3   1     1/2   (1/2) / 2           = 1/4
    1     3 4 5     {0, 1, 3, 5}  x . x  2/3   1     1     (1/1 + 2/3) / 3     = 5/9
    2     0 3 1     {2}           . . .  0     0     0     0

Training popularity (4 training users): item 0 had 4 users, items 1 and 3 had 2, items 2 and 4
had 1, item 5 none; shares 1, 1/2, 1/4, 1/2, 1/4, 0 and self-information -log2(share)
0, 1, 2, 1, 2 bits, and 2 bits for item 5 (floored at the least popular seen item, 1/4).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.cli import main
from aerec.evaluation import DEFAULT_RANKING_METRICS, RANKING_METRICS, evaluate_ranking
from aerec.metrics import (
    average_popularity_at_k,
    hit_rate_at_k,
    item_coverage,
    item_popularity,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty_at_k,
    precision_at_k,
    summarize,
    top_k,
)
from tiny_runs import make_tiny_run, write_fake_ml100k

EXACT = dict(rel=1e-12, abs=1e-12)

TOP = np.array([[0, 1, 2], [3, 4, 5], [0, 3, 1]])
TARGETS = sp.csr_matrix(np.array([
    [0, 1, 0, 0, 1, 0],
    [1, 1, 0, 1, 0, 1],
    [0, 0, 1, 0, 0, 0],
], np.float32))
TRAIN = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 1, 0],
    [1, 1, 0, 1, 0, 0],
    [1, 0, 1, 0, 0, 0],
    [1, 0, 0, 1, 0, 0],
], np.float32))
SHARES = [1, 1 / 2, 1 / 4, 1 / 2, 1 / 4, 0]


def assert_values(actual, expected):
    assert np.asarray(actual).shape == (len(expected),)
    assert list(actual) == pytest.approx(expected, **EXACT)


def test_precision_hit_rate_mrr_and_map_by_hand():
    assert_values(precision_at_k(TOP, TARGETS), [1 / 3, 2 / 3, 0])
    assert_values(hit_rate_at_k(TOP, TARGETS), [1, 1, 0])
    assert_values(mrr_at_k(TOP, TARGETS), [1 / 2, 1, 0])
    assert_values(map_at_k(TOP, TARGETS), [1 / 4, 5 / 9, 0])
    # K = 1: only user 1's first item (3) is a target; AP@1 divides by min(1, 4) = 1.
    first = TOP[:, :1]
    assert_values(precision_at_k(first, TARGETS), [0, 1, 0])
    assert_values(hit_rate_at_k(first, TARGETS), [0, 1, 0])
    assert_values(mrr_at_k(first, TARGETS), [0, 1, 0])
    assert_values(map_at_k(first, TARGETS), [0, 1, 0])


def test_map_divides_by_min_of_k_and_targets():
    # Two hits at ranks 1 and 3 of 4, with 2 targets then with 6: AP = (1 + 2/3) / 2, then / 4.
    top = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    targets = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 0, 0, 0],
                                      [1, 0, 1, 0, 1, 1, 1, 1]], np.float32))
    assert_values(map_at_k(top, targets), [(1 + 2 / 3) / 2, (1 + 2 / 3) / 4])
    # A perfect list of K targets scores 1 however many targets the user has.
    assert_values(map_at_k(np.array([[4, 5, 6, 7]]), targets[1]), [1.0])


def test_users_without_targets_are_nan_and_tensors_are_accepted():
    targets = sp.csr_matrix((2, 6), dtype=np.float32)
    for metric in (precision_at_k, hit_rate_at_k, mrr_at_k, map_at_k):
        assert np.isnan(metric(TOP[:2], targets)).all()
        assert_values(metric(torch.from_numpy(TOP), TARGETS), list(metric(TOP, TARGETS)))


def test_coverage_popularity_and_novelty_by_hand():
    assert item_coverage(TOP, 6) == 1.0
    assert item_coverage(TOP[:, :1], 6) == pytest.approx(2 / 6, **EXACT)  # items 0 and 3
    assert item_coverage(TOP[:, :1], 10) == pytest.approx(2 / 10, **EXACT)
    assert math.isnan(item_coverage(np.zeros((0, 3), np.int64), 6))
    assert_values(item_popularity(TRAIN), SHARES)
    # user 0: (1 + 1/2 + 1/4) / 3, user 1: (1/2 + 1/4 + 0) / 3, user 2: (1 + 1/2 + 1/2) / 3
    assert_values(average_popularity_at_k(TOP, SHARES), [7 / 12, 1 / 4, 2 / 3])
    # user 0: (0 + 1 + 2) / 3, user 1: (1 + 2 + 2) / 3 with item 5 floored, user 2: (0 + 1 + 1) / 3
    assert_values(novelty_at_k(TOP, SHARES), [1, 5 / 3, 2 / 3])


def test_item_popularity_counts_each_user_once_and_checks_its_input():
    # COO with a repeated (user, item) pair and an explicit zero: neither adds a user.
    train = sp.coo_matrix((np.array([1, 1, 0, 1], np.float32),
                           (np.array([0, 0, 1, 1]), np.array([2, 2, 0, 2]))), shape=(4, 3))
    assert_values(item_popularity(train), [0, 0, 2 / 4])
    with pytest.raises(TypeError, match="scipy sparse"):
        item_popularity(np.ones((2, 2)))
    with pytest.raises(ValueError, match="shares of training users"):
        novelty_at_k(TOP, [4, 2, 1, 2, 1, 0])  # counts instead of shares
    with pytest.raises(ValueError, match="zero for every item"):
        novelty_at_k(TOP, np.zeros(6))
    with pytest.raises(ValueError, match="outside"):
        average_popularity_at_k(TOP, SHARES[:5])


def test_standard_errors_on_the_hand_case():
    # P@3 = 1/3, 2/3, 0: mean 1/3, deviations 0, 1/3, -1/3, std = sqrt(2/27), se = std / sqrt(3).
    # HR@3 = 1, 1, 0: mean 2/3, std = sqrt(2)/3, se = sqrt(2/27).
    # RR@3 = 1/2, 1, 0: mean 1/2, deviations 0, 1/2, -1/2, std = sqrt(1/6), se = sqrt(1/18).
    s = summarize({"p": precision_at_k(TOP, TARGETS), "hr": hit_rate_at_k(TOP, TARGETS),
                   "rr": mrr_at_k(TOP, TARGETS)})
    assert s["p"] == pytest.approx(1 / 3, **EXACT)
    assert s["p_se"] == pytest.approx(math.sqrt(2) / 9, **EXACT)
    assert s["hr_se"] == pytest.approx(math.sqrt(2 / 27), **EXACT)
    assert s["rr_se"] == pytest.approx(math.sqrt(1 / 18), **EXACT)


# -- evaluate_ranking ------------------------------------------------------------------------------
# Scores that give TOP once user 0's fold-in item 5 (scored highest) is excluded; a fourth user
# without targets is not evaluated.
SCORES = np.array([
    [0.9, 0.8, 0.7, 0.1, 0.2, 0.95],
    [0.1, 0.2, 0.3, 0.9, 0.8, 0.7],
    [0.9, 0.7, 0.1, 0.8, 0.2, 0.3],
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
])
FOLD_IN = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 1], [0] * 6, [0] * 6, [1, 0, 0, 0, 0, 0]],
                                 np.float32))
TARGETS4 = sp.vstack([TARGETS, sp.csr_matrix((1, 6), dtype=np.float32)]).tocsr()


def evaluate(**options):
    """``evaluate_ranking`` on the hand case in batches of two users, so that coverage has to
    join the items of two batches (users 0 and 1, then 2: the users with targets, in order)."""
    served = []

    def score_fn(batch):
        start = sum(served)
        served.append(batch.shape[0])
        return SCORES[start : start + batch.shape[0]].copy()

    return evaluate_ranking(score_fn, FOLD_IN, TARGETS4, batch_size=2, **options)


def test_evaluate_ranking_reports_every_metric_by_hand():
    result = evaluate(ks=(1, 3), metrics=RANKING_METRICS, item_popularity=SHARES)
    expected = {
        "precision@3": 1 / 3, "hit_rate@3": 2 / 3, "mrr@3": 1 / 2, "map@3": (1 / 4 + 5 / 9) / 3,
        "coverage@3": 1.0, "popularity@3": 1 / 2, "novelty@3": (1 + 5 / 3 + 2 / 3) / 3,
        "precision@1": 1 / 3, "hit_rate@1": 1 / 3, "mrr@1": 1 / 3, "map@1": 1 / 3,
        "coverage@1": 2 / 6, "popularity@1": (1 + 1 / 2 + 1) / 3, "novelty@1": (0 + 1 + 0) / 3,
        "hit_rate@3_se": math.sqrt(2 / 27), "precision@3_se": math.sqrt(2) / 9,
    }
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, **EXACT), key
    assert result["n_users"] == 3
    assert "coverage@3_se" not in result
    keys = [key for key in result if key != "n_users"]
    # Grouped by K, then in the order asked, each value followed by its standard error.
    assert keys[:4] == ["recall@1", "recall@1_se", "truncated_recall@1", "truncated_recall@1_se"]
    assert keys[keys.index("coverage@1") + 1] == "popularity@1"
    assert len(keys) == 2 * 2 * (len(RANKING_METRICS) - 1) + 2


def test_default_output_is_unchanged_and_metrics_are_opt_in():
    default = evaluate(ks=(1, 3))
    assert list(default) == ["recall@1", "recall@1_se", "truncated_recall@1",
                             "truncated_recall@1_se", "ndcg@1", "ndcg@1_se",
                             "recall@3", "recall@3_se", "truncated_recall@3",
                             "truncated_recall@3_se", "ndcg@3", "ndcg@3_se", "n_users"]
    assert default == evaluate(ks=(1, 3), metrics=DEFAULT_RANKING_METRICS)
    # recall@3 = (1/2 + 2/4 + 0) / 3; the new metrics leave the old values alone.
    assert default["recall@3"] == pytest.approx(1 / 3, **EXACT)
    both = evaluate(ks=(1, 3), metrics=("map", "recall", "truncated_recall", "ndcg", "recall"))
    assert {k: v for k, v in both.items() if not k.startswith("map")} == default
    only = evaluate(ks=(3,), metrics=("coverage",))
    assert only == {"coverage@3": 1.0, "n_users": 3}


def test_evaluate_ranking_rejects_unknown_metrics_and_missing_popularity():
    with pytest.raises(ValueError, match="unknown metric 'hitrate'; valid names: recall, "):
        evaluate(metrics=("precision", "hitrate"))
    with pytest.raises(ValueError, match="metrics is empty"):
        evaluate(metrics=())
    with pytest.raises(ValueError, match="novelty needs item_popularity"):
        evaluate(metrics=("novelty",))
    with pytest.raises(ValueError, match="has 5 items but the matrices have 6"):
        evaluate(metrics=("popularity",), item_popularity=SHARES[:5])


# -- cross-check against ranx ----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::Warning:ranx")  # numba's cast warnings inside ranx
def test_ranking_metrics_match_ranx_on_random_data():
    ranx = pytest.importorskip("ranx", reason="ranx (the test extra) cross-checks the metrics")
    rng = np.random.default_rng(20261129)
    n_users, n_items, ks = 50, 200, (1, 5, 10, 20, 100)
    scores = rng.random((n_users, n_items))
    fold_in = sp.csr_matrix(rng.random((n_users, n_items)) < 0.05, dtype=np.float32)
    # 1 to 40 targets per user, never among the fold-in items.
    targets = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        free = np.flatnonzero(fold_in[u].toarray()[0] == 0)
        targets[u, rng.choice(free, size=int(rng.integers(1, 41)), replace=False)] = 1
    targets = sp.csr_matrix(targets)
    top = top_k(scores, max(ks), exclude=fold_in)

    names = [f"u{u:03d}" for u in range(n_users)]  # sorted, so ranx keeps this order
    qrels = ranx.Qrels({q: {f"i{i}": 1 for i in targets[u].indices} for u, q in enumerate(names)})
    run = ranx.Run({q: {f"i{i}": float(max(ks) - r) for r, i in enumerate(top[u])}
                    for u, q in enumerate(names)})
    n_targets = np.diff(targets.indptr)
    result = evaluate_ranking(lambda b: scores[: b.shape[0]], fold_in, targets, ks=ks,
                              batch_size=n_users,
                              metrics=("precision", "hit_rate", "mrr", "map", "ndcg"))
    for k in ks:
        ours = {"precision": precision_at_k(top[:, :k], targets),
                "hit_rate": hit_rate_at_k(top[:, :k], targets),
                "mrr": mrr_at_k(top[:, :k], targets),
                # ranx divides average precision by #targets, aerec by min(K, #targets).
                "map": map_at_k(top[:, :k], targets) * np.minimum(k, n_targets) / n_targets,
                "ndcg": ndcg_at_k(top[:, :k], targets)}
        theirs = ranx.evaluate(qrels, run, [f"{name}@{k}" for name in ours], return_mean=False)
        for name, values in ours.items():
            np.testing.assert_allclose(values, theirs[f"{name}@{k}"], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{name}@{k}")
            if name != "map":
                assert result[f"{name}@{k}"] == pytest.approx(values.mean(), **EXACT)
    # The whole-list case is not degenerate: some users have more targets than K, most hits > 0.
    assert (n_targets > 20).any() and 0.05 < result["hit_rate@10"] < 1


# -- command line ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vae"
    make_tiny_run(run)
    return run


def test_cli_evaluate_with_ks_and_metrics(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    saved = json.loads((tiny_run / "metrics.json").read_text())
    assert all(saved[key] == value for key, value in default.items())
    asked = "recall,ndcg,precision,hit_rate,mrr,map,coverage,popularity,novelty"
    assert main(["evaluate", str(tiny_run), "--ks", "5,10", "--metrics", asked, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_users"] == default["n_users"] == 30
    assert out["recall@10"] == default["recall@10"] and out["ndcg@10"] == default["ndcg@10"]
    assert "truncated_recall@10" not in out and "recall@20" not in out
    for k in (5, 10):
        assert 0 < out[f"precision@{k}"] <= out[f"hit_rate@{k}"] <= 1
        assert 0 < out[f"map@{k}"] <= 1 and 0 < out[f"mrr@{k}"] <= 1
        # 60 items in three genres; every genre's users get their own genre's items first.
        assert 3 * k / 60 <= out[f"coverage@{k}"] <= 1
        assert out[f"novelty@{k}"] > 0 and 0 < out[f"popularity@{k}"] < 1
        assert out[f"novelty@{k}_se"] > 0 and f"coverage@{k}_se" not in out
    assert out["coverage@5"] <= out["coverage@10"]
    assert main(["evaluate", str(tiny_run), "--ks", "5", "--metrics", "mrr,coverage"]) == 0
    text = capsys.readouterr().out
    assert "mrr@5" in text and "±" in text.splitlines()[0] and "±" not in text.splitlines()[1]


@pytest.mark.parametrize("args, message", [
    (["--metrics", "recall,hitrate"],
     "unknown metric 'hitrate'; valid names: recall, truncated_recall"),
    (["--ks", "10,x"], "--ks '10,x': expected positive integers"),
    (["--ks", "0"], "--ks '0': expected positive integers"),
])
def test_cli_bad_metrics_or_ks_is_one_line_and_exit_2(tiny_run, capsys, args, message):
    assert main(["evaluate", str(tiny_run), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    if "unknown metric" in message:
        assert "novelty" in err and "coverage" in err


def test_cli_metrics_on_a_rating_run_is_a_clear_error(tmp_path, capsys):
    write_fake_ml100k(tmp_path / "data", n_users=60)
    run = tmp_path / "mf"
    assert main(["train", "--data", "ml-100k", "--data-dir", str(tmp_path / "data"), "--split",
                 "random", "--model", "biased-mf", "--set", "epochs=1", "--out", str(run),
                 "--quiet", "--json"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert "rmse" in json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run), "--metrics", "precision"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a rating run (RMSE / MAE)" in err
