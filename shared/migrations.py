"""Alembic, one environment per service, each with its own version table.

A service's `migrations/env.py` calls `run_env(service)`; `upgrade` runs a
service's migrations to head from code (the CLI, `make run` and the tests).
"""

from __future__ import annotations

import asyncio

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from shared.config import asyncpg_url
from shared.db import Base
from shared.tables import idempotency_key, outbox_dead_event, outbox_event, processed_event


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"services.{service}:migrations")
    config.attributes["database_url"] = database_url
    config.attributes["service"] = service
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Migrate `service`'s database to `revision` (any URL form `asyncpg_url` accepts)."""
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(service: str) -> None:
    """The body of every service's `env.py`."""
    config = context.config
    database_url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not database_url:
        raise RuntimeError(f"no database URL given for {service}'s migrations")
    database_url = asyncpg_url(database_url)

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=version_table(service),
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run())


def create_platform_tables() -> None:
    """Create the outbox, idempotency and processed-event tables (first migration)."""
    bind = op.get_bind()
    for table in (outbox_event, idempotency_key, processed_event):
        table.create(bind)
    # Wake the relay on every insert; notifications in one transaction coalesce.
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('outbox', ''); RETURN NULL; END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_event_notify AFTER INSERT ON outbox_event "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def drop_platform_tables() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_event_notify ON outbox_event")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    bind = op.get_bind()
    for table in (processed_event, idempotency_key, outbox_event):
        table.drop(bind)


def create_dead_event_table() -> None:
    """Where the relay sets aside events the broker refuses for good (third migration)."""
    outbox_dead_event.create(op.get_bind())


def drop_dead_event_table() -> None:
    outbox_dead_event.drop(op.get_bind())
