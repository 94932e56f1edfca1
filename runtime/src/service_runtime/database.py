"""Database engine and sessions; asyncpg everywhere, one PostgreSQL schema per service."""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

#: One transaction of a use case: what repositories are built on. Use-case, consumer and API modules
#: name it by this alias and never import SQLAlchemy themselves (import-linter checks that), so the
#: only modules that speak SQL are repositories and tables.
Session: TypeAlias = AsyncSession
#: Where a use case that owns its transactions opens them (`async with sessions.begin() as session`).
Sessions: TypeAlias = async_sessionmaker[AsyncSession]
#: A failure the database or its driver reported (a constraint, a lost connection): a use case that
#: sets one unit of work aside and goes on catches this, without naming the driver.
DatabaseError: TypeAlias = DBAPIError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """Metadata of one service: all its tables live in its own schema."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine with pre-ping, so that a restarted database does not fail the next request."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (use cases return them)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_database(engine: AsyncEngine) -> None:
    """Raise unless the database answers."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
