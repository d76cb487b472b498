"""End to end under load, as a curve: from a complaint's capture to every place support sees it.

Starts the whole stack once (embedded PostgreSQL and broker unless settings
point elsewhere). Then, rate by rate in increasing order (50, 100, 250 and 500
complaints/s by default), `hey` (a Go load generator from Debian's packages, a
process of its own per customer) posts complaints of that rate's own 25 customers for
`--seconds`, and each complaint is timed from its CloudEvent `time` (stamped in
the capture, before the row is written and before the 201 is sent) to:

- its routed copy on `notifications.support`, the department topic (an aiokafka
  consumer, which also times the first hop, capture → `feedback.events`);
- its row in support's inbox: `notification.created_at`, PostgreSQL's
  `clock_timestamp()` when the routing statement inserts it (so before its
  commit), read after the load; the capture's clock is the same machine's;
- its event on support's live stream, `GET /v1/departments/support/stream`
  read by an SSE client with support's dashboard token.

Beside each rate, on the same broker in the same run, the two-hop raw aiokafka
floor at that rate (`bench.floors.aiokafka_two_hops`), and the CPU seconds
each process spent per complaint accepted, from the start of the load until
every complaint has arrived: every service, PostgreSQL (the postmaster and its
backends), the broker and hey.

`--diagnose DIR` is for finding where the time goes, at `--diagnose-rates`:
py-spy records the feedback, commitments, notifications and customers services (raw folded stacks,
idle samples included, `e2e_<service>_<rate>.folded`), and PostgreSQL loads
`pg_stat_statements` (a restart before migrating) whose top statements,
COMMITs included, go to `e2e_statements_<rate>.txt`. Such a run's figures
are disturbed by the sampling; the committed result is a run without it.

    python -m bench.e2e_latency [--rates 50 100 250 500] [--seconds 30] [--diagnose DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import Curve, Figure, Result, percentile, progress
from bench.floors import TwoHops, aiokafka_two_hops, platform_fetch_wait_ms
from ops.embedded import EmbeddedPostgres
from ops.platform import auth_secret, platform_settings
from ops.stack import Stack, StackOptions
from shared.catalogue import FEEDBACK_RECEIVED, ROUTED_TOPICS, dead_letter_topic
from shared.db import asyncpg_dsn

RATES = (50, 100, 250, 500)
DEPARTMENT = "support"
TOPIC = f"notifications.{DEPARTMENT}"
FIRST_TOPIC = "feedback.events"
HEY_PROCESSES = 25  # each one worker posting at rate / HEY_PROCESSES per second
# Customers complaining at each rate (`--customers`), one per hey process by default: keyed by customer, their
# events spread over the topics' partitions as the floor's 50 keys do.
CUSTOMERS = 25
GOAL_RSS_MB = 150.0
DRAIN_SECONDS = 20.0
IDLE_SECONDS = 5.0
PROFILED = ("feedback", "commitments", "notifications", "customers")


def goal_ratio(rate: int) -> float:
    """The issue's goal for p99 to the department topic, as a multiple of the two-hop floor's p99 at that rate."""
    return 2.0 if rate <= 250 else 4.0


def ms_since(event_time: str, seen_at: float) -> float:
    """Milliseconds from a CloudEvent's `time` to `seen_at` (seconds since the epoch, this machine's clock)."""
    return (seen_at - datetime.fromisoformat(event_time).timestamp()) * 1000


def complaint(customer_id: str) -> bytes:
    return orjson.dumps(
        {
            "customer_id": customer_id,
            "channel": "email",
            "kind": "complaint",
            "text": "The delivery was two days late and nobody told me why.",
            "product": "router",
        }
    )


def resident_mb(stack: Stack) -> dict[str, float]:
    memory: dict[str, float] = {}
    for name, service in stack.services.items():
        if service.pid is not None:
            memory[name] = psutil.Process(service.pid).memory_info().rss / 2**20
    return memory


def require_hey() -> str:
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("hey is not installed: `apt-get install -y hey` (Debian), then run again")
    return hey


@dataclass
class Load:
    """What the hey processes report together: the rate reached, the answers by status, the POST latencies (ms)."""

    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    post: list[float] = field(default_factory=list)

    def add_csv(self, output: str) -> None:
        """One hey's `-o csv`: a row per answered request, its time in s first and its status seventh."""
        for row in output.splitlines()[1:]:
            columns = row.split(",")
            if len(columns) >= 7:
                self.post.append(float(columns[0]) * 1000)
                self.statuses[int(columns[6])] += 1

    @property
    def rate(self) -> float:
        return sum(self.statuses.values()) / self.seconds

    @property
    def accepted(self) -> int:
        return self.statuses.get(201, 0)


@dataclass
class Arrivals:
    """One rate's complaints: ms from each one's CloudEvent `time` to where it was seen."""

    first_hop: list[float] = field(default_factory=list)  # feedback.events
    topic: list[float] = field(default_factory=list)  # notifications.support
    stream: list[float] = field(default_factory=list)  # support's live stream
    inbox: list[float] = field(default_factory=list)  # support's inbox row, read after the load


class Observer:
    """Watches `feedback.events`, `notifications.support` and support's live stream for the customers it expects."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.runs: dict[str, Arrivals] = {}
        # The platform's fetch wait, as the two-hop floor's last consumer: the two compare like for like.
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap_servers,
            fetch_max_wait_ms=platform_fetch_wait_ms(),
            enable_auto_commit=False,
        )
        self._stream_open = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in (TOPIC, FIRST_TOPIC)
            for p in sorted(self.consumer.partitions_for_topic(topic) or range(6))
        ]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        self._tasks = [asyncio.create_task(self._consume()), asyncio.create_task(self._follow_stream())]
        opened = asyncio.create_task(self._stream_open.wait())
        await asyncio.wait([opened, self._tasks[1]], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if self._tasks[1].done():
            self._tasks[1].result()  # the stream ended or failed: say why
        if not opened.done():
            opened.cancel()
            raise RuntimeError("support's live stream did not open within 30 s")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.consumer.stop()

    def expect(self, *customers: str) -> Arrivals:
        """One set of arrivals for the complaints of all of `customers`."""
        arrivals = Arrivals()
        for customer in customers:
            self.runs[customer] = arrivals
        return arrivals

    async def dead_letters(self) -> int:
        """Messages in the dead-letter topics of everything the notifications service routes, so far."""
        settings = platform_settings(self.stack.environ, kafka_bootstrap_servers=self.stack.bootstrap_servers)
        partitions = [
            TopicPartition(settings.topic(dead_letter_topic(topic)), p)
            for topic in ROUTED_TOPICS
            for p in range(settings.kafka_topic_partitions)
        ]
        ends = await self.consumer.end_offsets(partitions)
        begins = await self.consumer.beginning_offsets(partitions)
        return sum(ends[tp] - begins[tp] for tp in partitions)

    def _note(self, envelope: Mapping[str, Any], seen_at: float, where: str) -> None:
        """Time a complaint's event (not another event about the customer, such as its health changing)."""
        data = envelope.get("data")
        if envelope.get("type") != FEEDBACK_RECEIVED.type:
            return
        arrivals = self.runs.get(data.get("customer_id", "")) if isinstance(data, dict) else None
        if arrivals is not None:
            getattr(arrivals, where).append(ms_since(envelope["time"], seen_at))

    async def _consume(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                seen_at = time.time()
                for record in records:
                    where = "topic" if record.topic == TOPIC else "first_hop"
                    self._note(orjson.loads(record.value), seen_at, where)

    async def _follow_stream(self) -> None:
        url = f"{self.stack.url('notifications')}/v1/departments/{DEPARTMENT}/stream"
        headers = {
            "Authorization": f"Bearer {self.stack.dashboard_token(DEPARTMENT)}",
            "Accept": "text/event-stream",
        }
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            response.raise_for_status()
            self._stream_open.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    self._note(orjson.loads(line[5:]), time.time(), "stream")


async def warm_up(stack: Stack, observer: Observer) -> None:
    """Measure the pipeline running, not the stack starting (consumer groups forming, first metadata, the stream
    joining the feed): post a complaint each second until one has come through to the topic and the stream."""
    customer = f"warm-up-{uuid.uuid4().hex[:8]}"
    arrivals = observer.expect(customer)
    started = time.monotonic()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {stack.admin_token()}"}) as client:
        while not (arrivals.topic and arrivals.stream):
            if time.monotonic() - started > 120:
                raise RuntimeError("no complaint came through end to end within 120 s")
            response = await client.post(
                f"{stack.url('feedback')}/v1/feedback",
                content=complaint(customer),
                headers={"content-type": "application/json"},
            )
            response.raise_for_status()
            for _ in range(10):
                if arrivals.topic and arrivals.stream:
                    break
                await asyncio.sleep(0.1)
    progress(f"e2e: the first complaint came through after {time.monotonic() - started:.1f} s; measuring")


async def post_complaints(stack: Stack, customers: list[str], *, rate: int, seconds: float) -> Load:
    """hey posting complaints at `rate`/s for `seconds`: `HEY_PROCESSES` processes of one worker each, process i
    posting customer i mod len(customers)'s complaint at rate / HEY_PROCESSES per second, started 1 / rate s
    apart. (One hey's workers all start their tickers at once, so its `-c 20 -q r` posts 20 complaints together
    every 20 / r s; these are spread out.) Open loop while a POST takes less than HEY_PROCESSES / rate s (a
    worker waits for its answer)."""
    heys = []
    # A hey of one worker needs one thread; Go's idle threads would otherwise spin on the 2 shared cores.
    one_thread = {**os.environ, "GOMAXPROCS": "1"}
    with tempfile.TemporaryDirectory() as bodies:
        for customer in customers:
            (Path(bodies) / f"{customer}.json").write_bytes(complaint(customer))
        for n in range(HEY_PROCESSES):
            body_file = Path(bodies) / f"{customers[n % len(customers)]}.json"
            heys.append(
                await asyncio.create_subprocess_exec(
                    *hey_command(stack, body_file, rate / HEY_PROCESSES, seconds),
                    stdout=asyncio.subprocess.PIPE,
                    env=one_thread,
                )
            )
            await asyncio.sleep(1 / rate)
        outputs = await asyncio.gather(*(hey.communicate() for hey in heys))
    load = Load(seconds)
    for output, _ in outputs:
        load.add_csv(output.decode())
    return load


def hey_command(stack: Stack, body_file: Path, rate: float, seconds: float) -> list[str]:
    """One hey worker posting `body_file` to the capture at `rate`/s for `seconds`, its answers as CSV."""
    return [
        require_hey(),
        "-z",
        f"{seconds:g}s",
        "-c",
        "1",
        "-q",
        f"{rate:g}",
        "-m",
        "POST",
        "-T",
        "application/json",
        "-H",
        f"Authorization: Bearer {stack.admin_token()}",
        "-D",
        str(body_file),
        "-o",
        "csv",
        f"{stack.url('feedback')}/v1/feedback",
    ]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds `pid` and its descendants have used, those that ended (reaped by their parent) included."""
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def counted_processes(stack: Stack) -> dict[str, int]:
    """The processes whose CPU a complaint costs: each service, PostgreSQL's postmaster and the broker."""
    pids = {name: service.pid for name, service in stack.services.items() if service.pid is not None}
    if stack.postgres is not None and stack.postgres.pid is not None:
        pids["postgres"] = stack.postgres.pid
    if stack.broker is not None and stack.broker.process is not None:
        pids["broker"] = stack.broker.process.pid
    return pids


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reaped_children_cpu_seconds() -> float:
    """CPU of this process's children that have ended (hey, once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def profile(pids: Mapping[str, int], seconds: float, out: Path, rate: int) -> list[asyncio.subprocess.Process]:
    """py-spy recording each of `pids` for `seconds` (raw folded stacks in `out`), without pausing them; idle
    samples are kept, so a loop's busy share is its busy samples over all."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    recorders = []
    for name, pid in pids.items():
        recorders.append(
            await asyncio.create_subprocess_exec(
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "500",
                "--format",
                "raw",
                "--nonblocking",
                "--idle",
                "--duration",
                f"{seconds:.0f}",
                "--output",
                str(out / f"e2e_{name}_{rate}.folded"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    return recorders


async def inbox_latencies(stack: Stack, customers: list[str]) -> list[float]:
    """ms from each of `customers`' complaints' `time` to its row in support's inbox (the row's `created_at`)."""
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_urls["notifications"]))
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM created_at)::float8 AS at, value FROM notification "
            "WHERE department = $1 AND customer_id = ANY($2::text[]) AND event_type = $3",
            DEPARTMENT,
            customers,
            FEEDBACK_RECEIVED.type,
        )
    finally:
        await conn.close()
    return [ms_since(orjson.loads(row["value"])["time"], row["at"]) for row in rows]


@contextlib.contextmanager
def running_stack(options: StackOptions, *, track_statements: bool) -> Iterator[Stack]:
    """The whole stack, as `Stack.start` starts it; with `track_statements`, PostgreSQL is restarted with
    `pg_stat_statements` loaded before anything connects to it."""
    with open(os.devnull, "w") as quiet:
        stack = Stack(options, out=quiet)
        try:
            if track_statements:
                stack.secret = auth_secret(stack.data_dir, stack.environ, create=True)
                stack.start_databases()
                postgres = embedded_postgres(stack)
                postgres.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';")
                stack.stop_postgres()
                stack.start_postgres()
                postgres.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
                stack.migrate()
                stack.start_broker()
                stack.create_topics()
                stack.start_services()
                stack.wait_ready()
            else:
                stack.start()
            yield stack
        finally:
            stack.stop()


def embedded_postgres(stack: Stack) -> EmbeddedPostgres:
    if stack.postgres is None:
        raise SystemExit("--diagnose reads the embedded PostgreSQL's statistics; unset CF_*_DATABASE_URL")
    return stack.postgres


async def reset_statements(stack: Stack) -> None:
    await _on_postgres(stack, "SELECT pg_stat_statements_reset()")


async def write_statements(stack: Stack, path: Path) -> None:
    """PostgreSQL's statements since the reset, by their total time (COMMITs included: their time is the
    WAL flush)."""
    rows = await _on_postgres(
        stack,
        "SELECT d.datname, s.calls, s.total_exec_time, s.mean_exec_time, s.max_exec_time, s.rows, "
        "left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160) AS query "
        "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid ORDER BY s.total_exec_time DESC LIMIT 25",
    )
    lines = ["database\tcalls\ttotal ms\tmean ms\tmax ms\trows\tquery"]
    lines += [
        f"{r['datname']}\t{r['calls']}\t{r['total_exec_time']:.0f}\t{r['mean_exec_time']:.3f}\t"
        f"{r['max_exec_time']:.1f}\t{r['rows']}\t{r['query']}"
        for r in rows
    ]
    path.write_text("\n".join(lines) + "\n")  # noqa: ASYNC240 - a small file, once per rate


async def sample_oldest_writers(stack: Stack, until: asyncio.Event, path: Path) -> None:
    """Every 10 ms, the oldest transaction that holds a transaction id, in any database of the cluster, into `path`.
    The live stream hands out only rows older than every such transaction (`pg_snapshot_xmin`), so while one is
    open a new notification waits for it."""
    conn = await asyncpg.connect(asyncpg_dsn(embedded_postgres(stack).url("postgres")))
    ages: list[float] = []
    holders: Counter[str] = Counter()
    try:
        while not until.is_set():
            row = await conn.fetchrow(
                "SELECT datname, extract(epoch FROM clock_timestamp() - xact_start) * 1000 AS ms, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query FROM pg_stat_activity "
                "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 1"
            )
            ages.append(float(row["ms"]) if row is not None else 0.0)
            if row is not None:
                holders[f"{row['datname']}: {row['query']}"] += 1
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    held = sum(holders.values())
    lines = [
        f"samples {len(ages)}, a transaction id held in {held} ({100 * held / max(len(ages), 1):.0f} %)",
        f"age of the oldest: p50 {percentile(ages, 50):.1f} ms, p99 {percentile(ages, 99):.1f} ms, max "
        f"{max(ages, default=0.0):.1f} ms",
        *(f"{n}\t{holder}" for holder, n in holders.most_common(12)),
    ]
    path.write_text("\n".join(lines) + "\n")  # noqa: ASYNC240 - a small file, once per rate


async def _on_postgres(stack: Stack, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(embedded_postgres(stack).url("postgres")))
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


@dataclass
class Point:
    """One rate of the curve."""

    rate: int
    load: Load
    arrivals: Arrivals
    floor: TwoHops
    cpu_us: dict[str, float]  # per complaint accepted, by process
    observer_us: float  # this process (the consumer and stream client timing the complaints), per complaint
    dead_lettered: int
    load_average: float  # the machine's 1-minute load average before the rate: other work shares the cores


async def measure(
    stack: Stack,
    observer: Observer,
    *,
    rate: int,
    seconds: float,
    floor_seconds: float,
    diagnose: Path | None,
    customer_count: int = CUSTOMERS,
) -> Point:
    """One rate: the load, its drain, the inbox rows, then the two-hop floor at the same rate (and with `diagnose`,
    py-spy's stacks and PostgreSQL's statements of the load into that directory)."""
    run = uuid.uuid4().hex[:8]
    customers = [f"bench-{run}-{rate}-{n}" for n in range(customer_count)]
    arrivals = observer.expect(*customers)
    pids = counted_processes(stack)
    dead_before = await observer.dead_letters()
    load_average = os.getloadavg()[0]
    progress(f"e2e: posting {rate} complaints/s for {seconds:g} s")
    recorders = []
    sampled, sampler = asyncio.Event(), None
    if diagnose is not None:
        await reset_statements(stack)
        sampler = asyncio.create_task(
            sample_oldest_writers(stack, sampled, diagnose / f"e2e_oldest_transactions_{rate}.txt")
        )
        profiled = {name: pids[name] for name in PROFILED}
        recorders = await profile(profiled, seconds + 2, diagnose, rate)
    cpu_before, hey_before, own_before = cpu_seconds(pids), reaped_children_cpu_seconds(), own_cpu_seconds()
    load = await post_complaints(stack, customers, rate=rate, seconds=seconds)
    hey_cpu = reaped_children_cpu_seconds() - hey_before
    accepted = load.accepted
    deadline = time.monotonic() + DRAIN_SECONDS
    while min(len(arrivals.topic), len(arrivals.stream)) < accepted and time.monotonic() < deadline:  # noqa: ASYNC110 - the observer's tasks fill them
        await asyncio.sleep(0.05)
    cpu_after, own_after = cpu_seconds(pids), own_cpu_seconds()
    sampled.set()
    if sampler is not None:
        await sampler
    for recorder in recorders:
        await recorder.wait()
    if diagnose is not None:
        await write_statements(stack, diagnose / f"e2e_statements_{rate}.txt")
    if min(len(arrivals.topic), len(arrivals.stream)) < accepted:
        progress(
            f"e2e: of {accepted} accepted, {len(arrivals.topic)} reached {TOPIC} and {len(arrivals.stream)} the "
            f"stream within {DRAIN_SECONDS:g} s after the load"
        )
    other = {code: n for code, n in load.statuses.items() if code != 201}
    if other:
        progress(f"e2e: answers other than 201: {other}")
    arrivals.inbox = await inbox_latencies(stack, customers)
    dead_lettered = await observer.dead_letters() - dead_before
    spent = {name: cpu_after[name] - cpu_before[name] for name in pids}
    spent["hey"] = hey_cpu
    cpu_us = {name: seconds_spent / max(accepted, 1) * 1e6 for name, seconds_spent in spent.items()}
    floor = await aiokafka_two_hops(stack.bootstrap_servers, rate=rate, seconds=floor_seconds)
    observer_us = (own_after - own_before) / max(accepted, 1) * 1e6
    point = Point(rate, load, arrivals, floor, cpu_us, observer_us, dead_lettered, load_average)
    progress(
        f"e2e: {rate}/s → {TOPIC} p50 {percentile(arrivals.topic, 50):.1f} ms, p99 {percentile(arrivals.topic, 99):.1f}"
        f" ms (two-hop floor p99 {percentile(floor.two_hops, 99):.1f} ms); CPU per complaint "
        f"{sum(cpu_us.values()):.0f} µs"
    )
    return point


async def idle_cpu(stack: Stack, seconds: float) -> dict[str, float]:
    """CPU ms per second each process spends with no complaint coming (polling consumers, relays' sweeps)."""
    pids = counted_processes(stack)
    before = cpu_seconds(pids)
    await asyncio.sleep(seconds)
    after = cpu_seconds(pids)
    return {name: (after[name] - before[name]) / seconds * 1000 for name in pids}


async def curve(stack: Stack, args: argparse.Namespace) -> tuple[dict[str, float], list[Point]]:
    """The idle CPU, then each rate's point."""
    observer = Observer(stack)
    await observer.start()
    try:
        await warm_up(stack, observer)
        idle = await idle_cpu(stack, IDLE_SECONDS)
        return idle, [
            await measure(
                stack,
                observer,
                rate=rate,
                seconds=args.seconds,
                floor_seconds=args.floor_seconds,
                diagnose=args.diagnose if rate in args.diagnose_rates else None,
                customer_count=args.customers,
            )
            for rate in sorted(args.rates)
        ]
    finally:
        await observer.stop()


def latency_figures(prefix: str, values: list[float], floor: list[float]) -> list[Figure]:
    """p50, p99 and max of `values`, the first two beside the floor's."""
    figures = []
    for quantile in (50, 99):
        measured, floor_q = percentile(values, quantile), percentile(floor, quantile)
        ratio = measured / floor_q if floor_q else None
        figures.append(Figure(f"{prefix} p{quantile}", measured, "ms", floor=floor_q, ratio=ratio))
    figures.append(Figure(f"{prefix} max", max(values, default=float("nan")), "ms"))
    return figures


def point_figures(point: Point) -> list[Figure]:
    """A rate's figures: latencies to the three destinations against the two-hop floor, what arrived, the CPU."""
    at, arrivals, accepted = f"{point.rate}/s:", point.arrivals, point.load.accepted
    figures = [
        Figure(
            f"{at} complaints posted per second (reached)",
            point.load.rate,
            "req/s",
            goal=f"= {point.rate}",
            met=point.load.rate >= 0.95 * point.rate,
        ),
        Figure(f"{at} complaints accepted (201)", accepted, "count"),
        Figure(f"{at} machine load average before", point.load_average, ""),
    ]
    to_topic = latency_figures(f"{at} to {TOPIC}", arrivals.topic, point.floor.two_hops)
    p99 = to_topic[1]
    limit = goal_ratio(point.rate)
    p99.goal = f"≤ {limit:g}× two-hop floor"
    p99.met = p99.ratio is not None and p99.ratio <= limit
    figures += to_topic
    figures += latency_figures(f"{at} to the inbox row", arrivals.inbox, point.floor.two_hops)
    figures += latency_figures(f"{at} to the live stream", arrivals.stream, point.floor.two_hops)
    figures += latency_figures(f"{at} first hop (to {FIRST_TOPIC})", arrivals.first_hop, point.floor.first_hop)[:2]
    figures += [Figure(f"{at} POST /v1/feedback p{q} (hey)", percentile(point.load.post, q), "ms") for q in (50, 99)]
    for where, values in ((TOPIC, arrivals.topic), ("the inbox", arrivals.inbox), ("the live stream", arrivals.stream)):
        figures.append(
            Figure(f"{at} arrived on {where}", len(values), "count", goal="= accepted", met=len(values) == accepted)
        )
    figures.append(
        Figure(f"{at} dead-lettered", point.dead_lettered, "count", goal="= 0", met=point.dead_lettered == 0)
    )
    platform = sum(us for name, us in point.cpu_us.items() if name != "hey")
    figures.append(Figure(f"{at} CPU per complaint, the platform (services, PostgreSQL, broker)", platform, "µs"))
    figures.append(Figure(f"{at} CPU per complaint, all processes (hey too)", sum(point.cpu_us.values()), "µs"))
    figures += [Figure(f"{at} CPU per complaint, {name}", us, "µs") for name, us in point.cpu_us.items()]
    figures.append(Figure(f"{at} CPU per complaint, the benchmark's observers (not in all)", point.observer_us, "µs"))
    return figures


def latency_curve(points: list[Point]) -> Curve:
    series: dict[str, list[float]] = {}
    for label, where in ((f"to {TOPIC}", "topic"), ("to the inbox row", "inbox"), ("to the live stream", "stream")):
        for quantile in (50, 99):
            series[f"{label} p{quantile}"] = [percentile(getattr(p.arrivals, where), quantile) for p in points]
    for quantile in (50, 99):
        series[f"two-hop aiokafka floor p{quantile}"] = [percentile(p.floor.two_hops, quantile) for p in points]
    return Curve("complaints per second", "ms from capture", [float(p.rate) for p in points], series)


def rounded(values: list[float]) -> list[float]:
    return [round(v, 2) for v in values]


def report(points: list[Point], idle: dict[str, float], loaded: dict[str, float], args: argparse.Namespace) -> Result:
    result = Result("e2e_latency")
    for point in points:
        for figure in point_figures(point):
            result.add(figure)
    for name in idle:
        for when, memory in (("idle", idle), ("after the load", loaded)):
            mb = memory[name]
            result.add(Figure(f"{name} RSS {when}", mb, "MB", goal=f"≤ {GOAL_RSS_MB:g} MB", met=mb <= GOAL_RSS_MB))
    result.curve = latency_curve(points)
    top = points[-1]
    result.samples = {
        f"to_topic_ms_{top.rate}": rounded(top.arrivals.topic),
        f"to_inbox_ms_{top.rate}": rounded(top.arrivals.inbox),
        f"to_stream_ms_{top.rate}": rounded(top.arrivals.stream),
        f"floor_two_hops_ms_{top.rate}": rounded(top.floor.two_hops),
    }
    result.notes.append(
        f"{', '.join(str(p.rate) for p in points)} complaints/s, {args.seconds:g} s each, from {HEY_PROCESSES} hey "
        f"processes (one keep-alive worker each, started 1/rate s apart), each rate its own {args.customers} "
        "customers (hey process i posts customer i mod that), one stack for "
        "the curve; latency from the CloudEvent `time` (stamped in the capture, before the 201) to an aiokafka "
        f"consumer of {TOPIC} (the platform's fetch wait), to the inbox row's `created_at` (at the insert, before "
        "its commit) and to an SSE client of support's live stream; floor: raw aiokafka produce → consume → "
        f"produce → consume (acks=all, fetch wait {platform_fetch_wait_ms()} ms) at the same rate on the same "
        f"broker, {args.floor_seconds:g} s after each rate; CPU per complaint from the load's start until all "
        "arrived, per process tree; hey, the stack and the observers share 2 cores"
    )
    return result


def print_table(points: list[Point]) -> None:
    print("rate | to topic p50/p99 | inbox p50/p99 | stream p50/p99 | floor p50/p99 | p99÷floor | CPU µs/complaint")
    for p in points:
        a, f = p.arrivals, p.floor.two_hops
        floor_p99 = percentile(f, 99)

        def pair(values: list[float]) -> str:
            return f"{percentile(values, 50):.1f}/{percentile(values, 99):.1f}"

        ratio = percentile(a.topic, 99) / floor_p99 if floor_p99 else float("nan")
        cpu = ", ".join(f"{name} {us:.0f}" for name, us in p.cpu_us.items())
        print(
            f"{p.rate} | {pair(a.topic)} | {pair(a.inbox)} | {pair(a.stream)} | {pair(f)} | {ratio:.2f}× | "
            f"{sum(p.cpu_us.values()):.0f} ({cpu})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES), help="complaints/s, one run each")
    parser.add_argument("--seconds", type=float, default=30.0, help="load at each rate")
    parser.add_argument("--customers", type=int, default=CUSTOMERS, help="customers complaining at each rate")
    parser.add_argument("--floor-seconds", type=float, default=10.0, help="the two-hop floor at each rate")
    parser.add_argument("--diagnose", type=Path, help="py-spy and pg_stat_statements into this dir (see above)")
    parser.add_argument(
        "--diagnose-rates", type=int, nargs="*", default=[250, 500], help="the rates --diagnose records"
    )
    args = parser.parse_args()
    if args.diagnose is not None:
        args.diagnose.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as data_dir:
        options = StackOptions(
            data_dir=Path(data_dir), base_port=0, broker_port=0, environment={"CF_LOG_LEVEL": "WARNING"}
        )
        progress("e2e: starting the stack")
        with running_stack(options, track_statements=args.diagnose is not None) as stack:
            time.sleep(2)
            idle = resident_mb(stack)
            idle_cpu_ms, points = asyncio.run(curve(stack, args))
            loaded = resident_mb(stack)
    result = report(points, idle, loaded, args)
    for name, ms in idle_cpu_ms.items():
        result.add(Figure(f"idle: CPU of {name} per second", ms, "ms/s"))
    path = result.write()
    print_table(points)
    progress(f"e2e: → {path}")


if __name__ == "__main__":
    main()
