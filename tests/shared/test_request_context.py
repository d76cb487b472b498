"""X-Correlation-ID and traceparent (contract §1, v1.1): used only when well-formed, never echoed unchecked."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.platform import Platform

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NEW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
W3C = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@pytest.mark.parametrize(
    "correlation_id",
    [
        "!" + "~" * 127,  # 128 visible characters: the longest one kept
        "order-123/retry:2",
    ],
)
async def test_correlation_id_of_visible_ascii_is_kept(probe: httpx.AsyncClient, correlation_id: str) -> None:
    response = await probe.get("/healthz", headers={"X-Correlation-ID": correlation_id})
    assert response.headers["x-correlation-id"] == correlation_id


@pytest.mark.parametrize(
    "hostile",
    [
        b"x" * 1_100_000,
        b"a" * 129,
        b"line\x01break",
        b"tab\there",
        b"with space",
        "caf\u00e9".encode(),
        b"\x7f",
    ],
    ids=["1.1-MB", "129-chars", "control-char", "tab", "space", "non-ascii", "delete"],
)
async def test_hostile_correlation_id_is_replaced_by_a_new_one(
    probe: httpx.AsyncClient, platform: Platform, hostile: bytes
) -> None:
    token = platform.auth()["Authorization"].encode()
    response = await probe.get("/probes", headers={b"x-correlation-id": hostile, b"authorization": token})
    assert response.status_code == 200
    assert NEW_ID.fullmatch(response.headers["x-correlation-id"])
    assert len(response.headers.get_list("x-correlation-id")) == 1


async def test_empty_correlation_id_is_replaced_by_a_new_one(probe: httpx.AsyncClient) -> None:
    response = await probe.get("/healthz", headers={"X-Correlation-ID": ""})
    assert NEW_ID.fullmatch(response.headers["x-correlation-id"])


async def test_w3c_traceparent_is_carried_on(probe: httpx.AsyncClient) -> None:
    response = await probe.get("/healthz", headers={"traceparent": TRACEPARENT})
    assert response.headers["traceparent"] == TRACEPARENT


@pytest.mark.parametrize(
    "hostile",
    [
        TRACEPARENT.upper().encode(),
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        TRACEPARENT.encode() + b"-extra",
        TRACEPARENT[:-1].encode(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u00e9".encode(),
        b"00-" + b"a" * 1_000_000,
        b"",
    ],
    ids=["upper-case", "zero-trace", "zero-parent", "version-ff", "trailing", "short", "non-ascii", "1-MB", "empty"],
)
async def test_traceparent_that_is_not_w3c_shaped_starts_a_new_trace(probe: httpx.AsyncClient, hostile: bytes) -> None:
    response = await probe.get("/healthz", headers={b"traceparent": hostile})
    traceparent = response.headers["traceparent"]
    assert W3C.fullmatch(traceparent)
    assert traceparent.split("-")[1] not in hostile.decode().lower()


async def test_a_new_trace_has_nonzero_ids(probe: httpx.AsyncClient) -> None:
    traceparent = (await probe.get("/healthz")).headers["traceparent"]
    _, trace_id, parent_id, _ = traceparent.split("-")
    assert int(trace_id, 16)
    assert int(parent_id, 16)


async def test_every_operation_declares_the_context_headers(probe: httpx.AsyncClient) -> None:
    spec = (await probe.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
            assert {"X-Correlation-ID", "traceparent"} <= set(headers), (method, path)
            assert headers["X-Correlation-ID"]["schema"]["maxLength"] == 128
