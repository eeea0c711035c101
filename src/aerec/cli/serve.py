"""``aerec serve DIR``: the HTTP recommendation service and its demo page (``aerec[serve]``).

``DIR`` is a run directory or a model directory saved from Python (:mod:`aerec.model_source`).
"""

from __future__ import annotations

import argparse

from aerec.errors import ConfigError
from aerec.extras import require


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over HTTP, with a demo page",
        description="Load DIR's model once (a run directory, or a model directory saved with "
        "model.save, which keeps no users) and answer recommendation requests over HTTP: "
        "POST /recommend, GET /users/ID/recommendations, GET /items?q=, GET /health; the demo "
        "page is at / and the API documentation at /docs. Needs: pip install 'aerec[serve]'.",
    )
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--max-batch", type=int, default=64,
                   help="most concurrent requests scored together (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="most milliseconds a request waits to share a batch (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads for scoring (default 1: the event loop keeps a core; "
                   "0 leaves PyTorch's default)")
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    if args.max_batch < 1 or args.max_wait_ms < 0:
        raise ConfigError("--max-batch must be at least 1 and --max-wait-ms not negative")
    if args.threads < 0:
        raise ConfigError("--threads must be 0 (PyTorch's default) or more")
    uvicorn = require("uvicorn", "serve", "aerec serve")
    from aerec.serving import create_app

    if args.threads:
        import torch

        # This process only serves: one scoring thread measured 20% less CPU per request than
        # two on a 2-core machine, whose other core parses HTTP and runs the event loop.
        torch.set_num_threads(args.threads)

    app = create_app(args.run_dir, device=args.device, max_batch=args.max_batch,
                     max_wait_ms=args.max_wait_ms)
    print(f"serving {args.run_dir} on http://{args.host}:{args.port}/ (API: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level=args.log_level)
    return 0
