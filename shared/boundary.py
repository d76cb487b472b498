"""What a request with a body passes before the app reads a byte of it.

FastAPI reads and parses a route's body before it solves the route's
dependencies, the bearer token included: a caller without a token could make
a service hold and parse any body. `RequestBoundary` is a pure-ASGI
middleware, in front of every route, that:

1. answers 413 when `Content-Length` is above `CF_MAX_BODY_BYTES`, before
   anything else, and counts the bytes of a body without one (chunked) as
   the app reads them: past the limit the read fails and the client gets the
   413, whatever the app was doing with the body;
2. answers 401 when the route declares the bearer scheme and the token is
   missing, malformed, badly signed or expired, without reading the body.
   The scope (403) is still the route's own dependency.

A request without a body passes untouched: nothing of it waits to be parsed.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.security.base import SecurityBase
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import TokenVerifier, bearer_principal
from shared.errors import PayloadTooLarge, Problem, problem_response

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_ANSWERS_KEPT = 1024


class BodyTooLarge(HTTPException):
    """Raised by the bounded `receive` once a body passes the limit.

    An `HTTPException`, so that FastAPI's body reading lets it through instead
    of turning it into a 400; the middleware answers the 413 either way.
    """

    def __init__(self) -> None:
        super().__init__(413, "The request body is too large.")


class RequestBoundary:
    """The body limit, then the bearer token of a route that needs one, before the body is read."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, verifier: TokenVerifier) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.verifier = verifier
        # (route, needs a token) of every route a body can be sent to; known once the app has its routes.
        self._routes: Sequence[tuple[RouteContext, bool]] | None = None
        # The answer per (method, root path, path) already asked: matching every route costs more than the rest
        # of this middleware. Bounded: hostile paths refill it, they cannot grow it.
        self._answers: dict[tuple[str, str, str], bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_length: bytes | None = None
        chunked = False
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                authorization = value
        if not chunked and (content_length is None or content_length == b"0"):
            await self.app(scope, receive, send)
            return
        if content_length is not None and content_length.isdigit() and self._above_limit(content_length):
            await self._refuse(scope, receive, send, self._too_large())
            return
        if self._needs_token(scope):
            try:
                bearer_principal(authorization.decode("latin-1"), self.verifier)
            except Problem as unauthorized:
                await self._refuse(scope, receive, send, unauthorized)
                return
        await self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; once its body passes the limit, the client gets a 413 whatever the app answers."""
        limit = self.max_body_bytes
        received = 0
        exceeded = False
        response_started = False

        async def bounded_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # the app's answer to a body it could not read; the 413 is sent below
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not response_started:
            await self._refuse(scope, receive, send, self._too_large())

    def _above_limit(self, content_length: bytes) -> bool:
        # More than 18 digits is above any limit, and int() refuses thousands of digits.
        return len(content_length) > 18 or int(content_length) > self.max_body_bytes

    def _too_large(self) -> Problem:
        return PayloadTooLarge(f"The request body is larger than the limit of {self.max_body_bytes} bytes.")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, problem: Problem) -> None:
        await problem_response(problem)(scope, receive, send)

    def _needs_token(self, scope: Scope) -> bool:
        """Whether the route `scope` goes to declares the bearer scheme (unknown routes do not)."""
        asked = (scope["method"], scope.get("root_path", ""), scope["path"])
        answer = self._answers.get(asked)
        if answer is None:
            if len(self._answers) >= _ANSWERS_KEPT:
                self._answers.clear()
            answer = self._answers[asked] = self._route_needs_token(scope)
        return answer

    def _route_needs_token(self, scope: Scope) -> bool:
        if self._routes is None:
            self._routes = _body_routes(scope["app"].routes)
        for route, needs_token in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return needs_token
        return False


def _body_routes(routes: Sequence[BaseRoute]) -> list[tuple[RouteContext, bool]]:
    """Each route that takes a body method, with whether it needs a bearer token, in routing order.

    Through `iter_route_contexts`: FastAPI keeps an included router as one route, and the
    context of each of its routes carries the dependencies the router adds.
    """
    found: list[tuple[RouteContext, bool]] = []
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, APIRoute) and set(context.methods or ()).intersection(BODY_METHODS):
            found.append((context, _declares_security(context)))
    return found


def _declares_security(route: RouteContext) -> bool:
    """A security scheme among the route's dependencies."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, SecurityBase):
            return True
        pending.extend(dependant.dependencies)
    return False
