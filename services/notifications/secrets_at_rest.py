"""Webhook signing secrets at rest: encrypted with a key derived from a setting.

A subscription's secret (`whsec_…`) is in the 201 that creates it and then
only in the `subscription` table, encrypted (Fernet: AES-128-CBC and
HMAC-SHA256): `seal` where a subscription is written, `reveal` where a
delivery is signed (`repository.claim_due_deliveries`), nowhere else.

The key is HKDF-SHA256 over `CF_WEBHOOK_SECRET_KEY` when it is set, else over
`CF_AUTH_SECRET`, with an info label of its own: never the key that signs
tokens, and neither tells anything of the other.

- Derived from `CF_AUTH_SECRET` by default because every deployment already
  has that one (required, at least 32 bytes, never a published value; `make
  run` generates it): secrets are encrypted at rest with no new setting to
  forget or to leave at a default.
- `CF_WEBHOOK_SECRET_KEY` exists for rotating `CF_AUTH_SECRET` (a leaked
  signing key): set it to the old `CF_AUTH_SECRET` first, and the stored
  secrets stay readable whatever signs tokens next. It also lets an operator
  keep the two apart from the start.

Secrets written before this module existed are plain `whsec_…` values:
`reveal` passes them through and the service seals them when it starts
(`seal_plaintext_secrets`).

One `SecretBox` per process is built from the settings (`SecretBox.of`) and
handed to who seals (creating a subscription, the start-up pass) and who
reveals (the dispatcher's claim): no key lives in module state.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from services.notifications.config import Settings

logger = logging.getLogger(__name__)

PLAINTEXT_PREFIX = "whsec_"
_INFO = b"customer-focus/notifications/webhook-secret-at-rest/v1"
_OPENED_CACHE_SIZE = 10_000


class SecretUnreadable(Exception):
    """A stored secret none of this process's keys opens (the key setting changed)."""


def derive_key(material: str) -> bytes:
    """The Fernet key for `material` (a setting's value): HKDF-SHA256 with this module's info label."""
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(material.encode())
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    """Seals webhook secrets for storage and opens them for signing, with one key."""

    def __init__(self, material: str) -> None:
        self._fernet = Fernet(derive_key(material))
        # What `reveal` opened, by stored value: the dispatcher signs many deliveries per subscription.
        self._opened: dict[str, str] = {}

    @classmethod
    def of(cls, settings: Settings) -> SecretBox:
        """The box of `CF_WEBHOOK_SECRET_KEY` if set, else of `CF_AUTH_SECRET`."""
        chosen = settings.webhook_secret_key or settings.auth_secret
        return cls(chosen.get_secret_value())

    def seal(self, secret: str) -> str:
        """`secret` as it is stored: encrypted."""
        return self._fernet.encrypt(secret.encode()).decode()

    def reveal(self, stored: str) -> str:
        """The plain secret a stored value holds (a `whsec_…` value from before encryption passes through)."""
        if stored.startswith(PLAINTEXT_PREFIX):
            return stored
        opened = self._opened.get(stored)
        if opened is None:
            try:
                opened = self._fernet.decrypt(stored.encode()).decode()
            except InvalidToken:
                raise SecretUnreadable(
                    "a webhook secret cannot be decrypted with the key of CF_WEBHOOK_SECRET_KEY (or CF_AUTH_SECRET): "
                    "was it changed? Set CF_WEBHOOK_SECRET_KEY to the value in use when the secret was stored."
                ) from None
            if len(self._opened) >= _OPENED_CACHE_SIZE:
                self._opened.clear()
            self._opened[stored] = opened
        return opened


def is_sealed(stored: str) -> bool:
    return not stored.startswith(PLAINTEXT_PREFIX)


_PLAINTEXT = text(r"SELECT id, secret FROM subscription WHERE secret LIKE 'whsec\_%'")
_SEAL = text(
    """
UPDATE subscription s SET secret = sealed.secret
FROM unnest(CAST(:ids AS uuid[]), CAST(:plain AS text[]), CAST(:sealed AS text[])) AS sealed(id, plain, secret)
WHERE s.id = sealed.id AND s.secret = sealed.plain
"""
)


async def seal_plaintext_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Encrypt every secret still stored in plain text (written before encryption); how many."""
    rows = (await session.execute(_PLAINTEXT)).all()
    if rows:
        await session.execute(
            _SEAL,
            {
                "ids": [row.id for row in rows],
                "plain": [row.secret for row in rows],
                "sealed": [box.seal(row.secret) for row in rows],
            },
        )
        logger.info("encrypted %d webhook secrets stored in plain text", len(rows))
    return len(rows)
