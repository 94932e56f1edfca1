"""The services' Kafka clients against secured listeners: SCRAM-SHA-512 over TLS, mutual TLS, and refusals (issue 12, item 2).

Every client here is built the way the services build theirs (`service_runtime.kafka`: the relay's
`KafkaPublisher`, FastStream's consumers from `make_broker`, a whole `ServiceHost`). The listeners
come from the `secured_kafka` fixture: Apache Kafka's own SASL_SSL and mutual-TLS listeners in a
container where Docker runs, else the devstack test gateway in front of the embedded broker (the
same tests either way; nothing is skipped). Each refusal is paired with its acceptance on the same
listener, so that a listener that is merely down cannot pass for one that refuses.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faststream.kafka.annotations import KafkaMessage
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import wire_json
from billing_contracts.usage import DocumentKind, VoucherCreatedV1
from devstack.infra import SecuredKafka, ensure_topics
from devstack.testing import running
from devstack.tls import make_test_pki
from service_runtime.clock import FixedClock
from service_runtime.consumer import Rejection
from service_runtime.host import ServiceHost, create_service_app
from service_runtime.kafka import KafkaPublisher, kafka_client_options, make_broker
from service_runtime.outbox import OutgoingMessage, enqueue, outgoing
from service_runtime.settings import ServiceSettings

from .conftest import RuntimeTestService

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def scram_over_tls(listener: SecuredKafka, *, password: str | None = None, **more: Any) -> ServiceSettings:
    """What a service is given in production: KAFKA_SECURITY_PROTOCOL=SASL_SSL, the Strimzi user, the cluster CA."""
    return ServiceSettings(
        kafka_bootstrap_servers=listener.sasl_ssl_bootstrap,
        kafka_enable_idempotence=listener.enable_idempotence,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=listener.username,
        kafka_sasl_password=SecretStr(password) if password else listener.password,
        kafka_ssl_cafile=listener.pki.ca,
        **more,
    )


def mutual_tls(
    listener: SecuredKafka, *, certificate: tuple[Path, Path] | None = None, **more: Any
) -> ServiceSettings:
    """KAFKA_SECURITY_PROTOCOL=SSL with the KafkaUser's `user.crt`/`user.key` (or `certificate`)."""
    cert, key = certificate or (listener.pki.client_cert, listener.pki.client_key)
    return ServiceSettings(
        kafka_bootstrap_servers=listener.mutual_tls_bootstrap,
        kafka_enable_idempotence=listener.enable_idempotence,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=listener.pki.ca,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
        **more,
    )


SECURITIES: dict[str, Callable[[SecuredKafka], ServiceSettings]] = {
    "scram-sha-512 over tls": scram_over_tls,
    "mutual tls": mutual_tls,
}


async def connect(settings: ServiceSettings) -> None:
    """Open one connection as every aiokafka client does (versions, then SASL), and close it."""
    host, port = settings.kafka_bootstrap_servers.rsplit(":", 1)
    connection = await create_conn(
        host, int(port), request_timeout_ms=10_000, **kafka_client_options(settings)
    )
    connection.close()


async def publish(settings: ServiceSettings, topic: str, *values: bytes) -> None:
    publisher = KafkaPublisher(settings, client_id="secured-relay")
    await publisher.start()
    try:
        await publisher.publish_all([OutgoingMessage(topic=topic, key=b"k", value=v) for v in values])
    finally:
        await publisher.stop()


async def refused_at_start(settings: ServiceSettings) -> KafkaConnectionError:
    """Start the relay's producer, which must fail to bootstrap; give the error."""
    publisher = KafkaPublisher(settings, client_id="refused")
    try:
        with pytest.raises(KafkaConnectionError) as refusal:
            await publisher.start()
    finally:
        await publisher.stop()
    return refusal.value


@asynccontextmanager
async def faststream_consumer(settings: ServiceSettings, topic: str) -> AsyncIterator[asyncio.Queue[bytes]]:
    """A subscriber on the services' own FastStream broker (`make_broker`); what it receives goes to the queue.

    Without a consumer group: joining one costs the embedded broker five seconds, and the service
    host's test below consumes in a group (coordinator, join, offset commits) over the listener.
    """
    broker = make_broker(settings, client_id="secured-consumer")
    received: asyncio.Queue[bytes] = asyncio.Queue()

    @broker.subscriber(topic, auto_offset_reset="earliest")
    async def handle(message: KafkaMessage) -> None:
        await received.put(message.body)

    await broker.start()
    try:
        yield received
    finally:
        await broker.stop()


@pytest.mark.parametrize("security", SECURITIES)
async def test_the_relay_producer_and_a_faststream_consumer_talk_through_a_secured_listener(
    secured_kafka: SecuredKafka, security: str, unique_name: str
) -> None:
    settings = SECURITIES[security](secured_kafka)
    await ensure_topics(
        settings.kafka_bootstrap_servers, {unique_name: 2}, client_options=kafka_client_options(settings)
    )

    await publish(settings, unique_name, b'{"n": 1}', b'{"n": 2}')
    async with faststream_consumer(settings, unique_name) as received:
        values = {await asyncio.wait_for(received.get(), 30) for _ in range(2)}

    assert values == {b'{"n": 1}', b'{"n": 2}'}


async def test_a_wrong_scram_password_is_an_authentication_error(secured_kafka: SecuredKafka) -> None:
    await connect(scram_over_tls(secured_kafka))

    with pytest.raises(SaslAuthenticationFailed):
        await connect(scram_over_tls(secured_kafka, password="not-the-password"))
    await refused_at_start(scram_over_tls(secured_kafka, password="not-the-password"))


async def test_an_unknown_scram_user_is_the_same_authentication_error(secured_kafka: SecuredKafka) -> None:
    settings = scram_over_tls(secured_kafka).model_copy(update={"kafka_sasl_username": "nobody"})

    with pytest.raises(SaslAuthenticationFailed):
        await connect(settings)


async def test_mutual_tls_refuses_a_client_without_a_certificate(secured_kafka: SecuredKafka) -> None:
    await connect(mutual_tls(secured_kafka))
    without = mutual_tls(secured_kafka).model_copy(
        update={"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}
    )

    with pytest.raises((KafkaConnectionError, ConnectionError)):
        await connect(without)
    await refused_at_start(without)


async def test_mutual_tls_refuses_a_certificate_of_a_ca_it_does_not_trust(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    stranger = make_test_pki(tmp_path / "stranger", client=secured_kafka.username)
    settings = mutual_tls(secured_kafka, certificate=(stranger.client_cert, stranger.client_key))

    with pytest.raises((KafkaConnectionError, ConnectionError)):
        await connect(settings)
    await refused_at_start(settings)


@pytest.mark.parametrize("listener", ["sasl_ssl_bootstrap", "mutual_tls_bootstrap"])
async def test_plaintext_to_a_tls_listener_is_refused(secured_kafka: SecuredKafka, listener: str) -> None:
    plaintext = ServiceSettings(
        kafka_bootstrap_servers=getattr(secured_kafka, listener),
        kafka_enable_idempotence=secured_kafka.enable_idempotence,
    )

    with pytest.raises((KafkaConnectionError, ConnectionError)):
        await connect(plaintext)
    await refused_at_start(plaintext)


async def test_a_service_host_consumes_and_relays_over_scram_and_tls(
    secured_kafka: SecuredKafka, database_url: str, service: RuntimeTestService, unique_name: str
) -> None:
    topic_in, topic_out = f"{unique_name}-in", f"{unique_name}-out"
    settings = scram_over_tls(secured_kafka, database_url=SecretStr(database_url), outbox_idle_seconds=0.1)
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        {topic_in: 1, topic_out: 1},
        client_options=kafka_client_options(settings),
    )
    clock = FixedClock(NOW)

    async def forward(session: AsyncSession, messages: Sequence[VoucherCreatedV1]) -> Sequence[Rejection]:
        await enqueue(session, service.tables.outbox, [outgoing(m, topic=topic_out) for m in messages], clock)
        return []

    host = ServiceHost(name="metering", settings=settings, clock=clock, tables=service.tables)
    host.consume({topic_in: VoucherCreatedV1}, forward, group=f"metering-{topic_in}")
    app = create_service_app(host, title="secured", description="secured", routers=[], policies={})
    message = VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="test",
        environment_id="env-1",
        voucher_id="V1",
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=NOW,
    )
    reader = AIOKafkaConsumer(
        topic_out,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        **kafka_client_options(settings),
    )
    await reader.start()
    try:
        async with running(app):
            publisher = KafkaPublisher(settings, client_id="outside")
            await publisher.start()
            try:
                await publisher.publish_all(
                    [OutgoingMessage(topic=topic_in, key=message.kafka_key(), value=wire_json(message))]
                )
            finally:
                await publisher.stop()
            record = await asyncio.wait_for(reader.getone(), timeout=30)
    finally:
        await reader.stop()

    assert json.loads(record.value)["event_id"] == str(message.event_id)
