"""Settings of the customers service."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from shared.config import PlatformSettings, database_url_field


class Settings(PlatformSettings):
    service_name: ClassVar[str] = "customers"

    database_url: str = database_url_field("customers")
    customers_batch_size: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Events the customers consumer reads at once (split among its lanes, each lane one transaction).",
    )
    customers_consumer_lanes: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Transactions the customers consumer runs at once, each on its own partitions: while one waits "
        "for the database the next is prepared. 1 applies each read in one transaction.",
    )
    # Health (contract §8): 100 less the points each factor takes off; the band from the score.
    customers_health_green_at: int = Field(
        default=70, ge=1, le=100, description="Health score from which a customer is green (else amber or red)."
    )
    customers_health_amber_at: int = Field(
        default=40, ge=0, le=100, description="Health score from which a customer is amber; below it, red."
    )
    customers_health_nps_detractor_weight: int = Field(
        default=25, ge=0, le=100, description="Health points a latest NPS of 0-6 (a detractor) takes off."
    )
    customers_health_csat_low_weight: int = Field(
        default=20, ge=0, le=100, description="Health points a latest CSAT of 1-2 takes off."
    )
    customers_health_ces_high_weight: int = Field(
        default=15, ge=0, le=100, description="Health points a latest CES of 5-7 (hard to deal with us) takes off."
    )
    customers_health_open_complaint_weight: int = Field(
        default=15, ge=0, le=100, description="Health points each open complaint takes off."
    )
    customers_health_broken_promise_weight: int = Field(
        default=15, ge=0, le=100, description="Health points each promise broken within the window takes off."
    )
    customers_health_broken_promise_days: int = Field(
        default=90, ge=1, le=3650, description="Days a broken promise counts against a customer's health."
    )
    customers_health_unconfirmed_expectation_weight: int = Field(
        default=5, ge=0, le=100, description="Health points each expectation the customer has not confirmed takes off."
    )
    customers_health_capability_gap_weight: int = Field(
        default=10, ge=0, le=100, description="Health points each capability gap (partial or cannot meet) takes off."
    )
    customers_health_silent_after_days: int = Field(
        default=60,
        ge=1,
        le=3650,
        description="Days without contact (feedback or meeting) after which a customer is silent.",
    )
    customers_health_silence_weight: int = Field(
        default=20, ge=0, le=100, description="Health points a silent customer loses."
    )
    customers_health_sweep_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between the sweeps that re-judge the health of customers who fell silent.",
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

    @model_validator(mode="after")
    def _health_bands_in_order(self) -> Self:
        if self.customers_health_amber_at > self.customers_health_green_at:
            raise ValueError("CF_CUSTOMERS_HEALTH_AMBER_AT must not be above CF_CUSTOMERS_HEALTH_GREEN_AT")
        return self
