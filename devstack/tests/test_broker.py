"""The embedded Tansu broker: start, stop, failure reports, and a real consumer-group round trip."""

from __future__ import annotations

import socket

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.broker import BrokerStartError, EmbeddedBroker, answers_metadata_request
from devstack.infra import KafkaTarget, ensure_topics

pytestmark = pytest.mark.integration


def test_embedded_broker_answers_metadata_until_stopped() -> None:
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    host, port = bootstrap.rsplit(":", 1)

    assert bootstrap == broker.bootstrap
    assert host == "127.0.0.1"
    assert answers_metadata_request(host, int(port))

    broker.stop()
    broker.stop()
    assert not answers_metadata_request(host, int(port))


def test_a_broker_that_cannot_listen_fails_with_its_log() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(BrokerStartError, match="exited with code"):
            EmbeddedBroker(port=port).start()


async def test_a_produced_message_reaches_a_consumer_group_that_commits_it(
    kafka: KafkaTarget, unique_name: str
) -> None:
    topic = f"devstack.roundtrip.{unique_name}"
    await ensure_topics(kafka.bootstrap_servers, {topic: 1})
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=kafka.enable_idempotence
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"group-{unique_name}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await consumer.getone()
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()

    assert (message.key, message.value) == (b"k", b"hello")
    assert committed == message.offset + 1


async def test_ensure_topics_creates_partitions_and_accepts_existing_topics(
    kafka: KafkaTarget, unique_name: str
) -> None:
    topic = f"devstack.partitions.{unique_name}"

    await ensure_topics(kafka.bootstrap_servers, {topic: 3})
    await ensure_topics(kafka.bootstrap_servers, {topic: 3})

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await consumer.start()
    try:
        partitions = await consumer.topics()
        assert topic in partitions
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        await consumer.stop()
