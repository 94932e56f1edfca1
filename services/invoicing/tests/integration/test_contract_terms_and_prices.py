"""What billing reads on a real PostgreSQL: the contracts billable in a month with the terms in effect for it (B-01, B-26, B-27), and price lists (B-07)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from devstack.infra import KafkaTarget
from devstack.issuer import DevIssuer
from invoicing import tables as t
from invoicing.calendar import YearMonth
from invoicing.contracts.domain import ContractStatus, ContractTerms
from invoicing.contracts.terms_repository import contract_terms_for_month
from invoicing.prices.domain import PackageCode, PriceListError
from invoicing.prices.loader import sample_price_book
from invoicing.prices.service import price_book_for_billing, store_price_book

from .contract_stack import MAIN_USER, SIGNATORY, ContractStack, business_id, contract_stack, helsinki

pytestmark = pytest.mark.integration

NOW = helsinki(2026, 3, 20)

PRICES_2027 = """
sample: false
price_lists:
  - id: list-2027
    valid_from: 2027-01-01
    valid_to: null
    payment_term_days: 14
    packages:
      kevyt:
        name: Procountor Kevyt
        monthly_fee: "42.00"
        included_vouchers: 10
        included_payees: 1
        extra_voucher_price: "1.89"
        extra_payee_price: "9.90"
        einvoice_send_price: "0.35"
        einvoice_receive_price: "0.25"
        minimum_invoice_applies: true
"""


def price_book(list_id: str, valid_from: str, *, valid_to: str = "null", sample: bool = False) -> str:
    """PRICES_2027 as another list: its id, validity and whether it is SAMPLE."""
    return (
        PRICES_2027.replace("sample: false", f"sample: {str(sample).lower()}")
        .replace("list-2027", list_id)
        .replace("2027-01-01", valid_from)
        .replace("valid_to: null", f"valid_to: {valid_to}")
    )


@pytest_asyncio.fixture(scope="module")
async def stack(
    kafka: KafkaTarget, postgres_admin_url: str, oidc_issuer: DevIssuer
) -> AsyncIterator[ContractStack]:
    async with contract_stack(kafka, postgres_admin_url, oidc_issuer, now=NOW) as running:
        yield running


@pytest.fixture(autouse=True)
def march_20(stack: ContractStack) -> None:
    stack.clock.set(NOW)


async def terms_of(stack: ContractStack, month: str) -> dict[str, ContractTerms]:
    async with stack.sessions() as session:
        return {t.environment_id: t for t in await contract_terms_for_month(session, YearMonth.parse(month))}


async def test_billing_reads_every_contract_billable_in_a_month_with_the_terms_in_effect_for_it(
    stack: ContractStack,
) -> None:
    firm = business_id(960)
    await stack.sign("terms-resized", 30)  # Kevyt → Perus from April
    await stack.sign("terms-starting", 31, production_date="2026-04-10")  # B-01, B-02: all of April
    await stack.sign("terms-ending", 32)  # notice in February: ends 31 March
    await stack.sign("terms-later", 33, production_date="2026-05-01")
    await stack.sign(
        "terms-converted",
        34,
        package="tallennus",
        payer="accounting_firm",
        accounting_firm_id="firm-t",
        accounting_firm_business_id=firm,
    )
    changes = [
        (
            "C-terms-resized/package-changes",
            {
                "change_kind": "package_size",
                "new_package": "perus",
                "requested_at": "2026-03-16T00:00:00+02:00",
            },
        ),
        ("C-terms-ending/termination", {"notice_given_at": "2026-02-10T10:00:00+02:00"}),
        (
            "C-terms-converted/package-changes",
            {
                "change_kind": "tallennus_to_taloushallinto",
                "new_package": "jousto",
                "requested_at": "2026-03-31T23:59:00+03:00",
            },
        ),
    ]
    for path, body in changes:
        response = await stack.http.post(f"/contracts/{path}", json=body | {"requested_by": MAIN_USER})
        assert response.status_code == 200, response.text

    march, april = await terms_of(stack, "2026-03"), await terms_of(stack, "2026-04")

    assert sorted(march) == ["terms-converted", "terms-ending", "terms-resized"]
    assert sorted(april) == ["terms-converted", "terms-resized", "terms-starting"]
    assert (march["terms-resized"].package, april["terms-resized"].package) == (
        PackageCode.KEVYT,
        PackageCode.PERUS,
    )
    assert march["terms-ending"].end_date is not None
    assert march["terms-ending"].end_date.isoformat() == "2026-03-31"
    assert march["terms-ending"].status is ContractStatus.TERMINATION_NOTICED
    converted_march, converted_april = march["terms-converted"], april["terms-converted"]
    assert (converted_march.package, converted_march.payer_kind.value, converted_march.payer_id) == (
        PackageCode.TALLENNUS,
        "accounting_firm",
        firm,
    )
    assert (converted_april.package, converted_april.payer_kind.value, converted_april.payer_id) == (
        PackageCode.JOUSTO,
        "company",
        business_id(34),
    )
    starting = april["terms-starting"]
    assert (starting.invoice_name, starting.business_id, starting.billing_channel) == (
        "Asiakas 31 Oy",
        business_id(31),
        "einvoice",
    )
    assert starting.einvoice_address == {"address": "003720774740", "operator": "003723327487"}
    assert (starting.accounting_firm_id, starting.own_use, starting.reseller_partner_id) == (
        "firm-a",
        False,
        None,
    )
    assert "terms-later" in await terms_of(stack, "2026-05")


async def test_the_contract_replaced_on_a_business_id_change_and_its_successor_are_billed_for_their_own_months(
    stack: ContractStack,
) -> None:
    await stack.sign("terms-old-id", 35)
    response = await stack.http.post(
        "/contracts/C-terms-old-id/business-id-changes",
        json={
            "new_business_id": business_id(36),
            "new_environment_id": "terms-new-id",
            "new_company_name": "Uusi Tunnus Oy",
            "requested_at": "2026-03-05T10:00:00+02:00",
            "requested_by": SIGNATORY,
        },
    )
    assert response.status_code == 200, response.text

    march, april, may = [await terms_of(stack, m) for m in ("2026-03", "2026-04", "2026-05")]

    assert {"terms-old-id", "terms-new-id"} <= set(march)
    assert {"terms-old-id", "terms-new-id"} <= set(april)  # notice 5 March runs out in April (B-27)
    assert "terms-old-id" not in may
    assert (march["terms-new-id"].payer_id, march["terms-new-id"].invoice_name) == (
        business_id(36),
        "Uusi Tunnus Oy",
    )


async def test_the_configured_sample_price_list_is_listed_and_marked_as_sample(stack: ContractStack) -> None:
    response = await stack.http.get("/price-lists")

    (sample,) = [p for p in response.json() if p["price_list_id"] == "sample-2024"]
    assert (sample["is_sample"], sample["source"], sample["valid_from"]) == (True, "file", "2024-01-01")
    assert sample["loaded_by"] == "configuration"
    one = (await stack.http.get("/price-lists/sample-2024")).json()
    assert one["is_sample"] is True
    assert "sample: true" in one["document"]
    assert "included_vouchers: 10" in one["document"]  # Kevyt includes 10 vouchers (seed fact)


async def test_a_price_list_loaded_over_the_api_takes_over_from_its_first_month(stack: ContractStack) -> None:
    administrator = stack.issuer.user_auth("hilkka.prices")
    operator = await stack.http.post(
        "/price-lists", content=PRICES_2027, auth=stack.issuer.user_auth("olli.operator")
    )
    assert operator.status_code == 403  # prices are the price administrator's

    loaded = await stack.http.post(
        "/price-lists", content=PRICES_2027, headers={"content-type": "application/yaml"}, auth=administrator
    )

    assert loaded.status_code == 201, loaded.text
    assert [(p["price_list_id"], p["loaded_by"]) for p in loaded.json()] == [("list-2027", "hilkka.prices")]
    listed = {p["price_list_id"]: p for p in (await stack.http.get("/price-lists")).json()}
    # The open-ended sample list now ends the month before.
    assert (listed["sample-2024"]["valid_to"], listed["list-2027"]["valid_to"]) == ("2026-12-31", None)
    async with stack.sessions() as session:
        book = await price_book_for_billing(session, sample_price_book())
    assert book.price_list_for(YearMonth(2026, 12)).id == "sample-2024"
    new_prices = book.price_list_for(YearMonth(2027, 1))
    assert (
        new_prices.id,
        new_prices.payment_term_days,
        str(new_prices.package(PackageCode.KEVYT).monthly_fee),
    ) == (
        "list-2027",
        14,
        "42.00",
    )

    again = await stack.http.post("/price-lists", content=PRICES_2027)
    assert (again.status_code, again.json()) == (201, [])  # loading the same prices twice is harmless
    changed = await stack.http.post("/price-lists", content=PRICES_2027.replace('"42.00"', '"45.00"'))
    assert changed.status_code == 422
    assert "already stored with other prices" in changed.json()["detail"]


async def test_price_lists_that_overlap_or_carry_floats_are_refused_with_the_reason(
    stack: ContractStack,
) -> None:
    first_half = await stack.http.post(
        "/price-lists", content=price_book("list-2028-h1", "2028-01-01", valid_to="2028-06-30")
    )
    overlapping = await stack.http.post(
        "/price-lists", content=price_book("list-2028-q2", "2028-04-01", valid_to="2028-09-30")
    )
    floats = await stack.http.post(
        "/price-lists",
        content=price_book("list-float", "2029-01-01", valid_to="2029-12-31").replace('"42.00"', "42.10"),
    )

    assert first_half.status_code == 201, first_half.text
    assert overlapping.status_code == 422
    assert "list-2028-h1 and list-2028-q2 overlap" in overlapping.json()["detail"]
    assert floats.status_code == 422
    assert "must be a quoted string" in floats.json()["detail"]
    listed = [p["price_list_id"] for p in (await stack.http.get("/price-lists")).json()]
    assert "list-2028-q2" not in listed
    assert "list-float" not in listed


async def test_sample_prices_are_refused_where_samples_are_not_allowed(stack: ContractStack) -> None:
    sample = price_book("list-sample-2030", "2030-01-01", sample=True)
    async with stack.sessions.begin() as session:
        with pytest.raises(PriceListError, match="SAMPLE"):
            await store_price_book(
                session, sample, source="api", now=NOW, loaded_by="hilkka.prices", allow_sample=False
            )


async def test_a_change_processed_after_its_month_was_invoiced_applies_from_the_first_month_not_billed(
    stack: ContractStack,
) -> None:
    await stack.sign("terms-late", 37)
    async with stack.sessions.begin() as session:
        await session.execute(
            t.billed_environment_months.insert().values(
                environment_id="terms-late",
                month="2026-03",
                payer_id=business_id(37),
                billing_period="2026-03",
            )
        )
    stack.clock.set(helsinki(2026, 4, 2, 10))

    response = await stack.http.post(
        "/contracts/C-terms-late/package-changes",
        json={
            "change_kind": "package_size",
            "new_package": "perus",
            "requested_at": "2026-03-10T10:00:00+02:00",  # by the cut-off: March, but March is invoiced
            "requested_by": MAIN_USER,
        },
    )

    assert response.json()["effective_from"] == "2026-04-01"
    march, april = await terms_of(stack, "2026-03"), await terms_of(stack, "2026-04")
    assert (march["terms-late"].package, april["terms-late"].package) == (
        PackageCode.KEVYT,
        PackageCode.PERUS,
    )
    (audit,) = await stack.changes_named("C-terms-late", "package_size_changed")
    assert audit["reason"] == "2026-03 is already invoiced; the change applies from 2026-04"
