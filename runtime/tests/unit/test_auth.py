"""Bearer tokens are verified against the issuer's keys; roles decide; refusals are problem details."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from oidc_emulator import IssuerConfig, create_app
from oidc_emulator.config import DEV_USERS
from oidc_emulator.keys import KeyRing

from service_runtime.auth import (
    AuthConfig,
    AuthError,
    Caller,
    JwksCache,
    Role,
    TokenVerifier,
    caller_from_claims,
    install_auth,
    require,
)
from service_runtime.problems import PROBLEM_JSON

ISSUER = "https://issuer.test/realms/billing"
AUDIENCE = "billing"


class Issuer:
    """The dev issuer's app in process, its key ring, and a count of JWKS fetches."""

    def __init__(self) -> None:
        self.keys = KeyRing()
        self.app = create_app(IssuerConfig(issuer=ISSUER), keys=self.keys)
        self.fetches = 0
        self.now = 1000.0

    def http(self) -> httpx.AsyncClient:
        self.fetches += 1
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://issuer")

    def token(self, *, sign_with: KeyRing | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "olli.operator",
            "aud": AUDIENCE,
            "azp": "billing-dev",
            "iat": now,
            "exp": now + 300,
            "roles": ["viewer", "billing-operator"],
        } | overrides
        return (sign_with or self.keys).sign({k: v for k, v in claims.items() if v is not None})

    def verifier(self, **config: Any) -> TokenVerifier:
        auth = AuthConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://issuer/jwks", **config)
        return TokenVerifier(auth, keys=JwksCache(auth, http=self.http, monotonic=lambda: self.now))


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


async def test_a_valid_token_names_the_caller_and_its_roles(issuer: Issuer) -> None:
    caller = await issuer.verifier().verify(issuer.token())
    assert caller == Caller(
        subject="olli.operator",
        client_id="billing-dev",
        roles=frozenset({Role.VIEWER, Role.BILLING_OPERATOR}),
    )


async def test_an_expired_token_is_refused(issuer: Issuer) -> None:
    past = int(time.time()) - 3600
    with pytest.raises(AuthError, match="expired"):
        await issuer.verifier().verify(issuer.token(iat=past - 300, exp=past))


async def test_clock_skew_within_the_leeway_is_tolerated_and_beyond_it_is_not(issuer: Issuer) -> None:
    just_expired = issuer.token(exp=int(time.time()) - 10)
    assert (await issuer.verifier(leeway_seconds=30).verify(just_expired)).subject == "olli.operator"
    with pytest.raises(AuthError, match="expired"):
        await issuer.verifier(leeway_seconds=0).verify(just_expired)
    not_yet = issuer.token(nbf=int(time.time()) + 120)
    with pytest.raises(AuthError, match="not valid yet"):
        await issuer.verifier().verify(not_yet)


async def test_a_token_of_another_issuer_is_refused(issuer: Issuer) -> None:
    with pytest.raises(AuthError, match="another issuer"):
        await issuer.verifier().verify(issuer.token(iss="https://evil.test"))


async def test_a_token_for_another_audience_is_refused(issuer: Issuer) -> None:
    with pytest.raises(AuthError, match="another audience"):
        await issuer.verifier().verify(issuer.token(aud="procountor"))


async def test_a_token_signed_by_an_unknown_key_is_refused(issuer: Issuer) -> None:
    stranger = KeyRing()
    with pytest.raises(AuthError, match="unknown key"):
        await issuer.verifier().verify(issuer.token(sign_with=stranger))


async def test_a_rotated_key_is_fetched_when_a_token_names_it(issuer: Issuer) -> None:
    verifier = issuer.verifier(jwks_min_refresh_seconds=10)
    await verifier.verify(issuer.token())
    assert issuer.fetches == 1
    issuer.keys.rotate()
    issuer.now += 11  # past the refresh floor, well inside the cache lifetime

    caller = await verifier.verify(issuer.token())

    assert caller.subject == "olli.operator"
    assert issuer.fetches == 2


async def test_unknown_key_ids_do_not_make_us_fetch_keys_on_every_request(issuer: Issuer) -> None:
    verifier = issuer.verifier(jwks_min_refresh_seconds=10)
    await verifier.verify(issuer.token())
    stranger = KeyRing()
    for _ in range(5):
        with pytest.raises(AuthError, match="unknown key"):
            await verifier.verify(issuer.token(sign_with=stranger))
    assert issuer.fetches == 1


async def test_keys_are_fetched_again_when_the_cache_lifetime_ends(issuer: Issuer) -> None:
    verifier = issuer.verifier(jwks_cache_seconds=300)
    await verifier.verify(issuer.token())
    issuer.keys.rotate(retire_previous=True)
    old_token_new_world = issuer.token(sign_with=None)
    issuer.now += 301
    await verifier.verify(old_token_new_world)
    assert issuer.fetches == 2


@pytest.mark.parametrize("alg_token", ["none", "HS256"])
async def test_unsigned_and_shared_secret_tokens_are_refused(issuer: Issuer, alg_token: str) -> None:
    import jwt

    claims = {
        "iss": ISSUER,
        "sub": "x",
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    key: Any = "k" * 32 if alg_token == "HS256" else None
    token = jwt.encode(claims, key, algorithm=alg_token)
    with pytest.raises(AuthError, match="not accepted"):
        await issuer.verifier().verify(token)


async def test_a_token_without_a_subject_is_refused(issuer: Issuer) -> None:
    with pytest.raises(AuthError, match="sub"):
        await issuer.verifier().verify(issuer.token(sub=None))


def test_keycloak_realm_roles_and_entra_app_ids_are_read() -> None:
    keycloak = caller_from_claims(
        {"sub": "s", "azp": "billing-ui", "realm_access": {"roles": ["viewer", "offline_access"]}},
        role_claim="realm_access.roles",
    )
    entra = caller_from_claims(
        {"sub": "oid-1", "appid": "app-1", "roles": ["usage-reader"]}, role_claim="roles"
    )
    assert keycloak.roles == {Role.VIEWER}
    assert keycloak.client_id == "billing-ui"
    assert entra == Caller(subject="oid-1", client_id="app-1", roles=frozenset({Role.USAGE_READER}))


def test_the_dev_issuer_knows_exactly_the_roles_the_services_check() -> None:
    from oidc_emulator import config

    issued = {r for u in DEV_USERS for r in u.roles} | {r for c in config.SERVICE_CLIENTS for r in c.roles}
    assert issued == {r.value for r in Role}


# --- the FastAPI policy API ------------------------------------------------------------------


def protected_app(verifier: TokenVerifier | None) -> FastAPI:
    app = FastAPI()
    install_auth(app, verifier)

    @app.post("/credit-notes")
    async def credit(caller: Annotated[Caller, require(Role.BILLING_OPERATOR)]) -> dict[str, str]:
        return {"actor": caller.subject}

    return app


Call = Callable[..., Any]


async def call(app: FastAPI, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        return await http.post("/credit-notes", headers=headers)


async def test_no_token_is_a_401_problem_with_a_bearer_challenge(issuer: Issuer) -> None:
    response = await call(protected_app(issuer.verifier()), None)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "a bearer token is required",
    }


async def test_a_bad_token_is_a_401_problem_that_says_why(issuer: Issuer) -> None:
    response = await call(protected_app(issuer.verifier()), issuer.token(aud="other"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["detail"] == "the token is for another audience"


async def test_a_caller_without_the_role_gets_a_403_problem(issuer: Issuer) -> None:
    response = await call(
        protected_app(issuer.verifier()), issuer.token(sub="ville.viewer", roles=["viewer"])
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"] == "needs one of the roles billing-operator"


async def test_a_caller_with_the_role_passes_and_the_actor_is_its_subject(issuer: Issuer) -> None:
    response = await call(protected_app(issuer.verifier()), issuer.token())
    assert response.status_code == 200
    assert response.json() == {"actor": "olli.operator"}


async def test_without_a_configured_issuer_protected_routes_stay_closed() -> None:
    response = await call(protected_app(None), "anything")
    assert response.status_code == 401
    assert response.json()["detail"] == "this service has no token issuer configured"


def test_require_needs_a_role() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        require()
