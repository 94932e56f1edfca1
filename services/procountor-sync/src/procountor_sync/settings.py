"""Procountor-sync settings (env prefix `PROCOUNTOR_SYNC_`); credentials are secrets (I-06)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from service_runtime.production import SampleValue
from service_runtime.settings import ServiceSettings

#: The IBAN of the Procountor emulator's examples: invoices must never ask customers to pay it.
SAMPLE_SELLER_IBAN = "FI2112345600000785"


class ProcountorSyncSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROCOUNTOR_SYNC_", extra="ignore", frozen=True)

    procountor_base_url: str = Field(
        default="http://127.0.0.1:8090/api",
        description="Procountor API base, e.g. https://api.procountor.com/api.",
    )
    procountor_client_id: SecretStr = Field(default=SecretStr("billing-backbone-local"))
    procountor_client_secret: SecretStr = Field(default=SecretStr(""), description="Secret; never logged.")
    procountor_api_key: SecretStr = Field(default=SecretStr(""), description="Secret; never logged.")
    seller_iban: str = Field(
        default=SAMPLE_SELLER_IBAN,
        description="Our bank account printed on invoices; production refuses the sample default.",
    )
    vat_status: int = Field(default=1, description="Procountor VAT status code of domestic sales.")
    delivery_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the deliverer looks for work."
    )

    def sample_values(self) -> list[SampleValue]:
        found = super().sample_values()
        if self.seller_iban.replace(" ", "").upper() == SAMPLE_SELLER_IBAN:
            found.append(SampleValue("sample-iban", f"SELLER_IBAN is the sample {SAMPLE_SELLER_IBAN}"))
        return found
