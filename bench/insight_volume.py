"""Insight at volume (issue 18 item 4): metrics, trends and lists on a year of data against full scans.

Starts an embedded PostgreSQL and broker, migrates the feedback, commitments
and notifications databases to the revision before issue 18 (`BEFORE`), and
loads a year of data straight into their tables with COPY (in chunks, so the
memory stays bounded): 5,000,000 feedback, 1,000,000 commitments and
5,000,000 notifications at `--scale 1`. Then it upgrades them to head, so
every rollup and index the services keep is built by the migrations' own
backfill, exactly as a production upgrade would build it (timed), and
VACUUM ANALYZEs them (what autovacuum does on a live database).

Each service then runs as its own uvicorn process, and every metrics, trend
and list endpoint (each list with each filter the service's OpenAPI offers)
is measured:

- p99 of sequential requests (wrk, one connection, `--seconds`);
- against the same figures computed by a full scan of the same tables in the
  same run: the plain aggregate (metrics, trends) or the list's own query
  (lists) over the base table, with `enable_indexscan`, `enable_indexonlyscan`
  and `enable_bitmapscan` off, so PostgreSQL reads the table sequentially; the
  faster of two runs. Goal: p99 ≤ 5 % of it;
- for every list filter, the plan of the statement the service itself sent
  (PostgreSQL's auto_explain, switched on only for one request per filter):
  goal, an index is used and the table is not scanned.

    python -m bench.insight_volume [--scale 1.0] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import io
import itertools
import math
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import psutil

from bench.common import Figure, Result, progress, run_wrk
from ops.platform import auth_secret, migrations_of
from ops.stack import Stack, StackOptions
from shared.config import DEFAULT_DEPARTMENTS
from shared.db import asyncpg_dsn
from shared.migrations import upgrade
from shared.themes import DEFAULT_TAXONOMY_FILE, Taxonomy

SERVICES = ["feedback", "commitments", "notifications"]
# The last revision of each service before issue 18: data is loaded here, then the upgrade builds the rest.
BEFORE = {"feedback": "feedback_0005", "commitments": "commitments_0006", "notifications": "notifications_0009"}
ROWS = {"feedback": 5_000_000, "commitment": 1_000_000, "notification": 5_000_000}
DAYS = 365
CHUNK = 50_000
GOAL_RATIO = 0.05
# An endpoint slower than this on its first request is timed by a few sequential requests instead of wrk.
SLOW_MS = 1_000.0
SLOW_REQUESTS = 3
LIMIT = 50
CUSTOMERS = 50_000
OWNERS_PER_DEPARTMENT = 60
PRODUCTS = [f"product-{n:02d}" for n in range(1, 13)]
SEED = 18

# --- what a year looks like ------------------------------------------------------------------------------------


class Weighted:
    """A weighted choice by one bisect over precomputed cumulative weights (random.choices rebuilds them)."""

    def __init__(self, values: Sequence[Any], weights: Sequence[float]) -> None:
        self.values = list(values)
        self.cumulative = list(itertools.accumulate(weights))
        self.total = self.cumulative[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect(self.cumulative, rng.random() * self.total)]


FEEDBACK_KINDS = Weighted(
    ["complaint", "compliment", "suggestion", "question", "survey_response"], [30, 12, 10, 13, 35]
)
CHANNELS = Weighted(
    ["web", "email", "phone", "chat", "survey", "focus_group", "meeting", "social", "in_person", "other"],
    [20, 20, 12, 12, 20, 1, 5, 5, 3, 2],
)
SCALES = Weighted(["nps", "csat", "ces"], [60, 30, 10])
RATINGS = {
    "nps": Weighted(range(11), [3, 2, 2, 3, 3, 5, 7, 12, 18, 22, 23]),
    "csat": Weighted(range(1, 6), [8, 10, 17, 35, 30]),
    "ces": Weighted(range(1, 8), [10, 20, 25, 20, 12, 8, 5]),
}
LATER_STATUSES = Weighted(["closed", "resolved", "in_progress", "reopened"], [70, 22, 6, 2])
THEME_COUNT = Weighted([0, 1, 2], [30, 55, 15])
SENTIMENT = {"negative": -0.6, "neutral": 0.0, "positive": 0.5}
TEXTS = {
    "complaint": "The parcel arrived late and the box was damaged; nobody called back about the refund.",
    "compliment": "Friendly and helpful staff, the new interface is easy to use.",
    "suggestion": "A cheaper subscription fee for small teams would be good value for money.",
    "question": "How do I change the payment method on my invoice?",
    "survey_response": "Quality is fine but the app is slow sometimes.",
}
COMMITMENT_KINDS = Weighted(["promise", "acknowledge", "resolve", "follow_up"], [40, 25, 25, 10])
FUTURE_STATUSES = Weighted(["open", "met_on_time", "cancelled"], [85, 12, 3])
PAST_STATUSES = Weighted(["met_on_time", "met_late", "overdue", "cancelled"], [72, 15, 8, 5])
RENEGOTIATIONS = Weighted([0, 1, 2], [85, 12, 3])
EVENT_TYPES = Weighted(
    [
        "feedback.received",
        "feedback.status_changed",
        "commitment.created",
        "commitment.due_soon",
        "commitment.overdue",
        "commitment.met",
        "expectation.gap_identified",
        "customer.health_changed",
        "feedback.theme_spiking",
    ],
    [35, 15, 12, 8, 5, 12, 5, 5, 3],
)
NOTIFIED = Weighted(list(DEFAULT_DEPARTMENTS), [30, 45, 15, 10])
YEAR_SECONDS = DAYS * 86_400


def new_id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def customer(rng: random.Random) -> str:
    # A few customers write far more than most (a Zipf-like spread).
    return f"customer-{min(int(rng.paretovariate(1.2)) - 1, CUSTOMERS - 1):06d}"


def owners() -> list[tuple[str, str]]:
    return [(d, f"{d}-owner-{n:03d}") for d in DEFAULT_DEPARTMENTS for n in range(OWNERS_PER_DEPARTMENT)]


def feedback_rows(count: int, now: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    themes = [theme.key for theme in Taxonomy.load(DEFAULT_TAXONOMY_FILE).themes]
    recent = now - timedelta(days=2)
    for _ in range(count):
        occurred = now - timedelta(seconds=rng.random() * YEAR_SECONDS)
        kind = FEEDBACK_KINDS(rng)
        scale = value = None
        if kind == "survey_response":
            scale = SCALES(rng)
            value = RATINGS[scale](rng)
        negative = kind == "complaint" or (scale == "nps" and value is not None and value <= 6)
        label = "negative" if negative else ("neutral" if rng.random() < 0.4 else "positive")
        yield (
            new_id(rng),
            customer(rng),
            "internal" if rng.random() < 0.2 else "external",
            CHANNELS(rng),
            kind,
            TEXTS[kind],
            scale,
            value,
            PRODUCTS[int(rng.random() * len(PRODUCTS))] if rng.random() < 0.8 else None,
            ["urgent"] if rng.random() < 0.05 else [],
            occurred,
            "new" if occurred > recent else LATER_STATUSES(rng),
            SENTIMENT[label],
            label,
            "text",
            rng.sample(themes, THEME_COUNT(rng)),
            occurred,
            occurred,
        )


FEEDBACK_COLUMNS = [
    "id",
    "customer_id",
    "customer_kind",
    "channel",
    "kind",
    "text",
    "rating_scale",
    "rating_value",
    "product",
    "tags",
    "occurred_at",
    "status",
    "sentiment_score",
    "sentiment_label",
    "sentiment_source",
    "themes",
    "created_at",
    "updated_at",
]


def commitment_rows(count: int, now: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    people = owners()
    for _ in range(count):
        department, owner = people[int(rng.random() * len(people))]
        # Due over the past year and the next month.
        due = now - timedelta(seconds=rng.random() * (YEAR_SECONDS + 30 * 86_400) - 30 * 86_400)
        created = min(due - timedelta(hours=rng.uniform(4, 14 * 24)), now)
        kind = COMMITMENT_KINDS(rng)
        completed = kept = broken = next_event = next_event_at = None
        status = FUTURE_STATUSES(rng) if due > now else PAST_STATUSES(rng)
        due_soon = due - timedelta(days=1)
        if status == "open" and due_soon <= now:
            status = "due_soon"
        if status == "open":
            next_event, next_event_at = "due_soon", due_soon
        elif status == "due_soon":
            next_event, next_event_at = "overdue", due
        elif status == "met_on_time":
            completed, kept = min(due - timedelta(hours=rng.uniform(0, 48)), now), True
        elif status == "met_late":
            completed, kept, broken = min(due + timedelta(hours=rng.expovariate(1 / 30)), now), False, "met_late"
        elif status == "overdue":
            kept, broken = False, "overdue"
        renegotiations = RENEGOTIATIONS(rng)
        yield (
            new_id(rng),
            customer(rng),
            "internal" if rng.random() < 0.2 else "external",
            "Call the customer back",
            owner,
            department,
            due,
            due_soon,
            "feedback" if kind != "promise" else "meeting",
            str(new_id(rng)),
            status,
            renegotiations,
            completed,
            kind,
            kept,
            broken,
            renegotiations if rng.random() < 0.3 else 0,
            next_event,
            next_event_at,
            created,
            max(completed or created, created),
        )


COMMITMENT_COLUMNS = [
    "id",
    "customer_id",
    "customer_kind",
    "title",
    "owner_id",
    "department",
    "due_at",
    "due_soon_at",
    "source_type",
    "source_id",
    "status",
    "renegotiations",
    "completed_at",
    "kind",
    "kept",
    "broken_because",
    "excuses",
    "next_event",
    "next_event_at",
    "created_at",
    "updated_at",
]


EVENT = (
    '{"specversion":"1.0","id":"%s","source":"/cf/bench","type":"%s","subject":"%s","time":"%s",'
    '"department":"%s","customerid":"%s","datacontenttype":"application/json",'
    '"data":{"id":"%s","customer_id":"%s","customer_kind":"%s"}}'
)


def notification_rows(count: int, now: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    week_ago = now - timedelta(days=7)
    for _ in range(count):
        created = now - timedelta(seconds=rng.random() * YEAR_SECONDS)
        event_id, subject = new_id(rng), str(new_id(rng))
        event_type, department, who = EVENT_TYPES(rng), NOTIFIED(rng), customer(rng)
        kind = "internal" if rng.random() < 0.2 else "external"
        value = EVENT % (event_id, event_type, subject, created.isoformat(), department, who, subject, who, kind)
        # Most of what is older than a week has been read.
        read = created + timedelta(hours=rng.uniform(0.1, 72)) if created < week_ago and rng.random() < 0.9 else None
        yield (new_id(rng), event_id, department, event_type, subject, who, created, value.encode(), created, read)


NOTIFICATION_COLUMNS = [
    "id",
    "event_id",
    "department",
    "event_type",
    "subject",
    "customer_id",
    "occurred_at",
    "value",
    "created_at",
    "read_at",
]


def chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def copy_in(dsn: str, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]], total: int) -> float:
    """COPY the rows in chunks, the next chunk made while PostgreSQL writes the last; seconds, making included."""
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    done = 0
    writing: asyncio.Task[str] | None = None
    try:
        for chunk in chunks(rows, CHUNK):
            if writing is not None:
                await writing
            writing = asyncio.create_task(conn.copy_records_to_table(table, records=chunk, columns=columns))
            await asyncio.sleep(0)  # the records are encoded and sent; PostgreSQL writes while the next are made
            done += len(chunk)
            if done % (CHUNK * 20) == 0:
                progress(f"{table}: {done:,}/{total:,} rows")
        if writing is not None:
            await writing
    finally:
        await conn.close()
    return time.perf_counter() - started


# --- what is measured ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    service: str
    kind: str  # metrics, trend or list
    label: str
    path: str
    params: list[tuple[str, str]]
    floor_sql: str
    floor_args: list[Any] = field(default_factory=list)
    table: str = ""

    @property
    def query(self) -> str:
        return self.path + ("?" + urlencode(self.params) if self.params else "")


FEEDBACK_FIGURES = """
SELECT count(*) AS feedback,
       count(*) FILTER (WHERE kind = 'complaint') AS complaints,
       count(*) FILTER (WHERE kind = 'compliment') AS compliments,
       count(*) FILTER (WHERE rating_scale = 'nps') AS nps_responses,
       count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value >= 9) AS promoters,
       count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value <= 6) AS detractors,
       avg(rating_value) FILTER (WHERE rating_scale = 'csat') AS csat,
       avg(rating_value) FILTER (WHERE rating_scale = 'ces') AS ces,
       count(*) FILTER (WHERE sentiment_label = 'negative' AND kind <> 'complaint') AS silent_dissatisfied,
       count(DISTINCT customer_id) AS customers,
       (SELECT jsonb_object_agg(theme, n) FROM (
            SELECT theme, count(*) AS n FROM feedback f2, unnest(f2.themes) AS theme WHERE {where2} GROUP BY theme
        ) t) AS themes
FROM feedback WHERE {where}
"""

THEME_TREND = """
SELECT theme, date_trunc('{bucket}', occurred_at AT TIME ZONE 'UTC') AS period, count(*),
       count(*) FILTER (WHERE kind = 'complaint') AS complaints
FROM feedback, unnest(themes) AS theme WHERE {where} GROUP BY 1, 2
"""

COMMITMENT_FIGURES = """
SELECT department, owner_id, kind, grouping(department, owner_id, kind) AS level,
       count(*) FILTER (WHERE status <> 'cancelled') AS due,
       count(*) FILTER (WHERE status = 'met_on_time') AS met_on_time,
       count(*) FILTER (WHERE status = 'met_late') AS met_late,
       count(*) FILTER (WHERE status IN ('open', 'due_soon', 'overdue') AND due_at < now()) AS overdue,
       count(*) FILTER (WHERE status IN ('open', 'due_soon', 'overdue') AND due_at >= now()) AS open,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       avg(extract(epoch FROM completed_at - due_at) / 3600) FILTER (WHERE status = 'met_late') AS lateness,
       sum(renegotiations) FILTER (WHERE status <> 'cancelled') AS renegotiations,
       count(*) FILTER (WHERE kept IS TRUE) AS kept, count(*) FILTER (WHERE kept IS FALSE) AS broken,
       sum(excuses) AS excuses
FROM commitment WHERE {where}
GROUP BY GROUPING SETS ((department), (owner_id), (kind), ())
"""


class Where:
    """Conditions with their positional arguments, for a hand-written full-scan statement."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def add(self, condition: str, *values: Any) -> None:
        """`condition` with `?` for each value, numbered in order."""
        for value in values:
            self.args.append(value)
            condition = condition.replace("?", f"${len(self.args)}", 1)
        self.conditions.append(condition)

    def sql(self, prefix: str = "") -> str:
        return " AND ".join(c.replace("§", prefix) for c in self.conditions) or "true"


def where_of(params: Sequence[tuple[str, str]], columns: dict[str, str], *, time_column: str = "occurred_at") -> Where:
    """The conditions a list or metrics request's parameters stand for (`columns`: parameter → column)."""
    where = Where()
    statuses = [
        value for name, value in params if name == "status" and len([n for n, _ in params if n == "status"]) > 1
    ]
    if statuses:
        where.add("§status = ANY(?)", statuses)
    for name, value in params:
        if name == "since":
            where.add(f"§{time_column} >= ?", datetime.fromisoformat(value))
        elif name == "until":
            where.add(f"§{time_column} < ?", datetime.fromisoformat(value))
        elif name == "due_before":
            where.add("§due_at < ?", datetime.fromisoformat(value))
        elif name not in columns or (name == "status" and statuses):
            continue
        elif columns[name].startswith("@"):  # an array column: contains
            where.add(f"§{columns[name][1:]} @> ?::text[]", [value])
        elif columns[name] == "read_at":
            where.add("§read_at IS NULL" if value == "true" else "§read_at IS NOT NULL")
        elif columns[name] == "event_id":
            where.add("§event_id = ?", uuid.UUID(value))
        else:
            where.add(f"§{columns[name]} = ?", value)
    return where


def list_floor(table: str, where: Where) -> str:
    return f"SELECT * FROM {table} WHERE {where.sql()} ORDER BY created_at DESC, id DESC LIMIT {LIMIT + 1}"


FEEDBACK_LIST = {
    "customer_id": "customer_id",
    "customer_kind": "customer_kind",
    "kind": "kind",
    "channel": "channel",
    "status": "status",
    "product": "product",
    "tag": "@tags",
    "theme": "@themes",
}
COMMITMENT_LIST = {
    "status": "status",
    "customer_id": "customer_id",
    "customer_kind": "customer_kind",
    "department": "department",
    "owner_id": "owner_id",
    "kind": "kind",
    "source_type": "source_type",
    "source_id": "source_id",
}
NOTIFICATION_LIST = {
    "unread": "read_at",
    "event_id": "event_id",
    "customer_kind": "customer_kind",
    "event_type": "event_type",
    "customer_id": "customer_id",
}


def cases(now: datetime, samples: dict[str, Any]) -> list[Case]:
    """Every endpoint and filter worth measuring; those a service does not offer are dropped later."""
    ninety = (now - timedelta(days=90)).isoformat()
    year = (now - timedelta(days=DAYS)).isoformat()
    until = now.isoformat()
    window_90 = [("since", ninety), ("until", until)]
    window_year = [("since", year), ("until", until)]
    made: list[Case] = []
    metric_filters = {"customer_kind": "customer_kind", "channel": "channel", "product": "product"}
    for label, params in [
        ("whole year", window_year),
        ("no window", []),
        ("90 days", window_90),
        ("90 days, customer_kind=internal", [*window_90, ("customer_kind", "internal")]),
        ("90 days, channel=email", [*window_90, ("channel", "email")]),
        ("whole year, product", [*window_year, ("product", PRODUCTS[2])]),
        ("whole year by month", [*window_year, ("bucket", "month")]),
    ]:
        where = where_of(params, metric_filters)
        sql = FEEDBACK_FIGURES.format(where=where.sql(), where2=where.sql("f2."))
        made.append(Case("feedback", "metrics", label, "/v1/feedback/metrics", params, sql, where.args, "feedback"))
    for label, params in [
        ("day, 90 days", [("bucket", "day"), *window_90]),
        ("week, whole year", [("bucket", "week"), *window_year]),
        ("month, whole year", [("bucket", "month"), *window_year]),
        ("week, whole year, customer_kind=internal", [("bucket", "week"), *window_year, ("customer_kind", "internal")]),
    ]:
        where = where_of(params, {"customer_kind": "customer_kind"})
        sql = THEME_TREND.format(bucket=dict(params)["bucket"], where=where.sql())
        made.append(Case("feedback", "trend", label, "/v1/feedback/themes", params, sql, where.args, "feedback"))
    for params in [
        [],
        [("customer_id", samples["feedback_customer"])],
        [("customer_kind", "internal")],
        [("kind", "complaint")],
        [("channel", "phone")],
        [("status", "reopened")],
        [("product", PRODUCTS[4])],
        [("tag", "urgent")],
        [("theme", "billing")],
        [("since", ninety), ("until", (now - timedelta(days=60)).isoformat())],
    ]:
        where = where_of(params, FEEDBACK_LIST)
        made.append(
            Case(
                "feedback",
                "list",
                _label(params),
                "/v1/feedback",
                [*params, ("limit", str(LIMIT))],
                list_floor("feedback", where),
                where.args,
                "feedback",
            )
        )
    commitment_filters = {"department": "department", "owner_id": "owner_id", "customer_kind": "customer_kind"}
    for label, params in [
        ("whole year", window_year),
        ("no window", []),
        ("90 days", window_90),
        ("90 days, department=support", [*window_90, ("department", "support")]),
        ("whole year, owner", [*window_year, ("owner_id", samples["owner"])]),
        ("90 days, customer_kind=internal", [*window_90, ("customer_kind", "internal")]),
    ]:
        where = where_of(params, commitment_filters, time_column="due_at")
        sql = COMMITMENT_FIGURES.format(where=where.sql())
        made.append(
            Case("commitments", "metrics", label, "/v1/commitments/metrics", params, sql, where.args, "commitment")
        )
    for params in [
        [],
        [("customer_id", samples["commitment_customer"])],
        [("customer_kind", "internal")],
        [("department", "production")],
        [("owner_id", samples["owner"])],
        [("status", "overdue")],
        [("status", "open"), ("status", "due_soon")],
        [("due_before", (now - timedelta(days=200)).isoformat())],
        [("source_type", "feedback"), ("source_id", samples["source_id"])],
        [("kind", "follow_up")],
    ]:
        where = where_of(params, COMMITMENT_LIST)
        made.append(
            Case(
                "commitments",
                "list",
                _label(params),
                "/v1/commitments",
                [*params, ("limit", str(LIMIT))],
                list_floor("commitment", where),
                where.args,
                "commitment",
            )
        )
    for department, params in [
        ("support", []),
        ("management", []),
        ("support", [("unread", "true")]),
        ("support", [("unread", "false")]),
        (samples["event_department"], [("event_id", samples["event_id"])]),
        ("support", [("customer_kind", "internal")]),
        ("support", [("event_type", "commitment.overdue")]),
        ("support", [("customer_id", samples["notification_customer"])]),
    ]:
        where = where_of(params, NOTIFICATION_LIST)
        where.add("department = ?", department)
        made.append(
            Case(
                "notifications",
                "list",
                f"{department}, {_label(params)}",
                f"/v1/departments/{department}/notifications",
                [*params, ("limit", str(LIMIT))],
                list_floor("notification", where),
                where.args,
                "notification",
            )
        )
    made.append(Case("expectations", "metrics", "capability gaps", "/v1/expectations/gaps", [], "", [], "expectation"))
    return made


def _label(params: Sequence[tuple[str, str]]) -> str:
    if not params:
        return "no filter"
    shown = []
    for name, value in params:
        shown.append(f"{name}={value[:10] if name in ('since', 'until', 'due_before') else value[:12]}")
    return ", ".join(shown)


def offered(openapi: dict[str, Any], case: Case) -> bool:
    """Does the service's OpenAPI declare the path (its template) and every query parameter the case sends?"""
    for template, operations in openapi.get("paths", {}).items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, case.path) and "get" in operations:
            names = {p["name"] for p in operations["get"].get("parameters", []) if p.get("in") == "query"}
            return all(name in names for name, _ in case.params)
    return False


async def full_scan(dsn: str, sql: str, args: list[Any], runs: int = 2) -> float:
    """The faster of `runs` executions (ms) with index and bitmap scans off: a sequential read of the table."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off")
        best = math.inf
        for _ in range(runs):
            started = time.perf_counter()
            await conn.fetch(sql, *args)
            best = min(best, (time.perf_counter() - started) * 1000)
        return best
    finally:
        await conn.close()


async def samples_of(dsns: dict[str, str]) -> dict[str, Any]:
    """Real values to filter by: a customer, an owner, a source, an event."""
    feedback = await asyncpg.connect(dsns["feedback"])
    commitments = await asyncpg.connect(dsns["commitments"])
    notifications = await asyncpg.connect(dsns["notifications"])
    try:
        event = await notifications.fetchrow(
            "SELECT event_id, department, customer_id FROM notification LIMIT 1 OFFSET 1000"
        )
        source = await commitments.fetchrow(
            "SELECT source_id, owner_id, customer_id FROM commitment WHERE source_type = 'feedback' LIMIT 1 OFFSET 1000"
        )
        return {
            "feedback_customer": await feedback.fetchval("SELECT customer_id FROM feedback LIMIT 1 OFFSET 1000"),
            "commitment_customer": source["customer_id"],
            "owner": source["owner_id"],
            "source_id": source["source_id"],
            "event_id": str(event["event_id"]),
            "event_department": event["department"],
            "notification_customer": event["customer_id"],
        }
    finally:
        for conn in (feedback, commitments, notifications):
            await conn.close()


# --- the plans the services send ------------------------------------------------------------------------------


async def set_explaining(dsn: str, on: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER SYSTEM SET auto_explain.log_min_duration = {0 if on else -1}")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    await asyncio.sleep(0.3)  # the backends read the reloaded file at their next command


def plans_in(log: str, table: str) -> list[str]:
    """The plans auto_explain logged for a list statement over `table` (a LIMIT over it)."""
    found = []
    for entry in re.split(r"\n(?=\S)", log):
        if "Query Text:" not in entry or "LIMIT" not in entry.upper():
            continue
        text = entry.split("Query Text:", 1)[1]
        if re.search(rf"\bFROM {table}\b", text) is None:
            continue
        found.append(entry)
    return found


def plan_nodes(entry: str) -> str:
    """The plan's nodes, without costs: `Limit → Index Scan Backward using ix_… on feedback`."""
    nodes = [
        line.split("  (cost=")[0].strip().removeprefix("->").strip() for line in entry.splitlines() if "(cost=" in line
    ]
    return " → ".join(nodes)


def uses_index(entry: str, table: str) -> bool:
    scans_table = re.search(rf"Seq Scan on {table}\b", entry) is not None
    return not scans_table and re.search(r"Index (Only )?Scan|Bitmap Index Scan", entry) is not None


# --- the run -------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, result: Result) -> None:
    load_before = os.getloadavg()[0]
    now = datetime.now(UTC)
    rng = random.Random(SEED)
    counts = {table: max(1_000, int(rows * args.scale)) for table, rows in ROWS.items()}
    with tempfile.TemporaryDirectory(prefix="cf-bench-volume-") as data_dir, contextlib.ExitStack() as cleanup:
        services = [*SERVICES, "expectations"]
        options = StackOptions(
            data_dir=Path(data_dir),
            base_port=0,
            broker_port=0,
            services=services,
            environment={"CF_LOG_LEVEL": "WARNING", "CF_TOPIC_PREFIX": "bench.", "CF_RATE_LIMIT": ""},
        )
        stack = Stack(options, out=sys.stderr if args.verbose else io.StringIO())
        cleanup.callback(stack.stop)
        stack.secret = auth_secret(stack.data_dir, stack.environ, create=True)
        stack.start_databases()
        assert stack.postgres is not None
        dsns = {service: asyncpg_dsn(stack.database_urls[service]) for service in services}
        for service in SERVICES:
            upgrade(migrations_of(service), stack.database_urls[service], BEFORE[service])
        upgrade(migrations_of("expectations"), stack.database_urls["expectations"])

        loads = {
            "feedback": ("feedback", FEEDBACK_COLUMNS, feedback_rows),
            "commitment": ("commitments", COMMITMENT_COLUMNS, commitment_rows),
            "notification": ("notifications", NOTIFICATION_COLUMNS, notification_rows),
        }
        copy_seconds: dict[str, float] = {}
        for table, (service, columns, make) in loads.items():
            count = counts[table]
            copy_seconds[table] = asyncio.run(copy_in(dsns[service], table, columns, make(count, now, rng), count))
            progress(
                f"{table}: {count:,} rows COPYed in {copy_seconds[table]:.1f} s ({count / copy_seconds[table]:,.0f}/s)"
            )
        upgrade_seconds: dict[str, float] = {}
        for service in SERVICES:
            started = time.perf_counter()
            upgrade(migrations_of(service), stack.database_urls[service])
            upgrade_seconds[service] = time.perf_counter() - started
            progress(
                f"{service}: upgraded {BEFORE[service]} → head (backfill, indexes) in {upgrade_seconds[service]:.1f} s"
            )
        started = time.perf_counter()
        for service in SERVICES:
            asyncio.run(_execute(dsns[service], "VACUUM ANALYZE"))
        vacuum_seconds = time.perf_counter() - started
        progress(f"VACUUM ANALYZE in {vacuum_seconds:.1f} s")
        sizes = {
            service: asyncio.run(_fetchval(dsns[service], "SELECT pg_database_size(current_database())"))
            for service in SERVICES
        }

        # auto_explain in every new session, logging nothing until switched on for the plans.
        asyncio.run(_execute(dsns["feedback"], "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'"))
        asyncio.run(_execute(dsns["feedback"], "ALTER SYSTEM SET auto_explain.log_min_duration = -1"))
        asyncio.run(_execute(dsns["feedback"], "SELECT pg_reload_conf()"))

        stack.start_broker()
        stack.create_topics()
        stack.start_services()
        stack.wait_ready()
        token = stack.admin_token()
        headers = {"Authorization": f"Bearer {token}"}
        script = Path(data_dir) / "auth.lua"
        script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        samples = asyncio.run(samples_of(dsns))
        openapi = {service: httpx.get(f"{stack.url(service)}/openapi.json").json() for service in services}

        measured: list[dict[str, Any]] = []
        log_path = stack.postgres.data_dir / "log"
        for case in cases(now, samples):
            if not offered(openapi[case.service], case):
                result.notes.append(f"not offered by {case.service} at this commit: GET {case.query}")
                progress(f"skipped (not offered): {case.service} GET {case.query}")
                continue
            url = f"{stack.url(case.service)}{case.query}"
            started = time.perf_counter()
            response = httpx.get(url, headers=headers, timeout=120)
            first_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                result.notes.append(f"failed at this commit: {case.service} GET {case.query}: {response.status_code}")
                progress(f"FAILED: {case.service} GET {case.query}: {response.status_code} {response.text[:200]}")
                continue
            entry: dict[str, Any] = {"case": case}
            if case.kind == "list":
                offset = log_path.stat().st_size
                asyncio.run(set_explaining(dsns[case.service], True))
                httpx.get(url, headers=headers, timeout=120).raise_for_status()
                asyncio.run(set_explaining(dsns[case.service], False))
                with log_path.open(errors="replace") as log:
                    log.seek(offset)
                    found = plans_in(log.read(), case.table)
                entry["plan"] = plan_nodes(found[-1]) if found else "(no plan logged)"
                entry["index"] = bool(found) and all(uses_index(plan, case.table) for plan in found)
            if first_ms < SLOW_MS:
                run_wrk(url, seconds=1, connections=1, script=script, timeout_seconds=60)  # warm-up
                served = run_wrk(url, seconds=args.seconds, connections=1, script=script, timeout_seconds=60)
                if served.errors:
                    result.notes.append(f"failed under wrk: {case.service} GET {case.query}: {served.errors} errors")
                    progress(f"FAILED under wrk: {case.service} GET {case.query}: {served.errors} errors")
                    continue
                entry["p99"], entry["p50"], entry["rps"] = served.p99_ms, served.p50_ms, served.requests_per_second
            else:
                # Seconds a request: wrk would finish none in its window; time a few one after another.
                timed = [first_ms]
                for _ in range(SLOW_REQUESTS - 1):
                    started = time.perf_counter()
                    httpx.get(url, headers=headers, timeout=600).raise_for_status()
                    timed.append((time.perf_counter() - started) * 1000)
                entry["p99"], entry["p50"], entry["rps"] = max(timed), sorted(timed)[len(timed) // 2], math.nan
                result.notes.append(
                    f"{case.service} GET {case.query}: {first_ms:,.0f} ms for the first request, so "
                    f"{SLOW_REQUESTS} sequential requests timed with httpx (p99 = the slowest), not wrk"
                )
            entry["floor"] = None
            if case.floor_sql:
                try:
                    entry["floor"] = asyncio.run(full_scan(dsns[case.service], case.floor_sql, case.floor_args))
                except asyncpg.PostgresError as error:  # a column this benchmark does not load
                    result.notes.append(f"no full scan for {case.service} GET {case.query}: {error}")
            measured.append(entry)
            floor_text = (
                f", full scan {entry['floor']:,.0f} ms ({entry['p99'] / entry['floor']:.1%})" if entry["floor"] else ""
            )
            plan_text = f"; plan {entry['plan']}" if "plan" in entry else ""
            progress(f"{case.service} {case.kind} {case.label}: p99 {entry['p99']:.1f} ms{floor_text}{plan_text}")

    load_after = os.getloadavg()[0]
    for table, seconds in copy_seconds.items():
        result.add(Figure(f"load: {counts[table]:,} {table} rows by COPY", seconds, "s"))
    for service, seconds in upgrade_seconds.items():
        result.add(Figure(f"load: {service} upgrade {BEFORE[service]} → head (rollup backfill, indexes)", seconds, "s"))
    result.add(Figure("load: VACUUM ANALYZE of the three databases", vacuum_seconds, "s"))
    for entry in measured:
        case = entry["case"]
        name = f"{case.service} {case.kind} {case.label} p99"
        if entry["floor"]:
            ratio = entry["p99"] / entry["floor"]
            result.add(
                Figure(
                    name,
                    entry["p99"],
                    "ms",
                    goal="≤ 5% of full scan",
                    met=ratio <= GOAL_RATIO,
                    floor=entry["floor"],
                    ratio=ratio,
                )
            )
        else:
            result.add(Figure(name, entry["p99"], "ms"))
        if "plan" in entry:
            result.add(
                Figure(
                    f"{case.service} list {case.label}: plan uses an index",
                    float(entry["index"]),
                    "bool",
                    goal="index, no Seq Scan",
                    met=entry["index"],
                )
            )
            result.notes.append(f"plan, {case.service} GET {case.query}: {entry['plan']}")
    result.notes += [
        f"scale {args.scale:g}: {counts['feedback']:,} feedback over {DAYS} days (kinds, channels, 12 products, "
        f"20 % internal, NPS/CSAT/CES ratings, 0-2 themes each, sentiment), {counts['commitment']:,} commitments due "
        "over the past year "
        f"and the next month ({len(DEFAULT_DEPARTMENTS)} departments × {OWNERS_PER_DEPARTMENT} owners, every status), "
        f"{counts['notification']:,} notifications over 4 departments (90 % of those older than a week read); "
        f"{CUSTOMERS:,} customers, a Zipf-like spread",
        "loaded by COPY (asyncpg copy_records_to_table, 50,000 rows a chunk) at the revisions before issue 18 "
        f"({', '.join(BEFORE.values())}), then upgraded to head: every rollup and index is built by the migrations' "
        "own backfill, as on a production upgrade; then VACUUM ANALYZE (what autovacuum would do)",
        f"database sizes after load: {', '.join(f'{s} {b / 2**30:.1f} GiB' for s, b in sizes.items())}",
        f"p99: wrk, one connection, {args.seconds} s per endpoint after a 1 s warm-up; full scan: the plain aggregate "
        "(metrics, trends) or the list's query (lists) over the base table with enable_indexscan, enable_indexonlyscan "
        "and enable_bitmapscan off (a sequential scan, parallel workers allowed), the faster of two runs, same "
        "database",
        "plans: the statement each service sent for one request of each list filter, logged by auto_explain",
        f"machine: {psutil.cpu_count()} cores shared by PostgreSQL, the broker, the services and this benchmark; "
        f"1-minute load average {load_before:.2f} before and {load_after:.2f} after",
    ]


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetchval(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the year's volume (0.01 for a smoke run)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of wrk per endpoint")
    parser.add_argument("--verbose", action="store_true", help="the stack's own lines (services, PostgreSQL) on stderr")
    args = parser.parse_args()
    result = Result("insight_volume")
    run(args, result)
    path = result.write()
    progress(f"insight volume: results in {path}")


if __name__ == "__main__":
    main()
