"""A path with a trailing slash is served as the path without it, never redirected.

Starlette answers ``/recommend/`` with a redirect to ``/recommend`` whose absolute target it
builds from the request's ``Host`` header: a client (or a proxy) that sends another host gets a
redirect to that host. Serving both spellings alike needs no redirect at all.
"""

from __future__ import annotations

from typing import Any


class TrailingSlash:
    """ASGI middleware: ``/a/b/`` is routed as ``/a/b`` (``/`` itself stays ``/``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            stripped = path.rstrip("/") or "/"
            raw = scope.get("raw_path")
            scope = {**scope, "path": stripped,
                     "raw_path": raw.rstrip(b"/") or b"/" if raw is not None else None}
        await self.app(scope, receive, send)
