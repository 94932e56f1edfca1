"""Client-credentials tokens for machine calls (the billing-run CronJob, invoicing → metering), as an httpx auth."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from service_runtime.settings import ServiceSettings

#: A token is renewed this long before it expires, so that a request never leaves with a dying one.
RENEW_BEFORE_SECONDS = 30.0


@dataclass(frozen=True)
class ClientCredentials:
    """A confidential client's registration at the issuer."""

    token_url: str
    client_id: str
    client_secret: SecretStr = field(repr=False)
    scope: str | None = None
    """Entra ID needs `api://<app id>/.default`; Keycloak maps the audience with a client scope instead."""


class TokenRequestError(RuntimeError):
    """The issuer refused or did not answer the token request (the secret is never in the message)."""


@dataclass
class _Token:
    value: str
    expires_at: float


class ClientCredentialsAuth(httpx.Auth):
    """Adds `Authorization: Bearer …` from a cached client-credentials token; renews it before expiry.

    A 401 answer gets one retry with a fresh token (the issuer may have rotated keys or the
    service restarted its cache). Works with sync and async httpx clients.
    """

    def __init__(
        self, credentials: ClientCredentials, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._credentials = credentials
        self._monotonic = monotonic
        self._token: _Token | None = None
        self._sync_lock = threading.Lock()

    def _request(self) -> httpx.Request:
        c = self._credentials
        data = {"grant_type": "client_credentials"} | ({"scope": c.scope} if c.scope else {})
        # RFC 6749 2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
        pair = f"{quote(c.client_id, safe='')}:{quote(c.client_secret.get_secret_value(), safe='')}"
        basic = base64.b64encode(pair.encode()).decode()
        return httpx.Request("POST", c.token_url, data=data, headers={"Authorization": f"Basic {basic}"})

    def _accept(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise TokenRequestError(
                f"the issuer refused client {self._credentials.client_id!r}: HTTP {response.status_code}"
            )
        try:
            body = response.json()
            value = str(body["access_token"])
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenRequestError("the issuer's token response is not OAuth 2.0") from exc
        self._token = _Token(value, self._monotonic() + lifetime - RENEW_BEFORE_SECONDS)
        return value

    def _cached(self) -> str | None:
        token = self._token
        return token.value if token is not None and token.expires_at > self._monotonic() else None

    def sync_token(self, *, fresh: bool = False) -> str:
        with self._sync_lock:
            cached = None if fresh else self._cached()
            if cached is not None:
                return cached
            try:
                with httpx.Client(timeout=10) as http:
                    return self._accept(http.send(self._request()))
            except httpx.HTTPError as exc:
                raise TokenRequestError(f"the issuer did not answer: {type(exc).__name__}") from exc

    async def async_token(self, *, fresh: bool = False) -> str:
        cached = None if fresh else self._cached()
        if cached is not None:
            return cached
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                return self._accept(await http.send(self._request()))
        except httpx.HTTPError as exc:
            raise TokenRequestError(f"the issuer did not answer: {type(exc).__name__}") from exc

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.sync_token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.sync_token(fresh=True)}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.async_token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self.async_token(fresh=True)}"
            yield request


def client_credentials_auth(settings: ServiceSettings) -> ClientCredentialsAuth | None:
    """The service's own client-credentials auth for outgoing calls; None when no token URL is configured."""
    if settings.oauth_token_url is None:
        return None
    if settings.oauth_client_id is None or settings.oauth_client_secret is None:
        raise ValueError("oauth_token_url needs oauth_client_id and oauth_client_secret")
    return ClientCredentialsAuth(
        ClientCredentials(
            token_url=settings.oauth_token_url,
            client_id=settings.oauth_client_id,
            client_secret=settings.oauth_client_secret,
            scope=settings.oauth_scope,
        )
    )
