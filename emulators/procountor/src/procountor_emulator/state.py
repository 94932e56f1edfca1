"""The emulator's in-memory company: registers, invoices, tokens, rate-limit windows, faults."""

from __future__ import annotations

import math
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from procountor_emulator.config import EmulatorConfig
from procountor_emulator.wire import ApiError, JsonObject


@dataclass
class IssuedToken:
    client_id: str
    expires_at: float
    user_id: int = 0


@dataclass
class Fault:
    """An injected failure: the next `times` matching API requests answer `status`."""

    status: int
    times: int
    method: str | None = None
    path_prefix: str | None = None
    delay_seconds: float = 0.0
    """With status 0: handle the request, then hold the response this long (a lost answer)."""

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass
class Stats:
    """Counters that only the `/_emulator/` endpoints reveal."""

    tokens_issued: int = 0
    rate_limited: int = 0
    unauthorized: int = 0
    requests_by_client: dict[str, int] = field(default_factory=dict)
    max_in_window: dict[str, int] = field(default_factory=dict)
    """The most requests any one rate-limit window of a client ever admitted."""
    sends: list[JsonObject] = field(default_factory=list)
    requests_by_route: dict[str, int] = field(default_factory=dict)


class EmulatorState:
    """One Procountor company held in memory.

    Handlers are async and never await while mutating, so one event loop needs no locks.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.partners: dict[int, JsonObject] = {}
        self.products: dict[int, JsonObject] = {}
        self.invoices: dict[int, JsonObject] = {}
        self.payment_events: dict[int, list[JsonObject]] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.webhooks: dict[str, JsonObject] = {}
        self.webhook_deliveries: list[JsonObject] = []
        # code -> (client id, redirect_uri, expiry, the user who signed in)
        self.login_codes: dict[str, tuple[str, str | None, float, int]] = {}
        self.issued_api_keys: dict[str, set[str]] = {}
        self.api_key_users: dict[str, int] = {}
        self.clock_offset = timedelta(0)
        self.windows: dict[str, deque[float]] = {}
        self.faults: list[Fault] = []
        self.stats = Stats()
        # Ids keep counting across a reset: like Procountor, the emulator never hands one out twice.
        self._next_id = getattr(self, "_next_id", self.config.first_id)
        self._next_invoice_number = 1
        self._last_version = ""

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def new_invoice_number(self) -> int:
        number = self._next_invoice_number
        self._next_invoice_number += 1
        return number

    def now(self) -> datetime:
        """The emulator's wall clock (naive Helsinki), shifted by `POST /_emulator/clock`."""
        return self.config.now() + self.clock_offset

    def new_version(self) -> str:
        """A `version` datetime that is strictly later than every earlier one."""
        text = self.now().isoformat(timespec="milliseconds")
        if text <= self._last_version:
            # One step after the last (not a walk there a millisecond at a time: a test that moved
            # the clock months ahead and back would wait for billions of them).
            last = datetime.fromisoformat(self._last_version)
            text = (last + timedelta(milliseconds=1)).isoformat(timespec="milliseconds")
        self._last_version = text
        return text

    def now_text(self) -> str:
        return self.now().isoformat(timespec="seconds")

    # --- tokens and the rate limit -------------------------------------------------------------

    def issue_token(self, client_id: str, user_id: int = 0) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        lifetime = self.config.token_lifetime_seconds
        self.tokens[token] = IssuedToken(client_id, self.config.monotonic() + lifetime, user_id)
        self.stats.tokens_issued += 1
        return token, lifetime

    def client_for_token(self, token: str) -> str:
        issued = self.tokens.get(token)
        if issued is None:
            self.stats.unauthorized += 1
            raise ApiError.single(401, "Invalid access token.")
        if self.config.monotonic() >= issued.expires_at:
            del self.tokens[token]
            self.stats.unauthorized += 1
            raise ApiError.single(401, "Access token has expired.")
        return issued.client_id

    def expire_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def admit(self, client_id: str) -> None:
        """Count one request in the client's sliding window, or refuse it with 429.

        Refused requests are not counted, so a client that waits for the window to slide is
        served again (the real service may suspend the client instead).
        """
        now = self.config.monotonic()
        window = self.windows.setdefault(client_id, deque())
        span = self.config.rate_limit_window_seconds
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) >= self.config.rate_limit_requests:
            self.stats.rate_limited += 1
            retry_after = max(1, math.ceil(window[0] + span - now))
            raise ApiError.single(
                429,
                f"Rate limit exceeded: at most {self.config.rate_limit_requests} requests "
                f"in {span:g} s per API client.",
                headers={"Retry-After": str(retry_after)},
            )
        window.append(now)
        self.stats.requests_by_client[client_id] = self.stats.requests_by_client.get(client_id, 0) + 1
        self.stats.max_in_window[client_id] = max(self.stats.max_in_window.get(client_id, 0), len(window))

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # --- lookups -------------------------------------------------------------------------------

    def partner(self, partner_id: int) -> JsonObject:
        found = self.partners.get(partner_id)
        if found is None:
            raise ApiError.single(404, f"Business partner {partner_id} not found.", "id")
        return found

    def product(self, product_id: int) -> JsonObject:
        found = self.products.get(product_id)
        if found is None:
            raise ApiError.single(404, f"Product {product_id} not found.", "id")
        return found

    def invoice(self, invoice_id: int) -> JsonObject:
        found = self.invoices.get(invoice_id)
        if found is None:
            raise ApiError.single(404, f"Invoice {invoice_id} not found.", "id")
        return found
