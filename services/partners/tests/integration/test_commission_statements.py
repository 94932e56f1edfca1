"""Commission statements over the real broker and PostgreSQL (P-08): made once after the month's run, immutable."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from billing_contracts.contracts import BillingChannel, PayerKind, PostalAddress
from billing_contracts.invoicing import (
    BillingRunFinishedV1,
    CreditNoteIssuedV1,
    CreditNoteLine,
    InvoiceIssuedV1,
    InvoiceLine,
    VatTotal,
)
from devstack.testing import read_topic, wait_until

from ..conftest import Partners, business_id, envelope, registered, unique

pytestmark = pytest.mark.integration

D = Decimal
STATEMENT_TOPIC = "partners.commission-statement-issued.v1"


#: Years no other test bills, one per test (a month's statements are made once: two tests sharing
#: a month would see each other's). Months go to 2099-12, the contracts' bound.
_YEARS = itertools.count(2040 + uuid.uuid4().int % 40)


def a_month() -> tuple[str, str]:
    """A month of this test's own, and the month after it."""
    year = next(_YEARS)
    return f"{year}-03", f"{year}-04"


def run_day_after(month: str, day: int = 1) -> dt.date:
    """A day of the month after `month` (December's is in January)."""
    year, m = int(month[:4]), int(month[5:])
    return dt.date(year + m // 12, m % 12 + 1, day)


def invoice(number: int, month: str, nets: dict[str, str], *, total: str = "100.00") -> InvoiceIssuedV1:
    year, m = int(month[:4]), int(month[5:])
    payer = business_id(uuid.uuid4().int % 9_000_000 + 1_000_000)
    line = InvoiceLine(
        line_no=1,
        environment_id=f"env-{number}",
        product_code="KEVYT-MONTHLY",
        description="Procountor Kevyt",
        period_start=dt.date(year, m, 1),
        period_end=dt.date(year, m, 28),
        quantity=D(1),
        unit="month",
        unit_price=D(total),
        net=D(total),
        vat_rate=D("25.5"),
    )
    return InvoiceIssuedV1(
        **envelope(producer="invoicing"),
        invoice_id=f"INV-{number}",
        invoice_number=str(number),
        reference_number="10003",
        payer_id=payer,
        payer_kind=PayerKind.COMPANY,
        payer_business_id=payer,
        payer_name="Asiakas Oy",
        billing_address=PostalAddress(street="Katu 1", postal_code="00100", city="Helsinki"),
        billing_channel=BillingChannel.EMAIL,
        billing_email="laskut@example.fi",
        billing_period=month,
        invoice_date=run_day_after(month),
        due_date=run_day_after(month, 11),
        lines=[line],
        vat_totals=[
            VatTotal(vat_rate=D("25.5"), net=D(total), vat=(D(total) * D("0.255")).quantize(D("0.01")))
        ],
        total_net=D(total),
        total_vat=(D(total) * D("0.255")).quantize(D("0.01")),
        total_gross=D(total) + (D(total) * D("0.255")).quantize(D("0.01")),
        software_net_by_reseller={k: D(v) for k, v in nets.items()},
    )


def credit_note(
    number: int, credited: InvoiceIssuedV1, on: dt.date, nets: dict[str, str]
) -> CreditNoteIssuedV1:
    net = sum((D(v) for v in nets.values()), D(0))
    return CreditNoteIssuedV1(
        **envelope(producer="invoicing"),
        credit_note_id=f"CN-{number}",
        credit_note_number=str(number),
        reference_number="10016",
        credited_invoice_id=credited.invoice_id,
        credited_invoice_number=credited.invoice_number,
        payer_id=credited.payer_id,
        payer_business_id=credited.payer_business_id,
        payer_name=credited.payer_name,
        credit_date=on,
        reason="wrong package",
        lines=[
            CreditNoteLine(
                line_no=1,
                credited_line_no=1,
                environment_id="env-x",
                product_code="KEVYT-MONTHLY",
                description="Procountor Kevyt",
                period_start=on.replace(day=1),
                period_end=on,
                quantity=D(1),
                unit="month",
                unit_price=net,
                net=net,
                vat_rate=D("25.5"),
            )
        ],
        vat_totals=[VatTotal(vat_rate=D("25.5"), net=net, vat=(net * D("0.255")).quantize(D("0.01")))],
        total_net=net,
        total_vat=(net * D("0.255")).quantize(D("0.01")),
        total_gross=net + (net * D("0.255")).quantize(D("0.01")),
        software_net_by_reseller={k: D(v) for k, v in nets.items()},
    )


def finished(month: str, invoices: int, credit_notes: int, attempt: int = 1) -> BillingRunFinishedV1:
    return BillingRunFinishedV1(
        **envelope(producer="invoicing"),
        run_id=f"run-{month}",
        billing_period=month,
        run_date=run_day_after(month),
        attempt=attempt,
        status="completed",
        invoices_issued=invoices,
        held=0,
        failed=0,
        credit_notes_issued=credit_notes,
    )


async def statements_of(partners: Partners, month: str) -> dict[str, dict[str, Any]]:
    response = await partners.http.get("/commission-statements", params={"month": month})
    return {s["partner_id"]: s for s in response.json()}


async def test_a_months_statements_wait_for_its_run_and_documents_then_list_every_invoice_to_the_cent(
    partners: Partners,
) -> None:
    month, _ = a_month()
    year = int(month[:4])
    r1, r2, outsider = unique("reseller"), unique("reseller"), unique("not-a-partner")
    await partners.publisher.publish(registered(r1), registered(r2))
    await partners.wait_for_tier(r2, "partner")
    n = uuid.uuid4().int % 10_000_000
    inv1 = invoice(n + 1, month, {r1: "39.00"})
    inv2 = invoice(n + 2, month, {r1: "44.37", r2: "10.05"})
    inv3 = invoice(n + 3, month, {})  # no reseller: counted for completeness, on no statement
    inv4 = invoice(n + 4, month, {outsider: "50.00"})  # the reseller is not in the program
    note = credit_note(n + 5, inv1, dt.date(year, 3, 20), {r1: "4.50"})

    # The run's end is read first: the month waits until every document it counts has arrived.
    await partners.publisher.publish(finished(month, invoices=4, credit_notes=1), inv1, inv2)
    await wait_until(lambda: _waiting(partners, month), what="the month known and waiting")
    assert await statements_of(partners, month) == {}
    await partners.publisher.publish(inv3, inv4, note)
    made = await wait_until(lambda: _statements(partners, month, 2), what="two statements")

    assert set(made) == {r1, r2}
    one = made[r1]
    # P-08: 39.00 + 44.37 − 4.50 = 78.87; 10 % = 7.887 → 7.89 (half up, once, on the total).
    assert (D(one["software_net_total"]), D(one["commission_amount"]), one["lines"]) == (
        D("78.87"),
        D("7.89"),
        3,
    )
    assert (D(made[r2]["software_net_total"]), D(made[r2]["commission_amount"])) == (D("10.05"), D("1.01"))

    detail = (await partners.http.get(f"/commission-statements/{one['statement_id']}")).json()
    assert [
        (i["kind"], i["number"], i["software_net"], i["credited_invoice_number"]) for i in detail["invoices"]
    ] == [
        ("invoice", inv1.invoice_number, "39.00", None),
        ("invoice", inv2.invoice_number, "44.37", None),
        ("credit_note", note.credit_note_number, "-4.50", inv1.invoice_number),
    ]
    published = await read_topic(
        partners.kafka,
        STATEMENT_TOPIC,
        until=lambda found: any(m["partner_id"] == r1 and m["month"] == month for m in found),
    )
    event = next(m for m in published if m["partner_id"] == r1 and m["month"] == month)
    assert (event["software_net_total"], event["commission_amount"], event["commission_rate_percent"]) == (
        "78.87",
        "7.89",
        "10",
    )
    assert [i["invoice_id"] for i in event["invoices"]] == [
        inv1.invoice_id,
        inv2.invoice_id,
        note.credit_note_id,
    ]
    assert event["invoices"][2]["label"].startswith(f"Hyvityslasku {note.credit_note_number}")

    csv_response = await partners.http.get(f"/commission-statements/{one['statement_id']}/csv")
    assert csv_response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(csv_response.content.decode("utf-8-sig")), delimiter=";"))
    assert [r[8] for r in rows[1:]] == ["39,00", "44,37", "-4,50", "78,87", "7,89"]

    month_view = (await partners.http.get(f"/commission-months/{month}")).json()
    assert (month_view["run_finished"], month_view["statements"], month_view["issued_by"]) == (
        True,
        2,
        "billing run",
    )


async def _waiting(partners: Partners, month: str) -> bool:
    view = (await partners.http.get(f"/commission-months/{month}")).json()
    return bool(view["run_finished"] and view["statements_issued_at"] is None)


async def _statements(partners: Partners, month: str, count: int) -> dict[str, dict[str, Any]] | None:
    found = await statements_of(partners, month)
    return found if len(found) >= count else None


async def test_a_rerun_changes_no_statement_and_a_late_invoice_goes_on_the_next_one(
    partners: Partners,
) -> None:
    month, following = a_month()
    reseller = unique("reseller")
    await partners.publisher.publish(registered(reseller))
    await partners.wait_for_tier(reseller, "partner")
    n = uuid.uuid4().int % 10_000_000
    first = invoice(n + 1, month, {reseller: "20.00"})
    await partners.publisher.publish(first, finished(month, invoices=1, credit_notes=0))
    (made,) = (await wait_until(lambda: _statements(partners, month, 1), what="the statement")).values()

    # The run is repeated (a payer set aside is billed now): same month, more invoices, and the
    # first invoice's event again. The published statement stays as it was.
    late = invoice(n + 2, month, {reseller: "30.00"})
    await partners.publisher.publish(first, late, finished(month, invoices=2, credit_notes=0, attempt=2))
    await partners.publisher.publish(finished(following, invoices=0, credit_notes=0))
    (nxt,) = (
        await wait_until(lambda: _statements(partners, following, 1), what="next month's statement")
    ).values()

    again = (await partners.http.get(f"/commission-statements/{made['statement_id']}")).json()
    assert (again["software_net_total"], again["lines"]) == ("20.00", 1)
    detail = (await partners.http.get(f"/commission-statements/{nxt['statement_id']}")).json()
    assert [(i["number"], i["billing_period"], i["software_net"]) for i in detail["invoices"]] == [
        (late.invoice_number, month, "30.00")
    ]
    assert detail["commission_amount"] == "3.00"
    published = await read_topic(
        partners.kafka,
        STATEMENT_TOPIC,
        until=lambda found: any(m["partner_id"] == reseller and m["month"] == following for m in found),
    )
    assert sorted(m["month"] for m in published if m["partner_id"] == reseller) == [month, following]


async def test_the_database_refuses_to_change_a_published_statement_or_its_lines(partners: Partners) -> None:
    month, _ = a_month()
    reseller = unique("reseller")
    await partners.publisher.publish(registered(reseller))
    await partners.wait_for_tier(reseller, "partner")
    await partners.publisher.publish(
        invoice(uuid.uuid4().int % 10_000_000, month, {reseller: "12.34"}), finished(month, 1, 0)
    )
    (made,) = (await wait_until(lambda: _statements(partners, month, 1), what="the statement")).values()
    for sql in (
        "UPDATE partners.commission_statements SET commission_amount = 0 WHERE statement_id = :id",
        "DELETE FROM partners.commission_statements WHERE statement_id = :id",
        "UPDATE partners.commission_lines SET software_net = 0 WHERE (partner_id, document_id) IN "
        "(SELECT partner_id, document_id FROM partners.commission_line_statements WHERE statement_id = :id)",
        "DELETE FROM partners.commission_lines WHERE (partner_id, document_id) IN "
        "(SELECT partner_id, document_id FROM partners.commission_line_statements WHERE statement_id = :id)",
        "UPDATE partners.commission_line_statements SET statement_id = 'other' WHERE statement_id = :id",
        "DELETE FROM partners.commission_line_statements WHERE statement_id = :id",
        "TRUNCATE partners.commission_line_statements",
    ):
        async with partners.sessions.begin() as session:
            with pytest.raises(DBAPIError, match=r"P-08: .* of a published commission statement is refused"):
                await session.execute(text(sql), {"id": made["statement_id"]})
    still = (await partners.http.get(f"/commission-statements/{made['statement_id']}")).json()
    assert (still["software_net_total"], still["commission_amount"]) == ("12.34", "1.23")


async def test_an_operator_can_make_a_month_whose_run_never_reported(partners: Partners) -> None:
    # A month that has ended, under the benefit book (2024 on), that no other test's run makes.
    month = f"{2024 + uuid.uuid4().int % 2}-{1 + uuid.uuid4().int % 12:02d}"
    reseller = unique("reseller")
    await partners.publisher.publish(registered(reseller, signed_on=dt.date(2023, 1, 1)))
    await partners.wait_for_tier(reseller, "partner")
    await partners.publisher.publish(invoice(uuid.uuid4().int % 10_000_000, month, {reseller: "5.00"}))
    await wait_until(lambda: _line_stored(partners, reseller), what="the invoice stored")

    not_ended = await partners.http.post("/commission-months/2026-11/issue")
    assert not_ended.status_code == 422
    manager = partners.issuer.user_auth("pirjo.partners")
    made = (await partners.http.post(f"/commission-months/{month}/issue", auth=manager)).json()
    assert [(s["partner_id"], s["commission_amount"]) for s in made] == [(reseller, "0.50")]
    again = await partners.http.post(f"/commission-months/{month}/issue")
    assert again.status_code == 409
    assert (again.json()["rule"], "never changed" in again.json()["detail"]) == ("P-08", True)
    view = (await partners.http.get(f"/commission-months/{month}")).json()
    assert (view["run_finished"], view["issued_by"]) == (False, "operator:pirjo.partners")


async def _line_stored(partners: Partners, reseller: str) -> bool:
    found = await partners.scalar(
        "SELECT count(*) FROM partners.commission_lines WHERE partner_id = :p", p=reseller
    )
    return bool(found)
