"""Settings of the commitments service."""

from __future__ import annotations

from typing import ClassVar

from shared.config import PlatformSettings, database_url_field


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "commitments"

    database_url: str = database_url_field("commitments")
