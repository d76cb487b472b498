"""Every failure is RFC 9457 problem+json; nothing a client sends is a 500 trace."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from shared.types import SafeStr
from tests.support.platform import Platform


async def test_validation_error_names_the_field(probe: httpx.AsyncClient, platform: Platform) -> None:
    response = await probe.post("/probes", json={"name": ""}, headers=platform.auth("feedback:write"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "errors"} <= body.keys()
    assert body["errors"][0]["loc"] == ["body", "name"]
    assert "name" in body["detail"]


async def test_malformed_json_is_a_problem(probe: httpx.AsyncClient, platform: Platform) -> None:
    headers = {**platform.auth("feedback:write"), "content-type": "application/json"}
    response = await probe.post("/probes", content=b'{"name": "x",', headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("malformed-json")


async def test_wrong_types_in_query_and_path_are_problems(probe: httpx.AsyncClient, platform: Platform) -> None:
    headers = platform.auth("feedback:read")
    bad_id = await probe.get("/probes/not-a-uuid", headers=headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["loc"] == ["path", "probe_id"]
    bad_limit = await probe.get("/probes", params={"limit": 0}, headers=headers)
    assert bad_limit.status_code == 422
    bad_cursor = await probe.get("/probes", params={"cursor": "garbage"}, headers=headers)
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_unknown_route_and_method_are_problems(probe: httpx.AsyncClient) -> None:
    missing = await probe.get("/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = await probe.delete("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


async def test_unknown_resource_is_404_problem(probe: httpx.AsyncClient, platform: Platform) -> None:
    response = await probe.get("/probes/00000000-0000-0000-0000-000000000000", headers=platform.auth("feedback:read"))
    assert response.status_code == 404
    assert response.json()["type"].endswith("not-found")


async def test_a_bug_is_a_500_problem_without_a_trace(probe: httpx.AsyncClient, platform: Platform) -> None:
    response = await probe.post("/probes/crash", headers=platform.auth("feedback:write"))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text
    assert "a bug" not in response.text


async def test_openapi_documents_problem_responses(probe: httpx.AsyncClient) -> None:
    spec = (await probe.get("/openapi.json")).json()
    responses = spec["paths"]["/probes"]["post"]["responses"]
    assert "application/problem+json" in responses["422"]["content"]
    assert "application/problem+json" in responses["401"]["content"]
    assert spec["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]


async def test_text_the_database_cannot_store_is_422_not_500(probe: httpx.AsyncClient, platform: Platform) -> None:
    response = await probe.post("/probes", json={"name": "nul\u0000byte"}, headers=platform.auth("feedback:write"))
    assert response.status_code == 422
    assert response.json()["type"].endswith("invalid-characters")


@pytest.mark.parametrize("bad", ["nul\u0000byte", "lone \ud800 surrogate"])
def test_safe_str_names_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SafeTextBody(text=bad)
    assert raised.value.errors()[0]["loc"] == ("text",)


def test_safe_str_accepts_any_storable_text() -> None:
    assert SafeTextBody(text="émoji 🎉").text == "émoji 🎉"


class SafeTextBody(BaseModel):
    text: SafeStr
