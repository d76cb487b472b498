"""RFC 9457 problem details for every failure.

Domain code raises `Problem` subclasses (never `HTTPException`); one set of
handlers renders every error, FastAPI's own included, as
`application/problem+json`. Nothing a client sends produces a 500 with a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
# A problem's `type` is `/problems/<slug>`: a reference with the full path (RFC 9457 §3.1.1), resolved against
# the request's URL to the page describing it on the service that answered (shared/problem_types.py).
PROBLEM_BASE = "/problems/"

logger = logging.getLogger(__name__)


class Problem(Exception):
    """An error a client can act on; `slug` becomes the problem `type`."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.errors = list(errors) if errors is not None else None
        self.headers = headers or {}
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extensions)
        return body


class BadRequest(Problem):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        error = kwargs.pop("error", "invalid_token")
        challenge = "Bearer" if error is None else f'Bearer error="{error}"'
        kwargs.setdefault("headers", {"WWW-Authenticate": challenge})
        super().__init__(detail, **kwargs)


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(Problem):
    status, slug, title = 410, "gone", "Gone"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "Content too large"


class Unprocessable(Problem):
    status, slug, title = 422, "validation-error", "Unprocessable content"


class TooManyRequests(Problem):
    status, slug, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(Problem):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


def field_error(loc: Sequence[str | int], msg: str, *, slug: str = "validation-error") -> Unprocessable:
    """A 422 naming one field, for rules checked after schema validation."""
    where = ".".join(str(part) for part in loc)
    return Unprocessable(f"{where}: {msg}", slug=slug, errors=[{"loc": list(loc), "msg": msg}])


def problem_response(problem: Problem) -> Response:
    return Response(
        content=orjson.dumps(problem.body()),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = [{"loc": list(err.get("loc", ())), "msg": str(err.get("msg", ""))} for err in exc.errors()]
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return Unprocessable("The request body is not valid JSON.", slug="malformed-json", errors=errors)
    summary = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors[:5]
    )
    return Unprocessable(summary or "The request is invalid.", errors=errors)


_DATABASE_DOWN = (
    "OperationalError",
    "InterfaceError",
    "ConnectionDoesNotExistError",
    "CannotConnectNowError",
    "ConnectionRefusedError",
    "TooManyConnectionsError",
    "InternalClientError",
    "ConnectionResetError",
    "TimeoutError",
)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means a dependency (database, broker) is unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _DATABASE_DOWN or isinstance(current, OSError):
            return True
        if getattr(current, "connection_invalidated", False):
            return True
        current = current.__cause__ or current.__context__
    return False


_UNSTORABLE_TEXT = ("CharacterNotInRepertoireError", "UntranslatableCharacterError", "UnicodeEncodeError")


def is_unstorable_text(exc: BaseException) -> bool:
    """True when the database refused text a client sent (a safety net behind `shared.types.SafeStr`)."""
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            return False
        if type(current).__name__ in _UNSTORABLE_TEXT:
            return True
        current = current.__cause__ or current.__context__
    return False


def install_problem_handlers(app: FastAPI) -> None:
    """Render every failure of `app` as RFC 9457 problem details."""

    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_validation_problem(exc))

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 400 for a body that is not UTF-8; like any malformed JSON it is a 422.
            return problem_response(
                Unprocessable(
                    "The request body is not valid JSON (it is not UTF-8).",
                    slug="malformed-json",
                    errors=[{"loc": ["body"], "msg": "is not UTF-8"}],
                )
            )
        problem = Problem(str(exc.detail), headers=dict(exc.headers or {}))
        problem.status = exc.status_code
        problem.slug = {
            404: "not-found",
            405: "method-not-allowed",
            401: "unauthorized",
            403: "forbidden",
            413: PayloadTooLarge.slug,
        }.get(exc.status_code, "http-error")
        problem.title = _reason(exc.status_code)
        return problem_response(problem)

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        if is_unstorable_text(exc):
            return problem_response(
                Unprocessable(
                    "The request holds text that cannot be stored (NUL characters or invalid Unicode).",
                    slug="invalid-characters",
                )
            )
        if is_unavailable(exc):
            logger.warning("dependency unavailable: %s", exc.__class__.__name__)
            return problem_response(
                ServiceUnavailable(
                    "A dependency (database or broker) is unreachable; retry shortly.", headers={"Retry-After": "1"}
                )
            )
        logger.exception("unhandled error")
        server_error = Problem(
            "An unexpected error occurred; it has been logged.", slug="internal-error", title="Internal server error"
        )
        server_error.status = 500
        return problem_response(server_error)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array", "items": {}}, "msg": {"type": "string"}},
            },
        },
    },
}
