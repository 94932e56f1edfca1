"""Contracts over the HTTP API on a real PostgreSQL and broker: every change, refusals with reasons, the audit, terms per month."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from billing_contracts.invoicing import ContractChangedV1
from billing_contracts.registry import topic_for
from devstack.infra import KafkaTarget
from devstack.issuer import DevIssuer

from .contract_stack import (
    BOOKKEEPER,
    EINVOICE,
    MAIN_USER,
    SIGNATORY,
    ContractStack,
    business_id,
    contract_stack,
    helsinki,
    new_environment,
)

pytestmark = pytest.mark.integration

NOW = helsinki(2026, 3, 20)


@pytest_asyncio.fixture(scope="module")
async def stack(
    kafka: KafkaTarget, postgres_admin_url: str, oidc_issuer: DevIssuer
) -> AsyncIterator[ContractStack]:
    async with contract_stack(kafka, postgres_admin_url, oidc_issuer, now=NOW) as running:
        yield running


@pytest.fixture(autouse=True)
def march_20(stack: ContractStack) -> None:
    stack.clock.set(NOW)


def of(contract_id: str, change: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """Matches the announcements of a contract (of one `change`, if named)."""
    return lambda m: m.get("contract_id") == contract_id and (change is None or m["change"] == change)


async def sign_new(stack: ContractStack, company: int, **fields: Any) -> str:
    """Sign a contract for a new environment over the API (as `ContractStack.sign`); its id."""
    created = await stack.sign(new_environment(), company, **fields)
    return str(created["contract_id"])


async def sign_tallennus(stack: ContractStack, company: int, *, firm_id: str, firm_business_id: str) -> str:
    """A Tallennus contract for a new environment, paid by its accounting firm (B-17); its id."""
    return await sign_new(
        stack,
        company,
        package="tallennus",
        payer="accounting_firm",
        accounting_firm_id=firm_id,
        accounting_firm_business_id=firm_business_id,
    )


async def post_contract(stack: ContractStack, **fields: Any) -> httpx.Response:
    """`POST /contracts`: a paper-billed contract from 1 February 2026 with `fields`."""
    return await stack.http.post(
        "/contracts",
        json={
            "production_date": "2026-02-01",
            "billing_address": {"street": "Katu 1", "postal_code": "00100", "city": "Helsinki"},
            "billing_channel": "paper",
        }
        | fields,
    )


async def post_change(stack: ContractStack, contract_id: str, change: str, **body: Any) -> httpx.Response:
    """`POST /contracts/{contract_id}/{change}` with `body`."""
    return await stack.http.post(f"/contracts/{contract_id}/{change}", json=body)


async def resize(
    stack: ContractStack, contract_id: str, new_package: str, *, requested_by: dict[str, Any], **fields: Any
) -> httpx.Response:
    """Ask for a package-size change (B-26) over the API."""
    return await post_change(
        stack,
        contract_id,
        "package-changes",
        change_kind="package_size",
        new_package=new_package,
        requested_by=requested_by,
        **fields,
    )


async def test_a_contract_signed_over_the_api_is_stored_audited_and_announced(stack: ContractStack) -> None:
    env = new_environment()

    created = await stack.sign(env, 1, production_date="2026-04-01")

    assert created["contract_id"] == f"C-{env}"
    assert (created["status"], created["effective_from"]) == ("signed", "2026-04-01")
    contract = await stack.contract(created["contract_id"])
    assert (contract["business_id"], contract["company_name"], contract["package"]) == (
        business_id(1),
        "Asiakas 1 Oy",
        "kevyt",
    )
    assert (contract["payer_kind"], contract["payer_id"]) == ("company", business_id(1))  # B-17
    assert [h["change"] for h in await stack.history(created["contract_id"])] == ["signed"]
    (announced,) = await stack.announced(topic_for(ContractChangedV1), of(created["contract_id"]))
    assert (announced["change"], announced["status"], announced["package"]) == ("signed", "signed", "kevyt")
    assert announced["accounting_firm_id"] == "firm-a"  # partners count end customers by it (P-03)


async def test_a_second_contract_for_the_same_environment_is_refused_with_the_reason(
    stack: ContractStack,
) -> None:
    env = new_environment()
    await stack.sign(env, 2)

    response = await post_contract(
        stack, environment_id=env, business_id=business_id(2), company_name="Toinen Oy", package="perus"
    )

    assert response.status_code == 422
    assert (response.json()["rule"], response.json()["detail"]) == (
        "B-28",
        f"environment {env} already has a contract",
    )


async def test_a_business_id_with_a_wrong_check_digit_is_refused(stack: ContractStack) -> None:
    response = await post_contract(
        stack,
        environment_id=new_environment(),
        business_id="2077474-1",  # the check digit must be 0
        company_name="Väärä Oy",
        package="kevyt",
    )

    assert response.status_code == 422
    assert "invalid check digit" in response.text


async def test_a_tallennus_contract_paid_by_the_company_is_refused_under_b17(stack: ContractStack) -> None:
    response = await post_contract(
        stack,
        environment_id=new_environment(),
        business_id=business_id(3),
        company_name="Tallentaja Oy",
        package="tallennus",
    )

    assert response.status_code == 422
    assert response.json()["rule"] == "B-17"


async def test_a_package_change_at_helsinki_midnight_before_and_after_the_16th_takes_effect_by_the_cut_off(
    stack: ContractStack,
) -> None:
    on_15th, on_16th = await sign_new(stack, 4), await sign_new(stack, 5)

    last_moment_of_15th = await resize(
        stack, on_15th, "perus", requested_at="2026-03-15T23:59:59.999999+02:00", requested_by=MAIN_USER
    )
    midnight_of_16th = await resize(
        stack,
        on_16th,
        "perus",
        requested_at="2026-03-15T22:00:00Z",  # = 16 March 00:00 in Helsinki
        requested_by=MAIN_USER,
    )

    assert last_moment_of_15th.status_code == 200, last_moment_of_15th.text
    assert last_moment_of_15th.json()["effective_from"] == "2026-03-01"
    assert midnight_of_16th.json()["effective_from"] == "2026-04-01"
    # B-26: no proration; each month is billed with the package in effect for it.
    assert [(await stack.terms(on_15th, m))["package"] for m in ("2026-02", "2026-03", "2026-04")] == [
        "kevyt",
        "perus",
        "perus",
    ]
    assert [(await stack.terms(on_16th, m))["package"] for m in ("2026-02", "2026-03", "2026-04")] == [
        "kevyt",
        "kevyt",
        "perus",
    ]
    # The contract shows what is in effect today (20 March); April's change is still ahead.
    assert (await stack.contract(on_15th))["package"] == "perus"
    assert (await stack.contract(on_16th))["package"] == "kevyt"
    (audit,) = await stack.changes_named(on_16th, "package_size_changed")
    assert (audit["effective_from"], audit["source"], audit["requested_by"]["person_name"]) == (
        "2026-04-01",
        "http",
        "Maija Pääkäyttäjä",
    )


async def test_the_audit_names_the_requester_and_the_system_whose_token_asserted_it(
    stack: ContractStack,
) -> None:
    """B-25 over HTTP: the CRM vouches for the requester; the audit records both, the CRM from its token."""
    contract_id = await sign_new(stack, 21)
    crm = stack.issuer.client_auth("crm", "local-crm-secret")
    body = {"change_kind": "package_size", "new_package": "perus", "requested_by": MAIN_USER}

    # A person (even a billing operator) is not a system of record: 403, nothing happens.
    person = await stack.http.post(
        f"/contracts/{contract_id}/package-changes", json=body, auth=stack.issuer.user_auth("olli.operator")
    )
    assert (person.status_code, person.json()["detail"]) == (403, "needs one of the roles contract-system")
    accepted = await stack.http.post(f"/contracts/{contract_id}/package-changes", json=body, auth=crm)
    assert accepted.status_code == 200, accepted.text
    refused = await stack.http.post(
        f"/contracts/{contract_id}/termination",
        json={"reason": "ei tarvita", "requested_by": BOOKKEEPER},
        auth=crm,
    )
    assert refused.status_code == 422

    audit = {h["change"]: h for h in await stack.history(contract_id)}
    assert (audit["package_size_changed"]["asserted_by"], audit["package_size_changed"]["source"]) == (
        "crm",
        "http",
    )
    assert audit["package_size_changed"]["requested_by"]["person_name"] == "Maija Pääkäyttäjä"
    refusal = audit["termination-notice-given"]
    assert (refusal["outcome"], refusal["asserted_by"], refusal["requested_by"]["person_name"]) == (
        "refused",
        "crm",
        "Kalle Kirjanpitäjä",
    )


async def test_a_change_requested_by_someone_without_the_rights_is_refused_with_the_reason_and_logged(
    stack: ContractStack,
) -> None:
    contract_id = await sign_new(stack, 6)

    response = await resize(stack, contract_id, "laaja", requested_by=BOOKKEEPER)

    assert response.status_code == 422
    problem = response.json()
    assert problem["rule"] == "B-25"
    assert "Kalle Kirjanpitäjä has the role 'bookkeeper'" in problem["detail"]
    assert (await stack.terms(contract_id, "2026-04"))["package"] == "kevyt"
    (refusal,) = [h for h in await stack.history(contract_id) if h["outcome"] == "refused"]
    assert (refusal["change"], refusal["rule"], refusal["requested_by"]) == (
        "package-change-requested",
        "B-25",
        BOOKKEEPER | {"user_id": None, "has_basic_info_and_user_rights": False, "is_signatory": False},
    )
    assert refusal["reason"] == problem["detail"]


async def test_a_custom_role_user_needs_the_basic_info_and_user_management_rights(
    stack: ContractStack,
) -> None:
    contract_id = await sign_new(stack, 7)
    without = {"person_name": "Muokattu Ilman", "role": "custom"}
    with_rights = without | {"has_basic_info_and_user_rights": True}

    refused = await resize(stack, contract_id, "perus", requested_by=without)
    accepted = await resize(stack, contract_id, "perus", requested_by=with_rights)

    assert (refused.status_code, refused.json()["rule"]) == (422, "B-25")
    assert accepted.status_code == 200


async def test_an_accounting_firm_change_takes_effect_by_the_cut_off_and_partners_hear_of_it(
    stack: ContractStack,
) -> None:
    contract_id = await sign_new(stack, 8)

    response = await post_change(
        stack,
        contract_id,
        "accounting-firm-changes",
        new_accounting_firm_id="firm-b",
        new_accounting_firm_business_id=business_id(901),
        requested_at="2026-03-10T09:00:00+02:00",
        requested_by=SIGNATORY,
    )

    assert response.json()["effective_from"] == "2026-03-01"
    assert (await stack.terms(contract_id, "2026-02"))["accounting_firm_id"] == "firm-a"
    march = await stack.terms(contract_id, "2026-03")
    assert (march["accounting_firm_id"], march["accounting_firm_business_id"]) == ("firm-b", business_id(901))
    assert march["payer_id"] == business_id(8)  # the company still pays (B-17)
    changed = await stack.announced(topic_for(ContractChangedV1), of(contract_id, "accounting_firm_changed"))
    assert (changed[0]["accounting_firm_id"], changed[0]["effective_from"]) == ("firm-b", "2026-03-01")


async def test_a_tallennus_to_taloushallinto_conversion_moves_package_and_payer_from_the_next_month(
    stack: ContractStack,
) -> None:
    firm = business_id(902)
    contract_id = await sign_tallennus(stack, 9, firm_id="firm-t", firm_business_id=firm)

    response = await post_change(
        stack,
        contract_id,
        "package-changes",
        change_kind="tallennus_to_taloushallinto",
        new_package="kevyt",
        previous_package="tallennus",
        requested_at="2026-03-16T00:00:00+02:00",
        requested_by=MAIN_USER,
    )

    assert response.json()["effective_from"] == "2026-04-01"
    march, april = await stack.terms(contract_id, "2026-03"), await stack.terms(contract_id, "2026-04")
    assert (march["package"], march["payer_kind"], march["payer_id"]) == (
        "tallennus",
        "accounting_firm",
        firm,
    )
    assert (april["package"], april["payer_kind"], april["payer_id"]) == ("kevyt", "company", business_id(9))


async def test_notice_on_10_march_ends_the_contract_on_30_april_and_keeps_data_until_31_july(
    stack: ContractStack,
) -> None:
    contract_id = await sign_new(stack, 10)

    response = await post_change(
        stack,
        contract_id,
        "termination",
        notice_given_at="2026-03-10T14:00:00+02:00",
        reason="yritys lopettaa",
        requested_by=MAIN_USER,
    )

    assert response.json()["status"] == "termination_noticed"
    contract = await stack.contract(contract_id)
    assert (contract["notice_given_on"], contract["end_date"], contract["data_retained_until"]) == (
        "2026-03-10",
        "2026-04-30",
        "2026-07-31",
    )
    (audit,) = await stack.changes_named(contract_id, "termination_noticed")
    assert (audit["reason"], audit["requested_by"]["person_name"]) == ("yritys lopettaa", "Maija Pääkäyttäjä")
    (announced,) = await stack.announced(topic_for(ContractChangedV1), of(contract_id, "termination_noticed"))
    assert (announced["end_date"], announced["data_retained_until"]) == ("2026-04-30", "2026-07-31")

    again = await post_change(stack, contract_id, "termination", requested_by=MAIN_USER)
    assert again.status_code == 422
    assert again.json()["rule"] == "B-27"
    # A package change that would start after the end is refused too.
    late = await resize(
        stack, contract_id, "perus", requested_at="2026-04-20T10:00:00+03:00", requested_by=MAIN_USER
    )
    assert (late.json()["rule"], late.json()["detail"]) == (
        "B-27",
        "the contract ends on 2026-04-30, before the package change would take effect in 2026-05",
    )


async def test_a_business_id_change_opens_a_new_contract_and_ends_the_old_one_with_its_einvoice_address(
    stack: ContractStack,
) -> None:
    old_env, new_env = new_environment(), new_environment()
    old_id = (await stack.sign(old_env, 11))["contract_id"]

    response = await post_change(
        stack,
        old_id,
        "business-id-changes",
        new_business_id=business_id(12),
        new_environment_id=new_env,
        new_company_name="Asiakas 11 Oy (uusi)",
        requested_at="2026-03-20T10:00:00+02:00",
        requested_by=SIGNATORY,
    )

    assert response.status_code == 200, response.text
    new_id = response.json()["new_contract_id"]
    assert new_id == f"C-{new_env}"
    old, new = await stack.contract(old_id), await stack.contract(new_id)
    # B-28 via B-27: one month's notice from 20 March, ends 30 April, the addresses with it.
    assert (old["end_date"], old["einvoice_address_ends_on"], old["successor_contract_id"]) == (
        "2026-04-30",
        "2026-04-30",
        new_id,
    )
    assert old["status"] == "termination_noticed"
    assert (new["business_id"], new["company_name"], new["production_date"]) == (
        business_id(12),
        "Asiakas 11 Oy (uusi)",
        "2026-03-20",
    )
    # E-invoice addresses are per business ID: the old one does not move to the new contract.
    assert (new["einvoice_address"], new["billing_channel"]) == (None, "paper")
    assert (new["payer_id"], new["predecessor_contract_id"]) == (business_id(12), old_id)
    announced = await stack.announced(
        topic_for(ContractChangedV1), lambda m: m.get("contract_id") in (old_id, new_id), count=3
    )
    assert {(m["contract_id"], m["change"]) for m in announced} >= {
        (old_id, "business_id_changed"),
        (new_id, "signed_for_new_business_id"),
    }

    twice = await post_change(
        stack,
        old_id,
        "business-id-changes",
        new_business_id=business_id(13),
        new_environment_id=new_environment(),
        new_company_name="Kolmas Oy",
        requested_by=SIGNATORY,
    )
    assert (twice.status_code, twice.json()["rule"]) == (422, "B-28")


async def test_a_business_id_change_can_bring_the_new_ids_einvoice_address(stack: ContractStack) -> None:
    old_id = await sign_new(stack, 14)
    new_address = {"address": "003730000140", "operator": "003723327487"}

    response = await post_change(
        stack,
        old_id,
        "business-id-changes",
        new_business_id=business_id(15),
        new_environment_id=new_environment(),
        new_company_name="Uusi Oy",
        new_einvoice_address=new_address,
        requested_by=MAIN_USER,
    )

    new = await stack.contract(response.json()["new_contract_id"])
    assert (new["billing_channel"], new["einvoice_address"]) == ("einvoice", new_address)


async def test_a_tallennus_firm_change_takes_effect_only_with_both_approvals_then_by_the_later_ones_cut_off(
    stack: ContractStack,
) -> None:
    old_firm, new_firm = business_id(903), business_id(904)
    contract_id = await sign_tallennus(stack, 16, firm_id="firm-old", firm_business_id=old_firm)

    async def approve(side: str, approved_at: str, **fields: Any) -> dict[str, Any]:
        response = await post_change(
            stack,
            contract_id,
            "tallennus-firm-approvals",
            approving_firm=side,
            old_accounting_firm_id="firm-old",
            new_accounting_firm_id="firm-new",
            approved_at=approved_at,
            approved_by=SIGNATORY,
            **fields,
        )
        body: dict[str, Any] = response.json()
        return body

    plain = await post_change(
        stack,
        contract_id,
        "accounting-firm-changes",
        new_accounting_firm_id="firm-new",
        requested_by=MAIN_USER,
    )
    assert (plain.status_code, plain.json()["rule"]) == (422, "B-29")

    new_side = await approve(
        "new", "2026-03-12T10:00:00+02:00", new_package="tallennus", new_accounting_firm_business_id=new_firm
    )
    assert (new_side["pending"], new_side["effective_from"]) == (True, None)
    waiting = await stack.contract(contract_id)
    assert waiting["pending_tallennus_firm_change"]["new_accounting_firm_id"] == "firm-new"
    assert (await stack.terms(contract_id, "2026-04"))["accounting_firm_id"] == "firm-old"

    old_side = await approve("old", "2026-03-18T10:00:00+02:00")

    # Both recorded; the later approval (18 March) is after the 15th: from April (B-26).
    assert (old_side["pending"], old_side["effective_from"]) == (False, "2026-04-01")
    march, april = await stack.terms(contract_id, "2026-03"), await stack.terms(contract_id, "2026-04")
    assert (march["accounting_firm_id"], march["payer_id"]) == ("firm-old", old_firm)
    assert (april["accounting_firm_id"], april["payer_id"], april["payer_kind"]) == (
        "firm-new",
        new_firm,
        "accounting_firm",
    )
    assert (await stack.contract(contract_id))["pending_tallennus_firm_change"] is None
    outcomes = [(h["change"], h["outcome"]) for h in await stack.history(contract_id)]
    assert outcomes == [
        ("signed", "accepted"),
        ("accounting-firm-change-requested", "refused"),
        ("tallennus_firm_change_approved", "pending"),
        ("tallennus_firm_changed", "accepted"),
    ]


async def test_a_billing_contact_change_needs_name_phone_and_email(stack: ContractStack) -> None:
    contract_id = await sign_new(stack, 17)
    contact = {"name": "Liisa Laskutus", "phone": "+358 40 123 4567", "email": "liisa@example.fi"}

    missing_phone = await post_change(
        stack,
        contract_id,
        "billing-contact",
        new_contact={"name": "Liisa", "email": "liisa@example.fi"},
        requested_by=MAIN_USER,
    )
    accepted = await post_change(
        stack, contract_id, "billing-contact", new_contact=contact, requested_by=MAIN_USER
    )

    assert missing_phone.status_code == 422
    assert accepted.status_code == 200
    assert (await stack.contract(contract_id))["billing_contact"] == contact
    (audit,) = await stack.changes_named(contract_id, "billing_contact_changed")
    assert audit["details"]["before"] == {"billing_contact": None}


async def test_the_invoice_name_changes_only_by_a_notice_naming_the_old_and_the_new_name(
    stack: ContractStack,
) -> None:
    contract_id = await sign_new(stack, 18)

    async def rename(old_company_name: str) -> httpx.Response:
        return await post_change(
            stack,
            contract_id,
            "company-name",
            old_company_name=old_company_name,
            new_company_name="Uusi Nimi Oy",
            requested_by=MAIN_USER,
        )

    wrong_old = await rename("Joku Muu Oy")
    accepted = await rename("Asiakas 18 Oy")

    assert (wrong_old.status_code, wrong_old.json()["rule"]) == (422, "B-22")
    assert accepted.status_code == 200
    assert (await stack.terms(contract_id, "2026-03"))["invoice_name"] == "Uusi Nimi Oy"


async def test_advance_billing_is_always_refused(stack: ContractStack) -> None:
    contract_id = await sign_new(stack, 19)

    response = await post_change(
        stack,
        contract_id,
        "advance-billing",
        from_month="2026-04",
        to_month="2026-12",
        requested_by=SIGNATORY,
    )

    assert response.status_code == 422
    assert (response.json()["rule"], response.json()["detail"]) == (
        "B-04",
        "billing is in arrears, by actual use; months 2026-04…2026-12 cannot be billed in advance",
    )


async def test_a_moved_production_date_moves_the_start_of_billing(stack: ContractStack) -> None:
    contract_id = await sign_new(stack, 20, production_date="2026-05-01")

    response = await post_change(stack, contract_id, "production-date", production_date="2026-03-02")

    assert response.json()["status"] == "active"
    assert (await stack.contract(contract_id))["production_date"] == "2026-03-02"


async def test_a_change_to_an_unknown_contract_is_not_found(stack: ContractStack) -> None:
    response = await post_change(stack, "C-nobody", "termination", requested_by=MAIN_USER)
    assert response.status_code == 404


async def test_the_passing_of_a_month_brings_scheduled_terms_and_statuses_into_effect(
    stack: ContractStack,
) -> None:
    scheduled = await sign_new(stack, 21)
    starting = await sign_new(stack, 22, production_date="2026-04-01")
    ending = await sign_new(stack, 23)
    await resize(stack, scheduled, "laaja", requested_by=MAIN_USER)  # 20 March: from April
    await post_change(
        stack, ending, "termination", notice_given_at="2026-02-10T10:00:00+02:00", requested_by=MAIN_USER
    )  # ends 31 March
    assert (await stack.contract(scheduled))["package"] == "kevyt"

    stack.clock.set(helsinki(2026, 4, 1, 0, 5))
    refreshed = await stack.http.post("/contracts/refresh")
    again = await stack.http.post("/contracts/refresh")

    assert refreshed.json()["contracts_changed"] >= 3
    assert again.json()["contracts_changed"] == 0
    assert (await stack.contract(scheduled))["package"] == "laaja"
    assert (await stack.contract(starting))["status"] == "active"
    assert (await stack.contract(ending))["status"] == "terminated"
    took_effect = await stack.announced(
        topic_for(ContractChangedV1),
        lambda m: (
            m.get("contract_id") in (scheduled, starting, ending)
            and m["change"] in ("terms_took_effect", "production_started", "terminated")
        ),
        count=3,
    )
    assert {(m["contract_id"], m["change"]) for m in took_effect} == {
        (scheduled, "terms_took_effect"),
        (starting, "production_started"),
        (ending, "terminated"),
    }


async def test_contracts_can_be_listed_by_business_id(stack: ContractStack) -> None:
    env = new_environment()
    await stack.sign(env, 24)

    response = await stack.http.get("/contracts", params={"business_id": business_id(24)})

    assert [c["environment_id"] for c in response.json()] == [env]
    assert response.json()[0]["einvoice_address"] == EINVOICE
