"""After the run, on a real PostgreSQL: credit notes, payments and refunds (B-06), due-date moves (B-23)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from billing_contracts.contracts import DueDateChangeRequestedV1, Requester
from billing_contracts.invoicing import ChangeRequestRefusedV1, CreditNoteIssuedV1, RefundRecordedV1
from billing_contracts.partners import PartnerTier
from billing_contracts.procountor import PaymentReceivedV1
from invoicing import tables as t
from invoicing.receivables.consumers import DueDateIntake, ReceivablesIntake
from invoicing.receivables.domain import CreditRefusedError
from invoicing.receivables.service import (
    CreditRequest,
    DueDateChange,
    DueDateRefusedError,
    RefundNotOpenError,
    change_due_date,
    issue_credit_note,
    mark_refund_paid,
)
from invoicing.references import is_valid_reference, make_reference

from .conftest import MAIN_USER, Billing, at, business_id

pytestmark = pytest.mark.integration

D = Decimal
NOV_2 = dt.date(2026, 11, 2)


async def one_invoice(billing: Billing, **usage: Any) -> dict[str, Any]:
    await billing.sign("env-a", 1)
    await billing.usage("env-a", "2026-10", **usage)
    await billing.close("2026-10")
    await billing.run(NOV_2)
    (invoice,) = await billing.invoices()
    return invoice


async def credit(
    billing: Billing, invoice_id: str, lines: dict[int, Decimal | None] | None = None, **kw: Any
) -> CreditNoteIssuedV1:
    billing.clock.set(at(dt.date(2026, 11, 20)))
    async with billing.sessions.begin() as session:
        return await issue_credit_note(
            session,
            CreditRequest(
                invoice_id=invoice_id,
                reason=kw.pop("reason", "wrong package"),
                credited_by="ops-1",
                lines=lines,
                **kw,
            ),
            billing.clock,
        )


def note_lines(note: CreditNoteIssuedV1) -> list[tuple[Any, ...]]:
    return [(ln.credited_line_no, ln.product_code, ln.quantity, ln.net) for ln in note.lines]


# --- credit notes ---


async def test_an_invoice_credited_in_full_gives_back_exactly_its_lines_and_totals(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=13, payees=2, einvoices_sent=1)

    note = await credit(billing, invoice["invoice_id"])

    assert note_lines(note) == [
        (1, "KEVYT-MONTHLY", D(1), D("39.00")),
        (2, "EXTRA-VOUCHER", D(3), D("5.37")),
        (3, "EXTRA-PAYEE", D(1), D("9.90")),
        (4, "EINVOICE-SENT", D(1), D("0.35")),
    ]
    assert (note.total_net, note.total_vat, note.total_gross) == (D("54.62"), D("13.93"), D("68.55"))
    # Its own number from the same series, and its own reference.
    assert (note.credit_note_number, note.reference_number) == ("100002", make_reference(100002))
    assert is_valid_reference(note.reference_number)
    assert (note.credited_invoice_number, note.credit_date, note.reason) == (
        "100001",
        dt.date(2026, 11, 20),
        "wrong package",
    )
    (after,) = await billing.invoices()
    assert (after["status"], after["credited_gross"], after["open_amount"]) == ("credited", "68.55", "0.00")
    async with billing.sessions() as session:
        topics = (await session.execute(select(t.runtime_tables.outbox.c.topic))).scalars().all()
    assert topics.count("invoicing.credit-note-issued.v1") == 1


async def test_crediting_line_by_line_gives_back_exactly_the_invoices_vat(billing: Billing) -> None:
    # 7 extra vouchers: 12.53 net; crediting them one by one rounds VAT per piece.
    invoice = await one_invoice(billing, vouchers=17)
    assert [ln["net"] for ln in invoice["lines"]] == ["39.00", "12.53"]

    pieces = [await credit(billing, invoice["invoice_id"], {2: D(1)}) for _ in range(7)]

    assert [n.total_vat for n in pieces] == [D("0.46")] * 7  # each alone: 1.79 × 25.5 % = 0.45645
    assert sum(n.total_net for n in pieces) == D("12.53")
    (after,) = await billing.invoices()
    assert (after["status"], after["credited_net"]) == ("open", "12.53")
    last = await credit(billing, invoice["invoice_id"], {1: None})
    # The invoice's VAT is 51.53 × 25.5 % = 13.14015 → 13.14. The note that completes it takes
    # what is left of that, 13.14 − 7 × 0.46 = 9.92 (alone, 39.00 would carry 9.95).
    assert invoice["total_vat"] == "13.14"
    assert (last.total_net, last.total_vat) == (D("39.00"), D("9.92"))
    assert sum(n.total_vat for n in [*pieces, last]) == D("13.14")
    (after,) = await billing.invoices()
    assert (after["status"], after["credited_gross"]) == ("credited", after["total_gross"])


async def test_a_discount_is_credited_with_the_lines_it_reduced_never_as_a_negative_line(
    billing: Billing,
) -> None:
    await billing.sign("env-own", 7, firm=7, own_use=True)
    await billing.tier(7, PartnerTier.GOLD, "2026-01")
    await billing.usage("env-own", "2026-10", vouchers=13, billable_hours={"KIRJANPITO-TUNTI": "1"})
    await billing.close("2026-10")
    await billing.run(NOV_2)
    (invoice,) = await billing.invoices()

    with pytest.raises(CreditRefusedError, match="negative line"):
        await credit(billing, invoice["invoice_id"], {3: None})
    note = await credit(billing, invoice["invoice_id"])

    # −22.19 shared by the software lines: 39.00 → 19.50, 5.37 → 2.68; the hour is not discounted.
    assert note_lines(note) == [
        (1, "KEVYT-MONTHLY", D(1), D("19.50")),
        (2, "EXTRA-VOUCHER", D(3), D("2.68")),
        (4, "KIRJANPITO-TUNTI", D(1), D("75.00")),
    ]
    assert note.lines[0].description.endswith("(alennus huomioitu / net of discount)")
    assert (note.total_net, note.total_vat) == (D(invoice["total_net"]), D(invoice["total_vat"]))


async def test_crediting_more_than_is_left_is_refused_with_the_reason(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=13)
    with pytest.raises(CreditRefusedError, match="quantity 4 is not between 0 and the 3 left"):
        await credit(billing, invoice["invoice_id"], {2: D(4)})
    await credit(billing, invoice["invoice_id"])
    with pytest.raises(CreditRefusedError, match="nothing left to credit"):
        await credit(billing, invoice["invoice_id"])
    with pytest.raises(CreditRefusedError, match="line 9 cannot be credited"):
        await credit(billing, invoice["invoice_id"], {9: None})


async def test_a_credit_request_retried_with_its_key_gives_the_same_note(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=13)
    first = await credit(billing, invoice["invoice_id"], {2: D(1)}, request_id="ticket-42")
    again = await credit(billing, invoice["invoice_id"], {2: D(1)}, request_id="ticket-42")
    assert again.credit_note_id == first.credit_note_id
    assert await billing.count(t.credit_notes) == 1


# --- payments and refunds (B-06) ---


def payment(
    amount: str, *, payment_id: str = "P1", reference: str | None = None, invoice_id: str | None = None
) -> PaymentReceivedV1:
    return PaymentReceivedV1(
        event_id=uuid.uuid4(),
        occurred_at=at(dt.date(2026, 11, 10)),
        producer="procountor-sync",
        procountor_payment_id=payment_id,
        procountor_invoice_id="PC-1",
        invoice_id=invoice_id,
        payer_business_id=business_id(1),
        amount=D(amount),
        payment_date=dt.date(2026, 11, 10),
        reference_number=reference,
    )


async def refunds(billing: Billing) -> list[RefundRecordedV1]:
    async with billing.sessions() as session:
        values = (
            await session.execute(
                select(t.runtime_tables.outbox.c.value).where(
                    t.runtime_tables.outbox.c.topic == "invoicing.refund-recorded.v1"
                )
            )
        ).scalars()
        return [RefundRecordedV1.model_validate_json(v) for v in values]


async def test_a_payment_of_the_invoice_by_its_reference_pays_it_and_refunds_nothing(
    billing: Billing,
) -> None:
    invoice = await one_invoice(billing, vouchers=13, payees=2, einvoices_sent=1)
    assert (
        await billing._apply(
            ReceivablesIntake(billing.clock), payment("68.55", reference=invoice["reference_number"])
        )
        == []
    )
    (after,) = await billing.invoices()
    assert (after["status"], after["paid_amount"], after["open_amount"]) == ("paid", "68.55", "0.00")
    assert await refunds(billing) == []


async def test_b06_what_exceeds_the_open_invoices_is_a_refund_record_not_a_credit(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=13, payees=2, einvoices_sent=1)
    event = payment("100.00", invoice_id=invoice["invoice_id"])
    await billing._apply(ReceivablesIntake(billing.clock), event)

    (refund,) = await refunds(billing)
    assert (refund.amount, refund.payer_business_id, refund.payment_event_id) == (
        D("31.45"),
        business_id(1),
        event.event_id,
    )
    assert refund.reason == "overpayment: more than the payer's open invoices"
    (after,) = await billing.invoices()
    assert after["status"] == "paid"


async def test_b06_a_payment_when_the_payer_has_no_open_invoice_is_returned_in_full(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=0)
    await billing._apply(ReceivablesIntake(billing.clock), payment(invoice["total_gross"], payment_id="P1"))
    await billing._apply(ReceivablesIntake(billing.clock), payment("20.00", payment_id="P2"))

    (refund,) = await refunds(billing)
    assert (refund.amount, refund.reason, refund.refund_id) == (D("20.00"), "no open invoice", "RF-P2")
    # The same payment again (a new event id) changes nothing.
    await billing._apply(ReceivablesIntake(billing.clock), payment("20.00", payment_id="P2"))
    assert len(await refunds(billing)) == 1


async def test_an_overpayment_goes_to_the_payers_other_open_invoices_before_any_refund(
    billing: Billing,
) -> None:
    await one_invoice(billing, vouchers=0)  # October: 48.95
    await billing.usage("env-a", "2026-11", vouchers=0)
    await billing.close("2026-11")
    await billing.run(dt.date(2026, 12, 1))  # November: 48.95
    october, november = await billing.invoices()

    await billing._apply(
        ReceivablesIntake(billing.clock), payment("100.00", invoice_id=november["invoice_id"])
    )

    october, november = await billing.invoices()
    assert (october["status"], november["status"]) == ("paid", "paid")
    (refund,) = await refunds(billing)
    assert refund.amount == D("2.10")  # 100.00 − 2 × 48.95


async def test_b06_a_credit_note_on_a_paid_invoice_is_a_refund_on_the_one_list(billing: Billing) -> None:
    """What a credit takes beyond what is still open was paid already: returned, recorded by us."""
    invoice = await one_invoice(billing, vouchers=13, payees=2, einvoices_sent=1)  # 68.55
    await billing._apply(
        ReceivablesIntake(billing.clock), payment("60.00", invoice_id=invoice["invoice_id"])
    )  # 8.55 still open
    note = await credit(billing, invoice["invoice_id"], {1: None})  # the monthly fee: 48.95

    (refund,) = await refunds(billing)
    async with billing.sessions.begin() as session:
        paid_back = await mark_refund_paid(
            session, refund.refund_id, paid_by="olli.operator", note="", clock=billing.clock
        )
    async with billing.sessions.begin() as session:
        with pytest.raises(RefundNotOpenError):
            await mark_refund_paid(
                session, refund.refund_id, paid_by="someone.else", note="", clock=billing.clock
            )

    assert note.total_gross == D("48.95")
    assert (refund.refund_id, refund.amount) == (f"RF-{note.credit_note_id}", D("40.40"))  # 48.95 − 8.55
    assert (refund.credit_note_id, refund.payment_event_id) == (note.credit_note_id, note.event_id)
    assert refund.reason == f"credit note {note.credit_note_number} on an invoice already paid"
    assert (paid_back.status, paid_back.paid_by, paid_back.amount) == (
        "paid_back",
        "olli.operator",
        D("40.40"),
    )


async def test_b06_a_credit_note_on_an_unpaid_invoice_refunds_nothing(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=13, payees=2, einvoices_sent=1)

    await credit(billing, invoice["invoice_id"], {1: None})

    assert await refunds(billing) == []


# --- due dates (B-23) ---


def move(invoice_id: str, new: dt.date, requester: Requester = MAIN_USER) -> DueDateChange:
    return DueDateChange(
        invoice_id=invoice_id,
        new_due_date=new,
        reason="customer asked for two more weeks",
        changed_by="support-7",
        requested_by=requester,
        requested_at=at(dt.date(2026, 11, 5)),
        source="http",
    )


async def audit(billing: Billing) -> list[tuple[Any, ...]]:
    d = t.due_date_changes.c
    async with billing.sessions() as session:
        rows = await session.execute(
            select(d.outcome, d.old_due_date, d.new_due_date, d.changed_by, d.refusal).order_by(d.id)
        )
        return [tuple(r) for r in rows]


async def test_b23_support_moves_a_due_date_and_the_move_is_audited(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=0)
    async with billing.sessions.begin() as session:
        await change_due_date(session, move(invoice["invoice_id"], dt.date(2026, 11, 26)), billing.clock)

    (after,) = await billing.invoices()
    assert after["due_date"] == "2026-11-26"
    assert await audit(billing) == [
        ("accepted", dt.date(2026, 11, 12), dt.date(2026, 11, 26), "support-7", None)
    ]


async def test_b23_b25_a_move_asked_by_someone_without_the_right_is_refused_and_audited(
    billing: Billing,
) -> None:
    invoice = await one_invoice(billing, vouchers=0)
    bookkeeper = Requester(person_name="Kalle Kirjanpitäjä", role="bookkeeper")
    async with billing.sessions.begin() as session:
        with pytest.raises(DueDateRefusedError) as refused:
            await change_due_date(
                session, move(invoice["invoice_id"], dt.date(2026, 11, 26), bookkeeper), billing.clock
            )
    assert refused.value.rule == "B-25"
    (after,) = await billing.invoices()
    assert after["due_date"] == "2026-11-12"
    ((outcome, *_, refusal),) = await audit(billing)
    assert outcome == "refused"
    assert "Kalle Kirjanpitäjä has the role 'bookkeeper'" in refusal


async def test_b23_a_due_date_before_the_invoice_date_is_refused(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=0)
    async with billing.sessions.begin() as session:
        with pytest.raises(DueDateRefusedError, match="before the invoice date"):
            await change_due_date(session, move(invoice["invoice_id"], dt.date(2026, 11, 1)), billing.clock)


async def test_b23_a_refused_due_date_command_from_kafka_publishes_the_refusal(billing: Billing) -> None:
    invoice = await one_invoice(billing, vouchers=0)
    command = DueDateChangeRequestedV1(
        event_id=uuid.uuid4(),
        occurred_at=at(dt.date(2026, 11, 5)),
        producer="support",
        invoice_id=invoice["invoice_id"],
        new_due_date=dt.date(2026, 10, 1),
        reason="typo",
        changed_by="support-7",
        requested_at=at(dt.date(2026, 11, 5)),
        requested_by=MAIN_USER,
    )
    (rejection,) = await billing._apply(DueDateIntake(billing.clock), command)
    assert rejection.reason.startswith("B-23: the new due date 2026-10-01 is before the invoice date")
    async with billing.sessions() as session:
        values = (
            await session.execute(
                select(t.runtime_tables.outbox.c.value).where(
                    t.runtime_tables.outbox.c.topic == "invoicing.change-request-refused.v1"
                )
            )
        ).scalars()
        (refusal,) = [ChangeRequestRefusedV1.model_validate_json(v) for v in values]
    assert (refusal.refused_event_id, refusal.rule, refusal.key) == (
        command.event_id,
        "B-23",
        invoice["invoice_id"],
    )
