"""A service in production refuses to start with sample values unless each is allowed by name (issue 12, item 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from invoicing.app import create_app as create_invoicing
from invoicing.settings import InvoicingSettings
from procountor_sync.app import create_app as create_sync
from procountor_sync.settings import ProcountorSyncSettings
from service_runtime.clock import SystemClock
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


def host(settings: ServiceSettings) -> ServiceHost:
    return ServiceHost(name="metering", settings=settings, clock=SystemClock(), tables=TABLES)


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
    assert host(ServiceSettings(**SECURE)).name == "metering"


def test_each_sample_value_can_be_allowed_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERING_ENVIRONMENT", "production")
    monkeypatch.setenv("METERING_ALLOW_IN_PRODUCTION", "plaintext-kafka, dev-token-issuer")
    from metering.settings import MeteringSettings

    settings = MeteringSettings()
    assert settings.allow_in_production == {"plaintext-kafka", "dev-token-issuer"}
    assert host(settings).name == "metering"


def test_development_starts_with_every_sample_value() -> None:
    assert host(ServiceSettings()).name == "metering"


def test_procountor_sync_refuses_the_sample_iban_in_production() -> None:
    with pytest.raises(SampleValuesInProduction, match="sample-iban"):
        create_sync(ProcountorSyncSettings(**SECURE), SystemClock())
    real = ProcountorSyncSettings(**SECURE | {"seller_iban": "FI49 5000 9420 0287 30"})
    assert create_sync(real, SystemClock()).title == "Procountor sync"


def test_invoicing_refuses_the_sample_price_list_in_production_unless_allowed() -> None:
    with pytest.raises(SampleValuesInProduction, match="sample-prices"):
        create_invoicing(InvoicingSettings(**SECURE), SystemClock())
    allowed = InvoicingSettings(**SECURE | {"allow_in_production": frozenset({"sample-prices"})})
    assert create_invoicing(allowed, SystemClock()).title == "Invoicing"


def test_an_unknown_name_in_the_allow_list_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="allow_in_production"):
        ServiceSettings(allow_in_production="plaintext-kafak")  # type: ignore[arg-type]


def test_the_refusal_is_what_serve_prints_before_exiting(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [str(Path(sys.executable).parent / "partners"), "serve"],
        env={"PARTNERS_ENVIRONMENT": "production", "PARTNERS_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "refusing to start in production with sample values" in result.stderr
