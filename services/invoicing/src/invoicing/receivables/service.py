"""After an invoice is issued: credit notes, payments and refunds (B-06), due-date moves (B-23), delivery state."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_contracts.base import Message
from billing_contracts.contracts import DueDateChangeRequestedV1
from billing_contracts.contracts import Requester as WireRequester
from billing_contracts.invoicing import (
    ChangeRequestRefusedV1,
    CreditNoteIssuedV1,
    CreditNoteLine,
    InvoiceIssuedV1,
    RefundRecordedV1,
    VatTotal,
)
from billing_contracts.procountor import InvoiceDeliveredV1, InvoiceDeliveryFailedV1, PaymentReceivedV1
from invoicing import tables as t
from invoicing.billing.domain import ChargeKind
from invoicing.billing.repository import SqlAlchemyBillingRepository
from invoicing.calendar import HELSINKI
from invoicing.contracts.domain import ChangeRefusedError, Requester, check_requester
from invoicing.money import ZERO, cents
from invoicing.receivables.domain import (
    CreditRefusedError,
    InvoicedLine,
    credit_lines,
    credit_vat,
    creditable_lines,
)
from invoicing.references import reference_for_invoice_number
from service_runtime.clock import Clock
from service_runtime.consumer import Rejection
from service_runtime.outbox import enqueue, outgoing

log = structlog.get_logger(__name__)

PRODUCER = "invoicing"
_I = t.invoices.c


class InvoiceNotFoundError(LookupError):
    """No invoice with that id."""


def _today(clock: Clock) -> dt.date:
    return clock.now().astimezone(HELSINKI).date()


def _status(total_gross: Decimal, paid: Decimal, credited_gross: Decimal, *, fully_credited: bool) -> str:
    if fully_credited:
        return "credited"
    return "paid" if paid + credited_gross >= total_gross else "open"


async def _locked_invoice(session: AsyncSession, invoice_id: str) -> Any:
    row = (
        await session.execute(select(t.invoices).where(_I.invoice_id == invoice_id).with_for_update())
    ).first()
    if row is None:
        raise InvoiceNotFoundError(f"no invoice {invoice_id}")
    return row


# --- credit notes ---


@dataclass(frozen=True)
class CreditRequest:
    """An operator's credit of one issued invoice: all of it, or some lines (with quantities)."""

    invoice_id: str
    reason: str
    credited_by: str
    lines: Mapping[int, Decimal | None] | None = None  # None: everything still creditable
    request_id: str | None = None  # idempotency key: the same request gives the same credit note


def _invoiced_lines(document: InvoiceIssuedV1) -> list[InvoicedLine]:
    return [
        InvoicedLine(
            line_no=ln.line_no,
            environment_id=ln.environment_id,
            product_code=ln.product_code,
            description=ln.description,
            period_start=ln.period_start,
            period_end=ln.period_end,
            quantity=ln.quantity,
            unit=ln.unit,
            unit_price=ln.unit_price,
            net=ln.net,
            vat_rate=ln.vat_rate,
            # P-08: everything but service hours is software.
            is_software=(ln.charge_kind or "") != ChargeKind.SERVICE_HOURS.value and ln.unit != "hour",
        )
        for ln in document.lines
    ]


async def _credited_so_far(
    session: AsyncSession, invoice_id: str
) -> tuple[dict[int, tuple[Decimal, Decimal]], dict[Decimal, Decimal]]:
    c = t.credit_notes.c
    documents = (await session.execute(select(c.document).where(c.invoice_id == invoice_id))).scalars()
    per_line: dict[int, tuple[Decimal, Decimal]] = {}
    vat: dict[Decimal, Decimal] = {}
    for document in documents:
        note = CreditNoteIssuedV1.model_validate(document)
        for ln in note.lines:
            if ln.credited_line_no is not None:
                qty, net = per_line.get(ln.credited_line_no, (Decimal(0), ZERO))
                per_line[ln.credited_line_no] = (qty + ln.quantity, net + ln.net)
        for v in note.vat_totals:
            vat[v.vat_rate] = vat.get(v.vat_rate, ZERO) + v.vat
    return per_line, vat


async def _resellers(session: AsyncSession, environments: Sequence[str]) -> dict[str, str | None]:
    c = t.contracts.c
    rows = await session.execute(
        select(c.environment_id, c.reseller_partner_id).where(c.environment_id.in_(sorted(set(environments))))
    )
    return {env: reseller for env, reseller in rows.tuples()}  # noqa: C416


async def issue_credit_note(
    session: AsyncSession, request: CreditRequest, clock: Clock
) -> CreditNoteIssuedV1:
    """Credit an issued invoice in full or by line, with a reason; own number, published like an invoice.

    Refuses (`CreditRefusedError`) a line that does not exist, is negative, or is credited
    already, and a quantity beyond what is left. The same `request_id` returns the same note.
    """
    if not request.reason.strip():
        raise CreditRefusedError("a credit note needs a reason")
    c = t.credit_notes.c
    if request.request_id is not None:
        existing = await session.scalar(select(c.document).where(c.request_id == request.request_id))
        if existing is not None:
            return CreditNoteIssuedV1.model_validate(existing)
    row = await _locked_invoice(session, request.invoice_id)
    invoice = InvoiceIssuedV1.model_validate(row.document)
    creditable = creditable_lines(_invoiced_lines(invoice))
    already, vat_before = await _credited_so_far(session, request.invoice_id)
    lines = credit_lines(creditable, already, request.lines)
    credited_now = {ln.credited_line_no: ln for ln in lines}
    completes = all(
        line.net - already.get(n, (0, ZERO))[1] - (credited_now[n].net if n in credited_now else ZERO) <= ZERO
        for n, line in creditable.items()
    )
    invoice_vat = {v.vat_rate: v.vat for v in invoice.vat_totals}
    vat_totals = credit_vat(
        lines, completes_invoice=completes, invoice_vat=invoice_vat, credited_vat=vat_before
    )
    total_net = cents(sum((v.net for v in vat_totals), ZERO))
    total_vat = cents(sum((v.vat for v in vat_totals), ZERO))
    (number,) = await SqlAlchemyBillingRepository(session).next_invoice_numbers(1)
    reseller_of = await _resellers(session, [ln.environment_id for ln in lines])
    by_reseller: dict[str, Decimal] = {}
    for ln in lines:
        reseller = reseller_of.get(ln.environment_id)
        if reseller and ln.is_software:
            by_reseller[reseller] = by_reseller.get(reseller, ZERO) + ln.net
    note = CreditNoteIssuedV1(
        event_id=uuid.uuid4(),
        occurred_at=clock.now(),
        producer=PRODUCER,
        credit_note_id=f"CN-{number}",
        credit_note_number=str(number),
        reference_number=reference_for_invoice_number(number),
        credited_invoice_id=invoice.invoice_id,
        credited_invoice_number=invoice.invoice_number,
        payer_id=invoice.payer_id,
        payer_business_id=invoice.payer_business_id,
        payer_name=invoice.payer_name,
        credit_date=_today(clock),
        reason=request.reason.strip(),
        lines=[
            CreditNoteLine(
                line_no=i,
                credited_line_no=ln.credited_line_no,
                environment_id=ln.environment_id,
                product_code=ln.product_code,
                description=ln.description,
                period_start=ln.period_start,
                period_end=ln.period_end,
                quantity=ln.quantity,
                unit=ln.unit,
                unit_price=ln.unit_price,
                net=ln.net,
                vat_rate=ln.vat_rate,
            )
            for i, ln in enumerate(lines, start=1)
        ],
        vat_totals=[VatTotal(vat_rate=v.vat_rate, net=v.net, vat=v.vat) for v in vat_totals],
        total_net=total_net,
        total_vat=total_vat,
        total_gross=total_net + total_vat,
        software_net_by_reseller=by_reseller,
    )
    out = outgoing(note)
    await session.execute(
        insert(t.credit_notes).values(
            credit_note_id=note.credit_note_id,
            credit_note_number=number,
            reference_number=note.reference_number,
            invoice_id=invoice.invoice_id,
            payer_id=invoice.payer_id,
            credit_date=note.credit_date,
            reason=note.reason,
            total_net=note.total_net,
            total_vat=note.total_vat,
            total_gross=note.total_gross,
            created_by=request.credited_by,
            request_id=request.request_id,
            document=note.model_dump(mode="json"),
            created_at=clock.now(),
        )
    )
    credited_gross = row.credited_gross + note.total_gross
    await session.execute(
        update(t.invoices)
        .where(_I.invoice_id == invoice.invoice_id)
        .values(
            credited_net=row.credited_net + note.total_net,
            credited_gross=credited_gross,
            status=_status(row.total_gross, row.paid_amount, credited_gross, fully_credited=completes),
            updated_at=clock.now(),
        )
    )
    await enqueue(session, t.runtime_tables.outbox, [out], clock)
    log.info("credit_note_issued", credit_note_id=note.credit_note_id, invoice_id=invoice.invoice_id)
    return note


# --- payments and refunds (B-06) ---


async def _invoice_of_payment(session: AsyncSession, p: PaymentReceivedV1) -> str | None:
    if p.invoice_id is not None:
        found = await session.scalar(select(_I.invoice_id).where(_I.invoice_id == p.invoice_id))
        if found is not None:
            return str(found)
    if p.reference_number is not None:
        found = await session.scalar(select(_I.invoice_id).where(_I.reference_number == p.reference_number))
        if found is not None:
            return str(found)
    found = await session.scalar(
        select(_I.invoice_id).where(_I.procountor_invoice_id == p.procountor_invoice_id)
    )
    return None if found is None else str(found)


async def record_payment(
    session: AsyncSession, p: PaymentReceivedV1, clock: Clock
) -> RefundRecordedV1 | None:
    """Apply a payment to its invoice, then to the payer's other open invoices; refund the rest (B-06).

    **Decision:** money is returned only when the payer has no open invoice left to take it
    (B-06: a refund record, never a credit balance). Returns the refund, if any.
    """
    pay = t.payments.c
    if await session.scalar(
        select(pay.procountor_payment_id).where(pay.procountor_payment_id == p.procountor_payment_id)
    ):
        return None  # the same payment again (a new event id for an old payment)
    named = await _invoice_of_payment(session, p)
    candidates = (
        await session.execute(
            select(t.invoices)
            .where(_I.payer_id == p.payer_business_id, _I.status == "open")
            .order_by(_I.due_date, _I.invoice_number)
            .with_for_update()
        )
    ).all()
    if named is not None:
        named_row = await _locked_invoice(session, named)
        candidates = [named_row] + [r for r in candidates if r.invoice_id != named]
    left = p.amount
    allocations: list[dict[str, str]] = []
    for row in candidates:
        open_amount = row.total_gross - row.credited_gross - row.paid_amount
        if left <= ZERO or open_amount <= ZERO or row.status == "credited":
            continue
        applied = min(left, open_amount)
        left -= applied
        paid = row.paid_amount + applied
        allocations.append({"invoice_id": row.invoice_id, "amount": format(applied, "f")})
        await session.execute(
            update(t.invoices)
            .where(_I.invoice_id == row.invoice_id)
            .values(
                paid_amount=paid,
                status=_status(row.total_gross, paid, row.credited_gross, fully_credited=False),
                updated_at=clock.now(),
            )
        )
    refund: RefundRecordedV1 | None = None
    if left > ZERO:
        reason = "no open invoice" if not allocations else "overpayment: more than the payer's open invoices"
        refund = RefundRecordedV1(
            event_id=uuid.uuid4(),
            occurred_at=clock.now(),
            producer=PRODUCER,
            refund_id=f"RF-{p.procountor_payment_id}"[:64],
            payer_id=p.payer_business_id,
            payer_business_id=p.payer_business_id,
            amount=left,
            payment_date=p.payment_date,
            payment_event_id=p.event_id,
            procountor_invoice_id=p.procountor_invoice_id,
            reason=reason,
        )
        await session.execute(
            insert(t.refunds).values(
                refund_id=refund.refund_id,
                payer_id=refund.payer_id,
                payer_business_id=refund.payer_business_id,
                amount=refund.amount,
                payment_date=refund.payment_date,
                payment_event_id=refund.payment_event_id,
                procountor_payment_id=p.procountor_payment_id,
                procountor_invoice_id=p.procountor_invoice_id,
                reason=reason,
                created_at=clock.now(),
            )
        )
        await enqueue(session, t.runtime_tables.outbox, [outgoing(refund)], clock)
        log.info("refund_recorded", refund_id=refund.refund_id, payer_id=refund.payer_id, amount=str(left))
    await session.execute(
        insert(t.payments).values(
            procountor_payment_id=p.procountor_payment_id,
            event_id=p.event_id,
            payer_business_id=p.payer_business_id,
            invoice_id=named,
            amount=p.amount,
            payment_date=p.payment_date,
            allocations=allocations,
            refunded=left if left > ZERO else ZERO,
            received_at=clock.now(),
        )
    )
    return refund


# --- due-date moves (B-23) ---


@dataclass(frozen=True)
class DueDateChange:
    """Support moves one invoice's due date on the customer's request (B-23)."""

    invoice_id: str
    new_due_date: dt.date
    reason: str
    changed_by: str
    requested_by: WireRequester
    requested_at: dt.datetime
    source: str
    event_id: uuid.UUID | None = None


class DueDateRefusedError(Exception):
    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{reason} ({rule})")
        self.rule = rule
        self.reason = reason


def _refusal(change: DueDateChange, row: Any) -> DueDateRefusedError | None:
    try:
        check_requester(
            Requester(
                person_name=change.requested_by.person_name,
                role=change.requested_by.role,
                has_basic_info_and_user_rights=change.requested_by.has_basic_info_and_user_rights,
                is_signatory=change.requested_by.is_signatory,
            )
        )
    except ChangeRefusedError as exc:
        return DueDateRefusedError(exc.rule, exc.reason)
    if row.status != "open":
        return DueDateRefusedError(
            "B-23", f"invoice {row.invoice_id} is {row.status}: only an open invoice's due date moves"
        )
    if change.new_due_date < row.invoice_date:
        return DueDateRefusedError(
            "B-23", f"the new due date {change.new_due_date} is before the invoice date {row.invoice_date}"
        )
    return None


async def change_due_date(session: AsyncSession, change: DueDateChange, clock: Clock) -> dt.date:
    """Move the due date, audited (who asked, who changed it, when, why); refusals are audited too.

    Raises `DueDateRefusedError` after recording the refusal (the caller commits it).
    """
    if change.event_id is not None:
        d = t.due_date_changes.c
        done = await session.scalar(select(d.new_due_date).where(d.event_id == change.event_id))
        if done is not None:
            return dt.date.fromisoformat(str(done))
    row = await _locked_invoice(session, change.invoice_id)
    refusal = _refusal(change, row)
    await session.execute(
        insert(t.due_date_changes).values(
            invoice_id=change.invoice_id,
            old_due_date=row.due_date,
            new_due_date=change.new_due_date,
            outcome="refused" if refusal else "accepted",
            reason=change.reason,
            refusal=None if refusal is None else str(refusal),
            changed_by=change.changed_by,
            requested_by=change.requested_by.model_dump(mode="json"),
            requested_at=change.requested_at,
            recorded_at=clock.now(),
            source=change.source,
            event_id=change.event_id,
        )
    )
    if refusal is not None:
        raise refusal
    await session.execute(
        update(t.invoices)
        .where(_I.invoice_id == change.invoice_id)
        .values(due_date=change.new_due_date, updated_at=clock.now())
    )
    log.info("due_date_changed", invoice_id=change.invoice_id, due_date=change.new_due_date.isoformat())
    return change.new_due_date


# --- consumers ---


class ReceivablesIntake:
    """Batch use case for Procountor's side of issued invoices: payments, deliveries (I-01, I-03, B-06)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        rejections: list[Rejection] = []
        for event in events:
            match event:
                case PaymentReceivedV1():
                    await record_payment(session, event, self._clock)
                case InvoiceDeliveredV1():
                    await _delivery(
                        session,
                        event.invoice_id,
                        status=event.status.value,
                        error=None,
                        procountor_invoice_id=event.procountor_invoice_id,
                        clock=self._clock,
                    )
                case InvoiceDeliveryFailedV1():
                    await _delivery(
                        session,
                        event.invoice_id,
                        status="failed_retrying" if event.retryable else "failed",
                        error=event.reason,
                        procountor_invoice_id=None,
                        clock=self._clock,
                    )
                case _:
                    rejections.append(
                        Rejection(event.event_id, f"unsupported message {type(event).__name__}")
                    )
        return rejections


async def _delivery(
    session: AsyncSession,
    invoice_id: str,
    *,
    status: str,
    error: str | None,
    procountor_invoice_id: str | None,
    clock: Clock,
) -> None:
    values: dict[str, Any] = {"delivery_status": status, "delivery_error": error, "updated_at": clock.now()}
    if procountor_invoice_id is not None:
        values["procountor_invoice_id"] = procountor_invoice_id
    await session.execute(update(t.invoices).where(_I.invoice_id == invoice_id).values(**values))


class DueDateIntake:
    """Batch use case for `DueDateChangeRequestedV1` (B-23): applied, or refused with the reason."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, events: Sequence[Message]) -> list[Rejection]:
        rejections: list[Rejection] = []
        for event in events:
            if not isinstance(event, DueDateChangeRequestedV1):
                rejections.append(Rejection(event.event_id, f"unsupported message {type(event).__name__}"))
                continue
            change = DueDateChange(
                invoice_id=event.invoice_id,
                new_due_date=event.new_due_date,
                reason=event.reason,
                changed_by=event.changed_by,
                requested_by=event.requested_by,
                requested_at=event.requested_at,
                source="kafka",
                event_id=event.event_id,
            )
            try:
                await change_due_date(session, change, self._clock)
            except (DueDateRefusedError, InvoiceNotFoundError) as exc:
                rule, reason = (
                    (exc.rule, exc.reason) if isinstance(exc, DueDateRefusedError) else ("B-23", str(exc))
                )
                refused = ChangeRequestRefusedV1(
                    event_id=uuid.uuid4(),
                    occurred_at=self._clock.now(),
                    producer=PRODUCER,
                    key=event.invoice_id,
                    refused_event_id=event.event_id,
                    refused_message_type=event.message_type,
                    rule=rule,
                    reason=reason,
                )
                await enqueue(session, t.runtime_tables.outbox, [outgoing(refused)], self._clock)
                rejections.append(Rejection(event.event_id, f"{rule}: {reason}"))
        return rejections
