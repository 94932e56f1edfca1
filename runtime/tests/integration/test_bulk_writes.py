"""Bulk writes over column arrays on a real PostgreSQL: every value arrives exactly as given."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Uuid,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service_runtime.bulk import insert_rows, joined_text, jsonb
from service_runtime.database import session_factory

from .conftest import RuntimeTestService

pytestmark = pytest.mark.integration

AWKWARD = ["plain", "with,comma", 'with "quotes"', "with {braces}", "with\\backslash", "ääkkönen", " spaced "]


async def stored(service: RuntimeTestService) -> dict[str, int]:
    async with service.sessions() as session:
        rows = await session.execute(select(service.counts.c.key, service.counts.c.n))
        return {key: n for key, n in rows.tuples()}  # noqa: C416


async def test_text_values_joined_into_one_parameter_are_stored_exactly(service: RuntimeTestService) -> None:
    rows = [{"key": key, "n": n} for n, key in enumerate(AWKWARD)]
    assert joined_text([r["key"] for r in rows]) is not None

    async with service.sessions.begin() as session:
        await insert_rows(session, service.counts, rows)

    assert await stored(service) == {key: n for n, key in enumerate(AWKWARD)}


@pytest.mark.parametrize(
    "keys", [["a\x1fb", "c"], ["", "d"]], ids=["a value holding the separator", "an empty value"]
)
async def test_values_that_cannot_be_joined_travel_as_an_array_and_are_stored_exactly(
    service: RuntimeTestService, keys: list[str]
) -> None:
    assert joined_text(keys) is None

    async with service.sessions.begin() as session:
        await insert_rows(session, service.counts, [{"key": key, "n": 7} for key in keys])

    assert await stored(service) == dict.fromkeys(keys, 7)


@pytest.fixture
async def typed(
    engine: AsyncEngine, unique_name: str
) -> AsyncIterator[tuple[Table, async_sessionmaker[AsyncSession]]]:
    """A table with one column of each type our services bulk-write."""
    schema = f"rt_{unique_name}"
    metadata = MetaData(schema=schema)
    table = Table(
        "typed",
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column("small", SmallInteger, nullable=True),
        Column("code", String(5), nullable=True),
        Column("amount", Numeric(14, 2), nullable=True),
        Column("day", Date, nullable=True),
        Column("at", DateTime(timezone=True), nullable=True),
        Column("ref", Uuid, nullable=True),
        Column("document", JSONB, nullable=True),
        Column("flag", Boolean, nullable=True),
    )
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    try:
        yield table, session_factory(engine)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


async def test_every_column_type_is_written_exactly_joined_or_as_an_array(
    typed: tuple[Table, async_sessionmaker[AsyncSession]],
) -> None:
    # Row sets with and without NULLs: the first travels as joined text per column, the second as arrays.
    table, sessions = typed
    big = 2**40  # a BigInteger beyond int4
    at = dt.datetime(2026, 11, 2, 4, 0, 0, 123456, tzinfo=dt.UTC)
    full = [
        {
            "id": big + i,
            "small": i,
            "code": f"C{i}",
            "amount": Decimal("19.90") * i,
            "day": dt.date(2026, 11, 2) + dt.timedelta(days=i),
            "at": at + dt.timedelta(hours=i),
            "ref": uuid.UUID(int=i + 1),
            "document": jsonb({"n": i, "text": 'ääkkönen, "quoted"'}),
            "flag": i % 2 == 0,
        }
        for i in range(3)
    ]
    sparse = [dict.fromkeys(full[0], None) | {"id": big + 10}, full[0] | {"id": big + 11}]
    async with sessions.begin() as session:
        await insert_rows(session, table, full)
        await insert_rows(session, table, sparse)
    async with sessions() as session:
        rows = {r.id: r._asdict() for r in await session.execute(select(table))}
    for row in [*full, *sparse]:
        stored_row = rows[row["id"]]
        expected = row | {"document": None if row["document"] is None else json.loads(str(row["document"]))}
        assert stored_row == expected


async def test_an_overlong_text_fails_as_in_a_plain_insert_and_is_never_cut(
    typed: tuple[Table, async_sessionmaker[AsyncSession]],
) -> None:
    table, sessions = typed
    with pytest.raises(DBAPIError, match="too long"):
        async with sessions.begin() as session:
            await insert_rows(session, table, [{"id": 1, "code": "ABCDEFG"}, {"id": 2, "code": "OK"}])


async def test_returning_answers_only_the_rows_asked_for(service: RuntimeTestService) -> None:
    async with service.sessions.begin() as session:
        await insert_rows(session, service.counts, [{"key": "a", "n": 1}])
        written = await insert_rows(
            session,
            service.counts,
            [{"key": "a", "n": 2}, {"key": "b", "n": 3}],
            conflict='ON CONFLICT ("key") DO UPDATE SET n = EXCLUDED.n',
            returning='"key", (xmax <> 0) AS updated',
            returning_where="updated",
        )
    assert [tuple(r) for r in written] == [("a", True)]
    assert await stored(service) == {"a": 2, "b": 3}
