"""Every complaint is a promise: feedback events become response promises, and meet them.

The handler gets each batch of new events inside `EventConsumer`'s transaction. A
second `feedback.received` for the same feedback (produced again under a new id,
in this batch or an earlier one) finds the promises already made and makes none.
The promises of a run of `feedback.received` events are written together, in one
statement; a status change first writes the promises before it, so the batch has
the effects of its events one by one, in their order.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.commitments import service
from services.commitments.config import Settings
from services.commitments.policies import ACKNOWLEDGED_BY, RESOLVED_BY
from services.commitments.repository import NewPromise
from shared.catalogue import FEEDBACK_RECEIVED, FEEDBACK_STATUS_CHANGED
from shared.consumer import ConsumedEvent, caused_by

FIRST_PROMISES = frozenset({"acknowledge", "resolve", "follow_up"})


class FeedbackResponses:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def handle(self, session: AsyncSession, events: list[ConsumedEvent]) -> None:
        received = [str(e.data["id"]) for e in events if e.type == FEEDBACK_RECEIVED.type]
        answered: set[str] = set()
        policies = []
        if received:
            answered = await service.feedback_with_response_promises(session=session, feedback_ids=received)
            policies = await service.response_policies(session=session)
        unwritten: list[NewPromise] = []
        for event in events:
            if event.type not in (FEEDBACK_RECEIVED.type, FEEDBACK_STATUS_CHANGED.type):
                continue
            feedback = event.data
            feedback_id = str(feedback["id"])
            # Its events carry the feedback event's correlation, cause and trace, as a handler's would.
            with caused_by(event):
                if event.type == FEEDBACK_RECEIVED.type:
                    if feedback_id not in answered:
                        answered.add(feedback_id)
                        unwritten += service.response_promises(
                            settings=self._settings,
                            policies_in_force=policies,
                            feedback=feedback,
                            start=_instant(feedback["created_at"]),
                            kinds=FIRST_PROMISES,
                            now=datetime.now(UTC),
                        )
                    continue
                await self._write(session, unwritten)
                unwritten = []
                if await self._status_changed(session, event):
                    answered.add(feedback_id)
        await self._write(session, unwritten)

    async def _write(self, session: AsyncSession, promises: list[NewPromise]) -> None:
        await service.add_promises(session=session, settings=self._settings, promises=promises, now=datetime.now(UTC))

    async def _status_changed(self, session: AsyncSession, event: ConsumedEvent) -> bool:
        """Meet the promises the new status meets; reopened, promise the resolution again. True if it made one."""
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
        if status != "reopened":
            return False
        policies = await service.response_policies(session=session)
        promises = service.response_promises(
            settings=self._settings,
            policies_in_force=policies,
            feedback=feedback,
            start=at,
            kinds=frozenset({"resolve"}),
            now=datetime.now(UTC),
        )
        await self._write(session, promises)
        return bool(promises)


def _instant(value: object) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"a time without a zone: {value!r}")
    return moment.astimezone(UTC)
