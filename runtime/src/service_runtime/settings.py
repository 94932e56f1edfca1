"""Settings every service shares; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service_runtime.production import SampleValue, SampleValueName

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class ServiceSettings(BaseSettings):
    """Common settings. Subclasses set `env_prefix`, e.g. `METERING_`; built once in the composition root."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_enable_idempotence: bool = Field(
        default=True,
        description="Idempotent producer: on for Apache Kafka; off for brokers that refuse InitProducerId (Tansu).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="`SASL_SSL` (SCRAM over TLS) or `SSL` (TLS, mutual with a client certificate) in production.",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism for `SASL_*` protocols (Strimzi: SCRAM-SHA-512)."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user (the Strimzi KafkaUser name)."
    )
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password; secret.")
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM bundle of the CA that signed the brokers' certificates (Strimzi cluster CA).",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (Strimzi KafkaUser `user.crt`)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of the client certificate (`user.key`)."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the key file, if any."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host we connect to."
    )
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
    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses to start with sample values (see `allow_in_production`).",
    )
    allow_in_production: Annotated[frozenset[SampleValueName], NoDecode] = Field(
        default=frozenset(),
        description="Comma-separated sample values production may start with anyway, e.g. `plaintext-kafka`.",
    )
    auth_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer URL whose tokens the API accepts (`iss`)."
    )
    auth_audience: str = Field(default="billing", description="The `aud` our tokens must carry.")
    auth_role_claim: str = Field(
        default="roles",
        description="Claim with the role names; dotted for nested ones (`realm_access.roles`).",
    )
    auth_jwks_url: str | None = Field(default=None, description="Default: the issuer's discovery `jwks_uri`.")
    auth_leeway_seconds: float = Field(default=30.0, ge=0, le=300, description="Clock skew tolerated.")
    auth_docs_client_id: str | None = Field(
        default=None,
        description="Public client (authorization code with PKCE) that Swagger UI at /docs signs in as, "
        "e.g. `billing-ui`; unset: the operator types it.",
    )
    oauth_token_url: str | None = Field(
        default=None, description="Token endpoint for this service's own client-credentials calls."
    )
    oauth_client_id: str | None = Field(default=None, description="This service's client id at the issuer.")
    oauth_client_secret: SecretStr | None = Field(default=None, description="Its client secret; secret.")
    oauth_scope: str | None = Field(
        default=None, description="Scope to ask for (Entra ID: `api://…/.default`)."
    )
    metrics_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often consumer lag and the outbox backlog are measured."
    )
    outbox_batch_size: int = Field(default=1000, ge=1)
    outbox_idle_seconds: float = Field(
        default=0.5, gt=0, description="Relay poll interval when nothing woke it."
    )

    @field_validator("allow_in_production", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(v.strip() for v in value.split(",") if v.strip())
        return value

    @property
    def env_prefix(self) -> str:
        """The prefix of this service's environment variables, e.g. `METERING_` (named in refusals)."""
        return str(self.model_config.get("env_prefix", ""))

    def sample_values(self) -> list[SampleValue]:
        """Settings that still hold development or sample values: the broker listener and the token
        issuer here; services add their own."""
        found = []
        if self.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            found.append(
                SampleValue("plaintext-kafka", f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}")
            )
        issuer = self.auth_issuer
        if issuer is None:
            found.append(SampleValue("dev-token-issuer", "no AUTH_ISSUER"))
        else:
            parts = urlsplit(issuer)
            if parts.scheme != "https" or parts.hostname in _LOOPBACK:
                found.append(SampleValue("dev-token-issuer", f"AUTH_ISSUER={issuer} is not an https issuer"))
        return found
