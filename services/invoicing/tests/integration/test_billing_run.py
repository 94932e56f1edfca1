"""The billing run on a real PostgreSQL: exact invoices, exactly once per payer and period (B-03…B-05, B-15…B-18)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from billing_contracts.invoicing import BillingRunFinishedV1, InvoiceIssuedV1
from invoicing import tables as t
from invoicing.billing.service import (
    AdvanceBillingError,
    MonthNotClosedError,
    NotABillingDayError,
    run_billing,
)
from invoicing.references import is_valid_reference, make_reference
from service_runtime.database import create_engine, session_factory

from .conftest import Billing, at, business_id

pytestmark = pytest.mark.integration

D = Decimal
NOV_2 = dt.date(2026, 11, 2)  # B-03: 1 November 2026 is a Sunday


def lines_of(invoice: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [
        (ln["environment_id"], ln["product_code"], ln["quantity"], ln["unit_price"], ln["net"])
        for ln in invoice["lines"]
    ]


async def october_with_two_payers(billing: Billing) -> None:
    await billing.sign("env-a", 1)
    await billing.sign("env-b", 2)
    await billing.usage("env-a", "2026-10", vouchers=13, payees=2, einvoices_sent=1)
    await billing.usage("env-b", "2026-10", vouchers=4, payees=1)
    await billing.close("2026-10")


async def test_a_run_issues_one_exact_invoice_per_payer_for_the_month_before(billing: Billing) -> None:
    await october_with_two_payers(billing)

    report = await billing.run(NOV_2)

    assert (report.billing_month, report.invoices_issued, report.failures) == ("2026-10", 2, [])
    a, b = await billing.invoices(period="2026-10")
    assert (a["payer_business_id"], b["payer_business_id"]) == (business_id(1), business_id(2))
    # B-08: 13 − 10 included = 3 extra vouchers; B-12: 2 − 1 = 1 extra payee; B-13: one message.
    assert lines_of(a) == [
        ("env-a", "KEVYT-MONTHLY", "1", "39.00", "39.00"),
        ("env-a", "EXTRA-VOUCHER", "3", "1.79", "5.37"),
        ("env-a", "EXTRA-PAYEE", "1", "9.90", "9.90"),
        ("env-a", "EINVOICE-SENT", "1", "0.35", "0.35"),
    ]
    assert all((ln["period_start"], ln["period_end"]) == ("2026-10-01", "2026-10-31") for ln in a["lines"])
    assert all(ln["vat_rate"] == "25.5" for ln in a["lines"])
    assert (a["total_net"], a["total_vat"], a["total_gross"]) == ("54.62", "13.93", "68.55")  # B-18
    assert a["vat_totals"] == [{"vat_rate": "25.5", "net": "54.62", "vat": "13.93"}]
    assert lines_of(b) == [("env-b", "KEVYT-MONTHLY", "1", "39.00", "39.00")]
    assert (b["total_net"], b["total_vat"], b["total_gross"]) == ("39.00", "9.95", "48.95")
    # B-18: increasing numbers, the reference is the number and its check digit; B-05: +10 days.
    assert (a["invoice_number"], b["invoice_number"]) == ("100001", "100002")
    assert (a["reference_number"], b["reference_number"]) == (
        "1000012",
        "1000025",
    )  # 7-3-1 from the right: 1·7 + 1·1 = 8 → 2
    assert a["reference_number"] == make_reference(100001)
    assert is_valid_reference(b["reference_number"])
    assert (a["invoice_date"], a["due_date"], a["status"]) == ("2026-11-02", "2026-11-12", "open")


async def test_issued_invoices_go_to_the_outbox_in_the_same_transaction(billing: Billing) -> None:
    await october_with_two_payers(billing)
    await billing.run(NOV_2)

    async with billing.sessions() as session:
        rows = (
            await session.execute(select(t.runtime_tables.outbox.c.topic, t.runtime_tables.outbox.c.value))
        ).all()
    issued = [
        InvoiceIssuedV1.model_validate_json(v) for topic, v in rows if topic == "invoicing.invoice-issued.v1"
    ]
    assert sorted(i.invoice_number for i in issued) == ["100001", "100002"]
    assert {i.invoice_number: i.total_gross for i in issued} == {"100001": D("68.55"), "100002": D("48.95")}


async def test_every_finished_run_announces_the_periods_totals_after_its_invoices(billing: Billing) -> None:
    # P-08: partners make the month's commission statements when they have every invoice it counts.
    await october_with_two_payers(billing)
    await billing.run(NOV_2)
    await billing.run(NOV_2)

    async with billing.sessions() as session:
        rows = (
            await session.execute(
                select(t.runtime_tables.outbox.c.topic, t.runtime_tables.outbox.c.value).order_by(
                    t.runtime_tables.outbox.c.id
                )
            )
        ).all()
    topics = [topic for topic, _ in rows]
    finished = [
        BillingRunFinishedV1.model_validate_json(v)
        for topic, v in rows
        if topic == "invoicing.billing-run-finished.v1"
    ]
    assert [(f.billing_period, f.attempt, f.invoices_issued, f.credit_notes_issued) for f in finished] == [
        ("2026-10", 1, 2, 0),
        ("2026-10", 2, 2, 0),
    ]
    assert topics.index("invoicing.billing-run-finished.v1") > max(
        i for i, topic in enumerate(topics) if topic == "invoicing.invoice-issued.v1"
    )


async def test_running_the_same_date_twice_bills_nobody_twice(billing: Billing) -> None:
    await october_with_two_payers(billing)
    first = await billing.run(NOV_2)
    second = await billing.run(NOV_2)

    assert (first.invoices_issued, second.invoices_issued, second.already_billed) == (2, 0, 2)
    assert (second.attempt, second.status) == (2, "completed")
    assert len(await billing.invoices()) == 2
    assert await billing.count(t.billing_outcomes) == 2


async def test_a_later_date_of_the_same_month_does_not_bill_the_month_again(billing: Billing) -> None:
    await october_with_two_payers(billing)
    await billing.run(NOV_2)
    later = await billing.run(dt.date(2026, 11, 3))

    assert (later.billing_month, later.invoices_issued, later.already_billed) == ("2026-10", 0, 2)
    assert [i["invoice_date"] for i in await billing.invoices()] == ["2026-11-02", "2026-11-02"]


async def test_two_runs_at_once_issue_each_payers_invoice_exactly_once(
    billing: Billing, billing_db: str
) -> None:
    for n in range(1, 41):
        await billing.sign(f"env-{n:03d}", n)
        await billing.usage(f"env-{n:03d}", "2026-10", vouchers=n)
    await billing.close("2026-10")
    billing.clock.set(at(NOV_2, 6))
    # Two engines: two connections pools, as two replicas (or an operator and the CronJob) would have.
    engines = [create_engine(billing_db, pool_size=2) for _ in range(2)]
    try:
        reports = await asyncio.gather(
            *(
                run_billing(session_factory(e), billing.clock, billing.price_book, NOV_2, batch_size=7)
                for e in engines
            )
        )
    finally:
        for e in engines:
            await e.dispose()

    assert sum(r.invoices_issued for r in reports) == 40
    assert sum(r.invoices_issued + r.already_billed for r in reports) == 80
    invoices = await billing.invoices()
    assert sorted(i["payer_business_id"] for i in invoices) == sorted(business_id(n) for n in range(1, 41))
    numbers = [int(i["invoice_number"]) for i in invoices]
    assert len(set(numbers)) == 40


async def test_an_open_month_is_never_billed(billing: Billing) -> None:
    await billing.sign("env-a", 1)
    await billing.usage("env-a", "2026-10", vouchers=1)

    with pytest.raises(MonthNotClosedError):
        await billing.run(NOV_2)
    assert await billing.invoices() == []


async def test_a_month_is_not_billed_until_every_final_usage_the_close_announced_has_arrived(
    billing: Billing,
) -> None:
    await october_with_two_payers(billing)
    async with billing.sessions.begin() as session:
        await session.execute(t.monthly_usage.delete().where(t.monthly_usage.c.environment_id == "env-b"))

    with pytest.raises(MonthNotClosedError):
        await billing.run(NOV_2)


async def test_a_run_before_the_first_business_day_or_in_advance_is_refused(billing: Billing) -> None:
    await october_with_two_payers(billing)
    billing.clock.set(at(dt.date(2026, 11, 1), 12))
    with pytest.raises(NotABillingDayError, match="B-03"):
        await run_billing(billing.sessions, billing.clock, billing.price_book, dt.date(2026, 11, 1))
    with pytest.raises(AdvanceBillingError, match="B-04"):
        await run_billing(billing.sessions, billing.clock, billing.price_book, dt.date(2026, 12, 1))


async def test_a_payer_that_fails_is_set_aside_with_the_reason_and_the_others_are_billed(
    billing: Billing,
) -> None:
    await october_with_two_payers(billing)
    await billing.sign("env-c", 3)
    await billing.usage("env-c", "2026-10", billable_hours={"NO-SUCH-PRODUCT": "2"})
    await billing.close("2026-10")

    report = await billing.run(NOV_2)

    assert report.invoices_issued == 2
    assert report.status == "completed_with_failures"
    assert report.failures == [
        {
            "payer_id": business_id(3),
            "reason": "UnknownPriceError: price list sample-2024 has no service product 'NO-SUCH-PRODUCT'",
        }
    ]
    # The data is put right (here: the usage) and the rerun bills the payer set aside, and only it.
    async with billing.sessions.begin() as session:
        await session.execute(
            t.monthly_usage.update()
            .where(t.monthly_usage.c.environment_id == "env-c")
            .values(
                usage={
                    "vouchers": 0,
                    "payees": 0,
                    "einvoices_sent": 0,
                    "einvoices_received": 0,
                    "billable_users": 0,
                    "signatures": 0,
                    "billable_hours": {"KIRJANPITO-TUNTI": "2"},
                }
            )
        )
    rerun = await billing.run(NOV_2)
    assert (rerun.invoices_issued, rerun.already_billed, rerun.failures, rerun.status) == (
        1,
        2,
        [],
        "completed",
    )
    (c,) = await billing.invoices(payer_id=business_id(3))
    assert lines_of(c) == [
        ("env-c", "KEVYT-MONTHLY", "1", "39.00", "39.00"),
        ("env-c", "KIRJANPITO-TUNTI", "2", "75.00", "150.00"),  # I-07
    ]
    assert c["invoice_number"] == "100003"


async def test_p08_the_invoice_carries_the_net_software_charges_per_reseller(billing: Billing) -> None:
    await billing.sign("env-r1", 1, reseller="partner-9")
    await billing.usage("env-r1", "2026-10", vouchers=13, billable_hours={"KIRJANPITO-TUNTI": "1"})
    await billing.close("2026-10")

    await billing.run(NOV_2)

    (invoice,) = await billing.invoices()
    # 39.00 + 5.37 of software; the hour (75.00) is work, not resold software.
    assert invoice["software_net_by_reseller"] == {"partner-9": "44.37"}
    assert invoice["total_net"] == "119.37"
