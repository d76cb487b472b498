"""uvicorn's lines, the access log included when `CF_ACCESS_LOG` asks for it, are JSON like every other line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from ops.embedded import free_port
from shared.observability import configure_logging
from tests.shared.probe_app import create_probe_app
from tests.support.platform import Platform

NAMES = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Each test reconfigures logging on pytest's captured stderr; put the loggers back afterwards."""
    saved = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate, logging.getLogger(name).level)
        for name in NAMES
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_an_access_line_is_json_with_each_part_a_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("probe", json_logs=True, access_log=True)
    # uvicorn sets its own loggers' level from its --log-level (info by default); an earlier test's
    # uvicorn may have left them at warning.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.INFO)
    # As uvicorn's protocols write it.
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.7:51234", "GET", "/v1/feedback?limit=5", "1.1", 200
    )
    logging.getLogger("uvicorn.error").info("Application startup complete.", extra={"color_message": "\x1b[1m..."})

    access, startup = json_lines(capsys.readouterr().err)
    assert access["logger"] == "uvicorn.access"
    assert access["message"] == '10.0.0.7:51234 - "GET /v1/feedback?limit=5 HTTP/1.1" 200'
    assert (access["method"], access["path"], access["status_code"]) == ("GET", "/v1/feedback?limit=5", 200)
    assert (access["client_addr"], access["http_version"], access["service"]) == ("10.0.0.7:51234", "1.1", "probe")
    assert startup["logger"] == "uvicorn.error"
    assert startup["message"] == "Application startup complete."
    assert "color_message" not in startup


def test_without_the_setting_the_access_logger_has_no_handler_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("probe", json_logs=True)
    access = logging.getLogger("uvicorn.access")

    access.info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:51234", "GET", "/healthz", "1.1", 200)

    # uvicorn asks this once per connection, and logs nothing when it is false.
    assert not access.hasHandlers()
    assert json_lines(capsys.readouterr().err) == []


async def test_a_service_under_uvicorn_logs_each_request_as_json_with_its_correlation_id(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = platform.settings("feedback", run_workers=False, log_json=True, log_level="INFO", access_log=True)
    port = free_port()
    # As compose and Kubernetes run it: uvicorn configures its loggers (--no-access-log), then the app's lifespan.
    server = uvicorn.Server(
        uvicorn.Config(create_probe_app(settings), host="127.0.0.1", port=port, lifespan="on", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), serving.result()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/healthz", headers={"X-Correlation-ID": "access-log-probe"})
            assert response.status_code == 200
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)

    lines = json_lines(capsys.readouterr().err)
    [access] = [line for line in lines if line["logger"] == "uvicorn.access" and line["path"] == "/healthz"]
    assert (access["method"], access["status_code"], access["correlation_id"]) == ("GET", 200, "access-log-probe")
    assert any(line["logger"] == "uvicorn.error" and "shutdown" in line["message"].lower() for line in lines)
