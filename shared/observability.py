"""Metrics, structured logs and W3C trace context.

Each app owns a Prometheus registry (several apps can share a process in
tests). A pure-ASGI middleware counts requests per route template, sets the
correlation id and carries the incoming `traceparent` into the events the
request writes.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
import uuid
from typing import Any

from opentelemetry import trace
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.context import correlation_id_var, traceparent_var
from shared.tracing import traceparent_of


class Metrics:
    """The platform's Prometheus metrics for one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The process's own figures (CPU, memory, open files, start time; Python's version and collector
        # passes) on every app's registry, as the default registry would have them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.http_requests = Counter(
            "cf_http_requests", "HTTP requests by route and status.", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "cf_http_request_duration_seconds",
            "HTTP request duration by route.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.outbox_pending = Gauge("cf_outbox_pending_events", "Events not yet published.", registry=r)
        self.outbox_oldest_seconds = Gauge(
            "cf_outbox_oldest_pending_seconds", "Age of the oldest unpublished event.", registry=r
        )
        self.outbox_published = Counter("cf_outbox_published_events", "Events published by the relay.", registry=r)
        self.outbox_dead = Gauge(
            "cf_outbox_dead_events",
            "Events set aside because the broker refused them for good (`customer-focus outbox dead`).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "cf_consumer_lag", "Messages behind the end of each partition.", ["topic", "partition"], registry=r
        )
        self.consumer_events = Counter(
            "cf_consumer_events", "Consumed events by outcome.", ["topic", "outcome"], registry=r
        )
        self.purged_rows = Counter(
            "cf_purged_rows",
            "Rows deleted by the purge job (shared/purge.py) once past their age, by table.",
            ["table"],
            registry=r,
        )
        self.group_commit_rows = Histogram(
            "cf_group_commit_rows",
            "Rows per statement sent by group commit (shared/group_commit.py), by writer.",
            ["writer"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )


class RequestContextMiddleware:
    """Per-request correlation id, trace context and HTTP metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, tracing: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        # With OpenTelemetry on, the request's server span is current here (its middleware is outermost):
        # the events carry its `traceparent`, sampled flag included, and the span is named by the route.
        self.tracing = tracing
        # Per (method, route, status): labels() costs a lock and a lookup on every request.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation_id = ""
        traceparent = ""
        for name, value in scope["headers"]:
            if name == b"x-correlation-id":
                correlation_id = value.decode("latin-1") if _CORRELATION_ID.fullmatch(value) else ""
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        correlation_id = correlation_id or _new_correlation_id()
        if self.tracing:
            traceparent = traceparent_of(trace.get_current_span()) or incoming_or_new_traceparent(traceparent)
        else:
            traceparent = incoming_or_new_traceparent(traceparent)
        token_c = correlation_id_var.set(correlation_id)
        token_t = traceparent_var.set(traceparent)
        status = 500
        started = time.perf_counter()

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.tracing:
                    # Named by the route before the response ends it (OpenTelemetry's default is the path).
                    _name_server_span(scope)
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-correlation-id", correlation_id.encode()),
                    (b"traceparent", traceparent.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            children = self._children.get((method, template, status))
            if children is None:
                children = (
                    self.metrics.http_requests.labels(method, template, str(status)),
                    self.metrics.http_duration.labels(method, template),
                )
                self._children[(method, template, status)] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
            correlation_id_var.reset(token_c)
            traceparent_var.reset(token_t)


def _name_server_span(scope: Scope) -> None:
    template = getattr(scope.get("route"), "path", None)
    if template is not None:
        span = trace.get_current_span()
        span.update_name(f"{scope['method']} {template}")
        span.set_attribute("http.route", template)


# What a client may name its request by (contract §1): 1-128 visible ASCII characters; anything else is replaced.
_CORRELATION_ID = re.compile(rb"[\x21-\x7e]{1,128}")
# W3C Trace Context: version (not ff), trace-id and parent-id (neither all zeros), flags; lower-case hex.
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


# The request headers above, as every operation of the OpenAPI document declares them.
CONTEXT_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "X-Correlation-ID",
        "in": "header",
        "required": False,
        "description": "Names the request in the response, the logs and the events it causes; "
        "used when it is 1-128 visible ASCII characters, else the service makes a new one.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
    },
    {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": "W3C Trace Context, carried into the events; ignored (a new trace) unless well-formed.",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    },
]


# Request ids need to be unique, not secret: drawn as OpenTelemetry's RandomIdGenerator draws them (the
# random module, reseeded in a forked child), without the system call per id of uuid4 and secrets.
def _new_correlation_id() -> str:
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def is_traceparent(value: str) -> bool:
    """Whether `value` is a W3C `traceparent` (the version-00 form, 55 characters)."""
    return len(value) == 55 and _TRACEPARENT.fullmatch(value) is not None


def incoming_or_new_traceparent(incoming: str) -> str:
    """The request's `traceparent` when it is W3C-shaped, else the start of a new trace."""
    if is_traceparent(incoming):
        return incoming
    return f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id_var.get()
        record.trace_id = trace_id_of(traceparent_var.get())
        # The span current where the line was logged (a request's, a consumer's, a delivery's), with tracing on.
        span = trace.get_current_span().get_span_context()
        record.span_id = f"{span.span_id:016x}" if span.is_valid else None
        # uvicorn's terminal colours of the same message: not a field of a log line.
        record.__dict__.pop("color_message", None)
        return True


class _AccessFields(logging.Filter):
    """uvicorn's access line (`client - "METHOD path HTTP/v" status`) with each part a field of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            record.client_addr, record.method, record.path = client, method, path
            record.http_version, record.status_code = http_version, status
        return True


# uvicorn's loggers: its own lines (start, stop, errors) and, when on, one line per request.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
_ACCESS_LOGGER = "uvicorn.access"


def configure_logging(service: str, *, level: str = "INFO", json_logs: bool = True, access_log: bool = False) -> None:
    """Structured JSON logs on stderr, uvicorn's lines included.

    Each line has `correlation_id` and `trace_id`, and `span_id` when a span is current (tracing on).

    uvicorn's loggers lose the plain-text handlers it gave them and reach this one. Its access log
    (`access_log`, `CF_ACCESS_LOG`) is on only when asked for: otherwise the logger has no handler at all,
    and uvicorn, which checks that per connection, does not even format the line.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    formatter: logging.Formatter
    if json_logs:
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    for name in _UVICORN_LOGGERS:
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger(_ACCESS_LOGGER)
    access.handlers = []
    access.propagate = access_log
    access.setLevel(logging.INFO if access_log else logging.WARNING)
    if not any(isinstance(existing, _AccessFields) for existing in access.filters):
        access.addFilter(_AccessFields())
