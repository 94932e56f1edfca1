"""Procountor-sync settings (env prefix `PROCOUNTOR_SYNC_`); credentials are secrets (I-06)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from billing_contracts.contracts import BillingChannel
from service_runtime.production import SampleValue
from service_runtime.settings import ServiceSettings

#: The IBAN of the Procountor emulator's examples: invoices must never ask customers to pay it.
SAMPLE_SELLER_IBAN = "FI2112345600000785"


class ProcountorSyncSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROCOUNTOR_SYNC_", extra="ignore", frozen=True)

    run_consumers: bool = Field(
        default=True,
        description="False: this replica only delivers and polls (more delivery capacity, no Kafka intake).",
    )
    procountor_base_url: str = Field(
        default="http://127.0.0.1:8090/api",
        description="Procountor API base, e.g. https://api.procountor.com/api.",
    )
    procountor_login_url: str | None = Field(
        default=None,
        description="Procountor's key-login page (I-06); default: the API host's /keylogin.",
    )
    procountor_client_id: SecretStr = Field(default=SecretStr("billing-backbone-local"))
    procountor_client_secret: SecretStr = Field(default=SecretStr(""), description="Secret; never logged.")
    procountor_api_key: SecretStr = Field(
        default=SecretStr(""),
        description="Secret; never logged. Empty: the key stored by the key-login flow is used (I-06).",
    )
    credential_key: SecretStr = Field(
        default=SecretStr(""),
        description="Fernet key (urlsafe base64, 32 bytes) that encrypts the key-login API key in the database.",
    )
    keylogin_redirect_uri: str = Field(
        default="http://127.0.0.1:8080/procountor/key-login/callback",
        description="Our callback registered at Procountor for the key-login flow.",
    )
    seller_iban: str = Field(
        default="FI2112345600000785", description="Our bank account printed on invoices."
    )
    vat_status: int = Field(default=1, description="Procountor VAT status code of domestic sales.")
    rate_limit_per_second: int = Field(
        default=20, ge=1, description="Requests per second per API client, shared by every replica."
    )
    delivery_concurrency: int = Field(
        default=16, ge=1, description="Deliveries one replica works on at once."
    )
    delivery_lease_seconds: float = Field(
        default=15.0, gt=0, description="A dead replica's deliveries are taken up again after this long."
    )
    delivery_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often idle workers look for work."
    )
    retry_initial_seconds: float = Field(default=5.0, gt=0, description="First wait after a failed attempt.")
    retry_max_seconds: float = Field(
        default=300.0, gt=0, description="Longest wait between attempts (the cap)."
    )
    request_attempts: int = Field(
        default=3, ge=1, description="Attempts of one HTTP request inside one delivery attempt."
    )
    request_backoff_max_seconds: float = Field(default=4.0, gt=0)
    poll_interval_seconds: float = Field(
        default=60.0, gt=0, description="Polling backstop: payments, customers, products, held invoices."
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="HMAC secret of Procountor's webhooks; empty: webhooks refused."
    )
    webhook_public_url: str | None = Field(
        default=None, description="Our webhook URL; when set, the subscription is registered at start."
    )
    webhook_tolerance_seconds: float = Field(default=300.0, gt=0, description="Replay window of a webhook.")
    hold_channels: list[BillingChannel] = Field(
        default_factory=list,
        description="Invoices by these channels wait for finance's approval in Procountor.",
    )
    hold_first_invoices: bool = Field(
        default=False, description="A payer's first invoice waits for approval."
    )
    first_invoice_einvoice: bool = Field(
        default=True,
        description="B-20: a first invoice goes by e-invoice when the address was ordered through us.",
    )
    vendor_einvoice_operators: list[str] = Field(
        default_factory=lambda: ["003723327487"],
        description="Operators of e-invoice addresses ordered through the vendor (Apix for Procountor).",
    )
    file_payers: list[str] = Field(
        default_factory=list, description="Business IDs whose API is not enabled: invoices by the I-05 file."
    )
    payroll_salary_type_code: str = Field(default="1004", description="Salary type of hours (I-04).")

    def sample_values(self) -> list[SampleValue]:
        found = super().sample_values()
        if self.seller_iban.replace(" ", "").upper() == SAMPLE_SELLER_IBAN:
            found.append(SampleValue("sample-iban", f"SELLER_IBAN is the sample {SAMPLE_SELLER_IBAN}"))
        return found
