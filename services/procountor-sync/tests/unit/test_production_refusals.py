"""Procountor-sync refuses to start in production with the sample IBAN on its invoices (issue 12, item 7; I-03)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from procountor_sync.app import create_app
from procountor_sync.settings import SAMPLE_SELLER_IBAN, ProcountorSyncSettings
from service_runtime.clock import SystemClock
from service_runtime.production import SampleValuesInProduction

#: Production values for everything the runtime checks, so that only the IBAN is in question.
SECURE: dict[str, Any] = {
    "environment": "production",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "procountor-sync",
    "kafka_sasl_password": SecretStr("pw"),
    "auth_issuer": "https://login.example.fi/realms/billing",
}


def test_production_refuses_the_sample_iban_and_names_the_setting() -> None:
    with pytest.raises(SampleValuesInProduction, match="sample-iban") as refusal:
        create_app(ProcountorSyncSettings(**SECURE), SystemClock())
    assert [v.name for v in refusal.value.refused] == ["sample-iban"]
    assert SAMPLE_SELLER_IBAN in str(refusal.value)
    assert "PROCOUNTOR_SYNC_ALLOW_IN_PRODUCTION=sample-iban" in str(refusal.value)


def test_the_sample_iban_is_recognised_however_it_is_spaced() -> None:
    spaced = " ".join(SAMPLE_SELLER_IBAN[i : i + 4] for i in range(0, len(SAMPLE_SELLER_IBAN), 4)).lower()
    with pytest.raises(SampleValuesInProduction, match="sample-iban"):
        create_app(ProcountorSyncSettings(**SECURE | {"seller_iban": spaced}), SystemClock())


def test_production_starts_with_a_real_iban() -> None:
    real = ProcountorSyncSettings(**SECURE | {"seller_iban": "FI49 5000 9420 0287 30"})
    assert create_app(real, SystemClock()).title == "Procountor sync"
