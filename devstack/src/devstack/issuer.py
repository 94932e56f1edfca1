"""The dev OpenID Connect issuer (`oidc-emulator`) as a separate process on loopback, and token helpers."""

from __future__ import annotations

import base64
import hashlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import SecretStr

from devstack.broker import free_port
from service_runtime.token_client import ClientCredentials, ClientCredentialsAuth

START_TIMEOUT_SECONDS = 20.0
#: Where a dev user's authorization code is sent; nothing needs to listen there (we read the redirect).
DEV_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEV_PUBLIC_CLIENT = "billing-dev"
#: A client holding every role (emulators/oidc): the test stacks' HTTP clients and the HTTP fuzzers.
ALL_ROLES_CLIENT = ("dev-all-roles", "local-all-roles-secret")


class BearerToken(httpx.Auth):
    """Sends one fixed access token (a dev user's, from `DevIssuer.user_token`) with a request."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class IssuerStartError(RuntimeError):
    """The issuer process exited or did not answer in time."""


class DevIssuer:
    """`python -m oidc_emulator` on 127.0.0.1 and a free port; tokens for dev users and service clients."""

    def __init__(
        self, *, port: int | None = None, log_path: Path | None = None, token_lifetime: int = 900
    ) -> None:
        self._port = port
        self._log_path = log_path
        self._token_lifetime = token_lifetime
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def at(cls, url: str) -> DevIssuer:
        """An issuer already running at `url` (started by `make run`), for its token helpers."""
        issuer = cls(port=int(url.rsplit(":", 1)[1]))
        return issuer

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the issuer is not running")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> str:
        """Start the process, wait for its discovery document, return the issuer URL."""
        self._port = self._port or free_port()
        log_path = self._log_path or Path(tempfile.mkstemp(prefix="devstack-issuer-", suffix=".log")[1])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oidc_emulator",
                "--port",
                str(self._port),
                "--token-lifetime",
                str(self._token_lifetime),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise IssuerStartError(
                    f"oidc-emulator exited with {self._process.returncode}; log {log_path}"
                )
            try:
                if httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise IssuerStartError(
            f"oidc-emulator did not answer within {START_TIMEOUT_SECONDS:.0f} s; log {log_path}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def service_token(self, client_id: str, client_secret: str) -> str:
        """A client-credentials token (what the CronJob and invoicing get)."""
        response = httpx.post(
            f"{self.url}/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
            timeout=5,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def client_auth(self, client_id: str, client_secret: str) -> ClientCredentialsAuth:
        """An httpx auth that sends the client's token and renews it before it expires (long test sessions)."""
        return ClientCredentialsAuth(
            ClientCredentials(
                token_url=f"{self.url}/token", client_id=client_id, client_secret=SecretStr(client_secret)
            )
        )

    def all_roles_auth(self) -> ClientCredentialsAuth:
        """`client_auth` of the client holding every role: gets past every route's policy."""
        return self.client_auth(*ALL_ROLES_CLIENT)

    def user_auth(self, subject: str) -> BearerToken:
        """An httpx auth with a dev user's token (`olli.operator`, …): the audit records that subject."""
        return BearerToken(self.user_token(subject))

    def user_token(self, subject: str) -> str:
        """A dev user's access token through the real authorization-code flow with PKCE (no browser needed)."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(8)
        answer = httpx.get(
            f"{self.url}/authorize",
            params={
                "response_type": "code",
                "client_id": DEV_PUBLIC_CLIENT,
                "redirect_uri": DEV_REDIRECT_URI,
                "scope": "openid",
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "login_hint": subject,
            },
            timeout=5,
        )
        if answer.status_code != 302:
            raise RuntimeError(f"authorize refused {subject!r}: {answer.text}")
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        if query.get("state") != [state]:
            raise RuntimeError("the issuer returned another state")
        response = httpx.post(
            f"{self.url}/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": DEV_REDIRECT_URI,
                "client_id": DEV_PUBLIC_CLIENT,
                "code_verifier": verifier,
            },
            timeout=5,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def rotate_keys(self, *, retire_previous: bool = False) -> str:
        """Make the issuer sign with a new key; return its key id."""
        response = httpx.post(
            f"{self.url}/_issuer/rotate-keys",
            params={"retire_previous": str(retire_previous).lower()},
            timeout=5,
        )
        response.raise_for_status()
        return str(response.json()["kid"])


def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.issuer SUBJECT --issuer URL`: print a dev user's access token."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.issuer", description=main.__doc__)
    parser.add_argument("subject", help="a dev user, e.g. olli.operator (emulators/oidc/README.md)")
    parser.add_argument("--issuer", required=True, help="the issuer URL `make run` printed")
    args = parser.parse_args(argv)
    print(DevIssuer.at(args.issuer).user_token(args.subject))
    return 0


if __name__ == "__main__":
    sys.exit(main())
