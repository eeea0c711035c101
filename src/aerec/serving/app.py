"""The recommendation service: a FastAPI app over one run directory, built by :func:`create_app`.

Endpoints (their schemas are on the generated ``/docs`` page):

``GET /health``
    model name, dataset, item count, aerec version.
``POST /recommend``
    ``{"items": ["50", 172], "n": 10}``: fold-in recommendations for any history (raw item ids of
    the dataset, as strings or integers); the history is excluded and ids the model does not know
    come back in ``unknown_items``.
``GET /users/{id}/recommendations?n=10``
    recommendations for a user of the run's data, from that user's stored history.
``GET /items?q=text&limit=20``
    items whose title holds each word of ``q`` (or whose id is ``q``), most popular first
    (all items when ``q`` is empty).
``GET /``
    the demo page (``static/``).

Every bad request gets a 4xx answer ``{"error": "...", "problems": [...]}`` saying what was wrong;
never a traceback. Concurrent recommendation requests are scored together by a
:class:`~aerec.serving.batching.MicroBatcher`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

import aerec
from aerec.data.splits import Split
from aerec.errors import DataError
from aerec.models import Recommender
from aerec.reports import dataset_name
from aerec.runs import load_split, read_run, user_history
from aerec.serving.batching import MicroBatcher
from aerec.serving.catalog import Catalog
from aerec.serving.errors import BodyLimit, install_error_handlers

#: Most items one answer may hold.
MAX_N = 100
#: Most item ids one history may hold.
MAX_HISTORY = 1000
#: Longest item id, user id or search text accepted.
MAX_ID_LENGTH = 200
#: Most items one search may return.
MAX_SEARCH = 100
#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 256 * 1024


def _item_id(value: Any) -> str:
    # Raw ids arrive as JSON strings or integers (MovieLens ids are numbers); both become the
    # string the run's vocabulary holds. Booleans and floats are refused, not coerced.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PydanticCustomError("item_id", "an item id must be a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= MAX_ID_LENGTH:
        raise PydanticCustomError("item_id", f"an item id must have 1 to {MAX_ID_LENGTH} characters")
    return text


ItemId = Annotated[str, PlainValidator(_item_id),
                   WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]})]


# -- schemas ----------------------------------------------------------------------------------------
class RecommendRequest(BaseModel):
    """A history to recommend for."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"items": ["50", "172", "181"], "n": 10}]})

    items: list[ItemId] = Field(
        max_length=MAX_HISTORY,
        description=f"raw item ids of the dataset (strings or integers), at most {MAX_HISTORY}")
    n: int = Field(10, ge=1, le=MAX_N, strict=True, description=f"number of items, 1 to {MAX_N}")


class Recommendation(BaseModel):
    item: str = Field(description="raw item id")
    score: float = Field(description="the model's score (higher is better; not a probability)")
    title: str = Field(description="the item's title, empty when the dataset has none")


class RecommendResponse(BaseModel):
    recommendations: list[Recommendation]
    unknown_items: list[str] = Field(description="ids of the request the model does not know")


class UserRecommendResponse(BaseModel):
    user: str
    history_size: int
    recommendations: list[Recommendation]


class Item(BaseModel):
    item: str
    title: str
    count: int = Field(description="training users who interacted with the item")


class ItemsResponse(BaseModel):
    items: list[Item]


class Health(BaseModel):
    status: str
    model: str
    dataset: str
    n_items: int
    n_users: int
    version: str


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, in one line")
    problems: list[dict[str, str]] = Field(default_factory=list,
                                           description="each invalid field and its problem")


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in ((400, "malformed request"), (404, "not found"),
                       (413, "request body too large"), (422, "invalid field values"))
}


# -- the app --------------------------------------------------------------------------------------
def create_app(run_dir: str | Path, *, device: str = "cpu", max_batch: int = 64,
               max_wait_ms: float = 2.0) -> FastAPI:
    """Build the service for the model of a run directory (loaded here, once).

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory (``run.json``, ``split/``, ``model/``).
    device : str
        Where the model scores: ``cpu`` (default), ``cuda`` or ``auto``.
    max_batch : int
        Most concurrent requests scored together.
    max_wait_ms : float
        Most milliseconds a request waits for others to share its batch.

    Returns
    -------
    fastapi.FastAPI
    """
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    split = load_split(run_dir / "split")
    model = Recommender.load(run_dir / "model", device=device)
    catalog = Catalog(model.item_ids_, split.train.item_titles, split.train.matrix)
    batcher = MicroBatcher(model.recommend, max_batch=max_batch, max_wait=max_wait_ms / 1000)
    info = {"status": "ok", "model": model.name, "dataset": dataset_name(spec),
            "n_items": catalog.n_items, "n_users": split.train.n_users, "version": aerec.__version__}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(
        title="aerec recommendations",
        version=aerec.__version__,
        description=f"Fold-in recommendations from a {model.name} model trained on "
        f"{info['dataset']} ({catalog.n_items} items).",
        lifespan=lifespan,
    )
    app.state.model = model
    app.state.batcher = batcher
    app.state.catalog = catalog
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    _add_routes(app, info, catalog, batcher, split)
    static = resources.files("aerec.serving") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def _add_routes(app: FastAPI, info: dict[str, Any], catalog: Catalog, batcher: MicroBatcher,
                split: Split) -> None:
    static = resources.files("aerec.serving") / "static"

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/health", response_model=Health, summary="model, dataset and version")
    async def health() -> JSONResponse:
        return JSONResponse(info)

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS,
              summary="recommendations for any history (fold-in)")
    async def recommend(body: RecommendRequest) -> JSONResponse:
        history, unknown = catalog.history(body.items)
        cols, scores = await batcher.submit(history, body.n)
        # The answers are built to the documented schema; returning the response directly skips
        # FastAPI's re-validation of it, a sizeable share of a request's CPU time.
        return JSONResponse({"recommendations": catalog.describe(cols, scores),
                             "unknown_items": unknown})

    @app.get("/users/{user_id}/recommendations", response_model=UserRecommendResponse,
             responses=_ERRORS, summary="recommendations for a user of the run's data")
    async def user_recommendations(
        user_id: Annotated[str, PathParam(max_length=MAX_ID_LENGTH)],
        n: Annotated[int, Query(ge=1, le=MAX_N, description=f"number of items, 1 to {MAX_N}")] = 10,
    ) -> JSONResponse:
        try:
            history = user_history(split, user_id).matrix
        except DataError:
            raise HTTPException(404, f"user {user_id!r} is not in this run's data; "
                                     "POST /recommend with their items instead") from None
        cols, scores = await batcher.submit(history, n)
        return JSONResponse({"user": user_id, "history_size": int(history.nnz),
                             "recommendations": catalog.describe(cols, scores)})

    @app.get("/items", response_model=ItemsResponse, responses=_ERRORS,
             summary="search items by title or id")
    async def items(
        q: Annotated[str, Query(max_length=MAX_ID_LENGTH, description="text in the title")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_SEARCH)] = 20,
    ) -> JSONResponse:
        return JSONResponse({"items": catalog.search(q, limit)})
