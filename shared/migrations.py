"""Alembic, one environment per service, each with its own version table.

A service's `migrations/env.py` calls `run_env(service)`; `upgrade` runs the
migrations in a script location (`package:folder`, given by the caller) to head
from code (the CLI, `make run` and the tests).
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from shared.config import asyncpg_url
from shared.db import Base, new_metadata
from shared.tables import idempotency_key, outbox_dead_event, outbox_event, processed_event

# `idempotency_key` as the first migration made it (keys scoped to `sub` only); the fourth
# (`scope_idempotency_keys`) makes it the table `shared.tables` describes.
_idempotency_key_v1 = sa.Table(
    "idempotency_key",
    new_metadata(),
    sa.Column("sub", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response_body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("sub", "key"),
    sa.Index("ix_idempotency_key_created_at", "created_at"),
)


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(script_location: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes["database_url"] = database_url
    return config


def upgrade(script_location: str, database_url: str, revision: str = "head") -> None:
    """Migrate to `revision` of the migrations at `script_location` (any URL form `asyncpg_url` accepts)."""
    command.upgrade(alembic_config(script_location, database_url), revision)


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
    for table in (outbox_event, _idempotency_key_v1, processed_event):
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


def scope_idempotency_keys() -> None:
    """Scope Idempotency-Keys to the token's `sub` and `department` (fourth migration, contract §1 v1.1).

    Keys stored before keep department '' (a token bound to no department): a department-bound
    token re-sending a key from before the upgrade makes a new request, checked as any other.
    """
    op.add_column("idempotency_key", sa.Column("department", sa.Text(), nullable=False, server_default=sa.text("''")))
    op.drop_constraint("pk_idempotency_key", "idempotency_key", type_="primary")
    op.create_primary_key("pk_idempotency_key", "idempotency_key", ["sub", "department", "key"])


def unscope_idempotency_keys() -> None:
    """Back to keys scoped to `sub` only; the keys of department-bound tokens are forgotten."""
    op.execute("DELETE FROM idempotency_key WHERE department <> ''")
    op.drop_constraint("pk_idempotency_key", "idempotency_key", type_="primary")
    op.create_primary_key("pk_idempotency_key", "idempotency_key", ["sub", "key"])
    op.drop_column("idempotency_key", "department")
