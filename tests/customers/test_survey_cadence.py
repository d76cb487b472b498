"""Survey cadence: `customer.survey_due` once per due moment, within a second of it, moved by a survey
response, never within the minimum gap, and fired once across a restart and two replicas.

Each test runs its own customers service with a short interval (seconds, not days). The survey
moment follows from the stored facts and the settings, so the package's service (default interval)
never fires these customers, whichever consumer records their survey responses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka.partitioner import DefaultPartitioner

from services.customers.app import create_app
from services.customers.config import Settings
from shared import catalogue
from tests.customers.support import timeline_with
from tests.notifications.helpers import EventPublisher, customer, feedback
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually

SURVEY_DUE = catalogue.CUSTOMER_SURVEY_DUE.type

# Each test also takes the package's service (`client`): its consumer, the group's first member and
# there for the whole package, lets the short-lived services' consumers join and leave the group
# quickly (the embedded broker's first member never leaves it, so a later one would wait it out).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("client")]


async def consuming(client: httpx.AsyncClient, publisher: EventPublisher, headers: dict[str, str]) -> None:
    """Once the timeline consumers' group has settled (a service joining or leaving moves its partitions):
    an event published now on each partition is on its customer's timeline."""
    partitions = list(range(publisher.platform.settings("customers").kafka_topic_partitions))
    pick = DefaultPartitioner()
    on: dict[int, str] = {}
    while len(on) < len(partitions):
        someone = customer()
        on.setdefault(pick(someone.encode(), partitions, partitions), someone)
    for someone in on.values():
        record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(someone), customer_id=someone)
        await timeline_with(client, headers, someone, record.event_id, within=60.0)


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def group_settled_after(
    client: httpx.AsyncClient, publisher: EventPublisher, writer: dict[str, str]
) -> AsyncIterator[None]:
    """Each test's services leave the group settled behind them, for the tests that follow."""
    yield
    await consuming(client, publisher, writer)


def cadence(platform: Platform, *, interval: float, min_gap: float) -> Settings:
    settings = platform.settings(
        "customers", customers_survey_interval_seconds=interval, customers_survey_min_gap_seconds=min_gap
    )
    assert isinstance(settings, Settings)
    return settings


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def new_customer() -> str:
    return f"survey-{uuid.uuid4()}"


async def put(client: httpx.AsyncClient, headers: dict[str, str], customer_id: str, segment: str) -> dict[str, Any]:
    response = await client.put(f"/v1/customers/{customer_id}", json={"segment": segment}, headers=headers)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def events_until(platform: Platform, customer_id: str, *, until: Any) -> list[dict[str, Any]]:
    """The customer's events on `customers.events`, read until `until(events)` holds."""
    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic(catalogue.CUSTOMERS_TOPIC),
        where=lambda r: r.key == customer_id.encode(),
        until=lambda found: until([json.loads(r.value) for r in found]),
        within=60.0,
    )
    return [json.loads(r.value) for r in records]


def surveys(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == SURVEY_DUE]


async def survey_dues_before_a_marker(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform, customer_id: str, *, count: int
) -> list[dict[str, Any]]:
    """The customer's survey-due events once `count` have come, then everything up to a later marker
    (a profile change on the same key): a second event for one moment would have come before it."""
    await events_until(platform, customer_id, until=lambda events: len(surveys(events)) >= count)
    await put(client, headers, customer_id, "marker")

    def marker_seen(events: list[dict[str, Any]]) -> bool:
        return any(e["type"] == catalogue.CUSTOMER_UPDATED.type and e["data"]["segment"] == "marker" for e in events)

    return surveys(await events_until(platform, customer_id, until=marker_seen))


def lateness(event: dict[str, Any], moment: datetime) -> float:
    """Seconds from the survey moment to when the scheduler wrote its event (the CloudEvent `time`)."""
    return (at(event["time"]) - moment).total_seconds()


async def record_survey_response(
    publisher: EventPublisher, client: httpx.AsyncClient, headers: dict[str, str], customer_id: str
) -> datetime:
    """A survey response given now, published on `feedback.events`; returns once the customer shows it."""
    answered_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    stamp = answered_at.isoformat().replace("+00:00", "Z")
    data = feedback(
        customer_id,
        "survey_response",
        rating={"scale": "nps", "value": 9},
        occurred_at=stamp,
        created_at=stamp,
        updated_at=stamp,
    )
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, data, customer_id=customer_id)

    async def recorded() -> bool:
        response = await client.get(f"/v1/customers/{customer_id}", headers=headers)
        last = response.json().get("last_survey_at")
        return last is not None and at(last) == answered_at

    await eventually(recorded, within=30.0)
    return answered_at


async def test_a_survey_comes_due_once_within_a_second_of_its_moment(
    platform: Platform, writer: dict[str, str]
) -> None:
    settings = cadence(platform, interval=2.0, min_gap=6.0)
    customer_id = new_customer()
    async with serve(create_app(settings)) as service:
        created = await put(service, writer, customer_id, "enterprise")
        moment = at(created["first_seen_at"]) + timedelta(seconds=2)
        assert at(created["next_survey_due_at"]) == moment
        assert created["survey_due"] is False

        fired = await survey_dues_before_a_marker(service, writer, platform, customer_id, count=1)

        assert len(fired) == 1, fired
        assert 0 <= lateness(fired[0], moment) < 1.0, fired[0]
        # Unanswered, the next survey is due the longer of interval and gap after this one.
        assert fired[0]["data"]["survey_due"] is True
        assert at(fired[0]["data"]["next_survey_due_at"]) == moment + timedelta(seconds=6)
        listed = await service.get("/v1/customers", params={"survey_due": "true", "limit": 200}, headers=writer)
        assert customer_id in [c["customer_id"] for c in listed.json()["items"]]
        not_due = await service.get("/v1/customers", params={"survey_due": "false", "limit": 200}, headers=writer)
        assert customer_id not in [c["customer_id"] for c in not_due.json()["items"]]


async def test_a_survey_response_moves_the_moment_and_answers_the_survey(
    platform: Platform, writer: dict[str, str], publisher: EventPublisher, client: httpx.AsyncClient
) -> None:
    settings = cadence(platform, interval=12.0, min_gap=0.0)
    customer_id = new_customer()
    async with serve(create_app(settings)) as service:
        await consuming(client, publisher, writer)  # its consumer joined the group: the clock starts after
        created = await put(service, writer, customer_id, "enterprise")
        first_moment = at(created["first_seen_at"]) + timedelta(seconds=12)
        answered_at = await record_survey_response(publisher, service, writer, customer_id)
        assert datetime.now(UTC) < first_moment, "the response must be recorded before the first moment"
        moved = (await service.get(f"/v1/customers/{customer_id}", headers=writer)).json()
        assert at(moved["next_survey_due_at"]) == answered_at + timedelta(seconds=12)

        fired = await survey_dues_before_a_marker(service, writer, platform, customer_id, count=1)

        assert len(fired) == 1, fired
        assert 0 <= lateness(fired[0], answered_at + timedelta(seconds=12)) < 1.0, fired[0]

        # A response after the survey came due answers it: the customer leaves the `survey_due` list.
        await record_survey_response(publisher, service, writer, customer_id)
        answered = (await service.get(f"/v1/customers/{customer_id}", headers=writer)).json()
        assert answered["survey_due"] is False


async def test_no_survey_is_due_within_the_minimum_gap_of_the_last_response(
    platform: Platform, writer: dict[str, str], publisher: EventPublisher, client: httpx.AsyncClient
) -> None:
    # The interval alone would make the customer due 8 s after its response; the gap holds it to 16 s.
    settings = cadence(platform, interval=8.0, min_gap=16.0)
    customer_id = new_customer()
    async with serve(create_app(settings)) as service:
        await consuming(client, publisher, writer)  # its consumer joined the group: the clock starts after
        created = await put(service, writer, customer_id, "enterprise")
        first_moment = at(created["first_seen_at"]) + timedelta(seconds=8)
        answered_at = await record_survey_response(publisher, service, writer, customer_id)
        assert datetime.now(UTC) < first_moment, "the response must be recorded before the first moment"

        fired = await survey_dues_before_a_marker(service, writer, platform, customer_id, count=1)

        assert len(fired) == 1, fired
        assert 0 <= lateness(fired[0], answered_at + timedelta(seconds=16)) < 1.0, fired[0]


async def test_a_moment_passed_while_the_service_was_down_fires_once_after_it_restarts_on_two_replicas(
    platform: Platform, writer: dict[str, str]
) -> None:
    # Long enough for the first service to stop before the moment (its consumer leaves the group first).
    settings = cadence(platform, interval=10.0, min_gap=30.0)
    customer_id = new_customer()
    async with serve(create_app(settings)) as first:
        created = await put(first, writer, customer_id, "enterprise")
    moment = at(created["first_seen_at"]) + timedelta(seconds=10)
    assert datetime.now(UTC) < moment, "the service must stop before the moment"

    async with serve(create_app(settings)) as second, serve(create_app(settings)):
        fired = await survey_dues_before_a_marker(second, writer, platform, customer_id, count=1)

    assert len(fired) == 1, fired
    assert 0 <= lateness(fired[0], moment) < 1.0, fired[0]


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        # The scheduler's earliest moment: one probe per case.
        (
            "SELECT min(first_seen_at) FROM customer WHERE last_survey_at IS NULL AND last_survey_due_at IS NULL",
            "ix_customer_survey_first",
        ),
        (
            "SELECT min(greatest(last_survey_at, last_survey_due_at)) FROM customer"
            " WHERE last_survey_at IS NOT NULL OR last_survey_due_at IS NOT NULL",
            "ix_customer_survey_again",
        ),
        # The list's filter: its partial index, or (the planner's choice on a table as small as the suite's,
        # where it expects many customers due) the list's own keyset index, filtered; never a scan of the table.
        (
            "SELECT * FROM customer WHERE survey_due ORDER BY created_at DESC, id DESC LIMIT 51",
            "ix_customer_survey_due_created_at_id|ix_customer_created_at_id",
        ),
    ],
)
async def test_the_survey_moments_and_the_survey_due_filter_are_served_by_indexes(
    platform: Platform, statement: str, index: str
) -> None:
    plan = await platform.plan("customers", statement)
    assert any(name in plan for name in index.split("|")), plan
    assert "Seq Scan" not in plan, plan
