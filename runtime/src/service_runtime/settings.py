"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common settings. Subclasses set `env_prefix`, e.g. `METERING_`; built once in the composition root."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_enable_idempotence: bool = Field(
        default=True,
        description="Idempotent producer: on for Apache Kafka; off for brokers that refuse InitProducerId (Tansu).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_consumer_max_records: int = Field(
        default=500, ge=1, description="Largest batch a consumer handles at once."
    )
    kafka_consumer_instances: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Consumers per subscription in this process (same group, disjoint partitions): while one "
        "waits for the database, another decodes.",
    )
    kafka_consumer_pipeline: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Parts a batch is split into by partition and applied in concurrent transactions, so that "
        "decoding one part overlaps the database work of another.",
    )
    database_url: SecretStr = Field(
        default=SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/billing"),
        description="SQLAlchemy URL of the service's database (asyncpg driver); secret because it may hold a password.",
    )
    database_pool_size: int = Field(default=10, ge=1)
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="`auto`: readable on a TTY, JSON otherwise (in pods)."
    )
    log_level: str = "INFO"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    outbox_batch_size: int = Field(default=1000, ge=1)
    outbox_idle_seconds: float = Field(
        default=0.5, gt=0, description="Relay poll interval when nothing woke it."
    )
