"""OutboxRelay on the real broker and database: id order, delete only after the broker's acknowledgement, retry."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import insert, select

from billing_contracts.base import wire_json
from billing_contracts.registry import FACT_MAX_BYTES
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.infra import KafkaTarget, ensure_topics
from devstack.testing import wait_until
from service_runtime.clock import FixedClock
from service_runtime.kafka import KafkaPublisher
from service_runtime.metrics import ServiceMetrics
from service_runtime.outbox import (
    MessageTooLargeError,
    OutboxRelay,
    OutgoingMessage,
    UnpublishableError,
    enqueue,
    outgoing,
)
from service_runtime.settings import ServiceSettings

from .conftest import RuntimeTestService

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def voucher(number: int) -> VoucherCreatedV1:
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="test",
        environment_id="env-1",
        voucher_id=f"v{number}",
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=NOW,
    )


@pytest_asyncio.fixture
async def topic(kafka: KafkaTarget, unique_name: str) -> str:
    """A topic of this test's own, with one partition, so that the broker keeps one total order."""
    await ensure_topics(kafka.bootstrap_servers, {unique_name: 1})
    return unique_name


@pytest_asyncio.fixture
async def publisher(kafka: KafkaTarget) -> AsyncIterator[KafkaPublisher]:
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka.bootstrap_servers, kafka_enable_idempotence=kafka.enable_idempotence
    )
    publisher = KafkaPublisher(settings, client_id="rt-test-relay")
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


async def read_back(
    kafka: KafkaTarget, topic: str, *, count: int, within: float = 20.0
) -> list[tuple[bytes, dict[str, bytes]]]:
    """Values and headers of the first `count` records (assigned, not joined: no group to wait for)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        records: list[tuple[bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + within
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500)
            records.extend((r.value, dict(r.headers)) for r in batch.get(partition, []))
        return records
    finally:
        await consumer.stop()


async def fill_outbox(service: RuntimeTestService, messages: Sequence[VoucherCreatedV1], topic: str) -> None:
    async with service.sessions.begin() as session:
        await enqueue(
            session, service.tables.outbox, [outgoing(m, topic=topic) for m in messages], FixedClock(NOW)
        )


class AcknowledgementWitness:
    """Delegates to the real publisher and notes how many rows were in the outbox once the broker acknowledged."""

    def __init__(self, publisher: KafkaPublisher, service: RuntimeTestService) -> None:
        self._publisher = publisher
        self._service = service
        self.rows_at_acknowledgement: list[int] = []

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._publisher.publish_all(messages)
        self.rows_at_acknowledgement.append(await self._service.rows(self._service.tables.outbox))


class BrokerDownOnce:
    """Fails its first call as a broker that cannot be reached would, then delegates."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher
        self.attempts = 0

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("broker unreachable")
        await self._publisher.publish_all(messages)


async def test_rows_are_published_in_id_order_and_deleted_only_after_the_broker_acknowledged(
    service: RuntimeTestService, kafka: KafkaTarget, topic: str, publisher: KafkaPublisher
) -> None:
    messages = [voucher(n) for n in range(5)]
    # Two transactions: ids keep the commit order across them too.
    await fill_outbox(service, messages[:3], topic)
    await fill_outbox(service, messages[3:], topic)
    witness = AcknowledgementWitness(publisher, service)
    relay = OutboxRelay(
        sessions=service.sessions,
        table=service.tables.outbox,
        publisher=witness,
        metrics=ServiceMetrics("rt_test"),
        clock=FixedClock(NOW),
        batch_size=2,
    )

    published = [await relay.publish_pending() for _ in range(4)]

    assert published == [2, 2, 1, 0]
    # Each batch was still in the outbox when the broker acknowledged it.
    assert witness.rows_at_acknowledgement == [5, 3, 1]
    assert await service.rows(service.tables.outbox) == 0
    records = await read_back(kafka, topic, count=5)
    assert [VoucherCreatedV1.model_validate_json(value).event_id for value, _ in records] == [
        m.event_id for m in messages
    ]
    assert [headers for _, headers in records] == [
        {"message_type": b"usage.voucher-created", "event_id": str(m.event_id).encode()} for m in messages
    ]


async def test_rows_stay_in_the_outbox_when_publishing_fails_and_go_out_on_the_next_round(
    service: RuntimeTestService, kafka: KafkaTarget, topic: str, publisher: KafkaPublisher
) -> None:
    messages = [voucher(n) for n in range(3)]
    await fill_outbox(service, messages, topic)
    flaky = BrokerDownOnce(publisher)
    relay = OutboxRelay(
        sessions=service.sessions,
        table=service.tables.outbox,
        publisher=flaky,
        metrics=ServiceMetrics("rt_test"),
        clock=FixedClock(NOW),
        idle_seconds=0.1,
    )

    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert await service.rows(service.tables.outbox) == 3

    running = asyncio.create_task(relay.run())
    try:

        async def outbox_empty() -> bool:
            return await service.rows(service.tables.outbox) == 0

        await wait_until(outbox_empty, within=10, what="relay to empty the outbox")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    assert flaky.attempts >= 2
    # One more than expected would show up here if the failed round had half-published.
    records = await read_back(kafka, topic, count=4, within=2)
    assert [VoucherCreatedV1.model_validate_json(value).event_id for value, _ in records] == [
        m.event_id for m in messages
    ]


# Issue 8: the outbox never holds a row it cannot publish, and one row never blocks the others.


async def test_enqueue_refuses_a_message_larger_than_its_topic_accepts_and_writes_nothing(
    service: RuntimeTestService, topic: str
) -> None:
    big = OutgoingMessage(topic=topic, key=b"env-1", value=b"x" * (FACT_MAX_BYTES + 1))

    with pytest.raises(MessageTooLargeError, match=f"larger than the 65,536 bytes {topic} accepts"):
        async with service.sessions.begin() as session:
            await enqueue(session, service.tables.outbox, [big], FixedClock(NOW))

    assert await service.rows(service.tables.outbox) == 0


async def outbox_rows(service: RuntimeTestService) -> list[dict[str, object]]:
    t = service.tables.outbox
    async with service.sessions() as session:
        return [dict(r._mapping) for r in await session.execute(select(t).order_by(t.c.id))]


async def test_a_row_too_large_to_publish_is_parked_with_its_reason_and_the_rows_after_it_go_out(
    service: RuntimeTestService, kafka: KafkaTarget, topic: str, publisher: KafkaPublisher
) -> None:
    messages = [voucher(n) for n in range(3)]
    await fill_outbox(service, messages[:1], topic)
    # Written as the relay found it on main: a 2 MB dead letter no producer could send.
    async with service.sessions.begin() as session:
        await session.execute(
            insert(service.tables.outbox).values(
                topic=topic, key=b"k", value=b"x" * 2_000_000, headers={"event_id": "big"}, created_at=NOW
            )
        )
    await fill_outbox(service, messages[1:], topic)
    metrics = ServiceMetrics("rt_test")
    relay = OutboxRelay(
        sessions=service.sessions,
        table=service.tables.outbox,
        publisher=publisher,
        metrics=metrics,
        clock=FixedClock(NOW),
    )

    assert await relay.publish_pending() == 4
    assert await relay.publish_pending() == 0

    records = await read_back(kafka, topic, count=3)
    assert [VoucherCreatedV1.model_validate_json(value).event_id for value, _ in records] == [
        m.event_id for m in messages
    ]
    [parked] = await outbox_rows(service)
    assert parked["parked_at"] == NOW
    assert (
        parked["parked_reason"]
        == f"a message of 2,000,012 bytes is larger than the 65,536 bytes {topic} accepts"
    )
    assert metrics.registry.get_sample_value("outbox_parked_total", {"topic": topic}) == 1


class RefusesOne:
    """The broker refuses one message of the batch for good and acknowledges the others."""

    def __init__(self, publisher: KafkaPublisher, refused_value: bytes) -> None:
        self._publisher = publisher
        self._refused_value = refused_value

    async def publish_all(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._publisher.publish_all([m for m in messages if m.value != self._refused_value])
        refused = [i for i, m in enumerate(messages) if m.value == self._refused_value]
        if refused:
            raise UnpublishableError(
                dict.fromkeys(refused, "the broker refused it for good: InvalidTopicError")
            )


async def test_a_row_the_broker_refuses_for_good_is_parked_and_the_others_are_deleted_as_published(
    service: RuntimeTestService, kafka: KafkaTarget, topic: str, publisher: KafkaPublisher
) -> None:
    messages = [voucher(n) for n in range(3)]
    await fill_outbox(service, messages, topic)
    refused = wire_json(messages[1])
    relay = OutboxRelay(
        sessions=service.sessions,
        table=service.tables.outbox,
        publisher=RefusesOne(publisher, refused),
        metrics=ServiceMetrics("rt_test"),
        clock=FixedClock(NOW),
    )

    assert await relay.publish_pending() == 3
    assert await relay.publish_pending() == 0

    [parked] = await outbox_rows(service)
    assert parked["value"] == refused
    assert parked["parked_reason"] == "the broker refused it for good: InvalidTopicError"
    records = await read_back(kafka, topic, count=2)
    assert [VoucherCreatedV1.model_validate_json(value).event_id for value, _ in records] == [
        messages[0].event_id,
        messages[2].event_id,
    ]
