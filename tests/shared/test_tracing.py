"""Tracing (contract §7, v1.1): one trace from a request through the outbox, the consumers and routing.

The spans are exported over real OTLP/HTTP to a receiver this test starts (protobuf `ExportTraceServiceRequest`
on POST /v1/traces), the way a collector would get them.
"""

from __future__ import annotations

import gzip
import http.server
import secrets
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from services.feedback.app import create_app
from services.feedback.config import Settings as FeedbackSettings
from services.notifications.app import create_app as create_notifications_app
from services.notifications.config import Settings as NotificationsSettings
from shared.tracing import provider_of, span_in, stored_traceparent, tracing_enabled
from tests.notifications.helpers import Receiver, customer
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, str]
    failed: bool


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint in a thread of this process: decodes and keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver._take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _take(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=attributes.get("service.name", ""),
                            name=span.name,
                            kind=ProtoSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower(),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: a.value.string_value for a in span.attributes},
                            failed=span.status.code == span.status.STATUS_CODE_ERROR,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(received)

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    for name in ("OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    with OtlpReceiver() as receiver:
        yield receiver


def create_feedback_app(settings: object) -> FastAPI:
    assert isinstance(settings, FeedbackSettings)
    return create_app(settings)


def complaint(customer_id: str) -> dict[str, str]:
    return {
        "customer_id": customer_id,
        "channel": "phone",
        "kind": "complaint",
        "text": "The replacement part never arrived and nobody called back.",
    }


async def test_one_complaint_is_one_trace_across_feedback_and_notifications(
    platform: Platform, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    customer_id = customer()
    feedback_app = create_feedback_app(platform.settings("feedback"))
    notifications_settings = platform.settings("notifications", database_pool_size=10, webhook_allow_private=True)
    assert isinstance(notifications_settings, NotificationsSettings)
    notifications_app = create_notifications_app(notifications_settings)
    hooks = Receiver()
    await hooks.start()
    async with serve(notifications_app) as notifications, serve(feedback_app) as feedback:
        url = hooks.endpoint()
        subscribed = await notifications.post(
            "/v1/subscriptions",
            json={"department": "support", "url": url, "event_types": ["feedback.received"]},
            headers=platform.auth("notifications:admin"),
        )
        assert subscribed.status_code == 201, subscribed.text
        subscription_id = subscribed.json()["id"]
        posted = await feedback.post(
            "/v1/feedback",
            json=complaint(customer_id),
            headers={**platform.auth("feedback:write"), "traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert posted.status_code == 201, posted.text
        # The response names the request's own span, in the caller's trace.
        assert posted.headers["traceparent"].split("-")[1] == trace_id

        def spans_named(service: str, prefix: str) -> list[ReceivedSpan]:
            return [s for s in receiver.of_trace(trace_id) if s.service == service and s.name.startswith(prefix)]

        def webhook_spans() -> list[ReceivedSpan]:
            return [
                s
                for s in spans_named("notifications", "webhook POST")
                if s.attributes.get("cf.webhook.subscription_id") == subscription_id
            ]

        async def delivered() -> list[ReceivedSpan] | None:
            # The webhook comes last (the consumer group may take ~20 s to form); the routed copies' publishing too.
            done = webhook_spans() and len(spans_named("notifications", f"publish {platform.topic('notifications.')}"))
            return webhook_spans() if done == 2 else None

        try:
            [webhook] = await eventually(delivered, within=90)
        finally:
            await hooks.stop()
        on_topic = await read_topic(
            platform.bootstrap_servers,
            platform.topic("feedback.events"),
            where=lambda r: r.key == customer_id.encode(),
            until=lambda found: len(found) >= 1,
        )
        # By its event id: earlier tests' events, routed meanwhile, may fill the newest page of the inbox.
        event_id = orjson.loads(on_topic[0].value)["id"]
        inbox = await notifications.get(
            "/v1/departments/support/notifications", params={"event_id": event_id}, headers=platform.auth()
        )

    [request] = spans_named("feedback", "POST /v1/feedback")
    [publish] = spans_named("feedback", f"publish {platform.topic('feedback.events')}")
    # An attempt that failed with its batch (another event's fault) is a failed span; the retry is another.
    trace = "\n".join(map(str, receiver.of_trace(trace_id)))
    processed = [s for s in spans_named("notifications", "process feedback.events") if not s.failed]
    assert len(processed) == 1, trace
    [process] = processed
    [route] = [
        s for s in spans_named("notifications", "route feedback.received") if s.parent_span_id == process.span_id
    ]
    routed = spans_named("notifications", f"publish {platform.topic('notifications.')}")
    assert (request.kind, request.parent_span_id) == ("server", caller_span)
    assert (publish.kind, publish.parent_span_id) == ("producer", request.span_id)
    assert (process.kind, process.parent_span_id) == ("consumer", publish.span_id)
    assert (route.kind, route.parent_span_id) == ("internal", process.span_id)
    # Support and management get a complaint, each copy published as a child of routing.
    assert len(routed) == 2
    assert {span.parent_span_id for span in routed} == {route.span_id}

    # Each statement sent inside a span is a client span, its child: the capture's insert in the request.
    # (A consumer writes a whole batch of events in one statement, which belongs to no one event's trace.)
    [insert] = [
        s
        for s in receiver.of_trace(trace_id)
        if s.service == "feedback" and s.kind == "client" and s.attributes.get("db.system") == "postgresql"
    ]
    assert insert.parent_span_id == request.span_id
    assert "INSERT INTO feedback" in insert.attributes["db.statement"]

    # Each webhook delivery is a client span, child of routing; the receiver continues the trace from it.
    assert (webhook.kind, webhook.parent_span_id) == ("client", route.span_id)
    # (The subscription also gets other complaints routed meanwhile, each in its own trace.)
    [hook] = [r for r in hooks.received(url) if orjson.loads(r.body)["customerid"] == customer_id]
    assert hook.headers["traceparent"] == f"00-{trace_id}-{webhook.span_id}-01"

    # The Kafka header is the publish span's traceparent; the event's own extension names the request.
    [record] = on_topic
    headers = dict(record.headers)
    assert headers["traceparent"] == f"00-{trace_id}-{publish.span_id}-01".encode()
    assert stored_traceparent(record.value) == f"00-{trace_id}-{request.span_id}-01".encode()
    # The inbox copy carries routing's span, so what it causes (webhooks) continues the trace.
    [copy] = [n for n in inbox.json()["items"] if n["event"]["customerid"] == customer_id]
    assert copy["event"]["traceparent"] == f"00-{trace_id}-{route.span_id}-01"
    for span in (request, insert, publish, process, route, *routed, webhook):  # the trace, with pytest -s
        print(  # noqa: T201
            f"{span.service:14} {span.kind:9} {span.name:45} {span.span_id} parent {span.parent_span_id}"
        )


async def test_an_unsampled_caller_is_honoured_and_probes_are_not_traced(
    platform: Platform, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    trace_id = secrets.token_hex(16)
    async with serve(create_feedback_app(platform.settings("feedback", run_workers=False))) as feedback:
        unsampled = await feedback.post(
            "/v1/feedback",
            json=complaint(customer()),
            headers={**platform.auth("feedback:write"), "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-00"},
        )
        fresh = await feedback.post("/v1/feedback", json=complaint(customer()), headers=platform.auth("feedback:write"))
        probe = await feedback.get("/healthz")
        metrics = await feedback.get("/v1/feedback/metrics", headers=platform.auth("feedback:read"))
        # A trace the service starts is sampled by the sampler (parent-based, always on by default).
        new_trace = fresh.headers["traceparent"].split("-")[1]
        metrics_trace = metrics.headers["traceparent"].split("-")[1]
        await eventually(lambda: _some(receiver.of_trace(new_trace)), within=20)

        # The probes are not traced (their traceparent is the middleware's own), a route that ends alike is.
        async def metrics_request() -> list[ReceivedSpan] | None:
            return [s for s in receiver.of_trace(metrics_trace) if s.kind == "server"] or None

        [metrics_span] = await eventually(metrics_request, within=20)
        assert metrics_span.name == "GET /v1/feedback/metrics"
        # Its queries are its children.
        queries = [s for s in receiver.of_trace(metrics_trace) if s.kind == "client"]
        assert queries
        assert {s.parent_span_id for s in queries} == {metrics_span.span_id}
        assert receiver.of_trace(probe.headers["traceparent"].split("-")[1]) == []
    assert unsampled.headers["traceparent"].split("-")[1] == trace_id
    assert int(unsampled.headers["traceparent"][-2:], 16) & 1 == 0
    assert int(fresh.headers["traceparent"][-2:], 16) & 1 == 1
    assert receiver.of_trace(trace_id) == []


async def _some(spans: list[ReceivedSpan]) -> list[ReceivedSpan] | None:
    return spans or None


async def test_tracing_is_off_without_an_endpoint(platform: Platform, receiver: OtlpReceiver) -> None:
    assert not tracing_enabled()
    customer_id = customer()
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    app = create_feedback_app(platform.settings("feedback"))
    # No OpenTelemetry middleware, provider or exporter.
    assert all("opentelemetry" not in m.cls.__module__ for m in app.user_middleware)
    async with serve(app) as feedback:
        assert app.state.runtime.tracer is None
        assert provider_of("feedback") is None
        posted = await feedback.post(
            "/v1/feedback",
            json=complaint(customer_id),
            headers={**platform.auth("feedback:write"), "traceparent": traceparent},
        )
        assert posted.status_code == 201, posted.text
        on_topic = await read_topic(
            platform.bootstrap_servers,
            platform.topic("feedback.events"),
            where=lambda r: r.key == customer_id.encode(),
            until=lambda found: len(found) >= 1,
        )
    # As before: the caller's traceparent goes back and into the event, and the header is its bytes.
    assert posted.headers["traceparent"] == traceparent
    [record] = on_topic
    assert dict(record.headers)["traceparent"] == traceparent.encode()
    assert receiver.requests == 0


def test_the_relay_finds_the_stored_traceparent_without_parsing() -> None:
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"

    def value(**envelope: Any) -> bytes:
        import orjson

        return orjson.dumps(envelope)

    assert stored_traceparent(value(id="1", traceparent=traceparent, data={"a": 1})) == traceparent.encode()
    # Only the extension before `data` counts; a member of the resource named so is not the event's trace.
    assert stored_traceparent(value(id="1", data={"traceparent": traceparent})) is None
    assert stored_traceparent(value(id="1", text='"traceparent":"' + traceparent, data={})) is None
    assert stored_traceparent(value(id="1", traceparent=traceparent + "0", data={})) is None
    assert stored_traceparent(value(id="1", traceparent="00-" + "0" * 32 + "-" + "1" * 16 + "-01")) is None
    assert stored_traceparent(b"not json") is None


def test_log_lines_carry_the_current_span() -> None:
    import logging

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    from shared.observability import _ContextFilter

    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a line", None, None)
    log_filter = _ContextFilter("feedback")
    log_filter.filter(record)
    assert record.span_id is None  # type: ignore[attr-defined]
    with span_in(tracer, "work", parent=None, kind=SpanKind.INTERNAL) as span:
        context = span.get_span_context()
        log_filter.filter(record)
    assert record.span_id == f"{context.span_id:016x}"  # type: ignore[attr-defined]
    assert record.trace_id == f"{context.trace_id:032x}"  # type: ignore[attr-defined]
