"""Kafka security settings map to the aiokafka and FastStream client configuration every client uses."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka.security import parse_security
from pydantic import SecretStr

from devstack.tls import Pki, make_test_pki
from service_runtime.kafka import broker_security, kafka_client_options, make_broker
from service_runtime.settings import ServiceSettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(**values)


def test_plaintext_needs_no_security_options() -> None:
    s = settings()
    assert kafka_client_options(s) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(s) is None


def test_scram_over_tls_maps_to_sasl_ssl_with_the_password_and_our_ca(pki: Pki) -> None:
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="metering",
        kafka_sasl_password=SecretStr("s3cret-scram"),
        kafka_ssl_cafile=pki.ca,
    )
    options = kafka_client_options(s)

    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "metering"
    assert options["sasl_plain_password"] == "s3cret-scram"
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert any("billing test CA" in str(ca.get("subject")) for ca in context.get_ca_certs())


def test_faststream_gets_the_same_options_as_the_relay_producer(pki: Pki) -> None:
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="invoicing",
        kafka_sasl_password=SecretStr("pw"),
        kafka_ssl_cafile=pki.ca,
    )
    parsed = parse_security(broker_security(s))
    direct = kafka_client_options(s)

    assert {k: v for k, v in parsed.items() if k != "ssl_context"} == {
        k: v for k, v in direct.items() if k != "ssl_context"
    }
    assert isinstance(parsed["ssl_context"], ssl.SSLContext)


def test_every_consumer_faststream_builds_carries_the_mapped_security(pki: Pki) -> None:
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="partners",
        kafka_sasl_password=SecretStr("pw"),
        kafka_ssl_cafile=pki.ca,
    )
    broker = make_broker(s, client_id="partners")
    # FastStream 0.7 builds every subscriber's AIOKafkaConsumer from this partial.
    builder: Any = broker.config.broker_config.builder
    consumer_kwargs = builder.keywords

    assert consumer_kwargs["security_protocol"] == "SASL_SSL"
    assert consumer_kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert consumer_kwargs["sasl_plain_username"] == "partners"
    assert consumer_kwargs["sasl_plain_password"] == "pw"
    assert isinstance(consumer_kwargs["ssl_context"], ssl.SSLContext)


def test_mutual_tls_maps_to_ssl_with_the_client_certificate(pki: Pki) -> None:
    s = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.client_key,
    )
    options = kafka_client_options(s)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    parsed = parse_security(broker_security(s))
    assert parsed["security_protocol"] == "SSL"
    assert isinstance(parsed["ssl_context"], ssl.SSLContext)


def test_a_wrong_client_key_fails_at_start_not_at_the_first_message(pki: Pki, tmp_path: Path) -> None:
    other = make_test_pki(tmp_path / "other")
    s = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=other.client_key,
    )
    with pytest.raises(ssl.SSLError):
        kafka_client_options(s)


def test_sasl_without_credentials_is_refused_when_a_client_is_built() -> None:
    incomplete = settings(kafka_security_protocol="SASL_SSL")  # `migrate` needs no Kafka secrets
    with pytest.raises(ValueError, match="kafka_sasl_username and kafka_sasl_password"):
        kafka_client_options(incomplete)
    with pytest.raises(ValueError, match="kafka_sasl_username and kafka_sasl_password"):
        make_broker(incomplete, client_id="x")


def test_half_a_client_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="both kafka_ssl_certfile and kafka_ssl_keyfile"):
        kafka_client_options(settings(kafka_security_protocol="SSL", kafka_ssl_certfile=pki.client_cert))


def test_the_sasl_password_never_shows_in_the_settings_repr() -> None:
    s = settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="u",
        kafka_sasl_password=SecretStr("do-not-print"),
    )
    assert "do-not-print" not in repr(s)
    assert "do-not-print" not in str(s.model_dump())


def test_security_settings_come_from_the_service_environment(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    from pydantic_settings import SettingsConfigDict

    class Settings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", frozen=True)

    monkeypatch.setenv("DEMO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DEMO_KAFKA_SASL_USERNAME", "demo")
    monkeypatch.setenv("DEMO_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("DEMO_KAFKA_SSL_CAFILE", str(pki.ca))
    s = Settings()
    assert kafka_client_options(s)["sasl_plain_username"] == "demo"
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == "pw"
