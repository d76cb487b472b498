"""The webhook worker process serves `/healthz` and `/metrics` on `CF_WEBHOOK_WORKER_PORT` (issue 19)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx

from services.notifications.webhooks.worker import serve_operations
from shared.observability import Metrics
from tests.notifications.conftest import RunningService
from tests.notifications.helpers import start_webhook_worker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_webhook_worker_process_serves_its_health_and_metrics(notifications: RunningService) -> None:
    port = free_port()
    worker = await start_webhook_worker(notifications.settings, CF_WEBHOOK_WORKER_PORT=str(port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(150):
                with contextlib.suppress(httpx.TransportError):
                    health = await client.get("/healthz")
                    break
                assert worker.returncode is None, "the worker exited"
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the worker never answered /healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}

            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain; version=")
            for figure in ("cf_webhook_", "process_cpu_seconds_total", "python_gc_objects_collected_total"):
                assert f"\n{figure}" in metrics.text, figure
    finally:
        worker.terminate()
        exit_code = await asyncio.wait_for(worker.wait(), 15)
    assert exit_code == 0


async def test_worker_health_fails_once_its_dispatcher_has_stopped(notifications: RunningService) -> None:
    port = free_port()
    stopped = asyncio.create_task(asyncio.sleep(0))
    await stopped
    settings = notifications.settings.model_copy(update={"webhook_worker_port": port})
    runner = await serve_operations(settings, Metrics("notifications-webhooks"), stopped)
    assert runner is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            health = await client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "stopped"}
    finally:
        await runner.cleanup()


async def test_port_zero_serves_nothing(notifications: RunningService) -> None:
    settings = notifications.settings.model_copy(update={"webhook_worker_port": 0})
    pending = asyncio.create_task(asyncio.sleep(0))
    assert await serve_operations(settings, Metrics("notifications-webhooks"), pending) is None
    await pending
