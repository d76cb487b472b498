"""The customer judges the resolution (contract §3, v1.1): the verdict link, the staff verdict, the metrics."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import pytest_asyncio

from services.feedback.app import create_app
from services.feedback.verdicts import VerdictLinks
from tests.feedback.conftest import capture, complaint, feedback_settings, new_customer
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve

PUBLIC_URL = "https://feedback.example.test/customer-focus"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(feedback_settings(platform, feedback_public_url=PUBLIC_URL))) as running:
        yield running


async def resolved(client: httpx.AsyncClient, platform: Platform, **fields: Any) -> dict[str, Any]:
    created = await capture(client, platform, complaint(new_customer(), **fields))
    moved: dict[str, Any] = {}
    for status in ("acknowledged", "in_progress", "resolved"):
        response = await client.patch(
            f"/v1/feedback/{created['id']}", json={"status": status}, headers=platform.auth("feedback:write")
        )
        assert response.status_code == 200, response.text
        moved = response.json()
    return moved


def path_of(verdict_url: str) -> str:
    """The verdict link's path on the service (the public base adds a prefix a proxy would strip)."""
    return urlsplit(verdict_url).path.removeprefix(urlsplit(PUBLIC_URL).path)


def token_of(verdict_url: str) -> str:
    return verdict_url.rsplit("/", 1)[1]


async def test_resolving_gives_a_verdict_link_in_the_answer_and_the_event(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = await resolved(client, platform)
    assert feedback["verdict"] is None
    assert feedback["verdict_url"].startswith(f"{PUBLIC_URL}/v1/verdicts/")
    assert feedback["id"] not in feedback["verdict_url"]
    [event] = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: (e := orjson.loads(r.value))["subject"] == feedback["id"] and e["data"]["status"] == "resolved",
        until=lambda found: len(found) >= 1,
    )
    assert orjson.loads(event.value)["data"]["verdict_url"] == feedback["verdict_url"]
    fetched = (await client.get(f"/v1/feedback/{feedback['id']}", headers=platform.auth("feedback:read"))).json()
    assert (fetched["verdict"], fetched["verdict_url"]) == (None, None)


async def test_the_link_is_a_page_with_a_form_that_needs_no_token(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = await resolved(client, platform)
    page = await client.get(path_of(feedback["verdict_url"]), headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert '<html lang="en">' in html
    assert '<form method="post">' in html
    assert "<script" not in html
    for field in ('name="accepted" value="true"', 'name="accepted" value="false"', 'name="fairness"', 'id="comment"'):
        assert field in html
    assert html.count("<legend>") == 2
    assert '<label for="comment">' in html
    as_json = await client.get(path_of(feedback["verdict_url"]), headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    assert as_json.json()["kind"] == "complaint"
    assert set(as_json.json()) == {"kind", "resolved_at", "expires_at"}


async def test_the_customer_rejects_through_the_form_and_the_feedback_reopens(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = await resolved(client, platform)
    answer = await client.post(
        path_of(feedback["verdict_url"]),
        content="accepted=false&fairness=2&comment=Still+leaking+%E2%80%94+sorry",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "reopened" in answer.text
    after = (await client.get(f"/v1/feedback/{feedback['id']}", headers=platform.auth("feedback:read"))).json()
    assert after["status"] == "reopened"
    verdict = after["verdict"]
    assert (verdict["accepted"], verdict["fairness"], verdict["comment"], verdict["given_by"]) == (
        False,
        2,
        "Still leaking — sorry",
        "customer",
    )
    assert after["history"][-1]["from_status"] == "resolved"
    assert after["history"][-1]["changed_by"] == "customer"
    events = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: orjson.loads(r.value)["subject"] == feedback["id"],
        until=lambda found: len(found) >= 6,
    )
    last = [orjson.loads(r.value) for r in events][-2:]
    assert [e["type"] for e in last] == ["feedback.status_changed", "feedback.verdict_given"]
    assert last[0]["data"]["status"] == "reopened"
    assert last[1]["data"]["verdict"]["accepted"] is False

    again = await client.post(path_of(feedback["verdict_url"]), json={"accepted": True})
    assert again.status_code == 409
    assert again.json()["type"].endswith("verdict-already-given")
    page = await client.get(path_of(feedback["verdict_url"]), headers={"Accept": "text/html"})
    assert page.status_code == 409


async def test_the_customer_accepts_in_json_and_the_feedback_closes(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = await resolved(client, platform)
    answer = await client.post(path_of(feedback["verdict_url"]), json={"accepted": True, "fairness": 5})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "closed"
    assert answer.json()["verdict"]["given_by"] == "customer"
    replay = await client.post(path_of(feedback["verdict_url"]), json={"accepted": True, "fairness": 5})
    assert replay.status_code == 409


async def test_a_forged_token_is_404_and_names_no_feedback(client: httpx.AsyncClient, platform: Platform) -> None:
    feedback = await resolved(client, platform)
    token = token_of(feedback["verdict_url"])
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    foreign = VerdictLinks.from_secret("another secret of at least thirty-two bytes", PUBLIC_URL)
    _, expires_at = VerdictLinks.from_secret(platform.secret, PUBLIC_URL).read(token)
    other_key = foreign.token(uuid.uuid4(), expires_at)
    for forged in (tampered, other_key, "x", "A" * 75, "%E2%80%94", "A" * 5000):
        response = await client.post(f"/v1/verdicts/{forged}", json={"accepted": False})
        assert response.status_code == 404, (forged, response.text)
        assert response.json()["type"].endswith("verdict-link-unknown")
        assert feedback["id"] not in response.text
        page = await client.get(f"/v1/verdicts/{forged}", headers={"Accept": "text/html"})
        assert page.status_code == 404
    still = (await client.get(f"/v1/feedback/{feedback['id']}", headers=platform.auth("feedback:read"))).json()
    assert still["status"] == "resolved"


async def test_an_expired_link_is_410(platform: Platform) -> None:
    settings = feedback_settings(platform, feedback_public_url=PUBLIC_URL, feedback_verdict_ttl_seconds=0.001)
    async with serve(create_app(settings)) as short_lived:
        feedback = await resolved(short_lived, platform)
        response = await short_lived.post(path_of(feedback["verdict_url"]), json={"accepted": True})
        assert response.status_code == 410, response.text
        assert response.json()["type"].endswith("verdict-link-expired")
        page = await short_lived.get(path_of(feedback["verdict_url"]), headers={"Accept": "text/html"})
        assert page.status_code == 410
        assert "expired" in page.text


async def test_staff_record_an_accepted_verdict(client: httpx.AsyncClient, platform: Platform) -> None:
    feedback = await resolved(client, platform)
    response = await client.post(
        f"/v1/feedback/{feedback['id']}/verdict",
        json={"accepted": True, "fairness": 4, "comment": "Told us on the phone."},
        headers=platform.auth("feedback:write", sub="agent-7"),
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["status"] == "closed"
    assert (after["verdict"]["given_by"], after["verdict"]["fairness"]) == ("staff", 4)
    assert after["history"][-1]["changed_by"] == "agent-7"
    # The link of that resolution is used up by the staff verdict.
    link = await client.post(path_of(feedback["verdict_url"]), json={"accepted": False})
    assert link.status_code == 409


async def test_a_staff_verdict_sent_twice_with_its_key_is_recorded_once(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = await resolved(client, platform)
    headers = {**platform.auth("feedback:write", sub="agent-8"), "Idempotency-Key": str(uuid.uuid4())}
    url = f"/v1/feedback/{feedback['id']}/verdict"
    first = await client.post(url, json={"accepted": False}, headers=headers)
    again = await client.post(url, json={"accepted": False}, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["status"] == "reopened"


async def test_a_verdict_on_feedback_that_is_not_resolved_is_409(client: httpx.AsyncClient, platform: Platform) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    response = await client.post(
        f"/v1/feedback/{created['id']}/verdict", json={"accepted": True}, headers=platform.auth("feedback:write")
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith("feedback-not-resolved")
    reader = await client.post(
        f"/v1/feedback/{created['id']}/verdict", json={"accepted": True}, headers=platform.auth("feedback:read")
    )
    assert reader.status_code == 403


async def test_a_link_after_staff_closed_the_feedback_is_409(client: httpx.AsyncClient, platform: Platform) -> None:
    feedback = await resolved(client, platform)
    closed = await client.patch(
        f"/v1/feedback/{feedback['id']}", json={"status": "closed"}, headers=platform.auth("feedback:write")
    )
    assert closed.status_code == 200
    response = await client.post(path_of(feedback["verdict_url"]), json={"accepted": False})
    assert response.status_code == 409
    assert response.json()["type"].endswith("feedback-not-resolved")


async def test_resolving_again_gives_a_new_link_and_the_old_one_is_gone(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    feedback = await resolved(client, platform)
    writer = platform.auth("feedback:write")
    for status in ("reopened", "acknowledged", "in_progress"):
        assert (
            await client.patch(f"/v1/feedback/{feedback['id']}", json={"status": status}, headers=writer)
        ).is_success
    again = (await client.patch(f"/v1/feedback/{feedback['id']}", json={"status": "resolved"}, headers=writer)).json()
    assert again["verdict_url"] != feedback["verdict_url"]
    old = await client.post(path_of(feedback["verdict_url"]), json={"accepted": True})
    assert old.status_code == 410
    assert old.json()["type"].endswith("verdict-link-superseded")
    new = await client.post(path_of(again["verdict_url"]), json={"accepted": True})
    assert new.status_code == 200


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ('{"fairness": 3}', "application/json"),
        ('{"accepted": true, "fairness": 6}', "application/json"),
        ("fairness=3", "application/x-www-form-urlencoded"),
    ],
)
async def test_an_answer_without_a_valid_verdict_is_422(
    client: httpx.AsyncClient, platform: Platform, content: str, content_type: str
) -> None:
    feedback = await resolved(client, platform)
    response = await client.post(
        path_of(feedback["verdict_url"]), content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 422, response.text
    still = (await client.get(f"/v1/feedback/{feedback['id']}", headers=platform.auth("feedback:read"))).json()
    assert still["status"] == "resolved"


async def test_metrics_count_the_verdicts(client: httpx.AsyncClient, platform: Platform) -> None:
    product = f"product-{uuid.uuid4().hex[:8]}"
    verdicts = [{"accepted": True, "fairness": 5}, {"accepted": False, "fairness": 2}, {"accepted": True}]
    for verdict in verdicts:
        feedback = await resolved(client, platform, product=product)
        assert (await client.post(path_of(feedback["verdict_url"]), json=verdict)).status_code == 200
    await resolved(client, platform, product=product)
    metrics = await client.get(
        "/v1/feedback/metrics", params={"product": product}, headers=platform.auth("feedback:read")
    )
    assert metrics.status_code == 200, metrics.text
    assert metrics.json()["resolution"] == {
        "verdicts": 3,
        "accepted": 2,
        "acceptance_rate": pytest.approx(2 / 3),
        "fairness_average": pytest.approx(3.5),
    }
