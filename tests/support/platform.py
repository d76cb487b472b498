"""The real PostgreSQL and Kafka-protocol broker the suite runs against.

By default the suite starts an embedded PostgreSQL and an embedded Tansu
broker of its own. `CF_TEST_POSTGRES_URL` (a server URL, for example
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`) and
`CF_KAFKA_BOOTSTRAP_SERVERS` point it at servers that already run instead
(the URL may be written `postgresql://`, `postgres://` or `postgresql+asyncpg://`).
The services' `CF_AUTH_SECRET` is a new random one in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ops.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from ops.platform import SERVICES, migrations_of
from shared.auth import SCOPES, mint_token
from shared.config import PlatformSettings, asyncpg_url
from shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from shared.kafka import ensure_topics
from shared.migrations import upgrade

TEST_SECRET = secrets.token_urlsafe(32)


@dataclass
class Platform:
    """Where the suite's database servers and broker are, and how to reach them."""

    bootstrap_servers: str
    topic_prefix: str
    database_urls: dict[str, str]
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    external_databases: list[str] = field(default_factory=list)
    secret: str = TEST_SECRET

    def settings(self, service: str, **overrides: Any) -> PlatformSettings:
        """The settings of `service` pointed at the suite's database and broker."""
        module = importlib.import_module(f"services.{service}.config")
        values: dict[str, Any] = {
            "database_url": self.database_urls[service],
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "topic_prefix": self.topic_prefix,
            "auth_secret": self.secret,
            "log_json": False,
            "log_level": "WARNING",
            "database_pool_size": 5,
        }
        values.update(overrides)
        settings: PlatformSettings = module.Settings(**values)
        return settings

    def token(self, *scopes: str, sub: str = "tester", department: str | None = None, ttl: int = 3600) -> str:
        return mint_token(self.secret, sub=sub, scopes=scopes or SCOPES, department=department, ttl_seconds=ttl)

    def auth(self, *scopes: str, sub: str = "tester", department: str | None = None) -> dict[str, str]:
        """An `Authorization` header with a token for `scopes` (all scopes if none)."""
        return {"Authorization": f"Bearer {self.token(*scopes, sub=sub, department=department)}"}

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def dsn(self, service: str) -> str:
        """A plain asyncpg DSN for `service`'s database (for direct checks)."""
        return asyncpg_dsn(self.database_urls[service])

    async def fetch(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn(service))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def plan(self, service: str, statement: str) -> str:
        """PostgreSQL's plan of `statement` in `service`'s database, sequential scans forbidden: the suite's
        tables are small, so the planner would scan them; forbidden, it shows which index serves the statement
        (and a "Seq Scan" still in the plan means none can)."""
        conn = await asyncpg.connect(self.dsn(service))
        try:
            await conn.execute("SET enable_seqscan = off")
            return "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {statement}"))
        finally:
            await conn.close()


@contextlib.contextmanager
def private_directory(prefix: str) -> Iterator[Path]:
    """A fresh folder under the system temp dir, removed afterwards.

    Not pytest's `tmp_path`: its numbered folders are 0700 and pruned by
    other pytest processes, and the embedded PostgreSQL runs as another user.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_platform(base: Path) -> Platform:
    run_id = uuid.uuid4().hex[:8]
    postgres: EmbeddedPostgres | None = None
    external = os.environ.get("CF_TEST_POSTGRES_URL")
    external_databases: list[str] = []
    if external:
        server = make_url(asyncpg_url(external))
        names = {service: f"cf_test_{service}_{run_id}" for service in SERVICES}
        asyncio.run(_create_databases(asyncpg_dsn(external), list(names.values())))
        external_databases = list(names.values())
        urls = {s: server.set(database=name).render_as_string(hide_password=False) for s, name in names.items()}
    else:
        postgres = EmbeddedPostgres(base / "pg")
        postgres.start()
        for service in SERVICES:
            postgres.create_database(service)
        urls = {service: postgres.url(service) for service in SERVICES}
    for service in SERVICES:
        upgrade(migrations_of(service), urls[service])

    broker: EmbeddedBroker | None = None
    bootstrap = os.environ.get("CF_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = EmbeddedBroker(free_port(), log_file=base / "broker.log")
        broker.start()
        bootstrap = broker.bootstrap_servers
    platform = Platform(
        bootstrap_servers=bootstrap,
        topic_prefix=f"t{run_id}.",
        database_urls=urls,
        postgres=postgres,
        broker=broker,
        external_databases=external_databases,
    )
    asyncio.run(ensure_topics(platform.settings("feedback")))
    return platform


def stop_platform(platform: Platform) -> None:
    if platform.broker is not None:
        platform.broker.stop()
    if platform.postgres is not None:
        platform.postgres.stop()
    if platform.external_databases:
        external = os.environ["CF_TEST_POSTGRES_URL"]
        with contextlib.suppress(Exception):
            asyncio.run(_drop_databases(asyncpg_dsn(external), platform.external_databases))


async def _create_databases(dsn: str, names: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_databases(dsn: str, names: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def sessions_on(database_url: str, *, pool_size: int = 2) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a service's database, outside any app, for tests that call repositories directly."""
    engine = create_engine(database_url, pool_size=pool_size)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app`'s lifespan (workers included) and talk to it over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
