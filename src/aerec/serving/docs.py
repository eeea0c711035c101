"""The API documentation page ``/docs``, served from local files so that it works offline.

FastAPI's own page loads Swagger UI from a CDN and runs an inline script. Here the Swagger UI
files come from the ``swagger-ui-bundle-v2`` package (part of ``aerec[serve]``), mounted at
``/docs/assets``, and the page (``static/docs.html``) starts it from ``static/docs.js``, so its
Content-Security-Policy needs no inline script. Without the package the page says so and links
the schema, ``/openapi.json``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles


def swagger_ui_dir() -> str | None:
    """The folder of Swagger UI's files, or None when ``swagger-ui-bundle-v2`` is missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return str(swagger_ui_path)


def add_docs(app: FastAPI) -> None:
    """Add ``GET /docs`` and its assets to ``app``."""
    page = resources.files("aerec.serving") / "static" / "docs.html"
    assets = swagger_ui_dir()
    if assets is not None:
        app.mount("/docs/assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(str(page), media_type="text/html")
