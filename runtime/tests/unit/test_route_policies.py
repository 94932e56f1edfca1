"""Every route of a service app has a declared policy: none missing, none stale, enforced and documented."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import MetaData

from service_runtime.auth import (
    AuthConfig,
    Caller,
    JwksCache,
    Role,
    RoutePolicies,
    RoutePolicyError,
    TokenVerifier,
    allow,
    authenticated,
    install_auth,
    public,
)
from service_runtime.clock import FixedClock
from service_runtime.host import ServiceHost, create_service_app
from service_runtime.settings import ServiceSettings
from service_runtime.tables import add_runtime_tables

from .test_auth import AUDIENCE, ISSUER, Issuer


class Body(BaseModel):
    amount: int


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/things/{thing_id}")
    async def read(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    @r.post("/things/{thing_id}/credit")
    async def credit(thing_id: str, body: Body, caller: Annotated[Caller, authenticated]) -> dict[str, str]:
        return {"actor": caller.subject, "thing": thing_id}

    @r.get("/directory")
    async def directory() -> dict[str, str]:
        return {"open": "yes"}

    return r


POLICIES: RoutePolicies = {
    "GET /things/{thing_id}": allow(Role.VIEWER),
    "POST /things/{thing_id}/credit": allow(Role.BILLING_OPERATOR),
    "GET /directory": public("the public directory"),
}


def service_app(policies: RoutePolicies, issuer: Issuer | None = None, **settings: object) -> FastAPI:
    """A service app as the runtime builds it (nothing connects until its lifespan starts)."""
    host = ServiceHost(
        name="test",
        settings=ServiceSettings(auth_issuer="https://issuer.test/realms/billing", **settings),  # type: ignore[arg-type]
        clock=FixedClock(dt.datetime(2026, 12, 2, 9, tzinfo=dt.UTC)),
        tables=add_runtime_tables(MetaData(schema="test")),
    )
    app = create_service_app(host, title="t", description="t", routers=[router()], policies=policies)
    if issuer is not None:
        install_auth(app, issuer.verifier())
    return app


def test_an_app_with_a_route_without_a_policy_is_not_built() -> None:
    with pytest.raises(RoutePolicyError, match=r"no policy for POST /things/\{thing_id\}/credit"):
        service_app({k: v for k, v in POLICIES.items() if not k.startswith("POST")})


def test_a_policy_for_a_route_that_does_not_exist_is_refused_too() -> None:
    with pytest.raises(RoutePolicyError, match="a policy for DELETE /things, which is no route"):
        service_app({**POLICIES, "DELETE /things": allow(Role.BILLING_OPERATOR)})


def test_a_policy_names_at_least_one_role_and_a_public_route_says_why() -> None:
    with pytest.raises(ValueError, match="at least one role"):
        allow()
    with pytest.raises(ValueError, match="reason"):
        public(" ")


async def call(
    app: FastAPI, method: str, path: str, token: str | None, content_type: str | None = None, **kwargs: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        return await http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


async def test_each_route_answers_by_its_policy_before_it_reads_its_input() -> None:
    issuer = Issuer()
    app = service_app(POLICIES, issuer)
    operator = issuer.token()
    viewer = issuer.token(sub="ville.viewer", roles=["viewer"])

    # No token: 401 even with an invalid body (the caller learns nothing about the route's input).
    anonymous = await call(app, "POST", "/things/a/credit", None, json={"amount": "many"})
    assert (anonymous.status_code, anonymous.headers["content-type"]) == (401, "application/problem+json")
    assert anonymous.json()["title"] == "Unauthorized"
    forbidden = await call(app, "POST", "/things/a/credit", viewer, json={"amount": 1})
    assert (forbidden.status_code, forbidden.json()["detail"]) == (
        403,
        "needs one of the roles billing-operator",
    )
    # Not even a body that is no JSON at all is read before the caller is known.
    garbled = await call(
        app, "POST", "/things/a/credit", None, content=b"{not json", content_type="application/json"
    )
    assert garbled.status_code == 401
    allowed = await call(app, "POST", "/things/a/credit", operator, json={"amount": 1})
    assert allowed.json() == {"actor": "olli.operator", "thing": "a"}
    invalid = await call(app, "POST", "/things/a/credit", operator, json={"amount": "many"})
    assert invalid.status_code == 422

    assert (await call(app, "GET", "/things/a", viewer)).status_code == 200
    assert (await call(app, "GET", "/things/a", None)).status_code == 401
    assert (await call(app, "GET", "/directory", None)).json() == {"open": "yes"}
    assert (await call(app, "GET", "/healthz", None)).status_code == 200
    # The runtime's own tools have their policies too.
    assert (await call(app, "GET", "/dead-letters", None)).status_code == 401
    assert (
        await call(app, "POST", "/dead-letters/1/discard", viewer, json={"reason": "x"})
    ).status_code == 403


def test_the_openapi_names_the_schemes_each_operations_roles_and_its_401_and_403() -> None:
    schema = service_app(POLICIES).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["oidc"] == {
        "type": "openIdConnect",
        "openIdConnectUrl": "https://issuer.test/realms/billing/.well-known/openid-configuration",
        "description": "Sign in at the token issuer (authorization code with PKCE).",
    }
    assert schemes["bearer"]["scheme"] == "bearer"
    credit = schema["paths"]["/things/{thing_id}/credit"]["post"]
    assert credit["security"] == [{"bearer": []}, {"oidc": ["openid"]}]
    assert credit["x-roles"] == ["billing-operator"]
    assert {"401", "403"} <= set(credit["responses"])
    assert credit["responses"]["403"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    directory = schema["paths"]["/directory"]["get"]
    assert (directory["security"], directory["x-public"]) == ([], "the public directory")
    assert "401" not in directory["responses"]


async def test_swagger_ui_is_served_by_the_service_and_signs_in_with_pkce() -> None:
    app = service_app(POLICIES, auth_docs_client_id="billing-ui")
    page = await call(app, "GET", "/docs", None)
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert '"usePkceWithAuthorizationCodeGrant": true' in page.text
    assert '"clientId": "billing-ui"' in page.text
    assert (await call(app, "GET", "/docs/assets/swagger-ui-bundle.js", None)).status_code == 200
    assert (await call(app, "GET", "/docs/oauth2-redirect", None)).status_code == 200


async def test_an_issuer_whose_keys_cannot_be_fetched_makes_protected_routes_unavailable_not_unauthorized() -> (
    None
):
    issuer = Issuer()
    app = service_app(POLICIES)

    def unreachable() -> httpx.AsyncClient:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        return httpx.AsyncClient(transport=httpx.MockTransport(refuse))

    config = AuthConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://issuer/jwks")
    install_auth(app, TokenVerifier(config, keys=JwksCache(config, http=unreachable)))
    answer = await call(app, "GET", "/things/a", issuer.token())
    # The caller may hold a perfectly good token: 503 with Retry-After says "try again", not "go away".
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
    assert answer.headers["content-type"] == "application/problem+json"


async def test_refusals_at_the_gate_are_measured_under_their_route_template() -> None:
    issuer = Issuer()
    app = service_app(POLICIES, issuer)
    await call(app, "GET", "/things/abc", None)
    await call(app, "GET", "/no/such/route", None)
    metrics = app.state.host.metrics.registry
    assert (
        metrics.get_sample_value(
            "http_request_duration_seconds_count",
            {"method": "GET", "route": "/things/{thing_id}", "status": "401"},
        )
        == 1
    )
    assert (
        metrics.get_sample_value(
            "http_request_duration_seconds_count", {"method": "GET", "route": "<unmatched>", "status": "404"}
        )
        == 1
    )
