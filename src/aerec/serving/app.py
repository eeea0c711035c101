"""The recommendation service: a FastAPI app over one run or model directory (:func:`create_app`).

Endpoints (their schemas are on the generated ``/docs`` page):

``GET /health``
    model name, dataset, item count, aerec version.
``POST /recommend``
    ``{"items": ["50", 172, "181:4"], "n": 10}``: fold-in recommendations for any history (raw
    item ids of the dataset, as strings or integers, ``ID:RATING`` for a rating), built as the CLI
    builds it (:func:`aerec.histories.history_from_items`); the history is excluded and ids the
    model does not know come back in ``unknown_items``. Optional ``"exclude"`` and ``"allow"``
    item lists are the business filters of :func:`aerec.models.raw_ids.item_filter`. A history
    with no known item is a 422, unless ``"fallback": "popularity"`` asks for the most popular
    items instead (the answer's ``fallback`` then says so).
``GET /users/{id}/recommendations?n=10&exclude=1,2&allow=...``
    recommendations for a user of the run's data, from everything the run holds about that user
    (:func:`aerec.histories.known_user_history`), with the same filters. A model directory
    keeps no users: there every user is a 404 that says so.
``GET /items?q=text&limit=20``
    items whose title holds each word of ``q`` (or whose id is ``q``), most popular first
    (all items when ``q`` is empty).
``GET /items/{id}/similar?n=10``
    the items the model finds most similar to one item (``model.similar_items``).
``GET /``
    the demo page (``static/``); ``/docs``, the API documentation, is served from the files of
    ``swagger-ui-bundle-v2`` (no CDN), ``/openapi.json`` is its schema.

Every bad request gets a 4xx answer ``{"error": "...", "problems": [...]}`` saying what was wrong;
never a traceback. Concurrent recommendation requests are scored together by a
:class:`~aerec.serving.batching.MicroBatcher`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

import aerec
from aerec.errors import ConfigError, DataError
from aerec.histories import history_from_items, known_user_history
from aerec.model_source import ModelSource, open_model_source
from aerec.models import Recommender
from aerec.models.raw_ids import FALLBACKS, ItemFilter, empty_history_error, item_filter
from aerec.models.similarity import similarity_definition
from aerec.serving.batching import MicroBatcher
from aerec.serving.catalog import Catalog
from aerec.serving.docs import add_docs
from aerec.serving.errors import BodyLimit, JSONAnswer, install_error_handlers
from aerec.serving.headers import SecurityHeaders
from aerec.serving.slashes import TrailingSlash

#: Most items one answer may hold.
MAX_N = 100
#: Most item ids one history may hold.
MAX_HISTORY = 1000
#: Longest item id, user id or search text accepted.
MAX_ID_LENGTH = 200
#: Most items one search may return.
MAX_SEARCH = 100
#: Most item ids an ``exclude`` or ``allow`` list may hold.
MAX_FILTER = 10_000
#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 256 * 1024
#: How a request asks for the popularity fallback (said in the 422 of an empty history).
_HINT = '"fallback": "popularity"'
#: What an answer says when its ``allow`` list names no item the model knows.
NOTHING_ALLOWED = "the allow list names no item the model knows, so nothing can be recommended"


def _item_id(value: Any) -> str:
    # Raw ids arrive as JSON strings or integers (MovieLens ids are numbers); both become the
    # string the run's vocabulary holds. Booleans and floats are refused, not coerced.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PydanticCustomError("item_id", "an item id must be a string or an integer")
    text = str(value)
    if not 1 <= len(text) <= MAX_ID_LENGTH:
        raise PydanticCustomError("item_id", f"an item id must have 1 to {MAX_ID_LENGTH} characters")
    try:  # JSON's \ud800 escapes can carry lone surrogates, which no dataset id holds
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("item_id", "an item id must be valid Unicode text "
                                  "(it holds a lone surrogate)") from None
    return text


ItemId = Annotated[str, PlainValidator(_item_id),
                   WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]})]


def _id_query(values: list[str] | None, name: str) -> list[str] | None:
    """An ``exclude`` / ``allow`` query parameter as a list of ids, or None when absent.

    The parameter may be repeated and each value may hold several ids separated by commas (as
    the CLI's ``--item``); empty pieces are skipped, so ``?allow=`` is an empty allow list.
    """
    if values is None:
        return None
    ids = [piece for value in values for piece in value.split(",") if piece]
    problem = None
    if len(ids) > MAX_FILTER:
        problem = f"List should have at most {MAX_FILTER} items, not {len(ids)}"
    else:
        for k, piece in enumerate(ids):
            try:
                _item_id(piece)
            except PydanticCustomError as exc:
                problem = f"id {k + 1}: {exc.message()}"
                break
    if problem:
        raise RequestValidationError([{"loc": ("query", name), "msg": problem, "type": "value_error"}])
    return ids


_FILTER_QUERY = (
    "item ids separated by commas, or the parameter repeated; at most "
    f"{MAX_FILTER:,} (ids that hold a comma: use POST /recommend)"
)


# -- schemas ----------------------------------------------------------------------------------------
class RecommendRequest(BaseModel):
    """A history to recommend for."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"items": ["50", "172", "181"], "n": 10}]})

    items: list[ItemId] = Field(
        max_length=MAX_HISTORY,
        description=f"raw item ids of the dataset (strings or integers), at most {MAX_HISTORY}; "
        "ID:RATING gives a rating (rating models; without one an item gets the top of the "
        "training range, as in the CLI)")
    n: int = Field(10, ge=1, le=MAX_N, strict=True, description=f"number of items, 1 to {MAX_N}")
    exclude: list[ItemId] | None = Field(
        None, max_length=MAX_FILTER,
        description=f"items never recommended (raw ids), at most {MAX_FILTER:,}")
    allow: list[ItemId] | None = Field(
        None, max_length=MAX_FILTER,
        description="when given, the only items that may be recommended, minus exclude; an empty "
        "list allows nothing (the answer is empty and its note says why)")
    fallback: Literal[FALLBACKS] | None = Field(  # type: ignore[valid-type]
        None, description="what a history with no known item gets: an error (null, the "
        "default: 422) or the most popular items (\"popularity\"; the answer's fallback says so)")


class Recommendation(BaseModel):
    item: str = Field(description="raw item id")
    score: float = Field(description="the model's score (higher is better; not a probability)")
    title: str = Field(description="the item's title, empty when the dataset has none")


class Filtered(BaseModel):
    unknown_exclude: list[str] = Field(description="ids of exclude the model does not know")
    unknown_allow: list[str] = Field(description="ids of allow the model does not know")
    note: str = Field(description="why the answer is empty when the filters allow nothing; "
                      "empty otherwise")


class RecommendResponse(Filtered):
    recommendations: list[Recommendation]
    unknown_items: list[str] = Field(description="ids of the history the model does not know")
    fallback: str | None = Field(description="\"popularity\" when the history held no known "
                                 "item and the request asked for that fallback; null otherwise")


class UserRecommendResponse(Filtered):
    user: str
    history_size: int
    recommendations: list[Recommendation]


class SimilarItem(BaseModel):
    item: str = Field(description="raw item id")
    score: float = Field(description="the model's similarity (higher is more similar)")
    title: str = Field(description="the item's title, empty when the dataset has none")


class SimilarResponse(BaseModel):
    item: str
    title: str
    definition: str = Field(description="what 'similar' means for this model")
    similar: list[SimilarItem]


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
    """Build the service for the model of a run or model directory (loaded here, once).

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory (``run.json``, ``split/``, ``model/``), or a model directory
        written by ``model.save`` (no users: only histories of items are answered).
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
    source = open_model_source(run_dir, device=device)
    model = source.model
    catalog = Catalog(model.item_ids_, source.titles, source.item_counts())

    def score(histories, n: int, blocked: np.ndarray | None = None):
        # blocked is (batch, n_items): recommend_filtered's mask broadcasts over the rows, so one
        # mask row per request keeps each request's filters its own inside a shared batch
        return model.recommend_filtered(histories, n, None if blocked is None else ItemFilter(blocked))

    batcher = MicroBatcher(score, max_batch=max_batch, max_wait=max_wait_ms / 1000)
    info = {"status": "ok", "model": model.name, "dataset": source.dataset(),
            "n_items": catalog.n_items, "n_users": source.n_users, "version": aerec.__version__}

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
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN; /docs is served locally below
        docs_url=None, redoc_url=None,
        default_response_class=JSONAnswer,
        redirect_slashes=False,  # /recommend/ is served, not redirected (see TrailingSlash)
    )
    app.state.model = model
    app.state.batcher = batcher
    app.state.catalog = catalog
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrailingSlash)
    _add_routes(app, info, model, catalog, batcher, source)
    add_docs(app)
    static = resources.files("aerec.serving") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def _add_routes(app: FastAPI, info: dict[str, Any], model: Recommender, catalog: Catalog,
                batcher: MicroBatcher, source: ModelSource) -> None:
    static = resources.files("aerec.serving") / "static"

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # browsers ask for it unprompted; an SVG icon is a few hundred bytes and never a 404
        return FileResponse(str(static / "favicon.svg"), media_type="image/svg+xml")

    @app.get("/health", response_model=Health, summary="model, dataset and version")
    async def health() -> JSONResponse:
        return JSONAnswer(info)

    @app.post("/recommend", response_model=RecommendResponse, responses=_ERRORS,
              summary="recommendations for any history (fold-in)")
    async def recommend(body: RecommendRequest) -> JSONResponse:
        try:
            history, unknown = history_from_items(model, body.items, index=catalog.index)
        except DataError as exc:  # a rating that is not a finite number
            raise HTTPException(422, f"items: {exc}") from None
        fallback = body.fallback if history.nnz == 0 else None
        if history.nnz == 0 and fallback is None:
            raise HTTPException(422, f"items: {empty_history_error(unknown, hint=_HINT)}")
        filt, note = _filter(catalog, body.exclude, body.allow)
        if fallback is None:
            recs = await _recommend(batcher, catalog, history, body.n, filt)
        else:
            try:
                recs = catalog.describe(*(a[0] for a in model.recommend_popular(body.n, filt)))
            except DataError as exc:  # a model saved without its item counts
                raise HTTPException(422, str(exc)) from None
        # The answers are built to the documented schema; returning the response directly skips
        # FastAPI's re-validation of it, a sizeable share of a request's CPU time.
        return JSONAnswer({"recommendations": recs, "unknown_items": unknown,
                           "fallback": fallback, **_filter_report(filt, note)})

    @app.get("/users/{user_id}/recommendations", response_model=UserRecommendResponse,
             responses=_ERRORS, summary="recommendations for a user of the run's data")
    async def user_recommendations(
        user_id: Annotated[str, PathParam(max_length=MAX_ID_LENGTH)],
        n: Annotated[int, Query(ge=1, le=MAX_N, description=f"number of items, 1 to {MAX_N}")] = 10,
        exclude: Annotated[list[str] | None, Query(
            description=f"items never recommended: {_FILTER_QUERY}")] = None,
        allow: Annotated[list[str] | None, Query(
            description=f"the only items that may be recommended: {_FILTER_QUERY}")] = None,
    ) -> JSONResponse:
        exclude, allow = _id_query(exclude, "exclude"), _id_query(allow, "allow")
        if not source.is_run:
            raise HTTPException(404, "this service holds a model directory, which keeps no "
                                     "users; POST /recommend with their items instead")
        try:
            history = known_user_history(source.split, user_id)
        except DataError:
            raise HTTPException(404, f"user {user_id!r} is not in this run's data; "
                                     "POST /recommend with their items instead") from None
        filt, note = _filter(catalog, exclude, allow)
        recs = await _recommend(batcher, catalog, history, n, filt)
        return JSONAnswer({"user": user_id, "history_size": int(history.nnz),
                           "recommendations": recs, **_filter_report(filt, note)})

    @app.get("/items", response_model=ItemsResponse, responses=_ERRORS,
             summary="search items by title or id")
    async def items(
        q: Annotated[str, Query(max_length=MAX_ID_LENGTH, description="text in the title")] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_SEARCH)] = 20,
    ) -> JSONResponse:
        return JSONAnswer({"items": catalog.search(q, limit)})

    definition = similarity_definition(model)  # one sentence per model: said in every answer

    @app.get("/items/{item_id}/similar", response_model=SimilarResponse, responses=_ERRORS,
             summary="the items most similar to one item")
    def similar(  # a plain function: FastAPI runs it on a worker thread, off the event loop
        item_id: Annotated[str, PathParam(max_length=MAX_ID_LENGTH)],
        n: Annotated[int, Query(ge=1, le=MAX_N, description=f"number of items, 1 to {MAX_N}")] = 10,
    ) -> JSONResponse:
        column = catalog.index.get(item_id)
        if column is None:
            raise HTTPException(404, f"item {item_id!r} is not in this run's data; "
                                     "GET /items?q=... finds items by title")
        try:
            frame = model.similar_items([item_id], n, titles={})
        except (ConfigError, DataError) as exc:  # a rating model, or an item EASE does not model
            raise HTTPException(422, str(exc)) from None
        similar = [{"item": i, "score": float(s), "title": catalog.titles[catalog.index[i]]}
                   for i, s in zip(frame["similar_item"].tolist(), frame["score"].tolist())]
        return JSONAnswer({"item": item_id, "title": catalog.titles[column],
                           "definition": definition, "similar": similar})


# -- business filters -----------------------------------------------------------------------------
def _filter(catalog: Catalog, exclude: list[str] | None,
            allow: list[str] | None) -> tuple[ItemFilter, str]:
    """The request's filter (:func:`aerec.models.raw_ids.item_filter`) and a note for its answer.

    An allow list that names no known item is an error in Python and the CLI, where it is almost
    surely a mistake; a service answers it with no items and a note, since "nothing is in stock"
    is an ordinary state of a shop, not a bad request.
    """
    try:
        return item_filter(catalog.item_ids, exclude, allow, index=catalog.index), ""
    except DataError:
        rest = item_filter(catalog.item_ids, exclude, None, index=catalog.index)
        nothing = np.ones(catalog.n_items, dtype=bool)
        return ItemFilter(nothing, rest.unknown_exclude, list(allow or ())), NOTHING_ALLOWED


def _filter_report(filt: ItemFilter, note: str) -> dict[str, Any]:
    """The filter's part of an answer: its unknown ids (each once, in order) and its note."""
    return {"unknown_exclude": list(dict.fromkeys(filt.unknown_exclude)),
            "unknown_allow": list(dict.fromkeys(filt.unknown_allow)), "note": note}


async def _recommend(batcher: MicroBatcher, catalog: Catalog, history: Any, n: int,
                     filt: ItemFilter) -> list[dict[str, Any]]:
    """The top ``n`` for one history under ``filt``, scored in a shared batch."""
    if filt.blocked is not None and filt.blocked.all():
        return []  # nothing may be recommended: no need to score
    cols, scores = await batcher.submit(history, n, filt.blocked)
    return catalog.describe(cols, scores)
