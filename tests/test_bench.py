"""The benchmark module: operation counts by hand, the JSON the CLI prints, and its figures' sums."""

from __future__ import annotations

import json

import pytest
import torch

from aerec import bench
from aerec.bench import BenchShape, network_flops
from aerec.cli import main
from aerec.errors import ConfigError
from aerec.models import MultVAE

REQUIRED = {"seconds_per_epoch", "floor_seconds", "ratio", "gemm_gflops", "peak_rss_mb"}


def test_operation_counts_by_hand():
    # sparse first layer 10 -> 6 with 7 stored entries; dense 6x4, 2x6, 6x10 on 3 rows
    layers = [(10, 6), (6, 4), (2, 6), (6, 10)]
    sparse = 2 * 7 * 6
    dense = 2 * 3 * (6 * 4 + 2 * 6 + 6 * 10)
    assert network_flops(layers, n_rows=3, nnz=7, train=False) == sparse + dense == 660
    # training: the sparse layer's weight gradient (no input gradient), twice each dense product
    assert network_flops(layers, n_rows=3, nnz=7, train=True) == 2 * sparse + 3 * dense == 1896


def test_mult_vae_epoch_at_the_ml20m_shape_is_about_8_8_tflop():
    vae = MultVAE()
    layers = bench._layers(vae, 20_108)
    assert layers == ((20_108, 600), (600, 400), (200, 600), (600, 20_108))
    shape = BenchShape.named("ml-20m")
    assert (shape.n_users, shape.n_items) == (116_677, 20_108)
    flops = network_flops(layers, shape.n_users, shape.n_interactions, train=True)
    # output layer: 6 * 116677 * 600 * 20108 = 8.446e12; the rest adds ~0.27e12
    assert flops == pytest.approx(8.72e12, rel=0.01)


def test_shapes_by_name_and_by_size():
    s = BenchShape.named("ml-20m", users=30_000)
    # the interactions scale with the users (same mean activity)
    assert s.n_items == 20_108 and s.n_interactions == round(8_536_000 * 30_000 / 116_677)
    s = BenchShape.named(None, users=30_000, items=20_108, interactions=2_200_000)
    assert s == BenchShape(30_000, 20_108, 2_200_000)
    with pytest.raises(ConfigError):
        BenchShape.named(None, users=10)
    with pytest.raises(ConfigError, match="unknown shape"):
        BenchShape.named("ml-30m")


def test_rates_are_positive_and_layouts_cover_three_products():
    assert bench.gemm_gflops(n=128, repeats=1, min_seconds=0.01) > 0
    rates = bench.layout_rates(16, 8, 64, repeats=1, min_seconds=0.01)
    assert set(rates) == {"hidden_major", "items_major", "tiled"}
    for r in rates.values():
        assert set(r) == {"forward", "grad_input", "grad_weight", "seconds"}
        assert all(v > 0 for v in r.values())


def test_epoch_figures_add_up():
    out = bench.time_epoch(BenchShape(300, 120, 4_000), params={"batch_size": 100}, gemm_size=256)
    assert REQUIRED <= set(out)
    assert out["interactions"] == 4_000 and out["batch_size"] == 100
    layers = ((120, 600), (600, 400), (200, 600), (600, 120))
    assert out["flops"] == network_flops(layers, 300, 4_000, train=True)
    assert out["floor_seconds"] == pytest.approx(out["flops"] / (out["gemm_gflops"] * 1e9))
    assert out["ratio"] == pytest.approx(out["seconds_per_epoch"] / out["floor_seconds"])


def test_eval_and_ease_figures_add_up():
    ev = bench.time_eval(150, n_users=400, mean_activity=20, batch_size=128, gemm_size=256)
    assert ev["rank_seconds"] == pytest.approx(ev["seconds"] - ev["score_seconds"])
    assert ev["ratio"] == pytest.approx(ev["seconds"] / ev["floor_seconds"])
    assert 0 < ev["n_users_scored"] <= 400
    ease = bench.time_ease(BenchShape(300, 100, 3_000), lam=10.0, gemm_size=256)
    assert ease["solve_flops"] == 100 ** 3
    assert ease["seconds"] == pytest.approx(ease["gram_seconds"] + ease["solve_seconds"])


def test_cli_prints_one_json_object(capsys):
    code = main(["bench", "epoch", "--users", "200", "--items", "100", "--interactions", "3000",
                 "--set", "batch_size=100", "--gemm-size", "256", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(out) and out["users"] == 200 and out["model"] == "mult-vae"
    code = main(["bench", "eval", "--items", "80", "--users", "100", "--gemm-size", "256", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"seconds", "floor_seconds", "ratio", "gemm_gflops", "peak_rss_mb"} <= set(out)


def test_bf16_epoch_reports_its_own_rate():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN")
    out = bench.time_epoch(BenchShape(200, 80, 2_000), params={"batch_size": 100},
                           precision="bf16", gemm_size=256)
    assert out["precision"] == "bf16" and out["bf16_gemm_gflops"] > 0


def test_precision_given_by_set_is_used_and_a_conflict_is_refused(capsys):
    # --set precision=bf16 was once overridden by --precision's default without a word.
    args = ["bench", "eval", "--items", "80", "--users", "100", "--gemm-size", "256", "--json"]
    assert main([*args, "--set", "precision=bf16"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "bf16"
    assert main([*args, "--set", "precision=bf16", "--precision", "fp32"]) == 2
    assert "disagree" in capsys.readouterr().err


def test_recvae_epoch_counts_three_encoder_passes_and_one_decoder_pass():
    # RecVAE has no precision field: fp32 is not passed to it
    out = bench.time_epoch(BenchShape(60, 50, 600), model="recvae",
                           params={"batch_size": 30, "hidden": 8, "latent": 4, "encoder_layers": 2},
                           gemm_size=256)
    n, nnz, items = 60, out["interactions"], 50
    enc_fwd = 2 * nnz * 8 + 2 * n * 8 * 8 + 2 * n * 8 * 8  # sparse, dense 8x8, head 8 x (2 x 4)
    enc_train = 2 * 2 * nnz * 8 + 3 * (2 * n * 8 * 8 + 2 * n * 8 * 8)
    decoder = 2 * n * 4 * items
    assert out["flops"] == 3 * (enc_train + enc_fwd + 2 * decoder) + (enc_fwd + 2 * decoder)
    assert out["precision"] == "fp32" and out["seconds_per_epoch"] > 0
