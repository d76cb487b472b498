"""POST /v1/feedback against its floor, under the same wrk load on the same PostgreSQL.

    python -m bench.feedback_ingest [--seconds 15] [--connections 32] [--rounds 2] [--py-spy PATH]

Starts an embedded PostgreSQL (two databases migrated alike: `feedback` for the
service, `floor` for `bench/floor_app.py`) and an embedded broker, then runs
both apps under uvicorn (uvloop, httptools, one worker each, the same pool
bounds). The service runs as in production, its outbox relay publishing to
the broker while it is loaded. Rounds alternate floor and service; a service
round ends only when its outbox is drained, so relay work never overlaps the
floor's round. wrk posts realistic complaints from many customers with a bearer
token and no Idempotency-Key. Prints a table and writes
bench/results/feedback_ingest.json.

Goal: throughput ≥ 0.75× the floor's, p99 ≤ 1.5× the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg
import psutil

from bench.common import RESULTS, Figure, Result, WrkRun, progress, run_wrk
from ops.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port
from ops.platform import migrations_of
from services.feedback.config import Settings
from shared.auth import mint_token
from shared.db import asyncpg_dsn
from shared.kafka import ensure_topics
from shared.migrations import upgrade

THROUGHPUT_GOAL = 0.75
P99_GOAL = 1.5
SECRET = secrets.token_urlsafe(32)
APPS = {"floor": "bench.floor_app:create_app", "feedback": "services.feedback.app:create_app"}

COMPLAINTS = [
    "My parcel arrived two weeks late and the box was crushed. I called support three times and nobody "
    "called me back. Really disappointed, I expected much better from you.",
    "I was charged twice for the same order and the invoice shows a delivery fee I never agreed to. "
    "Please refund the difference as soon as possible.",
    "The kettle stopped working after four days. The lid is flimsy and the handle already has a crack. "
    "For this price I expected a product that lasts.",
    "Your checkout is confusing: I could not find where to enter my discount code and the page kept "
    "logging me out. It took me half an hour to place a simple order.",
    "The agent on the phone was rude and dismissive. I waited 40 minutes on hold only to be told to send "
    "an email instead. This is not how you treat loyal customers.",
    "Delivery was fine but the subscription fee went up again without any notice. I am considering "
    "cancelling if this keeps happening.",
]
CHANNELS = ["web", "email", "phone", "chat", "social"]


def request_bodies(count: int = 500) -> list[str]:
    """Complaints from many customers, some with a rating, as JSON strings."""
    chooser = random.Random(7)
    bodies = []
    for _ in range(count):
        body: dict[str, object] = {
            "customer_id": f"customer-{chooser.randrange(1_000_000):06d}",
            "channel": chooser.choice(CHANNELS),
            "kind": "complaint",
            "text": chooser.choice(COMPLAINTS),
            "product": chooser.choice(["kettle-2000", "toaster-x", "subscription-plus"]),
            "tags": [f"order-{chooser.randrange(100_000)}"],
        }
        if chooser.random() < 0.3:
            body["rating"] = {"scale": "csat", "value": chooser.randint(1, 2)}
        bodies.append(json.dumps(body))
    return bodies


def lua_script(token: str, bodies: list[str]) -> str:
    quoted = ",\n".join("[==[" + body + "]==]" for body in bodies)
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local bodies = {{
{quoted}
}}
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/feedback", nil, bodies[(n % #bodies) + 1])
end
"""


def start_server(target: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            target,
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    wait_for_port("127.0.0.1", port, timeout=30)
    return server, port


async def outbox_backlog(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox_event"))
    finally:
        await conn.close()


def wait_for_drain(dsn: str, *, within: float = 60) -> float:
    """Seconds until the service's relay has published every outbox row."""
    started = time.monotonic()
    while asyncio.run(outbox_backlog(dsn)) > 0:
        if time.monotonic() - started > within:
            raise SystemExit("the outbox relay did not drain its backlog within a minute")
        time.sleep(0.2)
    return time.monotonic() - started


def profile(py_spy: str, pid: int, seconds: int, url: str, script: Path, connections: int) -> Path:
    """Sample the service under the same load with py-spy (an extra round, not measured)."""
    output = RESULTS / "feedback_ingest.folded"
    RESULTS.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "1000",
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
    )
    run_wrk(url, seconds=seconds, connections=connections, script=script)
    recorder.wait(30)
    return output


def summarise(runs: list[WrkRun]) -> WrkRun:
    return WrkRun(
        requests_per_second=statistics.mean(r.requests_per_second for r in runs),
        p50_ms=statistics.mean(r.p50_ms for r in runs),
        p99_ms=statistics.mean(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="measured seconds per app per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--py-spy", help="path to py-spy: also profile the service (folded stacks in results/)")
    parser.add_argument(
        "--without-relay",
        action="store_true",
        help="diagnosis only: the service without its outbox relay (events pile up; not the goal's measurement)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as folder:
        base = Path(folder)
        postgres = EmbeddedPostgres(base / "pg")
        broker = EmbeddedBroker(free_port(), log_file=base / "broker.log")
        servers: list[subprocess.Popen[bytes]] = []
        try:
            progress("starting PostgreSQL and the broker")
            postgres.start()
            urls = {}
            for name, database in (("feedback", "feedback"), ("floor", "floor")):
                postgres.create_database(database)
                urls[name] = postgres.url(database)
                upgrade(migrations_of("feedback"), urls[name])
            broker.start()
            env = {
                **os.environ,
                "CF_FEEDBACK_DATABASE_URL": urls["feedback"],
                "CF_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "CF_AUTH_SECRET": SECRET,
                "CF_LOG_LEVEL": "WARNING",
                "CF_DATABASE_POOL_SIZE": "10",
            }
            settings = Settings(
                database_url=urls["feedback"], kafka_bootstrap_servers=broker.bootstrap_servers, auth_secret=SECRET
            )
            asyncio.run(ensure_topics(settings))
            token = mint_token(SECRET, sub="bench", scopes=["feedback:write"], ttl_seconds=3600)
            script = base / "post.lua"
            script.write_text(lua_script(token, request_bodies()))

            ports = {}
            pids = {}
            for name, target in APPS.items():
                app_env = {**env, "CF_FEEDBACK_DATABASE_URL": urls[name]}
                if args.without_relay:
                    app_env["CF_RUN_WORKERS"] = "false"
                server, port = start_server(target, app_env)
                servers.append(server)
                ports[name], pids[name] = port, server.pid
            feedback_dsn = asyncpg_dsn(urls["feedback"])

            processes = {name: psutil.Process(pid) for name, pid in pids.items()}

            def load(name: str, seconds: int) -> tuple[WrkRun, float]:
                """One load; also the server's CPU time per request (ms), relay included."""
                before = _cpu_seconds(processes[name])
                run = run_wrk(
                    f"http://127.0.0.1:{ports[name]}/v1/feedback",
                    seconds=seconds,
                    connections=args.connections,
                    script=script,
                )
                if name == "feedback" and not args.without_relay:
                    drained = wait_for_drain(feedback_dsn)
                    progress(f"  outbox drained {drained:.1f} s after the load")
                requests = run.requests_per_second * seconds
                return run, 1000 * (_cpu_seconds(processes[name]) - before) / max(requests, 1)

            for name in APPS:
                progress(f"warming up {name}")
                load(name, 3)
            commits_before = group_commits(ports["feedback"])
            measured: dict[str, list[WrkRun]] = {name: [] for name in APPS}
            cpu_ms: dict[str, list[float]] = {name: [] for name in APPS}
            for round_number in range(1, args.rounds + 1):
                for name in APPS:
                    run, cpu = load(name, args.seconds)
                    measured[name].append(run)
                    cpu_ms[name].append(cpu)
                    progress(
                        f"round {round_number} {name}: {run.requests_per_second:,.0f} req/s, "
                        f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
                        f"CPU {1000 * cpu:.0f} µs/request, errors {run.errors}"
                    )
            published = asyncio.run(_count(feedback_dsn))
            rows_after, statements_after = group_commits(ports["feedback"])
            rows_per_statement = (rows_after - commits_before[0]) / max(statements_after - commits_before[1], 1)
            progress(f"group commit: {rows_per_statement:.1f} captures per statement in the measured rounds")
            if args.py_spy:
                progress("profiling the service with py-spy (not measured)")
                folded = profile(
                    args.py_spy,
                    pids["feedback"],
                    args.seconds,
                    f"http://127.0.0.1:{ports['feedback']}/v1/feedback",
                    script,
                    args.connections,
                )
                progress(f"folded stacks: {folded}")
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
            broker.stop()
            postgres.stop()

    machine_load = (load_before, os.getloadavg()[0])
    report(
        measured,
        {name: statistics.mean(values) for name, values in cpu_ms.items()},
        args,
        published,
        machine_load,
        rows_per_statement,
    )


def group_commits(port: int) -> tuple[float, float]:
    """Rows and statements group commit has sent so far (the service's own metric)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = dict.fromkeys(("cf_group_commit_rows_sum", "cf_group_commit_rows_count"), 0.0)
    for line in text.splitlines():
        name, _, value = line.partition("{")
        if name in found and 'writer="feedback"' in value:
            found[name] = float(value.rsplit(" ", 1)[1])
    return found["cf_group_commit_rows_sum"], found["cf_group_commit_rows_count"]


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM feedback"))
    finally:
        await conn.close()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def report(
    measured: dict[str, list[WrkRun]],
    cpu_ms: dict[str, float],
    args: argparse.Namespace,
    stored: int,
    load: tuple[float, float],
    rows_per_statement: float,
) -> None:
    floor, service = summarise(measured["floor"]), summarise(measured["feedback"])
    throughput_ratio = service.requests_per_second / floor.requests_per_second
    p50_ratio = service.p50_ms / floor.p50_ms
    p99_ratio = service.p99_ms / floor.p99_ms
    result = Result("feedback_ingest")
    result.add(
        Figure(
            "POST /v1/feedback throughput",
            service.requests_per_second,
            "req/s",
            goal=f"≥ {THROUGHPUT_GOAL}× floor",
            met=throughput_ratio >= THROUGHPUT_GOAL,
            floor=floor.requests_per_second,
            ratio=throughput_ratio,
        )
    )
    result.add(Figure("POST /v1/feedback p50", service.p50_ms, "ms", floor=floor.p50_ms, ratio=p50_ratio))
    result.add(
        Figure(
            "POST /v1/feedback p99",
            service.p99_ms,
            "ms",
            goal=f"≤ {P99_GOAL}× floor",
            met=p99_ratio <= P99_GOAL,
            floor=floor.p99_ms,
            ratio=p99_ratio,
        )
    )
    result.add(
        Figure(
            "POST /v1/feedback server CPU per request",
            1000 * cpu_ms["feedback"],
            "µs",
            floor=1000 * cpu_ms["floor"],
            ratio=cpu_ms["feedback"] / cpu_ms["floor"],
        )
    )
    result.add(Figure("captures per statement (group commit)", rows_per_statement, "rows"))
    result.notes += [
        f"wrk: {args.connections} connections, {args.rounds} alternating rounds of {args.seconds} s per app, "
        "complaints from 500 rotating bodies, bearer token, no Idempotency-Key",
        "service: full path (auth, validation, VADER sentiment, themes, the row and its outbox row in one "
        "statement, with the rows of concurrent captures: group commit) with its outbox relay publishing to "
        "the embedded broker; each round ends when the outbox is drained",
        "floor: FastAPI + raw asyncpg pool, pydantic validation, the same two inserts in one transaction",
        f"errors (non-2xx or socket): service {service.errors}, floor {floor.errors}; "
        f"feedback stored by the service: {stored}",
        f"machine load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after, on {os.cpu_count()} cores; "
        "other work on the machine moves both apps' figures, compare ratios from one run",
        "per round: "
        + "; ".join(
            f"{floor.requests_per_second:,.0f} vs {service.requests_per_second:,.0f} req/s"
            for floor, service in zip(measured["floor"], measured["feedback"], strict=True)
        ),
    ]
    if args.without_relay:
        result.notes.append("DIAGNOSIS RUN: the service ran without its outbox relay")
        result.benchmark = "feedback_ingest_without_relay"
    path = result.write()
    cpu_ratio = cpu_ms["feedback"] / cpu_ms["floor"]
    rows = [
        ("app", "req/s", "p50 ms", "p99 ms", "CPU µs/req"),
        ("floor", *_cells(floor), f"{1000 * cpu_ms['floor']:.0f}"),
        ("feedback", *_cells(service), f"{1000 * cpu_ms['feedback']:.0f}"),
        ("ratio", f"{throughput_ratio:.2f}×", f"{p50_ratio:.2f}×", f"{p99_ratio:.2f}×", f"{cpu_ratio:.2f}×"),
    ]
    for row in rows:
        print(f"{row[0]:<10}{row[1]:>12}{row[2]:>12}{row[3]:>12}{row[4]:>14}")
    print(
        f"goal: throughput ≥ {THROUGHPUT_GOAL}× ({'met' if throughput_ratio >= THROUGHPUT_GOAL else 'NOT met'}), "
        f"p99 ≤ {P99_GOAL}× ({'met' if p99_ratio <= P99_GOAL else 'NOT met'}); written to {path}"
    )
    if service.errors or floor.errors:
        raise SystemExit(f"requests failed: service {service.errors}, floor {floor.errors}")


def _cells(run: WrkRun) -> tuple[str, str, str]:
    return f"{run.requests_per_second:,.0f}", f"{run.p50_ms:.2f}", f"{run.p99_ms:.2f}"


if __name__ == "__main__":
    main()
