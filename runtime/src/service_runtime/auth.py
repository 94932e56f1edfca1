"""Who is calling: bearer tokens verified against the issuer's JWKS, roles, and the policy API routes attach.

Phase 1 of issue 12 builds the pieces; wiring `require(...)` into every route is phase 2. Token
times (exp, nbf, iat) are checked against the wall clock, not the injected clock: the issuer
stamps them with its own real clock, and a service running a rehearsal date must still accept a
token issued a minute ago.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
import jwt
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
#: Algorithms a token may be signed with: asymmetric only, so that no shared secret (or `none`) passes.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")


class Role(StrEnum):
    """What a caller may do; the issuer puts these names in the role claim (see docs/operations.md)."""

    VIEWER = "viewer"
    """Reads everything an operator can read; changes nothing."""
    BILLING_OPERATOR = "billing-operator"
    """Billing runs, credit notes, due-date moves, dead letters and deliveries."""
    PRICE_ADMINISTRATOR = "price-administrator"
    """Price lists."""
    PARTNER_MANAGER = "partner-manager"
    """The partner program: firms, experts, tiers, commissions."""
    CONTRACT_SYSTEM = "contract-system"
    """A system of record (CRM, support tool) that sends contract commands and asserts the requester (B-25)."""
    BILLING_RUN_TRIGGER = "billing-run-trigger"
    """Service account of the daily billing-run CronJob."""
    USAGE_READER = "usage-reader"
    """Service account of invoicing reading metering's item lists (B-19)."""


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request: the audit's actor is its `subject`."""

    subject: str
    client_id: str | None
    roles: frozenset[Role]
    name: str | None = None

    def has_any(self, roles: Sequence[Role]) -> bool:
        return not self.roles.isdisjoint(roles)


class AuthError(Exception):
    """The token is missing, malformed, expired, not ours or signed by a key we do not know (401)."""

    def __init__(self, reason: str, *, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Forbidden(Exception):
    """The caller is known but holds none of the roles the route needs (403)."""

    def __init__(self, caller: Caller, needed: Sequence[Role]) -> None:
        super().__init__(f"needs one of the roles {', '.join(needed)}")
        self.caller = caller
        self.needed = tuple(needed)


class Problem(BaseModel):
    """RFC 9457 problem details, the shape every refusal of our APIs has."""

    type: str = Field(default="about:blank", description="A URI identifying the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")


@dataclass(frozen=True)
class AuthConfig:
    """What a service trusts: one issuer, one audience, where the roles are in the token."""

    issuer: str
    audience: str
    role_claim: str = "roles"
    """Claim holding the role names; a dotted path for nested claims (Keycloak: `realm_access.roles`)."""
    jwks_url: str | None = None
    """Default: the `jwks_uri` of the issuer's discovery document."""
    leeway_seconds: float = 30.0
    """Clock skew tolerated between the issuer and us, for exp, nbf and iat."""
    jwks_cache_seconds: float = 300.0
    """How long fetched keys are used before they are fetched again."""
    jwks_min_refresh_seconds: float = 10.0
    """An unknown key id refetches the keys at most this often (a flood of forged kids stays cheap)."""


HttpFactory = Callable[[], httpx.AsyncClient]


def _default_http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(5.0))


class JwksCache:
    """The issuer's public keys by key id, fetched on first use, refreshed on expiry and on an unknown kid.

    An unknown kid is how a key rotation shows: the issuer signs with a new key before our cache
    knows it, so the cache refetches (no more often than `min_refresh_seconds`) and looks again.
    """

    def __init__(
        self,
        config: AuthConfig,
        *,
        http: HttpFactory = _default_http,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._http = http
        self._monotonic = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._jwks_url = config.jwks_url
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        now = self._monotonic()
        stale = self._fetched_at is None or now - self._fetched_at > self._config.jwks_cache_seconds
        if stale or (
            kid not in self._keys
            and self._fetched_at is not None
            and now - self._fetched_at >= self._config.jwks_min_refresh_seconds
        ):
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise AuthError(f"the token is signed with an unknown key ({kid[:40]})")
        return key

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                async with self._http() as http:
                    if self._jwks_url is None:
                        self._jwks_url = await self._discover(http)
                    response = await http.get(self._jwks_url)
                    response.raise_for_status()
                    document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("jwks_fetch_failed", error=type(exc).__name__)
                if not self._keys:
                    raise AuthError(
                        "the token issuer's keys cannot be fetched", error="temporarily_unavailable"
                    ) from exc
                return  # keep verifying with the keys we have
            keys = {}
            for entry in document.get("keys", []):
                if entry.get("use", "sig") != "sig" or "kid" not in entry:
                    continue
                try:
                    keys[entry["kid"]] = jwt.PyJWK(entry)
                except jwt.PyJWKError:
                    continue  # a key type we cannot use; others may still be fine
            self._keys = keys
            self._fetched_at = self._monotonic()
            log.info("jwks_fetched", keys=len(keys))

    async def _discover(self, http: httpx.AsyncClient) -> str:
        response = await http.get(f"{self._config.issuer.rstrip('/')}/.well-known/openid-configuration")
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self._config.issuer:
            raise ValueError("the discovery document names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str):
            raise ValueError("the discovery document has no jwks_uri")
        return url


class TokenVerifier:
    """Turns a bearer token into a `Caller`, or raises `AuthError` with the reason."""

    def __init__(self, config: AuthConfig, *, keys: JwksCache | None = None) -> None:
        self.config = config
        self._keys = keys or JwksCache(config)

    async def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError("the token is not a JWT") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise AuthError(f"tokens signed with {algorithm!r} are not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthError("the token names no key id")
        key = await self._keys.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("the token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("the token is from another issuer") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("the token is not valid yet") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token lacks the {exc.claim} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is invalid: {type(exc).__name__}") from exc
        return caller_from_claims(claims, role_claim=self.config.role_claim)


def caller_from_claims(claims: Mapping[str, Any], *, role_claim: str) -> Caller:
    """The caller a verified token describes; role names we do not know are ignored."""
    node: Any = claims
    for part in role_claim.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    names = node if isinstance(node, list) else []
    known = {r.value: r for r in Role}
    roles = frozenset(known[n] for n in names if isinstance(n, str) and n in known)
    # Keycloak and Entra v2 name the client in azp; Entra v1 in appid; RFC 9068 in client_id.
    client = claims.get("azp") or claims.get("client_id") or claims.get("appid")
    name = claims.get("name") or claims.get("preferred_username")
    return Caller(
        subject=str(claims["sub"]),
        client_id=str(client) if client else None,
        roles=roles,
        name=str(name) if name else None,
    )


# --- FastAPI ---------------------------------------------------------------------------------


def install_auth(app: FastAPI, verifier: TokenVerifier | None) -> None:
    """Make `authenticated`/`require` work in `app`; 401 and 403 answer as problem details.

    Without a verifier (no issuer configured) every protected route answers 401: an API is never
    open because a setting is missing.
    """
    app.state.token_verifier = verifier
    app.add_exception_handler(AuthError, _unauthorized)  # type: ignore[arg-type]
    app.add_exception_handler(Forbidden, _forbidden)  # type: ignore[arg-type]


async def current_caller(request: Request) -> Caller:
    """The dependency every protected route has: the verified caller, or 401."""
    cached = getattr(request.state, "caller", None)
    if isinstance(cached, Caller):
        return cached
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("a bearer token is required", error="")
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise AuthError("this service has no token issuer configured", error="")
    caller = await verifier.verify(token.strip())
    request.state.caller = caller
    structlog.contextvars.bind_contextvars(caller=caller.subject)
    return caller


authenticated = Depends(current_caller)
"""Attach to a route (or router) that any authenticated caller may use."""


def require(*roles: Role) -> Any:
    """A dependency that lets a caller through who holds at least one of `roles`; else 403.

    `@router.post("/credit-notes", dependencies=[require(Role.BILLING_OPERATOR)])`, or as a
    parameter to get the caller: `caller: Annotated[Caller, require(Role.BILLING_OPERATOR)]`.
    """
    if not roles:
        raise ValueError("require() needs at least one role; use `authenticated` for any caller")

    async def check(caller: Caller = authenticated) -> Caller:
        if not caller.has_any(roles):
            raise Forbidden(caller, roles)
        return caller

    check.required_roles = roles  # type: ignore[attr-defined]  # read by the phase-2 route audit test
    return Depends(check)


def problem_response(
    status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A problem-details response (RFC 9457)."""
    body = Problem(title=title, status=status, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


async def _unauthorized(_: Request, exc: AuthError) -> JSONResponse:
    challenge = 'Bearer realm="billing"'
    if exc.error:
        challenge += f', error="{exc.error}"'
    return problem_response(401, "Unauthorized", exc.reason, headers={"WWW-Authenticate": challenge})


async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
    log.info("request_forbidden", caller=exc.caller.subject, needed=list(exc.needed))
    return problem_response(403, "Forbidden", str(exc))
