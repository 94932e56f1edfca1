"""Fixtures of the reliability tests: the running stack's databases and the broker, read directly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from devstack.infra import KafkaTarget


@dataclass(frozen=True)
class Sent:
    """Where one published record landed."""

    topic: str
    partition: int
    offset: int


class RawPublisher:
    """Publishes any bytes with any key, as a careless or hostile producer would (4 MB requests allowed)."""

    def __init__(self, kafka: KafkaTarget) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            enable_idempotence=kafka.enable_idempotence,
            acks="all",
            max_request_size=4 * 1024 * 1024,
        )

    async def __aenter__(self) -> RawPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, topic: str, value: bytes | None, key: bytes | None) -> Sent:
        metadata: RecordMetadata = await self._producer.send_and_wait(topic, value=value, key=key)
        return Sent(topic, metadata.partition, metadata.offset)


class Databases:
    """Reads the services' own tables (each service has its schema in the stack's database)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            return [dict(r._mapping) for r in await connection.execute(text(sql), params)]

    async def dead_letter(self, schema: str, sent: Sent) -> dict[str, Any] | None:
        rows = await self.rows(
            f'SELECT * FROM "{schema}".dead_letters WHERE topic = :t AND partition = :p AND "offset" = :o',  # noqa: S608
            t=sent.topic,
            p=sent.partition,
            o=sent.offset,
        )
        return rows[0] if rows else None

    async def processed(self, schema: str, event_ids: Sequence[str]) -> set[str]:
        rows = await self.rows(
            f'SELECT CAST(event_id AS text) AS id FROM "{schema}".processed_events '  # noqa: S608
            "WHERE CAST(event_id AS text) = ANY(:ids)",
            ids=list(event_ids),
        )
        return {r["id"] for r in rows}


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


async def lag(kafka: KafkaTarget, group: str, topics: Sequence[str]) -> int:
    """Records of `topics` the group has not committed yet (0: its committed offsets reach the end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        ends = await consumer.end_offsets(partitions)
        behind = 0
        for tp in partitions:
            committed = await consumer.committed(tp)
            behind += ends[tp] - (committed or 0)
        return behind
    finally:
        await consumer.stop()
