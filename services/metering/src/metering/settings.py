"""Metering settings (env prefix `METERING_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from service_runtime.settings import ServiceSettings


class MeteringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="METERING_", extra="ignore", frozen=True)

    kafka_consumer_max_records: int = Field(
        default=2000, ge=1, description="Usage arrives in bulk: large batches."
    )
    kafka_consumer_pipeline: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Usage batches are split by environment into this many concurrent transactions.",
    )
    close_grace_hours: float = Field(
        default=2.0,
        ge=0,
        description="A month closes this long after its end (Helsinki), before the billing run on the 1st business day.",
    )
    close_check_seconds: float = Field(
        default=60.0, gt=0, description="How often the closer looks for a due month."
    )
    auto_close: bool = Field(default=True, description="Close months by themselves when due.")
