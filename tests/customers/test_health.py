"""Health: a rule-based score with its reasons, one `customer.health_changed` per change of band, routed on red."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text

from services.customers import health
from services.customers.config import Settings
from services.customers.silence import SilenceSweep
from services.customers.timeline import CustomerEvents
from shared import catalogue
from shared.consumer import ConsumedEvent
from tests.notifications.helpers import EventPublisher, commitment, customer, feedback
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform, sessions_on
from tests.support.waiting import eventually

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> str:
    """A moment relative to the run, so that no factor but the ones a test sets up (silence) depends on the date."""
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def customer_body(client: httpx.AsyncClient, reader: dict[str, str], customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}", headers=reader)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def health_when(
    client: httpx.AsyncClient, reader: dict[str, str], customer_id: str, *, band: str, **counts: int
) -> dict[str, Any]:
    """The customer's health once it is in `band` with these counts."""

    async def reached() -> dict[str, Any] | None:
        response = await client.get(f"/v1/customers/{customer_id}", headers=reader)
        if response.status_code != 200:
            return None
        body = response.json()
        matches = all(body["counts"][name] == value for name, value in counts.items())
        return body["health"] if body["health"]["band"] == band and matches else None

    found: dict[str, Any] = await eventually(reached)
    return found


async def customers_events(platform: Platform, customer_id: str, *, until_segment: str) -> list[dict[str, Any]]:
    """The customer's events on customers.events up to the `customer.updated` marker with `until_segment`."""

    def marker_seen(found: list[Record]) -> bool:
        return any(json.loads(r.value)["data"]["segment"] == until_segment for r in found)

    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic(catalogue.CUSTOMERS_TOPIC),
        where=lambda r: r.key == customer_id.encode(),
        until=marker_seen,
    )
    return [json.loads(r.value) for r in records]


async def test_a_customer_turns_red_with_its_reasons_and_green_again_once_per_change_of_band(
    client: httpx.AsyncClient,
    publisher: EventPublisher,
    platform: Platform,
    reader: dict[str, str],
    writer: dict[str, str],
) -> None:
    customer_id = customer()
    first = feedback(customer_id, rating={"scale": "nps", "value": 2}, occurred_at=days_ago(3))
    second = feedback(customer_id, occurred_at=days_ago(2))
    broken = {
        **commitment(customer_id, status="overdue"),
        "kept": False,
        "broken_because": "overdue",
        "updated_at": days_ago(2),
    }
    publish = publisher.publish

    # 100 - 25 (NPS 2) - 15 (a complaint) = 60: amber.
    await publish(catalogue.FEEDBACK_RECEIVED, first, customer_id=customer_id)
    await health_when(client, reader, customer_id, band="amber", open_complaints=1)
    # - 15 (a broken promise) = 45, still amber; - 15 (a second complaint) = 30: red.
    await publish(catalogue.COMMITMENT_OVERDUE, broken, customer_id=customer_id)
    await health_when(client, reader, customer_id, band="amber", broken_promises=1)
    await publish(catalogue.FEEDBACK_RECEIVED, second, customer_id=customer_id)
    red = await health_when(client, reader, customer_id, band="red", open_complaints=2)

    assert red["score"] == 30
    assert red["reasons"] == [
        {"factor": "open_complaints", "effect": -30, "detail": "2 open complaints"},
        {"factor": "nps", "effect": -25, "detail": "Latest NPS 2 (a detractor, 0-6)"},
        {"factor": "broken_promises", "effect": -15, "detail": "1 broken promise in the last 90 days"},
    ]

    # The causes go: both complaints resolved (45, then 60: amber), then a promoter's NPS (85: green).
    for complaint in (second, first):
        resolved = {**complaint, "status": "resolved", "previous_status": "new"}
        await publish(catalogue.FEEDBACK_STATUS_CHANGED, resolved, customer_id=customer_id)
    await health_when(client, reader, customer_id, band="amber", open_complaints=0)
    promoter = feedback(customer_id, "survey_response", rating={"scale": "nps", "value": 10}, occurred_at=days_ago(1))
    await publish(catalogue.FEEDBACK_RECEIVED, promoter, customer_id=customer_id)
    green = await health_when(client, reader, customer_id, band="green")
    assert green == {
        "score": 85,
        "band": "green",
        "reasons": [{"factor": "broken_promises", "effect": -15, "detail": "1 broken promise in the last 90 days"}],
    }

    # A later event on the same key: once it is on the topic, any second health event would be before it.
    marker = await client.put(f"/v1/customers/{customer_id}", json={"segment": "marker"}, headers=writer)
    assert marker.status_code == 200, marker.text
    events = await customers_events(platform, customer_id, until_segment="marker")

    changes = [e for e in events if e["type"] == catalogue.CUSTOMER_HEALTH_CHANGED.type]
    assert [(e["data"]["previous_band"], e["data"]["health"]["band"]) for e in changes] == [
        ("green", "amber"),
        ("amber", "red"),
        ("red", "amber"),
        ("amber", "green"),
    ]
    assert [e["type"] for e in events][-1] == catalogue.CUSTOMER_UPDATED.type
    turned_red = changes[1]
    assert (turned_red["subject"], turned_red["customerid"]) == (customer_id, customer_id)
    assert turned_red["data"]["customer_id"] == customer_id
    assert turned_red["data"]["health"]["reasons"] == red["reasons"]
    assert turned_red["data"]["counts"]["open_complaints"] == 2


def test_the_settings_move_the_bands(platform: Platform) -> None:
    factors = health.Factors(
        nps=None,
        csat=None,
        ces=6,
        open_complaints=1,
        broken_promises=0,
        unconfirmed_expectations=2,
        capability_gaps=1,
        silent_since=datetime(2026, 11, 30, tzinfo=UTC),
    )

    def judged(**overrides: Any) -> health.Health:
        settings = platform.settings("customers", **overrides)
        assert isinstance(settings, Settings)
        return health.judge(factors, settings, NOW)

    # 100 - 15 (CES 6) - 15 (a complaint) - 10 (two unconfirmed) - 10 (a gap) = 50.
    assert (judged().score, judged().band) == (50, "amber")
    assert [r.factor for r in judged().reasons] == [
        "ces",
        "open_complaints",
        "unconfirmed_expectations",
        "capability_gaps",
    ]
    assert judged(customers_health_green_at=50).band == "green"
    assert judged(customers_health_amber_at=51).band == "red"
    assert judged(customers_health_open_complaint_weight=45).band == "red"
    assert judged(customers_health_ces_high_weight=0, customers_health_capability_gap_weight=5).score == 70
    silent = judged(customers_health_silent_after_days=3)
    assert (silent.score, silent.band, silent.reasons[0].detail) == (30, "red", "No contact for 5 days")
    with pytest.raises(ValidationError, match="CF_CUSTOMERS_HEALTH_AMBER_AT must not be above"):
        judged(customers_health_amber_at=80)


async def test_the_sweep_judges_again_a_customer_who_fell_silent(
    client: httpx.AsyncClient,
    publisher: EventPublisher,
    platform: Platform,
    reader: dict[str, str],
    writer: dict[str, str],
) -> None:
    customer_id = customer()
    contact = feedback(customer_id, "compliment", occurred_at=days_ago(30))
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, contact, customer_id=customer_id)
    # Silent after 60 days (the service's settings): green.
    await health_when(client, reader, customer_id, band="green", feedback=1)

    # Silent after 25 days, silence worth 40 points: a sweep finds it silent, amber (60), and says so once.
    settings = platform.settings("customers", customers_health_silent_after_days=25, customers_health_silence_weight=40)
    assert isinstance(settings, Settings)
    async with sessions_on(settings.database_url) as sessionmaker:
        sweep = SilenceSweep(settings=settings, sessionmaker=sessionmaker)
        assert await sweep.sweep_once() >= 1
        assert await sweep.sweep_once() == 0  # the silence is counted now: nobody to judge again

    rows = await platform.fetch(
        "customers",
        "SELECT health_band, health_score, health_reasons FROM customer WHERE customer_id = $1",
        customer_id,
    )
    assert (rows[0]["health_band"], rows[0]["health_score"]) == ("amber", 60)
    assert json.loads(rows[0]["health_reasons"]) == [
        {"factor": "silence", "effect": -40, "detail": "No contact for 30 days"}
    ]

    marker = await client.put(f"/v1/customers/{customer_id}", json={"segment": "marker"}, headers=writer)
    assert marker.status_code == 200, marker.text
    events = await customers_events(platform, customer_id, until_segment="marker")
    changes = [e for e in events if e["type"] == catalogue.CUSTOMER_HEALTH_CHANGED.type]
    assert [(e["data"]["previous_band"], e["data"]["health"]["band"]) for e in changes] == [("green", "amber")]


async def test_the_list_filters_by_band_and_by_silence(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    quiet, talkative = customer(), customer()
    # Last heard from long ago: silent (- 20) with an NPS of 0 (- 25) and a complaint (- 15): 40, amber.
    old = feedback(quiet, rating={"scale": "nps", "value": 0}, occurred_at=days_ago(400))
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, old, customer_id=quiet)
    recent = feedback(talkative, "compliment", occurred_at=days_ago(1))
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, recent, customer_id=talkative)
    quiet_health = await health_when(client, reader, quiet, band="amber", feedback=1)
    await health_when(client, reader, talkative, band="green", feedback=1)
    assert quiet_health["score"] == 40
    assert [r["factor"] for r in quiet_health["reasons"]] == ["nps", "silence", "open_complaints"]

    async def listed(**params: Any) -> set[str]:
        ids: set[str] = set()
        cursor = None
        while True:
            query = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
            response = await client.get("/v1/customers", params=query, headers=reader)
            assert response.status_code == 200, response.text
            page = response.json()
            ids |= {item["customer_id"] for item in page["items"]}
            if page["items"]:
                bands = {item["health"]["band"] for item in page["items"]}
                assert params.get("health") is None or bands == {params["health"]}
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    amber, green = await listed(health="amber"), await listed(health="green")
    silent, both = await listed(silent_for_days=90), await listed(health="amber", silent_for_days=90)
    assert {
        name: (quiet in found, talkative in found)
        for name, found in (("amber", amber), ("green", green), ("silent", silent), ("both", both))
    } == {
        "amber": (True, False),
        "green": (False, True),
        "silent": (True, False),
        "both": (True, False),
    }

    refused = await client.get("/v1/customers", params={"health": "purple"}, headers=reader)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["query", "health"]


def consumed(spec: catalogue.EventSpec, data: dict[str, Any], customer_id: str) -> ConsumedEvent:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": spec.source,
        "type": spec.type,
        "subject": data["id"],
        "time": datetime.now(UTC).isoformat(),
        "customerid": customer_id,
        "data": data,
    }
    return ConsumedEvent(envelope, spec.topic, 0, 0)


async def test_two_replicas_judge_one_customer_one_after_the_other(platform: Platform) -> None:
    """Batches about one customer from two topics, in flight at once (two replicas): the second waits for the
    first to commit, though its own event changes nothing on the customer, and judges from both."""
    settings = platform.settings("customers")
    assert isinstance(settings, Settings)
    customer_id = customer()
    handle = CustomerEvents(settings).handle
    promise = {**commitment(customer_id), "updated_at": days_ago(1)}
    broken = {**promise, "status": "overdue", "kept": False}
    async with sessions_on(settings.database_url) as sessions:
        async with sessions() as session, session.begin():
            await handle(session, [consumed(catalogue.COMMITMENT_CREATED, promise, customer_id)])

        async def second_replica() -> None:
            async with sessions() as session, session.begin():
                await handle(session, [consumed(catalogue.COMMITMENT_OVERDUE, broken, customer_id)])

        async with sessions() as first, first.begin():
            complaint = feedback(customer_id, occurred_at=days_ago(1))
            await handle(first, [consumed(catalogue.FEEDBACK_RECEIVED, complaint, customer_id)])
            first_pid = (await first.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            second = asyncio.create_task(second_replica())

            async def second_waits() -> bool:
                rows = await platform.fetch(
                    "customers", "SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", first_pid
                )
                return bool(rows)

            await eventually(second_waits)
        await second

    rows = await platform.fetch("customers", "SELECT health_reasons FROM customer WHERE customer_id = $1", customer_id)
    assert sorted(reason["factor"] for reason in json.loads(rows[0]["health_reasons"])) == [
        "broken_promises",
        "open_complaints",
    ]
