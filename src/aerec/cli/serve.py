"""``aerec serve DIR``: the HTTP recommendation service and its demo page (``aerec[serve]``).

``DIR`` is a run directory or a model directory saved from Python (:mod:`aerec.model_source`).
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys

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

    # Bound here, before the model is loaded: a port in use or an address this machine does not
    # have is one line and exit status 2 at once, not an error after "startup complete".
    sock = bind_socket(args.host, args.port)
    if args.host in EVERY_INTERFACE:
        print(f"aerec serve: warning: --host {args.host or repr('')} listens on every network "
              "interface: anyone who can reach this machine can query the model "
              "(--host 127.0.0.1 keeps it to this machine)", file=sys.stderr, flush=True)
    try:
        app = create_app(args.run_dir, device=args.device, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms)
        print(f"serving {args.run_dir} on http://{args.host}:{args.port}/ (API: /docs)",
              flush=True)
        config = uvicorn.Config(app, host=args.host, port=args.port, workers=1,
                                log_level=args.log_level)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


#: Host values that listen on every network interface.
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)``, as uvicorn binds its own, or a ConfigError.

    Raises
    ------
    ConfigError
        When the host is not an address of this machine or cannot be resolved, or the port is
        in use or not allowed.
    """
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = {errno.EADDRINUSE: "the port is in use (another server?)",
                  errno.EADDRNOTAVAIL: "the address is not one of this machine's",
                  errno.EACCES: "not allowed (ports below 1024 need privileges)"}.get(
                      exc.errno, exc.strerror or str(exc))
        raise ConfigError(f"--host {host} --port {port}: cannot listen: {reason}") from None
    sock.set_inheritable(True)
    return sock
