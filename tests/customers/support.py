"""Waiting on the customers service's read model: a customer's timeline as the API shows it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.waiting import eventually


async def timeline(client: httpx.AsyncClient, headers: dict[str, str], customer_id: str, **params: Any) -> Any:
    response = await client.get(f"/v1/customers/{customer_id}/timeline", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def timeline_with(
    client: httpx.AsyncClient, headers: dict[str, str], customer_id: str, event_id: object, *, within: float = 15.0
) -> list[dict[str, Any]]:
    """The customer's whole first page, once the event `event_id` is on it."""

    async def shown() -> list[dict[str, Any]] | None:
        response = await client.get(f"/v1/customers/{customer_id}/timeline", params={"limit": 200}, headers=headers)
        if response.status_code != 200:
            return None
        items: list[dict[str, Any]] = response.json()["items"]
        return items if any(item["event_id"] == str(event_id) for item in items) else None

    return await eventually(shown, within=within)
