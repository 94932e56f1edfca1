"""The partner managers' HTTP API (the same use case as Kafka) and the public directory (P-09)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from billing_contracts.invoicing import ContractChangedV1
from partners.service import follow_contracts

from ..conftest import Partners, business_id, contract_state, unique

pytestmark = pytest.mark.integration


async def register(partners: Partners, firm: str, **extra: Any) -> dict[str, Any]:
    body = {
        "firm_id": firm,
        "business_id": business_id(uuid.uuid4().int % 9_000_000 + 1_000_000),
        "firm_name": f"Tilitoimisto {firm}",
        "agreement_signed_on": "2026-01-15",
    } | extra
    response = await partners.http.post("/firms", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def exam(partners: Partners, firm: str, expert: str, exam: str, on: str = "2026-09-01") -> Any:
    return await partners.http.post(
        f"/firms/{firm}/experts/{expert}/exam-results",
        json={"exam": exam, "software": "procountor", "passed_on": on},
    )


async def end_customers(partners: Partners, firm: str, count: int) -> None:
    """Contract state straight into the use case Kafka would call (the broker path is tested elsewhere)."""
    states: list[ContractChangedV1] = [contract_state(f"{firm}-env-{n}", firm) for n in range(count)]
    async with partners.sessions.begin() as session:
        await follow_contracts(session, states, partners.clock)


async def test_registering_and_exam_results_over_http_give_the_tier_at_once(partners: Partners) -> None:
    firm = unique("firm")
    registered = await register(partners, firm)
    assert (registered["outcome"], registered["firm"]["tier"], registered["firm"]["in_program"]) == (
        "applied",
        "partner",
        True,
    )
    await end_customers(partners, firm, 100)
    assert (await exam(partners, firm, f"{firm}-p1", "authorization_online")).status_code == 200
    assert (
        await exam(partners, firm, f"{firm}-p1", "authorization_in_person", "2026-10-01")
    ).status_code == 200
    assert (await exam(partners, firm, f"{firm}-p2", "certification")).status_code == 200
    last = await exam(partners, firm, f"{firm}-p3", "certification")
    view = last.json()["firm"]
    # P-02: 100 end customers, 3 certified (the authorized one among them) and 1 authorized.
    assert (view["tier"], view["counts"]) == (
        "platinum",
        {"end_customers": 100, "certified_experts": 3, "authorized_experts": 1},
    )
    assert view["next_tier"] is None
    assert view["benefits"]["presentation"] == "extended"
    history = (await partners.http.get(f"/firms/{firm}/tiers")).json()["changes"]
    assert history[-1]["new_tier"] == "platinum"
    assert history[-1]["reason"].startswith(
        "rose to Platina / Platinum: 100 end customers, 3 certified and 1 authorized"
    )


async def test_refusals_over_http_are_4xx_with_the_rule_and_the_reason(partners: Partners) -> None:
    firm = unique("firm")
    await register(partners, firm)

    in_person = await exam(partners, firm, f"{firm}-p1", "authorization_in_person")
    assert in_person.status_code == 422
    assert in_person.headers["content-type"] == "application/problem+json"
    assert in_person.json()["rule"] == "P-04"
    assert in_person.json()["detail"].startswith(f"{firm}-p1 has no passed online part")

    unknown = await exam(partners, unique("nobody"), "p1", "certification")
    assert unknown.status_code == 404
    assert unknown.json()["rule"] == "P-02"
    assert "is not registered in the partner program" in unknown.json()["detail"]

    bad_id = await partners.http.post(
        "/firms",
        json={
            "firm_id": unique("firm"),
            "business_id": "1234567-8",
            "firm_name": "X",
            "agreement_signed_on": "2026-01-15",
        },
    )
    assert bad_id.status_code == 422
    assert "invalid check digit" in bad_id.json()["detail"]

    other = unique("firm")
    await register(partners, other)
    assert (await exam(partners, firm, f"{firm}-p9", "certification")).status_code == 200
    elsewhere = await exam(partners, other, f"{firm}-p9", "certification", "2026-10-01")
    assert elsewhere.status_code == 422
    assert "is for another firm" in elsewhere.json()["detail"]
    # Nothing of a refused input stays behind: the in-person part is fine once the online part is in.
    assert (await exam(partners, firm, f"{firm}-p1", "authorization_online", "2026-08-01")).status_code == 200
    assert (await exam(partners, firm, f"{firm}-p1", "authorization_in_person")).status_code == 200


async def test_the_same_request_id_applies_once(partners: Partners) -> None:
    firm = unique("firm")
    await register(partners, firm)
    request_id = str(uuid.uuid4())
    body = {
        "exam": "certification",
        "software": "procountor",
        "passed_on": "2026-09-01",
        "request_id": request_id,
    }
    manager = partners.issuer.user_auth("pirjo.partners")
    url = f"/firms/{firm}/experts/{firm}-p1/exam-results"
    viewer = await partners.http.post(url, json=body, auth=partners.issuer.user_auth("ville.viewer"))
    assert viewer.status_code == 403  # the program's inputs are the partner managers'
    first = (await partners.http.post(url, json=body | {"recorded_by": "someone"}, auth=manager)).json()
    second = (await partners.http.post(url, json=body, auth=manager)).json()
    assert (first["outcome"], second["outcome"]) == ("applied", "already_applied")
    assert first["event_id"] == second["event_id"] == request_id
    recorded_by = await partners.scalar(
        "SELECT recorded_by FROM partners.expert_facts WHERE event_id = CAST(:id AS uuid)", id=request_id
    )
    assert recorded_by == "partner-manager:pirjo.partners"  # the token's subject, never a name in the body


async def test_withdrawals_and_leaving_lower_the_counts(partners: Partners) -> None:
    firm = unique("firm")
    await register(partners, firm)
    await end_customers(partners, firm, 25)
    await exam(partners, firm, f"{firm}-p1", "certification")
    await exam(partners, firm, f"{firm}-p2", "certification")
    assert (await partners.firm(firm))["tier"] == "gold"
    withdrawn = await partners.http.post(
        f"/firms/{firm}/experts/{firm}-p1/withdrawals",
        json={
            "exam": "certification",
            "software": "procountor",
            "withdrawn_on": "2026-11-01",
            "reason": "void session",
        },
    )
    assert withdrawn.json()["firm"]["counts"]["certified_experts"] == 1
    left = await partners.http.post(f"/firms/{firm}/experts/{firm}-p2/left", json={"left_on": "2026-11-10"})
    assert (left.json()["firm"]["tier"], left.json()["firm"]["counts"]["certified_experts"]) == ("silver", 0)
    not_here = await partners.http.post(
        f"/firms/{firm}/experts/{firm}-p2/left", json={"left_on": "2026-11-12"}
    )
    assert not_here.status_code == 422


async def test_benefits_are_queryable_per_firm_and_month(partners: Partners) -> None:
    firm = unique("firm")
    await register(partners, firm)
    await end_customers(partners, firm, 5)
    await register(partners, firm)  # any input recomputes; the contract states came without one
    silver = (await partners.http.get(f"/firms/{firm}/benefits", params={"month": "2026-11"})).json()
    assert (silver["tier"], silver["own_use_discount_percent"], silver["directory_listing"]) == (
        "silver",
        "25",
        True,
    )
    assert (await partners.http.get(f"/firms/{firm}/benefits", params={"month": "2026-10"})).json() is None
    table = (await partners.http.get("/benefits", params={"month": "2026-11"})).json()
    assert table["valid_from"] == "2000-01-01"
    assert [t["resale_commission_percent"] for t in table["tiers"]] == ["10", "10", "10", "10"]


# --- P-09 the public directory ------------------------------------------------------------------------


async def firm_with(
    partners: Partners, token: str, tier_customers: int, experts: int, authorized: bool, **details: Any
) -> str:
    firm = unique("firm")
    await register(partners, firm)
    await end_customers(partners, firm, tier_customers)
    for n in range(experts):
        await exam(partners, firm, f"{firm}-p{n}", "certification")
    if authorized:
        await exam(partners, firm, f"{firm}-a", "authorization_online")
        await exam(partners, firm, f"{firm}-a", "authorization_in_person", "2026-09-02")
    body = {
        "firm_name": f"{details.pop('name')} {token}",
        "business_id": business_id(uuid.uuid4().int % 9_000_000 + 1_000_000),
        "city": details.pop("city", "Tampere"),
        "website": "https://example.fi",
        "presentation": "Lyhyt esittely.",
        "extended_presentation": "Laaja esittely.",
        "software": details.pop("software", ["procountor"]),
    }
    response = await partners.http.put(f"/firms/{firm}/details", json=body)
    assert response.status_code == 200, response.text
    return firm


async def test_the_directory_lists_silver_and_up_with_their_presentation_level_searchable_and_cacheable(
    partners: Partners,
) -> None:
    token = uuid.uuid4().hex[:8]
    await firm_with(partners, token, 4, 0, False, name="Alfa Partneri")  # Partner: not listed
    await firm_with(partners, token, 5, 0, False, name="Beeta Hopea", city="Oulu")
    await firm_with(partners, token, 25, 1, False, name="Gamma Kulta", software=["tikon_nettikon"])
    await firm_with(partners, token, 100, 2, True, name="Delta Platina", city="oulu")

    page = await partners.http.get("/directory", params={"name": token})
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 3
    assert [(i["firm_name"].split()[0], i["tier"], i["presentation_level"]) for i in body["items"]] == [
        ("Delta", "platinum", "extended"),
        ("Gamma", "gold", "presentation"),
        ("Beeta", "silver", "none"),
    ]
    delta, gamma, beeta = body["items"]
    assert (delta["presentation"], delta["extended_presentation"]) == ("Lyhyt esittely.", "Laaja esittely.")
    assert (gamma["presentation"], gamma["extended_presentation"]) == ("Lyhyt esittely.", None)
    assert (beeta["presentation"], beeta["extended_presentation"]) == (None, None)
    # Only public fields: nothing of counts, experts, reasons or ids.
    assert set(delta) == {
        "firm_name",
        "business_id",
        "city",
        "website",
        "software",
        "tier",
        "tier_name",
        "presentation_level",
        "presentation",
        "extended_presentation",
    }

    assert page.headers["cache-control"] == "public, max-age=300"
    etag = page.headers["etag"]
    again = await partners.http.get("/directory", params={"name": token}, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)

    by_city = (await partners.http.get("/directory", params={"name": token, "city": "OULU"})).json()
    assert [i["tier"] for i in by_city["items"]] == ["platinum", "silver"]
    by_software = (
        await partners.http.get("/directory", params={"name": token, "software": "tikon_nettikon"})
    ).json()
    assert [i["tier"] for i in by_software["items"]] == ["gold"]
    second = (await partners.http.get("/directory", params={"name": token, "page": 2, "page_size": 2})).json()
    assert (second["total"], [i["tier"] for i in second["items"]]) == (3, ["silver"])
    assert (await partners.http.get("/directory", params={"page_size": 1000})).status_code == 422


async def test_a_firm_leaving_the_program_leaves_the_directory(partners: Partners) -> None:
    token = uuid.uuid4().hex[:8]
    firm = await firm_with(partners, token, 5, 0, False, name="Epsilon Hopea")
    before = await partners.http.get("/directory", params={"name": token})
    assert before.json()["total"] == 1
    before_etag = before.headers["etag"]
    ended = await partners.http.post(
        f"/firms/{firm}/agreement-end", json={"ended_on": "2026-11-20", "reason": "notice"}
    )
    assert ended.json()["firm"]["in_program"] is False
    after = await partners.http.get("/directory", params={"name": token})
    assert after.json()["total"] == 0
    assert after.headers["etag"] != before_etag  # caches holding the old page revalidate to the new one
    assert dt.date.fromisoformat(ended.json()["firm"]["as_of"]) == dt.date(2026, 11, 20)
