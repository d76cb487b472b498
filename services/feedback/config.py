"""Settings of the feedback service."""

from __future__ import annotations

from typing import ClassVar

from shared.config import PlatformSettings, database_url_field


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "feedback"

    database_url: str = database_url_field("feedback")
