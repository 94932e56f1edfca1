"""Invoicing refuses to start in production with the bundled sample price list unless allowed (issue 12, item 7)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from invoicing.app import create_app
from invoicing.settings import InvoicingSettings
from service_runtime.clock import SystemClock
from service_runtime.production import SampleValuesInProduction

#: Production values for everything the runtime checks, so that only the price list is in question.
SECURE: dict[str, Any] = {
    "environment": "production",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "invoicing",
    "kafka_sasl_password": SecretStr("pw"),
    "auth_issuer": "https://login.example.fi/realms/billing",
}


def test_production_refuses_the_sample_price_list_and_names_the_way_out() -> None:
    with pytest.raises(SampleValuesInProduction, match="sample-prices") as refusal:
        create_app(InvoicingSettings(**SECURE), SystemClock())
    assert [v.name for v in refusal.value.refused] == ["sample-prices"]
    assert "INVOICING_ALLOW_IN_PRODUCTION=sample-prices" in str(refusal.value)


def test_production_starts_on_the_sample_price_list_when_it_is_allowed_by_name() -> None:
    allowed = InvoicingSettings(**SECURE | {"allow_in_production": frozenset({"sample-prices"})})
    assert create_app(allowed, SystemClock()).title == "Invoicing"
