"""Response policies: which feedback a policy answers, and the promises it makes for it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.commitments.models import ResponsePolicy

# The statuses that meet each response promise (contract §5): any move past `new`
# acknowledges; resolving or closing resolves. A follow-up is met by hand.
ACKNOWLEDGED_BY = frozenset({"acknowledged", "in_progress", "resolved", "closed", "reopened"})
RESOLVED_BY = frozenset({"resolved", "closed"})

TITLES = {
    "acknowledge": "Acknowledge the customer's {kind}",
    "resolve": "Resolve the customer's {kind}",
    "follow_up": "Follow up with the customer about their {kind}",
}


def is_detractor(rating: Any) -> bool:
    """A detractor rating as notifications routes it (contract §6): nps ≤ 6, csat ≤ 2, ces ≥ 5."""
    if not isinstance(rating, Mapping):
        return False
    scale, value = rating.get("scale"), rating.get("value")
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return (scale == "nps" and value <= 6) or (scale == "csat" and value <= 2) or (scale == "ces" and value >= 5)


def matches(match: Mapping[str, Any], feedback: Mapping[str, Any]) -> bool:
    """Whether every field `match` gives agrees with the feedback (as `feedback.received` carries it)."""
    for field in ("kind", "channel", "customer_kind"):
        if match.get(field) is not None and feedback.get(field) != match[field]:
            return False
    wanted = match.get("detractor")
    return wanted is None or is_detractor(feedback.get("rating")) == wanted


@dataclass(frozen=True)
class ResponsePromise:
    """One promise a policy makes for one feedback."""

    kind: str
    policy: str
    department: str
    owner_id: str
    within_seconds: int

    def due_from(self, start: datetime) -> datetime:
        return start + timedelta(seconds=self.within_seconds)


def promises_for(
    policies: list[ResponsePolicy], feedback: Mapping[str, Any], *, kinds: frozenset[str]
) -> list[ResponsePromise]:
    """The promises of `kinds` that every policy matching the feedback makes, by policy name."""
    made = []
    for policy in sorted(policies, key=lambda p: p.name):
        if not matches(policy.match, feedback):
            continue
        for kind, within in (
            ("acknowledge", policy.acknowledge_within_seconds),
            ("resolve", policy.resolve_within_seconds),
            ("follow_up", policy.follow_up_within_seconds),
        ):
            if kind in kinds and within is not None:
                owner = policy.owner_id or policy.department
                made.append(ResponsePromise(kind, policy.name, policy.department, owner, within))
    return made
