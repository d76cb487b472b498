"""What an attempt's answer means: delivered, retry later (when), or failed and why the subscription stops."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

_DELAY_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Verdict:
    status: str
    schedule_step: int
    next_attempt_at: datetime | None
    disable_reason: str | None


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def judge_attempt(
    *,
    status_code: int | None,
    retry_after: float | None,
    schedule_step: int,
    schedule: list[float],
    retry_after_max: float,
    now: datetime,
) -> Verdict:
    """Any 2xx is delivered (whatever else the answer says); a 410 or an exhausted schedule fails."""
    if is_success(status_code):
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
    """`Retry-After` as seconds from now, or None when it is not what RFC 9110 allows.

    delay-seconds is `1*DIGIT` (ASCII digits only: not `²`, `-1` or `1.5`); an HTTP-date is any of the
    three forms (IMF-fixdate, RFC 850, asctime) as `email.utils.parsedate_to_datetime` reads them.
    """
    if value is None:
        return None
    value = value.strip(" \t")
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    if not value or not value[0].isascii() or not value[0].isalpha():
        return None  # every HTTP-date starts with its day name
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
