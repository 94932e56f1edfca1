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

from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.infra import KafkaTarget, ensure_topics
from devstack.testing import wait_until
from service_runtime.clock import FixedClock
from service_runtime.kafka import KafkaPublisher
from service_runtime.metrics import ServiceMetrics
from service_runtime.outbox import OutboxRelay, OutgoingMessage, enqueue, outgoing
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
