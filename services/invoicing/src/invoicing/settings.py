"""Invoicing settings (env prefix `INVOICING_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from service_runtime.settings import ServiceSettings


class InvoicingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INVOICING_", extra="ignore", frozen=True)

    price_list_file: Path | None = Field(
        default=None, description="Price book YAML (B-07). Unset: the bundled SAMPLE price list."
    )
    vat_rates_file: Path | None = Field(
        default=None,
        description=(
            "VAT rates YAML (B-07, B-18): effective-dated rates per VAT category. Unset: the shipped "
            "Finnish rates and their history (`price_lists/vat_rates.yaml`)."
        ),
    )
    allow_sample_prices: bool = Field(
        default=True,
        description="Refuse to start on the bundled sample prices when false (set false in production).",
    )
    metering_url: str | None = Field(
        default=None,
        description="Base URL of metering's API, for invoice specifications (B-19), e.g. `http://metering`.",
    )
    billing_batch_size: int = Field(
        default=1000,
        ge=1,
        le=5000,
        description=(
            "Payers billed per transaction in a billing run. Each holds one advisory lock per payer: "
            "batch size × workers (× concurrent runs) must fit PostgreSQL's lock table "
            "(max_locks_per_transaction × max_connections, 6,400 by default)."
        ),
    )
    billing_workers: int = Field(
        default=2, ge=1, le=16, description="Batches a billing run bills at once (each its own transaction)."
    )
