"""A process that only sends webhooks: `python -m services.notifications.webhook_worker` runs `main`.

By default the service process routes events, serves its API and sends the
webhooks. Routing and delivery then share one core and one event loop, and
under a backlog each slows the other (bench/README.md). With
`CF_WEBHOOKS_IN_PROCESS=false` the service leaves delivery to one or more of
these processes, configured by the same settings: they lease due deliveries
from the same database (replicas share the work), so each gets a core of its
own. Their Prometheus metrics are not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import uvloop

from services.notifications.config import Settings
from services.notifications.webhooks.dispatcher import WebhookDispatcher, WebhookMetrics
from services.notifications.webhooks.guard import AddressGuard
from shared.config import load_settings
from shared.observability import Metrics, configure_logging


async def send_webhooks(settings: Settings) -> None:
    """Send due webhook deliveries until cancelled; leases in flight are handed back on the way out."""
    dispatcher = WebhookDispatcher(
        settings=settings,
        metrics=WebhookMetrics(Metrics(settings.service_name)),
        guard=AddressGuard(allow_private=settings.webhook_allow_private),
    )
    await dispatcher.run()


async def _until_stopped(settings: Settings) -> None:
    sending = asyncio.create_task(send_webhooks(settings))
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop, sending.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await sending


def main() -> None:
    settings = load_settings(Settings)
    configure_logging(f"{settings.service_name}-webhooks", level=settings.log_level, json_logs=settings.log_json)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_until_stopped(settings))
