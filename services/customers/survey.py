"""Survey cadence: when each customer is next due for a survey (contract §8).

Never surveyed, a customer is due `CF_CUSTOMERS_SURVEY_INTERVAL_SECONDS` after it
was first seen. Once it answered a survey (or one came due), it is due that long
after the later of its last survey response and its last survey due, and never
within `CF_CUSTOMERS_SURVEY_MIN_GAP_SECONDS` of either. The moment is not stored:
it follows from those facts and the settings, so a survey response (consumed into
`last_survey_at`) moves it with no other write. The scheduler that fires it is
shared/due_moments.py's, given the customers' queries (services/customers/scheduler.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.customers.config import Settings
    from services.customers.models import Customer

# Creating a customer wakes the survey schedulers on this channel when its first moment is near.
SURVEY_CHANNEL = "customer_survey_schedule"
# The longest a survey scheduler sleeps without looking (a moment it was not told of is at most this late).
SCHEDULER_MAX_SLEEP = timedelta(seconds=30)


@dataclass(frozen=True)
class SurveyCadence:
    interval: timedelta
    min_gap: timedelta

    @classmethod
    def of(cls, settings: Settings) -> SurveyCadence:
        return cls(
            interval=timedelta(seconds=settings.customers_survey_interval_seconds),
            min_gap=timedelta(seconds=settings.customers_survey_min_gap_seconds),
        )

    @property
    def after_a_survey(self) -> timedelta:
        """How long after its last survey response or survey due a customer is due again."""
        return max(self.interval, self.min_gap)

    def next_due_at(self, customer: Customer) -> datetime:
        """The customer's next survey moment (the same as `repository.SURVEY_MOMENT`, in Python)."""
        surveyed = [at for at in (customer.last_survey_at, customer.last_survey_due_at) if at is not None]
        if not surveyed:
            return customer.first_seen_at + self.interval
        return max(surveyed) + self.after_a_survey
