"""Input types every service shares.

PostgreSQL `text` cannot hold NUL characters, and lone UTF-16 surrogates
cannot be encoded at all; rejecting them at validation time turns what would
be a database error into a 422 that names the field. Likewise a date-time
with a zone can name a moment outside years 1-9999 once it is in UTC
(`0001-01-01T00:00:00+23:59`), which Python cannot convert and PostgreSQL's
driver cannot send: `Instant` rejects it where it is read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, StringConstraints


def storable(value: str) -> str:
    """Reject text that PostgreSQL cannot store."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    return value


SafeStr = Annotated[str, AfterValidator(storable)]
CustomerId = Annotated[SafeStr, StringConstraints(min_length=1, max_length=128)]


# asyncpg sends the first and the last microsecond Python can hold as PostgreSQL's -infinity and
# infinity, and reads infinity back without a zone: neither is an instant a client can mean.
_FIRST, _LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
OUT_OF_RANGE = "must fall after 0001-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999Z once converted to UTC"


def in_utc(moment: datetime) -> datetime:
    """`moment` converted to UTC; a ValueError when it has no zone or is no instant within years 1-9999."""
    if moment.utcoffset() is None:
        raise ValueError("must have a time zone")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
    if utc in (_FIRST, _LAST):
        raise ValueError(OUT_OF_RANGE)
    return utc


# Every date-time a client sends (body, query): with a zone, within years 1-9999 in UTC, given back in UTC.
Instant = Annotated[AwareDatetime, AfterValidator(in_utc)]
