"""What every service app has: lifespan, health, metrics, problems, OpenAPI.

`build_service_app` is called by each service's `create_app(settings)`. The
lifespan owns the engine, the Kafka producer, the outbox relay and the
service's own workers (consumers, schedulers), all inside the service
process so that killing the process kills them with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import TokenVerifier
from shared.backoff import Backoff
from shared.boundary import RequestBoundary
from shared.config import PlatformSettings
from shared.consumer import EventConsumer
from shared.cors import Cors
from shared.db import create_engine, create_read_sessionmaker, create_sessionmaker
from shared.errors import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA, NotFound, install_problem_handlers
from shared.kafka import create_producer, ensure_topics
from shared.observability import CONTEXT_PARAMETERS, Metrics, RequestContextMiddleware, configure_logging
from shared.outbox import MAX_EVENT_BYTES_INFO, OutboxRelay
from shared.problem_types import PROBLEM_TYPES, problem_page
from shared.ratelimit import RateLimit
from shared.tracing import start_tracing, stop_tracing, trace_statements

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

logger = logging.getLogger(__name__)


class Worker(Protocol):
    """A background job of the service: runs until cancelled."""

    async def run(self) -> None: ...


W = TypeVar("W", bound=Worker)


@dataclass
class ServiceRuntime:
    """Everything a running service owns; on `app.state.runtime`."""

    settings: PlatformSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    metrics: Metrics
    producer_ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # The outbox relay, once the producer is connected and `run_workers` is on.
    relay: OutboxRelay | None = None
    # The background jobs started by name (`start`), each until `stop` or shutdown.
    workers: dict[str, Worker] = field(default_factory=dict)
    _worker_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _broker_checked: tuple[float, str] | None = field(default=None, init=False)
    # OpenTelemetry's tracer for this service when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (shared/tracing.py).
    tracer: Tracer | None = None

    def spawn(self, name: str, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self.tasks.append(task)
        return task

    def start(self, name: str, worker: Worker) -> None:
        """Run `worker` as the background job `name`, until `stop(name)` or the service stops."""
        if name in self.workers:
            raise RuntimeError(f"a worker named {name!r} is already started")
        self.workers[name] = worker
        self._worker_tasks[name] = self.spawn(name, worker.run())

    async def stop(self, name: str) -> None:
        """Cancel the job `name` and wait until it has finished (a dispatcher hands back its leases)."""
        self.workers.pop(name)
        task = self._worker_tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.tasks.remove(task)

    def is_running(self, name: str) -> bool:
        task = self._worker_tasks.get(name)
        return task is not None and not task.done()

    def running(self, kind: type[W]) -> list[W]:
        """The started workers of this kind, in the order they were started."""
        return [worker for worker in self.workers.values() if isinstance(worker, kind)]

    @property
    def consumers(self) -> list[EventConsumer]:
        return self.running(EventConsumer)


WorkerFactory = Callable[[ServiceRuntime], Sequence[tuple[str, Worker]]]
Hook = Callable[[ServiceRuntime], Awaitable[None]]


def build_service_app(
    *,
    settings: PlatformSettings,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    workers: WorkerFactory | None = None,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
) -> FastAPI:
    metrics = Metrics(settings.service_name)
    # None unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set: then no middleware, span or provider exists.
    tracer = start_tracing(settings.service_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            settings.service_name,
            level=settings.log_level,
            json_logs=settings.log_json,
            access_log=settings.access_log,
        )
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        trace_statements(engine, tracer)
        runtime = ServiceRuntime(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            producer=create_producer(settings),
            metrics=metrics,
            tracer=tracer,
        )
        # Every session knows how large an event may be (shared.outbox.add_records checks it).
        runtime.sessionmaker.configure(info={MAX_EVENT_BYTES_INFO: settings.max_event_bytes})
        app.state.runtime = runtime
        app.state.sessionmaker = runtime.sessionmaker
        app.state.read_sessionmaker = create_read_sessionmaker(engine)
        runtime.spawn("producer", _start_producer(runtime))
        _dump_tasks_on_sigusr1()
        if on_startup is not None:
            await on_startup(runtime)
        if settings.run_workers:
            runtime.spawn("workers", _start_workers(runtime, workers))
        # What startup built (routes, models, the VADER lexicon, ...) lives as long as the process:
        # frozen, the collector's full passes skip it, and their pauses stay out of the p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await _stop_tasks(runtime.tasks)
            if on_shutdown is not None:
                await on_shutdown(runtime)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runtime.producer.stop(), 5)
            await engine.dispose()
            if tracer is not None:
                stop_tracing(settings.service_name)

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        # Each operation's `operationId` is its route function's name (`capture_feedback`), not FastAPI's
        # name + path + method: readable in generated clients and stable when a path changes.
        generate_unique_id_function=operation_id,
        # Tracing is shared/tracing.py's (a provider per service, no global one) and metrics are Prometheus:
        # FastAPI's own telemetry, left on, would look for global providers on every request only to find none.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings.auth_secret.get_secret_value())
    app.state.metrics = metrics
    install_problem_handlers(app)
    # Inside the request context, so that a 413 or an early 401 carries the correlation id and is counted.
    app.add_middleware(RequestBoundary, max_body_bytes=settings.max_body_bytes, verifier=app.state.token_verifier)
    if settings.rate_limit:
        # Outside the boundary: a request past its `sub`'s limit is a 429 before anything else is done for it.
        app.add_middleware(RateLimit, spec=settings.rate_limit, verifier=app.state.token_verifier)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, tracing=tracer is not None)
    # Added last, so outermost: preflights are answered before auth and metrics see them.
    app.add_middleware(
        Cors,
        allow_origins=settings.cors_allow_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key", "traceparent"],
        expose_headers=["Idempotent-Replayed", "X-Correlation-ID", "traceparent"],
        max_age=600,
    )
    if tracer is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        from shared.tracing import excluded_urls, provider_of

        # Outermost: the request's server span (its parent the incoming `traceparent`) holds everything else.
        app.add_middleware(
            OpenTelemetryMiddleware,
            tracer_provider=provider_of(settings.service_name),
            exclude_spans=["receive", "send"],
            excluded_urls=excluded_urls(),
        )
    # The service's own routes first: a request is matched against the routes in order, and its busiest
    # routes are the service's, not the probes' or the problem pages'.
    for router in routers:
        app.include_router(router)
    app.include_router(_operations_router())
    app.include_router(_problems_router())
    _document_problems(app)
    return app


def operation_id(route: APIRoute) -> str:
    """The route function's name; `_document_problems` checks that no two operations of an app share one."""
    return route.name


TASK_STOP_SECONDS = 10.0


async def _stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the service's tasks and wait for them, but not forever: a shutdown always ends.

    A task cancelled in the middle of a database statement can wait on its
    connection's cleanup for good; the process exits anyway, so it is named
    in the log and left behind rather than hanging the stop.
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=TASK_STOP_SECONDS)
    for task in pending:
        logger.error("task %s did not stop within %.0f s of its cancellation", task.get_name(), TASK_STOP_SECONDS)


def _dump_tasks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` logs where every asyncio task waits: for diagnosing a stuck worker."""

    def awaiting(task: asyncio.Task[Any]) -> str:
        lines: list[str] = []
        current: Any = task.get_coro()
        while current is not None:
            frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None)
            if frame is not None:
                lines.append(f"\n    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            current = getattr(current, "cr_await", None) or getattr(current, "ag_await", None)
        return "".join(lines)

    def dump() -> None:
        for task in asyncio.all_tasks():
            logger.warning("task %s waits at:%s", task.get_name(), awaiting(task))

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


async def _start_producer(runtime: ServiceRuntime) -> None:
    backoff = Backoff(first=0.2)
    while True:
        try:
            await runtime.producer.start()
            break
        except Exception as exc:
            logger.warning("broker not reachable yet (%s); retrying", exc)
            with contextlib.suppress(Exception):
                await runtime.producer.stop()
            runtime.producer = create_producer(runtime.settings)
            await asyncio.sleep(backoff.next())
    if runtime.settings.run_workers:
        with contextlib.suppress(Exception):
            await ensure_topics(runtime.settings)
    runtime.producer_ready.set()


async def _start_workers(runtime: ServiceRuntime, workers: WorkerFactory | None) -> None:
    """Once the producer is connected: the outbox relay, then the service's workers."""
    await runtime.producer_ready.wait()
    settings = runtime.settings
    relay = OutboxRelay(
        settings=settings,
        producer=runtime.producer,
        metrics=runtime.metrics,
        tracer=runtime.tracer,
    )
    runtime.relay = relay
    runtime.start("outbox-relay", relay)
    for name, worker in workers(runtime) if workers is not None else ():
        runtime.start(name, worker)


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="The database and the broker are reachable",
        responses={503: {"description": "A dependency is unreachable"}},
    )
    async def readyz(request: Request) -> Response:
        runtime: ServiceRuntime = request.app.state.runtime
        checks = await asyncio.gather(_check_database(runtime), _check_broker(runtime))
        body = {"database": checks[0], "broker": checks[1]}
        ready = all(value == "ok" for value in body.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", **body}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        metrics: Metrics = request.app.state.metrics
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _problems_router() -> APIRouter:
    """`/problems/{slug}`; not tagged `operations`, so that its 404 and 422 are documented like any operation's."""
    router = APIRouter(tags=["problems"])

    @router.get(
        "/problems/{slug}",
        summary="The page describing a problem type (a problem's `type` is this page's path)",
        response_class=HTMLResponse,
    )
    async def problem_type(slug: Annotated[str, Path(max_length=64, pattern="^[a-z0-9-]+$")]) -> HTMLResponse:
        described = PROBLEM_TYPES.get(slug)
        if described is None:
            raise NotFound(f"No problem type is named '{slug}'.")
        return HTMLResponse(problem_page(slug, described))

    return router


async def _check_database(runtime: ServiceRuntime) -> str:
    try:
        async with asyncio.timeout(2):
            async with runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"


async def _check_broker(runtime: ServiceRuntime) -> str:
    cached = runtime._broker_checked
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    if not runtime.producer_ready.is_set():
        return "unreachable: not connected yet"
    try:
        async with asyncio.timeout(2):
            await runtime.producer.client.fetch_all_metadata()
        result = "ok"
    except Exception as exc:
        result = f"unreachable: {type(exc).__name__}"
    runtime._broker_checked = (time.monotonic() + 1.0, result)
    return result


def _document_problems(app: FastAPI) -> None:
    """Declare the problem+json responses every operation can give."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        seen: dict[str, str] = {}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                named = operation.get("operationId")
                if named in seen:
                    raise RuntimeError(f"operationId {named!r} of {method.upper()} {path} is also {seen[named]}'s")
                seen[named] = f"{method.upper()} {path}"
                operation.setdefault("parameters", []).extend(CONTEXT_PARAMETERS)
                if "operations" in operation.get("tags", ()):
                    continue
                responses = operation.setdefault("responses", {})
                codes = ["422", "503"] + (["404"] if "{" in path else [])
                if "requestBody" in operation:
                    codes.append("413")
                if operation.get("security"):
                    codes += ["401", "403", "409", "429"]
                for code in codes:
                    responses[code] = {"description": _DESCRIPTIONS[code], "content": problem}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_DESCRIPTIONS = {
    "401": "Missing, malformed, badly signed or expired token",
    "403": "The token lacks the scope or the department",
    "404": "No such resource",
    "409": "Conflict with the resource's state, or a request with this Idempotency-Key is in flight",
    "413": "The request body is larger than `CF_MAX_BODY_BYTES`",
    "422": "Invalid input; `errors` names each field",
    "429": "The token's `sub` passed `CF_RATE_LIMIT`, when one is set (see `Retry-After`)",
    "503": "The database or the broker is unreachable",
}
