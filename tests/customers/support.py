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


async def customers_in_segment(
    client: httpx.AsyncClient, headers: dict[str, str], segment: str, **params: Any
) -> list[str]:
    """The ids of the customers of `segment` (one test's customers, among every other test's) that the list
    gives for `params`, in its order, every page walked."""
    found: list[str] = []
    cursor = None
    while True:
        page = await client.get(
            "/v1/customers",
            params={**params, "limit": 200, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        )
        assert page.status_code == 200, page.text
        found += [c["customer_id"] for c in page.json()["items"] if c["segment"] == segment]
        if (cursor := page.json()["next_cursor"]) is None:
            return found
