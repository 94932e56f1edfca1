"""The issuer's HTTP surface: discovery, JWKS, token, authorize, and `/_issuer` controls for tests."""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from oidc_emulator.config import IssuerConfig
from oidc_emulator.keys import KeyRing

CODE_LIFETIME_SECONDS = 60


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    subject: str
    code_challenge: str | None
    nonce: str | None
    expires_at: float


class RotatedKey(BaseModel):
    """The key the issuer signs with from now on."""

    kid: str = Field(description="Key id of the new signing key.")
    published: list[str] = Field(description="Key ids in the JWKS now.")


class DevUserView(BaseModel):
    """A dev user and the roles its tokens carry."""

    subject: str = Field(description="The `sub` of its tokens; pass as `login_hint` to /authorize.")
    name: str = Field(description="Display name.")
    roles: list[str] = Field(description="Roles in the role claim.")


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="token"'} if status == 401 else None
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def create_app(config: IssuerConfig, *, keys: KeyRing | None = None) -> FastAPI:
    """The issuer app for `config`; a fresh key ring unless one is given."""
    ring = keys or KeyRing()
    grants: dict[str, _Grant] = {}
    app = FastAPI(
        title="OIDC emulator",
        description="A development OpenID Connect issuer: never trust it in production.",
        version="0.1.0",
    )
    app.state.keys = ring
    # Swagger UI on a service's /docs fetches discovery and exchanges the code from the browser:
    # cross-origin requests from any loopback origin (a dev issuer only; never deployed).
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$",
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
    )
    issuer = config.issuer.rstrip("/")

    def token_for(subject: str, *, client_id: str, roles: tuple[str, ...], **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": config.audience,
            "azp": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + config.token_lifetime_seconds,
            "jti": uuid.uuid4().hex,
            config.role_claim: list(roles),
            **extra,
        }
        return {
            "access_token": ring.sign(claims),
            "token_type": "Bearer",
            "expires_in": config.token_lifetime_seconds,
        }

    @app.get("/.well-known/openid-configuration", summary="OpenID Connect discovery.")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "token_endpoint": f"{issuer}/token",
            "authorization_endpoint": f"{issuer}/authorize",
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials", "authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid"],
        }

    @app.get("/jwks", summary="The public keys tokens are signed with.")
    async def jwks() -> dict[str, Any]:
        return ring.jwks()

    @app.get(
        "/authorize", summary="Authorization code: pick a dev user (or pass login_hint).", response_model=None
    )
    async def authorize(request: Request) -> Response:
        q = request.query_params
        client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
        known = client_id in config.public_clients or config.client(client_id) is not None
        if q.get("response_type") != "code" or not known or not _loopback(redirect_uri):
            return _oauth_error(
                400, "invalid_request", "response_type=code, a known client_id and a loopback redirect_uri"
            )
        hint = q.get("login_hint")
        if hint is None:
            links = "".join(
                f'<li><a href="?{html.escape(urlencode({**q, "login_hint": u.subject}))}">'
                f"{html.escape(u.name)}</a> ({html.escape(', '.join(u.roles) or 'no roles')})</li>"
                for u in config.users
            )
            return HTMLResponse(
                f"<!doctype html><title>Sign in (dev)</title><h1>Sign in as</h1><ul>{links}</ul>"
            )
        user = config.user(hint)
        if user is None:
            return _oauth_error(400, "invalid_request", f"no dev user {hint!r}")
        code = secrets.token_urlsafe(24)
        grants[code] = _Grant(
            client_id=client_id,
            redirect_uri=redirect_uri,
            subject=user.subject,
            code_challenge=q.get("code_challenge"),
            nonce=q.get("nonce"),
            expires_at=time.monotonic() + CODE_LIFETIME_SECONDS,
        )
        params = {"code": code} | ({"state": q["state"]} if "state" in q else {})
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=302)

    @app.post(
        "/token", summary="Token endpoint: client_credentials and authorization_code.", response_model=None
    )
    async def token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _oauth_error(401, "invalid_client", "malformed basic credentials")
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            client = config.client(client_id or "")
            if client is None or not secrets.compare_digest(client.client_secret, secret or ""):
                return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
            return JSONResponse(token_for(client.client_id, client_id=client.client_id, roles=client.roles))
        if grant_type == "authorization_code":
            grant = grants.pop(form.get("code", ""), None)
            if grant is None or grant.expires_at < time.monotonic() or grant.client_id != client_id:
                return _oauth_error(400, "invalid_grant", "unknown, used or expired code")
            if form.get("redirect_uri") != grant.redirect_uri:
                return _oauth_error(
                    400, "invalid_grant", "redirect_uri differs from the authorization request"
                )
            confidential = config.client(grant.client_id)
            if confidential is not None and not secrets.compare_digest(
                confidential.client_secret, secret or ""
            ):
                return _oauth_error(401, "invalid_client", "wrong client secret")
            if (
                grant.code_challenge is not None
                and _s256(form.get("code_verifier", "")) != grant.code_challenge
            ):
                return _oauth_error(400, "invalid_grant", "PKCE verification failed")
            if confidential is None and grant.code_challenge is None:
                return _oauth_error(400, "invalid_request", "public clients must use PKCE")
            user = config.user(grant.subject)
            assert user is not None
            body = token_for(user.subject, client_id=grant.client_id, roles=user.roles, name=user.name)
            now = int(time.time())
            body["id_token"] = ring.sign(
                {
                    "iss": issuer,
                    "sub": user.subject,
                    "aud": grant.client_id,
                    "iat": now,
                    "exp": now + config.token_lifetime_seconds,
                    "name": user.name,
                    **({"nonce": grant.nonce} if grant.nonce else {}),
                }
            )
            return JSONResponse(body)
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    @app.post("/_issuer/rotate-keys", summary="Tests: sign with a new key from now on.")
    async def rotate_keys(retire_previous: bool = False) -> RotatedKey:
        key = ring.rotate(retire_previous=retire_previous)
        return RotatedKey(kid=key.kid, published=[k["kid"] for k in ring.jwks()["keys"]])

    @app.get("/_issuer/users", summary="The dev users and their roles.")
    async def users() -> list[DevUserView]:
        return [DevUserView(subject=u.subject, name=u.name, roles=list(u.roles)) for u in config.users]

    return app
