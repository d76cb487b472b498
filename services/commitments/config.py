"""Settings of the commitments service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.config import PlatformSettings, database_url_field


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "commitments"

    database_url: str = database_url_field("commitments")
    commitments_due_soon_lead_seconds: float = Field(
        default=86400, ge=0, description="How long before `due_at` a promise counts as due soon."
    )
    commitments_response_promises: bool = Field(
        default=True,
        description="Consume `feedback.events` to make and meet the response promises of the response policies.",
    )
    # Dense moments share a wake-up: at most this much lateness buys far fewer transactions.
    commitments_scheduler_min_interval_seconds: float = Field(default=0.05, ge=0, le=0.5)
    commitments_scheduler_batch_size: int = Field(default=500, ge=1, le=10_000)
    # A missed wake-up (a dropped LISTEN connection) costs at most this long.
    commitments_scheduler_max_sleep_seconds: float = Field(default=30.0, gt=0)
