"""OpenTelemetry tracing, on only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces form) is set.

Configured by the standard `OTEL_*` variables alone: the OTLP/HTTP exporter reads its endpoint, headers
and timeout, the batch span processor its `OTEL_BSP_*` schedule, the provider its sampler
(`OTEL_TRACES_SAMPLER`, by default `parentbased_always_on`: an incoming `traceparent`'s sampled flag is
honoured, and a new trace's flag is the sampler's). `service.name` is the service's name unless
`OTEL_SERVICE_NAME` says otherwise.

Off (the default), nothing here is imported on the hot path: no provider, no middleware, and the code that
makes spans checks one attribute (`tracer is None`) and carries the `traceparent` string as before.

Each process keeps one provider per service name (tests run several services in one process), so each
span reports its own service; the context (which span is current) is OpenTelemetry's, one per task.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shared.context import traceparent_var

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanKind, Tracer
    from sqlalchemy.ext.asyncio import AsyncEngine

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_providers: dict[str, TracerProvider] = {}
_users: dict[str, int] = {}
_TRACEPARENT = re.compile(rb"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_EXTENSION = b'"traceparent":"'
_DATA = b'"data":'


def tracing_enabled() -> bool:
    """Whether an OTLP endpoint is configured (the `OTEL_SDK_DISABLED=true` switch also turns it off)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def start_tracing(service_name: str) -> Tracer | None:
    """The tracer of `service_name`'s provider (one per process and service), or None when tracing is off.

    Each call that returns a tracer is paired with a `stop_tracing(service_name)`.
    """
    if not tracing_enabled():
        return None
    _users[service_name] = _users.get(service_name, 0) + 1
    provider = _providers.get(service_name)
    if provider is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service_name
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _providers[service_name] = provider
    return provider.get_tracer("customer-focus")


def trace_statements(engine: AsyncEngine, tracer: Tracer | None) -> None:
    """With tracing on, each statement `engine` sends inside a trace is a client span, child of the span current then.

    OpenTelemetry's SQLAlchemy instrumentation, attached to this one engine (its instrumentor is one per
    process, and a process here may run several services, each with its own provider); the listeners go
    with the engine. A statement outside any span (a background sweep's poll) makes no span: a trace of
    its own every second would bury the traces that matter. The instrumentation's connection-usage metric
    is not wanted (the pool has its own figures): a no-op meter.
    """
    if tracer is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeterProvider

    usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.client.connections.usage")
    EngineTracer(_WithinTraces(tracer), engine.sync_engine, usage)  # type: ignore[no-untyped-call]


class _WithinTraces:
    """A tracer that starts a span only as the child of a current one (else a non-recording span)."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Span:
        from opentelemetry import trace

        if not trace.get_current_span().get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, *args, **kwargs)


def provider_of(service_name: str) -> TracerProvider | None:
    return _providers.get(service_name)


def stop_tracing(service_name: str) -> None:
    """Export what is buffered; the last user closes `service_name`'s provider (a later start makes a new one)."""
    provider = _providers.get(service_name)
    if provider is None:
        return
    _users[service_name] -= 1
    if _users[service_name] > 0:
        provider.force_flush()
        return
    del _providers[service_name], _users[service_name]
    provider.shutdown()


# The probes and the scrape are not traced unless the standard variables name other paths.
_OPERATIONS_URLS = r"^[a-z]+://[^/]+/(healthz|readyz|metrics)$"


def excluded_urls() -> str:
    """What the request middleware does not trace: `OTEL_PYTHON_FASTAPI_EXCLUDED_URLS` (or
    `OTEL_PYTHON_EXCLUDED_URLS`), comma-separated regular expressions searched in the URL, else the probes."""
    for name in ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
        if os.environ.get(name, "").strip():
            return os.environ[name]
    return _OPERATIONS_URLS


def traceparent_of(span: Span) -> str | None:
    """The W3C `traceparent` naming `span` (its sampled flag included), or None for an invalid span."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parent_context(traceparent: str | bytes | None) -> Context | None:
    """An OpenTelemetry context whose remote parent is `traceparent` (None when it is absent or malformed)."""
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    value = traceparent.decode("latin-1") if isinstance(traceparent, bytes) else traceparent
    return TraceContextTextMapPropagator().extract({"traceparent": value})


@contextmanager
def span_in(
    tracer: Tracer, name: str, *, parent: str | bytes | None, kind: SpanKind, attributes: dict[str, str] | None = None
) -> Iterator[Span]:
    """A current span `name`, child of `parent` (a `traceparent`), with `traceparent_var` naming it meanwhile.

    The events written while it is current carry its `traceparent`, so what they cause is its child.
    """
    with tracer.start_as_current_span(name, context=parent_context(parent), kind=kind, attributes=attributes) as span:
        token = traceparent_var.set(traceparent_of(span))
        try:
            yield span
        finally:
            traceparent_var.reset(token)


def failed(spans: list[Span], exc: BaseException) -> None:
    """Mark `spans` as failed by `exc` (an attempt rolled back; a retry is a span of its own)."""
    from opentelemetry.trace import Status, StatusCode

    for span in spans:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


def stored_traceparent(value: bytes) -> bytes | None:
    """The `traceparent` extension of a CloudEvent as the outbox stores it, as bytes, without parsing the JSON.

    `build_event` (and `with_extensions`, which keeps an envelope's order) writes the attributes before
    `data`, all of them strings; inside a JSON string every `"` is escaped, so the first `"data":` is the
    `data` member and a `"traceparent":"` before it is the extension. The value is used only if it is a
    well-formed W3C `traceparent` followed by the string's closing quote.
    """
    end = value.find(_DATA)
    at = value.find(_EXTENSION, 0, end if end >= 0 else len(value))
    if at < 0:
        return None
    start = at + len(_EXTENSION)
    candidate = value[start : start + 55]
    if value[start + 55 : start + 56] != b'"' or _TRACEPARENT.fullmatch(candidate) is None:
        return None
    return candidate
