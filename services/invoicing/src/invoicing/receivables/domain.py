"""Receivables rules: what a credit note may credit and its VAT (B-20), how a payment is allocated to
a payer's open invoices (B-06), and which of Procountor's delivery and payment reports stand
(I-01, I-03). Pure: no I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from invoicing.billing.domain import InvoiceStatus, VatTotal
from invoicing.money import ZERO, cents, require_decimal, vat_amount


class CreditRefusedError(ValueError):
    """A credit that the rules refuse; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoicedLine:
    """A line of an issued invoice, as crediting needs it."""

    line_no: int
    environment_id: str
    product_code: str
    description: str
    period_start: dt.date
    period_end: dt.date
    quantity: Decimal
    unit: str
    unit_price: Decimal
    net: Decimal
    vat_rate: Decimal
    is_software: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditableLine(InvoicedLine):
    """An invoice line as it can be credited: its net after the negative lines it bore (discounts).

    A credit note gives money back, so its lines are never negative. A negative line (the P-07
    discount, a downward correction) is credited with the positive lines of its environment, VAT
    rate and kind (software or service hours), shared among them in proportion to their nets
    (the last takes the rounding).
    """

    reduced: bool  # the net (here the creditable net) bears a share of negative lines


def creditable_lines(lines: Iterable[InvoicedLine]) -> dict[int, CreditableLine]:
    """Every positive line with its creditable net; negative lines are folded into them."""
    # A discount reduces software charges only (P-07), a downward hours correction only hours.
    groups: dict[tuple[str, Decimal, bool], list[InvoicedLine]] = {}
    for ln in lines:
        groups.setdefault((ln.environment_id, ln.vat_rate, ln.is_software), []).append(ln)
    result: dict[int, CreditableLine] = {}
    for group in groups.values():
        positive = [ln for ln in group if ln.net > ZERO]
        negative = sum((ln.net for ln in group if ln.net < ZERO), ZERO)
        base = sum((ln.net for ln in positive), ZERO)
        if base + negative <= ZERO:
            continue  # nothing was charged for this environment and rate: nothing to give back
        shares: list[Decimal] = []
        for ln in positive[:-1]:
            shares.append(cents(negative * ln.net / base))
        shares.append(negative - sum(shares, ZERO))
        for ln, share in zip(positive, shares, strict=True):
            net = ln.net + share
            result[ln.line_no] = CreditableLine(
                line_no=ln.line_no,
                environment_id=ln.environment_id,
                product_code=ln.product_code,
                description=ln.description,
                period_start=ln.period_start,
                period_end=ln.period_end,
                quantity=ln.quantity,
                unit=ln.unit,
                unit_price=ln.unit_price
                if share == ZERO
                else (net / ln.quantity).quantize(Decimal("0.00001")),
                net=net,
                vat_rate=ln.vat_rate,
                is_software=ln.is_software,
                reduced=share != ZERO,
            )
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditedLine:
    """One line of a credit note (amounts positive: money given back)."""

    credited_line_no: int
    environment_id: str
    product_code: str
    description: str
    period_start: dt.date
    period_end: dt.date
    quantity: Decimal
    unit: str
    unit_price: Decimal
    net: Decimal
    vat_rate: Decimal
    is_software: bool


def credit_lines(
    creditable: Mapping[int, CreditableLine],
    already: Mapping[int, tuple[Decimal, Decimal]],
    requested: Mapping[int, Decimal | None] | None,
) -> list[CreditedLine]:
    """What a credit note credits: everything still creditable (`requested` None), or the lines asked.

    `already` holds the quantity and net credited per line by earlier credit notes; `requested`
    maps a line number to a quantity (None: what remains of the line). Crediting what remains
    of a line credits exactly its remaining net, so full credits add up to the cent.
    """
    wanted = dict.fromkeys(sorted(creditable)) if requested is None else dict(sorted(requested.items()))
    out: list[CreditedLine] = []
    for line_no, quantity in wanted.items():
        line = creditable.get(line_no)
        if line is None:
            raise CreditRefusedError(
                f"line {line_no} cannot be credited: no such line, or a negative line (a discount or a "
                "downward correction is credited with the lines it reduced)"
            )
        qty_done, net_done = already.get(line_no, (Decimal(0), ZERO))
        qty_left, net_left = line.quantity - qty_done, line.net - net_done
        if net_left <= ZERO:
            if requested is None:
                continue
            raise CreditRefusedError(f"line {line_no} is already credited in full")
        qty = qty_left if quantity is None else quantity
        if qty <= 0 or qty > qty_left:
            raise CreditRefusedError(
                f"line {line_no}: quantity {qty} is not between 0 and the {qty_left} left"
            )
        net = net_left if qty == qty_left else min(net_left, cents(line.net * qty / line.quantity))
        description = line.description
        if line.reduced:
            description = f"{description} (alennus huomioitu / net of discount)"
        out.append(
            CreditedLine(
                credited_line_no=line_no,
                environment_id=line.environment_id,
                product_code=line.product_code,
                description=f"Hyvitys / Credit: {description}"[:200],
                period_start=line.period_start,
                period_end=line.period_end,
                quantity=qty,
                unit=line.unit,
                unit_price=line.unit_price,
                net=net,
                vat_rate=line.vat_rate,
                is_software=line.is_software,
            )
        )
    if not out:
        raise CreditRefusedError("nothing left to credit on this invoice")
    return out


def credit_vat(
    lines: Iterable[CreditedLine],
    *,
    completes_invoice: bool,
    invoice_vat: Mapping[Decimal, Decimal],
    credited_vat: Mapping[Decimal, Decimal],
) -> tuple[VatTotal, ...]:
    """VAT per rate of a credit note (B-18); the credit that completes an invoice takes the rest exactly.

    Each credit note's VAT is computed per rate on the sum of its nets, half up, like an invoice.
    Partial credits can round differently from the invoice; the last one, which credits what is
    left, takes the invoice's VAT minus what was credited before, so that crediting an invoice in
    pieces gives back exactly its VAT.
    """
    nets: dict[Decimal, Decimal] = {}
    for ln in lines:
        nets[ln.vat_rate] = nets.get(ln.vat_rate, ZERO) + ln.net
    totals = []
    for rate, net in sorted(nets.items(), reverse=True):
        vat = vat_amount(net, rate)
        if completes_invoice:
            vat = invoice_vat.get(rate, vat) - credited_vat.get(rate, ZERO)
        totals.append(VatTotal(vat_rate=rate, net=cents(net), vat=vat))
    return tuple(totals)


# --- the state of an issued invoice ---


def invoice_status(
    total_gross: Decimal, paid: Decimal, credited_gross: Decimal, *, fully_credited: bool
) -> InvoiceStatus:
    """Credited once a credit note completes it; paid once payments and credits cover its gross."""
    if fully_credited:
        return InvoiceStatus.CREDITED
    return InvoiceStatus.PAID if paid + credited_gross >= total_gross else InvoiceStatus.OPEN


@dataclass(frozen=True, slots=True, kw_only=True)
class Receivable:
    """An issued invoice as receivables sees it: what was billed, credited and paid."""

    invoice_id: str
    invoice_number: int
    payer_id: str
    status: InvoiceStatus
    invoice_date: dt.date
    due_date: dt.date
    total_gross: Decimal
    credited_net: Decimal
    credited_gross: Decimal
    paid_amount: Decimal

    @property
    def open_amount(self) -> Decimal:
        """What the payer still owes on it."""
        return self.total_gross - self.credited_gross - self.paid_amount


def software_net_by_reseller_of_credit(
    lines: Iterable[CreditedLine], reseller_of: Mapping[str, str | None]
) -> dict[str, Decimal]:
    """P-08 on a credit note: the net software credited for each reseller's environments."""
    nets: dict[str, Decimal] = {}
    for ln in lines:
        reseller = reseller_of.get(ln.environment_id)
        if reseller and ln.is_software:
            nets[reseller] = nets.get(reseller, ZERO) + ln.net
    return nets


# --- B-06: a payment allocated to the payer's open invoices ---

REFUND_NO_OPEN_INVOICE = "no open invoice"
REFUND_OVERPAYMENT = "overpayment: more than the payer's open invoices"


@dataclass(frozen=True, slots=True)
class Allocation:
    """Part of a payment applied to one invoice."""

    invoice_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PaymentAllocation:
    """Where a payment went: the invoices it paid, in order, and what is left to return (B-06)."""

    allocations: tuple[Allocation, ...]
    refund: Decimal
    refund_reason: str | None


def allocate_payment(
    amount: Decimal, open_invoices: Sequence[Receivable], *, named: Receivable | None = None
) -> PaymentAllocation:
    """B-06: a payment pays the invoice it names first, then the payer's other open invoices in the
    order given (due date, then number); what no open invoice takes is refunded, never kept as a
    credit balance.

    **Decision:** money is returned only when the payer has no open invoice left to take it. A
    credited invoice, or one already covered, takes nothing. The allocations and the refund add up
    to the payment exactly.
    """
    require_decimal(amount, "payment amount")
    if amount < ZERO:
        raise ValueError(f"a payment amount is not negative, got {amount}")
    ordered = ([named] if named is not None else []) + [
        r for r in open_invoices if named is None or r.invoice_id != named.invoice_id
    ]
    left = amount
    allocations: list[Allocation] = []
    for invoice in ordered:
        open_amount = invoice.open_amount
        if left <= ZERO or open_amount <= ZERO or invoice.status is InvoiceStatus.CREDITED:
            continue
        applied = min(left, open_amount)
        left -= applied
        allocations.append(Allocation(invoice.invoice_id, applied))
    if left <= ZERO:
        return PaymentAllocation(tuple(allocations), ZERO, None)
    reason = REFUND_NO_OPEN_INVOICE if not allocations else REFUND_OVERPAYMENT
    return PaymentAllocation(tuple(allocations), left, reason)


def credit_refund(receivable: Receivable, credited_gross: Decimal) -> Decimal:
    """B-06: what a credit note of `credited_gross` returns to the payer of an invoice already paid.

    The credit first lowers what is still open on the invoice; what it credits beyond that was paid
    already and goes back to the payer as a refund (not kept as a credit balance, as with
    overpayments). `receivable` is the invoice before this credit note.
    """
    require_decimal(credited_gross, "credited gross")
    open_before = max(receivable.open_amount, ZERO)
    return max(credited_gross - open_before, ZERO)


def refund_of_credit_reason(credit_note_number: str) -> str:
    """The refund's reason for a credit note on money already paid."""
    return f"credit note {credit_note_number} on an invoice already paid"


# --- B-23: moving a due date ---


class DueDateRefusedError(Exception):
    """A due-date move the rules refuse: the rule id and the reason."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{reason} ({rule})")
        self.rule = rule
        self.reason = reason


def due_date_refusal(receivable: Receivable, new_due_date: dt.date) -> DueDateRefusedError | None:
    """B-23: only an open invoice's due date moves, and never to before its invoice date."""
    if receivable.status is not InvoiceStatus.OPEN:
        return DueDateRefusedError(
            "B-23",
            f"invoice {receivable.invoice_id} is {receivable.status}: only an open invoice's due date moves",
        )
    if new_due_date < receivable.invoice_date:
        return DueDateRefusedError(
            "B-23", f"the new due date {new_due_date} is before the invoice date {receivable.invoice_date}"
        )
    return None


# --- Procountor's two reports on an issued invoice: its delivery and its payment state (I-01, I-03) ---


class DeliveryStatus(StrEnum):
    """Where procountor-sync's delivery of the invoice stands (I-01), from its delivery reports.

    `awaiting_approval` and `sent` come from `InvoiceDeliveredV1`; `failed_retrying` and `failed`
    (for good, or cancelled by an operator) from `InvoiceDeliveryFailedV1`.
    """

    AWAITING_APPROVAL = "awaiting_approval"
    SENT = "sent"
    FAILED_RETRYING = "failed_retrying"
    FAILED = "failed"


class PaymentStatus(StrEnum):
    """The invoice's payment state as Procountor holds it (I-03), from `InvoicePaymentStatusChangedV1`.

    Procountor's view, not ours: invoicing's own `status` (open, paid, credited) follows the
    payments it allocated itself (B-06); this one says what Procountor shows the payer.
    """

    OPEN = "open"
    PARTLY_PAID = "partly_paid"
    PAID = "paid"
    INVALIDATED = "invalidated"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryState:
    """The latest delivery report applied: its status, the reason of a failure, the report's time."""

    status: DeliveryStatus
    error: str | None
    at: dt.datetime | None  # None only for a state moved by migration 0006, which kept no time


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentState:
    """The latest payment report applied: Procountor's state and amounts, and the report's time."""

    status: PaymentStatus
    paid_amount: Decimal | None  # None only for a state moved by migration 0006 (no amounts kept)
    open_amount: Decimal | None
    at: dt.datetime | None


def supersedes(incoming_at: dt.datetime, current_at: dt.datetime | None) -> bool:
    """Whether a report taken at `incoming_at` replaces the state last set by one taken at `current_at`.

    **Decision (I-01, I-03):** delivery and payment reports travel on different topics, and a
    report may be redelivered or overtaken, so the order of arrival means nothing. Each state is
    replaced only by a report of its own kind taken at the same time or later, by the time the
    report carries (`delivered_at`, `failed_at`, `changed_at`: procountor-sync's clock, the one
    clock behind all of them); an older report is ignored. A state without a time (none yet, or
    moved by migration 0006) takes any report. Equal times: the later arrival wins (a redelivery
    of the same event never gets here: consumers are idempotent by event id).
    """
    if incoming_at.tzinfo is None:
        raise ValueError("a report's time is time-zone aware")
    return current_at is None or incoming_at >= current_at
