"""Pure receivables rules: credit notes (what may be credited, their VAT) and the B-06 allocation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.billing.domain import InvoiceStatus
from invoicing.calendar import YearMonth
from invoicing.receivables.domain import (
    REFUND_NO_OPEN_INVOICE,
    REFUND_OVERPAYMENT,
    Allocation,
    CreditRefusedError,
    DeliveryState,
    DeliveryStatus,
    InvoicedLine,
    PaymentState,
    PaymentStatus,
    Receivable,
    allocate_payment,
    credit_lines,
    credit_vat,
    creditable_lines,
    due_date_refusal,
    invoice_status,
    supersedes,
)

D = Decimal
OCT = YearMonth(2026, 10)
VAT = D("25.5")


# --- credit notes ---


def invoiced(
    line_no: int, net: str, *, qty: str = "1", software: bool = True, env: str = "env-1"
) -> InvoicedLine:
    return InvoicedLine(
        line_no=line_no,
        environment_id=env,
        product_code=f"P{line_no}",
        description=f"line {line_no}",
        period_start=OCT.first_day,
        period_end=OCT.last_day,
        quantity=D(qty),
        unit="piece",
        unit_price=D(net) / D(qty),
        net=D(net),
        vat_rate=VAT,
        is_software=software,
    )


def test_a_discount_is_shared_among_the_software_lines_it_reduced_by_their_nets() -> None:
    creditable = creditable_lines(
        [
            invoiced(1, "39.00"),
            invoiced(2, "5.37", qty="3"),
            invoiced(3, "-22.19"),
            invoiced(4, "75.00", software=False),
        ]
    )
    assert {n: c.net for n, c in creditable.items()} == {1: D("19.50"), 2: D("2.68"), 4: D("75.00")}
    assert (creditable[1].reduced, creditable[4].reduced) == (True, False)


def test_crediting_part_of_a_line_rounds_its_share_and_the_rest_takes_exactly_what_is_left() -> None:
    creditable = creditable_lines([invoiced(1, "5.37", qty="3")])
    first = credit_lines(creditable, {}, {1: D(1)})
    assert [(c.quantity, c.net) for c in first] == [(D(1), D("1.79"))]
    rest = credit_lines(creditable, {1: (D(1), D("1.79"))}, None)
    assert [(c.quantity, c.net) for c in rest] == [(D(2), D("3.58"))]
    with pytest.raises(CreditRefusedError, match="nothing left"):
        credit_lines(creditable, {1: (D(3), D("5.37"))}, None)


def test_the_credit_that_completes_an_invoice_gives_back_the_rest_of_its_vat() -> None:
    creditable = creditable_lines([invoiced(1, "1.79")])
    lines_ = credit_lines(creditable, {}, None)
    assert credit_vat(lines_, completes_invoice=False, invoice_vat={VAT: D("3.20")}, credited_vat={})[
        0
    ].vat == D("0.46")
    assert credit_vat(
        lines_, completes_invoice=True, invoice_vat={VAT: D("3.20")}, credited_vat={VAT: D("2.76")}
    )[0].vat == D("0.44")


# --- B-06: allocating a payment ---


def receivable(
    invoice_id: str,
    gross: str,
    *,
    paid: str = "0.00",
    credited: str = "0.00",
    status: InvoiceStatus = InvoiceStatus.OPEN,
) -> Receivable:
    return Receivable(
        invoice_id=invoice_id,
        invoice_number=int(invoice_id.removeprefix("INV-")),
        payer_id="2077474-0",
        status=status,
        invoice_date=dt.date(2026, 11, 2),
        due_date=dt.date(2026, 11, 12),
        total_gross=D(gross),
        credited_net=D(credited),
        credited_gross=D(credited),
        paid_amount=D(paid),
    )


def test_b06_a_payment_without_an_open_invoice_is_refunded_whole() -> None:
    result = allocate_payment(D("50.00"), [])
    assert (result.allocations, result.refund, result.refund_reason) == (
        (),
        D("50.00"),
        REFUND_NO_OPEN_INVOICE,
    )


def test_b06_the_named_invoice_is_paid_first_then_the_others_in_order_and_the_rest_refunded() -> None:
    first, second = receivable("INV-100001", "30.00"), receivable("INV-100002", "20.00", paid="5.00")
    named = receivable("INV-100003", "10.00")
    result = allocate_payment(D("60.00"), [first, second, named], named=named)
    assert result.allocations == (
        Allocation("INV-100003", D("10.00")),
        Allocation("INV-100001", D("30.00")),
        Allocation("INV-100002", D("15.00")),
    )
    assert (result.refund, result.refund_reason) == (D("5.00"), REFUND_OVERPAYMENT)


def test_b06_a_credited_or_covered_invoice_takes_nothing() -> None:
    credited = receivable("INV-100001", "30.00", status=InvoiceStatus.CREDITED)
    covered = receivable("INV-100002", "20.00", credited="20.00")
    result = allocate_payment(D("5.00"), [credited, covered])
    assert (result.allocations, result.refund, result.refund_reason) == (
        (),
        D("5.00"),
        REFUND_NO_OPEN_INVOICE,
    )


def test_b06_a_payment_that_covers_part_of_the_first_invoice_leaves_nothing_to_refund() -> None:
    result = allocate_payment(
        D("12.34"), [receivable("INV-100001", "30.00"), receivable("INV-100002", "9.00")]
    )
    assert (result.allocations, result.refund) == ((Allocation("INV-100001", D("12.34")),), D("0.00"))


def test_invoice_status_follows_payments_and_credits() -> None:
    assert invoice_status(D("10.00"), D("4.00"), D("6.00"), fully_credited=False) is InvoiceStatus.PAID
    assert invoice_status(D("10.00"), D("4.00"), D("5.99"), fully_credited=False) is InvoiceStatus.OPEN
    assert invoice_status(D("10.00"), D("0.00"), D("10.00"), fully_credited=True) is InvoiceStatus.CREDITED


def test_b23_only_an_open_invoice_moves_and_never_before_its_invoice_date() -> None:
    paid = receivable("INV-100001", "10.00", paid="10.00", status=InvoiceStatus.PAID)
    refusal = due_date_refusal(paid, dt.date(2026, 12, 1))
    assert refusal is not None
    assert refusal.rule == "B-23"
    assert "paid" in refusal.reason
    early = due_date_refusal(receivable("INV-100002", "10.00"), dt.date(2026, 11, 1))
    assert early is not None
    assert "before the invoice date" in early.reason
    assert due_date_refusal(receivable("INV-100003", "10.00"), dt.date(2026, 11, 30)) is None


_cents = st.decimals(min_value=D("0.00"), max_value=D("5000.00"), places=2)


@st.composite
def _open_invoices(draw: st.DrawFn) -> list[Receivable]:
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        gross = draw(_cents)
        paid = draw(st.decimals(min_value=D("0.00"), max_value=gross, places=2))
        status = draw(st.sampled_from([InvoiceStatus.OPEN, InvoiceStatus.OPEN, InvoiceStatus.CREDITED]))
        out.append(receivable(f"INV-{100001 + i}", str(gross), paid=str(paid), status=status))
    return out


@given(amount=_cents, invoices=_open_invoices(), name_first=st.booleans())
def test_b06_property_nothing_lost_nothing_twice_and_no_invoice_overpaid(
    amount: Decimal, invoices: list[Receivable], name_first: bool
) -> None:
    named = invoices[-1] if invoices and name_first else None
    result = allocate_payment(amount, invoices, named=named)
    # Every cent goes somewhere, exactly once.
    assert sum((a.amount for a in result.allocations), D("0.00")) + result.refund == amount
    by_id = {r.invoice_id: r for r in invoices}
    assert len({a.invoice_id for a in result.allocations}) == len(result.allocations)
    for a in result.allocations:
        invoice = by_id[a.invoice_id]
        assert D("0.00") < a.amount <= invoice.open_amount
        assert invoice.status is not InvoiceStatus.CREDITED
    # Money is returned only when no open invoice could take more (B-06).
    if result.refund > 0:
        taken = {a.invoice_id: a.amount for a in result.allocations}
        for r in invoices:
            if r.status is InvoiceStatus.OPEN and r.open_amount > 0:
                assert taken.get(r.invoice_id) == r.open_amount
        assert result.refund_reason == (REFUND_OVERPAYMENT if result.allocations else REFUND_NO_OPEN_INVOICE)
    else:
        assert result.refund_reason is None
    if (
        named is not None
        and result.allocations
        and named.open_amount > 0
        and named.status is InvoiceStatus.OPEN
    ):
        assert result.allocations[0].invoice_id == named.invoice_id


# --- I-01, I-03: delivery and payment reports, in any order ---

HKI = dt.timezone(dt.timedelta(hours=2))


def test_a_report_replaces_an_older_state_or_an_equally_old_one_never_a_newer_one() -> None:
    nine = dt.datetime(2026, 11, 2, 9, 0, tzinfo=HKI)
    ten = dt.datetime(2026, 11, 2, 10, 0, tzinfo=HKI)

    assert supersedes(ten, None)  # nothing reported yet, or a state moved by migration 0006
    assert supersedes(ten, nine)
    assert supersedes(ten, ten)  # the later arrival of two reports taken at the same time
    assert not supersedes(nine, ten)  # an overtaken report is ignored
    with pytest.raises(ValueError, match="time-zone aware"):
        supersedes(dt.datetime(2026, 11, 2, 9, 0), None)  # noqa: DTZ001 - the refusal is the point


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),
            st.sampled_from(list(PaymentStatus)),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda r: r[0],
    ),
    st.randoms(),
)
def test_reports_applied_in_any_order_leave_the_newest_state(
    reports: list[tuple[int, PaymentStatus]], rnd: Any
) -> None:
    base = dt.datetime(2026, 11, 2, tzinfo=HKI)
    states = [
        PaymentState(
            status=status,
            paid_amount=D(minute),
            open_amount=D(0),
            at=base + dt.timedelta(minutes=minute),
        )
        for minute, status in reports
    ]
    arrival = list(states)
    rnd.shuffle(arrival)

    held: PaymentState | None = None
    for report in arrival:
        assert report.at is not None
        if supersedes(report.at, None if held is None else held.at):
            held = report

    assert held == max(states, key=lambda s: s.at or base)


def test_delivery_and_payment_states_are_told_apart_by_their_values() -> None:
    # One field each (I-01, I-03): no value is both a delivery and a payment state.
    assert not {s.value for s in DeliveryStatus} & {s.value for s in PaymentStatus}
    assert DeliveryState(status=DeliveryStatus.SENT, error=None, at=None).status == "sent"
