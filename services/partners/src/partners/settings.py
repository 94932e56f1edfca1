"""Partners settings (env prefix `PARTNERS_`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from service_runtime.settings import ServiceSettings


class PartnersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERS_", extra="ignore", frozen=True)
