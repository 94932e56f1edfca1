"""A real billing month through all four services over Kafka, ending in Procountor (the emulator)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    EInvoiceAddress,
    PackageCode,
    PostalAddress,
)
from billing_contracts.references import first_business_id_from
from billing_contracts.usage import DocumentKind, PayCalculatedV1, VoucherCreatedV1, VoucherVoidedV1
from devstack.testing import metric, wait_until
from invoicing.calendar import HELSINKI, YearMonth
from invoicing.prices.loader import sample_price_book
from invoicing.references import is_valid_reference, make_reference

from ..conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

OCTOBER = YearMonth(2026, 10)
RUN_DATE = date(2026, 11, 2)  # B-03: 1 November 2026 is a Sunday; Monday the 2nd is the first business day
CENT = Decimal("0.01")


def contract(environment_id: str, business_id: str, name: str, firm: str | None) -> ContractSignedV1:
    return ContractSignedV1(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 9, 20, 12, tzinfo=HELSINKI),
        producer="crm",
        environment_id=environment_id,
        business_id=business_id,
        company_name=name,
        package=PackageCode.KEVYT,
        production_date=date(2026, 9, 15),
        accounting_firm_id=firm,
        billing_address=PostalAddress(street="Mannerheimintie 1", postal_code="00100", city="Helsinki"),
        billing_channel=BillingChannel.EINVOICE,
        einvoice_address=EInvoiceAddress(
            address="0037" + business_id.replace("-", ""), operator="003723327487"
        ),
    )


def voucher(environment_id: str, n: int, day: int) -> VoucherCreatedV1:
    at = datetime(2026, 10, day, 9, tzinfo=HELSINKI)
    return VoucherCreatedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="procountor",
        environment_id=environment_id,
        voucher_id=f"V{n}",
        document_kind=DocumentKind.PURCHASE_INVOICE,
        created_at=at,
    )


def payslip(environment_id: str, person: str) -> PayCalculatedV1:
    at = datetime(2026, 10, 25, 9, tzinfo=HELSINKI)
    return PayCalculatedV1(
        event_id=uuid.uuid4(),
        occurred_at=at,
        producer="procountor",
        environment_id=environment_id,
        payslip_id=f"P-{person}",
        person_id=person,
        calculated_at=at,
    )


def unique_business_id() -> str:
    """A valid business ID of this test's own: other tests on the same broker bill the usual examples."""
    return first_business_id_from(uuid.uuid4().int % 10_000_000)


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


async def test_a_month_of_usage_is_metered_billed_and_sent_to_procountor_exactly(stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:6]
    env_a, env_b, firm = f"env-a-{suffix}", f"env-b-{suffix}", f"firm-{suffix}"
    company_a, company_b = unique_business_id(), unique_business_id()
    assert company_a != company_b
    await stack.publisher.publish(
        contract(env_a, company_a, "Asiakas A Oy", firm),
        contract(env_b, company_b, "Asiakas B Oy", firm),
    )
    # Environment A: 13 vouchers, one voided in its creation month (B-11) -> 12; 2 distinct payees (B-12).
    await stack.publisher.publish(*(voucher(env_a, n, 1 + n) for n in range(13)))
    void_at = datetime(2026, 10, 28, tzinfo=HELSINKI)
    await stack.publisher.publish(
        VoucherVoidedV1(
            event_id=uuid.uuid4(),
            occurred_at=void_at,
            producer="procountor",
            environment_id=env_a,
            voucher_id="V0",
            voided_at=void_at,
        ),
        payslip(env_a, "p1"),
        payslip(env_a, "p1"),
        payslip(env_a, "p2"),
    )
    # Environment B: 5 vouchers and 1 payee, all within Kevyt's inclusions.
    await stack.publisher.publish(*(voucher(env_b, n, 10) for n in range(5)), payslip(env_b, "p9"))

    async def usage_of(env: str) -> dict[str, Any]:
        body: dict[str, Any] = (await stack.metering.get(f"/environments/{env}/usage/2026-10")).json()[
            "usage"
        ]
        return body

    await wait_until(lambda: _has(usage_of(env_a), vouchers=12, payees=2), what="metering counted env A")
    await wait_until(lambda: _has(usage_of(env_b), vouchers=5, payees=1), what="metering counted env B")

    assert (await stack.metering.post("/months/2026-10/close")).status_code == 200

    async def billed() -> dict[str, Any] | None:
        response = await stack.invoicing.post("/billing-runs", json={"run_date": RUN_DATE.isoformat()})
        return response.json() if response.status_code == 200 else None  # 409 until metering's month is in

    run = await wait_until(billed, what="billing run accepted once October is closed")
    assert not run["failures"]

    prices = sample_price_book().price_list_for(OCTOBER).package("kevyt")
    vat_rate = Decimal("25.5")
    expected_net = {
        # monthly fee + (12 - 10) extra vouchers (B-08) + (2 - 1) extra payees (B-12)
        company_a: prices.monthly_fee + 2 * prices.extra_voucher_price + 1 * prices.extra_payee_price,
        company_b: prices.monthly_fee,
    }

    async def delivered() -> list[dict[str, Any]] | None:
        invoices: list[dict[str, Any]] = (await stack.procountor.get("/_emulator/invoices")).json()
        mine = [i for i in invoices if i["counterParty"]["identifier"] in expected_net]
        return mine if len(mine) == 2 and all(i["status"] == "SENT" for i in mine) else None

    # procountor-sync may first deliver what other tests published to the shared broker.
    for sent in await wait_until(delivered, within=120, what="both invoices SENT in Procountor"):
        business_id = sent["counterParty"]["identifier"]
        net = expected_net[business_id]
        vat = cents(net * vat_rate / 100)  # B-18: VAT per rate on the sum of rounded line nets, half up
        assert sent["date"] == "2026-11-02"
        assert sent["paymentInfo"]["dueDate"] == "2026-11-12"  # B-05: +10 days
        reference = sent["paymentInfo"]["bankReferenceCode"]
        assert is_valid_reference(reference)
        assert reference == make_reference(int(sent["originalInvoiceNumber"]))
        assert sent["invoiceChannel"] == "ELECTRONIC_INVOICE"
        rows = [
            (
                r["productCode"],
                Decimal(str(r["quantity"])),
                Decimal(str(r["unitPrice"])),
                Decimal(str(r["vatPercent"])),
            )
            for r in sent["invoiceRows"]
        ]
        if business_id == company_a:
            assert rows == [
                ("KEVYT-MONTHLY", Decimal(1), prices.monthly_fee, vat_rate),
                ("EXTRA-VOUCHER", Decimal(2), prices.extra_voucher_price, vat_rate),
                ("EXTRA-PAYEE", Decimal(1), prices.extra_payee_price, vat_rate),
            ]
        else:
            assert rows == [("KEVYT-MONTHLY", Decimal(1), prices.monthly_fee, vat_rate)]
        assert all(
            r["startDate"] == "2026-10-01" and r["endDate"] == "2026-10-31" for r in sent["invoiceRows"]
        )
        totals = (
            sent["invoiceSumInfo"][0] if isinstance(sent["invoiceSumInfo"], list) else sent["invoiceSumInfo"]
        )
        assert Decimal(str(totals["excludingVatTotal"])) == net
        assert Decimal(str(totals["vatSumTotal"])) == vat
        assert Decimal(str(totals["invoiceSumTotal"])) == net + vat

    # Invoicing's own record says the same, and a rerun of the day bills nobody twice.
    ours = (await stack.invoicing.get("/invoices", params={"period": "2026-10"})).json()
    mine = {i["payer_business_id"]: i for i in ours if i["payer_business_id"] in expected_net}
    assert {k: Decimal(v["total_net"]) for k, v in mine.items()} == expected_net
    rerun = (await stack.invoicing.post("/billing-runs", json={"run_date": RUN_DATE.isoformat()})).json()
    assert rerun["invoices_issued"] == 0

    # Issue 12: the run as /metrics tells it, the gauges read from the database (every replica agrees).
    assert (await metric(stack.invoicing, "billing_runs_total", outcome="completed") or 0) >= 2
    assert (await metric(stack.invoicing, "billing_run_duration_seconds_count") or 0) >= 2
    due = datetime(2026, 11, 2, 9, tzinfo=HELSINKI).timestamp()  # 09:00 on the run day (B-03)

    async def measured() -> bool:
        last = await metric(stack.invoicing, "billing_run_last_completed_timestamp_seconds")
        issued = await metric(stack.invoicing, "billing_run_payers", state="issued")
        deadline = await metric(stack.invoicing, "billing_run_due_timestamp_seconds")
        return bool(last and issued and issued >= 2 and deadline == due)

    await wait_until(measured, what="the billing run's gauges from the database")

    # …and the deliveries as procountor-sync's /metrics tells them: delivered, nothing left waiting
    # for ours, every request through the shared rate limiter.
    delivered_count = await metric(
        stack.sync, "procountor_deliveries_total", kind="invoice", state="delivered"
    )
    assert (delivered_count or 0) >= 2
    assert (await metric(stack.sync, "procountor_rate_limit_wait_seconds_count") or 0) >= 2 * 3

    async def pending_measured() -> bool:
        return await metric(stack.sync, "procountor_deliveries_pending", state="refused") is not None

    await wait_until(pending_measured, what="the deliveries pending, read from the table")

    # P-03: the firm's end customers follow the contract events.
    firm_view = (await stack.partners.get(f"/firms/{firm}")).json()
    assert firm_view["end_customers"] == 2


async def _has(usage: Any, **expected: int) -> bool:
    figures = await usage
    return all(figures[k] == v for k, v in expected.items())


def test_run_date_is_the_first_business_day_after_the_billed_month() -> None:
    assert RUN_DATE - timedelta(days=1) == date(2026, 11, 1)
    assert YearMonth.of(RUN_DATE).prev() == OCTOBER
