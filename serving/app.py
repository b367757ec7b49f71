"""The feed API (FastAPI): routes, validation with messages that say what is wrong, and /metrics.

Every client mistake is a 4xx naming the field and the problem; OpenSearch or the model failing
turns the feed degraded (200, ``degraded: true``), and so does a feed the server has no time for
(:mod:`hybridrec.serving.admission`); Kafka failing turns writes into 503. Blocking work (OpenSearch,
Kafka, the pipeline) runs in FastAPI's thread pool; what is cheap and non-blocking (access checks,
admission, metrics) stays on the event loop, which saves a thread hop per request.

Access (:mod:`hybridrec.serving.auth`): the calling service's API key (``X-API-Key``), needed by
writes and, by default, reads; and the end user's signed claim (``Authorization: Bearer <JWT>``),
without which a feed's reasons name nothing the user did. Both are OpenAPI security schemes, and
every response body is a model of :mod:`hybridrec.serving.schemas`.
"""


import logging
import time
from contextlib import asynccontextmanager
from os import PathLike
from typing import Annotated, Literal

import orjson

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridrec.config import Settings
from hybridrec.contract import EventRecord, SearchQueryRecord
from hybridrec.fallback import fallback_path
from hybridrec.serving.admission import ARRIVED, Admission
from hybridrec.serving.auth import API_KEY_HEADER, AccessDenied, Authorizer, Caller
from hybridrec.serving.fallback import FallbackFeed
from hybridrec.serving.metrics import ServingMetrics
from hybridrec.serving.models import ModelUnavailable, RankerRegistry
from hybridrec.serving.pipeline import FeedPipeline, FeedQuery, FeedUnavailable
from hybridrec.serving.schemas import Accepted, FeedResponse, Health, Readiness, SimilarResponse, problems
from hybridrec.serving.similar import SimilarItems
from hybridrec.serving.store import ServingStore
from hybridrec.serving.warmup import WarmUp
from hybridrec.serving.writes import EventWriter, WriteUnavailable
from hybridrec.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

Surface = Literal["place", "clip"]
UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]


def _problem(status: int, message: str, details: list[str] | None = None, headers: dict | None = None) -> JSONResponse:
    body: dict = {"error": message}
    if details:
        body["details"] = details
    return JSONResponse(status_code=status, content=body, headers=headers)


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/feed/{user_id}``): a metric label of bounded cardinality."""
    route = scope.get("route")
    return route.path if route is not None else "unmatched"


class Observe:
    """Notes each request's arrival (for admission), latency and status; an unhandled error becomes a
    logged, counted 500 without internals. Plain ASGI: a ``BaseHTTPMiddleware`` costs every request
    a task group and memory streams on the event loop."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})[ARRIVED] = start
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # a bug, not the client's fault: log it, count it, answer without internals
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            self.metrics.errors.labels(_route(scope)).inc()
            if status is not None:
                raise  # the response has begun: nothing else can be sent
            status = 500
            await _problem(500, "internal error; it has been logged")(scope, receive, send)
        path = _route(scope)
        self.metrics.worker_responses.inc()
        self.metrics.request_seconds.labels(path, scope["method"]).observe(time.perf_counter() - start)
        self.metrics.responses.labels(path, str(status)).inc()


def create_app(settings: Settings, warm_item_cache: bool = True, rate_limit_table: PathLike | None = None) -> FastAPI:
    """The app with its own store, models, metrics and rate-limit state (nothing global).
    ``warm_item_cache=False`` suits one-shot use (``hybridrec feed``), which would not profit from it.
    ``rate_limit_table``: the bucket table shared with the other workers (:mod:`hybridrec.serving.ratelimit`);
    None keeps the buckets in this process."""
    cfg = settings.serving
    metrics = ServingMetrics()
    store = ServingStore(settings)
    rankers = RankerRegistry(settings, store, metrics)
    fallback = FallbackFeed(fallback_path(settings))
    taxonomy = load_taxonomy()
    pipeline = FeedPipeline(settings, store, rankers, fallback, metrics, taxonomy, warm_item_cache)
    rankers.prepare = pipeline.warm_model  # a newly published run serves once warm
    similar = SimilarItems(store, taxonomy)
    writer = EventWriter(settings, pipeline.variant, metrics)
    authorizer = Authorizer(cfg, rate_limit_table)
    admission = Admission(cfg.max_concurrent_feeds, cfg.max_queue_ms)
    warm_up = WarmUp(pipeline, cfg.warmup_timeout_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        """Warm before answering (:mod:`hybridrec.serving.warmup`)."""
        if not await run_in_threadpool(warm_up.run):
            warm_up.keep_trying()
        yield
        warm_up.stop()
        writer.close()

    app = FastAPI(title="hybridrec feed API", version="1.0", lifespan=lifespan,
                  description="Personalised place (map) and clip (home) feeds with reasons; events and search queries in.",
                  generate_unique_id_function=lambda route: route.name)  # operation ids: feed, similar_items, ...
    app.state.pipeline, app.state.rankers, app.state.writer = pipeline, rankers, writer
    app.state.warm_up = warm_up

    api_key = APIKeyHeader(name=API_KEY_HEADER, scheme_name="ApiKey", auto_error=False,
                           description="the calling service's key (serving.api_keys): writes always, reads by default")
    user_token = HTTPBearer(scheme_name="UserToken", bearerFormat="JWT", auto_error=False,
                            description="the end user's claim, signed by the gateway (HS256, sub = user id, exp): "
                                        "with it, the user's own feed carries personal reasons")

    def client(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def read_access(request: Request, key: Annotated[str | None, Security(api_key)],
                          token: Annotated[HTTPAuthorizationCredentials | None, Security(user_token)]) -> Caller:
        return authorizer.check(key, client(request), False, token.credentials if token else None)

    async def write_access(request: Request, key: Annotated[str | None, Security(api_key)]) -> Caller:
        return authorizer.check(key, client(request), True)

    denials = (401, 403, 429)

    app.add_middleware(Observe, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError):
        details = [_describe(e) for e in err.errors()]
        return _problem(422, f"invalid request: {details[0]}" if details else "invalid request", details)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException):
        return _problem(err.status_code, str(err.detail), headers=err.headers)

    @app.exception_handler(AccessDenied)
    async def denied(_: Request, err: AccessDenied):
        headers = {"Retry-After": str(max(1, round(err.retry_after_s)))} if err.retry_after_s else None
        return _problem(err.status, err.message, headers=headers)

    @app.get("/v1/feed/{user_id}", summary="A ranked feed with reasons", response_model=FeedResponse,
             responses=problems(400, *denials, 422, 503))
    async def feed(request: Request, caller: Annotated[Caller, Depends(read_access)], user_id: UserId,
                   surface: Annotated[Surface, Query()],
                   limit: Annotated[int, Query(ge=1, le=cfg.max_limit)] = cfg.default_limit,
                   lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
                   lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
                   radius_km: Annotated[float | None, Query(gt=0, le=cfg.max_radius_km)] = None):
        unknown = sorted(set(request.query_params) - {"surface", "limit", "lat", "lon", "radius_km"})
        if unknown:
            raise HTTPException(400, f"unknown query parameters {unknown}; known: surface, limit, lat, lon, radius_km")
        if (lat is None) != (lon is None):
            raise HTTPException(422, "lat and lon must be given together (or neither)")
        query = FeedQuery(user_id, surface, limit, lat, lon, radius_km, personal_reasons=caller.is_user(user_id))
        try:
            arrived = getattr(request.state, ARRIVED)
            async with admission.slot(arrived) as admitted:
                body = await run_in_threadpool(pipeline.feed, query, arrived) if admitted else pipeline.shed(query)
        except FeedUnavailable as err:
            raise HTTPException(503, str(err), headers={"Retry-After": "1"}) from err
        # orjson straight to bytes: FastAPI's own encoding of a 20-item feed took ~1.5 ms of event loop.
        # The body is not validated against FeedResponse here; a unit test holds it to that schema.
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/v1/items/{item_id}/similar", dependencies=[Depends(read_access)], summary="Items like this one",
             response_model=SimilarResponse, responses=problems(*denials, 404, 422, 503))
    def similar_items(item_id: UserId, surface: Annotated[Surface, Query()],
                      limit: Annotated[int, Query(ge=1, le=cfg.max_limit)] = cfg.default_limit):
        try:
            return similar.find(item_id, surface, limit)
        except KeyError as err:
            raise HTTPException(404, f"no {surface} item {item_id!r} in the served index") from err
        except LookupError as err:
            raise HTTPException(503, f"search unavailable: {err}") from err

    class EventBatch(BaseModel):
        model_config = ConfigDict(extra="forbid")
        events: list[EventRecord] = Field(min_length=1, max_length=cfg.max_events_per_request)

    class QueryBatch(BaseModel):
        model_config = ConfigDict(extra="forbid")
        queries: list[SearchQueryRecord] = Field(min_length=1, max_length=cfg.max_events_per_request)

    @app.post("/v1/events", status_code=202, dependencies=[Depends(write_access)], summary="Feed interactions into Kafka",
              response_model=Accepted, responses=problems(*denials, 422, 503))
    def post_events(batch: EventBatch):
        try:
            return {"accepted": writer.events(batch.events)}
        except ValueError as err:
            raise HTTPException(422, str(err)) from err
        except WriteUnavailable as err:
            raise HTTPException(503, str(err)) from err

    @app.post("/v1/search-queries", status_code=202, dependencies=[Depends(write_access)],
              summary="Search queries into Kafka", response_model=Accepted, responses=problems(*denials, 422, 503))
    def post_queries(batch: QueryBatch):
        try:
            return {"accepted": writer.queries(batch.queries)}
        except ValueError as err:
            raise HTTPException(422, str(err)) from err
        except WriteUnavailable as err:
            raise HTTPException(503, str(err)) from err

    @app.get("/healthz", summary="The process is up", response_model=Health)
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="OpenSearch, Kafka and both models are available", response_model=Readiness,
             responses={503: {"model": Readiness, "description": "Not ready: the checks say what is missing"}})
    def readyz():
        for surface in ("place", "clip"):
            try:
                rankers.served(surface)
            except ModelUnavailable:
                pass  # reported below as a failed check
        checks = {"opensearch": store.ping(), "kafka": writer.reachable(),
                  **{f"model_{s}": run is not None for s, run in rankers.ready().items()},
                  "fallback": fallback.available, "warm": warm_up.done}
        # A run made under another model config still serves: reported, not a readiness failure
        body = {"ready": all(checks.values()), "checks": checks, "runs": rankers.ready(),
                "config_match": rankers.config_match()}
        return JSONResponse(status_code=200 if body["ready"] else 503, content=body)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    def prometheus():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # FastAPI lists a route's security schemes as alternatives; reads need the key (unless configured
    # otherwise) and take the user claim on top: say so in the document clients are generated from.
    reads = [{"ApiKey": []}, {"ApiKey": [], "UserToken": []}]
    reads_security = reads if cfg.read_requires_key else [{}, {"UserToken": []}, *reads]
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            for operations in default_openapi()["paths"].values():
                for operation in operations.values():
                    if {"UserToken": []} in operation.get("security", ()):
                        operation["security"] = reads_security
        return app.openapi_schema

    app.openapi = openapi
    return app
