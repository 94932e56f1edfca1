"""Partners settings (env prefix `PARTNERS_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from service_runtime.settings import ServiceSettings


class PartnersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERS_", extra="ignore", frozen=True)

    kafka_consumer_max_records: int = Field(
        default=2000,
        ge=1,
        description="Contract states and invoices arrive in bulk (a month's run, a replay): large batches, "
        "so that each firm's tier is recomputed once per batch rather than once per event.",
    )

    contract_consumers: int = Field(
        default=1,
        ge=1,
        le=6,
        description="Consumers of invoicing.contract-changed.v1 in this process (one group, disjoint partitions; "
        "the topic has 6). Transactions touching one firm are serialised by its lock, and the big firms "
        "are in every batch: two were slower than one in the replay benchmark (docs/benchmarks.md).",
    )

    benefits_file: Path | None = Field(
        default=None,
        description="P-06 benefit book (YAML, effective-dated); default: the seed's table shipped with the service.",
    )
    refresh_every_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How often firms not yet computed for today are recomputed, so that dated facts "
        "(an agreement ending, a person joining on a later day) take effect on their day.",
    )
    parking_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="How long a partner-program input that waits for what it needs (its firm's registration, "
        "a person's earlier fact) stays parked before it is dead-lettered with its reason.",
    )
    parked_sweep_every_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How often parked inputs whose parking expired are dead-lettered.",
    )
