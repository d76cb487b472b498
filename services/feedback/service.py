"""The feedback rules: capture with triage, the lifecycle, finding and measuring."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import Settings
from services.feedback.models import FeedbackRow, ResolutionRow, StatusChangeRow
from services.feedback.repository import Assumptions, Captures, FeedbackFilter, NewFeedback
from services.feedback.schemas import (
    Bucket,
    CustomerEffort,
    CustomerSatisfaction,
    Feedback,
    FeedbackDraft,
    FeedbackKind,
    FeedbackMetrics,
    FeedbackPage,
    FeedbackStatus,
    FeedbackStatusChanged,
    Figures,
    NetPromoterScore,
    Period,
    Rating,
    RatingModel,
    Resolution,
    Sentiment,
    SentimentLabel,
    SentimentSource,
    SilentDissatisfied,
    StatusChange,
    StatusMove,
    ThemeFigures,
    ThemePeriod,
    ThemeTrend,
    ThemeTrends,
    TrendBucket,
    Verdict,
    VerdictIn,
    VerdictLink,
    VerdictReceipt,
    Volume,
    WordOfMouth,
)
from services.feedback.triage import Triage
from services.feedback.verdicts import VerdictLinks, unknown_link
from shared.auth import Principal
from shared.catalogue import FEEDBACK_RECEIVED, FEEDBACK_STATUS_CHANGED, FEEDBACK_VERDICT_GIVEN
from shared.errors import Conflict, Gone, NotFound, Unprocessable, field_error
from shared.events import Serialized, build_event
from shared.outbox import add_event
from shared.pagination import page_of

S = FeedbackStatus
# The lifecycle: new → acknowledged → in_progress → resolved → closed; reopened
# from resolved or closed, then on to acknowledged. Any other move is a 409.
NEXT_STATUSES: dict[FeedbackStatus, frozenset[FeedbackStatus]] = {
    S.NEW: frozenset({S.ACKNOWLEDGED}),
    S.ACKNOWLEDGED: frozenset({S.IN_PROGRESS}),
    S.IN_PROGRESS: frozenset({S.RESOLVED}),
    S.RESOLVED: frozenset({S.CLOSED, S.REOPENED}),
    S.CLOSED: frozenset({S.REOPENED}),
    S.REOPENED: frozenset({S.ACKNOWLEDGED}),
}

_rating_of = TypeAdapter(Rating)


async def capture(
    captures: Captures, *, draft: FeedbackDraft, triage: Triage, settings: Settings
) -> Serialized[Feedback]:
    """Store new feedback with its sentiment and themes, and announce it; the feedback with its JSON."""
    _check_capture_rules(draft, settings)
    feedback_id = uuid.uuid4()
    sentiment = triage.sentiment(draft.text, draft.rating)
    themes = triage.themes(draft.text)
    tags = list(dict.fromkeys(draft.tags))
    rating = draft.rating
    # Stamped here rather than by the database, so the row and its event go in one statement.
    now = datetime.now(UTC)
    occurred_at = draft.occurred_at.astimezone(UTC) if draft.occurred_at is not None else now
    # Built from the validated draft and values made here: validating them again would only cost time.
    feedback = Feedback.model_construct(
        id=feedback_id,
        customer_id=draft.customer_id,
        customer_kind=draft.customer_kind,
        channel=draft.channel,
        kind=draft.kind,
        text=draft.text,
        rating=draft.rating,
        product=draft.product,
        tags=tags,
        occurred_at=occurred_at,
        status=S.NEW,
        sentiment=sentiment,
        themes=themes,
        history=[],
        created_at=now,
        updated_at=now,
    )
    # Its JSON written once: the event's data and the response are the same bytes.
    written = Serialized.of(feedback)
    event = build_event(FEEDBACK_RECEIVED, data=written, subject=str(feedback_id), customer_id=draft.customer_id)
    await captures.insert(
        NewFeedback(
            id=feedback_id,
            customer_id=draft.customer_id,
            customer_kind=draft.customer_kind.value,
            channel=draft.channel.value,
            kind=draft.kind.value,
            text=draft.text,
            rating_scale=rating.scale if rating else None,
            rating_value=rating.value if rating else None,
            product=draft.product,
            tags=tags,
            occurred_at=occurred_at,
            status=S.NEW.value,
            sentiment_score=sentiment.score,
            sentiment_label=sentiment.label.value,
            sentiment_source=sentiment.source.value,
            themes=themes,
            created_at=now,
        ),
        event,
    )
    return written


def _check_capture_rules(draft: FeedbackDraft, settings: Settings) -> None:
    errors = []
    # isspace() is strip() == "" without copying the text.
    if (not draft.text or draft.text.isspace()) and draft.rating is None:
        errors.append({"loc": ["body", "text"], "msg": "is required unless a rating is given"})
    if draft.occurred_at is not None:
        latest = datetime.now(UTC) + timedelta(seconds=settings.feedback_future_tolerance_seconds)
        if draft.occurred_at > latest:
            errors.append({"loc": ["body", "occurred_at"], "msg": "must not be in the future"})
    if errors:
        summary = "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in errors)
        raise Unprocessable(summary, errors=errors)


async def get(session: AsyncSession, *, feedback_id: uuid.UUID) -> Feedback:
    row = await repository.get_feedback(session, feedback_id)
    if row is None:
        raise NotFound(f"No feedback {feedback_id}.")
    return await _represent(session, row)


async def _represent(session: AsyncSession, row: FeedbackRow, *, verdict_url: str | None = None) -> Feedback:
    history = await repository.history_of(session, [row.id])
    resolutions = await repository.latest_resolutions(session, [row.id])
    return _feedback_of(row, history[row.id], resolutions.get(row.id), verdict_url=verdict_url)


async def move(
    session: AsyncSession,
    *,
    feedback_id: uuid.UUID,
    move: StatusMove,
    principal: Principal,
    links: VerdictLinks,
    settings: Settings,
) -> Feedback:
    """Move feedback along its lifecycle, record who did it and why, and announce it.

    A move to `resolved` opens a resolution the customer judges by the link it returns.
    """
    row = await repository.get_feedback(session, feedback_id, for_update=True)
    if row is None:
        raise NotFound(f"No feedback {feedback_id}.")
    previous = FeedbackStatus(row.status)
    allowed = NEXT_STATUSES[previous]
    if move.status not in allowed:
        raise Conflict(
            f"Feedback cannot move from '{previous}' to '{move.status}'; "
            f"from '{previous}' it can move to: {', '.join(sorted(allowed))}.",
            slug="illegal-status-move",
            current_status=previous.value,
            allowed=sorted(allowed),
        )
    await repository.record_move(session, row, to_status=move.status.value, note=move.note, changed_by=principal.sub)
    verdict_url = None
    if move.status is S.RESOLVED:
        resolution = await _open_resolution(session, row, settings)
        verdict_url = links.url(resolution.id, resolution.expires_at)
    feedback = await _represent(session, row, verdict_url=verdict_url)
    changed = FeedbackStatusChanged(**feedback.model_dump(), previous_status=previous)
    await add_event(session, FEEDBACK_STATUS_CHANGED, data=changed, subject=str(row.id), customer_id=row.customer_id)
    return feedback


async def _open_resolution(session: AsyncSession, row: FeedbackRow, settings: Settings) -> ResolutionRow:
    # Whole seconds: the link carries the expiry, and must name the stored one exactly.
    expires_at = (row.updated_at + timedelta(seconds=settings.feedback_verdict_ttl_seconds)).replace(microsecond=0)
    resolution = ResolutionRow(id=uuid.uuid4(), feedback_id=row.id, resolved_at=row.updated_at, expires_at=expires_at)
    await repository.add_resolution(session, resolution)
    return resolution


async def give_verdict(
    session: AsyncSession, *, feedback_id: uuid.UUID, verdict: VerdictIn, principal: Principal, settings: Settings
) -> Feedback:
    """Staff record the customer's verdict on a resolved feedback (the customer told them)."""
    row = await repository.get_feedback(session, feedback_id, for_update=True)
    if row is None:
        raise NotFound(f"No feedback {feedback_id}.")
    _require_resolved(row)
    resolution = (await repository.latest_resolutions(session, [row.id])).get(row.id)
    if resolution is None or resolution.given_at is not None:
        # Resolved before verdicts existed: this resolution never had a link.
        resolution = await _open_resolution(session, row, settings)
    return await _judge(session, row, resolution, verdict, given_by="staff", changed_by=principal.sub)


def _require_resolved(row: FeedbackRow) -> None:
    if row.status != S.RESOLVED.value:
        raise Conflict(
            f"Feedback is '{row.status}'; a verdict is given only on a resolved feedback.",
            slug="feedback-not-resolved",
            current_status=row.status,
        )


async def verdict_link(session: AsyncSession, *, links: VerdictLinks, token: str) -> VerdictLink:
    """What an open verdict link is about; the same checks as giving the verdict."""
    row, resolution = await _link_target(session, links, token, for_update=False)
    return VerdictLink(kind=row.kind, resolved_at=resolution.resolved_at, expires_at=resolution.expires_at)


async def give_verdict_by_link(
    session: AsyncSession, *, links: VerdictLinks, token: str, verdict: VerdictIn
) -> VerdictReceipt:
    """The customer's verdict through the link: once, before it expires, while the feedback is resolved."""
    row, resolution = await _link_target(session, links, token, for_update=True)
    feedback = await _judge(session, row, resolution, verdict, given_by="customer", changed_by="customer")
    assert feedback.verdict is not None
    return VerdictReceipt(verdict=feedback.verdict, status=feedback.status)


async def _link_target(
    session: AsyncSession, links: VerdictLinks, token: str, *, for_update: bool
) -> tuple[FeedbackRow, ResolutionRow]:
    resolution_id, expires_at = links.read(token)
    if expires_at <= datetime.now(UTC):
        raise Gone("This verdict link has expired.", slug="verdict-link-expired")
    resolution = await repository.resolution(session, resolution_id)
    if resolution is None or resolution.expires_at != expires_at:
        raise unknown_link()
    row = await repository.get_feedback(session, resolution.feedback_id, for_update=for_update)
    if row is None:
        raise unknown_link()
    # Read again under the feedback's lock: a verdict given meanwhile is seen here.
    await session.refresh(resolution)
    if resolution.given_at is not None:
        raise Conflict("A verdict was already given through this link.", slug="verdict-already-given")
    latest = (await repository.latest_resolutions(session, [row.id]))[row.id]
    if latest.id != resolution.id:
        raise Gone("This link was for an earlier resolution; a later one has its own.", slug="verdict-link-superseded")
    _require_resolved(row)
    return row, resolution


async def _judge(
    session: AsyncSession,
    row: FeedbackRow,
    resolution: ResolutionRow,
    verdict: VerdictIn,
    *,
    given_by: str,
    changed_by: str,
) -> Feedback:
    """Record the verdict, move the feedback (accepted → closed, rejected → reopened) and announce both."""
    resolution.accepted = verdict.accepted
    resolution.fairness = verdict.fairness
    resolution.comment = verdict.comment
    resolution.given_at = datetime.now(UTC)
    resolution.given_by = given_by
    await session.flush()
    to_status = S.CLOSED if verdict.accepted else S.REOPENED
    note = f"The {given_by} {'accepted' if verdict.accepted else 'rejected'} the resolution."
    await repository.record_move(session, row, to_status=to_status.value, note=note, changed_by=changed_by)
    feedback = await _represent(session, row)
    changed = FeedbackStatusChanged(**feedback.model_dump(), previous_status=S.RESOLVED)
    await add_event(session, FEEDBACK_STATUS_CHANGED, data=changed, subject=str(row.id), customer_id=row.customer_id)
    await add_event(session, FEEDBACK_VERDICT_GIVEN, data=feedback, subject=str(row.id), customer_id=row.customer_id)
    return feedback


async def find(session: AsyncSession, *, where: FeedbackFilter, cursor: str | None, limit: int) -> FeedbackPage:
    """A page of feedback, newest first."""
    _check_range(where)
    rows = await repository.list_feedback(session, where, cursor=cursor, limit=limit)
    page, next_cursor = page_of(rows, limit=limit, key=lambda row: (row.created_at, row.id))
    ids = [row.id for row in page]
    history = await repository.history_of(session, ids)
    resolutions = await repository.latest_resolutions(session, ids)
    return FeedbackPage(
        items=[_feedback_of(row, history[row.id], resolutions.get(row.id)) for row in page], next_cursor=next_cursor
    )


def _check_range(where: FeedbackFilter) -> None:
    if where.since is not None and where.until is not None and where.until <= where.since:
        raise field_error(["query", "until"], "must be later than since")


async def measure(
    session: AsyncSession, *, where: FeedbackFilter, bucket: Bucket | None, settings: Settings
) -> FeedbackMetrics:
    """The customer-focus figures over the filtered feedback, optionally per week or month."""
    _check_range(where)
    assumptions = Assumptions(
        complaining_share=settings.feedback_complaining_share,
        unhappy_tell=settings.feedback_unhappy_tell,
        happy_tell=settings.feedback_happy_tell,
    )
    overall = await repository.figures(session, where, assumptions)
    series = None
    if bucket is not None:
        limit = settings.feedback_max_metric_periods
        rows = await repository.figures_per_period(session, where, assumptions, bucket=bucket.value, max_periods=limit)
        if len(rows) > limit:
            raise field_error(["query", "bucket"], f"gives more than {limit} periods; narrow since and until")
        series = [
            Period(period_start=row.period_start, period_end=row.period_end, **_figures_of(row, assumptions))
            for row in rows
        ]
    themes = [
        ThemeFigures(theme=theme, count=count, complaints=complaints, negative=negative)
        for theme, count, complaints, negative in await repository.theme_figures(session, where)
    ]
    verdicts = await repository.resolution_figures(session, where)
    resolution = Resolution(
        verdicts=verdicts.verdicts,
        accepted=verdicts.accepted,
        acceptance_rate=verdicts.accepted / verdicts.verdicts if verdicts.verdicts else None,
        fairness_average=float(verdicts.fairness_average) if verdicts.fairness_average is not None else None,
    )
    return FeedbackMetrics(
        since=where.since,
        until=where.until,
        bucket=bucket,
        series=series,
        resolution=resolution,
        themes=themes,
        **_figures_of(overall, assumptions),
    )


async def theme_trends(
    session: AsyncSession, *, where: FeedbackFilter, bucket: TrendBucket, settings: Settings
) -> ThemeTrends:
    """Each theme's feedback and complaints per UTC day, week or month of `[since, until)`, empty periods as 0.

    From `since` (or the first themed feedback) to `until` (or now); more than
    `CF_FEEDBACK_MAX_METRIC_PERIODS` periods is a 422, refused before anything is counted.
    """
    _check_range(where)
    if where.since is not None:
        first = where.since.astimezone(UTC)
    else:
        first_day = await repository.first_themed_day(session, where)
        if first_day is None:
            return ThemeTrends(themes=[])
        first = datetime.combine(first_day, time(), UTC)
    last = where.until.astimezone(UTC) - timedelta(microseconds=1) if where.until is not None else datetime.now(UTC)
    limit = settings.feedback_max_metric_periods
    periods = list(itertools.islice(_periods(bucket, first, last), limit + 1))
    if len(periods) > limit:
        raise field_error(["query", "bucket"], f"gives more than {limit} periods; narrow since and until")
    counted: dict[str, dict[datetime, tuple[int, int]]] = {}
    for theme, period_start, count, complaints in await repository.theme_series(session, where, bucket=bucket.value):
        counted.setdefault(theme, {})[period_start.replace(tzinfo=UTC)] = (count, complaints)
    totals = {theme: sum(count for count, _ in series.values()) for theme, series in counted.items()}
    return ThemeTrends(
        themes=[
            ThemeTrend(
                theme=theme,
                series=[
                    ThemePeriod(period_start=start, count=count, complaints=complaints)
                    for start in periods
                    for count, complaints in [counted[theme].get(start, (0, 0))]
                ],
            )
            for theme in sorted(counted, key=lambda theme: (-totals[theme], theme))
        ]
    )


def _periods(bucket: TrendBucket, first: datetime, last: datetime) -> Iterator[datetime]:
    """The starts of the UTC periods from the one holding `first` to the one holding `last` (weeks from Monday)."""
    start = datetime.combine(first.date(), time(), UTC)
    if bucket is TrendBucket.WEEK:
        start -= timedelta(days=start.weekday())
    elif bucket is TrendBucket.MONTH:
        start = start.replace(day=1)
    while start <= last:
        yield start
        try:
            if bucket is TrendBucket.MONTH:
                start = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
            else:
                start += timedelta(days=7 if bucket is TrendBucket.WEEK else 1)
        except (ValueError, OverflowError):  # past year 9999
            return


def _figures_of(row: Any, assumptions: Assumptions) -> dict[str, Any]:
    figures = Figures(
        volume=Volume(total=row.total, by_kind={kind: getattr(row, f"kind_{kind.value}") for kind in FeedbackKind}),
        nps=NetPromoterScore(
            score=row.nps_score,
            promoters=row.promoters,
            passives=row.passives,
            detractors=row.detractors,
            responses=row.nps_responses,
        ),
        csat=CustomerSatisfaction(score=row.csat_score, responses=row.csat_responses),
        ces=CustomerEffort(average=row.ces_average, responses=row.ces_responses),
        compliments_per_complaint=row.compliments_per_complaint,
        silent_dissatisfied_estimate=SilentDissatisfied(
            estimate=row.silent_dissatisfied,
            complaints=row.kind_complaint,
            complaining_share=assumptions.complaining_share,
        ),
        word_of_mouth=WordOfMouth(
            unhappy_customers=row.unhappy_customers,
            happy_customers=row.happy_customers,
            unhappy_tell=assumptions.unhappy_tell,
            happy_tell=assumptions.happy_tell,
            people_told_bad=row.people_told_bad,
            people_told_good=row.people_told_good,
        ),
    )
    return dict(figures)


def _verdict_of(resolution: ResolutionRow | None) -> Verdict | None:
    if resolution is None or resolution.accepted is None or resolution.given_at is None:
        return None
    return Verdict(
        accepted=resolution.accepted,
        fairness=resolution.fairness,
        comment=resolution.comment,
        given_at=resolution.given_at,
        given_by="customer" if resolution.given_by == "customer" else "staff",
    )


def _feedback_of(
    row: FeedbackRow,
    history: list[StatusChangeRow],
    resolution: ResolutionRow | None = None,
    *,
    verdict_url: str | None = None,
) -> Feedback:
    rating: RatingModel | None = None
    if row.rating_scale is not None:
        rating = _rating_of.validate_python({"scale": row.rating_scale, "value": row.rating_value})
    return Feedback(
        id=row.id,
        customer_id=row.customer_id,
        customer_kind=row.customer_kind,
        channel=row.channel,
        kind=row.kind,
        text=row.text,
        rating=rating,
        product=row.product,
        tags=row.tags,
        occurred_at=row.occurred_at,
        status=row.status,
        sentiment=Sentiment(
            score=row.sentiment_score,
            label=SentimentLabel(row.sentiment_label),
            source=SentimentSource(row.sentiment_source),
        ),
        themes=row.themes,
        history=[
            StatusChange(
                from_status=change.from_status,
                to_status=change.to_status,
                note=change.note,
                changed_by=change.changed_by,
                changed_at=change.changed_at,
            )
            for change in history
        ],
        verdict=_verdict_of(resolution),
        verdict_url=verdict_url,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
