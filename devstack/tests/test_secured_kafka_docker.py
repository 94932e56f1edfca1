"""The services' Kafka security settings against a real SASL_SSL (SCRAM-SHA-512) listener: Docker path only.

Where this runs: on a machine with a Docker engine, against Apache Kafka (KRaft) in a
testcontainer with a SCRAM-over-TLS listener and a throwaway CA. It is skipped, saying so, where
no Docker engine answers (this project's CI machine has none): the embedded Tansu broker's
SASL/TLS flags do not work, so there is no secured listener to connect to there. The mapping of
the settings to the client configuration is proven everywhere by runtime/tests/unit/test_kafka_security.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import SecretStr

from devstack.infra import docker_available
from service_runtime.kafka import KafkaPublisher, kafka_client_options
from service_runtime.outbox import OutgoingMessage
from service_runtime.settings import ServiceSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not docker_available(),
        reason="needs a Docker engine for the SASL_SSL Apache Kafka testcontainer (none on this machine)",
    ),
]


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[object]:
    from devstack.kafka_container import KraftKafkaContainer

    with KraftKafkaContainer().with_sasl_ssl() as container:
        yield container.secure_listener


def settings_for(listener: object, *, password: str | None = None) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap_servers=listener.bootstrap_servers,  # type: ignore[attr-defined]
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=listener.username,  # type: ignore[attr-defined]
        kafka_sasl_password=SecretStr(password or listener.password),  # type: ignore[attr-defined]
        kafka_ssl_cafile=listener.pki.ca,  # type: ignore[attr-defined]
    )


async def test_the_relay_producer_and_a_consumer_talk_scram_over_tls(secured_kafka: object) -> None:
    settings = settings_for(secured_kafka)
    topic = f"secured-{uuid.uuid4().hex[:8]}"
    publisher = KafkaPublisher(settings, client_id="secured-test")
    await publisher.start()
    try:
        await publisher.publish_all([OutgoingMessage(topic=topic, key=b"k", value=b'{"ok": true}')])
    finally:
        await publisher.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        **kafka_client_options(settings),
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.value == b'{"ok": true}'


async def test_a_wrong_scram_password_is_refused(secured_kafka: object) -> None:
    publisher = KafkaPublisher(settings_for(secured_kafka, password="not-the-password"), client_id="wrong")
    with pytest.raises((KafkaError, KafkaConnectionError)):
        await publisher.start()
    await publisher.stop()
