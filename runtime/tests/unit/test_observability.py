"""Tracing is off unless the standard OTEL_* variables ask for it; log context binds request and message ids."""

from __future__ import annotations

import json

import httpx
import pytest
import structlog
from fastapi import FastAPI

from service_runtime.logging import bound_message, configure_logging
from service_runtime.metrics import ServiceMetrics
from service_runtime.observability import RequestObservation
from service_runtime.tracing import inject_headers, tracing_requested


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "metering"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_off_by_default_and_follows_the_standard_variables(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing_requested(environ) is wanted


def test_without_an_active_span_no_trace_header_is_added() -> None:
    assert dict(inject_headers({"event_id": "e"})) == {"event_id": "e"}


def test_a_message_id_is_in_every_line_logged_while_it_is_bound(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    log = structlog.get_logger("test")
    with bound_message(message_id="evt-1", topic="usage.voucher-created.v1"):
        log.info("applied")
    log.info("after")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message_id"] == "evt-1"
    assert lines[0]["topic"] == "usage.voucher-created.v1"
    assert "message_id" not in lines[1]


async def test_a_request_id_that_does_not_look_like_one_is_replaced() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    wrapped = RequestObservation(app, ServiceMetrics("test"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as http:
        response = await http.get("/ping", headers={"X-Request-ID": 'evil"\nline'})
    assert response.headers["x-request-id"] != 'evil"\nline'
    assert len(response.headers["x-request-id"]) == 32
