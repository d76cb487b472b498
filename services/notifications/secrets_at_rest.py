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

The repository is handed a session, not settings: every notifications
`Settings` remembers its key here when it is built (`remember_key`), so
`reveal` opens what any of them sealed (one key in a deployed process).
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


_keys: dict[bytes, Fernet] = {}
# What `reveal` opened, by stored value: the dispatcher signs many deliveries per subscription.
_opened: dict[str, str] = {}


def derive_key(material: str) -> bytes:
    """The Fernet key for `material` (a setting's value): HKDF-SHA256 with this module's info label."""
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(material.encode())
    return base64.urlsafe_b64encode(derived)


def key_material(settings: Settings) -> str:
    """`CF_WEBHOOK_SECRET_KEY` if set, else `CF_AUTH_SECRET`."""
    chosen = settings.webhook_secret_key or settings.auth_secret
    return chosen.get_secret_value()


def remember_key(material: str) -> Fernet:
    """This process may open secrets sealed with `material`'s key; its `Fernet`."""
    key = derive_key(material)
    fernet = _keys.get(key)
    if fernet is None:
        fernet = _keys[key] = Fernet(key)
    return fernet


def seal(secret: str, settings: Settings) -> str:
    """`secret` as it is stored: encrypted with the settings' key."""
    return remember_key(key_material(settings)).encrypt(secret.encode()).decode()


def reveal(stored: str) -> str:
    """The plain secret a stored value holds (a `whsec_…` value from before encryption passes through)."""
    if stored.startswith(PLAINTEXT_PREFIX):
        return stored
    opened = _opened.get(stored)
    if opened is not None:
        return opened
    token = stored.encode()
    for fernet in reversed(_keys.values()):
        try:
            opened = fernet.decrypt(token).decode()
        except InvalidToken:
            continue
        if len(_opened) >= _OPENED_CACHE_SIZE:
            _opened.clear()
        _opened[stored] = opened
        return opened
    raise SecretUnreadable(
        "a webhook secret cannot be decrypted with the key of CF_WEBHOOK_SECRET_KEY (or CF_AUTH_SECRET): "
        "was it changed? Set CF_WEBHOOK_SECRET_KEY to the value that was in use when the secret was stored."
    )


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


async def seal_plaintext_secrets(session: AsyncSession, settings: Settings) -> int:
    """Encrypt every secret still stored in plain text (written before encryption); how many."""
    rows = (await session.execute(_PLAINTEXT)).all()
    if rows:
        await session.execute(
            _SEAL,
            {
                "ids": [row.id for row in rows],
                "plain": [row.secret for row in rows],
                "sealed": [seal(row.secret, settings) for row in rows],
            },
        )
        logger.info("encrypted %d webhook secrets stored in plain text", len(rows))
    return len(rows)
