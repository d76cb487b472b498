"""`CF_RATE_LIMIT`: requests per token `sub`, in one place for every service (contract §1, v1.1).

`RateLimit` is a pure-ASGI middleware, registered by `build_service_app`
only when the setting is not empty (the default), so that a service without
a limit pays nothing for it. With one, every request that carries a valid
bearer token counts against its `sub` under each limit of the setting (the
`limits` notation, such as `100/second;2000/minute`); past one, the request
is a 429 problem with `Retry-After` (whole seconds) and never reaches the
route, its body unread.

- Windows are fixed windows kept in the process's memory (the `limits`
  library's `FixedWindowRateLimiter`, the usual default of its users): 5 to
  10 µs per limit and request on the development machine, about half of
  what its sliding-window counter costs. The price is that a `sub` may pass
  up to twice a limit across a window's end. With N replicas behind a load balancer a `sub` gets
  up to N times the limit.
- A request without a valid token is not counted: auth refuses it anyway,
  cheaply (401 before its body is read, `shared.boundary`). Nor is it
  limited by client address, on purpose: behind a proxy or an ingress every
  client has the proxy's address and one limit would throttle them all, and
  the probes (`/healthz`, `/readyz`, `/metrics`) must always answer. Limits
  by address belong to the proxy that sees the real one.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth import TokenVerifier, bearer_principal
from shared.errors import Problem, TooManyRequests, problem_response


def parse_rate_limit(spec: str) -> list[RateLimitItem]:
    """The limits of a `CF_RATE_LIMIT` value (empty: none); a ValueError says what is wrong."""
    if not spec.strip():
        return []
    try:
        items = list(parse_many(spec))
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{spec!r} is not a rate limit such as `100/second` or `100/second;2000/minute`")
    return items


class RateLimit:
    """Counts each request with a valid token against its `sub`; the excess is a 429 with `Retry-After`."""

    def __init__(self, app: ASGIApp, *, spec: str, verifier: TokenVerifier) -> None:
        self.app = app
        self.items = parse_rate_limit(spec)
        self.verifier = verifier
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        if authorization is None:
            await self.app(scope, receive, send)
            return
        try:
            sub = bearer_principal(authorization.decode("latin-1"), self.verifier).sub
        except Problem:
            await self.app(scope, receive, send)  # refused by auth, not counted
            return
        for item in self.items:
            if not await self.limiter.hit(item, sub):
                await problem_response(await self._refusal(item, sub))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refusal(self, item: RateLimitItem, sub: str) -> Problem:
        stats = await self.limiter.get_window_stats(item, sub)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        window = f"{item.multiples} {item.GRANULARITY.name}{'s' if item.multiples > 1 else ''}"
        return TooManyRequests(
            f"This token's subject made {item.amount} requests in {window}, the most allowed (CF_RATE_LIMIT); "
            f"retry in {retry_after} s.",
            slug="rate-limited",
            headers={"Retry-After": str(retry_after)},
        )
