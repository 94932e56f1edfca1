"""Generated from every service's OpenAPI: each route refuses a caller without a token (401), refuses a
caller without its role (403) and lets a caller with its role through (neither 401 nor 403).

New routes are covered without editing this file; a route without a declared policy fails here (and
its app is not even built: `service_runtime.auth.install_route_policies`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack.issuer import DevIssuer

from .conftest import Stack

pytestmark = pytest.mark.integration

SERVICES = ("metering", "invoicing", "partners", "procountor-sync")
#: A path parameter that names nothing: the allowed call must not change anything that exists.
PROBE = "route-policy-probe"


@dataclass(frozen=True)
class Identity:
    """A dev user or service client of the dev issuer, with the roles its tokens carry."""

    name: str
    roles: frozenset[str]
    auth: httpx.Auth


def identities(issuer: DevIssuer) -> list[Identity]:
    users = {
        "ville.viewer": {"viewer"},
        "olli.operator": {"viewer", "billing-operator"},
        "hilkka.prices": {"viewer", "price-administrator"},
        "pirjo.partners": {"viewer", "partner-manager"},
    }
    clients = {
        ("billing-run-cronjob", "local-cronjob-secret"): {"billing-run-trigger"},
        ("invoicing", "local-invoicing-secret"): {"usage-reader"},
        ("crm", "local-crm-secret"): {"contract-system"},
    }
    return [Identity(u, frozenset(r), issuer.user_auth(u)) for u, r in users.items()] + [
        Identity(c, frozenset(r), issuer.client_auth(c, secret)) for (c, secret), r in clients.items()
    ]


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    path: str
    body: dict[str, Any]
    roles: frozenset[str] | None
    public: str | None


def _value(parameter: dict[str, Any]) -> str:
    """A value its schema accepts that names nothing real (months far ahead, ids nobody has)."""
    schema = parameter.get("schema", {})
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") == "integer":
        return "987654321"
    pattern = schema.get("pattern", "")
    if "\\d{2}-" in pattern or "(0[1-9]|1[0-2])" in pattern:
        return "2099-12"
    return PROBE


def operations(schema: dict[str, Any]) -> list[Operation]:
    found = []
    for template, methods in schema["paths"].items():
        for method, operation in methods.items():
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    path = path.replace("{" + parameter["name"] + "}", _value(parameter))
            assert not re.search(r"{\w+}", path), f"{method} {template}: a path parameter without a value"
            body: dict[str, Any] = {}
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                body = {"json": {}}
            elif content:
                body = {"content": b"", "headers": {"content-type": next(iter(content))}}
            roles = operation.get("x-roles")
            found.append(
                Operation(
                    method.upper(),
                    template,
                    path,
                    body,
                    None if roles is None else frozenset(roles),
                    operation.get("x-public"),
                )
            )
    return found


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_answers_401_without_a_token_403_without_its_role_and_lets_its_role_through(
    stack: Stack, service: str
) -> None:
    app = stack.apps[service]
    who = identities(stack.issuer)
    found = operations(app.openapi())
    problems: list[str] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:

        async def call(op: Operation, auth: httpx.Auth | None) -> httpx.Response:
            return await http.request(op.method, op.path, auth=auth, **op.body)

        for op in found:
            name = f"{op.method} {op.template}"
            if op.roles is None and op.public is None:
                problems.append(f"{name}: no declared policy (neither x-roles nor x-public in the OpenAPI)")
                continue
            if op.public is not None:
                anonymous = await call(op, None)
                if anonymous.status_code == 401 and "bearer token" in anonymous.text:
                    problems.append(f"{name}: declared public ({op.public}) but asks for a bearer token")
                continue
            assert op.roles is not None
            anonymous = await call(op, None)
            if (
                anonymous.status_code != 401
                or anonymous.headers.get("content-type") != "application/problem+json"
            ):
                problems.append(f"{name}: without a token {anonymous.status_code}, not a 401 problem")
            outsider = next((i for i in who if i.roles and not i.roles & op.roles), None)
            if outsider is None:
                problems.append(f"{name}: every dev identity holds one of {sorted(op.roles)}; no 403 to test")
            else:
                refused = await call(op, outsider.auth)
                if refused.status_code != 403:
                    problems.append(
                        f"{name}: {outsider.name} ({sorted(outsider.roles)}) got {refused.status_code}"
                    )
            insider = next((i for i in who if i.roles & op.roles), None)
            if insider is None:
                problems.append(f"{name}: no dev identity holds any of {sorted(op.roles)}")
                continue
            allowed = await call(op, insider.auth)
            if allowed.status_code in (401, 403):
                problems.append(f"{name}: {insider.name} ({sorted(insider.roles)}) got {allowed.status_code}")

    assert problems == []
    assert len(found) >= 6  # the routes of the service and of the runtime (probes, dead letters)
