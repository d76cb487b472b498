"""The request boundary (contract §1, v1.1): the body limit, then the token, before a body is parsed.

The limit is exercised over a real uvicorn server: only a socket shows a body
that arrives in chunks, or one that never ends, answered while it is still
being sent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from tests.shared.probe_app import CREATE_TABLE, create_probe_app
from tests.support.hostile import in_chunks, padded_json
from tests.support.local_server import LocalServer, serve_over_http
from tests.support.platform import Platform, serve

LIMIT = 1_048_576  # the default of CF_MAX_BODY_BYTES
LARGE_LIMIT = 16 * 1_048_576
JSON = {"Content-Type": "application/json"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(platform: Platform) -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient]]:
    """The probe app with the default body limit, served by uvicorn."""
    await platform.fetch("feedback", CREATE_TABLE)
    async with serve_over_http(create_probe_app(platform.settings("feedback", run_workers=False))) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def roomy(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The probe app with a 16 MiB body limit: a 9 MB body gets past the limit to authentication."""
    settings = platform.settings("feedback", run_workers=False, max_body_bytes=LARGE_LIMIT)
    async with serve(create_probe_app(settings)) as client:
        yield client


async def stored_probes(platform: Platform, name: str) -> int:
    rows = await platform.fetch("feedback", "SELECT count(*) AS n FROM probe WHERE name = $1", name)
    return int(rows[0]["n"])


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/payload-too-large")
    assert problem["status"] == 413
    assert str(LIMIT) in problem["detail"]
    assert response.headers["x-correlation-id"]


async def test_body_declared_over_the_limit_is_413_before_authentication(
    served: tuple[LocalServer, httpx.AsyncClient], platform: Platform
) -> None:
    _, client = served
    name = f"p{uuid.uuid4().hex[:12]}"

    without_token = await client.post("/probes", content=padded_json({"name": name}, 2 * LIMIT))
    assert_too_large(without_token)
    with_token = await client.post("/probes", content=padded_json({"name": name}, LIMIT + 1), headers=platform.auth())
    assert_too_large(with_token)

    created = await client.post("/probes", json={"name": name}, headers=platform.auth())
    assert created.status_code == 201
    assert await stored_probes(platform, name) == 1


async def test_chunked_body_over_the_limit_is_413_and_stores_nothing(
    served: tuple[LocalServer, httpx.AsyncClient], platform: Platform
) -> None:
    _, client = served
    name = f"p{uuid.uuid4().hex[:12]}"
    oversize = padded_json({"name": name}, 2 * LIMIT)

    for route in ("/probes", "/probes/public/size"):
        response = await client.post(route, content=in_chunks(oversize), headers={**platform.auth(), **JSON})
        assert "content-length" not in response.request.headers
        assert_too_large(response)

    # The same client and server go on: a probe under the limit is stored, and is the only one of its name.
    under = in_chunks(padded_json({"name": name}, LIMIT))
    created = await client.post("/probes", content=under, headers={**platform.auth(), **JSON})
    assert created.status_code == 201, created.text
    assert await stored_probes(platform, name) == 1


async def test_body_that_never_ends_gets_its_413_once_past_the_limit(
    served: tuple[LocalServer, httpx.AsyncClient], platform: Platform
) -> None:
    server, client = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /probes HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nAuthorization: " + platform.auth()["Authorization"].encode() + b"\r\n\r\n"
        )
        chunk = b" " * 65_536
        for _ in range(LIMIT // len(chunk) + 2):  # past the limit, and the last chunk is never sent
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413 ")

    assert (await client.get("/healthz")).status_code == 200


async def test_body_at_the_limit_is_read_whole_on_a_route_without_security(
    served: tuple[LocalServer, httpx.AsyncClient],
) -> None:
    _, client = served
    body = b"x" * LIMIT

    declared = await client.post("/probes/public/size", content=body)
    streamed = await client.post("/probes/public/size", content=in_chunks(body))

    assert declared.status_code == streamed.status_code == 200
    assert declared.json() == streamed.json() == {"bytes": LIMIT}


async def test_body_is_not_parsed_for_a_caller_without_a_valid_token(
    roomy: httpx.AsyncClient, platform: Platform
) -> None:
    malformed = b'{"name": "' + b"\x01" * 9_000_000  # 9 MB that is not JSON: parsing it would be a 422

    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic YTpi"}):
        response = await roomy.post("/probes", content=malformed, headers={**headers, **JSON})
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"

    # With a valid token the same body is read and refused as what it is; the scope is still the route's own.
    parsed = await roomy.post("/probes", content=malformed, headers={**platform.auth(), **JSON})
    assert parsed.status_code == 422
    assert parsed.json()["type"].endswith("/malformed-json")
    no_scope = await roomy.post("/probes", json={"name": "scope"}, headers=platform.auth("feedback:read"))
    assert no_scope.status_code == 403


async def test_routes_without_security_and_requests_without_a_body_need_no_token(roomy: httpx.AsyncClient) -> None:
    assert (await roomy.post("/probes/public/size", content=b"12345")).json() == {"bytes": 5}
    assert (await roomy.get("/healthz")).status_code == 200
    assert (await roomy.get("/openapi.json")).status_code == 200
    missing = await roomy.post("/no-such-route", content=b"{}")
    assert missing.status_code == 404


async def test_operations_that_take_a_body_document_the_413(roomy: httpx.AsyncClient) -> None:
    spec = (await roomy.get("/openapi.json")).json()
    create = spec["paths"]["/probes"]["post"]["responses"]
    assert create["413"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "413" not in spec["paths"]["/probes"]["get"]["responses"]
