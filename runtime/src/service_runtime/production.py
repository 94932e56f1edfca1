"""No sample values in production: a service in `environment=production` refuses to start with one.

Development defaults (a plaintext broker, the dev token issuer, the sample IBAN, the sample price
list) make `make run` work on a fresh clone; the same defaults in production would bill with the
wrong bank account or accept tokens nobody controls. Each can be allowed explicitly, by name, in
`<PREFIX>ALLOW_IN_PRODUCTION` (logged as a warning at every start).

This module knows nothing of the settings class: the settings name their own sample values
(`ServiceSettings.sample_values`) and hand themselves to `refuse_sample_values` as a `Deployment`,
so that the settings depend on this vocabulary and not the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

log = structlog.get_logger(__name__)

#: Sample or development values a production service refuses unless `allow_in_production` names them.
SampleValueName = Literal["plaintext-kafka", "dev-token-issuer", "sample-iban", "sample-prices"]


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


class Deployment(Protocol):
    """What the refusal needs to know of a service's settings (`ServiceSettings` is one)."""

    @property
    def environment(self) -> Literal["development", "production"]: ...

    @property
    def allow_in_production(self) -> frozenset[SampleValueName]: ...

    @property
    def env_prefix(self) -> str: ...


def refuse_sample_values(settings: Deployment, found: Sequence[SampleValue]) -> None:
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
        raise SampleValuesInProduction(refused, env_prefix=settings.env_prefix)
