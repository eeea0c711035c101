"""Security headers on every answer of the service, and the content policy of each page.

Every answer says ``X-Content-Type-Options: nosniff`` (a browser must not guess a JSON answer is a
page) and may not be framed (``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``). The
JSON answers may load nothing at all; the demo page and the API documentation may load their own
files only: no CDN, no inline script.
"""

from __future__ import annotations

from typing import Any

#: Answers that are data, not pages: nothing to load, nothing to run.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: The demo page: its own script, style and icon; requests to the service itself.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
#: Swagger UI sets style attributes and draws its icons as data: images.
DOCS_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")


def policy_for(path: str) -> str:
    """The Content-Security-Policy of the answer to ``path``."""
    if path == "/" or path.startswith("/static/"):
        return PAGE_POLICY
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_POLICY
    return API_POLICY


def security_headers(path: str) -> dict[str, str]:
    """The security headers of the answer to ``path``.

    The middleware below adds them to every answer; the handler of unexpected errors adds them
    itself, because Starlette sends that 500 from its outermost layer, outside every middleware.
    """
    return {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": policy_for(path),
    }


class SecurityHeaders:
    """ASGI middleware: add the security headers to every HTTP answer, errors included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(name.encode(), value.encode())
                 for name, value in security_headers(scope.get("path", "")).items()]

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", ())}
                message = {**message, "headers": [*message.get("headers", ()),
                                                   *(h for h in extra if h[0] not in names)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
