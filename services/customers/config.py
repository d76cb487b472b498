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
