"""HTTP refusals as RFC 9457 problem details, and the edge that refuses hostile input before any route runs."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import pydantic_core
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing_contracts.base import INT64_MAX, INT64_MIN, bound_message
from service_runtime.hygiene import ANY_CONTROL, TEXT_CONTROL, describe_char, visible

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

#: Largest request body any route accepts (a price book YAML is a few kilobytes).
MAX_BODY_BYTES = 1024 * 1024
#: Deepest nesting of a JSON body: our request models are a few levels deep.
MAX_JSON_DEPTH = 32

#: Problem types, relative references resolved against the service's URL; docs/reliability.md lists them.
VALIDATION = "/problems/validation-failed"
RULE = "/problems/rule-refused"
MALFORMED = "/problems/malformed-request"
TOO_LARGE = "/problems/body-too-large"
INTERNAL = "/problems/internal-error"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ProblemField(BaseModel):
    """One input that was refused, by where it was and what is wrong with it."""

    path: str = Field(description="Where: `body.run_date`, `query.after_number`, `path.period`.")
    message: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An RFC 9457 problem detail: every refusal and error of our HTTP APIs (`application/problem+json`)."""

    type: str = Field(default="about:blank", description="URI reference of the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What is wrong with this request, for people.")
    rule: str | None = Field(default=None, description="The business rule that refused it (e.g. `B-25`).")
    errors: list[ProblemField] | None = Field(
        default=None, description="For validation failures: every refused input with its path."
    )


class RuleRefusedError(Exception):
    """A business rule refused the request: answered as a problem with the rule id (422 unless told)."""

    def __init__(self, rule: str, reason: str, *, status: int = 422) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason
        self.status = status


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    rule: str | None = None,
    errors: list[ProblemField] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem detail response with `application/problem+json`."""
    body = Problem(
        type=type_,
        title=title or _phrase(status),
        status=status,
        detail=visible(detail, limit=2000),
        rule=rule,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _validation_failed(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        ProblemField(
            path=visible(".".join(str(p) for p in e.get("loc", ())) or "<request>", limit=200),
            message=visible(bound_message(str(e.get("type", "")), str(e.get("msg", "invalid"))), limit=500),
        )
        for e in exc.errors()[:50]
    ]
    summary = "; ".join(f"{e.path}: {e.message}" for e in errors[:5])
    return problem_response(
        422, summary or "the request is not valid", type_=VALIDATION, title="Validation failed", errors=errors
    )


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    rule = None
    if isinstance(detail, dict) and "reason" in detail:
        # Refusals raised as HTTPException(422, {"rule", "reason"}) before this module existed.
        rule = str(detail["rule"]) if detail.get("rule") is not None else None
        detail = detail["reason"]
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return problem_response(
        exc.status_code,
        text,
        type_=RULE if rule else "about:blank",
        rule=rule,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _rule_refused(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RuleRefusedError)
    return problem_response(
        exc.status, exc.reason, type_=RULE, title="Refused by a business rule", rule=exc.rule
    )


async def _last_resort(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app`; an exception nobody handled becomes a 500 problem without internals.

    Starlette's own handler for `Exception` would answer and then raise again (a second
    traceback in the log); here the traceback goes to the log once and the caller learns nothing
    internal.
    """
    started = False

    async def tracking(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking)
    except Exception as exc:
        log.error(
            "request_failed",
            method=scope.get("method"),
            path=visible(str(scope.get("path", "")), limit=200),
            error=type(exc).__name__,
            exc_info=exc,
        )
        if started:
            raise
        response = problem_response(
            500,
            "the service could not answer this request; the error is in its log",
            type_=INTERNAL,
            title="Internal error",
        )
        await response(scope, receive, send)


class EdgeGuard:
    """Refuses hostile input before routing, as 4xx problem details.

    Control characters in the path or query (`%00`…), bodies larger than `max_body_bytes`, JSON
    nested deeper than `max_json_depth`, non-finite numbers (`1e400`, `NaN`), integers beyond
    64 bits, and control characters other than TAB, LF and CR in body text. Everything else is
    left to the route's typed models.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _last_resort(self._guard, scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _refuse_target(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS") and declared in (None, "0"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        problem = _body_problem(bytes(body), headers.get("content-type", ""), self.max_json_depth)
        if problem is not None:
            await problem_response(400, problem, type_=MALFORMED, title="Malformed request")(
                scope, receive, send
            )
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            f"the request body is larger than the {self.max_body_bytes:,} bytes this service accepts",
            type_=TOO_LARGE,
            title="Request body too large",
        )
        await response(scope, receive, send)


def _refuse_target(scope: Scope) -> JSONResponse | None:
    path = scope.get("path", "")
    found = ANY_CONTROL.search(path)
    if found is not None:
        return problem_response(
            400,
            f"the path contains the control character {describe_char(found.group())}",
            type_=MALFORMED,
            title="Malformed request",
        )
    query = scope.get("query_string", b"")
    if query:
        decoded = unquote_to_bytes(query.replace(b"+", b" "))
        for byte in decoded:
            if byte < 0x20 or byte == 0x7F:
                return problem_response(
                    400,
                    f"the query string contains the control character {describe_char(chr(byte))}",
                    type_=MALFORMED,
                    title="Malformed request",
                )
    return None


def _body_problem(body: bytes, content_type: str, max_depth: int) -> str | None:
    """Why the body is refused at the edge, or None (invalid JSON is left to the route's 422)."""
    if not body:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("", "application/json") or media.endswith("+json"):
        try:
            document = pydantic_core.from_json(body, allow_inf_nan=False)
        except ValueError as exc:
            if "recursion limit" in str(exc):
                return f"the JSON body is nested deeper than {max_depth} levels"
            return None  # not JSON: the route says what it expected
        return _json_problem(document, max_depth)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # a route reading text decodes and refuses it itself
    found = TEXT_CONTROL.search(text)
    if found is not None:
        return f"the body contains the control character {describe_char(found.group())}"
    return None


def _json_problem(document: Any, max_depth: int) -> str | None:
    stack: list[tuple[str, Any, int]] = [("body", document, 1)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                return f"the JSON body is nested deeper than {max_depth} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                if isinstance(key, str):
                    found = ANY_CONTROL.search(key)
                    if found is not None:
                        return f"{visible(path, limit=200)}: a key contains the control character {describe_char(found.group())}"
                stack.append((f"{path}.{key}", child, depth + 1))
        elif isinstance(value, str):
            found = TEXT_CONTROL.search(value)
            if found is not None:
                return f"{visible(path, limit=200)}: control character {describe_char(found.group())} is not allowed"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{visible(path, limit=200)}: not a finite number"
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            return f"{visible(path, limit=200)}: integer outside the 64-bit range"
    return None


_DEFAULT_RESPONSES = {
    "400": "Malformed request (control characters, nesting, non-finite numbers), as a problem detail.",
    "413": "Request body too large, as a problem detail.",
    "422": "Validation failed or a business rule refused the request, as a problem detail.",
    "500": "Internal error (never expected; logged), as a problem detail without internals.",
}


def install_problem_details(
    app: FastAPI, *, max_body_bytes: int = MAX_BODY_BYTES, max_json_depth: int = MAX_JSON_DEPTH
) -> None:
    """Every refusal of `app` as a problem detail, the edge guard in front, the defaults in its OpenAPI."""
    app.add_middleware(EdgeGuard, max_body_bytes=max_body_bytes, max_json_depth=max_json_depth)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RuleRefusedError, _rule_refused)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in (
            Problem.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
        ):
            components[name] = definition
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        problem.pop("$defs", None)
        components["Problem"] = problem
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in _DEFAULT_RESPONSES.items():
                    responses[status] = {"description": description, "content": content}
                for status, response in responses.items():
                    if status.startswith(("4", "5")) and status not in _DEFAULT_RESPONSES:
                        response["content"] = content
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
