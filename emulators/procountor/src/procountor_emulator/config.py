"""What an emulator instance knows before its first request: API clients, limits, clocks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

HELSINKI = ZoneInfo("Europe/Helsinki")

LOCAL_CLIENT_ID = "billing-backbone-local"
LOCAL_CLIENT_SECRET = "local-client-secret"  # noqa: S105 - a published default for local runs only
LOCAL_API_KEY = "local-api-key"
LOCAL_LOGIN_USERNAME = "maija.meikalainen"
LOCAL_LOGIN_PASSWORD = "local-login-password"  # noqa: S105 - a published default for local runs only


def helsinki_now() -> datetime:
    """Procountor speaks local Finnish time without a zone; the emulator does the same."""
    return datetime.now(HELSINKI).replace(tzinfo=None)


@dataclass(frozen=True)
class ApiClientRegistration:
    """An API client registered at Procountor together with the one API key it may use."""

    client_id: str
    client_secret: str = field(repr=False)
    api_key: str = field(repr=False)
    redirect_uri: str | None = None


@dataclass(frozen=True)
class LoginUser:
    """A Procountor user of the company who can sign in on the key-login page (ref §2.2).

    An API key fetched by the key login belongs to this user (`GET /api/sessioninfo` says whose).
    """

    username: str
    password: str = field(repr=False)
    user_id: int = 2


@dataclass(frozen=True)
class VatStatus:
    """One entry of `vatStatuses` in `GET /vats/default`."""

    code: int
    description: str
    sales: bool
    purchase: bool


DEFAULT_VAT_RATES: tuple[Decimal, ...] = (
    Decimal("25.5"),
    Decimal("14"),
    Decimal("13.5"),
    Decimal("10"),
    Decimal("0"),
)

# The codes are environment-specific in Procountor ([?] in the reference); these are the emulator's own.
DEFAULT_VAT_STATUSES: tuple[VatStatus, ...] = (
    VatStatus(1, "Domestic sales / purchases", sales=True, purchase=True),
    VatStatus(2, "Sales of goods to the EU", sales=True, purchase=False),
    VatStatus(3, "Sales of services to the EU", sales=True, purchase=False),
    VatStatus(4, "Sales outside the EU", sales=True, purchase=False),
    VatStatus(5, "Domestic reverse charge (construction)", sales=True, purchase=True),
    VatStatus(6, "VAT-free sales", sales=True, purchase=False),
)


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that varies between emulator instances; tests build one directly."""

    clients: tuple[ApiClientRegistration, ...] = (
        ApiClientRegistration(LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, LOCAL_API_KEY),
    )
    token_lifetime_seconds: int = 3600
    rate_limit_requests: int = 20
    rate_limit_window_seconds: float = 1.0
    vat_rates: tuple[Decimal, ...] = DEFAULT_VAT_RATES
    vat_statuses: tuple[VatStatus, ...] = DEFAULT_VAT_STATUSES
    company_name: str = "Emulated Company Oy"
    first_id: int = 1000
    """Ids are handed out after this one; a restarted emulator given another never reuses an id."""
    latency_seconds: float = 0.0
    """Added to every authorised API call (after admission), e.g. 0.05 for a realistic 50 ms."""
    webhook_attempts: int = 3
    """Pushes of one webhook event before the emulator gives up (1 s apart)."""
    login_code_lifetime_seconds: int = 300
    """How long a key-login `code` can be exchanged for an API key."""
    login_users: tuple[LoginUser, ...] = (LoginUser(LOCAL_LOGIN_USERNAME, LOCAL_LOGIN_PASSWORD),)
    """Who can sign in on the key-login page."""
    keylogin_auto_consent: bool = False
    """Test-only: `/keylogin` consents at once as the first login user (no form), for HTTP clients
    that follow redirects but fill in no forms."""
    api_user_id: int = 1
    """The user the registered clients' configured API keys belong to."""
    monotonic: Callable[[], float] = time.monotonic
    """Clock for token expiry and the rate-limit window; tests pass a fake one."""
    now: Callable[[], datetime] = helsinki_now
    """Wall clock (naive Helsinki time) for `created` and `version` stamps."""

    def client(self, client_id: str) -> ApiClientRegistration | None:
        """The registration with this client id, if any."""
        return next((c for c in self.clients if c.client_id == client_id), None)
