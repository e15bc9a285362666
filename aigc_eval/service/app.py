"""The HTTP scoring service: FastAPI app, lifespan (scoring core, batcher, model loading) and routes.

    POST /v1/score   one item or a list -> per-item scores and decisions (ScoreResponse)
    GET  /healthz    alive;  GET /readyz  200 once both models are loaded, 503 before
    GET  /metrics    Prometheus text;  /docs and /openapi.json  the contract

With --token, everything but /healthz and /readyz (the probes) needs the bearer token. Under
overload a request is refused (503, Retry-After from the expected drain time) by EarlyRefusal
before its body is read, so a flood of refused requests costs as little CPU as it can.
"""

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import sys
from typing import Annotated, Callable, Union

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Discriminator, Tag
from starlette.exceptions import HTTPException as StarletteHTTPException

from aigc_eval import columns as col
from aigc_eval.metrics.registry import create_metrics
from aigc_eval.scoring.core import ScoringCore
from aigc_eval.scoring.model_loading import inception_categories
from aigc_eval.service import strict_json
from aigc_eval.service.batcher import DeadlineExceeded, DynamicBatcher, QueueFull
from aigc_eval.service.middleware import AccessLog, BodyLimit, EarlyRefusal
from aigc_eval.service.schemas import (
    ErrorResponse,
    Health,
    ItemResult,
    ScoreItem,
    ScoreItems,
    ScoreResponse,
)
from aigc_eval.service.scoring import (
    BadItem,
    ScoringService,
    ServiceSettings,
    load_reference_marginal,
)
from aigc_eval.service.telemetry import Metrics

log = logging.getLogger("aigc_eval.service")
NOT_READY_RETRY_AFTER_S = 5  # loading both models takes longer than that; probes poll /readyz anyway
DISCONNECT_POLL_S = 0.5
# The GIL switch interval while the service runs (Python's default is 5 ms). Each torch op in
# the model lanes releases the GIL and takes it back; while the event loop is busy in Python
# refusing a flood, every take-back waited up to the interval. Under a 256-connection flood on
# 2 cores (bench_service) the models scored 0.3-0.65 images/s with 5 ms, 0.8-1.9 with 0.5 ms.
SWITCH_INTERVAL_S = 0.0005
ScoreBody = Annotated[
    Union[Annotated[ScoreItem, Tag("item")], Annotated[ScoreItems, Tag("items")]],
    Discriminator(lambda value: "items" if isinstance(value, list) else "item"),
    Body(openapi_examples={"one": {"value": {"image_url": "https://cdn.example.com/a.jpg", "prompt": "雪地背景，运动鞋"}}}),
]
ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "an image or cut-out reference refused before fetching (not http(s), not base64); a body not UTF-8; "
         "JSON with NaN, Infinity, a number beyond the float range or a lone surrogate (with its position)",
    401: "missing or wrong bearer token (with --token)",
    413: "request body over --max-body-mb, or more items than --max-queue",
    503: "queue full, not expected to be done within --deadline-s, models loading or shutting down: "
         "retry after Retry-After seconds (the expected drain time)",
    504: "no result within --deadline-s",
}.items()}


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status, detail={"field": field, "message": message}, headers=headers)


class ServiceState:
    """What the lifespan sets up and the routes use."""

    def __init__(self) -> None:
        self.phase, self.detail = "loading", ""
        self.service: ScoringService | None = None
        self.batcher: DynamicBatcher | None = None


def open_service_recorder(settings: ServiceSettings, service: ScoringService):
    """The results store's Recorder for this service's life (one run; answers to items without an
    id are not recorded: the store keys rows on the image id)."""
    from aigc_eval.store import Recorder, RunInfo

    calibration = service.decision.calibration
    run = RunInfo(generator_version=settings.generator_version, metric_set=",".join(service.core.metrics),
                  calibration_hash=calibration.digest if calibration is not None else None)
    return Recorder.open(settings.store, source="service", run=run)


def create_app(settings: ServiceSettings, on_fatal: Callable[[], None] | None = None) -> FastAPI:
    """The app for `settings`; the reference marginal is read now (ValueError when unusable).
    `on_fatal` is called when the models cannot be loaded (serve.py then exits)."""
    marginal = (load_reference_marginal(settings.reference_marginal, len(inception_categories()))
                if settings.reference_marginal is not None else None)
    runtime = dataclasses.replace(settings.runtime, fetch=dataclasses.replace(
        settings.runtime.fetch, public_urls_only=not settings.allow_private_urls))
    scorers = create_metrics(settings.metric_names(), settings.metric_setup(runtime, marginal),
                             explicit=settings.metrics is not None)
    metrics, state = Metrics(), ServiceState()

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)
        metrics.batch_seconds.observe(seconds)
        if state.service is not None:
            core = state.service.core
            for name, scorer in (("clip", core.clip), ("inception", core.inception)):
                if scorer is not None:
                    metrics.count_cache(name, scorer.reused, scorer.computed)

    def load_models(core: ScoringCore) -> None:
        for metric in core.metrics.values():
            for load in metric.warm_up():
                load()

    async def warm(core: ScoringCore) -> None:
        try:
            await asyncio.to_thread(load_models, core)
            state.phase = "ok"
            log.info("models loaded; ready")
        except Exception as exc:  # weights unreadable: not ready, ever; serve.py exits
            state.phase, state.detail = "failed", f"{type(exc).__name__}: {exc}"
            log.error("error: the models could not be loaded: %s", state.detail)
            if on_fatal is not None:
                on_fatal()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        stack = contextlib.ExitStack()
        opened = ScoringCore.open(scorers, runtime)
        core = await asyncio.to_thread(stack.enter_context, opened)  # may download weights: not on the loop
        stack.callback(sys.setswitchinterval, sys.getswitchinterval())  # process-wide: put back on the way out
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            state.service = ScoringService(core, settings, marginal)
            if settings.store:
                state.service.recorder = await asyncio.to_thread(open_service_recorder, settings, state.service)
                stack.callback(state.service.recorder.close)
            state.batcher = DynamicBatcher(lambda rows: state.service.process(rows), runtime.batch_size,
                                           settings.max_wait_ms, settings.max_queue, workers=2, on_batch=on_batch)
            await state.batcher.start()
            metrics.watch_queue(lambda: state.batcher.queue_depth, lambda: state.batcher.in_flight,
                                lambda: state.batcher.expected_s(0) or 0.0)
            loading = asyncio.create_task(warm(core))
            yield
            state.phase = "stopping"
            log.info("stopping: finishing queued work")
            await state.batcher.stop(drain=True)
            await loading
        finally:
            await asyncio.to_thread(stack.close)

    # The schema and docs routes are added below, behind the token when one is set.
    app = FastAPI(title="aigc-image-eval scoring service", version="1.0", lifespan=lifespan,
                  description="Scores AI-generated e-commerce images as main.py --input does. See docs/service.md.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.service_state = state
    bearer = HTTPBearer(auto_error=False, description="--token / AIGC_EVAL_TOKEN, when set")

    def token_ok(given: bytes) -> bool:
        return settings.token is None or secrets.compare_digest(given, settings.token.encode())

    async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        """401 unless the request carries the configured bearer token (no token configured: open)."""
        if not token_ok(credentials.credentials.encode() if credentials is not None else b""):
            raise _error(401, "missing or wrong bearer token", "Authorization", {"WWW-Authenticate": "Bearer"})

    def refusal(count: int) -> HTTPException | None:
        """The 503 for `count` more items now (not ready, stopping, no room, or not expected to be
        done within the deadline), or None when they would be admitted."""
        if state.phase != "ok" or state.batcher is None:
            return _error(503, f"not ready: {state.phase} {state.detail}".strip(), None,
                          {"Retry-After": str(NOT_READY_RETRY_AFTER_S)})
        try:
            state.batcher.check(count, settings.deadline_s)
        except QueueFull as exc:  # ShuttingDown too
            return _error(503, f"overloaded: {exc}", None, {"Retry-After": str(exc.retry_after_s)})
        return None

    def refuse_early(authorization: bytes) -> HTTPException | None:
        """EarlyRefusal's question, before the body is read: the 503 for at least one more item.
        A request without the right token goes on to the route, whose answer is 401."""
        scheme, _, given = authorization.partition(b" ")
        if settings.token is not None and (scheme.lower() != b"bearer" or not token_ok(given.strip())):
            return None
        return refusal(1)

    strict_json.install(app)  # first: inside BodyLimit, so the body it reads is capped
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(EarlyRefusal, path="/v1/score", refuse=refuse_early)  # before BodyLimit reads the body
    app.add_middleware(AccessLog, metrics=metrics)  # added last: outermost, so it sees 413s and 503s too
    guarded = [Depends(require_token)]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Every HTTP error as ErrorResponse, FastAPI's own too (a body that is not UTF-8: 400)."""
        detail = exc.detail if isinstance(exc.detail, dict) else {
            "field": "body" if exc.status_code == 400 else None, "message": str(exc.detail)}
        return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error: %s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": {"field": None, "message": f"internal error: {type(exc).__name__}"}}, 500)

    @app.post("/v1/score", response_model=ScoreResponse, responses=ERRORS, dependencies=guarded)
    async def score(body: ScoreBody, request: Request) -> ScoreResponse:
        """Score one item or a list of items (at most 256). Per-item failures (an image that
        cannot be fetched, decoded or is refused by the address guard) are items with
        status "error" in a 200 answer; only the whole request fails with an HTTP error."""
        items = body if isinstance(body, list) else [body]
        if len(items) > settings.max_queue:  # could never be queued whole: 503 forever would mislead
            raise _error(413, f"{len(items)} items, more than --max-queue {settings.max_queue} allows in one request",
                         "items")
        refused = refusal(len(items))  # EarlyRefusal asked for one item; now the count is known
        if refused is not None:
            raise refused
        assert state.service is not None and state.batcher is not None
        try:
            rows = state.service.rows_for(items)
        except BadItem as exc:
            raise _error(400, str(exc), exc.field) from None
        results = await _submit(state.batcher, rows, settings.deadline_s, request)
        for result in results:
            metrics.items.labels(result.status).inc()
        return ScoreResponse(results=results, is_term=state.service.is_term)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process is up and answering (models may still be loading)."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz(response: Response) -> Health:
        """200 once both models are loaded; 503 while loading, after a load failure and while stopping."""
        if state.phase != "ok":
            response.status_code = 503
        return Health(status=state.phase, detail=state.detail)  # type: ignore[arg-type]

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **_only(ERRORS, 401)},
             dependencies=guarded)
    async def prometheus() -> Response:
        """Prometheus metrics: requests by status, latency, batch sizes, queue depth, cache hits."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    return app


def _only(responses: dict[int, dict], *statuses: int) -> dict[int, dict]:
    return {status: responses[status] for status in statuses}


async def _gone(request: Request) -> None:
    """Returns once the client has disconnected."""
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)


async def _submit(batcher: DynamicBatcher, rows: list[dict[str, str]], deadline_s: float,
                  request: Request) -> list[ItemResult]:
    """Every row's result from the batcher, or 503/504 for the whole request; on failure, or when
    the client hangs up, the request's rows leave the queue (a cancelled submit frees its slots),
    so work for callers that gave up does not hold the queue full after a burst."""
    results = asyncio.ensure_future(batcher.submit_many(rows, deadline_s))
    watcher = asyncio.ensure_future(_gone(request))
    try:
        await asyncio.wait([results, watcher], return_when=asyncio.FIRST_COMPLETED)
        if not results.done():
            raise _error(499, "client closed the request")  # nginx's code; nobody reads this answer
        return list(results.result())
    except QueueFull as exc:  # ShuttingDown too; admitted a moment ago, but another request came first
        raise _error(503, f"overloaded: {exc}", None, {"Retry-After": str(exc.retry_after_s)}) from None
    except DeadlineExceeded as exc:
        raise _error(504, f"deadline exceeded: {exc} (--deadline-s {deadline_s:g})") from None
    finally:
        for task in (watcher, results):
            task.cancel()
        await asyncio.gather(watcher, results, return_exceptions=True)
