"""Every query of the notifications service. Nothing here commits."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import Text, delete, func, literal_column, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications import secrets_at_rest
from services.notifications.models import DeliveryAttempt, Notification, RoutingRule, Subscription, WebhookDelivery
from shared.purge import Purge
from shared.repository import Repository

logger = logging.getLogger(__name__)

routing_rules = Repository(RoutingRule)
notifications = Repository(Notification)
subscriptions = Repository(Subscription)
deliveries = Repository(WebhookDelivery)

# --- routing rules ---------------------------------------------------------------------------


# What routing reads, each as one digest of its rows' content in routing's order ('' for none): the enabled
# rules and the active subscriptions (what each wants). Read in the statement that reads the rows, so a digest
# always names exactly the rows read with it; equal digests later mean routing would read the same again.
_RULES_DIGEST = """(
    SELECT coalesce(md5(string_agg(r::text, ',' ORDER BY r.created_at, r.id)), '') FROM routing_rule r WHERE r.enabled
)"""
_SUBSCRIPTIONS_DIGEST = """(
    SELECT coalesce(md5(string_agg((s.id, s.department, s.event_types)::text, ',' ORDER BY s.id)), '')
    FROM subscription s WHERE s.status = 'active'
)"""
_ROUTING_VERSIONS = text(f"SELECT {_RULES_DIGEST} AS rules, {_SUBSCRIPTIONS_DIGEST} AS subscriptions")


@dataclass(frozen=True)
class RoutingVersions:
    """The digests of the enabled rules and of the active subscriptions: equal versions, nothing changed."""

    rules: str
    subscriptions: str


async def enabled_rules(session: AsyncSession) -> tuple[list[RoutingRule], str]:
    """The enabled rules in order, and their digest (`RoutingVersions.rules`)."""
    statement = select(RoutingRule, literal_column(_RULES_DIGEST, Text).label("digest")).where(RoutingRule.enabled)
    rows = (await session.execute(statement.order_by(RoutingRule.created_at, RoutingRule.id))).all()
    # No row, no digest: the same statement found no enabled rule, so its digest is that of none.
    return [row.RoutingRule for row in rows], rows[0].digest if rows else ""


async def routing_versions(session: AsyncSession) -> RoutingVersions:
    """The digests of what routing reads, as they are now."""
    row = (await session.execute(_ROUTING_VERSIONS)).one()
    return RoutingVersions(row.rules, row.subscriptions)


async def list_rules(session: AsyncSession, *, cursor: str | None, limit: int) -> Sequence[RoutingRule]:
    return await routing_rules.page(session, cursor=cursor, limit=limit)


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> RoutingRule | None:
    return await routing_rules.get(session, rule_id)


async def add_rule(session: AsyncSession, values: dict[str, Any]) -> RoutingRule:
    rule = RoutingRule(id=uuid.uuid4(), **values)
    session.add(rule)
    await session.flush()
    await session.refresh(rule)
    return rule


async def replace_rule(session: AsyncSession, rule_id: uuid.UUID, values: dict[str, Any]) -> RoutingRule | None:
    statement = (
        update(RoutingRule)
        .where(RoutingRule.id == rule_id)
        .values(**values, updated_at=func.clock_timestamp())
        .returning(RoutingRule)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> bool:
    deleted = await session.execute(delete(RoutingRule).where(RoutingRule.id == rule_id).returning(RoutingRule.id))
    return deleted.first() is not None


# --- notifications ---------------------------------------------------------------------------


@dataclass
class RoutedPairs:
    """The (event, department) pairs of a batch, column by column, and the webhook deliveries each owes."""

    event_ids: list[str] = field(default_factory=list)
    departments: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    subjects: list[str | None] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    customer_kinds: list[str | None] = field(default_factory=list)
    occurred_at: list[datetime | None] = field(default_factory=list)
    # The CloudEvent as republished to the department's topic (with the `department` extension).
    values: list[bytes] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    # One entry per delivery: the pair's position (from 1) and the subscription it is owed to.
    delivery_pairs: list[int] = field(default_factory=list)
    delivery_subscriptions: list[uuid.UUID] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)


# One statement for the whole batch: the pairs not seen before (unique on event_id, department) become
# notifications, each with its outbox row (keyed by the notification id, as outbox_event.event_id is
# unique and every copy keeps the CloudEvent's id) and its webhook deliveries. Rows go in in the
# batch's order, which the relay (outbox id) and the live stream (txid, seq) follow. The pairs were
# made from the rules and subscriptions of the versions the caller names: the statement writes them
# only while those are still the current ones (in its own snapshot), and returns the current ones.
# The deliveries' part is left out when a batch owes none: inserting into webhook_delivery, even no row,
# fires its trigger, whose NOTIFY wakes every webhook worker for a claim that finds nothing.
_ROUTE = """
WITH known AS MATERIALIZED (
    SELECT {rules_digest} AS rules, {subscriptions_digest} AS subscriptions
), pair AS (
    SELECT * FROM unnest(
        CAST(:event_ids AS uuid[]), CAST(:departments AS text[]), CAST(:event_types AS text[]),
        CAST(:subjects AS text[]), CAST(:customer_ids AS text[]), CAST(:customer_kinds AS text[]),
        CAST(:occurred_at AS timestamptz[]), CAST(:values AS bytea[]), CAST(:topics AS text[])
    ) WITH ORDINALITY
        AS p(event_id, department, event_type, subject, customer_id, customer_kind, occurred_at, value, topic, position)
    WHERE (SELECT rules = :rules_version AND subscriptions = :subscriptions_version FROM known)
), notified AS (
    INSERT INTO notification
        (id, event_id, department, event_type, subject, customer_id, customer_kind, occurred_at, value)
    SELECT gen_random_uuid(), event_id, department, event_type, subject, customer_id, customer_kind, occurred_at, value
    FROM pair ORDER BY position
    ON CONFLICT (event_id, department) DO NOTHING
    RETURNING id, event_id, department
), new_pair AS (
    SELECT notified.id, pair.* FROM notified JOIN pair USING (event_id, department)
), published AS (
    INSERT INTO outbox_event (event_id, topic, key, event_type, value)
    SELECT id, topic, customer_id, event_type, value FROM new_pair ORDER BY position
){queued}
SELECT rules, subscriptions FROM known
"""
_QUEUED = """, queued AS (
    INSERT INTO webhook_delivery (id, subscription_id, notification_id, event_id, event_type, next_attempt_at)
    SELECT gen_random_uuid(), owed.subscription_id, new_pair.id, new_pair.event_id, new_pair.event_type, now()
    FROM new_pair
    JOIN unnest(CAST(:delivery_pairs AS bigint[]), CAST(:delivery_subscriptions AS uuid[]))
        AS owed(position, subscription_id) USING (position)
    ORDER BY new_pair.position
)"""
_DIGESTS = {"rules_digest": _RULES_DIGEST, "subscriptions_digest": _SUBSCRIPTIONS_DIGEST}
_INSERT_ROUTED = text(_ROUTE.format(queued="", **_DIGESTS))
_INSERT_ROUTED_AND_DELIVERIES = text(_ROUTE.format(queued=_QUEUED, **_DIGESTS))


async def insert_routed(session: AsyncSession, pairs: RoutedPairs, *, made_by: RoutingVersions) -> RoutingVersions:
    """Write the pairs not seen before with their outbox rows and deliveries, if they were `made_by` the current
    rules and subscriptions; the current versions (nothing was written unless they are `made_by`)."""
    if not pairs:
        return await routing_versions(session)
    parameters = {**vars(pairs), "rules_version": made_by.rules, "subscriptions_version": made_by.subscriptions}
    statement = _INSERT_ROUTED_AND_DELIVERIES
    if not pairs.delivery_pairs:
        statement = _INSERT_ROUTED
        del parameters["delivery_pairs"], parameters["delivery_subscriptions"]
    row = (await session.execute(statement, parameters)).one()
    return RoutingVersions(row.rules, row.subscriptions)


async def list_notifications(
    session: AsyncSession,
    *,
    department: str,
    unread: bool | None,
    event_id: uuid.UUID | None,
    customer_kind: str | None,
    cursor: str | None,
    limit: int,
) -> Sequence[Notification]:
    statement = select(Notification).where(Notification.department == department)
    if unread is True:
        statement = statement.where(Notification.read_at.is_(None))
    elif unread is False:
        statement = statement.where(Notification.read_at.is_not(None))
    if event_id is not None:
        statement = statement.where(Notification.event_id == event_id)
    if customer_kind is not None:
        statement = statement.where(Notification.customer_kind == customer_kind)
    return await notifications.page(session, statement, cursor=cursor, limit=limit)


async def get_notification(
    session: AsyncSession, *, department: str, notification_id: uuid.UUID
) -> Notification | None:
    statement = select(Notification).where(Notification.id == notification_id, Notification.department == department)
    return (await session.scalars(statement)).one_or_none()


async def mark_read(session: AsyncSession, *, department: str, notification_id: uuid.UUID) -> Notification | None:
    """Mark read (the first read time stays); None if there is no such notification."""
    statement = (
        update(Notification)
        .where(Notification.id == notification_id, Notification.department == department)
        .values(read_at=func.coalesce(Notification.read_at, func.now()))
        .returning(Notification)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def stream_position_of(session: AsyncSession, *, department: str, event_id: uuid.UUID) -> tuple[int, int] | None:
    statement = select(Notification.txid, Notification.seq).where(
        Notification.event_id == event_id, Notification.department == department
    )
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row.txid, row.seq)


# --- the live stream's feed (a plain asyncpg connection that also LISTENs) -----------------------

# A row is settled, and the feed may hand it out, once no transaction that could still commit a row
# before it is running. The bound comes from the statement's snapshot S, once per statement: xmax(S), or
# the oldest transaction running in S if lower, skipping those known to be another database's. Transaction
# ids and snapshots are the whole cluster's, which the services' databases share: without the skip, a long
# batch in the commitments database held every notification back (bench/README.md, "Where the time goes").
# Safe: a transaction of another database never writes this table; one that ended between S and the read of
# pg_stat_activity is no longer listed there, so it still bounds (the next pass moves on); a role that may
# not see backend_xid sees none listed, and the bound is the oldest running transaction of all, as before.
# backend_xid is a 32-bit xid, the snapshot's are xid8 (epoch and xid): compared modulo 2^32. least()
# ignores the NULL min() of an empty xip (or of one that is all other databases'), leaving xmax(S).
# Other databases' running transactions are read once per statement (pg_stat_get_activity builds a row per
# backend on each scan: as a subquery per running transaction it cost ~13 ms a pass under load).
_SETTLED = """
elsewhere AS MATERIALIZED (
    SELECT coalesce(array_agg(backend_xid::text::bigint), '{}') AS xids FROM pg_stat_get_activity(NULL)
    WHERE backend_xid IS NOT NULL
        AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
),
settled AS MATERIALIZED (
    SELECT least(
        pg_snapshot_xmax(snapshot)::text::bigint,
        (
            SELECT min(running::text::bigint) FROM pg_snapshot_xip(snapshot) AS running
            WHERE running::text::bigint % 4294967296 <> ALL (elsewhere.xids)
        )
    ) AS below
    FROM pg_current_snapshot() AS snapshot, elsewhere
)
"""
_FEED_POSITION = f"""
WITH {_SETTLED}
SELECT txid, seq FROM notification WHERE txid < (SELECT below FROM settled) ORDER BY txid DESC, seq DESC LIMIT 1
"""
# Only settled rows, and one row even when there are none: whether a committed row waits beyond the bound
# (its NOTIFY has come and gone, so the feed must look again soon), found on the (txid, seq) index.
_FEED_AFTER = f"""
WITH {_SETTLED}, page AS (
    SELECT txid, seq, department, event_id, value FROM notification
    WHERE (txid, seq) > ($1, $2) AND txid < (SELECT below FROM settled)
    ORDER BY txid, seq LIMIT $3
)
SELECT page.*, waiting.unsettled FROM (
    SELECT EXISTS (
        SELECT FROM notification WHERE (txid, seq) > ($1, $2) AND txid >= (SELECT below FROM settled)
    ) AS unsettled
) AS waiting LEFT JOIN page ON true
ORDER BY page.txid, page.seq
"""
_DEPARTMENT_BETWEEN = text(
    """
    SELECT txid, seq, department, event_id, value FROM notification
    WHERE (txid, seq) > (:after_txid, :after_seq) AND (txid, seq) <= (:upto_txid, :upto_seq)
        AND department = :department
    ORDER BY txid, seq LIMIT :limit
    """
)


@dataclass(frozen=True)
class StreamItem:
    position: tuple[int, int]
    department: str
    event_id: uuid.UUID
    value: bytes


async def settled_position(conn: asyncpg.Connection) -> tuple[int, int]:
    """The position of the newest notification that every later one will follow."""
    row = await conn.fetchrow(_FEED_POSITION)
    return (0, 0) if row is None else (row["txid"], row["seq"])


async def settled_after(
    conn: asyncpg.Connection, position: tuple[int, int], *, limit: int
) -> tuple[list[StreamItem], bool]:
    """Settled notifications after `position` in order (at most `limit`), and whether unsettled ones wait."""
    rows = await conn.fetch(_FEED_AFTER, position[0], position[1], limit)
    return [_stream_item(row) for row in rows if row["txid"] is not None], bool(rows[0]["unsettled"])


async def department_between(
    session: AsyncSession, *, department: str, after: tuple[int, int], upto: tuple[int, int], limit: int
) -> list[StreamItem]:
    """A department's notifications after `after` up to `upto`, in stream order (for catching up)."""
    rows = await session.execute(
        _DEPARTMENT_BETWEEN,
        {
            "after_txid": after[0],
            "after_seq": after[1],
            "upto_txid": upto[0],
            "upto_seq": upto[1],
            "department": department,
            "limit": limit,
        },
    )
    return [StreamItem((row.txid, row.seq), row.department, row.event_id, bytes(row.value)) for row in rows]


def _stream_item(row: asyncpg.Record) -> StreamItem:
    return StreamItem((row["txid"], row["seq"]), row["department"], row["event_id"], bytes(row["value"]))


# --- subscriptions ---------------------------------------------------------------------------


async def add_subscription(session: AsyncSession, values: dict[str, Any]) -> Subscription:
    subscription = Subscription(id=uuid.uuid4(), **values)
    session.add(subscription)
    await session.flush()
    await session.refresh(subscription)
    return subscription


async def list_subscriptions(
    session: AsyncSession, *, department: str | None, status: str | None, cursor: str | None, limit: int
) -> Sequence[Subscription]:
    statement = select(Subscription)
    if department is not None:
        statement = statement.where(Subscription.department == department)
    if status is not None:
        statement = statement.where(Subscription.status == status)
    return await subscriptions.page(session, statement, cursor=cursor, limit=limit)


async def get_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> Subscription | None:
    return await subscriptions.get(session, subscription_id)


async def delete_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    await session.execute(delete(Subscription).where(Subscription.id == subscription_id))


async def active_subscriptions(session: AsyncSession) -> tuple[list[tuple[uuid.UUID, str, list[str]]], str]:
    """(id, department, event_types) of every active subscription, and their digest (`RoutingVersions`)."""
    statement = select(
        Subscription.id,
        Subscription.department,
        Subscription.event_types,
        literal_column(_SUBSCRIPTIONS_DIGEST, Text).label("digest"),
    )
    rows = (await session.execute(statement.where(Subscription.status == "active").order_by(Subscription.id))).all()
    return [(row.id, row.department, row.event_types) for row in rows], rows[0].digest if rows else ""


async def disable_subscription(
    session: AsyncSession, subscription_id: uuid.UUID, *, reason: str
) -> Subscription | None:
    """Disable an active subscription; None if it was not active (already disabled or gone)."""
    statement = (
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.status == "active")
        .values(status="disabled", disabled_reason=reason, disabled_at=func.now(), updated_at=func.clock_timestamp())
        .returning(Subscription)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def enable_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    """Make a disabled subscription active again (its waiting deliveries become due), and wake the workers."""
    await session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.status == "disabled")
        .values(status="active", disabled_reason=None, disabled_at=None, updated_at=func.clock_timestamp())
        .execution_options(synchronize_session=False)
    )
    await session.execute(text("SELECT pg_notify('webhook_delivery', '')"))


async def lock_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> Subscription | None:
    """The subscription, locked until the transaction ends (so that two recovers of it queue nothing twice)."""
    statement = select(Subscription).where(Subscription.id == subscription_id).with_for_update()
    return (await session.scalars(statement.execution_options(populate_existing=True))).one_or_none()


async def routed_event_types(session: AsyncSession, *, department: str, since: datetime) -> list[str]:
    """The event types routed to `department` from `since` on."""
    statement = (
        select(Notification.event_type)
        .where(Notification.department == department, Notification.created_at >= since)
        .distinct()
    )
    return list((await session.scalars(statement)).all())


# Every notification of the department since then, of the given types, that the subscription has neither
# received nor is waiting for: one it failed is made due again (same delivery, so the same webhook-id), one
# it never had (routed while it was disabled) gets a new delivery. So a subscription has at most one delivery
# per notification. The caller holds the subscription's lock.
_RECOVER = text(
    """
WITH candidate AS (
    SELECT n.id, n.event_id, n.event_type FROM notification n
    WHERE n.department = :department AND n.created_at >= :since AND n.event_type = ANY(CAST(:event_types AS text[]))
), owed AS (
    SELECT d.notification_id, bool_or(d.status IN ('pending', 'delivered')) AS settled_or_waiting
    FROM webhook_delivery d JOIN candidate c ON c.id = d.notification_id
    WHERE d.subscription_id = :subscription_id
    GROUP BY d.notification_id
), retried AS (
    UPDATE webhook_delivery d SET
        status = 'pending', schedule_step = 0, next_attempt_at = now(), leased_until = NULL, lease_token = NULL,
        updated_at = clock_timestamp()
    FROM owed
    WHERE d.subscription_id = :subscription_id AND d.notification_id = owed.notification_id
        AND d.status = 'failed' AND NOT owed.settled_or_waiting
    RETURNING d.id
), queued AS (
    INSERT INTO webhook_delivery (id, subscription_id, notification_id, event_id, event_type, next_attempt_at)
    SELECT gen_random_uuid(), :subscription_id, c.id, c.event_id, c.event_type, now()
    FROM candidate c LEFT JOIN owed ON owed.notification_id = c.id
    WHERE owed.notification_id IS NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM queued)
"""
)


async def recover_deliveries(
    session: AsyncSession, *, subscription_id: uuid.UUID, department: str, event_types: list[str], since: datetime
) -> int:
    """Queue what the subscription missed since `since` (see `_RECOVER`); how many; wakes the workers."""
    if not event_types:
        return 0
    queued = await session.scalar(
        _RECOVER,
        {"subscription_id": subscription_id, "department": department, "event_types": event_types, "since": since},
    )
    await session.execute(text("SELECT pg_notify('webhook_delivery', '')"))
    return int(queued or 0)


# --- webhook deliveries ----------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession, *, subscription_id: uuid.UUID, status: str | None, cursor: str | None, limit: int
) -> Sequence[WebhookDelivery]:
    statement = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    return await deliveries.page(session, statement, cursor=cursor, limit=limit)


async def attempts_of(session: AsyncSession, delivery_ids: Sequence[uuid.UUID]) -> Sequence[DeliveryAttempt]:
    statement = (
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.attempted_at, DeliveryAttempt.id)
    )
    return (await session.scalars(statement)).all()


async def get_delivery(
    session: AsyncSession, *, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    statement = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id
    )
    return (await session.scalars(statement)).one_or_none()


async def schedule_again(session: AsyncSession, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Make a delivery due now with its retry schedule started over, and wake the workers."""
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            status="pending",
            schedule_step=0,
            next_attempt_at=func.now(),
            leased_until=None,
            lease_token=None,
            updated_at=func.clock_timestamp(),
        )
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False)
    )
    delivery = (await session.scalars(statement)).one()
    await session.execute(text("SELECT pg_notify('webhook_delivery', '')"))
    return delivery


@dataclass(frozen=True)
class ClaimedDelivery:
    id: uuid.UUID
    subscription_id: uuid.UUID
    url: str
    secret: str  # in plain text, to sign with (stored encrypted)
    schedule_step: int
    body: bytes
    lease_token: uuid.UUID


_CLAIM_DUE = text(
    """
WITH lane AS (
    SELECT s.id, s.url, s.secret, coalesce(f.free, :lane_size) AS free
    FROM subscription s
    LEFT JOIN unnest(CAST(:busy_ids AS uuid[]), CAST(:busy_free AS int[])) AS f(id, free) ON f.id = s.id
    WHERE s.status = 'active' AND coalesce(f.free, :lane_size) > 0
), due AS (
    SELECT lane.url, lane.secret, picked.id
    FROM lane CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at FROM webhook_delivery d
        WHERE d.subscription_id = lane.id AND d.status = 'pending' AND d.next_attempt_at <= now()
            AND (d.leased_until IS NULL OR d.leased_until <= now())
        ORDER BY d.next_attempt_at LIMIT lane.free
        FOR UPDATE SKIP LOCKED
    ) AS picked
    ORDER BY picked.next_attempt_at  -- oldest first across subscriptions when :total is the limit
    LIMIT :total
)
UPDATE webhook_delivery d
SET leased_until = now() + make_interval(secs => :lease_seconds), lease_token = gen_random_uuid()
FROM due, notification n
WHERE d.id = due.id AND n.id = d.notification_id
RETURNING d.id, d.subscription_id, due.url, due.secret, d.schedule_step, n.value, d.lease_token
"""
)


async def claim_due_deliveries(
    session: AsyncSession, *, busy: dict[uuid.UUID, int], lane_size: int, total: int, lease_seconds: float
) -> list[ClaimedDelivery]:
    """Lease due deliveries of active subscriptions, at most as many per subscription as its lane has room.

    Each lease has a token of its own: only its holder may renew it or write the attempt's outcome.
    """
    rows = await session.execute(
        _CLAIM_DUE,
        {
            "busy_ids": list(busy),
            "busy_free": list(busy.values()),
            "lane_size": lane_size,
            "total": total,
            "lease_seconds": lease_seconds,
        },
    )
    claimed: list[ClaimedDelivery] = []
    for row in rows:
        try:
            secret = secrets_at_rest.reveal(row.secret)
        except secrets_at_rest.SecretUnreadable as exc:
            # Never sent unsigned or signed wrongly; its lease runs out and it is tried again, the others go on.
            logger.error("delivery %s of subscription %s not sent: %s", row.id, row.subscription_id, exc)
            continue
        claimed.append(
            ClaimedDelivery(
                row.id, row.subscription_id, row.url, secret, row.schedule_step, bytes(row.value), row.lease_token
            )
        )
    return claimed


_NEXT_DUE_AT = text(
    """
SELECT min(first.next_attempt_at) FROM subscription s CROSS JOIN LATERAL (
    SELECT d.next_attempt_at FROM webhook_delivery d
    WHERE d.subscription_id = s.id AND d.status = 'pending'
        AND (d.leased_until IS NULL OR d.leased_until <= now())
    ORDER BY d.next_attempt_at LIMIT 1
) AS first
WHERE s.status = 'active'
"""
)


async def next_due_at(session: AsyncSession) -> datetime | None:
    """When the next delivery not in flight falls due (each active subscription's first, by its index)."""
    value: datetime | None = await session.scalar(_NEXT_DUE_AT)
    return value


async def count_pending_deliveries(session: AsyncSession) -> int:
    """Deliveries waiting for an attempt: new ones and those between retries."""
    return int(
        await session.scalar(
            select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
        )
        or 0
    )


_RELEASE_LEASES = text(
    """
UPDATE webhook_delivery d SET leased_until = NULL, lease_token = NULL
FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS held(id, token)
WHERE d.id = held.id AND d.lease_token = held.token AND d.status = 'pending'
"""
)


async def release_leases(session: AsyncSession, leases: dict[uuid.UUID, uuid.UUID]) -> None:
    """Make deliveries whose attempt was interrupted due again now (those whose lease is still the holder's)."""
    await session.execute(_RELEASE_LEASES, {"ids": list(leases), "tokens": list(leases.values())})


_RENEW_LEASE = text(
    """
UPDATE webhook_delivery SET leased_until = now() + make_interval(secs => :lease_seconds)
WHERE id = :id AND lease_token = :token AND status = 'pending'
RETURNING id
"""
)


async def renew_lease(session: AsyncSession, delivery_id: uuid.UUID, *, token: uuid.UUID, lease_seconds: float) -> bool:
    """Extend a lease from now, if it is still `token`'s; False when another claim has taken the delivery."""
    renewed = await session.execute(_RENEW_LEASE, {"id": delivery_id, "token": token, "lease_seconds": lease_seconds})
    return renewed.first() is not None


@dataclass(frozen=True)
class Outcome:
    """What one attempt found, and what becomes of the delivery."""

    delivery_id: uuid.UUID
    lease_token: uuid.UUID
    attempted_at: datetime
    status_code: int | None
    duration_ms: float
    error: str | None
    status: str
    schedule_step: int
    next_attempt_at: datetime | None


# One statement: each delivery moves on (delivered, retry later, or failed) and its attempt joins the log,
# only where the attempt's lease is still the delivery's (no other worker took it over, no manual retry
# restarted it, the subscription was not deleted) and the delivery is still pending: never over `delivered`.
_RECORD_OUTCOMES = text(
    """
WITH outcome AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:steps AS int[]), CAST(:next_at AS timestamptz[]),
        CAST(:status_codes AS int[]), CAST(:errors AS text[]), CAST(:attempted_at AS timestamptz[]),
        CAST(:durations AS float8[]), CAST(:tokens AS uuid[])
    ) AS o(id, status, schedule_step, next_attempt_at, status_code, error, attempted_at, duration_ms, token)
), settled AS (
    UPDATE webhook_delivery d SET
        status = o.status, schedule_step = o.schedule_step, next_attempt_at = o.next_attempt_at, leased_until = NULL,
        lease_token = NULL,
        attempt_count = d.attempt_count + 1, last_status_code = o.status_code, last_error = o.error,
        delivered_at = CASE WHEN o.status = 'delivered' THEN o.attempted_at ELSE d.delivered_at END,
        updated_at = clock_timestamp()
    FROM outcome o
    WHERE d.id = o.id AND d.lease_token = o.token AND d.status = 'pending'
    RETURNING d.id
)
INSERT INTO delivery_attempt (delivery_id, attempted_at, status_code, duration_ms, error)
SELECT o.id, o.attempted_at, o.status_code, o.duration_ms, o.error FROM outcome o JOIN settled USING (id)
RETURNING delivery_id
"""
)


async def record_outcomes(session: AsyncSession, outcomes: Sequence[Outcome]) -> list[uuid.UUID]:
    """Log each attempt whose lease still holds and move its delivery on; the ids of those written."""
    if not outcomes:
        return []
    written = await session.execute(
        _RECORD_OUTCOMES,
        {
            "ids": [o.delivery_id for o in outcomes],
            "statuses": [o.status for o in outcomes],
            "steps": [o.schedule_step for o in outcomes],
            "next_at": [o.next_attempt_at for o in outcomes],
            "status_codes": [o.status_code for o in outcomes],
            "errors": [o.error for o in outcomes],
            "attempted_at": [o.attempted_at for o in outcomes],
            "durations": [o.duration_ms for o in outcomes],
            "tokens": [o.lease_token for o in outcomes],
        },
    )
    return [row.delivery_id for row in written]


# --- purged once past their age (shared/purge.py) ----------------------------------------------


def purges(*, read_notification_days: int, webhook_delivery_days: int) -> list[Purge]:
    """The service's own purges, settled deliveries first so that their notifications can go in the same round."""
    return [
        # A delivery still pending is owed; a failed one can be retried (by hand, or when its subscription is
        # enabled again) until it is purged. Its attempts go with it (ON DELETE CASCADE).
        Purge(
            "webhook_delivery",
            aged_by="updated_at",
            after=timedelta(days=webhook_delivery_days),
            condition="status IN ('delivered', 'failed')",
        ),
        # Only read ones, aged from the reading; one a delivery still names waits for it (its foreign key).
        Purge(
            "notification",
            aged_by="read_at",
            after=timedelta(days=read_notification_days),
            condition="NOT EXISTS (SELECT FROM webhook_delivery d WHERE d.notification_id = notification.id)",
        ),
    ]
