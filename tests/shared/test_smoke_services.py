"""Every service starts, answers its health probes and publishes its OpenAPI."""

from __future__ import annotations

import importlib
import re

import pytest

from ops.platform import SERVICES
from tests.support.platform import Platform, serve


@pytest.mark.parametrize("service", SERVICES)
async def test_service_is_live_ready_and_documented(platform: Platform, service: str) -> None:
    module = importlib.import_module(f"services.{service}.app")
    app = module.create_app(platform.settings(service))
    async with serve(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        for _ in range(50):
            if ready.status_code == 200:
                break
            import asyncio

            await asyncio.sleep(0.1)
            ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok"}
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "cf_outbox_pending_events" in metrics.text
        # The process and garbage-collector collectors, on the app's own registry.
        for figure in (
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "python_gc_objects_collected_total",
        ):
            assert f"\n{figure}" in metrics.text, figure
        assert 'python_info{implementation="CPython"' in metrics.text
        openapi = (await client.get("/openapi.json")).json()
        assert openapi["info"]["title"].lower() == service
        # Readable operationIds: each route function's name, once per app.
        operation_ids = [op["operationId"] for path in openapi["paths"].values() for op in path.values()]
        assert len(operation_ids) == len(set(operation_ids))
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in operation_ids), operation_ids
        assert {"healthz", "readyz", "prometheus_metrics"} <= set(operation_ids)


async def test_operation_ids_are_the_route_functions_names(platform: Platform) -> None:
    module = importlib.import_module("services.feedback.app")
    openapi = module.create_app(platform.settings("feedback")).openapi()

    assert openapi["paths"]["/v1/feedback"]["post"]["operationId"] == "capture_feedback"
    assert openapi["paths"]["/healthz"]["get"]["operationId"] == "healthz"
