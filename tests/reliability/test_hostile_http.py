"""Issue 8 regressions over HTTP: every input that answered 500 on main is refused with a 4xx problem detail."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from billing_contracts.contracts import ContractSignedV1
from billing_contracts.examples import example_of

from ..conftest import Stack

pytestmark = pytest.mark.integration

SERVICES = ("metering", "invoicing", "partners", "sync")
#: A route of each service that reads a path parameter and a query string.
READS = {
    "metering": "/environments/{text}/usage/2026-11",
    "invoicing": "/invoices/{text}",
    "partners": "/firms/{text}",
    "sync": "/deliveries/{text}",
}


def client(stack: Stack, service: str) -> httpx.AsyncClient:
    found: httpx.AsyncClient = getattr(stack, service)
    return found


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


@pytest.mark.parametrize("service", SERVICES)
async def test_a_nul_in_a_path_is_refused_with_400(stack: Stack, service: str) -> None:
    response = await client(stack, service).get(READS[service].format(text="a%00b"))

    body = assert_problem(response, 400)
    assert body["detail"] == "the path contains the control character U+0000"


@pytest.mark.parametrize("service", SERVICES)
async def test_a_nul_in_a_query_string_is_refused_with_400(stack: Stack, service: str) -> None:
    response = await client(stack, service).get(READS[service].format(text="x"), params={"q": "a\u0000b"})

    body = assert_problem(response, 400)
    assert body["detail"] == "the query string contains the control character U+0000"


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("metering", "/months/2026-09/close"),
        ("invoicing", "/billing-runs"),
        ("partners", "/firms/x"),
        ("sync", "/deliveries/x"),
    ],
)
async def test_a_nul_in_a_body_string_is_refused_with_400(stack: Stack, service: str, path: str) -> None:
    response = await client(stack, service).post(path, json={"run_date": "2026-11-02\u0000"})

    body = assert_problem(response, 400)
    assert body["detail"] == "body.run_date: control character U+0000 is not allowed"


@pytest.mark.parametrize("period", ["2026-13", "abc", "0000-01", "2026-1"])
async def test_the_period_pattern_of_a_billing_run_is_enforced(stack: Stack, period: str) -> None:
    response = await stack.invoicing.get(f"/billing-runs/{period}")

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "path.period"


@pytest.mark.parametrize(
    "content", [b"1e400", b'{"run_date": 1e400}', b'{"run_date": NaN}', b'{"run_date": -Infinity}']
)
async def test_non_finite_numbers_are_refused_with_400(stack: Stack, content: bytes) -> None:
    response = await stack.invoicing.post(
        "/billing-runs", content=content, headers={"content-type": "application/json"}
    )

    assert_problem(response, 400 if b"1e400" in content else 422)


@pytest.mark.parametrize("path", ["/billing-runs", "/billing-runs/dry-run"])
@pytest.mark.parametrize("run_date", ["0001-01-01", "9999-12-31", "1999-12-31", "2100-01-01"])
async def test_run_dates_outside_the_accepted_range_are_refused_not_overflowed(
    stack: Stack, path: str, run_date: str
) -> None:
    response = await stack.invoicing.post(path, json={"run_date": run_date})

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "body.run_date"


@pytest.mark.parametrize("today", [0, 1700000000, "9999-12-31", "0001-01-01", "2026-11-02T00:00:00"])
async def test_the_scheduled_run_refuses_a_number_or_an_out_of_range_date_as_today(
    stack: Stack, today: object
) -> None:
    response = await stack.invoicing.post("/billing-runs/scheduled", json={"today": today})

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "body.today"


async def test_a_due_date_cannot_move_to_9999_12_31(stack: Stack) -> None:
    response = await stack.invoicing.post(
        "/invoices/INV-1/due-date",
        json={
            "new_due_date": "9999-12-31",
            "reason": "asked",
            "changed_by": "support",
            "requested_by": {"person_name": "Maija", "role": "main_user", "user_id": "u-1"},
        },
    )

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "body.new_due_date"


async def test_a_contract_cannot_start_production_on_0001_01_01(stack: Stack) -> None:
    signed = example_of(ContractSignedV1).model_dump(
        mode="json", exclude={"event_id", "occurred_at", "producer"}
    )

    response = await stack.invoicing.post("/contracts", json=signed | {"production_date": "0001-01-01"})

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "body.production_date"


async def test_an_integer_beyond_int64_in_after_number_is_refused(stack: Stack) -> None:
    response = await stack.invoicing.get("/invoices", params={"after_number": str(2**64)})

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "query.after_number"


async def test_a_price_list_yaml_nested_5000_deep_is_refused_with_its_reason(stack: Stack) -> None:
    deep = "price_lists: " + "[" * 5000 + "]" * 5000

    response = await stack.invoicing.post(
        "/price-lists", content=deep.encode(), headers={"content-type": "application/yaml"}
    )

    body = assert_problem(response, 422)
    assert body["detail"] == "the price book is nested deeper than 16 levels"


async def test_metering_refuses_month_0000_01(stack: Stack) -> None:
    response = await stack.metering.get("/environments/env-1/usage/0000-01")

    body = assert_problem(response, 422)
    assert body["errors"][0]["path"] == "path.month"


async def test_a_json_body_nested_deeper_than_32_levels_is_refused_with_400(stack: Stack) -> None:
    response = await stack.invoicing.post(
        "/billing-runs",
        content=b'{"a":' * 40 + b"1" + b"}" * 40,
        headers={"content-type": "application/json"},
    )

    body = assert_problem(response, 400)
    assert body["detail"] == "the JSON body is nested deeper than 32 levels"


async def test_a_body_larger_than_a_mebibyte_is_refused_with_413(stack: Stack) -> None:
    response = await stack.invoicing.post(
        "/billing-runs", json={"run_date": "2026-11-02", "x": "y" * 1_100_000}
    )

    assert_problem(response, 413)


async def test_a_business_refusal_is_a_problem_with_its_rule(stack: Stack) -> None:
    signed = example_of(ContractSignedV1).model_dump(
        mode="json", exclude={"event_id", "occurred_at", "producer"}
    )
    created = await stack.invoicing.post("/contracts", json=signed | {"environment_id": "env-rel-advance"})
    assert created.status_code in (201, 422)
    contract_id = (
        await stack.invoicing.get("/contracts", params={"environment_id": "env-rel-advance"})
    ).json()[0]["contract_id"]

    response = await stack.invoicing.post(
        f"/contracts/{contract_id}/advance-billing",
        json={
            "from_month": "2026-12",
            "to_month": "2026-12",
            "requested_by": {"person_name": "Maija", "role": "main_user", "user_id": "u"},
        },
    )

    body = assert_problem(response, 422)
    assert body.get("rule"), body
    assert (body["type"], body["rule"]) == ("/problems/rule-refused", "B-04")


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_documents_its_problem_responses(stack: Stack, service: str) -> None:
    spec = (await client(stack, service).get("/openapi.json")).json()

    assert "Problem" in spec["components"]["schemas"]
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status in ("400", "413", "422", "500"):
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"]


async def test_an_unknown_route_is_a_404_problem(stack: Stack) -> None:
    body = assert_problem(await stack.partners.get("/nowhere"), 404)
    assert json.dumps(body)
