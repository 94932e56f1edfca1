"""Every service's migrations climb the stairway (up, down, up each revision) and end where its models are."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.infra import async_url, create_database, drop_database
from service_runtime.migrations import alembic_config, downgrade, upgrade

pytestmark = pytest.mark.integration

#: Alembic script location of each service, and the module holding its `metadata`.
SERVICES = {
    "metering": "metering.tables",
    "invoicing": "invoicing.tables",
    "partners": "partners.tables",
    "procountor_sync": "procountor_sync.tables",
}

Snapshot = dict[str, Any]


@pytest.fixture
def fresh_database(postgres_admin_url: str) -> Iterator[str]:
    """A database of this test's own (migrations must not meet tables another test created)."""
    name = f"stairway_{uuid.uuid4().hex[:12]}"
    libpq_url = create_database(postgres_admin_url, name)
    try:
        yield async_url(libpq_url)
    finally:
        drop_database(postgres_admin_url, name)


def revisions_oldest_first(database_url: str, script_location: str) -> list[Script]:
    script = ScriptDirectory.from_config(alembic_config(database_url, script_location))
    assert len(script.get_heads()) == 1, f"{script_location} has several heads: {script.get_heads()}"
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def previous_of(revision: Script) -> str:
    down = revision.down_revision
    if down is None:
        return "base"
    # A merge revision has several parents; one step down from it is "-1" relative.
    return down if isinstance(down, str) else "-1"


def _run(connection_url: str, inspect_sync: Any) -> Any:
    async def run() -> Any:
        engine = create_async_engine(connection_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(inspect_sync)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def snapshot(database_url: str, schema: str) -> Snapshot:
    """What a migration can change in the schema: tables, columns, keys, indexes, sequences."""

    def take(connection: Connection) -> Snapshot:
        inspector = inspect(connection)
        tables: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names(schema=schema)):
            if table == "alembic_version":
                continue
            tables[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")), c.get("comment"))
                    for c in inspector.get_columns(table, schema=schema)
                ],
                "primary_key": inspector.get_pk_constraint(table, schema=schema),
                "foreign_keys": sorted(str(fk) for fk in inspector.get_foreign_keys(table, schema=schema)),
                "unique": sorted(str(u) for u in inspector.get_unique_constraints(table, schema=schema)),
                "indexes": sorted(str(i) for i in inspector.get_indexes(table, schema=schema)),
                "checks": sorted(str(c) for c in inspector.get_check_constraints(table, schema=schema)),
            }
        return {"tables": tables, "sequences": sorted(inspector.get_sequence_names(schema=schema))}

    result: Snapshot = _run(database_url, take)
    return result


def differences(database_url: str, metadata: MetaData) -> list[Any]:
    """What autogenerate would put into a new revision, looking at the service's schema only."""
    schema = metadata.schema

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "target_metadata": metadata,
                "include_schemas": True,
                "include_name": lambda name, type_, _parent: type_ != "schema" or name == schema,
                "version_table_schema": schema,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        diff: list[Any] = compare_metadata(context, metadata)
        return diff

    result: list[Any] = _run(database_url, compare)
    return result


@pytest.mark.parametrize("script_package", sorted(SERVICES))
def test_every_revision_downgrades_to_the_schema_below_it_and_head_matches_the_models(
    script_package: str, fresh_database: str
) -> None:
    location = f"{script_package}:migrations"
    metadata: MetaData = importlib.import_module(SERVICES[script_package]).metadata
    schema = metadata.schema
    assert schema is not None
    revisions = revisions_oldest_first(fresh_database, location)
    assert revisions, f"{location} has no revisions"

    below = snapshot(fresh_database, schema)
    for revision in revisions:
        upgrade(fresh_database, location, revision.revision)
        after = snapshot(fresh_database, schema)
        downgrade(fresh_database, location, previous_of(revision))
        assert snapshot(fresh_database, schema) == below, f"downgrade of {revision.revision} left traces"
        upgrade(fresh_database, location, revision.revision)
        assert snapshot(fresh_database, schema) == after, f"{revision.revision} upgrades differently twice"
        below = after

    assert differences(fresh_database, metadata) == []
