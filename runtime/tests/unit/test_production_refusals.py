"""A service in production refuses to start with sample values unless each is allowed by name (issue 12, item 7).

The runtime's own sample values (the broker listener, the token issuer) and how every service
refuses; the services' own sample values are tested with them (invoicing: the sample price list,
procountor-sync: the sample IBAN).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from service_runtime.cli import run_cli
from service_runtime.clock import Clock, SystemClock
from service_runtime.database import service_metadata
from service_runtime.host import ServiceHost
from service_runtime.production import SampleValuesInProduction
from service_runtime.settings import ServiceSettings
from service_runtime.tables import add_runtime_tables

TABLES = add_runtime_tables(service_metadata("rt_production"))
SECURE: dict[str, Any] = {
    "environment": "production",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "svc",
    "kafka_sasl_password": SecretStr("pw"),
    "auth_issuer": "https://login.example.fi/realms/billing",
}


class ExampleSettings(ServiceSettings):
    """A service's settings as every service declares them: its own environment prefix."""

    model_config = SettingsConfigDict(env_prefix="EXAMPLE_", extra="ignore", frozen=True)


def host(settings: ServiceSettings, clock: Clock | None = None) -> ServiceHost:
    return ServiceHost(name="example", settings=settings, clock=clock or SystemClock(), tables=TABLES)


def test_production_refuses_a_plaintext_broker_and_a_dev_issuer_and_names_the_way_out() -> None:
    with pytest.raises(SampleValuesInProduction) as refusal:
        host(ServiceSettings(environment="production", auth_issuer="http://127.0.0.1:8091"))
    assert {v.name for v in refusal.value.refused} == {"plaintext-kafka", "dev-token-issuer"}
    assert "ALLOW_IN_PRODUCTION=plaintext-kafka, dev-token-issuer" in str(refusal.value)


def test_production_refuses_a_missing_issuer_and_sasl_without_tls() -> None:
    settings = ServiceSettings(**SECURE | {"kafka_security_protocol": "SASL_PLAINTEXT", "auth_issuer": None})
    with pytest.raises(SampleValuesInProduction) as refusal:
        host(settings)
    assert [v.detail for v in refusal.value.refused] == [
        "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        "no AUTH_ISSUER",
    ]


def test_production_starts_with_real_values() -> None:
    assert host(ServiceSettings(**SECURE)).name == "example"


def test_the_refusal_names_the_service_s_own_environment_variable() -> None:
    with pytest.raises(SampleValuesInProduction) as refusal:
        host(ExampleSettings(**SECURE | {"auth_issuer": None}))
    assert "EXAMPLE_ALLOW_IN_PRODUCTION=dev-token-issuer" in str(refusal.value)


def test_each_sample_value_can_be_allowed_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_ENVIRONMENT", "production")
    monkeypatch.setenv("EXAMPLE_ALLOW_IN_PRODUCTION", "plaintext-kafka, dev-token-issuer")

    settings = ExampleSettings()
    assert settings.allow_in_production == {"plaintext-kafka", "dev-token-issuer"}
    assert host(settings).name == "example"


def test_development_starts_with_every_sample_value() -> None:
    assert host(ServiceSettings()).name == "example"


def test_an_unknown_name_in_the_allow_list_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="allow_in_production"):
        ServiceSettings(allow_in_production="plaintext-kafak")  # type: ignore[arg-type]


def test_the_refusal_is_what_serve_logs_before_exiting_with_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What every service's `serve` runs (run_cli), configured from the environment as in a pod.
    monkeypatch.setenv("EXAMPLE_ENVIRONMENT", "production")
    monkeypatch.setenv("EXAMPLE_LOG_FORMAT", "json")

    def create_app(settings: ServiceSettings, clock: SystemClock) -> FastAPI:
        host(settings, clock)
        raise AssertionError("a production host with sample values was built")

    code = run_cli(
        prog="example",
        settings_factory=ExampleSettings,
        app_factory=create_app,
        migrations="unused",
        argv=["serve"],
    )

    assert code == 2
    assert "refusing to start in production with sample values" in capsys.readouterr().err
