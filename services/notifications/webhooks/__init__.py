"""Webhooks: signed deliveries of each routed event to the subscriptions that want it.

- `dispatcher` claims due deliveries from PostgreSQL and sends them, one lane per subscription;
- `policy` says what an answer means (delivered, retry when, or failed and why);
- `guard` decides whether an address may be called;
- `signing` makes the Standard Webhooks headers;
- `client` sends the HTTP request (aiohttp) to the addresses the guard approved;
- `worker` is the process that only sends webhooks (`python -m services.notifications.webhook_worker`).
"""

from services.notifications.webhooks.dispatcher import WebhookDispatcher, WebhookMetrics, disable
from services.notifications.webhooks.guard import AddressGuard
from services.notifications.webhooks.signing import new_secret

__all__ = ["AddressGuard", "WebhookDispatcher", "WebhookMetrics", "disable", "new_secret"]
