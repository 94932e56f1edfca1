"""Every service answers the operator's probes: liveness, readiness, Prometheus metrics, OpenAPI."""

from __future__ import annotations

import pytest

from ..conftest import Metering

pytestmark = pytest.mark.integration


async def test_liveness_answers_ok_and_names_what_runs(metering: Metering) -> None:
    response = await metering.http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["service"]) == ("ok", "metering")
    # Issue 12: liveness covers the consumer, the outbox relay and the background loops.
    assert body["checks"]["consumer:metering"] == "ok"
    assert body["checks"]["outbox-relay"] == "ok"
    assert set(body["checks"].values()) == {"ok"}


async def test_readiness_reports_the_database_and_the_broker_reachable(metering: Metering) -> None:
    response = await metering.http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "kafka": "ok"}


async def test_metrics_are_exposed_in_prometheus_text_format(metering: Metering) -> None:
    response = await metering.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'service_starts_total{service="metering"} 1.0' in response.text
    assert "# TYPE messages_consumed_total counter" in response.text


async def test_the_api_is_documented_in_openapi(metering: Metering) -> None:
    spec = (await metering.http.get("/openapi.json")).json()
    assert "/environments/{environment_id}/usage/{month}" in spec["paths"]
    assert "/readyz" in spec["paths"]
