"""The rules of the notifications API: routing rules, inboxes, subscriptions and their deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications import repository, secrets_at_rest
from services.notifications.config import Settings
from services.notifications.models import Notification as NotificationRow
from services.notifications.models import WebhookDelivery
from services.notifications.routing import compile_pattern
from services.notifications.schemas import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Notification,
    RecoverIn,
    Recovery,
    RoutingRule,
    RoutingRuleIn,
    Subscription,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionStatus,
)
from services.notifications.webhooks.guard import AddressGuard
from services.notifications.webhooks.signing import new_secret
from shared.auth import Principal
from shared.errors import Forbidden, NotFound, field_error
from shared.pagination import Page, page_of
from shared.schemas import CustomerKind

# --- departments -----------------------------------------------------------------------------


def require_known_department(settings: Settings, department: str, *, loc: Sequence[str | int]) -> None:
    if department not in settings.departments:
        raise field_error(
            loc, f"unknown department {department!r}; the departments are {', '.join(settings.departments)}"
        )


def require_department_access(settings: Settings, principal: Principal, department: str) -> None:
    """The department exists (422) and the token may act on it (403)."""
    require_known_department(settings, department, loc=["path", "department"])
    principal.require_department(department)


# --- routing rules ---------------------------------------------------------------------------


def _rule_values(settings: Settings, body: RoutingRuleIn) -> dict[str, Any]:
    for index, department in enumerate(body.departments):
        require_known_department(settings, department, loc=["body", "departments", index])
    values = body.model_dump(mode="json", by_alias=True)
    values["departments"] = list(dict.fromkeys(body.departments))
    return values


def require_unbound(principal: Principal) -> None:
    if principal.department is not None:
        raise Forbidden("Routing rules concern every department; a department-bound token cannot change them.")


async def list_rules(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[RoutingRule]:
    rows = await repository.list_rules(session, cursor=cursor, limit=limit)
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page[RoutingRule](items=[RoutingRule.model_validate(r) for r in items], next_cursor=next_cursor)


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> RoutingRule:
    row = await repository.get_rule(session, rule_id)
    if row is None:
        raise NotFound(f"There is no routing rule {rule_id}.")
    return RoutingRule.model_validate(row)


async def create_rule(
    session: AsyncSession, *, settings: Settings, principal: Principal, body: RoutingRuleIn
) -> RoutingRule:
    require_unbound(principal)
    return RoutingRule.model_validate(await repository.add_rule(session, _rule_values(settings, body)))


async def replace_rule(
    session: AsyncSession, *, settings: Settings, principal: Principal, rule_id: uuid.UUID, body: RoutingRuleIn
) -> RoutingRule:
    require_unbound(principal)
    row = await repository.replace_rule(session, rule_id, _rule_values(settings, body))
    if row is None:
        raise NotFound(f"There is no routing rule {rule_id}.")
    return RoutingRule.model_validate(row)


async def delete_rule(session: AsyncSession, *, principal: Principal, rule_id: uuid.UUID) -> None:
    require_unbound(principal)
    if not await repository.delete_rule(session, rule_id):
        raise NotFound(f"There is no routing rule {rule_id}.")


# --- inboxes ---------------------------------------------------------------------------------


async def inbox(
    session: AsyncSession,
    *,
    settings: Settings,
    principal: Principal,
    department: str,
    unread: bool | None,
    event_id: uuid.UUID | None,
    customer_kind: CustomerKind | None,
    cursor: str | None,
    limit: int,
) -> Page[Notification]:
    require_department_access(settings, principal, department)
    rows = await repository.list_notifications(
        session,
        department=department,
        unread=unread,
        event_id=event_id,
        customer_kind=customer_kind.value if customer_kind is not None else None,
        cursor=cursor,
        limit=limit,
    )
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page[Notification](items=[notification_view(r) for r in items], next_cursor=next_cursor)


async def get_notification(
    session: AsyncSession, *, settings: Settings, principal: Principal, department: str, notification_id: uuid.UUID
) -> Notification:
    require_department_access(settings, principal, department)
    row = await repository.get_notification(session, department=department, notification_id=notification_id)
    if row is None:
        raise NotFound(f"The {department} inbox has no notification {notification_id}.")
    return notification_view(row)


async def mark_read(
    session: AsyncSession, *, settings: Settings, principal: Principal, department: str, notification_id: uuid.UUID
) -> Notification:
    require_department_access(settings, principal, department)
    row = await repository.mark_read(session, department=department, notification_id=notification_id)
    if row is None:
        raise NotFound(f"The {department} inbox has no notification {notification_id}.")
    return notification_view(row)


def notification_view(row: NotificationRow) -> Notification:
    return Notification(
        id=row.id,
        department=row.department,
        event_id=row.event_id,
        event_type=row.event_type,
        subject=row.subject,
        customer_id=row.customer_id,
        customer_kind=CustomerKind(row.customer_kind) if row.customer_kind is not None else None,
        occurred_at=row.occurred_at,
        created_at=row.created_at,
        read_at=row.read_at,
        event=orjson.loads(row.value),
    )


async def stream_start(
    session: AsyncSession,
    *,
    settings: Settings,
    principal: Principal,
    department: str,
    last_event_id: str | None,
) -> tuple[int, int] | None:
    """Where a stream resumes: just after the notification `Last-Event-ID` names, or None for "from now"."""
    require_department_access(settings, principal, department)
    if last_event_id is None:
        return None
    try:
        event_id = uuid.UUID(last_event_id)
    except ValueError:
        raise field_error(["header", "Last-Event-ID"], "is not an event id this stream sent") from None
    position = await repository.stream_position_of(session, department=department, event_id=event_id)
    if position is None:
        raise field_error(["header", "Last-Event-ID"], f"the {department} stream never sent event {event_id}")
    return position


# --- subscriptions ---------------------------------------------------------------------------


def may_create_subscription(settings: Settings, principal: Principal, body: SubscriptionIn) -> None:
    """The department exists (422) and the token may act on it (403): checked before a replay too."""
    require_known_department(settings, body.department, loc=["body", "department"])
    principal.require_department(body.department)


async def create_subscription(
    session: AsyncSession, *, settings: Settings, guard: AddressGuard, principal: Principal, body: SubscriptionIn
) -> SubscriptionCreated:
    may_create_subscription(settings, principal, body)
    url = str(body.url)
    refusal = await guard.refusal(url)
    if refusal is not None:
        raise field_error(["body", "url"], f"{refusal}; set CF_WEBHOOK_ALLOW_PRIVATE=true to allow it")
    secret = new_secret()
    row = await repository.add_subscription(
        session,
        {
            "department": body.department,
            "url": url,
            "event_types": list(dict.fromkeys(body.event_types)),
            "secret": secrets_at_rest.seal(secret, settings),
            "created_by": principal.sub,
        },
    )
    return SubscriptionCreated(**Subscription.model_validate(row).model_dump(), secret=secret)


async def list_subscriptions(
    session: AsyncSession,
    *,
    settings: Settings,
    principal: Principal,
    department: str | None,
    status: SubscriptionStatus | None,
    cursor: str | None,
    limit: int,
) -> Page[Subscription]:
    if department is not None:
        require_known_department(settings, department, loc=["query", "department"])
        principal.require_department(department)
    # A department-bound token sees its own department's subscriptions only.
    department = department or principal.department
    rows = await repository.list_subscriptions(
        session, department=department, status=status, cursor=cursor, limit=limit
    )
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page[Subscription](items=[Subscription.model_validate(r) for r in items], next_cursor=next_cursor)


async def get_subscription(session: AsyncSession, *, principal: Principal, subscription_id: uuid.UUID) -> Subscription:
    return Subscription.model_validate(await _subscription(session, principal, subscription_id))


async def delete_subscription(session: AsyncSession, *, principal: Principal, subscription_id: uuid.UUID) -> None:
    await _subscription(session, principal, subscription_id)
    await repository.delete_subscription(session, subscription_id)


async def enable_subscription(
    session: AsyncSession, *, principal: Principal, subscription_id: uuid.UUID
) -> Subscription:
    """Turn a disabled subscription back on; its waiting deliveries go out (an active one stays as it is)."""
    row = await _subscription(session, principal, subscription_id)
    await repository.enable_subscription(session, subscription_id)
    await session.refresh(row)
    return Subscription.model_validate(row)


async def recover_subscription(
    session: AsyncSession, *, principal: Principal, subscription_id: uuid.UUID, body: RecoverIn
) -> Recovery:
    """Queue every notification of the subscription's department and types since `since` that it missed.

    Each notification at most once, however often this is called: the subscription is locked meanwhile, and
    one it already received or waits for is left alone. A disabled subscription's deliveries wait for
    `enable`.
    """
    await _subscription(session, principal, subscription_id)
    row = await repository.lock_subscription(session, subscription_id)
    if row is None:
        raise NotFound(f"There is no subscription {subscription_id}.")
    routed = await repository.routed_event_types(session, department=row.department, since=body.since)
    wanted = compile_pattern(row.event_types)
    queued = await repository.recover_deliveries(
        session,
        subscription_id=subscription_id,
        department=row.department,
        event_types=[t for t in routed if wanted(t)],
        since=body.since,
    )
    return Recovery(subscription_id=subscription_id, since=body.since, queued=queued)


async def _subscription(session: AsyncSession, principal: Principal, subscription_id: uuid.UUID) -> Any:
    row = await repository.get_subscription(session, subscription_id)
    if row is None:
        raise NotFound(f"There is no subscription {subscription_id}.")
    principal.require_department(row.department)
    return row


async def list_deliveries(
    session: AsyncSession,
    *,
    principal: Principal,
    subscription_id: uuid.UUID,
    status: DeliveryStatus | None,
    cursor: str | None,
    limit: int,
) -> Page[Delivery]:
    await _subscription(session, principal, subscription_id)
    rows = await repository.list_deliveries(
        session, subscription_id=subscription_id, status=status, cursor=cursor, limit=limit
    )
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page[Delivery](items=await _delivery_views(session, items), next_cursor=next_cursor)


async def retry_delivery(
    session: AsyncSession, *, principal: Principal, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> Delivery:
    """Send a delivery again now, its schedule started over; this re-enables a disabled subscription."""
    await _subscription(session, principal, subscription_id)
    if await repository.get_delivery(session, subscription_id=subscription_id, delivery_id=delivery_id) is None:
        raise NotFound(f"Subscription {subscription_id} has no delivery {delivery_id}.")
    await repository.enable_subscription(session, subscription_id)
    row = await repository.schedule_again(session, delivery_id)
    return (await _delivery_views(session, [row]))[0]


async def _delivery_views(session: AsyncSession, rows: Sequence[WebhookDelivery]) -> list[Delivery]:
    attempts: dict[uuid.UUID, list[DeliveryAttempt]] = {row.id: [] for row in rows}
    for attempt in await repository.attempts_of(session, list(attempts)):
        attempts[attempt.delivery_id].append(DeliveryAttempt.model_validate(attempt))
    return [
        Delivery(
            id=row.id,
            subscription_id=row.subscription_id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=row.status,
            attempt_count=row.attempt_count,
            next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            delivered_at=row.delivered_at,
            attempts=attempts[row.id],
        )
        for row in rows
    ]
