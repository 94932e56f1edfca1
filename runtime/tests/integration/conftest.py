"""A tiny service of the tests' own, in a schema of its own per test: runtime tables plus a `counts` table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service_runtime.database import create_engine, service_metadata, session_factory
from service_runtime.tables import RuntimeTables, add_runtime_tables


@dataclass(frozen=True)
class RuntimeTestService:
    """The test service's tables and sessions."""

    tables: RuntimeTables
    counts: Table
    sessions: async_sessionmaker[AsyncSession]

    async def rows(self, table: Table) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(table)) or 0)

    async def count_of(self, key: str) -> int:
        async with self.sessions() as session:
            value = await session.scalar(select(self.counts.c.n).where(self.counts.c.key == key))
            return int(value or 0)


def build_metadata(schema: str) -> tuple[MetaData, RuntimeTables, Table]:
    metadata = service_metadata(schema)
    tables = add_runtime_tables(metadata)
    counts = Table(
        "counts",
        metadata,
        Column("key", String(100), primary_key=True),
        Column("n", Integer, nullable=False),
    )
    return metadata, tables, counts


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=4)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def service(engine: AsyncEngine, unique_name: str) -> AsyncIterator[RuntimeTestService]:
    """A fresh `rt_<random>` schema, so that each test sees only its own rows."""
    schema = f"rt_{unique_name}"
    metadata, tables, counts = build_metadata(schema)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    try:
        yield RuntimeTestService(tables, counts, session_factory(engine))
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
