"""The customers list filters internal apart from external customers, along its own index."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.customers.support import customers_in_segment
from tests.notifications.helpers import customer
from tests.support.platform import Platform


async def test_the_list_keeps_one_kind_of_customer(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    segment = customer()  # this test's customers, among every other test's
    internal = {"customer_kind": "internal", "supplying_department": "production"}
    made = []
    for profile in (internal, {"customer_kind": "external"}, internal):
        customer_id = customer()
        response = await client.put(
            f"/v1/customers/{customer_id}", json={**profile, "segment": segment}, headers=writer
        )
        assert response.status_code in (200, 201), response.text
        made.append(customer_id)

    def listed(**params: Any) -> Any:
        return customers_in_segment(client, writer, segment, **params)

    assert await listed(customer_kind="internal") == [made[2], made[0]]
    assert await listed(customer_kind="external") == [made[1]]


@pytest.mark.usefixtures("client")
async def test_the_customer_kind_filter_is_served_by_its_index(platform: Platform) -> None:
    plan = await platform.plan(
        "customers",
        "SELECT * FROM customer WHERE customer_kind = 'internal' ORDER BY created_at DESC, id DESC LIMIT 51",
    )
    assert "ix_customer_customer_kind_created_at_id" in plan, plan
    assert "Seq Scan" not in plan, plan
