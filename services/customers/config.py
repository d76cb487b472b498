"""Settings of the customers service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.config import PlatformSettings, database_url_field


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "customers"

    database_url: str = database_url_field("customers")
    customers_batch_size: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Events the customers consumer reads and writes into timelines in one transaction at most.",
    )
    customers_survey_interval_seconds: float = Field(
        default=182 * 86400,
        gt=0,
        description=(
            "A customer is due for a survey this long after its last survey response, or after it was first seen "
            "(`customer.survey_due`); unanswered, again this long after the last one was due."
        ),
    )
    customers_survey_min_gap_seconds: float = Field(
        default=30 * 86400,
        ge=0,
        description="No survey is due within this long of the customer's last survey response or last survey due.",
    )
