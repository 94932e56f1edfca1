"""Who is calling: bearer tokens verified against the issuer's JWKS, roles, and a policy for every route.

Each service declares who may call each of its routes in one table (`RoutePolicies`, e.g.
`invoicing.policies`); `install_route_policies` refuses to build an app with a route the table
does not name, enforces the table on every request (401 and 403 as RFC 9457 problem details) and
documents it in the OpenAPI. Token times (exp, nbf, iat) are checked against the wall clock, not
the injected clock: the issuer stamps them with its own real clock, and a service running a
rehearsal date must still accept a token issued a minute ago.
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
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service_runtime.problems import PROBLEM_JSON, problem_response

log = structlog.get_logger(__name__)

#: Algorithms a token may be signed with: asymmetric only, so that no shared secret (or `none`) passes.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")


class Role(StrEnum):
    """What a caller may do; the issuer puts these names in the role claim (see docs/operations.md)."""

    VIEWER = "viewer"
    """Reads everything an operator can read; changes nothing."""
    BILLING_OPERATOR = "billing-operator"
    """Billing runs, credit notes, due-date moves, dead letters and deliveries."""
    PRICE_ADMINISTRATOR = "price-administrator"
    """Price lists and VAT data."""
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


class IssuerUnavailable(AuthError):
    """The issuer's keys cannot be fetched and none are cached: the caller may be fine, we cannot tell (503)."""

    def __init__(self) -> None:
        super().__init__("the token issuer's keys cannot be fetched; try again shortly", error="")


class Forbidden(Exception):
    """The caller is known but holds none of the roles the route needs (403)."""

    def __init__(self, caller: Caller | None, needed: Sequence[Role], *, detail: str | None = None) -> None:
        super().__init__(detail or f"needs one of the roles {', '.join(needed)}")
        self.caller = caller
        self.needed = tuple(needed)


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
                    raise IssuerUnavailable from exc
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


# --- who may call which route ------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """Who may call one route: a caller holding any of `roles`, or anybody at all (`public`, with why)."""

    roles: frozenset[Role]
    public_because: str | None = None

    @property
    def is_public(self) -> bool:
        return self.public_because is not None

    def describe(self) -> str:
        if self.public_because is not None:
            return f"public: {self.public_because}"
        return ", ".join(sorted(r.value for r in self.roles))


def allow(*roles: Role) -> Policy:
    """A route for callers holding at least one of `roles` (401 without a valid token, 403 without a role)."""
    if not roles:
        raise ValueError("allow() needs at least one role; a route open to anybody is `public(because=…)`")
    return Policy(roles=frozenset(roles))


def public(because: str) -> Policy:
    """A route anybody may call without a token; `because` says why, for the reviewer and the OpenAPI."""
    if not because.strip():
        raise ValueError("a public route needs a reason")
    return Policy(roles=frozenset(), public_because=because)


#: `"METHOD /path/{template}"` → who may call it; one table per service, plus the runtime's own routes.
RoutePolicies = Mapping[str, Policy]

#: What the runtime serves on every service: probes and metrics for Kubernetes and Prometheus.
PROBE_POLICIES: RoutePolicies = {
    "GET /healthz": public("liveness probe of the kubelet"),
    "GET /readyz": public("readiness probe of the kubelet"),
    "GET /metrics": public(
        "scraped by Prometheus inside the cluster (NetworkPolicy allow-prometheus-scrape)"
    ),
}


class RoutePolicyError(RuntimeError):
    """The app has a route without a declared policy, or the table names a route the app does not have."""


def route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def route_keys(app: FastAPI) -> list[str]:
    """Every `METHOD /path` of the app's OpenAPI: the operations it documents and serves.

    Generated afresh (not `app.openapi()`, which would cache a schema before it is complete). A
    route left out of the schema (`include_in_schema=False`) is not listed here, and is refused
    to everybody by `enforce_policy`. Service routers carry their full paths (no prefix): the
    policy of a request is looked up by its route's own path template.
    """
    paths = get_openapi(title=app.title, version=app.version, routes=app.routes).get("paths", {})
    return [route_key(method, path) for path, operations in paths.items() for method in operations]


def install_auth(app: FastAPI, verifier: TokenVerifier | None) -> None:
    """Make token verification work in `app`; 401 and 403 answer as problem details.

    Without a verifier (no issuer configured) every protected route answers 401: an API is never
    open because a setting is missing.
    """
    app.state.token_verifier = verifier
    app.add_exception_handler(AuthError, _unauthorized)  # type: ignore[arg-type]
    app.add_exception_handler(Forbidden, _forbidden)  # type: ignore[arg-type]


def install_route_policies(app: FastAPI, policies: RoutePolicies) -> None:
    """Check that every route of `app` has exactly one declared policy; keep the table for `enforce_policy`.

    Called once the app has all its routes: a route without a policy, or a policy for a route the
    app does not serve (a renamed path), refuses to build the app at all, so neither can reach a
    test, let alone production.
    """
    served = route_keys(app)
    missing = [k for k in served if k not in policies]
    stale = sorted(set(policies) - set(served))
    if missing or stale:
        problems = [f"no policy for {k}" for k in missing] + [
            f"a policy for {k}, which is no route" for k in stale
        ]
        raise RoutePolicyError(
            "every route needs exactly one policy (allow(Role…) or public(because=…)): " + "; ".join(problems)
        )
    app.state.route_policies = dict(policies)
    app.state.policy_matchers = [
        (method, compile_path(path)[0], key, policies[key])
        for key in served
        for method, path in [key.split(" ", 1)]
    ]
    app.add_middleware(PolicyGate)


#: Where `PolicyGate` leaves the matched route template in the ASGI scope (for metrics and logs).
POLICY_ROUTE_SCOPE_KEY = "billing.policy_route"


class PolicyGate:
    """ASGI middleware: the route's policy, checked before the body is read or validated.

    FastAPI parses a JSON body before any dependency runs, so a policy checked only as a
    dependency would let a caller without a token learn from a 422 what a route accepts, and
    would parse up to a whole request body for anybody. The gate matches the request against the
    policy table's path templates in the app's route order (the order the router uses), and
    answers 401/403/503 itself. Requests that match no template go on: the router answers
    404/405, and `enforce_policy` (still every route's first dependency) refuses a route that
    has no policy.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        method = "GET" if request.method == "HEAD" else request.method
        for route_method, pattern, key, policy in getattr(request.app.state, "policy_matchers", ()):
            if route_method == method and pattern.match(scope["path"]):
                scope[POLICY_ROUTE_SCOPE_KEY] = key.split(" ", 1)[1]
                refusal = await _refusal(request, policy)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
                break
        await self.app(scope, receive, send)


async def _refusal(request: Request, policy: Policy) -> JSONResponse | None:
    if policy.is_public:
        return None
    try:
        caller = await current_caller(request)
    except AuthError as exc:
        return await _unauthorized(request, exc)
    if not caller.has_any(tuple(policy.roles)):
        return await _forbidden(request, Forbidden(caller, sorted(policy.roles)))
    return None


async def current_caller(request: Request) -> Caller:
    """The verified caller of this request, or 401; verified once per request."""
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


async def enforce_policy(request: Request) -> None:
    """The dependency every route of a service app runs first: its policy, from the service's table.

    Runs before the route's own parameters and body are validated, so a caller without a token
    learns nothing about what the route would accept. A route missing from the table (added
    after the app was built) is refused to everybody.
    """
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)
    method = "GET" if request.method == "HEAD" else request.method
    policies: Mapping[str, Policy] = getattr(request.app.state, "route_policies", {})
    policy = policies.get(route_key(method, str(path)))
    if policy is None:
        log.error("route_without_policy", method=method, path=path)
        raise Forbidden(None, (), detail="this route has no declared policy")
    if policy.is_public:
        return
    caller = await current_caller(request)
    if not caller.has_any(tuple(policy.roles)):
        raise Forbidden(caller, sorted(policy.roles))


authenticated = Depends(current_caller)
"""The caller, as a route parameter: `caller: Annotated[Caller, authenticated]` (the audit's actor)."""


def require(*roles: Role) -> Any:
    """A dependency that lets a caller through who holds at least one of `roles`; else 403.

    For apps outside the service runtime (tests, tools): a service's routes get their roles from
    its policy table instead.
    """
    if not roles:
        raise ValueError("require() needs at least one role; use `authenticated` for any caller")

    async def check(caller: Caller = authenticated) -> Caller:
        if not caller.has_any(roles):
            raise Forbidden(caller, roles)
        return caller

    return Depends(check)


# --- the OpenAPI: who may call what, and how to get a token ---------------------------------------

#: Security scheme names in every service's OpenAPI.
OIDC_SCHEME = "oidc"
BEARER_SCHEME = "bearer"

_UNAUTHORIZED = "No bearer token, or one that is expired, not ours or unverifiable (problem detail)."
_FORBIDDEN = "A valid token without any of the roles this route needs (problem detail)."


def document_route_policies(schema: dict[str, Any], policies: RoutePolicies, *, issuer: str | None) -> None:
    """Add the security schemes, each operation's requirement, roles (`x-roles`) and its 401/403 answers.

    The `oidc` scheme points Swagger UI at the issuer's discovery document (authorization code
    with PKCE for people); `bearer` takes a token pasted in (machines, a CLI).
    """
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    if issuer is not None:
        schemes[OIDC_SCHEME] = {
            "type": "openIdConnect",
            "openIdConnectUrl": f"{issuer.rstrip('/')}/.well-known/openid-configuration",
            "description": "Sign in at the token issuer (authorization code with PKCE).",
        }
    schemes[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token of the issuer (client credentials for machines).",
    }
    requirement: list[dict[str, list[str]]] = [{BEARER_SCHEME: []}]
    if issuer is not None:
        requirement.append({OIDC_SCHEME: ["openid"]})
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            policy = policies.get(route_key(method, path))
            if policy is None:
                continue
            if policy.is_public:
                operation["security"] = []
                operation["x-public"] = policy.public_because
                continue
            operation["security"] = requirement
            operation["x-roles"] = sorted(r.value for r in policy.roles)
            responses = operation.setdefault("responses", {})
            responses["401"] = {"description": _UNAUTHORIZED, "content": content}
            responses["403"] = {
                "description": f"{_FORBIDDEN} Roles: {policy.describe()}.",
                "content": content,
            }


def _challenge(error: str) -> str:
    return 'Bearer realm="billing"' + (f', error="{error}"' if error else "")


async def _unauthorized(_: Request, exc: AuthError) -> JSONResponse:
    if isinstance(exc, IssuerUnavailable):
        return problem_response(503, exc.reason, title="Service Unavailable", headers={"Retry-After": "5"})
    return problem_response(
        401, exc.reason, title="Unauthorized", headers={"WWW-Authenticate": _challenge(exc.error)}
    )


async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
    log.info(
        "request_forbidden",
        caller=exc.caller.subject if exc.caller else None,
        needed=[r.value for r in exc.needed],
    )
    return problem_response(403, str(exc), title="Forbidden")
