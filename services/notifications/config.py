"""Settings of the notifications service."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from services.notifications import secrets_at_rest
from shared.config import PlatformSettings, check_auth_secret, database_url_field, split_csv

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "notifications"

    database_url: str = database_url_field("notifications")

    # Several consumers in one group overlap their waits on the database and the broker.
    router_consumers: int = Field(
        default=2, ge=1, le=32, description="Consumers of the event topics it routes in each process (one group)."
    )
    router_batch_size: int = Field(
        default=1000, ge=1, le=10_000, description="Events routed per database transaction, at most."
    )
    webhooks_in_process: bool = Field(
        default=True,
        description=(
            "Send webhooks from the service process; false leaves them to "
            "`python -m services.notifications.webhook_worker` processes."
        ),
    )
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE),
        description="Seconds before each webhook retry after the first attempt (comma-separated), each ±20 %.",
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook URLs that resolve to private or loopback addresses."
    )
    webhook_trust_env: bool = Field(
        default=False,
        description=(
            "Send webhooks through the proxy that `HTTPS_PROXY` / `HTTP_PROXY` (and `NO_PROXY`) name; "
            "by default those are ignored."
        ),
    )
    webhook_secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Encrypts webhook signing secrets at rest (a key derived by HKDF); unset, `CF_AUTH_SECRET` is used. "
            "At least 32 bytes. Before changing `CF_AUTH_SECRET`, set this to its old value."
        ),
    )
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, description="Time a webhook endpoint has to answer.")
    webhook_retry_after_max_seconds: float = Field(
        default=36000.0, gt=0, description="The longest `Retry-After` a webhook endpoint's answer is honoured for."
    )
    webhook_concurrency: int = Field(default=256, ge=1, description="Webhook requests in flight per process.")
    webhook_concurrency_per_subscription: int = Field(
        default=16, ge=1, description="Webhook requests in flight per subscription (its own lane)."
    )
    webhook_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="Longest wait between looks for due webhook deliveries."
    )
    webhook_worker_port: int = Field(
        default=8014,
        ge=0,
        le=65535,
        description=(
            "Port (all interfaces) on which each `python -m services.notifications.webhook_worker` process "
            "serves `/metrics` and `/healthz`; 0: none."
        ),
    )
    purge_read_notification_days: int = Field(
        default=90,
        ge=1,
        description=(
            "Days after it was read that a notification is purged (with no webhook delivery left); "
            "an unread one never is."
        ),
    )
    purge_webhook_delivery_days: int = Field(
        default=30,
        ge=1,
        description=(
            "Days after it settled (delivered, or failed for good) that a webhook delivery and its attempts are "
            "purged; a failed one can be retried until then."
        ),
    )
    sse_ping_seconds: float = Field(default=15.0, gt=0, description="Keep-alive comment interval on live streams.")
    sse_queue_size: int = Field(
        default=1000, ge=1, description="Events queued per live stream before it catches up from the database."
    )
    sse_max_streams_per_subject: int = Field(
        default=10, ge=1, description="Open live streams per token `sub` in each process; one more is a 429."
    )
    # The department dashboard's page calls these from the browser, so they are the URLs a browser reaches.
    dashboard_feedback_url: str = Field(
        default="http://127.0.0.1:8001",
        pattern=r"^https?://",
        description="The feedback API as a browser reaches it, for the page at /dashboard/{department}.",
    )
    dashboard_commitments_url: str = Field(
        default="http://127.0.0.1:8003",
        pattern=r"^https?://",
        description="The commitments API as a browser reaches it, for the page at /dashboard/{department}.",
    )
    dashboard_customers_url: str = Field(
        default="http://127.0.0.1:8005",
        pattern=r"^https?://",
        description="The customers service as a browser reaches it: the dashboard links each customer to its page.",
    )

    _split_schedule = field_validator("webhook_retry_schedule", mode="before")(split_csv)

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _delays_are_not_negative(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays are seconds and cannot be negative")
        return value

    @field_validator("webhook_secret_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("webhook_secret_key")
    @classmethod
    def _key_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_auth_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _remember_secret_key(self) -> Settings:
        # The repository, which signs with stored secrets, is handed a session only (secrets_at_rest says why).
        secrets_at_rest.remember_key(secrets_at_rest.key_material(self))
        return self
