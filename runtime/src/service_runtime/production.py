"""No sample values in production: a service in `environment=production` refuses to start with one.

Development defaults (a plaintext broker, the dev token issuer, the sample IBAN, the sample price
list) make `make run` work on a fresh clone; the same defaults in production would bill with the
wrong bank account or accept tokens nobody controls. Each can be allowed explicitly, by name, in
`<PREFIX>ALLOW_IN_PRODUCTION` (logged as a warning at every start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from service_runtime.settings import SampleValueName, ServiceSettings

log = structlog.get_logger(__name__)

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class SampleValue:
    """A setting that still has a development or sample value."""

    name: SampleValueName
    detail: str


class SampleValuesInProduction(RuntimeError):
    """Production was asked to start with sample values it was not told to allow."""

    def __init__(self, refused: Sequence[SampleValue], *, env_prefix: str) -> None:
        names = ", ".join(v.name for v in refused)
        details = "; ".join(f"{v.name}: {v.detail}" for v in refused)
        super().__init__(
            f"refusing to start in production with sample values ({details}). Set the real values, or allow "
            f"them explicitly with {env_prefix}ALLOW_IN_PRODUCTION={names}"
        )
        self.refused = tuple(refused)


def common_sample_values(settings: ServiceSettings) -> list[SampleValue]:
    """The sample values every service can have: the broker listener and the token issuer."""
    found = []
    if settings.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        found.append(
            SampleValue("plaintext-kafka", f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}")
        )
    issuer = settings.auth_issuer
    if issuer is None:
        found.append(SampleValue("dev-token-issuer", "no AUTH_ISSUER"))
    else:
        parts = urlsplit(issuer)
        if parts.scheme != "https" or parts.hostname in _LOOPBACK:
            found.append(SampleValue("dev-token-issuer", f"AUTH_ISSUER={issuer} is not an https issuer"))
    return found


def refuse_sample_values(settings: ServiceSettings, found: Sequence[SampleValue]) -> None:
    """Raise `SampleValuesInProduction` for sample values production was not told to allow."""
    if not found:
        return
    if settings.environment != "production":
        log.info("sample_values_in_use", values=[v.name for v in found])
        return
    refused = [v for v in found if v.name not in settings.allow_in_production]
    allowed = [v.name for v in found if v.name in settings.allow_in_production]
    if allowed:
        log.warning("sample_values_allowed_in_production", values=allowed)
    if refused:
        prefix = str(settings.model_config.get("env_prefix", ""))
        raise SampleValuesInProduction(refused, env_prefix=prefix)
