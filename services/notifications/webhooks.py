"""Webhook delivery: signed per Standard Webhooks, retried on a schedule, one lane per subscription.

Deliveries live in PostgreSQL. The worker leases due ones (`FOR UPDATE SKIP
LOCKED`, so replicas share the work) until past the timeout, so a crashed
worker's deliveries fall due again. Each subscription has its own lane: at
most `webhook_concurrency_per_subscription` requests in flight and as many
more claimed and waiting, so the next request starts as one ends; the worker
sends at most `webhook_concurrency` in all. A slow or dead endpoint fills its
own lane and never holds up another subscription.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import random
import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import asyncpg
import orjson
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from standardwebhooks import Webhook

from services.notifications import repository
from services.notifications.config import Settings
from services.notifications.endpoints import Endpoint, EndpointError
from services.notifications.schemas import Subscription
from shared.backoff import Backoff
from shared.catalogue import SUBSCRIPTION_DISABLED
from shared.db import asyncpg_dsn, create_sessionmaker
from shared.events import CONTENT_TYPE
from shared.observability import Metrics
from shared.outbox import add_event

logger = logging.getLogger(__name__)

USER_AGENT = "customer-focus-notifications/1.0"
_LEASE_MARGIN_SECONDS = 30.0
_ADDRESS_TTL_SECONDS = 60.0
_KEEPALIVE_SECONDS = 30.0
# Under load, claims and outcome writes are gathered over these windows, so each statement covers many deliveries.
_CLAIM_INTERVAL_SECONDS = 0.01
_QUEUE_DEPTH_INTERVAL_SECONDS = 5.0
_OUTCOME_WINDOW_SECONDS = 0.02
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def subscription_view(row: object) -> Subscription:
    return Subscription.model_validate(row, from_attributes=True)


class AddressGuard:
    """Refuses URLs whose host resolves to a private, loopback or otherwise non-public address."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._verdicts: dict[str, tuple[float, str | None]] = {}

    async def refusal(self, url: str) -> str | None:
        """Why `url` may not be called, or None when it may."""
        if self.allow_private:
            return None
        host = urlsplit(url).hostname or ""
        cached = self._verdicts.get(host)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        verdict = await self._judge(host)
        self._verdicts[host] = (time.monotonic() + _ADDRESS_TTL_SECONDS, verdict)
        return verdict

    async def _judge(self, host: str) -> str | None:
        try:
            addresses = {ipaddress.ip_address(host)}
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError:
                return f"the host {host!r} does not resolve"
            addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
        for address in addresses:
            if not address.is_global:
                return f"{host} resolves to {address}, a private or loopback address"
        return None


@dataclass(frozen=True)
class Verdict:
    status: str
    schedule_step: int
    next_attempt_at: datetime | None
    disable_reason: str | None


def judge_attempt(
    *,
    status_code: int | None,
    retry_after: float | None,
    schedule_step: int,
    schedule: list[float],
    retry_after_max: float,
    now: datetime,
) -> Verdict:
    """What an attempt's answer means: delivered, retry later, or failed (and why the subscription stops)."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict("delivered", schedule_step, None, None)
    if status_code == 410:
        return Verdict("failed", schedule_step, None, "gone")
    if schedule_step >= len(schedule):
        return Verdict("failed", schedule_step, None, "retries_exhausted")
    # Up to 20 % either way, so endpoints that fail together are not retried in lockstep.
    delay = schedule[schedule_step] * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max))
    return Verdict("pending", schedule_step + 1, now + timedelta(seconds=delay), None)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class WebhookMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.attempts = Counter(
            "cf_webhook_attempts", "Webhook attempts by outcome.", ["outcome"], registry=metrics.registry
        )
        self.in_flight = Gauge("cf_webhook_in_flight", "Webhook requests in flight.", registry=metrics.registry)
        self.queue_depth = Gauge(
            "cf_webhook_pending_deliveries",
            "Deliveries waiting for their first attempt or a retry (the retry queue).",
            registry=metrics.registry,
        )


@dataclass
class _Attempted:
    outcome: repository.Outcome
    subscription_id: uuid.UUID
    disable_reason: str | None


def bookkeeping_engine(database_url: str) -> AsyncEngine:
    """The webhook worker's own connections, whose commits do not wait for the WAL flush.

    A claim or an outcome lost in a crash only means a delivery is sent again (same webhook-id).
    """
    return create_async_engine(
        database_url,
        pool_size=2,
        max_overflow=2,
        pool_recycle=1800,
        connect_args={"command_timeout": 30, "timeout": 5, "server_settings": {"synchronous_commit": "off"}},
    )


class WebhookDispatcher:
    """Claims due deliveries and sends them, each subscription in its own lane."""

    def __init__(
        self,
        *,
        settings: Settings,
        metrics: WebhookMetrics,
        guard: AddressGuard,
        intake_has_backlog: Callable[[], bool] = lambda: False,
    ) -> None:
        self._settings = settings
        self._intake_has_backlog = intake_has_backlog
        self._dsn = asyncpg_dsn(settings.database_url)
        self._engine = bookkeeping_engine(settings.database_url)
        self._sessionmaker = create_sessionmaker(self._engine)
        self._metrics = metrics
        self._guard = guard
        self._lane_size = settings.webhook_concurrency_per_subscription
        # Claimed and not yet settled, per lane and in all: twice what may be sent at once.
        self._lane_capacity = 2 * self._lane_size
        self._capacity = 2 * settings.webhook_concurrency
        # While the router catches up, routing keeps the process: webhooks, which are queued safely in
        # PostgreSQL and retried anyway, go on one lane's worth at a time (oldest first) and catch up after.
        self._capacity_during_backlog = self._lane_size
        self._in_lane: dict[uuid.UUID, int] = {}
        self._claimed = 0
        self._lanes: dict[uuid.UUID, asyncio.Semaphore] = {}
        self._sending = asyncio.Semaphore(settings.webhook_concurrency)
        self._in_flight = 0
        self._more_due = False
        self._wake = asyncio.Event()
        self._attempted: list[_Attempted] = []
        self._attempted_ready = asyncio.Event()
        self._writing: asyncio.Future[bool] | None = None
        self._signers: dict[str, Webhook] = {}
        self._leased: set[uuid.UUID] = set()
        self._endpoints: dict[uuid.UUID, Endpoint] = {}
        self.delivered = 0

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._listen())
                tasks.create_task(self._write_outcomes())
                tasks.create_task(self._report_queue_depth())
                await self._dispatch(tasks)
        finally:
            await self._hand_back()
            for endpoint in self._endpoints.values():
                endpoint.close()
            await self._engine.dispose()

    async def _hand_back(self) -> None:
        """On shutdown: record finished attempts, and make interrupted ones due again at once."""
        try:
            async with asyncio.timeout(5):
                if self._writing is not None:
                    # A batch of outcomes being written when the stop came: let it land (or come back).
                    await self._writing
                if self._attempted:
                    await self._write(self._attempted)
                    self._attempted = []
                if self._leased:
                    async with self._sessionmaker() as session, session.begin():
                        await repository.release_leases(session, list(self._leased))
        except Exception as exc:
            logger.warning("could not hand back webhook deliveries on shutdown (%s); their leases will expire", exc)

    async def _report_queue_depth(self) -> None:
        """Keep `cf_webhook_pending_deliveries` current (a partial index makes the count cheap)."""
        while True:
            try:
                async with self._sessionmaker() as session:
                    self._metrics.queue_depth.set(await repository.count_pending_deliveries(session))
            except Exception as exc:
                logger.info("webhook queue depth not read: %s", exc)
            await asyncio.sleep(_QUEUE_DEPTH_INTERVAL_SECONDS)

    async def _listen(self) -> None:
        """Wake on every new delivery (a trigger notifies on insert)."""
        backoff = Backoff(first=0.2)
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                try:
                    lost = asyncio.Event()
                    conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                    await conn.add_listener("webhook_delivery", lambda *_: self._wake.set())
                    backoff.reset()
                    self._wake.set()
                    await lost.wait()
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.info("webhook listener reconnecting: %s", exc)
            await asyncio.sleep(backoff.next())

    async def _dispatch(self, tasks: asyncio.TaskGroup) -> None:
        backoff = Backoff(first=0.2)
        next_sweep = time.monotonic() + _KEEPALIVE_SECONDS
        while True:
            if time.monotonic() > next_sweep:
                await self._close_unused_endpoints()
                next_sweep = time.monotonic() + _KEEPALIVE_SECONDS
            self._wake.clear()
            capacity = self._capacity_during_backlog if self._intake_has_backlog() else self._capacity
            room = capacity - self._claimed
            wait = self._settings.webhook_poll_interval_seconds
            claimed_at = time.monotonic()
            if room > 0:
                try:
                    claimed, next_due = await self._claim(room)
                    backoff.reset()
                except Exception as exc:
                    logger.warning("claiming webhook deliveries failed: %s", exc)
                    await asyncio.sleep(backoff.next())
                    continue
                for delivery in claimed:
                    self._leased.add(delivery.id)
                    self._enter_lane(delivery.subscription_id)
                    tasks.create_task(self._attempt(delivery))
                if next_due is not None:
                    wait = min(wait, max(0.0, (next_due - datetime.now(UTC)).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            await asyncio.sleep(max(0.002, claimed_at + _CLAIM_INTERVAL_SECONDS - time.monotonic()))

    async def _claim(self, room: int) -> tuple[list[repository.ClaimedDelivery], datetime | None]:
        busy = {sid: self._lane_capacity - n for sid, n in self._in_lane.items()}
        async with self._sessionmaker() as session, session.begin():
            claimed = await repository.claim_due_deliveries(
                session,
                busy=busy,
                lane_size=self._lane_capacity,
                total=room,
                lease_seconds=self._settings.webhook_timeout_seconds + _LEASE_MARGIN_SECONDS,
            )
            per_lane: dict[uuid.UUID, int] = {}
            for delivery in claimed:
                per_lane[delivery.subscription_id] = per_lane.get(delivery.subscription_id, 0) + 1
            # A lane (or the worker) that took all it had room for may have more waiting.
            self._more_due = len(claimed) >= room or any(
                n >= busy.get(sid, self._lane_capacity) for sid, n in per_lane.items()
            )
            next_due = None if self._more_due else await repository.next_due_at(session)
        return claimed, next_due

    def _enter_lane(self, subscription_id: uuid.UUID) -> None:
        self._in_lane[subscription_id] = self._in_lane.get(subscription_id, 0) + 1
        self._claimed += 1

    def _leave_lane(self, subscription_id: uuid.UUID) -> None:
        left = self._in_lane.get(subscription_id, 1) - 1
        if left <= 0:
            self._in_lane.pop(subscription_id, None)
            self._lanes.pop(subscription_id, None)
        else:
            self._in_lane[subscription_id] = left
        self._claimed -= 1
        if self._more_due:
            self._wake.set()

    async def _close_unused_endpoints(self) -> None:
        stale = [
            sid
            for sid, endpoint in self._endpoints.items()
            if sid not in self._in_lane and time.monotonic() - endpoint.last_used > _KEEPALIVE_SECONDS
        ]
        for sid in stale:
            self._endpoints.pop(sid).close()

    async def _attempt(self, delivery: repository.ClaimedDelivery) -> None:
        lane = self._lanes.get(delivery.subscription_id)
        if lane is None:
            lane = self._lanes[delivery.subscription_id] = asyncio.Semaphore(self._lane_size)
        status_code: int | None = None
        retry_after: float | None = None
        error: str | None = None
        try:
            # The lane first: waiting on a slow endpoint must not hold one of the worker's slots.
            async with lane, self._sending:
                self._in_flight += 1
                self._metrics.in_flight.set(self._in_flight)
                attempted_at = datetime.now(UTC)
                started = time.perf_counter()
                try:
                    refusal = await self._guard.refusal(delivery.url)
                    if refusal is not None:
                        error = f"refused: {refusal}"
                    else:
                        status_code, retry_after = await self._post(delivery)
                except TimeoutError:
                    error = f"timed out after {self._settings.webhook_timeout_seconds:g}s"
                except EndpointError as exc:
                    error = str(exc)[:1000]
                except Exception as exc:
                    # A fault of ours fails this attempt (retried on the schedule), not the whole worker.
                    logger.exception("webhook attempt %s failed unexpectedly", delivery.id)
                    error = f"{type(exc).__name__}: {exc}"[:1000]
                finally:
                    self._in_flight -= 1
                    self._metrics.in_flight.set(self._in_flight)
        finally:
            self._leave_lane(delivery.subscription_id)
        if error is None and status_code is not None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
        verdict = judge_attempt(
            status_code=status_code,
            retry_after=retry_after,
            schedule_step=delivery.schedule_step,
            schedule=self._settings.webhook_retry_schedule,
            retry_after_max=self._settings.webhook_retry_after_max_seconds,
            now=datetime.now(UTC),
        )
        self._metrics.attempts.labels(verdict.status).inc()
        self._leased.discard(delivery.id)
        self._attempted.append(
            _Attempted(
                repository.Outcome(
                    delivery_id=delivery.id,
                    attempted_at=attempted_at,
                    status_code=status_code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    error=error,
                    status=verdict.status,
                    schedule_step=verdict.schedule_step,
                    next_attempt_at=verdict.next_attempt_at,
                ),
                delivery.subscription_id,
                verdict.disable_reason,
            )
        )
        self._attempted_ready.set()

    async def _post(self, delivery: repository.ClaimedDelivery) -> tuple[int, float | None]:
        """POST the signed CloudEvent; the status and any Retry-After."""
        endpoint = self._endpoints.get(delivery.subscription_id)
        if endpoint is None:
            endpoint = self._endpoints[delivery.subscription_id] = Endpoint(
                delivery.url, keepalive_seconds=_KEEPALIVE_SECONDS
            )
        async with asyncio.timeout(self._settings.webhook_timeout_seconds):
            answer = await endpoint.post(self._headers(delivery), delivery.body)
        return answer.status, parse_retry_after(answer.headers.get("retry-after"), now=datetime.now(UTC))

    def _headers(self, delivery: repository.ClaimedDelivery) -> list[tuple[str, str]]:
        signer = self._signers.get(delivery.secret)
        if signer is None:
            signer = self._signers[delivery.secret] = Webhook(delivery.secret)
        timestamp = int(time.time())
        # The delivery id is the message id: the same on every retry, distinct per subscription.
        message_id = str(delivery.id)
        headers = [
            ("content-type", CONTENT_TYPE),
            ("user-agent", USER_AGENT),
            ("webhook-id", message_id),
            ("webhook-timestamp", str(timestamp)),
            # Signed by the Standard Webhooks library itself, over the exact bytes sent.
            (
                "webhook-signature",
                signer.sign(message_id, datetime.fromtimestamp(timestamp, UTC), delivery.body.decode()),
            ),
        ]
        # The trace that caused the event continues into the receiver (W3C Trace Context).
        traceparent = orjson.loads(delivery.body).get("traceparent")
        if isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent):
            headers.append(("traceparent", traceparent))
        return headers

    async def _write_outcomes(self) -> None:
        """Write finished attempts in batches: the attempt log, the deliveries' new state, disabled subscriptions."""
        backoff = Backoff(first=0.2)
        while True:
            await self._attempted_ready.wait()
            await asyncio.sleep(_OUTCOME_WINDOW_SECONDS)
            self._attempted_ready.clear()
            batch, self._attempted = self._attempted, []
            # Shielded: a stop arriving mid-write lets the write finish (`_hand_back` waits for it).
            # Cancelled, the batch would be lost, its deliveries left leased and not due again for the lease.
            self._writing = asyncio.ensure_future(self._write_or_keep(batch))
            written = await asyncio.shield(self._writing)
            self._writing = None
            if not written:
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self.delivered += sum(1 for a in batch if a.outcome.status == "delivered")
            if any(a.outcome.status == "pending" for a in batch):
                self._wake.set()

    async def _write_or_keep(self, batch: list[_Attempted]) -> bool:
        """Write a batch of outcomes; if that fails, put it back to be written again."""
        try:
            await self._write(batch)
        except Exception as exc:
            logger.warning("recording webhook outcomes failed (%s); retrying", exc)
            self._attempted = batch + self._attempted
            self._attempted_ready.set()
            return False
        return True

    async def _write(self, batch: list[_Attempted]) -> None:
        async with self._sessionmaker() as session, session.begin():
            await repository.record_outcomes(session, [a.outcome for a in batch])
            for subscription_id, reason in {(a.subscription_id, a.disable_reason) for a in batch if a.disable_reason}:
                await disable(session, subscription_id, reason=reason)


async def disable(session: AsyncSession, subscription_id: uuid.UUID, *, reason: str) -> None:
    """Disable a subscription and announce it on the operations topic (once, however many deliveries fail)."""
    row = await repository.disable_subscription(session, subscription_id, reason=reason)
    if row is None:
        return
    logger.warning("webhook subscription %s disabled: %s", subscription_id, reason)
    await add_event(
        session, SUBSCRIPTION_DISABLED, data=subscription_view(row), subject=str(row.id), customer_id=str(row.id)
    )
