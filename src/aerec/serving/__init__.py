"""The HTTP recommendation service and its demo page (extra ``aerec[serve]``).

Nothing happens at import: :func:`create_app` loads a run's model and builds the FastAPI app, and
``aerec serve RUN_DIR`` runs it with uvicorn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def create_app(run_dir: str | Path, **options: Any):
    """Build the FastAPI app of a run directory; see :func:`aerec.serving.app.create_app`."""
    from aerec.extras import require

    require("fastapi", "serve", "the recommendation service")
    from aerec.serving.app import create_app as build

    return build(run_dir, **options)


__all__ = ["create_app"]
