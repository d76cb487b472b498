"""Standard Webhooks signatures and the headers every delivery carries."""

from __future__ import annotations

import base64
import re
import secrets
import time
from datetime import UTC, datetime

import orjson
from standardwebhooks import Webhook

from shared.events import CONTENT_TYPE

USER_AGENT = "customer-focus-notifications/1.0"
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Signer:
    """Signs deliveries with the `standardwebhooks` library, one `Webhook` per secret, kept."""

    def __init__(self) -> None:
        self._signers: dict[str, Webhook] = {}

    def headers(self, *, message_id: str, secret: str, body: bytes) -> dict[str, str]:
        """The request's headers: content type, the Standard Webhooks three, and the event's trace if well-formed."""
        signer = self._signers.get(secret)
        if signer is None:
            signer = self._signers[secret] = Webhook(secret)
        timestamp = int(time.time())
        headers = {
            "content-type": CONTENT_TYPE,
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            # Signed by the Standard Webhooks library itself, over the exact bytes sent.
            "webhook-signature": signer.sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode()),
        }
        # The trace that caused the event continues into the receiver (W3C Trace Context).
        traceparent = orjson.loads(body).get("traceparent")
        if isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent):
            headers["traceparent"] = traceparent
        return headers
