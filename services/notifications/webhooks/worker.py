"""A process that only sends webhooks: `python -m services.notifications.webhook_worker` runs `main`.

By default the service process routes events, serves its API and sends the
webhooks. Routing and delivery then share one core and one event loop, and
under a backlog each slows the other (bench/README.md). With
`CF_WEBHOOKS_IN_PROCESS=false` the service leaves delivery to one or more of
these processes, configured by the same settings: they lease due deliveries
from the same database (replicas share the work), so each gets a core of its
own. Each serves its Prometheus metrics (`cf_webhook_*` and the process's
own) at `/metrics` and its liveness at `/healthz` on `CF_WEBHOOK_WORKER_PORT`
(8014; 0 for none), with aiohttp, which the webhook client already uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.notifications.config import Settings
from services.notifications.webhooks.dispatcher import WebhookDispatcher, WebhookMetrics
from services.notifications.webhooks.guard import AddressGuard
from shared.config import load_settings
from shared.observability import Metrics, configure_logging
from shared.tracing import start_tracing, stop_tracing

logger = logging.getLogger(__name__)


async def send_webhooks(settings: Settings, metrics: Metrics | None = None) -> None:
    """Send due webhook deliveries until cancelled; leases in flight are handed back on the way out."""
    # Tracing (OTEL_EXPORTER_OTLP_ENDPOINT) reports the worker as its service, `notifications`.
    tracer = start_tracing(settings.service_name)
    dispatcher = WebhookDispatcher(
        settings=settings,
        metrics=WebhookMetrics(metrics or Metrics(settings.service_name)),
        guard=AddressGuard(allow_private=settings.webhook_allow_private),
        tracer=tracer,
    )
    try:
        await dispatcher.run()
    finally:
        if tracer is not None:
            stop_tracing(settings.service_name)


def operations_app(metrics: Metrics, sending: asyncio.Task[None]) -> web.Application:
    """`/healthz` (200 while the dispatcher runs, 503 once it has stopped) and `/metrics`."""

    async def healthz(_: web.Request) -> web.Response:
        if sending.done():
            return web.json_response({"status": "stopped"}, status=503)
        return web.json_response({"status": "ok"})

    async def prometheus_metrics(_: web.Request) -> web.Response:
        # CONTENT_TYPE_LATEST carries a charset, which aiohttp wants in its own argument.
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus_metrics)
    return app


async def serve_operations(settings: Settings, metrics: Metrics, sending: asyncio.Task[None]) -> web.AppRunner | None:
    """The operations endpoints on `CF_WEBHOOK_WORKER_PORT`, or None when it is 0."""
    if settings.webhook_worker_port == 0:
        return None
    runner = web.AppRunner(operations_app(metrics, sending), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=settings.webhook_worker_port).start()
    logger.info("webhook worker serves /metrics and /healthz on port %d", settings.webhook_worker_port)
    return runner


async def _until_stopped(settings: Settings) -> None:
    metrics = Metrics(f"{settings.service_name}-webhooks")
    sending = asyncio.create_task(send_webhooks(settings, metrics))
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop, sending.cancel)
    runner = await serve_operations(settings, metrics, sending)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    finally:
        if runner is not None:
            await runner.cleanup()


def main() -> None:
    settings = load_settings(Settings)
    configure_logging(f"{settings.service_name}-webhooks", level=settings.log_level, json_logs=settings.log_json)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_until_stopped(settings))
