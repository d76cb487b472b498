"""Every complaint is a promise: feedback events become response promises, and meet them.

The handler runs inside `EventConsumer`'s transaction, once per event id; a
second `feedback.received` for the same feedback (produced again under a new
id) finds the promises already made and makes none.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.commitments import service
from services.commitments.config import Settings
from services.commitments.policies import ACKNOWLEDGED_BY, RESOLVED_BY
from shared.catalogue import FEEDBACK_RECEIVED, FEEDBACK_STATUS_CHANGED
from shared.consumer import ConsumedEvent

FIRST_PROMISES = frozenset({"acknowledge", "resolve", "follow_up"})


class FeedbackResponses:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def handle(self, session: AsyncSession, event: ConsumedEvent) -> None:
        if event.type == FEEDBACK_RECEIVED.type:
            await self._received(session, event)
        elif event.type == FEEDBACK_STATUS_CHANGED.type:
            await self._status_changed(session, event)

    async def _received(self, session: AsyncSession, event: ConsumedEvent) -> None:
        feedback = event.data
        if await service.has_response_promises(session=session, feedback_id=str(feedback["id"])):
            return
        await service.open_response_promises(
            session=session,
            settings=self._settings,
            feedback=feedback,
            start=_instant(feedback["created_at"]),
            kinds=FIRST_PROMISES,
        )

    async def _status_changed(self, session: AsyncSession, event: ConsumedEvent) -> None:
        feedback = event.data
        status = str(feedback["status"])
        # When the status changed, not when we heard of it.
        at = _instant(event.envelope.get("time") or datetime.now(UTC).isoformat())
        note = f"The feedback moved to '{status}'."
        met = frozenset(
            kind
            for kind, statuses in (("acknowledge", ACKNOWLEDGED_BY), ("resolve", RESOLVED_BY))
            if status in statuses
        )
        if met:
            await service.meet_response_promises(
                session=session, feedback_id=str(feedback["id"]), kinds=met, at=at, note=note
            )
        if status == "reopened":
            await service.open_response_promises(
                session=session, settings=self._settings, feedback=feedback, start=at, kinds=frozenset({"resolve"})
            )


def _instant(value: object) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"a time without a zone: {value!r}")
    return moment.astimezone(UTC)
