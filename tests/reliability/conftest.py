"""Fixtures of the reliability tests: the running stack's databases and the broker, read directly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.fuzzing import Databases, RawPublisher, Sent, lag
from devstack.infra import KafkaTarget

__all__ = ["Databases", "RawPublisher", "Sent", "lag"]


@pytest_asyncio.fixture(scope="package")
async def databases(database_url: str) -> AsyncIterator[Databases]:
    engine = create_async_engine(database_url)
    try:
        yield Databases(engine)
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def raw(kafka: KafkaTarget) -> AsyncIterator[RawPublisher]:
    async with RawPublisher(kafka) as publisher:
        yield publisher
