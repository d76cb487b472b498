"""Verdict links: signed, single-use, expiring tokens that let a customer judge one resolution.

A token is base64url(resolution id ‖ expiry ‖ HMAC-SHA256 of both). The
resolution id is random and names no feedback, so a token gives nothing away
and cannot be guessed; the MAC is checked in constant time before anything is
read from the database, so a forged token costs one HMAC and tells nothing
(always the same 404). Only a genuine token can be told apart as expired
(410), superseded by a later resolution (410) or used (409).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.errors import NotFound

_KEY_LABEL = b"customer-focus feedback verdict link v1"
_EXPIRY = struct.Struct(">q")
_MAC_BYTES = 32
_TOKEN_BYTES = 16 + _EXPIRY.size + _MAC_BYTES
_TOKEN_TEXT_MAX = 128


@dataclass(frozen=True)
class VerdictLinks:
    """Makes and reads verdict links with a key derived from the platform secret."""

    key: bytes
    public_url: str

    @classmethod
    def from_secret(cls, secret: str, public_url: str) -> VerdictLinks:
        # A key of its own: a token is never a valid signature of anything else made with the secret.
        key = hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
        return cls(key=key, public_url=public_url.rstrip("/"))

    def token(self, resolution_id: uuid.UUID, expires_at: datetime) -> str:
        payload = resolution_id.bytes + _EXPIRY.pack(int(expires_at.timestamp()))
        mac = hmac.new(self.key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()

    def url(self, resolution_id: uuid.UUID, expires_at: datetime) -> str:
        return f"{self.public_url}/v1/verdicts/{self.token(resolution_id, expires_at)}"

    def read(self, token: str) -> tuple[uuid.UUID, datetime]:
        """The resolution and expiry a genuine token names; any other token is the same 404."""
        try:
            raw = base64.urlsafe_b64decode(token[:_TOKEN_TEXT_MAX] + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self.key, payload, hashlib.sha256).digest()
        if not (hmac.compare_digest(mac, expected) and len(raw) == _TOKEN_BYTES):
            raise unknown_link()
        (expiry,) = _EXPIRY.unpack(payload[16:])
        return uuid.UUID(bytes=payload[:16]), datetime.fromtimestamp(expiry, UTC)


def unknown_link() -> NotFound:
    return NotFound("This verdict link is not valid.", slug="verdict-link-unknown")
