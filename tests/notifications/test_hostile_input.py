"""Hostile cursors on the notifications service (contract §1, v1.1): a 422, then business as usual."""

from __future__ import annotations

import pytest

from tests.notifications.conftest import RunningService
from tests.support.hostile import FORGED_CURSORS, assert_invalid
from tests.support.platform import Platform


@pytest.mark.parametrize("path", ["/v1/routing-rules", "/v1/departments/support/notifications", "/v1/subscriptions"])
async def test_forged_cursor_is_422(notifications: RunningService, platform: Platform, path: str) -> None:
    headers = platform.auth()
    for cursor in FORGED_CURSORS:
        assert_invalid(await notifications.client.get(path, params={"cursor": cursor}, headers=headers), "cursor")
    assert (await notifications.client.get(path, headers=headers)).status_code == 200
