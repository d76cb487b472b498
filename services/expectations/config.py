"""Settings of the expectations service."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.config import PlatformSettings, database_url_field
from shared.themes import taxonomy_file_field


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "expectations"

    database_url: str = database_url_field("expectations")
    # `CF_TAXONOMY_FILE`: the same file (and variable) the feedback service tags its feedback with.
    taxonomy_file: Path = taxonomy_file_field()
    expectations_gap_examples: int = Field(
        default=3, ge=1, le=20, description="Examples in the customers' own words per theme of the gap backlog."
    )
