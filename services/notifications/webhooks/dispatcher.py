"""The webhook dispatcher: claims due deliveries from PostgreSQL and sends them, one lane per subscription.

Deliveries live in PostgreSQL. The dispatcher leases due ones (`FOR UPDATE
SKIP LOCKED`, so replicas share the work), each lease with a token of its
own. Each subscription has its own lane: at most
`webhook_concurrency_per_subscription` requests in flight and as many more
claimed and waiting, so the next request starts as one ends; the dispatcher
sends at most `webhook_concurrency` in all. A slow or dead endpoint fills its
own lane and never holds up another subscription.

A lease covers an attempt: when an attempt starts with too little of its
lease left to finish (it waited long in its lane), the lease is renewed
first, and only if it is still this dispatcher's; otherwise another worker
has taken the delivery over and the attempt is not made. An outcome is
written only while its lease token is the delivery's, and never to a
delivery already delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from services.notifications import repository
from services.notifications.config import Settings
from services.notifications.schemas import Subscription
from services.notifications.webhooks.client import DeliveryFailed, WebhookClient
from services.notifications.webhooks.guard import AddressGuard
from services.notifications.webhooks.policy import is_success, judge_attempt, parse_retry_after
from services.notifications.webhooks.signing import Signer
from shared.backoff import Backoff
from shared.catalogue import SUBSCRIPTION_DISABLED
from shared.db import asyncpg_dsn, create_sessionmaker
from shared.listen import Listening
from shared.observability import Metrics
from shared.outbox import add_event
from shared.tracing import parent_context, trace_statements, traceparent_of
from shared.unit_of_work import unit_of_work

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

# A lease lasts the attempt's timeout and this much more, for writing its outcome.
LEASE_MARGIN_SECONDS = 30.0
# An attempt that waited in its lane longer than this, or starts with less of its lease left than its timeout
# and the slack, confirms (renews) its lease first: another worker may have taken the delivery over meanwhile.
_CONFIRM_AFTER_SECONDS = 1.0
_RENEW_SLACK_SECONDS = 10.0
# Under load, claims and outcome writes are gathered over these windows, so each statement covers many deliveries.
_CLAIM_INTERVAL_SECONDS = 0.01
_QUEUE_DEPTH_INTERVAL_SECONDS = 5.0
_OUTCOME_WINDOW_SECONDS = 0.02


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
        self.leases_lost = Counter(
            "cf_webhook_leases_lost",
            "Deliveries another worker took over: attempts not made (stage=attempt) and outcomes not written "
            "(stage=outcome).",
            ["stage"],
            registry=metrics.registry,
        )


@dataclass
class _Attempted:
    outcome: repository.Outcome
    subscription_id: uuid.UUID
    disable_reason: str | None


@dataclass
class _Lease:
    token: uuid.UUID
    # By the dispatcher's monotonic clock, taken before the claim was sent: never later than the real end.
    claimed: float
    ends: float


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
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._tracer = tracer
        self._intake_has_backlog = intake_has_backlog
        self._engine = bookkeeping_engine(settings.database_url)
        trace_statements(self._engine, tracer)
        self._sessionmaker = create_sessionmaker(self._engine)
        self._metrics = metrics
        self._client = WebhookClient(
            guard=guard, timeout_seconds=settings.webhook_timeout_seconds, trust_env=settings.webhook_trust_env
        )
        self._signer = Signer()
        self._lease_seconds = settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
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
        # Wakes the dispatcher on every new delivery (a trigger notifies on insert).
        self._listening = Listening(
            dsn=asyncpg_dsn(settings.database_url),
            channel="webhook_delivery",
            name="webhook listener",
            wake=self._wake,
            first_delay=0.2,
        )
        self._attempted: list[_Attempted] = []
        self._attempted_ready = asyncio.Event()
        self._writing: asyncio.Future[bool] | None = None
        # Each delivery this dispatcher holds, by its lease token (handed back on the way out).
        self._leased: dict[uuid.UUID, uuid.UUID] = {}
        # Public counts, for the operator's metrics and for tests to wait on.
        self.delivered = 0
        self.leases_lost = 0
        self.stale_outcomes = 0

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._listening.run())
                tasks.create_task(self._write_outcomes())
                tasks.create_task(self._report_queue_depth())
                await self._dispatch(tasks)
        finally:
            await self._hand_back()
            await self._client.close()
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
                    async with unit_of_work(self._sessionmaker) as session:
                        await repository.release_leases(session, self._leased)
        except Exception as exc:
            logger.warning("could not hand back webhook deliveries on shutdown (%s); their leases will expire", exc)

    async def _report_queue_depth(self) -> None:
        """Keep `cf_webhook_pending_deliveries` current (a partial index makes the count cheap)."""
        while True:
            try:
                async with unit_of_work(self._sessionmaker) as session:
                    self._metrics.queue_depth.set(await repository.count_pending_deliveries(session))
            except Exception as exc:
                logger.info("webhook queue depth not read: %s", exc)
            await asyncio.sleep(_QUEUE_DEPTH_INTERVAL_SECONDS)

    async def _dispatch(self, tasks: asyncio.TaskGroup) -> None:
        backoff = Backoff(first=0.2)
        while True:
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
                lease = claimed_at + self._lease_seconds
                for delivery in claimed:
                    self._leased[delivery.id] = delivery.lease_token
                    self._enter_lane(delivery.subscription_id)
                    tasks.create_task(self._attempt(delivery, _Lease(delivery.lease_token, claimed_at, lease)))
                if next_due is not None:
                    wait = min(wait, max(0.0, (next_due - datetime.now(UTC)).total_seconds()))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the
            # wake-up fires (the listener sets it on every new delivery), and the dispatcher outlived its stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            await asyncio.sleep(max(0.002, claimed_at + _CLAIM_INTERVAL_SECONDS - time.monotonic()))

    async def _claim(self, room: int) -> tuple[list[repository.ClaimedDelivery], datetime | None]:
        busy = {sid: self._lane_capacity - n for sid, n in self._in_lane.items()}
        async with unit_of_work(self._sessionmaker) as session:
            claimed = await repository.claim_due_deliveries(
                session,
                busy=busy,
                lane_size=self._lane_capacity,
                total=room,
                lease_seconds=self._lease_seconds,
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

    def _delivery_span(self, delivery: repository.ClaimedDelivery, headers: dict[str, str]) -> Span:
        """The attempt's client span, child of the span that routed the event; the receiver gets its trace."""
        assert self._tracer is not None
        from opentelemetry.trace import SpanKind

        span = self._tracer.start_span(
            "webhook POST",
            context=parent_context(headers.get("traceparent")),
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "cf.webhook.delivery_id": str(delivery.id),
                "cf.webhook.subscription_id": str(delivery.subscription_id),
            },
        )
        traceparent = traceparent_of(span)
        if traceparent is not None:
            headers["traceparent"] = traceparent
        return span

    async def _attempt(self, delivery: repository.ClaimedDelivery, lease: _Lease) -> None:
        lane = self._lanes.get(delivery.subscription_id)
        if lane is None:
            lane = self._lanes[delivery.subscription_id] = asyncio.Semaphore(self._lane_size)
        status_code: int | None = None
        retry_after: str | None = None
        error: str | None = None
        try:
            # The lane first: waiting on a slow endpoint must not hold one of the worker's slots.
            async with lane, self._sending:
                if not await self._still_leased(delivery, lease):
                    self._metrics.leases_lost.labels("attempt").inc()
                    self.leases_lost += 1
                    return
                self._in_flight += 1
                self._metrics.in_flight.set(self._in_flight)
                attempted_at = datetime.now(UTC)
                started = time.perf_counter()
                span: Span | None = None
                try:
                    headers = self._signer.headers(
                        message_id=str(delivery.id), secret=delivery.secret, body=delivery.body
                    )
                    if self._tracer is not None:
                        span = self._delivery_span(delivery, headers)
                    answer = await self._client.post(delivery.url, headers, delivery.body)
                    status_code, retry_after = answer.status, answer.retry_after
                except TimeoutError:
                    error = f"timed out after {self._settings.webhook_timeout_seconds:g}s"
                except DeliveryFailed as exc:
                    error = str(exc)
                except Exception:
                    # A fault of ours fails this attempt (retried on the schedule), not the whole worker; the
                    # log says what it was, the delivery log only that it failed.
                    logger.exception("webhook attempt %s failed unexpectedly", delivery.id)
                    error = "connection failed"
                finally:
                    self._in_flight -= 1
                    self._metrics.in_flight.set(self._in_flight)
                    if span is not None:
                        _end_delivery_span(span, status_code, error)
        finally:
            self._leave_lane(delivery.subscription_id)
        if error is None and status_code is not None and not is_success(status_code):
            error = f"HTTP {status_code}"
        now = datetime.now(UTC)
        verdict = judge_attempt(
            status_code=status_code,
            # Read only when it can matter: a 2xx is delivered whatever else the answer holds.
            retry_after=None if is_success(status_code) else parse_retry_after(retry_after, now=now),
            schedule_step=delivery.schedule_step,
            schedule=self._settings.webhook_retry_schedule,
            retry_after_max=self._settings.webhook_retry_after_max_seconds,
            now=now,
        )
        self._metrics.attempts.labels(verdict.status).inc()
        self._attempted.append(
            _Attempted(
                repository.Outcome(
                    delivery_id=delivery.id,
                    lease_token=lease.token,
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

    async def _still_leased(self, delivery: repository.ClaimedDelivery, lease: _Lease) -> bool:
        """Whether this attempt may start: its lease outlasts it, or was renewed while still this dispatcher's."""
        if self._leased.get(delivery.id) != lease.token:
            return False  # claimed again since (by this dispatcher): that claim's attempt sends it
        now = time.monotonic()
        if (
            now - lease.claimed < _CONFIRM_AFTER_SECONDS
            and now + self._settings.webhook_timeout_seconds + _RENEW_SLACK_SECONDS < lease.ends
        ):
            return True  # the usual case: sent as soon as claimed, well within the lease
        requested = time.monotonic()
        try:
            async with unit_of_work(self._sessionmaker) as session:
                renewed = await repository.renew_lease(
                    session, delivery.id, token=lease.token, lease_seconds=self._lease_seconds
                )
        except Exception as exc:
            logger.warning("renewing the lease of webhook delivery %s failed (%s); not sent now", delivery.id, exc)
            renewed = False
        if renewed:
            lease.ends = requested + self._lease_seconds
        elif self._leased.get(delivery.id) == lease.token:
            del self._leased[delivery.id]
        return renewed

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
        async with unit_of_work(self._sessionmaker) as session:
            written = set(await repository.record_outcomes(session, [a.outcome for a in batch]))
            stopped = {(a.subscription_id, a.disable_reason) for a in batch if a.outcome.delivery_id in written}
            for subscription_id, reason in stopped:
                if reason is not None:
                    await disable(session, subscription_id, reason=reason)
        for attempted in batch:
            delivery_id = attempted.outcome.delivery_id
            if self._leased.get(delivery_id) == attempted.outcome.lease_token:
                del self._leased[delivery_id]
            if delivery_id not in written:
                # Another worker holds the delivery now (or it was delivered, retried or deleted meanwhile).
                self._metrics.leases_lost.labels("outcome").inc()
                self.stale_outcomes += 1
            elif attempted.outcome.status == "delivered":
                self.delivered += 1


async def disable(session: AsyncSession, subscription_id: uuid.UUID, *, reason: str) -> None:
    """Disable a subscription and announce it on the operations topic (once, however many deliveries fail)."""
    row = await repository.disable_subscription(session, subscription_id, reason=reason)
    if row is None:
        return
    logger.warning("webhook subscription %s disabled: %s", subscription_id, reason)
    await add_event(
        session,
        SUBSCRIPTION_DISABLED,
        data=Subscription.model_validate(row),
        subject=str(row.id),
        customer_id=str(row.id),
    )


def _end_delivery_span(span: Span, status_code: int | None, error: str | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    if status_code is not None:
        span.set_attribute("http.response.status_code", status_code)
    if error is not None or (status_code is not None and not is_success(status_code)):
        span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status_code}"))
    span.end()
