"""Due moments do not wait for the broker: statuses move on time and the events wait in the outbox."""

from __future__ import annotations

import orjson

from ops.embedded import free_port
from services.commitments.app import create_app
from tests.commitments.conftest import commitments_settings
from tests.commitments.support import at, create, in_seconds, unique, wait_for_status
from tests.support.platform import Platform, serve


async def test_moments_fire_on_time_while_the_broker_is_unreachable(platform: Platform) -> None:
    settings = commitments_settings(platform, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    writer = platform.auth("commitments:read", "commitments:write")
    customer = unique("customer")
    async with serve(create_app(settings)) as client:
        assert (await client.get("/readyz")).status_code == 503
        created = await create(client, writer, customer_id=customer, due_at=in_seconds(1.5))
        await wait_for_status(client, writer, created["id"], "overdue")
        waiting = "SELECT value FROM outbox_event WHERE key = $1 ORDER BY id"
        rows = await platform.fetch("commitments", waiting, customer)
    events = [orjson.loads(row["value"]) for row in rows]
    assert [e["type"] for e in events] == ["commitment.created", "commitment.due_soon", "commitment.overdue"]
    due_soon, overdue = events[1], events[2]
    assert 0 <= (at(due_soon["time"]) - at(created["due_soon_at"])).total_seconds() < 1.0
    assert 0 <= (at(overdue["time"]) - at(created["due_at"])).total_seconds() < 1.0
