"""Every HTTP route of every service documents what it accepts and returns (issue 9).

The test builds each service's FastAPI app exactly as its composition root does (`create_app` with
the service's settings; nothing is started, nothing connects) and walks the OpenAPI document: every
request body, every response and every schema they reach must be typed. A free-form object (a
`dict[str, Any]` body, `additionalProperties: true`, an empty schema `{}`) fails, with the route and
the path inside the schema, so an operator never meets an endpoint whose OpenAPI says "anything".

The services are found by their layout (`services/*/src/<package>/app.py`), so a new service, or a
rebuilt one, is checked without editing this file.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from service_runtime.clock import FixedClock

ROOT = Path(__file__).parents[1]
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/src/*/app.py"))
#: FastAPI's own request-validation error (its `ctx` and `input` echo whatever was sent); the
#: runtime's problem details replace it, and it is not a schema of ours.
FRAMEWORK_SCHEMAS = {"HTTPValidationError", "ValidationError"}
METHODS = {"get", "put", "post", "delete", "patch"}


def _settings_class(package: str) -> type[BaseSettings]:
    module = importlib.import_module(f"{package}.settings")
    found = [
        c
        for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, BaseSettings) and c.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{package}.settings should define one settings class, found {found}"
    return found[0]


def openapi_of(package: str) -> dict[str, Any]:
    app = importlib.import_module(f"{package}.app").create_app(
        _settings_class(package)(), FixedClock(dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC))
    )
    document: dict[str, Any] = app.openapi()
    return document


def _untyped(schema: Any, where: str, components: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Paths inside `schema` that accept or give any object (or anything at all)."""
    if schema is True or schema == {}:
        yield f"{where}: any value"
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen and name not in FRAMEWORK_SCHEMAS:
            seen.add(name)
            yield from _untyped(components.get(name, {}), f"{where} → {name}", components, seen)
        return
    extra = schema.get("additionalProperties")
    if schema.get("type") == "object" or extra is not None:
        if extra is True or extra == {} or (extra is None and "properties" not in schema):
            yield f"{where}: a free-form object"
        elif isinstance(extra, dict):
            yield from _untyped(extra, f"{where}{{*}}", components, seen)
    for key, value in (schema.get("properties") or {}).items():
        yield from _untyped(value, f"{where}.{key}", components, seen)
    if "items" in schema:
        yield from _untyped(schema["items"], f"{where}[]", components, seen)
    for combinator in ("anyOf", "oneOf", "allOf"):
        for i, part in enumerate(schema.get(combinator) or ()):
            if part == {"type": "null"}:
                continue
            yield from _untyped(part, f"{where}<{combinator}{i}>", components, seen)


def untyped_schemas(document: dict[str, Any]) -> list[str]:
    """Every request body and response of every route that is not fully typed."""
    components = document.get("components", {}).get("schemas", {})
    problems: list[str] = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            route = f"{method.upper()} {path}"
            bodies = [("request", operation.get("requestBody", {}).get("content", {}))]
            bodies += [
                (f"response {status}", r.get("content", {})) for status, r in operation["responses"].items()
            ]
            for what, content in bodies:
                for media, body in content.items():
                    if media == "text/plain" or "schema" not in body:
                        continue
                    problems += _untyped(body["schema"], f"{route} {what} ({media})", components, set())
    return problems


@pytest.mark.parametrize("package", SERVICES)
def test_every_route_accepts_and_returns_typed_models(package: str) -> None:
    document = openapi_of(package)
    assert document["paths"], f"{package} has no routes"
    assert untyped_schemas(document) == []


def test_the_walker_finds_free_form_objects_anywhere() -> None:
    # The detector itself: a dict[str, Any] response, an Any property, a list of free-form objects.
    document = {
        "paths": {
            "/a": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "additionalProperties": True}
                                }
                            }
                        }
                    }
                }
            },
            "/b": {
                "post": {
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/B"}}}
                    },
                    "responses": {},
                }
            },
            "/c": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}
                            }
                        }
                    }
                }
            },
            "/d": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/D"}}}
                        }
                    }
                }
            },
        },
        "components": {
            "schemas": {
                "B": {"type": "object", "properties": {"x": {}, "y": {"type": "string"}}},
                "D": {
                    "type": "object",
                    "properties": {"n": {"type": "object", "additionalProperties": {"type": "integer"}}},
                },
            }
        },
    }
    assert untyped_schemas(document) == [
        "GET /a response 200 (application/json): a free-form object",
        "POST /b request (application/json) → B.x: any value",
        "GET /c response 200 (application/json)[]: a free-form object",
    ]
