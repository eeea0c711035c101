"""Errors of the service as JSON: ``{"error": "...", "problems": [{"field", "problem"}]}``.

Validation errors become a 422 (a 400 for malformed JSON) whose message names each field and its
problem; HTTP errors keep their status; anything unexpected is a 500 that names the exception type
but never shows a traceback. :class:`BodyLimit` refuses large bodies before they are read.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from aerec.serving.headers import security_headers


class JSONAnswer(JSONResponse):
    """A JSON answer whose bytes are always valid UTF-8.

    A JSON request may carry a lone surrogate (``"\\ud800"``), which has no UTF-8 form; echoed
    back (an unknown item id), it would make the usual encoder fail and the request a 500. Such
    text is written with ASCII escapes instead, which any JSON parser reads back as sent.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False,
                              separators=(",", ":")).encode("ascii")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as JSON."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in exc.errors()]
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
        return JSONAnswer({"error": message, "problems": problems},
                            status_code=400 if malformed else 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONAnswer({"error": str(exc.detail), "problems": []},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a bad request: say so without leaking a traceback to the client.
        return JSONAnswer({"error": f"internal error ({type(exc).__name__})", "problems": []},
                          status_code=500, headers=security_headers(request.url.path))


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as ``{"field", "problem"}`` in words a client can act on."""
    loc = tuple(error.get("loc", ()))
    kind = error.get("type")
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[-1]}" if len(loc) > 1 else ""
        return {"field": "body", "problem": f"malformed JSON{at}{f' ({detail})' if detail else ''}"}
    field = ".".join(str(p) for p in loc if p not in ("body", "query", "path")) or "body"
    if field == "body" and kind in ("model_attributes_type", "dict_type", "missing"):
        return {"field": "body", "problem": 'expected a JSON object such as {"items": ["50"], '
                '"n": 10}, sent with Content-Type: application/json'}
    return {"field": field, "problem": str(error.get("msg", "invalid value"))}


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``max_bytes`` with a 413."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) <= self.max_bytes:
                await self.app(scope, receive, send)
            else:
                await self._refuse(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit first, then replay what was read.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        response = JSONAnswer(
            {"error": f"request body larger than {self.max_bytes} bytes", "problems": []},
            status_code=413)
        await response(scope, receive, send)
