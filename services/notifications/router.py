"""HTTP endpoints of the notifications service; each parses its input and calls one service function."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.notifications import service
from services.notifications.config import Settings
from services.notifications.schemas import (
    Delivery,
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
from services.notifications.stream import HeldStream, NotificationFeed, StreamSlots, department_stream
from services.notifications.webhooks.guard import AddressGuard
from shared.auth import Principal, require_scope
from shared.db import DbSession
from shared.errors import PROBLEM_MEDIA_TYPE, ServiceUnavailable
from shared.idempotency import Idempotency
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from shared.schemas import CustomerKind
from shared.service import ServiceRuntime
from shared.settings_dependency import app_settings

router = APIRouter()

Reader = Annotated[Principal, Depends(require_scope("notifications:read"))]
Admin = Annotated[Principal, Depends(require_scope("notifications:admin"))]
DepartmentPath = Annotated[str, Path(max_length=64, description="The department, one of `CF_DEPARTMENTS`.")]


NotificationSettings = Annotated[Settings, Depends(app_settings)]


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


# --- routing rules ---------------------------------------------------------------------------


@router.get("/v1/routing-rules", tags=["routing rules"], summary="List routing rules")
async def list_routing_rules(
    session: DbSession, _: Reader, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[RoutingRule]:
    return await service.list_rules(session, cursor=cursor, limit=limit)


@router.post(
    "/v1/routing-rules",
    status_code=201,
    response_model=RoutingRule,
    tags=["routing rules"],
    summary="Add a routing rule",
)
async def create_routing_rule(
    session: DbSession, settings: NotificationSettings, principal: Admin, body: RoutingRuleIn, idempotency: Idempotency
) -> Response:
    return await idempotency.respond(
        principal,
        body=body,
        create=lambda: service.create_rule(session, settings=settings, principal=principal, body=body),
        authorize=lambda: service.require_unbound(principal),
    )


@router.get("/v1/routing-rules/{rule_id}", tags=["routing rules"], summary="One routing rule")
async def get_routing_rule(session: DbSession, _: Reader, rule_id: uuid.UUID) -> RoutingRule:
    return await service.get_rule(session, rule_id)


@router.put("/v1/routing-rules/{rule_id}", tags=["routing rules"], summary="Replace a routing rule")
async def replace_routing_rule(
    session: DbSession, settings: NotificationSettings, principal: Admin, rule_id: uuid.UUID, body: RoutingRuleIn
) -> RoutingRule:
    return await service.replace_rule(session, settings=settings, principal=principal, rule_id=rule_id, body=body)


@router.delete("/v1/routing-rules/{rule_id}", status_code=204, tags=["routing rules"], summary="Delete a routing rule")
async def delete_routing_rule(session: DbSession, principal: Admin, rule_id: uuid.UUID) -> Response:
    await service.delete_rule(session, principal=principal, rule_id=rule_id)
    return Response(status_code=204)


# --- inboxes and the live stream -------------------------------------------------------------


@router.get("/v1/departments/{department}/notifications", tags=["inbox"], summary="A department's inbox")
async def list_notifications(
    session: DbSession,
    settings: NotificationSettings,
    principal: Reader,
    department: DepartmentPath,
    unread: Annotated[bool | None, Query(description="true: unread only; false: read only.")] = None,
    event_id: Annotated[
        uuid.UUID | None,
        Query(description="Only the notification of this event (the id the stream and webhooks carry)."),
    ] = None,
    customer_kind: Annotated[
        CustomerKind | None, Query(description="Only events about internal, or only about external, customers.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Notification]:
    return await service.inbox(
        session,
        settings=settings,
        principal=principal,
        department=department,
        unread=unread,
        event_id=event_id,
        customer_kind=customer_kind,
        cursor=cursor,
        limit=limit,
    )


@router.get("/v1/departments/{department}/notifications/{notification_id}", tags=["inbox"], summary="One notification")
async def get_notification(
    session: DbSession,
    settings: NotificationSettings,
    principal: Reader,
    department: DepartmentPath,
    notification_id: uuid.UUID,
) -> Notification:
    return await service.get_notification(
        session,
        settings=settings,
        principal=principal,
        department=department,
        notification_id=notification_id,
    )


@router.post(
    "/v1/departments/{department}/notifications/{notification_id}/read",
    tags=["inbox"],
    summary="Mark a notification read",
)
async def mark_notification_read(
    session: DbSession,
    settings: NotificationSettings,
    principal: Reader,
    department: DepartmentPath,
    notification_id: uuid.UUID,
) -> Notification:
    return await service.mark_read(
        session,
        settings=settings,
        principal=principal,
        department=department,
        notification_id=notification_id,
    )


@router.get(
    "/v1/departments/{department}/stream",
    tags=["inbox"],
    summary="A department's notifications as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "One event per notification."},
        429: {
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "The token's `sub` has `CF_SSE_MAX_STREAMS_PER_SUBJECT` streams open already.",
        },
    },
)
async def stream_notifications(
    request: Request,
    session: DbSession,
    settings: NotificationSettings,
    principal: Reader,
    department: DepartmentPath,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=64, description="Resume after this event id.")
    ] = None,
) -> EventSourceResponse:
    after = await service.stream_start(
        session, settings=settings, principal=principal, department=department, last_event_id=last_event_id
    )
    runtime = _runtime(request)
    feed: NotificationFeed = request.app.state.feed
    try:
        await asyncio.wait_for(feed.ready.wait(), 5)
    except TimeoutError:
        raise ServiceUnavailable("The live stream is not connected to the database yet.") from None
    slots: StreamSlots = request.app.state.stream_slots
    release = slots.take(principal.sub)

    async def events() -> AsyncIterator[ServerSentEvent]:
        items = department_stream(feed=feed, sessionmaker=runtime.sessionmaker, department=department, after=after)
        async for item in items:
            yield ServerSentEvent(data=item.value.decode(), id=str(item.event_id))

    return HeldStream(events(), ping=settings.sse_ping_seconds, release=release)


# --- webhook subscriptions -------------------------------------------------------------------


@router.post(
    "/v1/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    tags=["webhooks"],
    summary="Subscribe a webhook endpoint",
)
async def create_subscription(
    request: Request,
    session: DbSession,
    settings: NotificationSettings,
    principal: Admin,
    body: SubscriptionIn,
    idempotency: Idempotency,
) -> Response:
    guard: AddressGuard = request.app.state.address_guard
    return await idempotency.respond(
        principal,
        body=body,
        create=lambda: service.create_subscription(
            session, settings=settings, guard=guard, principal=principal, body=body
        ),
        authorize=lambda: service.may_create_subscription(settings, principal, body),
    )


@router.get("/v1/subscriptions", tags=["webhooks"], summary="List webhook subscriptions")
async def list_subscriptions(
    session: DbSession,
    settings: NotificationSettings,
    principal: Reader,
    department: Annotated[str | None, Query(max_length=64)] = None,
    status: SubscriptionStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Subscription]:
    return await service.list_subscriptions(
        session,
        settings=settings,
        principal=principal,
        department=department,
        status=status,
        cursor=cursor,
        limit=limit,
    )


@router.get("/v1/subscriptions/{subscription_id}", tags=["webhooks"], summary="One webhook subscription")
async def get_subscription(session: DbSession, principal: Reader, subscription_id: uuid.UUID) -> Subscription:
    return await service.get_subscription(session, principal=principal, subscription_id=subscription_id)


@router.delete(
    "/v1/subscriptions/{subscription_id}", status_code=204, tags=["webhooks"], summary="Delete a webhook subscription"
)
async def delete_subscription(session: DbSession, principal: Admin, subscription_id: uuid.UUID) -> Response:
    await service.delete_subscription(session, principal=principal, subscription_id=subscription_id)
    return Response(status_code=204)


@router.post(
    "/v1/subscriptions/{subscription_id}/enable",
    tags=["webhooks"],
    summary="Re-enable a disabled webhook subscription",
    description="Its deliveries that were waiting go out; new events are delivered again. An active subscription "
    "is left as it is.",
)
async def enable_subscription(session: DbSession, principal: Admin, subscription_id: uuid.UUID) -> Subscription:
    return await service.enable_subscription(session, principal=principal, subscription_id=subscription_id)


@router.post(
    "/v1/subscriptions/{subscription_id}/recover",
    status_code=202,
    tags=["webhooks"],
    summary="Send again what a subscription missed since a moment",
    description="Queues a delivery of every notification of the subscription's department matching its "
    "`event_types`, routed at or after `since`, that it has not received and is not waiting for (a failed "
    "delivery is made due again with the same `webhook-id`). Calling it again queues nothing twice. A disabled "
    "subscription's deliveries wait until it is enabled.",
)
async def recover_subscription(
    session: DbSession, principal: Admin, subscription_id: uuid.UUID, body: RecoverIn
) -> Recovery:
    return await service.recover_subscription(session, principal=principal, subscription_id=subscription_id, body=body)


@router.get(
    "/v1/subscriptions/{subscription_id}/deliveries", tags=["webhooks"], summary="A subscription's delivery log"
)
async def list_deliveries(
    session: DbSession,
    principal: Reader,
    subscription_id: uuid.UUID,
    status: DeliveryStatus | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Delivery]:
    return await service.list_deliveries(
        session, principal=principal, subscription_id=subscription_id, status=status, cursor=cursor, limit=limit
    )


@router.post(
    "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    tags=["webhooks"],
    summary="Send a delivery again now",
)
async def retry_delivery(
    session: DbSession, principal: Admin, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> Delivery:
    return await service.retry_delivery(
        session, principal=principal, subscription_id=subscription_id, delivery_id=delivery_id
    )
