"""POST /v1/feedback driven in-process: the service's CPU per capture without HTTP or wrk noise.

    python -m bench.capture_profile [--seconds 10] [--concurrency 32] [--profile out.prof] [--without-relay]

Starts an embedded PostgreSQL and broker (as bench/feedback_ingest.py does), runs the feedback
app's lifespan (its outbox relay included) in this process, and calls the ASGI app directly with
`--concurrency` requests in flight, the bench's bodies and bearer token. Prints the process CPU
time per capture, measured until the outbox is drained (the relay's share counted), and with
`--profile` writes a cProfile of the measured window. A diagnosis tool: the goal is still judged
by `bench.feedback_ingest` against its floor.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.types import Message

from bench.feedback_ingest import SECRET, outbox_backlog, request_bodies
from ops.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from ops.platform import migrations_of
from services.feedback.app import create_app
from services.feedback.config import Settings
from shared.auth import mint_token
from shared.db import asyncpg_dsn
from shared.kafka import ensure_topics
from shared.migrations import upgrade


async def drive(settings: Settings, args: argparse.Namespace) -> None:
    app = create_app(settings)
    token = mint_token(SECRET, sub="bench", scopes=["feedback:write"], ttl_seconds=3600)
    bodies = [body.encode() for body in request_bodies()]
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    statuses: dict[int, int] = {}

    async def post(body: bytes) -> None:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/feedback",
            "raw_path": b"/v1/feedback",
            "root_path": "",
            "query_string": b"",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()
            raise AssertionError

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def load(seconds: float) -> int:
        done = 0
        deadline = time.monotonic() + seconds

        async def client(offset: int) -> None:
            nonlocal done
            n = offset
            while time.monotonic() < deadline:
                await post(bodies[n % len(bodies)])
                n += 1
                done += 1

        await asyncio.gather(*(client(i * 7) for i in range(args.concurrency)))
        return done

    async def drained() -> None:
        if args.without_relay:
            return
        while await outbox_backlog(asyncpg_dsn(settings.database_url)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async with app.router.lifespan_context(app):
        await load(2)  # warm up
        await drained()
        profiler = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.monotonic()
        if profiler:
            profiler.enable()
        requests = await load(args.seconds)
        elapsed = time.monotonic() - wall
        await drained()
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        used = time.process_time() - cpu
    print(
        f"{requests} captures in {elapsed:.1f} s ({requests / elapsed:,.0f}/s), statuses {statuses}; "
        f"CPU {1e6 * used / requests:.0f} µs per capture (relay {'off' if args.without_relay else 'included'}); "
        f"load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", help="write a cProfile of the measured window here")
    parser.add_argument("--without-relay", action="store_true", help="the app without its outbox relay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as folder:
        base = Path(folder)
        postgres = EmbeddedPostgres(base / "pg")
        broker = EmbeddedBroker(free_port(), log_file=base / "broker.log")
        try:
            postgres.start()
            postgres.create_database("feedback")
            url = postgres.url("feedback")
            upgrade(migrations_of("feedback"), url)
            broker.start()
            settings = Settings(
                database_url=url,
                kafka_bootstrap_servers=broker.bootstrap_servers,
                auth_secret=SECRET,
                log_level="WARNING",
                database_pool_size=10,
                run_workers=not args.without_relay,
            )
            asyncio.run(ensure_topics(settings))
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            asyncio.run(drive(settings, args))
        finally:
            broker.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
