"""Alembic, run per service against its own schema; `env.py` of each service calls `run_env`."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(database_url: str, script_location: str) -> Config:
    """Alembic configuration without an ini file; `script_location` like `metering:migrations`."""
    config = Config()
    config.set_main_option("script_location", script_location)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, script_location: str, revision: str = "head") -> None:
    """Migrate to `revision` (blocking; call through `asyncio.to_thread` from async code)."""
    command.upgrade(alembic_config(database_url, script_location), revision)


def revision(database_url: str, script_location: str, message: str) -> None:
    """Autogenerate a new revision from the difference between the metadata and the database."""
    command.revision(alembic_config(database_url, script_location), message=message, autogenerate=True)


def downgrade(database_url: str, script_location: str, revision: str) -> None:
    """Migrate down to `revision`."""
    command.downgrade(alembic_config(database_url, script_location), revision)


def run_env(metadata: MetaData) -> None:
    """Body of a service's `env.py`: online migrations in the metadata's schema, version table included."""
    schema = metadata.schema
    if schema is None:
        raise ValueError("service metadata must name its schema")
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise ValueError("sqlalchemy.url is not set")

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            async with engine.begin() as conn:
                await conn.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())


def add_parking_and_replay_columns(schema: str) -> None:
    """Runtime tables, issue 8: parked outbox rows; dead letters with size, hash, truncation and status.

    Called from each service's migration (the runtime tables live in every service's schema).
    """
    import sqlalchemy as sa

    op = _op()
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True), schema=schema)
    op.add_column("outbox", sa.Column("parked_reason", sa.Text(), nullable=True), schema=schema)
    op.add_column("dead_letters", sa.Column("value_size", sa.BigInteger(), nullable=True), schema=schema)
    op.add_column("dead_letters", sa.Column("value_sha256", sa.String(64), nullable=True), schema=schema)
    op.add_column(
        "dead_letters",
        sa.Column("value_truncated", sa.Boolean(), server_default="false", nullable=False),
        schema=schema,
    )
    op.add_column(
        "dead_letters",
        sa.Column("status", sa.String(20), server_default="new", nullable=False),
        schema=schema,
    )


def drop_parking_and_replay_columns(schema: str) -> None:
    """Undo `add_parking_and_replay_columns`."""
    op = _op()
    for column in ("status", "value_truncated", "value_sha256", "value_size"):
        op.drop_column("dead_letters", column, schema=schema)
    for column in ("parked_reason", "parked_at"):
        op.drop_column("outbox", column, schema=schema)


def add_dead_letter_audit(schema: str) -> None:
    """Runtime tables, issue 12: who resolved a dead letter, every replay and discard, the pending index."""
    import sqlalchemy as sa

    op = _op()
    op.add_column(
        "dead_letters", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True), schema=schema
    )
    op.add_column(
        "dead_letters",
        sa.Column("resolved_by", sa.String(200), nullable=True, comment="The token subject of the operator."),
        schema=schema,
    )
    op.create_index(
        f"ix_{schema}_dead_letters_pending",
        "dead_letters",
        ["consumer_group", "topic", "failure"],
        schema=schema,
        postgresql_where=sa.text("status = 'new'"),
    )
    op.create_table(
        "dead_letter_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "dead_letter_id", sa.BigInteger(), sa.ForeignKey(f"{schema}.dead_letters.id"), nullable=False
        ),
        sa.Column("action", sa.String(20), nullable=False, comment="`replay` or `discard`."),
        sa.Column("outcome", sa.String(20), nullable=False, comment="`applied`, `refused` or `discarded`."),
        sa.Column("actor", sa.String(200), nullable=False, comment="The token subject of the operator."),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "reason", sa.Text(), nullable=True, comment="Why it was discarded, or why the replay was refused."
        ),
        schema=schema,
        comment="Every replay attempt and discard of a dead letter: who, when, what came of it (audit).",
    )
    op.create_index(
        f"ix_{schema}_dead_letter_actions_dead_letter_id",
        "dead_letter_actions",
        ["dead_letter_id"],
        schema=schema,
    )


def drop_dead_letter_audit(schema: str) -> None:
    """Undo `add_dead_letter_audit`."""
    op = _op()
    op.drop_table("dead_letter_actions", schema=schema)
    op.drop_index(f"ix_{schema}_dead_letters_pending", "dead_letters", schema=schema)
    for column in ("resolved_by", "resolved_at"):
        op.drop_column("dead_letters", column, schema=schema)


def _op() -> Any:
    from alembic import op

    return op
