"""The feedback service's REST representations (also the events' `data`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.schemas import CustomerKind
from shared.types import CustomerId, Instant, SafeStr

Tag = Annotated[SafeStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Product = Annotated[SafeStr, StringConstraints(min_length=1, max_length=200)]
ThemeKey = Annotated[SafeStr, StringConstraints(min_length=1, max_length=64)]

TEXT_MAX_LENGTH = 10_000


class Channel(StrEnum):
    WEB = "web"
    EMAIL = "email"
    PHONE = "phone"
    CHAT = "chat"
    SURVEY = "survey"
    FOCUS_GROUP = "focus_group"
    MEETING = "meeting"
    SOCIAL = "social"
    IN_PERSON = "in_person"
    OTHER = "other"


class FeedbackKind(StrEnum):
    COMPLAINT = "complaint"
    COMPLIMENT = "compliment"
    SUGGESTION = "suggestion"
    QUESTION = "question"
    SURVEY_RESPONSE = "survey_response"


class FeedbackStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


class RatingScale(StrEnum):
    NPS = "nps"
    CSAT = "csat"
    CES = "ces"


class SentimentLabel(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class SentimentSource(StrEnum):
    TEXT = "text"
    RATING = "rating"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NpsRating(_Frozen):
    """Net Promoter Score answer: how likely to recommend us, 0-10."""

    scale: Literal["nps"]
    value: int = Field(ge=0, le=10)


class CsatRating(_Frozen):
    """Customer satisfaction, 1 (very unsatisfied) to 5 (very satisfied)."""

    scale: Literal["csat"]
    value: int = Field(ge=1, le=5)


class CesRating(_Frozen):
    """Customer effort, 1 (very easy) to 7 (very hard)."""

    scale: Literal["ces"]
    value: int = Field(ge=1, le=7)


RatingModel = NpsRating | CsatRating | CesRating
Rating = Annotated[RatingModel, Field(discriminator="scale")]


class FeedbackDraft(_Frozen):
    """What a caller sends to capture feedback."""

    customer_id: CustomerId
    customer_kind: CustomerKind = CustomerKind.EXTERNAL
    channel: Channel
    kind: FeedbackKind
    text: SafeStr | None = Field(
        default=None, max_length=TEXT_MAX_LENGTH, description="The customer's words; required unless `rating`."
    )
    rating: Rating | None = None
    product: Product | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    occurred_at: Instant | None = Field(
        default=None, description="When the customer gave it (not in the future); defaults to now."
    )


class StatusMove(_Frozen):
    """A lifecycle move asked for with PATCH."""

    status: FeedbackStatus
    note: SafeStr | None = Field(default=None, max_length=2000)


class Sentiment(_Frozen):
    score: float = Field(ge=-1, le=1, description="VADER compound score, -1 (negative) to 1 (positive).")
    label: SentimentLabel
    source: SentimentSource = Field(description="`text` (VADER on the words) or `rating` (when there is no text).")


class StatusChange(_Frozen):
    """One recorded lifecycle move."""

    from_status: FeedbackStatus
    to_status: FeedbackStatus
    note: str | None
    changed_by: str = Field(description="The `sub` of the token that made the move.")
    changed_at: datetime


class VerdictIn(_Frozen):
    """The customer's judgement of a resolution."""

    accepted: bool = Field(description="Whether the problem was resolved to the customer's satisfaction.")
    fairness: int | None = Field(default=None, ge=1, le=5, description="How fair the resolution was, 1 to 5.")
    comment: SafeStr | None = Field(default=None, max_length=2000)


class Verdict(VerdictIn):
    """A verdict given on a resolution."""

    given_at: datetime
    given_by: Literal["customer", "staff"]


class Feedback(_Frozen):
    """Captured feedback with its triage and lifecycle."""

    id: uuid.UUID
    customer_id: str
    customer_kind: CustomerKind
    channel: Channel
    kind: FeedbackKind
    text: str | None
    rating: Rating | None
    product: str | None
    tags: list[str]
    occurred_at: datetime
    status: FeedbackStatus
    sentiment: Sentiment
    themes: list[str]
    history: list[StatusChange] = Field(description="Every lifecycle move, oldest first.")
    verdict: Verdict | None = Field(
        default=None, description="The customer's verdict on the latest resolution; null while none is given."
    )
    verdict_url: str | None = Field(
        default=None,
        description="Only in the answer and event of a move to `resolved`: the link the customer judges it by.",
    )
    created_at: datetime
    updated_at: datetime


class FeedbackStatusChanged(Feedback):
    """`feedback.status_changed` data: the feedback after the move, and where it came from."""

    previous_status: FeedbackStatus


class FeedbackPage(_Frozen):
    items: list[Feedback]
    next_cursor: str | None


class Volume(_Frozen):
    total: int
    by_kind: dict[FeedbackKind, int]


class NetPromoterScore(_Frozen):
    score: float | None = Field(description="% promoters (9-10) minus % detractors (0-6); null without responses.")
    promoters: int
    passives: int
    detractors: int
    responses: int


class CustomerSatisfaction(_Frozen):
    score: float | None = Field(description="% of responses that are 4 or 5; null without responses.")
    responses: int


class CustomerEffort(_Frozen):
    average: float | None = Field(description="Mean effort, 1 (easy) to 7 (hard); null without responses.")
    responses: int


class SilentDissatisfied(_Frozen):
    estimate: float = Field(description="complaints ÷ complaining_share: unhappy customers, complaining or not.")
    complaints: int
    complaining_share: float = Field(description="Setting CF_FEEDBACK_COMPLAINING_SHARE.")


class WordOfMouth(_Frozen):
    unhappy_customers: int = Field(
        description="Customers with a complaint or a detractor rating (nps 0-6, csat 1-2, ces 5-7)."
    )
    happy_customers: int = Field(
        description="Customers with a compliment or a promoter rating (nps 9-10, csat 4-5, ces 1-2)."
    )
    unhappy_tell: float = Field(description="Setting CF_FEEDBACK_UNHAPPY_TELL.")
    happy_tell: float = Field(description="Setting CF_FEEDBACK_HAPPY_TELL.")
    people_told_bad: float
    people_told_good: float


class Figures(_Frozen):
    volume: Volume
    nps: NetPromoterScore
    csat: CustomerSatisfaction
    ces: CustomerEffort
    compliments_per_complaint: float | None = Field(description="Null when there is no complaint.")
    silent_dissatisfied_estimate: SilentDissatisfied
    word_of_mouth: WordOfMouth


class Bucket(StrEnum):
    WEEK = "week"
    MONTH = "month"


class Period(Figures):
    """The figures of one week (from Monday 00:00 UTC) or calendar month (UTC)."""

    period_start: datetime
    period_end: datetime


class ThemeFigures(_Frozen):
    """One theme of the filtered feedback."""

    theme: str = Field(description="The theme's key in the taxonomy.")
    count: int = Field(description="Feedback with this theme.")
    complaints: int = Field(description="Of those, complaints.")
    negative: int = Field(description="Of those, with negative sentiment.")


class TrendBucket(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class ThemePeriod(_Frozen):
    """One period of a theme's trend: a UTC day, a week from Monday 00:00 UTC, or a calendar month (UTC)."""

    period_start: datetime
    count: int
    complaints: int


class ThemeTrend(_Frozen):
    theme: str
    series: list[ThemePeriod] = Field(description="Every period of the range, oldest first, empty ones as 0.")


class ThemeTrends(_Frozen):
    themes: list[ThemeTrend] = Field(description="The themes with feedback in the range, most feedback first.")


class Resolution(_Frozen):
    verdicts: int = Field(description="Verdicts given on resolutions of the filtered feedback.")
    accepted: int
    acceptance_rate: float | None = Field(description="accepted ÷ verdicts; null without verdicts.")
    fairness_average: float | None = Field(description="Mean fairness (1-5) of the verdicts that gave one.")


class VerdictLink(_Frozen):
    """What a verdict link is about, as `GET /v1/verdicts/{token}` answers in JSON."""

    kind: FeedbackKind
    resolved_at: datetime
    expires_at: datetime


class VerdictReceipt(_Frozen):
    """The answer to a verdict given through its link."""

    verdict: Verdict
    status: FeedbackStatus = Field(description="Where the feedback went: `closed` or `reopened`.")


class FeedbackMetrics(Figures):
    """Figures over the filtered feedback; with `bucket`, also per period."""

    since: datetime | None
    until: datetime | None
    bucket: Bucket | None
    series: list[Period] | None = Field(description="One entry per period, oldest first; null without `bucket`.")
    resolution: Resolution = Field(description="The customers' verdicts on the resolutions of the filtered feedback.")
    themes: list[ThemeFigures] = Field(
        default_factory=list, description="The themes of the filtered feedback, most feedback first."
    )


class ThemeSpike(_Frozen):
    """`feedback.theme_spiking` data: a theme whose complaints in the trailing window reached the spike rule."""

    theme: str = Field(description="The theme's key (the taxonomy's).")
    window_start: datetime = Field(description="The trailing window's start (exclusive).")
    window_end: datetime = Field(description="The window's end (inclusive): the moment the spike was found.")
    count: int = Field(description="The theme's complaints that occurred in the window.")
    baseline: float = Field(description="Its mean complaints per window of the same length in the 7 days before.")
    ratio: float | None = Field(description="`count` ÷ `baseline`; null when the baseline is 0 (none before).")
    summary: str = Field(
        description="One readable line, e.g. \"Theme 'delivery' is spiking: 12 complaints in the last hour, "
        '4.0× its baseline".'
    )
