"""`customer-focus demo`: one customer's story, played over HTTP against a running stack.

A complaint with a detractor score, which the response policies turn into
promises for support; support acknowledges it (that promise met on time); a
meeting held by two staff members, an expectation the customer confirms, a
promise that goes overdue and is kept late; then support resolves the
complaint, the customer rejects the resolution through the verdict link
(without any token, as a customer would), and the reopened complaint reaches
support and management with a new promise to resolve it. Every request
carries one W3C trace (`traceparent`), so the events the departments receive
can be followed back to the demo. At the end the demo reads each
department's inbox and every service's /metrics and prints what arrived,
then the customer's timeline (newest first) and health from the customers
service.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.config import DEFAULT_DEPARTMENTS
from shared.observability import trace_id_of

Say = Callable[[str], None]
SERVICE_NAMES = ("feedback", "expectations", "commitments", "notifications", "customers")
# The commitments scheduler fires these at a moment, not in answer to a request: no trace to carry.
SCHEDULED_EVENT_TYPES = frozenset({"commitment.due_soon", "commitment.overdue"})
COMMITMENT_DEPARTMENT = "production"
# Where the default response policies put a complaint's promises, and where a rejected verdict goes too.
RESPONSE_DEPARTMENT = "support"
VERDICT_DEPARTMENT = "management"
CLOCK_MARGIN = timedelta(minutes=5)


class DemoError(RuntimeError):
    """The stack is unreachable or answered something the story did not expect."""


class _Absent(DemoError):
    """The service answered 404."""


@dataclass(frozen=True)
class DemoTargets:
    """Base URLs of the five services."""

    feedback: str
    expectations: str
    commitments: str
    notifications: str
    customers: str

    @classmethod
    def on_ports(cls, host: str = "127.0.0.1", base_port: int = 8001) -> DemoTargets:
        """The services as `make run` starts them: consecutive ports from `base_port`."""
        urls = [f"http://{host}:{base_port + offset}" for offset in range(len(SERVICE_NAMES))]
        return cls(*urls)

    def of(self, service: str) -> str:
        url: str = getattr(self, service)
        return url.rstrip("/")


@dataclass(frozen=True)
class Received:
    """One notification as a department's inbox shows it."""

    department: str
    event_type: str
    subject: str | None
    created_at: datetime
    trace_id: str | None


@dataclass(frozen=True)
class ServiceMetrics:
    """A few figures from a service's /metrics."""

    service: str
    http_requests: float
    outbox_pending: float
    outbox_oldest_seconds: float
    outbox_published: float


@dataclass(frozen=True)
class TimelineLine:
    """One entry of the customer's timeline, as the customers service shows it."""

    time: datetime
    event_type: str
    summary: str


@dataclass
class DemoReport:
    customer_id: str
    trace_id: str
    started_at: datetime
    feedback_id: str = ""
    meeting_id: str = ""
    expectation_id: str = ""
    commitment_id: str = ""
    commitment_status: str = ""
    response_promises: int = 0
    verdict_url: str = ""
    feedback_status: str = ""
    received: dict[str, list[Received]] = field(default_factory=dict)
    metrics: list[ServiceMetrics] = field(default_factory=list)
    timeline: list[TimelineLine] = field(default_factory=list)
    # The customer's `health` as GET /v1/customers/{id} gives it: null until it is computed.
    health: dict[str, Any] | None = None

    def traced(self) -> list[Received]:
        return [r for items in self.received.values() for r in items if r.trace_id == self.trace_id]

    def total(self) -> int:
        return sum(len(items) for items in self.received.values())


class _Api:
    """JSON over HTTP with the demo's token and trace on every request; problems become `DemoError`."""

    def __init__(self, client: httpx.AsyncClient, targets: DemoTargets) -> None:
        self._client = client
        self._targets = targets

    async def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        url = self._targets.of(service) + path
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise DemoError(
                f"cannot reach {service} at {self._targets.of(service)} ({type(exc).__name__}: {exc}); "
                "is the stack running (`make run`)?"
            ) from exc
        if response.status_code == 404:
            raise _Absent(f"{method} {url} answered 404: {_problem_detail(response)}")
        if response.status_code >= 300:
            raise DemoError(f"{method} {url} answered {response.status_code}: {_problem_detail(response)}")
        return response.json() if response.content else None

    async def text(self, service: str, path: str) -> str:
        try:
            response = await self._client.get(self._targets.of(service) + path)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DemoError(f"cannot read {path} of {service} ({type(exc).__name__}: {exc})") from exc
        return response.text


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def new_trace_id() -> str:
    return secrets.token_hex(16)


async def play(
    targets: DemoTargets,
    token: str,
    *,
    departments: Sequence[str] = DEFAULT_DEPARTMENTS,
    overdue_in: float = 3.0,
    wait_seconds: float = 60.0,
    say: Say = lambda _: None,
) -> DemoReport:
    """Play the story; return what each department received and the services' figures."""
    started_at = datetime.now(UTC)
    report = DemoReport(
        customer_id=f"demo-{started_at:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}",
        trace_id=new_trace_id(),
        started_at=started_at,
    )

    async def with_trace(request: httpx.Request) -> None:
        # One trace for the whole story, a new span id per request.
        request.headers["traceparent"] = f"00-{report.trace_id}-{secrets.token_hex(8)}-01"

    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=10.0, event_hooks={"request": [with_trace]}
    ) as client:
        api = _Api(client, targets)
        say(f"customer {report.customer_id}, trace {report.trace_id}")
        await _complaint(api, report, say)
        await _acknowledged_on_time(api, report, say, wait_seconds=wait_seconds)
        await _meeting_and_expectation(api, report, say)
        await _late_commitment(api, report, say, overdue_in=overdue_in, wait_seconds=wait_seconds)
        # The customer has no token: only the trace goes with their answer.
        async with httpx.AsyncClient(timeout=10.0, event_hooks={"request": [with_trace]}) as customer:
            await _resolution_rejected(api, customer, report, say, wait_seconds=wait_seconds)
        say("waiting for the notifications to reach every department")
        report.received = await _inboxes(api, report, departments, wait_seconds=wait_seconds)
        say("waiting for the customer's timeline to hold the whole story")
        report.timeline = await _timeline(api, report, wait_seconds=wait_seconds)
        customer = await api.call("GET", "customers", f"/v1/customers/{report.customer_id}")
        report.health = customer.get("health")
        report.metrics = [await _service_metrics(api, service) for service in SERVICE_NAMES]
    return report


async def _complaint(api: _Api, report: DemoReport, say: Say) -> None:
    feedback = await api.call(
        "POST",
        "feedback",
        "/v1/feedback",
        json={
            "customer_id": report.customer_id,
            "channel": "phone",
            "kind": "complaint",
            "text": "The replacement router drops the connection every evening, "
            "and nobody called me back as promised. I am very disappointed.",
            "rating": {"scale": "nps", "value": 3},
            "product": "Fibre 500",
            "tags": ["connectivity", "callback"],
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    report.feedback_id = feedback["id"]
    sentiment = feedback["sentiment"]
    say(
        f"1. complaint received by phone (NPS 3): feedback {_short(feedback['id'])}, "
        f"sentiment {sentiment['label']} ({sentiment['score']:+.2f}), themes {', '.join(feedback['themes']) or '-'}"
    )


async def _response_promises(api: _Api, report: DemoReport) -> dict[str, list[dict[str, Any]]]:
    """The promises the response policies made for the complaint, by kind, oldest first."""
    page = await api.call(
        "GET",
        "commitments",
        "/v1/commitments",
        params={"source_type": "feedback", "source_id": report.feedback_id, "limit": 200},
    )
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for promise in sorted(page["items"], key=lambda p: p["created_at"]):
        by_kind.setdefault(promise["kind"], []).append(promise)
    return by_kind


async def _until(
    api: _Api, report: DemoReport, check: Callable[[dict[str, list[dict[str, Any]]]], bool], what: str, wait: float
) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + wait
    while not check(promises := await _response_promises(api, report)):
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {wait:g}s")
        await asyncio.sleep(0.1)
    return promises


def _acknowledge_settled(promises: dict[str, list[dict[str, Any]]]) -> bool:
    """The acknowledge promise exists, and its due-soon moment, if already reached, has fired."""
    acknowledge = promises.get("acknowledge", [])
    if not acknowledge:
        return False
    promise = acknowledge[0]
    reached = datetime.fromisoformat(promise["due_soon_at"]) <= datetime.now(UTC)
    return promise["status"] == "due_soon" or not reached


async def _acknowledged_on_time(api: _Api, report: DemoReport, say: Say, *, wait_seconds: float) -> None:
    promises = await _until(api, report, _acknowledge_settled, "the complaint's acknowledge promise", wait_seconds)
    report.response_promises = sum(len(made) for made in promises.values())
    made = ", ".join(
        f"{kind.replace('_', ' ')} within {_hours_to_due(p[0]):g} h" for kind, p in sorted(promises.items())
    )
    say(f"   the response policies made {report.response_promises} promises for support: {made}")
    await api.call(
        "PATCH",
        "feedback",
        f"/v1/feedback/{report.feedback_id}",
        json={"status": "acknowledged", "note": "Called Dana back; apologised."},
    )
    promises = await _until(
        api,
        report,
        lambda found: found["acknowledge"][0]["status"] not in ("open", "due_soon"),
        "meeting the acknowledge promise",
        wait_seconds,
    )
    acknowledge = promises["acknowledge"][0]
    kept = "kept" if acknowledge["kept"] else f"broken ({acknowledge['broken_because']})"
    status = acknowledge["status"].replace("_", " ")
    say(f"   support acknowledged the complaint: the acknowledge promise is {status}, {kept}")


def _hours_to_due(promise: dict[str, Any]) -> float:
    """How long the policy gave, in whole hours: the promise was made moments after the complaint arrived."""
    due_at, made_at = datetime.fromisoformat(promise["due_at"]), datetime.fromisoformat(promise["created_at"])
    return round((due_at - made_at).total_seconds() / 3600)


async def _resolution_rejected(
    api: _Api, customer: httpx.AsyncClient, report: DemoReport, say: Say, *, wait_seconds: float
) -> None:
    path = f"/v1/feedback/{report.feedback_id}"
    await api.call("PATCH", "feedback", path, json={"status": "in_progress"})
    resolved = await api.call(
        "PATCH", "feedback", path, json={"status": "resolved", "note": "Router replaced; line card swapped."}
    )
    report.verdict_url = resolved["verdict_url"]
    say(f"7. support resolved the complaint; the customer gets the link {report.verdict_url[:60]}…")
    try:
        page = await customer.get(report.verdict_url)
        answer = await customer.post(
            report.verdict_url,
            data={"accepted": "false", "fairness": "2", "comment": "It still drops every evening."},
        )
    except httpx.HTTPError as exc:
        raise DemoError(f"cannot open the verdict link {report.verdict_url} ({type(exc).__name__}: {exc})") from exc
    if page.status_code != 200 or answer.status_code != 200:
        raise DemoError(f"the verdict link answered {page.status_code}, then {answer.status_code}: {answer.text[:200]}")
    feedback = await api.call("GET", "feedback", path)
    report.feedback_status = feedback["status"]
    verdict = feedback["verdict"]
    say(
        f"8. the customer rejected the resolution through the link (fairness {verdict['fairness']}/5): "
        f"complaint {feedback['status']}"
    )
    promises = await _until(
        api, report, lambda found: len(found.get("resolve", [])) >= 2, "a new resolve promise", wait_seconds
    )
    report.response_promises = sum(len(made) for made in promises.values())
    due_at = datetime.fromisoformat(promises["resolve"][-1]["due_at"])
    say(f"9. a new promise to resolve it is open for support, due {due_at:%d %b %H:%M} UTC")


async def _meeting_and_expectation(api: _Api, report: DemoReport, say: Say) -> None:
    question = await api.call(
        "POST",
        "expectations",
        "/v1/questions",
        json={"text": "What would a reliable evening connection let you do?", "topic": "reliability"},
    )
    meeting = await api.call(
        "POST",
        "expectations",
        "/v1/meetings",
        json={
            "customer_id": report.customer_id,
            "held_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "attendees": [
                {"staff_id": "demo-ana", "name": "Ana Ruiz", "department": "support"},
                {"staff_id": "demo-ben", "name": "Ben Okafor", "department": "production"},
            ],
            "customer_participants": [{"name": "Dana Whitfield", "role": "runs a design studio from home"}],
            "question_ids": [question["id"]],
            "notes": "Ana asked, Ben listened and took notes.",
        },
    )
    report.meeting_id = meeting["id"]
    say(f"2. meeting recorded with two staff members (Ana asks, Ben listens): meeting {_short(meeting['id'])}")
    expectation = await api.call(
        "POST",
        "expectations",
        f"/v1/meetings/{meeting['id']}/expectations",
        json={
            "statement": "I run client calls every evening; the line must not drop during them.",
            "restatement": "Your connection stays up without drops on weekdays between 17:00 and 23:00.",
            "priority": "high",
            "key_point": True,
            "measure": "no drop longer than 30 seconds between 17:00 and 23:00 for 14 days",
            "capability": "can_meet",
            "question_id": question["id"],
        },
    )
    confirmed = await api.call(
        "POST",
        "expectations",
        f"/v1/expectations/{expectation['id']}/confirm",
        json={"confirmed_by": "Dana Whitfield", "note": "Yes, that is exactly it."},
    )
    report.expectation_id = confirmed["id"]
    say(f"3. expectation restated and confirmed by the customer: expectation {_short(confirmed['id'])}")


async def _late_commitment(api: _Api, report: DemoReport, say: Say, *, overdue_in: float, wait_seconds: float) -> None:
    due_at = datetime.now(UTC) + timedelta(seconds=overdue_in)
    commitment = await api.call(
        "POST",
        "commitments",
        "/v1/commitments",
        json={
            "customer_id": report.customer_id,
            "title": "Replace the line card in the customer's street cabinet",
            "owner_id": "demo-ben",
            "department": COMMITMENT_DEPARTMENT,
            "due_at": due_at.isoformat(),
            "source": {"type": "expectation", "id": report.expectation_id},
        },
    )
    report.commitment_id = commitment["id"]
    say(
        f"4. commitment made by {COMMITMENT_DEPARTMENT}, due in {overdue_in:g}s: "
        f"commitment {_short(commitment['id'])}; waiting for it to go overdue"
    )
    path = f"/v1/commitments/{commitment['id']}"
    deadline = time.monotonic() + overdue_in + wait_seconds
    while (await api.call("GET", "commitments", path))["status"] != "overdue":
        if time.monotonic() > deadline:
            raise DemoError(f"commitment {commitment['id']} did not go overdue within {overdue_in + wait_seconds:g}s")
        await asyncio.sleep(0.1)
    lateness = (datetime.now(UTC) - due_at).total_seconds()
    say(f"5. commitment overdue ({lateness:.1f}s after its due time)")
    completed = await api.call(
        "POST", "commitments", f"{path}/complete", json={"note": "Line card replaced; no drops since."}
    )
    report.commitment_status = completed["status"]
    say(f"6. commitment completed late: status {completed['status']}")


async def _inboxes(
    api: _Api, report: DemoReport, departments: Sequence[str], *, wait_seconds: float
) -> dict[str, list[Received]]:
    """Each department's notifications about the demo's customer, once the last event has arrived and all settled."""
    deadline = time.monotonic() + wait_seconds
    seen: dict[str, list[Received]] = {}
    settled_polls = 0
    while settled_polls < 3:
        current = {d: await _inbox(api, d, report.customer_id, since=report.started_at) for d in departments}
        last_arrived = _story_arrived(current, report)
        settled_polls = settled_polls + 1 if last_arrived and _counts(current) == _counts(seen) else 0
        seen = current
        if time.monotonic() > deadline:
            raise DemoError(f"the notifications did not settle within {wait_seconds:g}s; so far: {_counts(seen)}")
        await asyncio.sleep(0.25)
    return seen


async def _inbox(api: _Api, department: str, customer_id: str, *, since: datetime) -> list[Received]:
    """The department's notifications about the customer, oldest first: the inbox read newest first back to `since`."""
    path = f"/v1/departments/{department}/notifications"
    received: list[Received] = []
    # The inbox is the contract's (unread, limit, cursor); a margin covers a server clock a little behind ours.
    horizon = since - CLOCK_MARGIN
    params: dict[str, str | int] = {"limit": 200}
    while True:
        page = await api.call("GET", "notifications", path, params=params)
        for item in page["items"]:
            if item["customer_id"] == customer_id:
                received.append(
                    Received(
                        department=department,
                        event_type=item["event_type"],
                        subject=item["subject"],
                        created_at=datetime.fromisoformat(item["created_at"]),
                        trace_id=trace_id_of(item["event"].get("traceparent")),
                    )
                )
        items = page["items"]
        if page["next_cursor"] is None or not items or datetime.fromisoformat(items[-1]["created_at"]) < horizon:
            return sorted(received, key=lambda r: r.created_at)
        params["cursor"] = page["next_cursor"]


def _story_arrived(received: dict[str, list[Received]], report: DemoReport) -> bool:
    """The last event of each thread of the story is in: the late promise met, the verdict, every promise made."""

    def count(department: str, event_type: str) -> int:
        return sum(r.event_type == event_type for r in received.get(department, []))

    return (
        count(COMMITMENT_DEPARTMENT, "commitment.met") >= 1
        and count(VERDICT_DEPARTMENT, "feedback.verdict_given") >= 1
        and count(RESPONSE_DEPARTMENT, "commitment.created") >= report.response_promises
    )


def _counts(received: dict[str, list[Received]]) -> dict[str, int]:
    return {department: len(items) for department, items in received.items()}


async def _timeline(api: _Api, report: DemoReport, *, wait_seconds: float) -> list[TimelineLine]:
    """The customer's timeline, newest first, once the story's last events are on it and it has settled."""
    deadline = time.monotonic() + wait_seconds
    seen: list[TimelineLine] = []
    settled_polls = 0
    while settled_polls < 3:
        current = await _timeline_entries(api, report.customer_id)
        types = [line.event_type for line in current]
        arrived = (
            "feedback.verdict_given" in types
            and types.count("commitment.met") >= 2
            and types.count("commitment.created") >= report.response_promises + 1
        )
        settled_polls = settled_polls + 1 if arrived and len(current) == len(seen) else 0
        seen = current
        if time.monotonic() > deadline:
            raise DemoError(f"the customer's timeline did not settle within {wait_seconds:g}s; so far {len(seen)}")
        await asyncio.sleep(0.25)
    return seen


async def _timeline_entries(api: _Api, customer_id: str) -> list[TimelineLine]:
    path = f"/v1/customers/{customer_id}/timeline"
    lines: list[TimelineLine] = []
    params: dict[str, str | int] = {"limit": 200}
    while True:
        try:
            page = await api.call("GET", "customers", path, params=params)
        except _Absent:  # the customers service has not seen the customer yet
            return lines
        lines += [
            TimelineLine(datetime.fromisoformat(entry["time"]), entry["type"], entry["summary"])
            for entry in page["items"]
        ]
        if page["next_cursor"] is None:
            return lines
        params["cursor"] = page["next_cursor"]


async def _service_metrics(api: _Api, service: str) -> ServiceMetrics:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(await api.text(service, "/metrics")):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return ServiceMetrics(
        service=service,
        http_requests=values.get("cf_http_requests_total", 0.0),
        outbox_pending=values.get("cf_outbox_pending_events", 0.0),
        outbox_oldest_seconds=values.get("cf_outbox_oldest_pending_seconds", 0.0),
        outbox_published=values.get("cf_outbox_published_events_total", 0.0),
    )


def _short(identifier: str) -> str:
    return identifier[:8]


def render(report: DemoReport) -> str:
    """The per-department summary, the trace and the services' figures, for a terminal."""
    lines = ["", f"What each department received about {report.customer_id}:", ""]
    for department, items in report.received.items():
        lines.append(f"  {department} ({len(items)})")
        for item in items:
            offset = (item.created_at - report.started_at).total_seconds()
            trace = "trace ✓" if item.trace_id == report.trace_id else "no trace (fired by the scheduler)"
            subject = _short(item.subject) if item.subject else "-"
            lines.append(f"  {offset:+7.1f}s  {item.event_type:<24} {subject:<9} {trace}")
        if not items:
            lines.append("    (nothing)")
    traced = report.traced()
    lines += [
        "",
        f"Trace {report.trace_id}: carried by {len(traced)} of {report.total()} notifications "
        "(the services answer with it in the traceparent header and tag their log lines with it as trace_id).",
        "",
        "Metrics (GET /metrics of each service):",
    ]
    for figures in report.metrics:
        lines.append(
            f"  {figures.service:<14} http requests {figures.http_requests:>6.0f}   "
            f"outbox pending {figures.outbox_pending:>3.0f} (oldest {figures.outbox_oldest_seconds:.1f}s)   "
            f"published {figures.outbox_published:>5.0f}"
        )
    lines += ["", f"Timeline of {report.customer_id} (GET /v1/customers/{{id}}/timeline, newest first):"]
    for entry in report.timeline:
        offset = (entry.time - report.started_at).total_seconds()
        lines.append(f"  {offset:+7.1f}s  {entry.event_type:<24} {entry.summary}")
    lines += ["", *render_health(report.health)]
    return "\n".join(lines) + "\n"


def render_health(health: dict[str, Any] | None) -> list[str]:
    """The customer's health and the reasons for it, or that the customers service has not computed it."""
    if health is None:
        return ["health: not computed yet"]
    lines = [f"health: {health.get('band')} (score {health.get('score')})"]
    for reason in health.get("reasons") or ():
        if isinstance(reason, dict):
            lines.append(f"  {reason.get('factor')} ({reason.get('effect')}): {reason.get('detail')}")
        else:
            lines.append(f"  {reason}")
    return lines
