"""A small OpenID Connect issuer for local runs and tests (never for production)."""

from oidc_emulator.app import create_app
from oidc_emulator.config import DevUser, IssuerConfig, ServiceClient

__all__ = ["DevUser", "IssuerConfig", "ServiceClient", "create_app"]
