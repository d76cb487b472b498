"""Settings of the feedback service (env `CF_FEEDBACK_*` for its own)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.config import PlatformSettings, database_url_field
from shared.themes import DEFAULT_TAXONOMY_FILE, taxonomy_file_field

__all__ = ["DEFAULT_TAXONOMY_FILE", "Settings"]


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "feedback"

    database_url: str = database_url_field("feedback")
    # `CF_TAXONOMY_FILE` (or its older name `CF_FEEDBACK_TAXONOMY_FILE`): the file the expectations service reads too.
    feedback_taxonomy_file: Path = taxonomy_file_field()
    feedback_complaining_share: float = Field(
        default=0.04,
        gt=0,
        le=1,
        description="Assumed share of unhappy customers who complain (TARP: about 1 in 26).",
    )
    feedback_unhappy_tell: float = Field(default=16, ge=0, description="People an unhappy customer tells.")
    feedback_happy_tell: float = Field(default=3, ge=0, description="People a happy customer tells.")
    feedback_future_tolerance_seconds: float = Field(
        default=60,
        ge=0,
        description="How far ahead of our clock `occurred_at` may be (client clock skew).",
    )
    feedback_max_metric_periods: int = Field(default=1000, ge=1, description="Most periods one time series may hold.")
    feedback_public_url: str = Field(
        default="http://127.0.0.1:8001",
        description="The address customers reach this service at: the base of each `verdict_url`.",
    )
    feedback_verdict_ttl_seconds: float = Field(
        default=14 * 86400, gt=0, description="How long a verdict link stays valid after the resolution."
    )
    feedback_spike_window_seconds: int = Field(
        default=3600,
        ge=60,
        le=86400,
        description=(
            "The trailing window a theme's complaints are counted in for spikes; its baseline is the mean of the "
            "windows of this length in the 7 days before."
        ),
    )
    feedback_spike_min_count: int = Field(
        default=5, ge=1, description="Fewest complaints about a theme in the window for a spike."
    )
    feedback_spike_ratio: float = Field(
        default=3, ge=1, description="How many times its baseline a theme's complaints in the window must reach."
    )
    feedback_spike_check_interval_seconds: float = Field(
        default=10,
        gt=0,
        le=3600,
        description="How often the spike check runs: a spike is announced at most this long after it is reached.",
    )
