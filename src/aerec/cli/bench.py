"""``aerec bench``: time a training epoch, an evaluation or an EASE fit against the GEMM floor.

Each action prints one JSON object (``--json``) or a short summary: the seconds taken, the floor
(matrix-product operations / the rate of a 2048 x 2048 product timed in the same process), their
ratio, the product rate and the peak memory. The data is synthetic (``aerec data synth``).
"""

from __future__ import annotations

import argparse
import json

from aerec.config import parse_assignments
from aerec.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="time training / evaluation against the hardware's floor",
        description="Time a training epoch, an evaluation or an EASE fit on synthetic data and "
        "compare it with its floor: matrix-product operations divided by the rate of a "
        "2048 x 2048 product measured in the same run.",
    )
    actions = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    epoch = actions.add_parser("epoch", help="one training epoch")
    _shape_args(epoch)
    _model_args(epoch)
    epoch.add_argument("--layouts", action="store_true",
                       help="also time the output layer's three products in both weight layouts")
    epoch.set_defaults(handler=_run_epoch)

    ev = actions.add_parser("eval", help="rank all items for held-out users, top K")
    ev.add_argument("--shape", default="ml-20m", help="named shape giving the items (default "
                    "ml-20m)")
    ev.add_argument("--items", type=int, help="number of items (overrides the shape's)")
    ev.add_argument("--users", type=int, default=10_000, help="held-out users (default 10000)")
    ev.add_argument("--k", type=int, default=100, help="top K ranked (default 100)")
    ev.add_argument("--batch-size", type=int, default=1000, help="users scored at once (default 1000)")
    _model_args(ev)
    ev.set_defaults(handler=_run_eval)

    ease = actions.add_parser("ease", help="an EASE fit (Gram matrix and float64 inverse)")
    _shape_args(ease, default_items=20_000)
    ease.add_argument("--lam", type=float, default=500.0, help="EASE's lambda (default 500)")
    ease.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    ease.add_argument("--json", action="store_true", help="print one JSON object")
    ease.set_defaults(handler=_run_ease)


def _shape_args(p: argparse.ArgumentParser, default_items: int | None = None) -> None:
    p.add_argument("--shape", default="ml-20m",
                   help="named shape: ml-20m (116,677 training users x 20,108 items, ~8.5M "
                   "interactions) or netflix (default ml-20m); the sizes below override it")
    p.add_argument("--users", type=int, help="training users")
    p.add_argument("--items", type=int, default=default_items, help="items")
    p.add_argument("--interactions", type=int,
                   help="training interactions (default: the shape's mean activity x users)")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mult-vae", help="model (default mult-vae)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                   help="a hyperparameter, e.g. --set batch_size=1000 (repeatable)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="fp32, or bf16 products where the hardware has them (default fp32; "
                   "--set precision=... is the same)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--gemm-size", type=int, default=2048,
                   help="side of the square product that sets the floor (default 2048; smaller "
                   "sizes are timed once, for quick checks)")


def _shape(args: argparse.Namespace):
    from aerec.bench import BenchShape

    return BenchShape.named(args.shape, users=args.users, items=args.items,
                            interactions=args.interactions)


def _params_and_precision(args: argparse.Namespace) -> tuple[dict, str]:
    """The --set hyperparameters, with ``precision`` taken out of them: it is also an option of
    its own, and the two must not disagree (one used to override the other silently)."""
    params = parse_assignments(args.set)
    from_set = params.pop("precision", None)
    if from_set is not None and args.precision is not None and str(from_set) != args.precision:
        raise ConfigError(f"--precision {args.precision} and --set precision={from_set} disagree")
    precision = str(from_set or args.precision or "fp32")
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision must be fp32 or bf16, got {precision!r}")
    return params, precision


def _check_sizes(args: argparse.Namespace) -> None:
    """Every size option given must be a positive integer (0 or -5 would time nothing, or fail
    deep inside torch)."""
    for name in ("users", "items", "interactions", "k", "batch_size", "gemm_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _run_epoch(args: argparse.Namespace) -> int:
    from aerec.bench import time_epoch
    from aerec.hardware import keep_freed_memory

    _check_sizes(args)
    keep_freed_memory()
    params, precision = _params_and_precision(args)
    result = time_epoch(_shape(args), model=args.model, params=params,
                        precision=precision, device=args.device, seed=args.seed,
                        layouts=args.layouts, gemm_size=args.gemm_size)
    _print(result, args.json, "seconds_per_epoch")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from aerec.bench import BenchShape, time_eval
    from aerec.hardware import keep_freed_memory

    _check_sizes(args)
    keep_freed_memory()
    items = args.items if args.items is not None else BenchShape.named(args.shape).n_items
    params, precision = _params_and_precision(args)
    result = time_eval(items, n_users=args.users, k=args.k, model=args.model,
                       params=params, precision=precision,
                       device=args.device, batch_size=args.batch_size, seed=args.seed,
                       gemm_size=args.gemm_size)
    _print(result, args.json, "seconds")
    return 0


def _run_ease(args: argparse.Namespace) -> int:
    from aerec.bench import time_ease

    _check_sizes(args)
    result = time_ease(_shape(args), lam=args.lam, seed=args.seed)
    _print(result, args.json, "seconds")
    return 0


def _print(result: dict, as_json: bool, seconds_key: str) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(f"{result['what']}: {result[seconds_key]:.2f} s; floor {result['floor_seconds']:.2f} s "
          f"at {result['gemm_gflops']:.1f} GFLOP/s; ratio {result['ratio']:.2f}; "
          f"peak memory {result['peak_rss_mb']:.0f} MiB")
