"""The test gateway itself, in front of the session's real broker: what it accepts, what it refuses and why, where it sends clients.

The services' clients through it are tested in runtime/tests/integration/test_secured_kafka.py;
here are the gateway's own promises, including the paths aiokafka does not take (SaslHandshake
v0 with bare SCRAM tokens, requests before authentication) driven by a raw client.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.protocol.metadata import MetadataRequest, MetadataRequest_v0, MetadataResponse_v0
from pydantic import SecretStr
from scramp import ScramClient

from devstack.infra import KafkaTarget, ensure_topics
from devstack.kafka_gateway import KafkaGateway, Refusal, server_ssl_context
from devstack.kafka_wire import API_SASL_HANDSHAKE, ERROR_NONE, Reader
from devstack.testing import wait_until
from devstack.tls import Pki, make_test_pki

pytestmark = pytest.mark.integration

USER, PASSWORD = "billing-test", "correct horse battery staple"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_test_pki(tmp_path_factory.mktemp("gateway-pki"), hostnames=("localhost", "127.0.0.1"))


@pytest.fixture(scope="module")
def sasl_ssl(kafka: KafkaTarget, pki: Pki) -> Iterator[KafkaGateway]:
    with KafkaGateway(
        kafka.bootstrap_servers, ssl_context=server_ssl_context(pki), scram_users={USER: SecretStr(PASSWORD)}
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def mutual_tls(kafka: KafkaTarget, pki: Pki) -> Iterator[KafkaGateway]:
    with KafkaGateway(kafka.bootstrap_servers, ssl_context=server_ssl_context(pki, mutual=True)) as gateway:
        yield gateway


async def refusal_after(gateway: KafkaGateway, before: int) -> Refusal:
    """The first refusal after the `before` first ones; the client may see the door close before it is noted."""

    async def noted() -> Refusal | None:
        refusals = gateway.refusals()
        return refusals[before] if len(refusals) > before else None

    return await wait_until(noted, within=5, interval=0.01, what="the gateway's refusal")


def client_tls(pki: Pki, *, certificate: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if certificate:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


def host_port(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.rsplit(":", 1)
    return host, int(port)


async def scram_connection(
    gateway: KafkaGateway, pki: Pki, *, password: str = PASSWORD, mechanism: str = "SCRAM-SHA-512"
) -> object:
    return await create_conn(
        *host_port(gateway.bootstrap),
        security_protocol="SASL_SSL",
        ssl_context=client_tls(pki),
        sasl_mechanism=mechanism,
        sasl_plain_username=USER,
        sasl_plain_password=password,
    )


async def test_metadata_through_the_gateway_names_the_gateway_not_the_broker(
    sasl_ssl: KafkaGateway, pki: Pki, kafka: KafkaTarget, unique_name: str
) -> None:
    await ensure_topics(kafka.bootstrap_servers, {unique_name: 1})
    direct = await create_conn(*host_port(kafka.bootstrap_servers))
    through = await scram_connection(sasl_ssl, pki)
    try:
        broker_view = await direct.send(MetadataRequest([unique_name]))
        gateway_view = await through.send(MetadataRequest([unique_name]))  # type: ignore[attr-defined]
    finally:
        direct.close()
        through.close()  # type: ignore[attr-defined]

    assert {(host, port) for _, host, port, *_ in broker_view.brokers} != {host_port(sasl_ssl.bootstrap)}
    assert {(host, port) for _, host, port, *_ in gateway_view.brokers} == {host_port(sasl_ssl.bootstrap)}
    assert [t[1] for t in gateway_view.topics] == [unique_name]


async def test_an_authenticated_client_is_known_by_its_scram_user(sasl_ssl: KafkaGateway, pki: Pki) -> None:
    before = len(sasl_ssl.principals())
    connection = await scram_connection(sasl_ssl, pki)
    connection.close()  # type: ignore[attr-defined]

    assert sasl_ssl.principals()[before:] == ("User:billing-test",)


async def test_a_wrong_password_is_refused_and_the_reason_names_no_password(
    sasl_ssl: KafkaGateway, pki: Pki
) -> None:
    before = len(sasl_ssl.refusals())

    with pytest.raises(
        SaslAuthenticationFailed, match="invalid credentials with SASL mechanism SCRAM-SHA-512"
    ):
        await scram_connection(sasl_ssl, pki, password="Tr0ub4dor&3")

    refusal = await refusal_after(sasl_ssl, before)
    assert refusal.stage == "sasl"
    assert "billing-test" in refusal.reason
    assert "Tr0ub4dor&3" not in refusal.reason
    assert PASSWORD not in refusal.reason


async def test_a_mechanism_other_than_scram_sha_512_is_refused(sasl_ssl: KafkaGateway, pki: Pki) -> None:
    before = len(sasl_ssl.refusals())

    with pytest.raises(UnsupportedSaslMechanismError):
        await scram_connection(sasl_ssl, pki, mechanism="SCRAM-SHA-256")

    refusal = await refusal_after(sasl_ssl, before)
    assert refusal.reason == "mechanism 'SCRAM-SHA-256' is not enabled (SCRAM-SHA-512 is)"


async def test_plaintext_to_the_tls_port_is_refused_in_the_tls_handshake(sasl_ssl: KafkaGateway) -> None:
    before = len(sasl_ssl.refusals())

    with pytest.raises(KafkaConnectionError):
        await create_conn(*host_port(sasl_ssl.bootstrap), request_timeout_ms=5000)

    refusal = await refusal_after(sasl_ssl, before)
    assert (refusal.stage, refusal.reason.startswith("TLS handshake failed")) == ("tls", True)


async def test_mutual_tls_knows_a_client_by_its_certificate_and_refuses_one_without(
    mutual_tls: KafkaGateway, pki: Pki
) -> None:
    accepted = await create_conn(
        *host_port(mutual_tls.bootstrap),
        security_protocol="SSL",
        ssl_context=client_tls(pki, certificate=True),
    )
    accepted.close()
    assert mutual_tls.principals()[-1] == "User:CN=billing-test"
    before = len(mutual_tls.refusals())

    with pytest.raises((KafkaConnectionError, ConnectionError)):
        await create_conn(
            *host_port(mutual_tls.bootstrap),
            security_protocol="SSL",
            ssl_context=client_tls(pki),
            request_timeout_ms=5000,
        )
    refusal = await refusal_after(mutual_tls, before)
    assert refusal.stage == "tls"
    assert "CERTIFICATE" in refusal.reason


async def test_mutual_tls_refuses_a_certificate_from_another_ca(
    mutual_tls: KafkaGateway, pki: Pki, tmp_path: Path
) -> None:
    stranger = make_test_pki(tmp_path, hostnames=("localhost", "127.0.0.1"))
    context = client_tls(pki)
    context.load_cert_chain(stranger.client_cert, stranger.client_key)
    before = len(mutual_tls.refusals())

    with pytest.raises((KafkaConnectionError, ConnectionError)):
        await create_conn(
            *host_port(mutual_tls.bootstrap),
            security_protocol="SSL",
            ssl_context=context,
            request_timeout_ms=5000,
        )

    refusal = await refusal_after(mutual_tls, before)
    assert refusal.stage == "tls"
    assert "CERTIFICATE_VERIFY_FAILED" in refusal.reason


class RawClient:
    """Kafka frames over TLS by hand, for the exchanges aiokafka never makes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, gateway: KafkaGateway, pki: Pki) -> RawClient:
        return cls(*await asyncio.open_connection(*host_port(gateway.bootstrap), ssl=client_tls(pki)))

    async def send(self, payload: bytes) -> None:
        self.writer.write(struct.pack(">i", len(payload)) + payload)
        await self.writer.drain()

    async def receive(self) -> bytes:
        (size,) = struct.unpack(">i", await self.reader.readexactly(4))
        return await self.reader.readexactly(size)

    async def closed_by_peer(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    def close(self) -> None:
        self.writer.close()


def handshake_v0(mechanism: str) -> bytes:
    return (
        struct.pack(">hhih", API_SASL_HANDSHAKE, 0, 1, -1)
        + struct.pack(">h", len(mechanism))
        + mechanism.encode()
    )


async def test_sasl_handshake_v0_authenticates_with_bare_scram_tokens_then_relays(
    sasl_ssl: KafkaGateway, pki: Pki
) -> None:
    client = await RawClient.open(sasl_ssl, pki)
    try:
        await client.send(handshake_v0("SCRAM-SHA-512"))
        answer = Reader(await client.receive())
        assert (answer.int32(), answer.int16()) == (1, ERROR_NONE)

        scram = ScramClient(["SCRAM-SHA-512"], USER, PASSWORD)
        await client.send(scram.get_client_first().encode())
        scram.set_server_first((await client.receive()).decode())
        await client.send(scram.get_client_final().encode())
        # Raises unless the gateway proved that it knows the password too.
        scram.set_server_final((await client.receive()).decode())

        request = MetadataRequest_v0([])
        await client.send(
            request.build_request_header(correlation_id=2, client_id="raw").encode() + request.encode()
        )
        payload = await client.receive()
    finally:
        client.close()

    assert struct.unpack(">i", payload[:4])[0] == 2
    metadata = MetadataResponse_v0.decode(payload[4:])
    assert {(host, port) for _, host, port in metadata.brokers} == {host_port(sasl_ssl.bootstrap)}


async def test_sasl_handshake_v0_with_a_wrong_password_just_closes(sasl_ssl: KafkaGateway, pki: Pki) -> None:
    before = len(sasl_ssl.refusals())
    client = await RawClient.open(sasl_ssl, pki)
    try:
        await client.send(handshake_v0("SCRAM-SHA-512"))
        await client.receive()
        scram = ScramClient(["SCRAM-SHA-512"], USER, "wrong")
        await client.send(scram.get_client_first().encode())
        scram.set_server_first((await client.receive()).decode())
        await client.send(scram.get_client_final().encode())

        assert await client.closed_by_peer()
    finally:
        client.close()
    assert (await refusal_after(sasl_ssl, before)).stage == "sasl"


async def test_a_request_before_authentication_closes_the_connection(
    sasl_ssl: KafkaGateway, pki: Pki
) -> None:
    before = len(sasl_ssl.refusals())
    client = await RawClient.open(sasl_ssl, pki)
    try:
        request = MetadataRequest_v0([])
        await client.send(
            request.build_request_header(correlation_id=1, client_id="raw").encode() + request.encode()
        )

        assert await client.closed_by_peer()
    finally:
        client.close()
    refusal = await refusal_after(sasl_ssl, before)
    assert refusal.reason == "request api_key=3 v0 before authentication"


async def test_an_unreachable_broker_is_a_refusal_that_says_so(pki: Pki) -> None:
    from devstack.broker import free_port

    with KafkaGateway(f"127.0.0.1:{free_port()}", ssl_context=server_ssl_context(pki)) as gateway:
        with pytest.raises((KafkaConnectionError, ConnectionError)):
            await create_conn(
                *host_port(gateway.bootstrap),
                security_protocol="SSL",
                ssl_context=client_tls(pki),
                request_timeout_ms=5000,
            )
        assert (await refusal_after(gateway, 0)).stage == "upstream"


def test_the_gateway_relays_to_one_broker_only() -> None:
    with pytest.raises(ValueError, match="one broker"):
        KafkaGateway("127.0.0.1:9092,127.0.0.1:9093")


def test_stopping_twice_is_harmless_and_a_stopped_gateway_has_no_address(kafka: KafkaTarget) -> None:
    gateway = KafkaGateway(kafka.bootstrap_servers)
    gateway.start()
    gateway.stop()
    gateway.stop()

    with pytest.raises(RuntimeError, match="not running"):
        _ = gateway.bootstrap
