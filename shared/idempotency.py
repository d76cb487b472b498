"""`Idempotency-Key` for POSTs that create (contract §1, IETF draft).

The key row is written in the same transaction as the effect, so a crash
leaves neither. A transaction-scoped advisory lock on the key tells a
concurrent duplicate that the first is still in flight (409). Keys are
kept at least 24 hours and scoped to the token's `sub` and `department`
(contract §1, v1.1): the same key sent by a department-bound token and by
an unbound one of the same `sub` are two keys.

A replay is served only to a caller that may make the request now: the
route's scope is checked before `respond` is reached (its dependency), and
the route's `authorize` (the department rules) runs before a stored response
is looked up.

A stored response never holds a secret: a response model with a
`for_replay()` method is stored as what that returns (a webhook
subscription's `secret` becomes `null`, with a `secret_shown_once` note),
while the first response carries the secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.db import DbSession
from shared.errors import Conflict, Unprocessable
from shared.events import Serialized

KEY_HEADER = "Idempotency-Key"
_KEY_DESCRIPTION = "Replays the first response for the same key and body (kept 24 hours)."
_KEY_MAX_LENGTH = 255
IdempotencyKey = Annotated[
    str | None,
    Header(alias=KEY_HEADER, min_length=1, max_length=_KEY_MAX_LENGTH, description=_KEY_DESCRIPTION),
]
_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))")
# A separate statement after the lock, so its snapshot sees a first request
# that committed while we waited for the lock.
_FETCH = text("""
    SELECT fingerprint, status_code, response_body FROM idempotency_key
    WHERE sub = :sub AND department = :department AND key = :key AND created_at > now() - make_interval(hours => :hours)
""")
_STORE = text("""
    INSERT INTO idempotency_key (sub, department, key, route, fingerprint, status_code, response_body)
    VALUES (:sub, :department, :key, :route, :fingerprint, :status_code, :response_body)
    ON CONFLICT (sub, department, key) DO UPDATE SET route = excluded.route, fingerprint = excluded.fingerprint,
        status_code = excluded.status_code, response_body = excluded.response_body, created_at = now()
""")
# The department column of a key sent by a token bound to no department.
UNBOUND = ""


def fingerprint(route: str, body: BaseModel | dict[str, Any] | None) -> str:
    """A stable hash of what was asked: the route and the validated body."""
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return hashlib.sha256(route.encode() + b"\0" + orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def idempotent(
    *,
    session: AsyncSession | None,
    principal: Principal,
    key: str | None,
    route: str,
    body: BaseModel | dict[str, Any] | None,
    create: Callable[[], Awaitable[BaseModel | Serialized[Any]]],
    status_code: int = 201,
    ttl_hours: int = 24,
    authorize: Callable[[], None] | None = None,
) -> Response:
    """Run `create` once per (sub, department, key); replay its response for the same request.

    `authorize` raises the route's refusal (a 403 for another department) before any stored
    response is looked up; `create` is expected to make the same checks when it runs.
    `session` may be None only for a request without a key.
    """
    if key is None:
        # Written by pydantic's serializer: no validation, no encoder pass.
        return _json_response(status_code, _dump(await create()))
    if session is None:
        raise ValueError("a request with an Idempotency-Key needs its session")
    if authorize is not None:
        authorize()
    request_print = fingerprint(route, body)
    department = principal.department if principal.department is not None else UNBOUND
    if not await session.scalar(_LOCK, {"name": _lock_name(principal.sub, department, key)}):
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.",
            slug="idempotency-key-in-flight",
        )
    asked = {"sub": principal.sub, "department": department, "key": key}
    stored = (await session.execute(_FETCH, {**asked, "hours": ttl_hours})).one_or_none()
    if stored is not None:
        if stored.fingerprint != request_print:
            raise Unprocessable(
                "This Idempotency-Key was already used with a different request body.",
                slug="idempotency-key-reused",
                errors=[{"loc": ["header", "Idempotency-Key"], "msg": "already used with a different body"}],
            )
        response = _json_response(stored.status_code, bytes(stored.response_body))
        response.headers["Idempotent-Replayed"] = "true"
        return response
    created = await create()
    body_bytes = _dump(created)
    replay = _replay_form(created)
    stored_bytes = body_bytes if replay is created else _dump(replay)
    await session.execute(
        _STORE,
        {
            **asked,
            "route": route,
            "fingerprint": request_print,
            "status_code": status_code,
            "response_body": stored_bytes,
        },
    )
    return _json_response(status_code, body_bytes)


def _lock_name(sub: str, department: str, key: str) -> str:
    """One string per (sub, department, key), whatever characters each holds (lengths first)."""
    return f"{len(sub)}:{sub}{len(department)}:{department}{key}"


def _replay_form(created: BaseModel | Serialized[Any]) -> BaseModel | Serialized[Any]:
    """What is stored for replays: `model.for_replay()` where the model has secrets to leave out."""
    model = created.model if isinstance(created, Serialized) else created
    for_replay = getattr(type(model), "for_replay", None)
    if for_replay is None:
        return created
    replay: BaseModel = for_replay(model)
    return replay


def _dump(created: BaseModel | Serialized[Any]) -> bytes:
    """The response body: the JSON already written (`Serialized`, for an event too) or the model's."""
    if isinstance(created, Serialized):
        return created.json
    return created.__pydantic_serializer__.to_json(created)


def _json_response(status_code: int, content: bytes) -> Response:
    return Response(content=content, status_code=status_code, media_type="application/json")


@dataclass(frozen=True)
class IdempotentRequest:
    """A creating request's Idempotency-Key, bound to its session, route and key lifetime.

    The session may be None for a request without a key (`unkeyed`): nothing is stored then.
    """

    session: AsyncSession | None
    key: str | None
    route: str
    ttl_hours: int

    async def respond(
        self,
        principal: Principal,
        *,
        body: BaseModel | dict[str, Any] | None,
        create: Callable[[], Awaitable[BaseModel | Serialized[Any]]],
        status_code: int = 201,
        authorize: Callable[[], None] | None = None,
    ) -> Response:
        """Run `create` once for this key; replay its response for the same request.

        `authorize` (the route's department rules) runs before a stored response is looked up.
        """
        return await idempotent(
            session=self.session,
            principal=principal,
            key=self.key,
            route=self.route,
            body=body,
            create=create,
            status_code=status_code,
            ttl_hours=self.ttl_hours,
            authorize=authorize,
        )

    @classmethod
    def unkeyed(cls, request: Request) -> IdempotentRequest:
        """A request sent without an Idempotency-Key, which needs no session to be answered."""
        return cls(None, None, request.scope["path"], request.app.state.settings.idempotency_ttl_hours)


async def idempotent_request(request: Request, session: DbSession, key: IdempotencyKey = None) -> IdempotentRequest:
    # The path from the scope: `request.url` would build a whole URL on every request.
    return IdempotentRequest(session, key, request.scope["path"], request.app.state.settings.idempotency_ttl_hours)


# The request's session and Idempotency-Key header, ready to `respond(...)` once.
Idempotency = Annotated[IdempotentRequest, Depends(idempotent_request)]
