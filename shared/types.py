"""Input types every service shares.

PostgreSQL `text` cannot hold NUL characters, and lone UTF-16 surrogates
cannot be encoded at all; rejecting them at validation time turns what would
be a database error into a 422 that names the field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints


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
