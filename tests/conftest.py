"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder of real data sets (``ml-100k/``, ``ml-latest-small/``, ...), from ``AEREC_DATA_DIR``.

    The README's test command sets it; without it (or when the folder is missing) the test is skipped.
    """
    value = os.environ.get("AEREC_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip(f"no real data at {value!r} (set AEREC_DATA_DIR)")
    return Path(value)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    """A folder holding a small fake ML-100K (``ml-100k/u.data``, ``u.item``), made once per module."""
    from tiny_runs import write_fake_ml100k

    directory = tmp_path_factory.mktemp("data")
    write_fake_ml100k(directory)
    return directory


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A local HTTP server over a fresh folder; yields ``(base_url, folder, requested_paths)``.

    It listens on 127.0.0.1 on a free port, in a thread, and is shut down after the test, so that
    download code is tested without the internet.
    """
    import functools
    import http.server
    import threading

    # A proxy set in the environment must not see requests to the local server.
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    # A short poll interval makes shutdown() quick (the default waits up to half a second).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
