"""Bearer tokens (contract §1): 401 with WWW-Authenticate, 403 for scope and department."""

from __future__ import annotations

import time

import httpx
import jwt

from tests.support.platform import TEST_SECRET, Platform


async def test_request_without_token_is_401_with_bearer_challenge(probe: httpx.AsyncClient) -> None:
    response = await probe.get("/probes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401


async def test_expired_token_is_401(probe: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "a", "exp": now - 10, "iat": now - 100, "scope": "feedback:read"}, TEST_SECRET)
    response = await probe.get("/probes", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_forged_token_is_401(probe: httpx.AsyncClient) -> None:
    token = jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "scope": "feedback:read"}, "another-secret-" * 3)
    response = await probe.get("/probes", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_malformed_token_and_missing_exp_are_401(probe: httpx.AsyncClient) -> None:
    no_exp = jwt.encode({"sub": "a", "scope": "feedback:read"}, TEST_SECRET)
    for token in ("not-a-jwt", no_exp):
        response = await probe.get("/probes", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token


async def test_token_without_the_scope_is_403(probe: httpx.AsyncClient, platform: Platform) -> None:
    response = await probe.get("/probes", headers=platform.auth("commitments:read"))
    assert response.status_code == 403
    assert response.json()["type"].endswith("insufficient-scope")


async def test_token_with_the_scope_is_admitted(probe: httpx.AsyncClient, platform: Platform) -> None:
    response = await probe.get("/probes", headers=platform.auth("feedback:read"))
    assert response.status_code == 200


async def test_department_token_reads_only_its_own_department(probe: httpx.AsyncClient, platform: Platform) -> None:
    headers = platform.auth("notifications:read", department="sales")
    assert (await probe.get("/probes/departments/sales/inbox", headers=headers)).status_code == 200
    other = await probe.get("/probes/departments/support/inbox", headers=headers)
    assert other.status_code == 403
    unbound = platform.auth("notifications:read")
    assert (await probe.get("/probes/departments/support/inbox", headers=unbound)).status_code == 200


async def test_health_and_docs_need_no_token(probe: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/openapi.json", "/metrics", "/docs"):
        assert (await probe.get(path)).status_code == 200, path
