"""Routing: which departments an event concerns, and handing it to each of them exactly once.

The enabled rules and the active subscriptions are kept between batches with
their versions (digests of their rows). A batch is routed with them and
written by one statement that checks, in its own snapshot, that they are
still the current ones; if not, they are read again and the batch routed
again in the same transaction. So an edited rule or a new subscription
applies to the next event without a restart, and a batch costs no reads of
them while nothing changes. For each (event, department) pair that is new,
the same transaction writes the inbox row, the republished CloudEvent for
`notifications.<department>` (outbox) and the webhook deliveries; the unique
(event_id, department) makes a redelivered event, a restart mid-batch or a
second replica a no-op.
"""

from __future__ import annotations

import fnmatch
import logging
import operator
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications import repository
from services.notifications.config import Settings
from services.notifications.schemas import AllOf, AnyOf, Condition, FieldTest, NoneOf, RoutingRuleIn
from shared.catalogue import department_topic
from shared.consumer import ConsumedEvent
from shared.events import with_extensions
from shared.schemas import CustomerKind
from shared.tracing import parent_context, traceparent_of

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

logger = logging.getLogger(__name__)

Predicate = Callable[[dict[str, Any]], bool]
_MISSING = object()
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


def compile_pattern(patterns: Iterable[str]) -> Callable[[str], bool]:
    """One matcher for event-type patterns (`*` stands for any characters); no patterns match all."""
    patterns = list(patterns)
    if not patterns:
        return lambda _: True
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return lambda event_type: regex.match(event_type) is not None


def compile_condition(condition: Condition | None) -> Predicate:
    """A condition as a function of the event's data."""
    if condition is None:
        return lambda _: True
    if isinstance(condition, AllOf):
        parts = [compile_condition(c) for c in condition.all]
        return lambda data: all(part(data) for part in parts)
    if isinstance(condition, AnyOf):
        parts = [compile_condition(c) for c in condition.any]
        return lambda data: any(part(data) for part in parts)
    if isinstance(condition, NoneOf):
        inner = compile_condition(condition.not_)
        return lambda data: not inner(data)
    return _compile_field_test(condition)


def _compile_field_test(test: FieldTest) -> Predicate:
    path = test.field.split(".")
    expected = test.value

    def read(data: dict[str, Any]) -> Any:
        value: Any = data
        for step in path:
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(step, _MISSING)
        return value

    if test.op == "exists":
        return lambda data: (read(data) is not _MISSING) is expected
    if test.op == "eq":
        return lambda data: _same(read(data), expected)
    if test.op == "ne":
        return lambda data: not _same(read(data), expected)
    if test.op in ("in", "not_in"):
        options = expected if isinstance(expected, list) else [expected]
        wanted = test.op == "in"
        return lambda data: any(_same(read(data), option) for option in options) is wanted
    compare = _COMPARE[test.op]

    def ordered(data: dict[str, Any]) -> bool:
        actual = read(data)
        # A field of another type (or missing) never satisfies an ordering test.
        if _is_number(actual) and _is_number(expected):
            return compare(actual, expected)
        if isinstance(actual, str) and isinstance(expected, str):
            return compare(actual, expected)
        return False

    return ordered


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return bool(actual == expected)


@dataclass(frozen=True)
class CompiledRule:
    matches_type: Callable[[str], bool]
    condition: Predicate
    departments: tuple[str, ...]
    department_from: tuple[str, ...] | None

    @classmethod
    def of(cls, rule: RoutingRuleIn) -> CompiledRule:
        return cls(
            matches_type=compile_pattern(rule.event_types),
            condition=compile_condition(rule.condition),
            departments=tuple(rule.departments),
            department_from=tuple(rule.department_from.split(".")) if rule.department_from else None,
        )

    def departments_for(self, data: dict[str, Any]) -> list[str]:
        """The departments this rule names for an event of its types with this `data`."""
        if not self.condition(data):
            return []
        named = list(self.departments)
        if self.department_from is not None:
            value: Any = data
            for step in self.department_from:
                value = value.get(step) if isinstance(value, dict) else None
            if isinstance(value, str):
                named.append(value)
        return named


class RuleSet:
    """One version of the enabled rules, with the rules of each event type looked up once."""

    def __init__(self, rules: list[CompiledRule]) -> None:
        self.rules = rules
        self._by_type: dict[str, list[CompiledRule]] = {}

    def for_type(self, event_type: str) -> list[CompiledRule]:
        found = self._by_type.get(event_type)
        if found is None:
            found = self._by_type[event_type] = [r for r in self.rules if r.matches_type(event_type)]
        return found


class SubscriptionSet:
    """One version of the active subscriptions; which of them want each event type."""

    def __init__(self, rows: list[tuple[uuid.UUID, str, list[str]]]) -> None:
        self._rows = rows
        self._wanted: dict[tuple[str, str], tuple[uuid.UUID, ...]] = {}

    def wanting(self, department: str, event_type: str) -> tuple[uuid.UUID, ...]:
        """The subscriptions of `department` whose patterns match `event_type`."""
        found = self._wanted.get((department, event_type))
        if found is None:
            found = self._wanted[(department, event_type)] = tuple(
                subscription_id
                for subscription_id, subscribed, patterns in self._rows
                if subscribed == department and compile_pattern(patterns)(event_type)
            )
        return found


@dataclass(frozen=True)
class RoutingBook:
    """What routing reads, as one version: the enabled rules, the active subscriptions, and their versions."""

    versions: repository.RoutingVersions
    rules: RuleSet
    subscriptions: SubscriptionSet

    @classmethod
    async def read(cls, session: AsyncSession) -> RoutingBook:
        rules, rules_version = await repository.enabled_rules(session)
        subscriptions, subscriptions_version = await repository.active_subscriptions(session)
        return cls(
            repository.RoutingVersions(rules_version, subscriptions_version),
            RuleSet([CompiledRule.of(RoutingRuleIn.model_validate(rule)) for rule in rules]),
            SubscriptionSet(subscriptions),
        )


class EventRouter:
    """The consumer's batch handler: routes every new event to its departments."""

    def __init__(self, settings: Settings) -> None:
        self._departments = set(settings.departments)
        self._book: RoutingBook | None = None
        self._topics = {department: department_topic(department) for department in settings.departments}
        self._backlog_batch = max(1, settings.router_batch_size // 4)
        self._backlog_until = 0.0
        # The service's tracer when tracing is on (set by the app once it runs): a `route` span per event.
        self.tracer: Tracer | None = None

    def has_backlog(self) -> bool:
        """Whether large batches came in within the last second (the consumers are catching up)."""
        return time.monotonic() < self._backlog_until

    async def route(self, session: AsyncSession, events: Sequence[ConsumedEvent]) -> None:
        if len(events) >= self._backlog_batch:
            self._backlog_until = time.monotonic() + 1.0
        book = self._book or await self._read_book(session)
        while True:
            pairs = repository.RoutedPairs()
            for event in events:
                departments = self._departments_for(book.rules, event)
                if self.tracer is not None:
                    self._traced_route(book, pairs, event, departments)
                elif departments:
                    self._add_pairs(book, pairs, event, departments)
            if await repository.insert_routed(session, pairs, made_by=book.versions) == book.versions:
                return
            # A rule or subscription changed since the book was read: nothing was written; route the batch again
            # (with tracing, each event then has a second `route` span, whose traceparent the copies carry).
            book = await self._read_book(session)

    async def _read_book(self, session: AsyncSession) -> RoutingBook:
        self._book = book = await RoutingBook.read(session)
        return book

    def _departments_for(self, rules: RuleSet, event: ConsumedEvent) -> list[str]:
        """Every configured department some rule names for `event`, each once, in rule order."""
        found: dict[str, None] = {}
        data = event.data
        for rule in rules.for_type(event.type):
            for department in rule.departments_for(data):
                if department in self._departments:
                    found[department] = None
                else:
                    logger.warning("event %s names unknown department %r; skipped", event.id, department)
        return list(found)

    def _traced_route(
        self, book: RoutingBook, pairs: repository.RoutedPairs, event: ConsumedEvent, departments: list[str]
    ) -> None:
        """Routing as a span, child of the event's processing: the copies carry its `traceparent`."""
        assert self.tracer is not None
        span = self.tracer.start_span(
            f"route {event.type}",
            context=parent_context(event.traceparent),
            attributes={"cloudevents.event_type": event.type, "cf.departments": ",".join(departments)},
        )
        try:
            if departments:
                self._add_pairs(book, pairs, event, departments, traceparent=traceparent_of(span))
        finally:
            span.end()

    def _add_pairs(
        self,
        book: RoutingBook,
        pairs: repository.RoutedPairs,
        event: ConsumedEvent,
        departments: list[str],
        *,
        traceparent: str | None = None,
    ) -> None:
        envelope = event.envelope
        if traceparent is not None:
            # Before `data`, where the relay looks for it (shared.tracing.stored_traceparent).
            envelope = {name: value for name, value in envelope.items() if name != "data"}
            envelope["traceparent"] = traceparent
            if "data" in event.envelope:
                envelope["data"] = event.envelope["data"]
        subject = _text_or_none(envelope.get("subject"))
        customer_kind = _customer_kind_of(envelope.get("data"))
        occurred_at = _time_or_none(envelope.get("time"))
        for department in departments:
            copy = with_extensions(envelope, topic=self._topics[department], department=department)
            pairs.event_ids.append(event.id)
            pairs.departments.append(department)
            pairs.event_types.append(copy.event_type)
            pairs.subjects.append(subject)
            pairs.customer_ids.append(copy.key)
            pairs.customer_kinds.append(customer_kind)
            pairs.occurred_at.append(occurred_at)
            pairs.values.append(copy.value)
            pairs.topics.append(copy.topic)
            for subscription_id in book.subscriptions.wanting(department, copy.event_type):
                pairs.delivery_pairs.append(len(pairs))
                pairs.delivery_subscriptions.append(subscription_id)


_CUSTOMER_KINDS = frozenset(kind.value for kind in CustomerKind)


def _customer_kind_of(data: Any) -> str | None:
    """The event data's `customer_kind` when it is one (the inbox filters by it); None for any other event."""
    kind = data.get("customer_kind") if isinstance(data, dict) else None
    return kind if kind in _CUSTOMER_KINDS else None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
