"""Timings against the hardware's floor: a training epoch, an evaluation, an EASE fit.

The floor of a computation is its count of floating-point operations in matrix products divided
by the rate of a dense 2048 x 2048 matrix product timed in the same process (fp32 for the torch
models, fp64 for EASE, which solves in float64). ``ratio`` = achieved seconds / floor seconds: 1.0
would mean that nothing but the matrix products took time, at the rate of a large square product.
Element-wise work (softmax, tanh, Adam), data handling and Python all show up as the ratio's excess.

Counting (multiply and add are two operations):

* a dense layer ``d_in x d_out`` on ``n`` rows: ``2 n d_in d_out`` forward; in training twice that
  again backward (the gradient of the input and of the weight);
* the sparse first layer (``nnz`` stored entries, ``d`` outputs): ``2 nnz d`` forward and ``2 nnz d``
  for the weight's gradient (no gradient flows to the data);
* EASE: ``2 sum_u n_u^2`` for the Gram matrix and ``n^3`` for the Cholesky inverse (``n^3 / 3`` for
  ``potrf``, ``2 n^3 / 3`` for ``potri``).

The same product runs at different rates depending on its shapes and transposes, so
:func:`layout_rates` times the output layer's three products in both weight layouts.

Every function here builds its data with :mod:`aerec.data.synthetic`, so they run anywhere.
Timings on a shared machine are noisy: the GEMM rate is measured before and after the timed work
and the larger is used (a conservative floor).
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from aerec.data.synthetic import SHAPES, Shape, synthesize
from aerec.errors import ConfigError
from aerec.hardware import release_freed_memory

__all__ = [
    "BenchShape", "gemm_gflops", "fp64_gemm_gflops", "product_gflops", "layout_rates",
    "network_flops", "random_holdout", "time_epoch", "time_eval", "time_ease", "peak_rss_mb",
]


@dataclass(frozen=True)
class BenchShape:
    """Training users, items and training interactions of a benchmark."""

    n_users: int
    n_items: int
    n_interactions: int

    @classmethod
    def named(cls, name: str | None = None, *, users: int | None = None, items: int | None = None,
              interactions: int | None = None) -> BenchShape:
        """A named shape (``ml-20m``: its 116,677 training users; ``netflix``), with overrides.

        When only ``users`` is overridden, the interactions scale with it (same mean activity).
        """
        if name is None and None in (users, items, interactions):
            raise ConfigError("give --shape NAME or all of --users, --items and --interactions")
        base = _TRAIN_SHAPES.get(name) if name else None
        if name and base is None:
            raise ConfigError(f"unknown shape {name!r}; valid: {', '.join(_TRAIN_SHAPES)}")
        n_users = users if users is not None else base.n_users
        n_items = items if items is not None else base.n_items
        if interactions is not None:
            n_interactions = interactions
        else:
            n_interactions = round(base.n_interactions * n_users / base.n_users)
        return cls(int(n_users), int(n_items), int(n_interactions))


def _train_shape(shape: Shape) -> BenchShape:
    return BenchShape(shape.n_users, shape.n_items, shape.n_interactions)


#: The training part of each named shape: ML-20M's 116,677 training users (136,677 minus 2 x
#: 10,000 held out), Netflix's 480,189 users less 2 x 40,000.
_TRAIN_SHAPES: dict[str, BenchShape] = {
    "ml-20m": _train_shape(SHAPES["ml-20m-train"]),
    "netflix": BenchShape(400_189, 17_770, round(100_480_507 * 400_189 / 480_189)),
}


# -- rates ------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn: Callable[[], Any], flops: float, device: torch.device, repeats: int,
               min_seconds: float) -> float:
    """Best rate (GFLOP/s) over ``repeats`` timings, each of enough calls to last min_seconds."""
    fn()
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    once = max(time.perf_counter() - started, 1e-6)
    calls = max(1, int(min_seconds / once))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        best = min(best, (time.perf_counter() - started) / calls)
    return flops / best / 1e9


def gemm_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                repeats: int = 5, min_seconds: float = 0.3) -> float:
    """The rate (GFLOP/s) of an ``n x n`` by ``n x n`` matrix product: the floor's yardstick."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    return _best_rate(lambda: torch.mm(a, b, out=out), 2.0 * n ** 3, device, repeats, min_seconds)


def fp64_gemm_gflops(n: int = 2048, repeats: int = 5, min_seconds: float = 0.3) -> float:
    """The fp64 product rate of PyTorch's BLAS on the CPU (the library EASE's solve uses)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    b = torch.randn(n, n, generator=gen, dtype=torch.float64)
    out = torch.empty(n, n, dtype=torch.float64)
    return _best_rate(lambda: torch.mm(a, b, out=out), 2.0 * n ** 3, torch.device("cpu"), repeats,
                      min_seconds)


def product_gflops(m: int, k: int, n: int, *, a_transposed: bool = False, b_transposed: bool = False,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                   repeats: int = 3, min_seconds: float = 0.2) -> float:
    """Rate of ``(m x k) @ (k x n)`` where either factor may be a transposed view of its storage."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(1)

    def operand(rows: int, cols: int, transposed: bool) -> torch.Tensor:
        t = torch.randn(cols, rows, generator=gen).t() if transposed else torch.randn(
            rows, cols, generator=gen)
        return t.to(device=device, dtype=dtype)

    a, b = operand(m, k, a_transposed), operand(k, n, b_transposed)
    out = torch.empty(m, n, device=device, dtype=dtype)
    return _best_rate(lambda: torch.mm(a, b, out=out), 2.0 * m * k * n, device, repeats, min_seconds)


def layout_rates(batch: int, hidden: int, n_items: int, *, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", repeats: int = 3,
                 min_seconds: float = 0.2) -> dict[str, dict[str, float]]:
    """Rates of the output layer's three products for the weight stored ``(hidden, items)``
    (``"hidden_major"``, as aerec stores it) and ``(items, hidden)`` (``"items_major"``), each as
    one product, and, on the CPU, as aerec's fused layer issues them in fp32 (``"tiled"``: the
    weight stored hidden-major, the logits items-first; the logits and the weight's gradient in
    tiles of ``aerec.models.fused.ITEM_TILE`` items).

    The products: ``forward`` (batch x items logits), ``grad_input`` (batch x hidden) and
    ``grad_weight`` (the weight's shape). Each layout also gets ``seconds``, the time of the three
    at those rates.
    """
    b, d, n = batch, hidden, n_items
    flops = 2.0 * b * d * n
    kw = {"dtype": dtype, "device": device, "repeats": repeats, "min_seconds": min_seconds}
    out: dict[str, dict[str, float]] = {
        "hidden_major": {  # W: (d, n)
            "forward": product_gflops(b, d, n, **kw),                       # h @ W
            "grad_input": product_gflops(b, n, d, b_transposed=True, **kw),  # G @ W^T
            "grad_weight": product_gflops(d, b, n, a_transposed=True, **kw),  # h^T @ G
        },
        "items_major": {  # W^T stored: (n, d)
            "forward": product_gflops(b, d, n, b_transposed=True, **kw),    # h @ Wt^T
            "grad_input": product_gflops(b, n, d, **kw),                    # G @ Wt
            "grad_weight": product_gflops(n, b, d, a_transposed=True, **kw),  # G^T @ h
        },
    }
    if torch.device(device).type == "cpu":  # the tiles are the CPU's fp32 path only
        out["tiled"] = _tiled_rates(b, d, n, dtype=dtype, repeats=repeats, min_seconds=min_seconds)
    for rates in out.values():
        rates["seconds"] = sum(flops / (r * 1e9) for r in list(rates.values()))
    return out


def _tiled_rates(b: int, d: int, n: int, *, dtype: torch.dtype, repeats: int,
                 min_seconds: float) -> dict[str, float]:
    """The three products as the fused output layer issues them in fp32 on the CPU, timed through
    the layer's own functions."""
    from aerec.models.fused import _items_first_logits, _items_first_weight_grad

    gen = torch.Generator(device="cpu").manual_seed(1)
    h = torch.randn(b, d, generator=gen).to(dtype=dtype)
    w = torch.randn(d, n, generator=gen).to(dtype=dtype)
    bias = torch.zeros(n, dtype=dtype)
    g = torch.randn(n, b, generator=gen).to(dtype=dtype)  # items-first gradient
    cpu = torch.device("cpu")
    flops = 2.0 * b * d * n
    return {name: _best_rate(fn, flops, cpu, repeats, min_seconds) for name, fn in (
        ("forward", lambda: _items_first_logits(h, w, bias)),
        ("grad_input", lambda: g.t() @ w.t()),  # one product: it reduces over the items
        ("grad_weight", lambda: _items_first_weight_grad(h, g)),
    )}


# -- counting -----------------------------------------------------------------------------------
def network_flops(layers: list[tuple[int, int]] | tuple[tuple[int, int], ...], n_rows: int, nnz: int,
                  *, train: bool) -> float:
    """Matrix-product operations of a pass over ``n_rows`` users with ``nnz`` stored entries.

    ``layers`` are the weight shapes ``(d_in, d_out)``, the first multiplied by the sparse input.
    """
    (_, first_out), dense = layers[0], layers[1:]
    sparse = 2.0 * nnz * first_out
    matmuls = sum(2.0 * n_rows * d_in * d_out for d_in, d_out in dense)
    return (2 * sparse + 3 * matmuls) if train else (sparse + matmuls)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


# -- timings -----------------------------------------------------------------------------------
def _model(name: str, params: dict[str, Any]):
    from aerec.models import get_model_class

    return get_model_class(name)(**params)


def _has_precision(name: str) -> bool:
    from dataclasses import fields

    from aerec.models import get_model_class

    return any(f.name == "precision" for f in fields(get_model_class(name).Config))


def _layers(model: Any, n_items: int) -> tuple[tuple[int, int], ...]:
    """Weight shapes of a model's network: the fitted one's where it has one (building a second
    network at a million items would take gigabytes)."""
    net = getattr(model, "module_", None)
    if net is None:
        net = model._build(n_items, torch.Generator().manual_seed(0))
    return tuple((int(w.shape[0]), int(w.shape[1])) for w in net.weights)


def _epoch_flops(model: Any, n_items: int, n_rows: int, nnz: int) -> float:
    """Matrix-product operations of one training epoch (see :func:`network_flops`).

    RecVAE's epoch is 3 encoder passes and 1 decoder pass (``encoder_epochs``, ``decoder_epochs``):
    an encoder pass trains the encoder, runs the prior's copy forward and the decoder forward and
    back to its input (its weights are constants there); a decoder pass runs the encoder forward
    and the decoder forward and back to its weight.
    """
    if getattr(model, "name", None) != "recvae":
        return network_flops(_layers(model, n_items), n_rows, nnz, train=True)
    cfg = model.config
    encoder = ([(n_items, cfg.hidden)] + [(cfg.hidden, cfg.hidden)] * (cfg.encoder_layers - 1)
               + [(cfg.hidden, 2 * cfg.latent)])
    forward = network_flops(encoder, n_rows, nnz, train=False)
    decoder = 2.0 * n_rows * cfg.latent * n_items  # one product of the decoder
    encoder_pass = network_flops(encoder, n_rows, nnz, train=True) + forward + 2 * decoder
    return cfg.encoder_epochs * encoder_pass + cfg.decoder_epochs * (forward + 2 * decoder)


def _rates(device: torch.device, precision: str, n: int) -> dict[str, float]:
    quick = {} if n >= 2048 else {"repeats": 1, "min_seconds": 0.01}
    rates = {"gemm_gflops": gemm_gflops(n, device=device, **quick)}
    if precision == "bf16":
        rates["bf16_gemm_gflops"] = gemm_gflops(n, dtype=torch.bfloat16, device=device, **quick)
    return rates


def _max_rates(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: max(a[k], b[k]) for k in a}


def time_epoch(
    shape: BenchShape,
    *,
    model: str = "mult-vae",
    params: dict[str, Any] | None = None,
    precision: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    layouts: bool = False,
    gemm_size: int = 2048,
) -> dict[str, Any]:
    """Time one training epoch of ``model`` on synthetic data of ``shape``.

    A short fit on two batches first warms up the kernels; the timed epoch is the ``train_seconds``
    of a one-epoch ``fit`` (no validation). Returns the JSON-ready figures: ``seconds_per_epoch``,
    ``flops``, ``gemm_gflops`` (fp32 2048^2 product, the larger of before and after), ``floor_seconds``
    (fp32), ``ratio``, ``peak_rss_mb`` (includes the data generation), and the setting.
    ``gemm_size`` other than 2048 (tests) times a smaller product, once.
    """
    from aerec.device import resolve_device

    dev = resolve_device(device)
    data = synthesize(n_users=shape.n_users, n_items=shape.n_items,
                      n_interactions=shape.n_interactions, seed=seed).matrix
    settings = {**(params or {}), "device": str(dev), "epochs": 1}
    if precision != "fp32" or _has_precision(model):
        settings["precision"] = precision  # a model without the field (RecVAE) is fp32
    warm = _model(model, {**settings, "seed": seed + 1})
    warm_rows = min(data.shape[0], 2 * getattr(warm.config, "batch_size", 500))
    warm.fit(data[:warm_rows])
    del warm
    # The warm-up's memory back to the system: at a million items its 14 GB, kept by
    # keep_freed_memory in holes the timed model's blocks need not fit, would add to the peak.
    gc.collect()
    release_freed_memory()
    before = _rates(dev, precision, gemm_size)
    m = _model(model, settings)
    m.fit(data)
    seconds = float(m.history_[0]["train_seconds"])
    rates = _max_rates(before, _rates(dev, precision, gemm_size))
    flops = _epoch_flops(m, shape.n_items, shape.n_users, data.nnz)
    floor = flops / (rates["gemm_gflops"] * 1e9)
    out: dict[str, Any] = {
        "what": "epoch", "model": model, "device": str(dev), "precision": precision,
        "users": shape.n_users, "items": shape.n_items, "interactions": int(data.nnz),
        "batch_size": int(getattr(m.config, "batch_size", 0)),
        "seconds_per_epoch": seconds, "flops": flops, **rates,
        "floor_seconds": floor, "ratio": seconds / floor, "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }
    if precision == "bf16":
        out["bf16_floor_seconds"] = flops / (rates["bf16_gemm_gflops"] * 1e9)
    if layouts:
        batch = int(getattr(m.config, "batch_size", 500))
        d = _layers(m, shape.n_items)[-1][0]
        out["layouts"] = layout_rates(batch, d, shape.n_items, device=dev)
    return out


def time_eval(
    n_items: int = 20_108,
    *,
    n_users: int = 10_000,
    mean_activity: float = 73.2,
    k: int = 100,
    model: str = "mult-vae",
    params: dict[str, Any] | None = None,
    precision: str = "fp32",
    device: str = "cpu",
    batch_size: int = 1000,
    seed: int = 0,
    gemm_size: int = 2048,
) -> dict[str, Any]:
    """Time the fold-in evaluation of ``n_users`` held-out users, ranking all items, top ``k``.

    The model is initialised (``epochs=0``), not trained: the work is the same. Each user's items
    are split 80/20 into fold-in and targets. Returns ``seconds``, ``score_seconds`` (inside the
    model), ``rank_seconds`` (masking, top-k, metrics: the rest), the forward ``flops``, the floor
    and ``ratio`` (as :func:`time_epoch`).
    """
    from aerec.device import resolve_device
    from aerec.evaluation import evaluate_ranking

    dev = resolve_device(device)
    data = synthesize(n_users=n_users, n_items=n_items,
                      n_interactions=round(n_users * mean_activity), seed=seed).matrix
    fold_in, targets = random_holdout(data, 0.2, seed)
    m = _model(model, {**(params or {}), "device": str(dev), "precision": precision, "epochs": 0})
    m.fit(fold_in[:2])
    spent = {"score": 0.0}

    def score(batch: sp.csr_matrix) -> torch.Tensor:
        started = time.perf_counter()
        s = m.score_tensor(batch)
        _sync(dev)
        spent["score"] += time.perf_counter() - started
        return s

    ks = tuple(x for x in (10, 20, 50, 100) if x < k) + (k,)
    evaluate_ranking(score, fold_in[:batch_size], targets[:batch_size], ks=ks, batch_size=batch_size)
    before = _rates(dev, precision, gemm_size)
    spent["score"] = 0.0
    started = time.perf_counter()
    metrics = evaluate_ranking(score, fold_in, targets, ks=ks, batch_size=batch_size)
    seconds = time.perf_counter() - started
    rates = _max_rates(before, _rates(dev, precision, gemm_size))
    flops = network_flops(_layers(m, n_items), n_users, fold_in.nnz, train=False)
    floor = flops / (rates["gemm_gflops"] * 1e9)
    return {
        "what": "eval", "model": model, "device": str(dev), "precision": precision,
        "users": n_users, "items": n_items, "k": k, "batch_size": batch_size,
        "seconds": seconds, "score_seconds": spent["score"], "rank_seconds": seconds - spent["score"],
        "flops": flops, **rates, "floor_seconds": floor, "ratio": seconds / floor,
        "peak_rss_mb": peak_rss_mb(), "n_users_scored": metrics["n_users"],
    }


def random_holdout(data: sp.csr_matrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Each stored entry goes to the targets with probability ``fraction``: (fold-in, targets)."""
    rng = np.random.default_rng(seed)
    target = rng.random(data.nnz) < fraction
    coo = data.tocoo()

    def part(keep: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=data.shape)
        m.sort_indices()
        return m

    return part(~target), part(target)


def time_ease(
    shape: BenchShape,
    *,
    lam: float = 500.0,
    seed: int = 0,
    gemm_size: int = 2048,
) -> dict[str, Any]:
    """Time EASE's fit on synthetic data: its Gram matrix, then its float64 Cholesky inverse.

    The two stages are :func:`aerec.models.ease.gram_matrix` and
    :func:`aerec.models.ease.ease_weights`, which ``EASE.fit`` runs one after the other. The floor
    uses the fp64 product rate of PyTorch's BLAS (which the solve's LAPACK calls use); the Gram
    matrix, a sparse product, is reported apart (``gram_seconds``, ``gram_flops``).
    """
    from aerec.models import ease as ease_module

    data = synthesize(n_users=shape.n_users, n_items=shape.n_items,
                      n_interactions=shape.n_interactions, seed=seed).matrix
    ease_module.check_memory(shape.n_items)
    quick = {} if gemm_size >= 2048 else {"repeats": 1, "min_seconds": 0.01}
    before = fp64_gemm_gflops(gemm_size, **quick)
    started = time.perf_counter()
    gram = ease_module.gram_matrix(data)
    gram_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ease_module.ease_weights(gram, lam)
    solve_seconds = time.perf_counter() - started
    del gram
    rate = max(before, fp64_gemm_gflops(gemm_size, **quick))
    n = shape.n_items
    counts = np.diff(data.indptr).astype(np.float64)
    gram_flops = 2.0 * float((counts ** 2).sum())
    solve_flops = float(n) ** 3
    flops = gram_flops + solve_flops
    floor = flops / (rate * 1e9)
    seconds = gram_seconds + solve_seconds
    return {
        "what": "ease", "users": shape.n_users, "items": n, "interactions": int(data.nnz),
        "lam": lam, "seconds": seconds, "gram_seconds": gram_seconds,
        "solve_seconds": solve_seconds, "flops": flops, "gram_flops": gram_flops,
        "solve_flops": solve_flops, "gemm_gflops": rate, "gemm_dtype": "float64",
        "floor_seconds": floor, "solve_floor_seconds": solve_flops / (rate * 1e9),
        "solve_ratio": solve_seconds / (solve_flops / (rate * 1e9)),
        "ratio": seconds / floor, "peak_rss_mb": peak_rss_mb(),
    }
