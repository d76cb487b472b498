"""Hostile input on the feedback service (contract §1, v1.1): refused as a client error, and the service goes on.

Each attack is followed by a normal capture that must succeed; the captures
that reach the topic carry only the correlation id and trace the service
accepted or made.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event

from services.feedback.app import create_app
from tests.feedback.conftest import capture, complaint, feedback_settings, new_customer, stored_count
from tests.support.hostile import (
    EDGE_INSTANTS,
    FORGED_CURSORS,
    OUT_OF_RANGE_INSTANTS,
    assert_invalid,
    in_chunks,
    padded_json,
)
from tests.support.kafka import read_topic
from tests.support.local_server import serve_over_http
from tests.support.platform import Platform

LIMIT = 1_048_576
NEW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A second feedback app, without workers, served by uvicorn: a body can arrive in chunks."""
    app = create_app(feedback_settings(platform, run_workers=False))
    async with serve_over_http(app) as (_, client):
        yield client


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("occurred_at", [*OUT_OF_RANGE_INSTANTS, "2026-01-01T00:00:00", "+12026-01-01T00:00:00Z"])
async def test_occurred_at_that_is_no_instant_in_years_1_to_9999_is_422(
    client: httpx.AsyncClient, platform: Platform, occurred_at: str
) -> None:
    customer = new_customer()
    response = await client.post(
        "/v1/feedback", json=complaint(customer, occurred_at=occurred_at), headers=platform.auth("feedback:write")
    )
    assert_invalid(response, "occurred_at")

    await capture(client, platform, complaint(customer))
    assert await stored_count(platform, customer) == 1


@pytest.mark.parametrize("path", ["/v1/feedback", "/v1/feedback/metrics"])
@pytest.mark.parametrize("parameter", ["since", "until"])
async def test_since_or_until_out_of_range_is_422(
    client: httpx.AsyncClient, platform: Platform, path: str, parameter: str
) -> None:
    for instant in OUT_OF_RANGE_INSTANTS:
        response = await client.get(path, params={parameter: instant}, headers=platform.auth("feedback:read"))
        assert_invalid(response, parameter)
    assert (await client.get(path, headers=platform.auth("feedback:read"))).status_code == 200


async def test_the_extreme_instants_are_answered(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    reader = platform.auth("feedback:read")
    oldest, latest = EDGE_INSTANTS
    created = await capture(client, platform, complaint(customer, occurred_at=oldest))
    assert created["occurred_at"] == "0001-01-01T00:00:00.000001Z"

    found = await client.get("/v1/feedback", params={"customer_id": customer, "since": oldest}, headers=reader)
    assert found.json()["items"] == [created]
    for bucket in ("week", "month"):
        for since, until in ((oldest, "0001-03-01T00:00:00Z"), ("9999-11-01T00:00:00Z", latest)):
            params = {"customer_id": customer, "bucket": bucket, "since": since, "until": until}
            metrics = await client.get("/v1/feedback/metrics", params=params, headers=reader)
            assert metrics.status_code == 200, (bucket, since, until, metrics.text)
            series = metrics.json()["series"]
            assert series[-1]["period_end"] <= "9999-12-31T23:59:59.999999Z"
            assert all(p["period_start"].endswith("Z") and p["period_end"].endswith("Z") for p in series)


async def test_forged_cursor_is_422(client: httpx.AsyncClient, platform: Platform) -> None:
    for cursor in FORGED_CURSORS:
        response = await client.get("/v1/feedback", params={"cursor": cursor}, headers=platform.auth("feedback:read"))
        assert_invalid(response, "cursor")
    assert (await client.get("/v1/feedback", headers=platform.auth("feedback:read"))).status_code == 200


async def test_capture_without_a_token_is_401_before_its_body_is_parsed(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    malformed = b'{"customer_id": "' + b"\x01" * 900_000  # under the limit, and no JSON
    for headers in ({}, {"Authorization": "Bearer forged.token.value"}):
        response = await client.post("/v1/feedback", content=malformed, headers={**headers, **JSON})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    with_token = await client.post("/v1/feedback", content=malformed, headers={**platform.auth(), **JSON})
    assert with_token.status_code == 422


async def test_capture_over_the_body_limit_is_413_and_stores_nothing(
    served: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    oversize = padded_json(complaint(customer), 2 * LIMIT)
    writer = {**platform.auth("feedback:write"), **JSON}

    declared = await served.post("/v1/feedback", content=oversize)  # no token: the size is refused first
    streamed = await served.post("/v1/feedback", content=in_chunks(oversize), headers=writer)
    keyed = await served.post(
        "/v1/feedback", content=in_chunks(oversize), headers={**writer, "Idempotency-Key": new_customer()}
    )

    for response in (declared, streamed, keyed):
        assert response.status_code == 413, response.text
        assert response.json()["type"].endswith("/payload-too-large")
    # The service goes on, and of this customer's captures only the one under the limit is stored.
    under = await served.post(
        "/v1/feedback", content=in_chunks(padded_json(complaint(customer), LIMIT)), headers=writer
    )
    assert under.status_code == 201, under.text
    assert await stored_count(platform, customer) == 1


async def test_hostile_correlation_id_and_traceparent_never_reach_the_event(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    token = platform.auth("feedback:write")["Authorization"].encode()
    attacks = [
        (b"x" * 1_100_000, b"00-" + b"f" * 1_000_000),
        (b"bad\x01id", TRACEPARENT.upper().encode()),
        ("caf\u00e9".encode(), b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01"),
    ]
    answered = []
    for correlation_id, traceparent in attacks:
        headers = {b"authorization": token, b"x-correlation-id": correlation_id, b"traceparent": traceparent}
        response = await client.post("/v1/feedback", json=complaint(customer), headers=headers)
        assert response.status_code == 201
        assert NEW_ID.fullmatch(response.headers["x-correlation-id"])
        answered.append((response.json()["id"], response.headers["x-correlation-id"], response.headers["traceparent"]))
    # A well-formed pair is carried on as sent: the positive marker that comes last on this customer's key.
    kept = await client.post(
        "/v1/feedback",
        json=complaint(customer),
        headers={**platform.auth("feedback:write"), "X-Correlation-ID": "order-42", "traceparent": TRACEPARENT},
    )
    answered.append((kept.json()["id"], "order-42", TRACEPARENT))

    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len(found) >= len(answered),
    )
    events = [from_structured_event(KafkaMessage(dict(r.headers), r.key, r.value)) for r in records]
    published = [(e.get_subject(), e.get_extension("correlationid"), e.get_extension("traceparent")) for e in events]
    assert published == answered
    assert all(len(record.value) < 16_384 for record in records)
