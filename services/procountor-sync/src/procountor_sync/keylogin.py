"""The API key, configured or from the key-login flow (I-06), stored encrypted in the database."""

from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import urlencode, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from procountor_sync.repository import CredentialRepository
from service_runtime.clock import Clock
from service_runtime.database import Sessions

KEY_NAME = "procountor_api_key"
LOGIN_VALID_SECONDS = 600.0


class KeyLoginError(Exception):
    """The key-login flow cannot go on (unknown or expired state, no encryption key, …)."""


class ApiKeys:
    """The API key to use: the configured one, else the one the key-login flow stored.

    **Decision (I-06):** the key from the flow is kept in the database encrypted with Fernet
    (AES-128-CBC + HMAC-SHA256) under the operator's `PROCOUNTOR_SYNC_CREDENTIAL_KEY`; it is
    decrypted only into memory, as a `SecretStr`, and never logged or returned.
    """

    def __init__(
        self,
        sessions: Sessions,
        *,
        configured: SecretStr,
        encryption_key: SecretStr,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._configured = configured
        self._fernet = (
            Fernet(encryption_key.get_secret_value().encode()) if encryption_key.get_secret_value() else None
        )
        self._clock = clock
        self._cached: SecretStr | None = None

    async def current(self) -> SecretStr:
        if self._configured.get_secret_value():
            return self._configured
        if self._cached is None:
            async with self._sessions() as session:
                stored = await CredentialRepository(session).get(KEY_NAME)
            if stored is None or self._fernet is None:
                raise KeyLoginError(
                    "no API key: configure one or complete the key login (GET /procountor/key-login)"
                )
            try:
                self._cached = SecretStr(self._fernet.decrypt(stored).decode())
            except InvalidToken:
                raise KeyLoginError("the stored API key does not decrypt with the credential key") from None
        return self._cached

    async def source(self) -> tuple[str, str | None, dt.datetime | None]:
        """Where the key in use comes from: `configured`, `key_login` (who stored it, when) or `none`."""
        if self._configured.get_secret_value():
            return "configured", None, None
        async with self._sessions() as session:
            stored = await CredentialRepository(session).stored(KEY_NAME)
        return ("none", None, None) if stored is None else ("key_login", *stored)

    async def start_login(self, *, login_url: str, client_id: str, redirect_uri: str, by: str) -> str:
        """The URL of Procountor's key-login page for this login (a one-time `state` against CSRF)."""
        if self._fernet is None:
            raise KeyLoginError(
                "PROCOUNTOR_SYNC_CREDENTIAL_KEY is not set: a fetched key could not be stored"
            )
        state = secrets.token_urlsafe(24)
        async with self._sessions.begin() as session:
            await CredentialRepository(session).start_login(state, by=by, valid_seconds=LOGIN_VALID_SECONDS)
        query = urlencode(
            {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state}
        )
        return f"{login_url}?{query}"

    async def finish_login(self, state: str) -> str:
        """Who started the login; refuses an unknown, used or expired `state`."""
        async with self._sessions.begin() as session:
            started_by = await CredentialRepository(session).finish_login(state)
        if started_by is None:
            raise KeyLoginError("unknown or expired login state")
        return started_by

    async def store(self, api_key: SecretStr, *, by: str) -> None:
        if self._fernet is None:
            raise KeyLoginError("PROCOUNTOR_SYNC_CREDENTIAL_KEY is not set")
        ciphertext = self._fernet.encrypt(api_key.get_secret_value().encode())
        async with self._sessions.begin() as session:
            await CredentialRepository(session).put(KEY_NAME, ciphertext, by=by, at=self._clock.now())
        self._cached = api_key


def default_login_url(base_url: str) -> str:
    """`https://api.procountor.com/api` → `https://api.procountor.com/keylogin` (reference §2.2)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/keylogin"
