"""What each problem `type` means: the page at `/problems/<slug>` on every service.

A problem's `type` is `/problems/<slug>` (RFC 9457 §3.1.1: a relative reference with
the full path, resolved against the URL the request was sent to), so it names a page
of the service that answered. Every slug the code raises is described here;
tests/shared/test_problem_types.py checks that none is missing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    description: str


PROBLEM_TYPES: dict[str, ProblemType] = {
    # --- the HTTP statuses every service can answer -----------------------------------------------------------
    "bad-request": ProblemType(400, "Bad request", "The request cannot be read as sent. The detail says what to fix."),
    "unauthorized": ProblemType(
        401,
        "Unauthorized",
        "The bearer token is missing, malformed, badly signed or expired. Send `Authorization: Bearer <token>` "
        "with a token signed by the platform's secret; the `WWW-Authenticate` header says which case it was.",
    ),
    "forbidden": ProblemType(403, "Forbidden", "The token may not do this, for example for another department."),
    "insufficient-scope": ProblemType(
        403, "Insufficient scope", "The token lacks the scope this operation needs; the detail names the scope."
    ),
    "not-found": ProblemType(404, "Not found", "No resource has this id, or no route has this path."),
    "method-not-allowed": ProblemType(405, "Method not allowed", "The path exists but not with this HTTP method."),
    "conflict": ProblemType(409, "Conflict", "The request conflicts with the resource's current state."),
    "gone": ProblemType(410, "Gone", "The resource existed and is no longer available."),
    "payload-too-large": ProblemType(
        413,
        "Content too large",
        "The request body is larger than `CF_MAX_BODY_BYTES` (1 MiB unless configured); it was refused before "
        "being parsed or authenticated.",
    ),
    "validation-error": ProblemType(
        422, "Unprocessable content", "The request is well-formed but invalid; `errors` names each field and why."
    ),
    "malformed-json": ProblemType(422, "Malformed JSON", "The request body is not valid JSON (or not UTF-8)."),
    "invalid-characters": ProblemType(
        422,
        "Invalid characters",
        "The request holds text that cannot be stored: NUL characters or invalid Unicode (lone surrogates).",
    ),
    "too-many-requests": ProblemType(429, "Too many requests", "Too many requests; retry after `Retry-After`."),
    "rate-limited": ProblemType(
        429,
        "Rate limited",
        "The token's subject passed `CF_RATE_LIMIT` in this process; retry after the seconds in `Retry-After`.",
    ),
    "http-error": ProblemType(400, "HTTP error", "The request failed at the HTTP layer; the status says how."),
    "internal-error": ProblemType(
        500, "Internal server error", "An unexpected error; it has been logged with the request's correlation id."
    ),
    "service-unavailable": ProblemType(
        503, "Service unavailable", "The database or the broker is unreachable; retry later."
    ),
    # --- shared behaviours -----------------------------------------------------------------------------------------
    "idempotency-key-in-flight": ProblemType(
        409,
        "Idempotency key in flight",
        "A request with this `Idempotency-Key` is still being processed; retry later to get its answer.",
    ),
    "idempotency-key-reused": ProblemType(
        422,
        "Idempotency key reused",
        "This `Idempotency-Key` was already used with a different request; use a new key for a new request.",
    ),
    "event-too-large": ProblemType(
        422,
        "Event too large",
        "The change would make an event larger than `CF_MAX_EVENT_BYTES`; nothing was changed.",
    ),
    # --- feedback -----------------------------------------------------------------------------------------------------
    "illegal-status-move": ProblemType(
        409,
        "Illegal status move",
        "Feedback cannot move from its current status to the one asked; the detail lists the allowed moves.",
    ),
    "feedback-not-resolved": ProblemType(
        409, "Feedback not resolved", "A verdict is given only on a feedback whose status is resolved."
    ),
    "verdict-link-unknown": ProblemType(404, "Unknown verdict link", "This verdict link is not valid."),
    "verdict-link-expired": ProblemType(410, "Verdict link expired", "This verdict link is past its expiry."),
    "verdict-link-superseded": ProblemType(
        410, "Verdict link superseded", "The link was for an earlier resolution; a later one has its own link."
    ),
    "verdict-already-given": ProblemType(
        409, "Verdict already given", "A verdict was already given through this link."
    ),
    # --- expectations -------------------------------------------------------------------------------------------------
    "two-person-rule": ProblemType(
        422,
        "Two-person rule",
        "A meeting is recorded with at least two distinct staff members among its attendees (`staff_id`s).",
    ),
    "expectation-revised": ProblemType(
        409,
        "Expectation revised",
        "The customer confirmed an earlier version of the expectation; confirm the current restatement.",
    ),
    # --- commitments --------------------------------------------------------------------------------------------------
    "unknown-department": ProblemType(
        422, "Unknown department", "The department is not one of `CF_DEPARTMENTS`; the detail lists them."
    ),
    "due-date-in-past": ProblemType(422, "Due date in the past", "A promise's due date must be in the future."),
    "commitment-closed": ProblemType(
        409, "Commitment closed", "The commitment is already met or cancelled; it cannot change any more."
    ),
    # --- notifications ------------------------------------------------------------------------------------------------
    "too-many-streams": ProblemType(
        429,
        "Too many live streams",
        "The token's subject holds `CF_SSE_MAX_STREAMS_PER_SUBJECT` live streams in this process; close one.",
    ),
}


def problem_page(slug: str, problem: ProblemType) -> str:
    """The HTML page describing one problem type."""
    title = html.escape(problem.title)
    description = html.escape(problem.description)
    return (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head>\n<body>\n<main>\n<h1>{title}</h1>\n"
        f"<p>HTTP status {problem.status}; problem type <code>/problems/{html.escape(slug)}</code> "
        "(RFC 9457, <code>application/problem+json</code>).</p>\n"
        f"<p>{description}</p>\n"
        "<p>The response's <code>detail</code> says what happened to that request; its "
        "<code>X-Correlation-ID</code> header names it in the service's logs.</p>\n"
        "</main>\n</body>\n</html>\n"
    )
