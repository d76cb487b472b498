"""A customer's health: a rule anyone can check by hand, with the reasons that make the score.

The score starts at 100 and each factor against the customer takes off its
weight (`CF_CUSTOMERS_HEALTH_*`): a latest NPS of 0-6, a latest CSAT of 1-2, a
latest CES of 5-7, each open complaint, each promise broken within the last
`broken_promise_days`, each unconfirmed expectation, each capability gap, and
silence (no feedback or meeting for `silent_after_days`, counted from first
sight when there was never one). The score never goes below 0. Green from
`green_at`, amber from `amber_at`, red below. Each factor that took points off
is one reason `{factor, effect, detail}`, `effect` being the points (negative).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.customers.config import Settings

BANDS = ("green", "amber", "red")


@dataclass(frozen=True)
class Factors:
    """What a customer's health is judged from."""

    nps: int | None
    csat: int | None
    ces: int | None
    open_complaints: int
    broken_promises: int  # within the window
    unconfirmed_expectations: int
    capability_gaps: int
    silent_since: datetime  # the last contact, or first sight


@dataclass(frozen=True)
class Reason:
    factor: str
    effect: int
    detail: str


@dataclass(frozen=True)
class Health:
    score: int
    band: str
    reasons: tuple[Reason, ...]


def broken_since(settings: Settings, now: datetime) -> datetime:
    """Promises broken from this moment on count against health."""
    return now - timedelta(days=settings.customers_health_broken_promise_days)


def silent_before(settings: Settings, now: datetime) -> datetime:
    """A customer whose last contact (or first sight) is before this moment is silent."""
    return now - timedelta(days=settings.customers_health_silent_after_days)


def judge(factors: Factors, settings: Settings, now: datetime) -> Health:
    """The score, its band and the reasons, from the factors as they are at `now`."""
    s = settings
    reasons: list[Reason] = []

    def against(factor: str, weight: int, detail: str) -> None:
        if weight > 0:
            reasons.append(Reason(factor, -weight, detail))

    if factors.nps is not None and factors.nps <= 6:
        against("nps", s.customers_health_nps_detractor_weight, f"Latest NPS {factors.nps} (a detractor, 0-6)")
    if factors.csat is not None and factors.csat <= 2:
        against("csat", s.customers_health_csat_low_weight, f"Latest CSAT {factors.csat} (1-2 of 5)")
    if factors.ces is not None and factors.ces >= 5:
        against("ces", s.customers_health_ces_high_weight, f"Latest CES {factors.ces} (hard to deal with us, 5-7)")
    window = f" in the last {s.customers_health_broken_promise_days} days"
    for factor, count, weight, noun, where in (
        ("open_complaints", factors.open_complaints, s.customers_health_open_complaint_weight, "open complaint", ""),
        (
            "broken_promises",
            factors.broken_promises,
            s.customers_health_broken_promise_weight,
            "broken promise",
            window,
        ),
        (
            "unconfirmed_expectations",
            factors.unconfirmed_expectations,
            s.customers_health_unconfirmed_expectation_weight,
            "unconfirmed expectation",
            "",
        ),
        ("capability_gaps", factors.capability_gaps, s.customers_health_capability_gap_weight, "capability gap", ""),
    ):
        if count > 0:
            against(factor, count * weight, f"{count} {noun}{'' if count == 1 else 's'}{where}")
    if factors.silent_since < silent_before(s, now):
        days = (now - factors.silent_since).days
        against("silence", s.customers_health_silence_weight, f"No contact for {days} days")
    score = max(0, 100 + sum(reason.effect for reason in reasons))
    largest_first = sorted(reasons, key=lambda reason: reason.effect)
    return Health(score=score, band=band_of(score, settings), reasons=tuple(largest_first))


def band_of(score: int, settings: Settings) -> str:
    if score >= settings.customers_health_green_at:
        return "green"
    if score >= settings.customers_health_amber_at:
        return "amber"
    return "red"


def days_before(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
