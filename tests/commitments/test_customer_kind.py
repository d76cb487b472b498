"""Internal customers apart from external ones: the list and the metrics filter by `customer_kind`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.commitments.support import create, unique
from tests.support.platform import Platform


@pytest.fixture
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("commitments:read", "commitments:write")


async def internal_and_external(client: httpx.AsyncClient, writer: dict[str, str], owner: str) -> list[dict[str, Any]]:
    """Two promises to internal customers (the first kept) and one to an external customer, oldest first."""
    made = [await create(client, writer, owner_id=owner, customer_kind=kind) for kind in ("internal", "internal")]
    made.append(await create(client, writer, owner_id=owner, customer_kind="external"))
    kept = await client.post(f"/v1/commitments/{made[0]['id']}/complete", headers=writer)
    assert kept.status_code == 200, kept.text
    return made


async def test_the_list_filters_by_customer_kind(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    owner = unique("owner")
    first, second, outside = await internal_and_external(client, writer, owner)

    async def listed(**params: str) -> list[str]:
        response = await client.get("/v1/commitments", params={"owner_id": owner, **params}, headers=writer)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await listed(customer_kind="internal") == [second["id"], first["id"]]
    assert await listed(customer_kind="external") == [outside["id"]]
    assert await listed() == [outside["id"], second["id"], first["id"]]


async def test_the_metrics_count_one_kind_of_customer(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    owner = unique("owner")
    await internal_and_external(client, writer, owner)

    async def total(**params: str) -> dict[str, Any]:
        response = await client.get("/v1/commitments/metrics", params={"owner_id": owner, **params}, headers=writer)
        assert response.status_code == 200, response.text
        figures: dict[str, Any] = response.json()["total"]
        return figures

    internal = await total(customer_kind="internal")
    external = await total(customer_kind="external")
    both = await total()
    assert (internal["due"], internal["met_on_time"], internal["open"]) == (2, 1, 1)
    assert (external["due"], external["met_on_time"], external["open"]) == (1, 0, 1)
    assert (both["due"], both["met_on_time"], both["open"]) == (3, 1, 2)


@pytest.mark.parametrize("path", ["/v1/commitments", "/v1/commitments/metrics"])
async def test_an_unknown_customer_kind_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, writer: dict[str, str], path: str
) -> None:
    response = await client.get(path, params={"customer_kind": "partner"}, headers=writer)
    assert response.status_code == 422, response.text
    assert ["query", "customer_kind"] in [e["loc"] for e in response.json()["errors"]]


@pytest.mark.usefixtures("client")
async def test_the_customer_kind_filter_is_served_by_its_index(platform: Platform) -> None:
    plan = await platform.plan(
        "commitments",
        "SELECT * FROM commitment WHERE customer_kind = 'internal' ORDER BY created_at DESC, id DESC LIMIT 51",
    )
    assert "ix_commitment_customer_kind_created_at_id" in plan, plan
    assert "Seq Scan" not in plan, plan
