"""Load benchmark of ``aerec serve``: a Mult-VAE at the ML-20M shape, on the loopback address only.

Not a test. It trains a Mult-VAE for one epoch on synthetic data with ML-20M's 20,108 items (fewer
users than ML-20M: the number of users does not change the served model), starts ``aerec serve``
with one uvicorn worker on 127.0.0.1 in a subprocess, and sends a bounded load from a lean
hand-written HTTP/1.1 client in this process (keep-alive connections, requests encoded in
advance): a fixed number of requests and a time limit, after a short warm-up. Each request is
``POST /recommend`` with the fold-in history of a held-out user (``n = 10``). It reports requests
per second, p50 / p99 latency and the error count for:

* ``GET /health``, closed loop: the floor, HTTP and JSON only, no model;
* ``POST /recommend`` with the micro-batcher (default settings), closed loop: the most the
  service sustains;
* the same at a fixed offered rate (``--rate``, default 300 req/s), open loop: latency counted
  from when each request was due, the figure a service-level goal is stated in;
* ``POST /recommend`` with ``--max-batch 1``: every request scored alone;
* ``mixed`` (run it with ``--rows mixed --concurrency 50 --time-limit 60``): many clients for a
  fixed time, each request drawn at random from valid ones (recommend, a user's recommendations,
  search, health) and invalid ones (:data:`BAD_REQUESTS`: malformed JSON, wrong types, lone
  surrogates, NaN ratings, bodies over the limit, unknown routes and methods). It counts answers
  by class and fails (exit status 1) on any 5xx, any valid request not answered 200, any invalid
  one not answered 4xx, or a server that is not up afterwards; latencies are of valid requests.

The client shares the machine's cores with the server, as a real load generator on the same host
would; the floor row measures what that costs. Run::

    .venv/bin/python benchmarks/serve_load.py [--requests 3000] [--concurrency 16] [--rate 300] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import aerec
from aerec.data.splits import strong_generalization
from aerec.data.synthetic import SHAPES, synthesize
from aerec.persistence import write_json
from aerec.runs import RUN_FORMAT, load_split, save_split, train_run

HOST = "127.0.0.1"  # loopback only, never anything else


def build_run(run_dir: Path, n_users: int, epochs: int, seed: int) -> Path:
    """A Mult-VAE run directory at the ML-20M item count (paper architecture 600-200)."""
    shape = SHAPES["ml-20m"]
    interactions = int(shape.n_interactions * n_users / shape.n_users)
    data = synthesize(n_users=n_users, n_items=shape.n_items, n_interactions=interactions,
                      explicit=False, seed=seed)
    split = strong_generalization(data, 1000, seed=seed)
    save_split(split, run_dir / "split")
    write_json(run_dir / "run.json", {
        "format": RUN_FORMAT, "model": "mult-vae",
        "params": {"epochs": epochs, "device": "cpu"},
        "data": {"dataset": f"synthetic ml-20m shape ({n_users} users)"}, "preprocess": {},
        "split": {"kind": "strong", "n_heldout": 1000, "seed": seed},
        "versions": {"aerec": aerec.__version__},
    })
    train_run(run_dir)
    return run_dir


def histories(run_dir: Path) -> list[list[str]]:
    """Request bodies' item lists: the fold-in items of the held-out test users."""
    fold_in = load_split(run_dir / "split").test.fold_in
    m = fold_in.matrix
    return [fold_in.item_ids[m.indices[m.indptr[u]:m.indptr[u + 1]]].tolist()
            for u in range(m.shape[0]) if m.indptr[u + 1] > m.indptr[u]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``aerec serve`` in a subprocess on the loopback address."""

    def __init__(self, run_dir: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aerec.cli", "serve", str(run_dir), "--host", HOST,
             "--port", str(self.port), "--log-level", "warning", *extra],
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(self.url + "/health", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the server did not start: {self.proc.stderr.read().decode()}")
                time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


#: Requests the service must refuse with a 4xx (and a JSON error), never a 5xx.
BAD_REQUESTS: list[tuple[str, str, bytes | None, str]] = [
    # (method, path, raw body or None, content type)
    ("POST", "/recommend", b'{"items": ["1"', "application/json"),
    ("POST", "/recommend", b"[1, 2]", "application/json"),
    ("POST", "/recommend", b"", "application/json"),
    ("POST", "/recommend", b'{"items": ["\\ud800"]}', "application/json"),
    ("POST", "/recommend", b'{"items": ["1:nan"]}', "application/json"),
    ("POST", "/recommend", b'{"items": [NaN], "n": Infinity}', "application/json"),
    ("POST", "/recommend", b'{"items": ["1"], "n": 1000000}', "application/json"),
    ("POST", "/recommend", b'{"items": [true, null, 1.5]}', "application/json"),
    ("POST", "/recommend", b'{"items": ["1"], "extra": 1}', "application/json"),
    ("POST", "/recommend", b"\xff\xfe\x00garbage", "application/json"),
    ("POST", "/recommend", b"items=1", "application/x-www-form-urlencoded"),
    ("POST", "/recommend", b'{"items": ["' + b"9" * 300_000 + b'"]}', "application/json"),
    ("GET", "/recommend", None, ""),
    ("DELETE", "/items", None, ""),
    ("GET", "/items?limit=0", None, ""),
    ("GET", "/items?limit=abc", None, ""),
    ("GET", "/items?q=" + "x" * 300, None, ""),
    ("GET", "/users/no-such-user/recommendations", None, ""),
    ("GET", "/users/1/recommendations?n=-3", None, ""),
    ("GET", "/users/" + "u" * 300 + "/recommendations", None, ""),
    ("GET", "/no/such/page", None, ""),
    ("GET", "/static/../../etc/passwd", None, ""),
]


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken by hand.

    A general-purpose client (httpx) spends about 2 ms of CPU per request in Python, as much as the
    server; on a 2-core machine that halves what the server can be shown to do. Requests here are
    encoded once, in advance, and a response is read by its ``Content-Length``: about a tenth of
    that cost.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection(HOST, port))

    async def send(self, request: bytes) -> int:
        """Send one encoded request; return the response's status code (its body is read)."""
        return (await self.exchange(request))[0]

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one encoded request; return its status and whether the server closes after it."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, closing = 0, False
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
            elif line.lower() == b"connection: close":
                closing = True
        await self.reader.readexactly(length)
        return status, closing

    def close(self) -> None:
        self.writer.close()


def encode(method: str, path: str, body: dict | None) -> bytes:
    """One HTTP/1.1 request as bytes, with a JSON body when given one."""
    return encode_raw(method, path, None if body is None else json.dumps(body).encode(),
                      "application/json")


def encode_raw(method: str, path: str, payload: bytes | None, content_type: str) -> bytes:
    """One HTTP/1.1 request as bytes, with ``payload`` sent as it is."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive\r\n"
    if payload is not None:
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + (payload or b"")


async def mixed_load(port: int, valid: list[bytes], invalid: list[bytes], clients: int,
                     seconds: float, invalid_share: float, seed: int = 0) -> dict:
    """``clients`` connections for ``seconds``, each sending valid or invalid requests at random.

    Returns counts of answers by class, transport errors, and the latencies of valid requests.
    """
    counts = {"valid_200": 0, "valid_other": 0, "invalid_4xx": 0, "invalid_other": 0, "5xx": 0,
              "transport_errors": 0}
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def client(k: int) -> None:
        conn = await Connection.open(port)
        local = np.random.default_rng([seed, k])
        while time.perf_counter() < stop_at:
            bad = local.random() < invalid_share
            pool = invalid if bad else valid
            request = pool[int(local.integers(len(pool)))]
            started = time.perf_counter()
            try:
                status, closing = await conn.exchange(request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                counts["transport_errors"] += 1
                conn.close()
                conn = await Connection.open(port)
                continue
            if status >= 500:
                counts["5xx"] += 1
            if bad:
                counts["invalid_4xx" if 400 <= status < 500 else "invalid_other"] += 1
            else:
                counts["valid_200" if status == 200 else "valid_other"] += 1
                latencies.append(time.perf_counter() - started)
            if closing:  # e.g. after a refused body the server drops the connection
                conn.close()
                conn = await Connection.open(port)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    lat = np.array(latencies or [float("nan")]) * 1000
    total = sum(v for key, v in counts.items() if key not in ("5xx", "transport_errors"))
    return {**counts, "requests": total, "seconds": elapsed, "rps": total / elapsed,
            "valid_rps": len(latencies) / elapsed,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}


async def load(port: int, requests: list[bytes], count: int, concurrency: int,
               time_limit: float, rate: float | None = None) -> dict:
    """Send ``count`` requests over ``concurrency`` connections, for ``time_limit`` s at most.

    Closed loop (``rate`` None): each connection sends its next request as soon as the last one
    is answered, which measures the most the server sustains. Open loop (``rate`` req/s): request
    k is due at ``k / rate`` s whether or not earlier ones were answered, and its latency counts
    from when it was due, so time spent waiting for a free connection is not hidden (the
    "coordinated omission" of closed-loop clients).
    """
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(concurrency):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    stop_at = started + time_limit

    async def one(k: int, due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            ok = await conn.send(requests[k % len(requests)]) == 200
        except (OSError, asyncio.IncompleteReadError, ValueError):
            ok = False
            conn = await Connection.open(port)  # a broken connection is replaced
        pool.put_nowait(conn)
        latencies.append(time.perf_counter() - due)
        errors += not ok

    if rate is None:
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while sent < count and time.perf_counter() < stop_at:
                sent += 1
                await one(sent - 1, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        tasks = []
        for k in range(count):
            due = started + k / rate
            if due > stop_at:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(k, due)))
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait().close()
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "errors": errors}


def measure(server: Server, requests: list[bytes], args: argparse.Namespace,
            rate: float | None = None) -> dict:
    """Warm up, then the measured load, with the CPU time each side spent per request."""
    asyncio.run(load(server.port, requests, min(200, args.requests), args.concurrency, 20))
    server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    result = asyncio.run(load(server.port, requests, args.requests, args.concurrency,
                              args.time_limit, rate))
    # CPU per request does not depend on what else runs on the machine; rates and latencies do.
    result["server_cpu_ms"] = (server.cpu_seconds() - server_cpu) * 1000 / result["requests"]
    result["client_cpu_ms"] = (time.process_time() - client_cpu) * 1000 / result["requests"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per row (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="offered load of the open-loop row, req/s (default 300)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per row at most")
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users (default 10000)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    parser.add_argument("--run-dir", type=Path, help="reuse (or create) this run directory")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--server-args", default="",
                        help="extra options for every `aerec serve`, e.g. '--threads 2'")
    parser.add_argument("--rows", default="health,batched,open,single",
                        help="rows to run (default: health,batched,open,single; also: mixed)")
    parser.add_argument("--invalid-share", type=float, default=0.3,
                        help="share of invalid requests in the mixed row (default 0.3)")
    args = parser.parse_args()
    wanted = args.rows.split(",")
    mixed = None

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        if not (run_dir / "model").exists():
            print(f"training Mult-VAE ({args.epochs} epoch) on {args.users} synthetic users x "
                  f"{SHAPES['ml-20m'].n_items} items ...", flush=True)
            build_run(run_dir, args.users, args.epochs, seed=0)
        bodies = [{"items": items, "n": 10} for items in histories(run_dir)]
        sizes = [len(b["items"]) for b in bodies]
        health = [encode("GET", "/health", None)]
        recommend = [encode("POST", "/recommend", b) for b in bodies]
        rows = []
        for key, label, requests, extra, rate in (
            ("health", "GET /health, closed loop (floor: HTTP only)", health, [], None),
            ("batched", "POST /recommend, micro-batched, closed loop (most it sustains)",
             recommend, [], None),
            ("open", f"POST /recommend, micro-batched, open loop at {args.rate:.0f} req/s",
             recommend, [], args.rate),
            ("single", "POST /recommend, one request per batch, closed loop", recommend,
             ["--max-batch", "1"], None),
        ):
            if key not in wanted:
                continue
            server = Server(run_dir, args.server_args.split() + extra)
            try:
                result = measure(server, requests, args, rate)
            finally:
                server.stop()
            rows.append((label, result))
            print(f"{label}: {result['rps']:.0f} req/s, p50 {result['p50']:.1f} ms, "
                  f"p99 {result['p99']:.1f} ms, {result['errors']} errors, server CPU "
                  f"{result['server_cpu_ms']:.2f} ms/req, client CPU {result['client_cpu_ms']:.2f} "
                  "ms/req", flush=True)
        if "mixed" in wanted:
            mixed = run_mixed(run_dir, bodies, args)

    if mixed is not None:
        health = next((r for label, r in rows if label.startswith("GET /health")), None)
        table = mixed_table(mixed, args, health)
        print(table)
        if args.markdown:
            args.markdown.write_text(table)
            args.markdown = None  # the mixed table is the file; the others are printed
        if not mixed["passed"]:
            raise SystemExit(1)
    if not rows:
        return
    floor = rows[0][1]["rps"] if "health" in wanted else float("nan")
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores ({_cpu_name()}); one uvicorn worker; "
        f"client (raw asyncio HTTP/1.1, {args.concurrency} keep-alive connections) on the same "
        f"machine; server options: {args.server_args or 'defaults'}; "
        f"{args.requests} requests per row after a warm-up; Mult-VAE 20,108-600-200-600-20,108; "
        f"request histories: held-out users' fold-in items (median {int(np.median(sizes))}), n = 10.",
        "",
        "| endpoint | requests | req/s | ratio to floor | p50 ms | p99 ms | errors "
        "| server CPU ms/req | client CPU ms/req | CPU-bound req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cores = os.cpu_count() or 1
    for label, r in rows:
        # What the machine's cores could sustain if server and client had them to themselves.
        bound = cores * 1000 / (r["server_cpu_ms"] + r["client_cpu_ms"])
        lines.append(f"| {label} | {r['requests']} | {r['rps']:.0f} | {r['rps'] / floor:.2f} | "
                     f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | "
                     f"{r['server_cpu_ms']:.2f} | {r['client_cpu_ms']:.2f} | {bound:.0f} |")
    lines += ["", f"Load average when the run ended: {os.getloadavg()[0]:.1f} "
              f"(on {cores} cores; above {cores} other processes were competing)."]
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


def run_mixed(run_dir: Path, bodies: list[dict], args: argparse.Namespace) -> dict:
    """The mixed row: valid and invalid requests from many clients; did anything break?"""
    users = load_split(run_dir / "split").train.user_ids[:200].tolist()
    words = ["a", "e", "star", "1", "the", "zz", ""]
    valid = ([encode("POST", "/recommend", b) for b in bodies[:500]]
             + [encode("GET", f"/users/{u}/recommendations?n=10", None) for u in users]
             + [encode("GET", f"/items?q={w}&limit=20", None) for w in words]
             + [encode("GET", "/health", None)])
    invalid = [encode_raw(*bad) for bad in BAD_REQUESTS]
    server = Server(run_dir, args.server_args.split())
    try:
        load_before = os.getloadavg()[0]
        result = asyncio.run(mixed_load(server.port, valid, invalid, args.concurrency,
                                        args.time_limit, args.invalid_share))
        result["load_before"], result["load_after"] = load_before, os.getloadavg()[0]
        try:
            up = httpx.get(server.url + "/health", timeout=10).status_code == 200
        except httpx.HTTPError:
            up = False
        result["up_afterwards"] = up and server.proc.poll() is None
    finally:
        server.stop()
    result["passed"] = (result["5xx"] == 0 and result["valid_other"] == 0
                        and result["invalid_other"] == 0 and result["up_afterwards"])
    return result


def mixed_table(r: dict, args: argparse.Namespace, floor: dict | None) -> str:
    """The mixed row as a markdown table with the conditions it ran under.

    ``floor``, when the ``health`` row ran too, gives the p99 of ``GET /health`` under the same
    client, the ratio's denominator.
    """
    cores = os.cpu_count() or 1
    ratio = f"{r['p99'] / floor['p99']:.1f}" if floor else "n/a"
    return "\n".join([
        f"Machine: {platform.machine()}, {cores} cores ({_cpu_name()}); one uvicorn worker; "
        f"{args.concurrency} clients (raw asyncio HTTP/1.1, keep-alive) on the same machine for "
        f"{r['seconds']:.0f} s; {args.invalid_share:.0%} of requests invalid "
        f"({len(BAD_REQUESTS)} kinds); load average {r['load_before']:.1f} before, "
        f"{r['load_after']:.1f} after (on {cores} cores).",
        "",
        "| requests | req/s | valid 200 | valid other | invalid 4xx | invalid other | 5xx "
        "| transport errors | valid p50 ms | valid p99 ms | p99 / floor p99 | up afterwards |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {r['requests']} | {r['rps']:.0f} | {r['valid_200']} | {r['valid_other']} | "
        f"{r['invalid_4xx']} | {r['invalid_other']} | {r['5xx']} | {r['transport_errors']} | "
        f"{r['p50']:.1f} | {r['p99']:.1f} | {ratio} | {'yes' if r['up_afterwards'] else 'NO'} |",
        "" if floor is None else f"Floor: GET /health alone, closed loop, {args.concurrency} "
        f"connections, same run: p50 {floor['p50']:.1f} ms, p99 {floor['p99']:.1f} ms, "
        f"{floor['rps']:.0f} req/s.",
        "",
    ])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
